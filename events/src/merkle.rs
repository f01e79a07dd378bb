//! The Merkle tree over a ledger's log: RFC 9162 (Certificate Transparency v2) section 2.1,
//! which is the same tree as RFC 6962 section 2.1.
//!
//! - leaf hash: `SHA-256(0x00 || leaf input)`; the leaf input of an event is its canonical
//!   bytes;
//! - node hash: `SHA-256(0x01 || left || right)`;
//! - the root of the empty tree is `SHA-256("")`;
//! - the tree over `n > 1` leaves splits at `k`, the largest power of two smaller than `n`:
//!   `MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`.
//!
//! # Storage-agnostic design
//!
//! A tree that is stored (by the service) or held in memory (by a verifier) is read through
//! [`NodeSource`], which yields the hash of a *perfect* subtree: node `(level, index)` covers
//! the `2^level` leaves `[index * 2^level, (index + 1) * 2^level)`; level 0 holds the leaf
//! hashes. Perfect subtrees never change once complete, so they can be written once and
//! cached forever. Every non-perfect subtree an RFC 9162 computation needs (on the right edge
//! of a tree whose size is not a power of two) is computed here from at most `log2(n)`
//! perfect nodes, so [`root`], [`inclusion_proof`] and [`consistency_proof`] read O(log n)
//! nodes however large the tree.
//!
//! [`MerkleFrontier`] appends leaves keeping only the O(log n) right-edge perfect subtrees and
//! reports every perfect node each append completes, so the caller can persist them.
//! [`MemoryTree`] is a complete in-memory [`NodeSource`] for tests and small verifiers.
//!
//! A verifier that holds nothing but a leaf, a proof and a root uses [`verify_inclusion`] and
//! [`verify_consistency`], which follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
//!
//! ```
//! use events::merkle::*;
//! use std::collections::HashMap;
//!
//! let tree = MemoryTree::from_leaves([b"a", b"b", b"c"]);
//! let proof = inclusion_proof(2, 3, &tree).unwrap();
//! verify_inclusion(&leaf_hash(b"c"), 2, 3, &proof, &tree.root()).unwrap();
//! let old_root = root(2, &tree).unwrap();
//! let proof = consistency_proof(2, 3, &tree).unwrap();
//! verify_consistency(2, 3, &old_root, &tree.root(), &proof).unwrap();
//!
//! // Persisting a tree: store every node the frontier emits, rebuild it later from the store.
//! let mut frontier = MerkleFrontier::new();
//! let mut store: HashMap<(u8, u64), _> = HashMap::new();
//! for leaf in [b"a", b"b", b"c"] {
//!     for (level, index, hash) in frontier.push(leaf_hash(leaf)) {
//!         store.insert((level, index), hash);
//!     }
//! }
//! assert_eq!(MerkleFrontier::from_source(3, &store).unwrap(), frontier);
//! assert_eq!(inclusion_proof(0, 3, &store), inclusion_proof(0, 3, &tree));
//! ```

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::seal::sha256;
use crate::values::Hash;

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// The hash of a leaf: `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    Hash(h.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Where the hashes of perfect subtrees are read from.
///
/// `node(level, index)` returns the hash of the perfect subtree of `2^level` leaves starting
/// at leaf `index * 2^level`; level 0 is the leaf hashes. The functions of this module only
/// ask for nodes that are complete in the tree size they are given.
pub trait NodeSource {
    /// Why a node could not be read (missing, storage failure, ...).
    type Error;

