//! The Merkle tree against the published RFC 6962 vectors, against a literal transcription of
//! RFC 9162's recursive definitions, and under random trees.

use std::collections::HashMap;

use events::merkle::*;
use events::{Hash, Tile, TileKind};
use proptest::prelude::*;

const VECTORS: &str = include_str!("vectors/merkle-rfc6962.json");

fn hash(hex: &str) -> Hash {
    Hash::from_hex(hex).expect("vector hashes are 64 lowercase hex digits")
}

fn hashes(value: &serde_json::Value) -> Vec<Hash> {
    value
        .as_array()
        .expect("an array of hashes")
        .iter()
        .map(|h| hash(h.as_str().expect("a hex string")))
        .collect()
}

fn u64_field(value: &serde_json::Value, name: &str) -> u64 {
    value[name].as_u64().expect("an integer field")
}

struct Vectors {
    leaves: Vec<Vec<u8>>,
    leaf_hashes: Vec<Hash>,
    roots: Vec<Hash>,
    /// (leaf index, tree size, proof)
    inclusion: Vec<(u64, u64, Vec<Hash>)>,
    /// (old size, new size, proof)
    consistency: Vec<(u64, u64, Vec<Hash>)>,
}

fn vectors() -> Vectors {
    let v: serde_json::Value = serde_json::from_str(VECTORS).expect("the vectors are JSON");
    let leaves = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hex::decode(l.as_str().unwrap()).unwrap())
        .collect();
    let roots = (0..=8)
        .map(|n| hash(v["roots_hex"][n.to_string()].as_str().unwrap()))
        .collect();
    let inclusion = v["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                u64_field(c, "leaf_index"),
                u64_field(c, "tree_size"),
                hashes(&c["proof_hex"]),
            )
        })
        .collect();
    let consistency = v["consistency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                u64_field(c, "from"),
                u64_field(c, "to"),
                hashes(&c["proof_hex"]),
            )
        })
        .collect();
    Vectors {
        leaves,
        leaf_hashes: hashes(&v["leaf_hashes_hex"]),
        roots,
        inclusion,
        consistency,
    }
}

/// RFC 9162 section 2.1.1, word for word, over leaf hashes.
fn reference_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = reference_split(n);
            node_hash(&reference_mth(&leaves[..k]), &reference_mth(&leaves[k..]))
        }
    }
}

fn reference_split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 section 2.1.3.1, word for word.
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return vec![];
    }
    let k = reference_split(n);
    if m < k {
        let mut p = reference_path(m, &leaves[..k]);
        p.push(reference_mth(&leaves[k..]));
        p
    } else {
        let mut p = reference_path(m - k, &leaves[k..]);
        p.push(reference_mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 section 2.1.4.1, word for word.
fn reference_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            vec![]
        } else {
            vec![reference_mth(leaves)]
        };
    }
    let k = reference_split(n);
    if m <= k {
        let mut p = reference_subproof(m, &leaves[..k], whole);
        p.push(reference_mth(&leaves[k..]));
        p
    } else {
        let mut p = reference_subproof(m - k, &leaves[k..], false);
        p.push(reference_mth(&leaves[..k]));
        p
    }
}

fn reference_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if m == 0 || m == leaves.len() {
        vec![]
    } else {
        reference_subproof(m, leaves, true)
    }
}

#[test]
fn reference_transcription_agrees_with_the_vectors() {
    let v = vectors();
    for (n, root) in v.roots.iter().enumerate() {
        assert_eq!(reference_mth(&v.leaf_hashes[..n]), *root, "root of {n}");
    }
    for (index, size, proof) in &v.inclusion {
        let leaves = &v.leaf_hashes[..*size as usize];
        assert_eq!(reference_path(*index as usize, leaves), *proof);
    }
    for (old, new, proof) in &v.consistency {
        let leaves = &v.leaf_hashes[..*new as usize];
        assert_eq!(reference_proof(*old as usize, leaves), *proof);
    }
}

