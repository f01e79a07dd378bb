//! # events: what a third party needs to verify a donation ledger
//!
//! The event types of the ledger and their validation, canonical bytes (RFC 8785), SHA-256
//! hashing, the hash chain, the RFC 9162 Merkle tree and its proofs ([`merkle`]), C2SP signed
//! notes and checkpoints ([`note`]) and C2SP tlog tiles ([`tiles`]). Pure: no IO, no async,
//! no storage or HTTP types. A donor's verifier depends on this crate alone.
//!
//! ```
//! use events::*;
//!
//! let record = EventRecord {
//!     seq: 0,
//!     prev: Hash::ZERO,
//!     ledger: Id::new("erqi").unwrap(),
//!     ts_ms: 1_539_050_400_000,
//!     actor: Id::new("admin").unwrap(),
//!     idempotency: None,
//!     token_issuer: None,
//!     body: EventBody::ProjectOpened(ProjectOpened {
//!         project: Id::new("xingxing-classroom").unwrap(),
//!         kind: ProjectKind::CommunityProject,
//!         name: Text::new("星星课堂").unwrap(),
//!         currency: Currency::CNY,
//!         goal_minor: Some(Amount::new(5_000_000).unwrap()),
//!     }),
//! };
//! let sealed = record.seal().unwrap();
//! // Anyone holding the exported line can recompute the hash and check the link.
//! let checked = check_export_line(&sealed.export_line()).unwrap();
//! assert_eq!(checked.hash, sealed.hash());
//! let mut chain = ChainVerifier::new();
//! chain.push(checked.seq, checked.prev, checked.hash).unwrap();
//! ```

mod error;
mod event;
pub mod jcs;
pub mod merkle;
pub mod note;
mod receipt;
mod seal;
pub mod tiles;
mod values;

pub use error::{ChainError, ValueError};
pub use event::*;
pub use merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion, MemoryTree, MerkleFrontier, MissingNode, NodeSource, ProofError, TreeError,
};
pub use note::{
    is_valid_key_name, key_id, open_note, sign_note, Checkpoint, CheckpointError, Note, NoteError,
    NoteSignature, OpenedNote, SignerKey, VerifierKey,
};
pub use receipt::{is_receipt_code, receipt_code, receipt_number, receipt_number_of, ReceiptCode};
pub use seal::*;
pub use tiles::{
    decode_tile_index, encode_tile_index, entry_bundle, parse_entry_bundle, parse_hash_tile, Tile,
    TileError, TileKind, TileReadError,
};
pub use values::*;