    /// The hash of the perfect subtree at `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// A node an in-memory [`NodeSource`] does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tree node at level {level}, index {index} is not stored")]
pub struct MissingNode {
    pub level: u8,
    pub index: u64,
}

/// A map from `(level, index)` to hash, such as the nodes [`MerkleFrontier::push`] emitted.
impl NodeSource for HashMap<(u8, u64), Hash> {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.get(&(level, index))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

/// A map from `(level, index)` to hash, such as the nodes [`MerkleFrontier::push`] emitted.
impl NodeSource for BTreeMap<(u8, u64), Hash> {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.get(&(level, index))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

/// A request for a root or a proof that the tree cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError<E> {
    #[error("leaf index {index} is not in a tree of size {size}")]
    LeafIndexOutOfRange { index: u64, size: u64 },
    #[error(
        "a consistency proof goes from a smaller tree to a larger one (got sizes {old} and {new})"
    )]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("reading a tree node: {0}")]
    Source(E),
}

/// A proof that does not verify. Each variant names what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    LeafIndexOutOfRange { index: u64, size: u64 },
    #[error("the old tree size {old} is larger than the new tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("the proof has {got} hashes; this proof needs exactly {expected}")]
    WrongProofLength { expected: usize, got: usize },
    #[error("the proof leads to root {computed}, not to the expected root {expected}")]
    RootMismatch { expected: Hash, computed: Hash },
    #[error("the proof leads to old root {computed}, not to the expected old root {expected}")]
    OldRootMismatch { expected: Hash, computed: Hash },
    #[error("the proof leads to new root {computed}, not to the expected new root {expected}")]
    NewRootMismatch { expected: Hash, computed: Hash },
}

/// The largest power of two strictly smaller than `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees `(level, index)` that make up the RFC 9162 subtree of `len` leaves
/// starting at `start`, from left (largest) to right (smallest): one per set bit of `len`.
///
/// Every subtree that RFC 9162's recursion produces starts at a multiple of a power of two at
/// least as large as its length, so this cover is exactly how `MTH` splits it: `MTH` of the
/// range is the right fold of `node_hash` over these nodes.
fn perfect_cover(start: u64, len: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut pos = start;
    (0..64u8)
        .rev()
        .filter(move |&bit| (len >> bit) & 1 == 1)
        .map(move |bit| {
            let node = (bit, pos >> bit);
            // Cannot overflow: start + len is a tree size, so at most u64::MAX.
            pos += 1 << bit;
            node
        })
}

/// Right fold of `node_hash` over perfect subtree hashes listed left to right: the RFC 9162
/// hash of the range they cover. The empty list gives the empty root.
fn fold_right(hashes: impl DoubleEndedIterator<Item = Hash>) -> Hash {
    hashes
        .rev()
        .reduce(|right, left| node_hash(&left, &right))
        .unwrap_or_else(empty_root)
}

/// `MTH(D[start : start + len])` for a range of the shape RFC 9162's recursion produces,
/// read from at most `log2(len) + 1` perfect nodes.
fn subtree_hash<S: NodeSource>(start: u64, len: u64, src: &S) -> Result<Hash, S::Error> {
    let nodes = perfect_cover(start, len)
        .map(|(level, index)| src.node(level, index))
        .collect::<Result<Vec<Hash>, S::Error>>()?;
    Ok(fold_right(nodes.into_iter()))
}

/// The root hash of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(size: u64, src: &S) -> Result<Hash, S::Error> {
    subtree_hash(0, size, src)
}

/// The subtrees whose hashes make up the inclusion proof of `index` in a tree of `size`, as
/// `(start, len)` ranges, in proof order (from the leaf up). RFC 9162 section 2.1.3.1:
/// `PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])` if `m < k`, else
/// `PATH(m - k, D[k:n]) : MTH(D[0:k])`.
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let (mut lo, mut n) = (0u64, size);
    while n > 1 {
        let k = split_point(n);
        if index < lo + k {
            ranges.push((lo + k, n - k));
            n = k;
        } else {
            ranges.push((lo, k));
            lo += k;
            n -= k;
        }
    }
    ranges.reverse();
    ranges
}

