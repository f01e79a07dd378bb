//! The transparency log side of the service: signed checkpoints, the public tiles, proofs and
//! receipt bundles over HTTP, and the `verify` client that checks them.
//!
//! - [`checkpoints`]: the signer key file (`keygen`), the store of published checkpoints and
//!   the task that signs a new one when the log grows (at most once a second).
//! - [`routes`]: a self-contained axum [`Router`] the HTTP app merges: `/log/checkpoint`,
//!   `/log/key`, C2SP tlog-tiles under `/log/tile/...`, and the JSON proof endpoints under
//!   `/api/v1/public/...`.
//! - [`index`]: event hash → seq, for proofs asked for by hash.
//! - [`verify`]: re-checks a ledger from an export or a URL against its verifier key, and a
//!   single receipt bundle offline.
//! - [`wire`]: the JSON shapes shared by the server and the client.
//!
//! The Merkle tree itself is storage: [`crate::store::PersistedTree`].
//!
//! ```no_run
//! # async fn app(node: &ledger::node::Node) {
//! let router: axum::Router = ledger::tlog::routes(ledger::tlog::TlogState::from_node(node));
//! # }
//! ```

use std::sync::Arc;

use axum::Router;
use projections::LedgerState;
use tokio::sync::watch;

use crate::store::{EventLog, PersistedTree};

pub mod checkpoints;
pub mod index;
mod routes;
pub mod verify;
pub mod wire;

pub use checkpoints::{CheckpointSigner, CheckpointStore};
pub use index::EventHashIndex;
pub use routes::{ApiError, QUERY_BYTES_MAX};

/// What the tlog routes read: the log (entries), its tree (tiles, proofs), the published
/// checkpoints, the read models (receipt codes) and the event hash index. Cheap to clone.
#[derive(Clone)]
pub struct TlogState {
    pub log: Arc<dyn EventLog>,
    pub tree: Arc<PersistedTree>,
    pub checkpoints: CheckpointStore,
    pub ledger: watch::Receiver<Arc<LedgerState>>,
    pub hashes: EventHashIndex,
}

impl TlogState {
    /// The state of a running node.
    pub fn from_node(node: &crate::node::Node) -> TlogState {
        TlogState {
            log: node.log.clone(),
            tree: node.tree.clone(),
            checkpoints: node.checkpoints.clone(),
            ledger: node.state.clone(),
            hashes: node.event_hashes.clone(),
        }
    }
}

/// The tlog routes, to `.merge()` into the HTTP app. See [`routes`](self) for the paths.
pub fn routes(state: TlogState) -> Router {
    routes::router(state)
}
