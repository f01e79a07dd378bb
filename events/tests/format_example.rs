//! The worked example of docs/FORMAT-merkle.md, computed by the code and asserted, so the
//! document and the implementation cannot drift apart. Run with `--nocapture` to print it.

use base64::Engine as _;
use events::merkle::*;
use events::note::*;
use events::tiles::*;

#[test]
fn worked_example() {
    // Three leaf inputs (the first three leaves of the RFC 6962 test vectors).
    let leaves: [&[u8]; 3] = [b"", b"\x00", b"\x10"];
    let tree = MemoryTree::from_leaves(leaves);
    let h: Vec<String> = leaves.iter().map(|l| leaf_hash(l).to_hex()).collect();
    let n01 = node_hash(&leaf_hash(leaves[0]), &leaf_hash(leaves[1]));
    let root3 = tree.root();
    println!("leaf hashes: {h:#?}");
    println!("node (1,0): {n01}");
    println!("root of 3: {root3}");
    assert_eq!(
        h,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        ]
    );
    assert_eq!(
        n01.to_hex(),
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
    );
    assert_eq!(
        root3.to_hex(),
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    );

    let incl0 = inclusion_proof(0, 3, &tree).unwrap();
    let incl2 = inclusion_proof(2, 3, &tree).unwrap();
    let cons = consistency_proof(2, 3, &tree).unwrap();
    let cons1 = consistency_proof(1, 3, &tree).unwrap();
    println!("inclusion 0 in 3: {incl0:?}");
    println!("inclusion 2 in 3: {incl2:?}");
    println!("consistency 2 -> 3: {cons:?}");
    println!("consistency 1 -> 3: {cons1:?}");
    assert_eq!(incl0, [leaf_hash(leaves[1]), leaf_hash(leaves[2])]);
    assert_eq!(incl2, [n01]);
    assert_eq!(cons, [leaf_hash(leaves[2])]);
    assert_eq!(
        cons1,
        [leaf_hash(leaves[1]), leaf_hash(leaves[2])],
        "the old root (leaf 0) is a power of two, so it is left out"
    );

    // Keys from the seed 00 01 02 .. 1f.
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let origin = "example.org/ledger/demo";
    let signer = SignerKey::from_seed(origin, seed).unwrap();
    let verifier = signer.verifier_key();
    println!("public key: {}", hex::encode(verifier.public_key()));
    println!("key id: {:08x}", signer.key_id());
    println!("signer key: {}", signer.to_text());
    println!("verifier key: {verifier}");
    assert_eq!(
        hex::encode(verifier.public_key()),
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    );
    assert_eq!(
        signer.to_text(),
        "PRIVATE+KEY+example.org/ledger/demo+77f89178+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
    );
    assert_eq!(
        verifier.to_text(),
        "example.org/ledger/demo+77f89178+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    );

    let checkpoint = Checkpoint::new(origin, 3, root3);
    let text = checkpoint.to_text();
    let signed = checkpoint.sign(&signer).unwrap();
    println!("checkpoint text:\n{text}");
    println!("signed checkpoint:\n{signed}");
    assert_eq!(
        text,
        "example.org/ledger/demo\n3\nrra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=\n"
    );
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(root3.0),
        "rra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc="
    );
    assert_eq!(
        signed,
        "example.org/ledger/demo\n3\nrra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc=\n\n\u{2014} example.org/ledger/demo d/iReFV6z18Enm2pIT0ubvoySiEVQscI+5RRpD95s+sLSpWwJNxNpj/B1Qs48A+KItAjougIyNsaw2qV3CO1FtzUyQI=\n"
    );
    assert_eq!(Checkpoint::open(&signed, &verifier), Ok(checkpoint));

    // Tiles of the 3-leaf tree: one partial level-0 tile and one partial entry bundle.
    let tile = Tile::in_tree(TileKind::Hashes { level: 0 }, 0, 3).unwrap();
    let bundle = Tile::in_tree(TileKind::Entries, 0, 3).unwrap();
    assert_eq!(tile.path(), "tile/0/000.p/3");
    assert_eq!(bundle.path(), "tile/entries/000.p/3");
    assert_eq!(
        hex::encode(tile.hash_tile_bytes(&tree).unwrap()),
        h.concat()
    );
    let bundle_bytes = entry_bundle(leaves).unwrap();
    println!("entry bundle: {}", hex::encode(&bundle_bytes));
    assert_eq!(hex::encode(bundle_bytes), "0000000100000110");
    assert_eq!(encode_tile_index(1_234_067), "x001/x234/067");
}