#[test]
fn leaf_hashes_and_roots_match_the_vectors() {
    let v = vectors();
    for (leaf, expected) in v.leaves.iter().zip(&v.leaf_hashes) {
        assert_eq!(leaf_hash(leaf), *expected);
    }
    assert_eq!(
        empty_root().to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let tree = MemoryTree::from_leaves(&v.leaves);
    let mut frontier = MerkleFrontier::new();
    assert_eq!(frontier.root(), v.roots[0]);
    for n in 0..=8u64 {
        assert_eq!(root(n, &tree), Ok(v.roots[n as usize]), "root of {n}");
        if n > 0 {
            frontier.push(v.leaf_hashes[n as usize - 1]);
            assert_eq!(frontier.root(), v.roots[n as usize]);
            assert_eq!(frontier.size(), n);
        }
    }
    assert_eq!(tree.root(), v.roots[8]);
}

#[test]
fn every_inclusion_proof_matches_the_vectors_and_verifies() {
    let v = vectors();
    let tree = MemoryTree::from_leaves(&v.leaves);
    assert_eq!(v.inclusion.len(), 36);
    for (index, size, proof) in &v.inclusion {
        assert_eq!(inclusion_proof(*index, *size, &tree).as_ref(), Ok(proof));
        let root = &v.roots[*size as usize];
        let leaf = &v.leaf_hashes[*index as usize];
        assert_eq!(verify_inclusion(leaf, *index, *size, proof, root), Ok(()));
        // Wrong index, wrong leaf, wrong root, truncated, extended. (A wrong tree size is
        // not always caught by the proof alone: the root binds the size.)
        let other = (*index + 1) % *size;
        if other != *index {
            assert!(verify_inclusion(leaf, other, *size, proof, root).is_err());
        }
        let wrong_leaf = &v.leaf_hashes[(*index as usize + 1) % 8];
        assert!(matches!(
            verify_inclusion(wrong_leaf, *index, *size, proof, root),
            Err(ProofError::RootMismatch { .. })
        ));
        assert!(matches!(
            verify_inclusion(leaf, *index, *size, proof, &v.roots[0]),
            Err(ProofError::RootMismatch { .. })
        ));
        if !proof.is_empty() {
            assert!(matches!(
                verify_inclusion(leaf, *index, *size, &proof[1..], root),
                Err(ProofError::WrongProofLength { .. })
            ));
        }
        let mut longer = proof.clone();
        longer.push(*leaf);
        assert_eq!(
            verify_inclusion(leaf, *index, *size, &longer, root),
            Err(ProofError::WrongProofLength {
                expected: proof.len(),
                got: proof.len() + 1
            })
        );
    }
}

#[test]
fn every_consistency_proof_matches_the_vectors_and_verifies() {
    let v = vectors();
    let tree = MemoryTree::from_leaves(&v.leaves);
    assert_eq!(v.consistency.len(), 36);
    for (old, new, proof) in &v.consistency {
        assert_eq!(consistency_proof(*old, *new, &tree).as_ref(), Ok(proof));
        let (r1, r2) = (&v.roots[*old as usize], &v.roots[*new as usize]);
        assert_eq!(verify_consistency(*old, *new, r1, r2, proof), Ok(()));
        if old != new {
            assert!(verify_consistency(*old, *new, r2, r2, proof).is_err());
            assert!(verify_consistency(*old, *new, r1, r1, proof).is_err());
            assert!(verify_consistency(*old, *new, r1, r2, &proof[1..]).is_err());
            let mut longer = proof.clone();
            longer.push(*r1);
            assert_eq!(
                verify_consistency(*old, *new, r1, r2, &longer),
                Err(ProofError::WrongProofLength {
                    expected: proof.len(),
                    got: proof.len() + 1
                })
            );
        }
    }
    for n in 0..=8 {
        assert_eq!(consistency_proof(0, n, &tree), Ok(vec![]));
        assert_eq!(
            verify_consistency(0, n, &v.roots[0], &v.roots[n as usize], &[]),
            Ok(())
        );
    }
}

/// A NodeSource that counts its reads, to check the O(log n) bound.
struct Counting<'a> {
    tree: &'a MemoryTree,
    reads: std::cell::Cell<usize>,
}

impl NodeSource for Counting<'_> {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.reads.set(self.reads.get() + 1);
        self.tree.node(level, index)
    }
}

#[test]
fn proofs_read_logarithmically_many_nodes() {
    let tree = MemoryTree::from_leaves((0u32..5000).map(u32::to_be_bytes));
    let src = Counting {
        tree: &tree,
        reads: Default::default(),
    };
    // log2(5000) < 13; a proof reads at most two nodes per level.
    for (index, size) in [(0, 5000), (4999, 5000), (1234, 4097), (4096, 4097)] {
        src.reads.set(0);
        let proof = inclusion_proof(index, size, &src).unwrap();
        assert!(src.reads.get() <= 2 * 13, "{} reads", src.reads.get());
        assert!(src.reads.get() >= proof.len());
    }
    for (old, new) in [(1, 5000), (4999, 5000), (1234, 4097), (2047, 4095)] {
        src.reads.set(0);
        consistency_proof(old, new, &src).unwrap();
        assert!(src.reads.get() <= 2 * 13, "{} reads", src.reads.get());
    }
    src.reads.set(0);
    root(4999, &src).unwrap();
    assert_eq!(src.reads.get(), 4999u32.count_ones() as usize);
}

