//! # events: what a third party needs to verify a donation ledger
//!
//! The event types of the ledger and their validation, canonical bytes (RFC 8785), SHA-256
//! hashing, and the hash chain. Pure: no IO, no async, no storage or HTTP types. A donor's
//! verifier depends on this crate alone.
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
mod receipt;
mod seal;
mod values;

pub use error::{ChainError, ValueError};
pub use event::*;
pub use receipt::{is_receipt_code, receipt_code};
pub use seal::*;
pub use values::*;
