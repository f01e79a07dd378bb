//! # projections: pure folds over the ledger's events
//!
//! Every read model is a fold `(state, &event) -> state` with no IO: project balances,
//! matching pools, pledges, donor and donation counts, and the state the write side checks
//! commands against ([`LedgerState`]). Rebuilding from event 0 gives byte-identical state,
//! because every collection is ordered.
//!
//! ```
//! use projections::LedgerState;
//! let state = LedgerState::default();
//! assert_eq!(state.position, 0);
//! ```

pub mod journal;
mod ledger;
mod receipts;
pub mod reconcile;

pub use journal::{Account, Books, FundStatement, JournalEntry, TrialBalance};
pub use ledger::*;
pub use receipts::ReceiptIndex;

/// A fold that met an event it cannot apply. On a log written by the ledger's own writer
/// this is a bug or corruption, never an input error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("expected event {expected}, got event {found}")]
    OutOfOrder { expected: u64, found: u64 },
    #[error("event {seq}: invariant broken: {what}")]
    Invariant { seq: u64, what: String },
    #[error("account {key:?}: {reason}")]
    BadAccount { key: String, reason: String },
}