fn leaves_strategy(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..=max)
}

fn flip(h: &Hash, byte: usize, bit: u8) -> Hash {
    let mut out = *h;
    out.0[byte % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every inclusion proof of every leaf matches RFC 9162's definition and verifies.
    #[test]
    fn every_inclusion_proof_verifies(leaves in leaves_strategy(300)) {
        let tree = MemoryTree::from_leaves(&leaves);
        let n = tree.size();
        let leaf_hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let root_n = tree.root();
        prop_assert_eq!(root_n, reference_mth(&leaf_hashes));
        for i in 0..n {
            let proof = inclusion_proof(i, n, &tree).unwrap();
            // The length docs/FORMAT-merkle.md states.
            let inner = 64 - (i ^ (n - 1)).leading_zeros();
            let border = (i.checked_shr(inner).unwrap_or(0)).count_ones();
            prop_assert_eq!(proof.len(), (inner + border) as usize);
            if i % 17 == 0 || i + 1 == n {
                prop_assert_eq!(&proof, &reference_path(i as usize, &leaf_hashes));
            }
            prop_assert_eq!(verify_inclusion(&leaf_hashes[i as usize], i, n, &proof, &root_n), Ok(()));
        }
    }

    /// Consistency proofs from every smaller size (and between sampled pairs) match RFC
    /// 9162's definition and verify.
    #[test]
    fn consistency_proofs_verify(leaves in leaves_strategy(300), pairs in prop::collection::vec((any::<u16>(), any::<u16>()), 8)) {
        let tree = MemoryTree::from_leaves(&leaves);
        let n = tree.size();
        let leaf_hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let root_n = tree.root();
        for m in 0..=n {
            let proof = consistency_proof(m, n, &tree).unwrap();
            let root_m = root(m, &tree).unwrap();
            prop_assert_eq!(verify_consistency(m, n, &root_m, &root_n, &proof), Ok(()));
            if m % 13 == 0 {
                prop_assert_eq!(&proof, &reference_proof(m as usize, &leaf_hashes));
            }
        }
        for (a, b) in pairs {
            let (a, b) = (u64::from(a) % (n + 1), u64::from(b) % (n + 1));
            let (m, k) = (a.min(b), a.max(b));
            let proof = consistency_proof(m, k, &tree).unwrap();
            prop_assert_eq!(&proof, &reference_proof(m as usize, &leaf_hashes[..k as usize]));
            let (root_m, root_k) = (root(m, &tree).unwrap(), root(k, &tree).unwrap());
            prop_assert_eq!(verify_consistency(m, k, &root_m, &root_k, &proof), Ok(()));
        }
    }

    /// Flipping any bit of a proof hash, the leaf or a root makes verification fail.
    #[test]
    fn tampering_fails(leaves in leaves_strategy(300), pick in any::<u64>(), pick2 in any::<u64>(), byte in any::<usize>(), bit in any::<u8>()) {
        let tree = MemoryTree::from_leaves(&leaves);
        let n = tree.size();
        let root_n = tree.root();
        let i = pick % n;
        let leaf = leaf_hash(&leaves[i as usize]);
        let proof = inclusion_proof(i, n, &tree).unwrap();
        prop_assert!(verify_inclusion(&flip(&leaf, byte, bit), i, n, &proof, &root_n).is_err());
        prop_assert!(verify_inclusion(&leaf, i, n, &proof, &flip(&root_n, byte, bit)).is_err());
        for j in 0..proof.len() {
            let mut bad = proof.clone();
            bad[j] = flip(&bad[j], byte, bit);
            prop_assert!(verify_inclusion(&leaf, i, n, &bad, &root_n).is_err());
        }

        let m = pick2 % (n + 1);
        let root_m = root(m, &tree).unwrap();
        let proof = consistency_proof(m, n, &tree).unwrap();
        // Any tree extends the empty tree, whatever its root; otherwise both roots are bound.
        prop_assert!(verify_consistency(m, n, &flip(&root_m, byte, bit), &root_n, &proof).is_err());
        if m > 0 {
            prop_assert!(verify_consistency(m, n, &root_m, &flip(&root_n, byte, bit), &proof).is_err());
        }
        for j in 0..proof.len() {
            let mut bad = proof.clone();
            bad[j] = flip(&bad[j], byte, bit);
            prop_assert!(verify_consistency(m, n, &root_m, &root_n, &bad).is_err());
        }
    }

    /// The frontier's root is the tree's root at every size; the nodes it emits, kept in a
    /// map, are a NodeSource whose roots and proofs are the MemoryTree's; a frontier rebuilt
    /// from stored nodes is the one that was built by appending.
    #[test]
    fn frontier_nodes_form_a_node_source(leaves in leaves_strategy(300), pick in any::<u64>()) {
        let leaf_hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let tree = MemoryTree::from_leaves(&leaves);
        let mut frontier = MerkleFrontier::new();
        let mut stored: HashMap<(u8, u64), Hash> = HashMap::new();
        for (i, h) in leaf_hashes.iter().enumerate() {
            for (level, index, hash) in frontier.push(*h) {
                // Each node is emitted once, and it is the right perfect subtree.
                let start = (index << level) as usize;
                prop_assert_eq!(hash, reference_mth(&leaf_hashes[start..start + (1 << level)]));
                prop_assert!(stored.insert((level, index), hash).is_none());
            }
            let size = i as u64 + 1;
            prop_assert_eq!(frontier.root(), root(size, &tree).unwrap());
            prop_assert_eq!(root(size, &stored), root(size, &tree));
            let rebuilt = MerkleFrontier::from_source(size, &stored).unwrap();
            prop_assert_eq!(&rebuilt, &frontier);
        }
        let n = tree.size();
        prop_assert_eq!(frontier.root(), reference_mth(&leaf_hashes));
        prop_assert_eq!(stored.len(), (2 * n - u64::from(n.count_ones())) as usize);
        let i = pick % n;
        let m = pick % (n + 1);
        prop_assert_eq!(inclusion_proof(i, n, &stored), inclusion_proof(i, n, &tree));
        prop_assert_eq!(consistency_proof(m, n, &stored), consistency_proof(m, n, &tree));
        // Continuing a rebuilt frontier gives the same tree.
        let mut resumed = MerkleFrontier::from_source(m, &stored).unwrap();
        for h in &leaf_hashes[m as usize..] {
            resumed.push(*h);
        }
        prop_assert_eq!(resumed.root(), frontier.root());
    }

    /// Hash tiles are the frontier's nodes of level 8L.
    #[test]
    fn hash_tiles_agree_with_the_tree(n in 1u64..2000) {
        let tree = MemoryTree::from_leaves((0..n).map(u64::to_be_bytes));
        for level in 0u8..2 {
            let kind = TileKind::Hashes { level };
            let mut index = 0;
            while let Some(tile) = Tile::in_tree(kind, index, n) {
                let bytes = tile.hash_tile_bytes(&tree).unwrap();
                prop_assert_eq!(bytes.len(), usize::from(tile.width()) * 32);
                let first = tree.node(8 * level, index * 256).unwrap();
                prop_assert_eq!(&bytes[..32], &first.0[..]);
                index += 1;
            }
            prop_assert_eq!(index, (n >> (8 * level)).div_ceil(256));
        }
    }
}

/// A sealed event's cached leaf hash is the RFC 6962 leaf hash of its canonical bytes,
/// whether it was asked for before a clone or after.
#[test]
fn a_sealed_events_leaf_hash_is_that_of_its_canonical_bytes() {
    let record = events::EventRecord {
        seq: 0,
        prev: Hash::ZERO,
        ledger: events::Id::new("erqi").unwrap(),
        ts_ms: 1_539_050_400_000,
        actor: events::Id::new("admin-zhao").unwrap(),
        idempotency: None,
        token_issuer: None,
        body: events::EventBody::ProjectClosed(events::ProjectClosed {
            project: events::Id::new("cp-001").unwrap(),
            reason: events::Text::new("完成").unwrap(),
        }),
    };
    let sealed = record.seal().unwrap();
    let copy = sealed.clone();
    let expected = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0x00]);
        h.update(sealed.canonical_bytes());
        Hash(h.finalize().into())
    };
    assert_eq!(sealed.leaf_hash(), expected);
    assert_eq!(copy.leaf_hash(), expected);
    assert_eq!(leaf_hash(sealed.canonical_bytes()), expected);
}