/// The subtrees whose hashes make up the consistency proof from size `old` to size `new`
/// (`0 < old < new`), as `(start, len)` ranges in proof order. RFC 9162 section 2.1.4.1:
/// `SUBPROOF(m, D[m], true) = {}`, `SUBPROOF(m, D[m], false) = {MTH(D[m])}`, and for `m < n`
/// `SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])` if `m <= k`, else
/// `SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])`.
fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    if old == 0 || old >= new {
        return ranges;
    }
    let (mut lo, mut n, mut m, mut whole) = (0u64, new, old, true);
    loop {
        if m == n {
            if !whole {
                ranges.push((lo, n));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            ranges.push((lo + k, n - k));
            n = k;
        } else {
            ranges.push((lo, k));
            lo += k;
            n -= k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    ranges
}

fn ranges_to_hashes<S: NodeSource>(
    ranges: Vec<(u64, u64)>,
    src: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    ranges
        .into_iter()
        .map(|(start, len)| subtree_hash(start, len, src).map_err(TreeError::Source))
        .collect()
}

/// The RFC 9162 inclusion proof (audit path) of leaf `leaf_index` in the tree of the first
/// `tree_size` leaves, ordered from the leaf up, byte-identical to what any RFC 6962/9162
/// implementation produces. Reads O(log n) nodes.
pub fn inclusion_proof<S: NodeSource>(
    leaf_index: u64,
    tree_size: u64,
    src: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if leaf_index >= tree_size {
        return Err(TreeError::LeafIndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    ranges_to_hashes(inclusion_ranges(leaf_index, tree_size), src)
}

/// The RFC 9162 consistency proof from the tree of the first `old_size` leaves to the tree
/// of the first `new_size`. Empty when `old_size` is 0 or equals `new_size`. Reads O(log n)
/// nodes.
pub fn consistency_proof<S: NodeSource>(
    old_size: u64,
    new_size: u64,
    src: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if old_size > new_size {
        return Err(TreeError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    ranges_to_hashes(consistency_ranges(old_size, new_size), src)
}

/// Shifts `fn_` and `sn` right together until `fn_`'s lowest bit is set or `fn_` is 0.
fn shift_until_odd_or_zero(fn_: &mut u64, sn: &mut u64) {
    while *fn_ != 0 && *fn_ & 1 == 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// The walk up a proof's path that both checks share (RFC 9162 section 2.1.3.2 step 4 and
/// section 2.1.4.2 step 6), from the bit pair `fn_`, `sn`: `step(hash, left)` for each hash
/// of `path`, `left` when the path's hash is the left child. Returns whether the path had
/// exactly the length the sizes call for.
fn walk_path<'a>(
    mut fn_: u64,
    mut sn: u64,
    path: impl IntoIterator<Item = &'a Hash>,
    mut step: impl FnMut(&Hash, bool),
) -> bool {
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            step(p, true);
            shift_until_odd_or_zero(&mut fn_, &mut sn);
        } else {
            step(p, false);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0
}

/// Checks an inclusion proof exactly as RFC 9162 section 2.1.3.2 describes: that the leaf
/// with hash `leaf_hash` is at `leaf_index` in the tree of `tree_size` leaves whose root is
/// `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if leaf_index >= tree_size {
        return Err(ProofError::LeafIndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    let wrong_length = || ProofError::WrongProofLength {
        expected: inclusion_ranges(leaf_index, tree_size).len(),
        got: proof.len(),
    };
    // Steps 2 and 3.
    let (fn_, sn) = (leaf_index, tree_size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    let fits = walk_path(fn_, sn, proof, |p, left| {
        r = if left {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    });
    // Step 5.
    if !fits {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed: r,
        });
    }
    Ok(())
}

/// Checks a consistency proof exactly as RFC 9162 section 2.1.4.2 describes: that the tree of
/// `old_size` leaves with root `old_root` is a prefix of the tree of `new_size` leaves with
/// root `new_root`.
///
/// The cases the RFC leaves to the caller: equal sizes need an empty proof and equal roots;
/// the empty old tree (whose root must be `SHA-256("")`) needs an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder {
            old: old_size,
            new: new_size,
        });
    }
    let wrong_length = || ProofError::WrongProofLength {
        expected: consistency_ranges(old_size, new_size).len(),
        got: proof.len(),
    };
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(wrong_length());
        }
        let expected_old = if old_size == 0 {
            empty_root()
        } else {
            *new_root
        };
        if *old_root != expected_old {
            return Err(ProofError::OldRootMismatch {
                expected: *old_root,
                computed: expected_old,
            });
        }
        return Ok(());
    }
    // Steps 1 and 2: an empty proof fails; if the old size is a power of two, the old root
    // is the first hash of the path.
    let prepended = old_size.is_power_of_two().then_some(old_root);
    let mut path = prepended.into_iter().chain(proof.iter());
    let Some(first) = path.next() else {
        return Err(wrong_length());
    };
    // Steps 3 and 4.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*first, *first);
    // Step 6.
    let fits = walk_path(fn_, sn, path, |c, left| {
        if left {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    });
    // Step 7.
    if !fits {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

/// The right edge of a tree (a "compact range" from leaf 0): the hashes of the perfect
/// subtrees that make up the tree of `size` leaves, one per set bit of `size`, largest
/// first. Appending a leaf costs O(1) amortized hashes; memory is O(log n).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MerkleFrontier {
    size: u64,
    /// Perfect subtree hashes, left (largest) to right (smallest).
    hashes: Vec<Hash>,
}

impl MerkleFrontier {
    /// The frontier of the empty tree.
    pub fn new() -> MerkleFrontier {
        MerkleFrontier::default()
    }

    /// Rebuilds the frontier of the tree of the first `size` leaves from stored perfect
    /// nodes, reading one node per set bit of `size`.
    pub fn from_source<S: NodeSource>(size: u64, src: &S) -> Result<MerkleFrontier, S::Error> {
        let hashes = perfect_cover(0, size)
            .map(|(level, index)| src.node(level, index))
            .collect::<Result<Vec<Hash>, S::Error>>()?;
        Ok(MerkleFrontier { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree (`SHA-256("")` when empty).
    pub fn root(&self) -> Hash {
        fold_right(self.hashes.iter().copied())
    }

    /// The right-edge perfect subtrees as `(level, index, hash)`, largest first.
    pub fn nodes(&self) -> impl Iterator<Item = (u8, u64, Hash)> + '_ {
        perfect_cover(0, self.size)
            .zip(self.hashes.iter())
            .map(|((level, index), hash)| (level, index, *hash))
    }

    /// Appends a leaf (by its [`leaf_hash`]) and returns every perfect node this append
    /// completed as `(level, index, hash)`, from the leaf itself at level 0 upwards. Storing
    /// all of them gives a complete [`NodeSource`] for the tree.
    ///
    /// # Panics
    /// When the tree already has `u64::MAX` leaves.
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<(u8, u64, Hash)> {
        let index = self.size;
        let size = index
            .checked_add(1)
            .expect("a Merkle tree holds at most u64::MAX leaves");
        let mut completed = vec![(0u8, index, leaf_hash)];
        let mut hash = leaf_hash;
        let mut level = 0u8;
        // Each set low bit of the old size is a perfect subtree that the new one completes.
        while (index >> level) & 1 == 1 {
            // The frontier holds one hash per set bit of the old size, so this bit's hash
            // is the last one.
            let left = self
                .hashes
                .pop()
                .expect("the frontier holds one hash per set bit of its size");
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push((level, index >> level, hash));
        }
        self.hashes.push(hash);
        self.size = size;
        completed
    }
}

/// A whole tree in memory: every perfect node of every level. For tests and for verifiers
/// that rebuild a small ledger's tree from its export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is node `(l, i)`.
    levels: Vec<Vec<Hash>>,
    frontier: MerkleFrontier,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// The tree over these leaf inputs, in order.
    pub fn from_leaves<I>(leaves: I) -> MemoryTree
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut tree = MemoryTree::new();
        for leaf in leaves {
            tree.push_leaf(leaf.as_ref());
        }
        tree
    }

    /// Appends a leaf input.
    pub fn push_leaf(&mut self, leaf: &[u8]) {
        self.push_leaf_hash(leaf_hash(leaf));
    }

    /// Appends a leaf by its leaf hash.
    pub fn push_leaf_hash(&mut self, leaf_hash: Hash) {
        for (level, _index, hash) in self.frontier.push(leaf_hash) {
            let level = usize::from(level);
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            // Nodes of each level complete in index order, so this is node `_index`.
            self.levels[level].push(hash);
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root hash of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier of the whole tree.
    pub fn frontier(&self) -> &MerkleFrontier {
        &self.frontier
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.levels
            .get(usize::from(level))
            .and_then(|nodes| nodes.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_the_largest_smaller_power_of_two() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn perfect_cover_follows_the_bits_of_the_length() {
        let cover: Vec<_> = perfect_cover(0, 13).collect();
        assert_eq!(cover, vec![(3, 0), (2, 2), (0, 12)]);
        let cover: Vec<_> = perfect_cover(8, 5).collect();
        assert_eq!(cover, vec![(2, 2), (0, 12)]);
        assert_eq!(perfect_cover(0, 0).count(), 0);
    }

    #[test]
    fn frontier_emits_the_completed_nodes() {
        let mut f = MerkleFrontier::new();
        let h: Vec<Hash> = (0u8..4).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(f.push(h[0]), vec![(0, 0, h[0])]);
        let n01 = node_hash(&h[0], &h[1]);
        assert_eq!(f.push(h[1]), vec![(0, 1, h[1]), (1, 0, n01)]);
        assert_eq!(f.push(h[2]), vec![(0, 2, h[2])]);
        let n23 = node_hash(&h[2], &h[3]);
        let n03 = node_hash(&n01, &n23);
        assert_eq!(f.push(h[3]), vec![(0, 3, h[3]), (1, 1, n23), (2, 0, n03)]);
        assert_eq!(f.root(), n03);
        assert_eq!(f.nodes().collect::<Vec<_>>(), vec![(2, 0, n03)]);
    }

    #[test]
    fn wrong_sizes_are_errors_not_panics() {
        let tree = MemoryTree::from_leaves([b"a", b"b"]);
        assert_eq!(
            inclusion_proof(2, 2, &tree),
            Err(TreeError::LeafIndexOutOfRange { index: 2, size: 2 })
        );
        assert_eq!(
            consistency_proof(3, 2, &tree),
            Err(TreeError::SizesOutOfOrder { old: 3, new: 2 })
        );
        assert_eq!(root(3, &tree), Err(MissingNode { level: 0, index: 2 }));
        assert_eq!(
            verify_inclusion(&Hash::ZERO, 0, 0, &[], &Hash::ZERO),
            Err(ProofError::LeafIndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            verify_consistency(3, 2, &Hash::ZERO, &Hash::ZERO, &[]),
            Err(ProofError::SizesOutOfOrder { old: 3, new: 2 })
        );
    }

    #[test]
    fn degenerate_consistency_cases() {
        let tree = MemoryTree::from_leaves([b"a", b"b", b"c"]);
        let r3 = tree.root();
        assert!(verify_consistency(0, 3, &empty_root(), &r3, &[]).is_ok());
        assert!(matches!(
            verify_consistency(0, 3, &r3, &r3, &[]),
            Err(ProofError::OldRootMismatch { .. })
        ));
        assert!(verify_consistency(3, 3, &r3, &r3, &[]).is_ok());
        assert!(matches!(
            verify_consistency(3, 3, &r3, &r3, &[r3]),
            Err(ProofError::WrongProofLength {
                expected: 0,
                got: 1
            })
        ));
        assert!(matches!(
            verify_consistency(2, 3, &r3, &r3, &[]),
            Err(ProofError::WrongProofLength { got: 0, .. })
        ));
    }
}
