//! Storage: one [`EventLog`] trait, one implementation per backend. The log is the only
//! truth; everything else is derived from it.

use std::sync::Arc;

use async_trait::async_trait;
use events::{ChainError, Hash, SealedEvent};
use tokio::sync::{mpsc, watch};

#[cfg(feature = "eventstore")]
pub mod eventstore_log;
pub mod memory_log;
pub mod merkle;
pub mod sled_log;

#[cfg(feature = "eventstore")]
pub use eventstore_log::EventStoreLog;
pub use memory_log::MemoryLog;
pub use merkle::{PersistedTree, TreeAt, TreeReadError, TreeStore};
pub use sled_log::{BarrierHandle, SledLog, SledLogConfig, SEGMENT_SIZE};

/// The most events one `read` returns.
pub const READ_EVENTS_MAX: usize = 4096;
/// The most hashes one [`EventLog::read_hashes`] returns.
pub const READ_HASHES_MAX: usize = 65_536;

/// The log's length (the next seq) and the hash of its last event (zeros when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub len: u64,
    pub hash: Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first (optimistic concurrency).
    #[error("expected the log to hold {expected} events, it holds {actual}")]
    Conflict { expected: u64, actual: u64 },
    /// What the caller asked to append does not continue the chain.
    #[error("the batch does not continue the chain: {0}")]
    NotContinuing(ChainError),
    /// What storage holds does not verify.
    #[error("the stored log is corrupt: {0}")]
    Corrupt(ChainError),
    #[error("storage failed: {0}")]
    Io(String),
    #[error("{what} is {value}; the limit is {max}")]
    Limit {
        what: &'static str,
        value: u64,
        max: u64,
    },
}

impl StoreError {
    pub fn io(e: impl std::fmt::Display) -> StoreError {
        StoreError::Io(e.to_string())
    }
}

/// An append-only, hash-chained event log.
///
/// `append` is atomic (all of the batch or none of it) and durable when it returns: the
/// events survive a process crash and a power loss. It succeeds only when the log holds
/// exactly `expected_len` events, so two writers can never interleave.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The current head.
    async fn head(&self) -> Result<Head, StoreError>;
    /// Appends a batch that continues the chain at `expected_len`.
    async fn append(&self, expected_len: u64, events: Vec<SealedEvent>)
        -> Result<Head, StoreError>;
    /// Reads up to `limit` (at most [`READ_EVENTS_MAX`]) events from `from` on, in order;
    /// none when `limit` is 0 or `from` is at or past the head.
    /// Every event read is re-hashed, so corruption is reported, never served.
    async fn read(&self, from: u64, limit: usize) -> Result<Vec<SealedEvent>, StoreError>;
    /// A receiver that sees the head every time the log grows.
    fn watch_head(&self) -> watch::Receiver<Head>;
    /// The hashes of up to `limit` (at most [`READ_HASHES_MAX`]) events from `from` on, as
    /// the backend stores them: for building derived indexes fast. Unlike [`EventLog::read`]
    /// a backend may skip re-hashing here (sled does); whoever serves an event found through
    /// one of these hashes reads it with `read`, which checks it.
    async fn read_hashes(&self, from: u64, limit: usize) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(READ_HASHES_MAX));
        while out.len() < limit.min(READ_HASHES_MAX) {
            let at = from + out.len() as u64;
            let page = self
                .read(at, limit.min(READ_HASHES_MAX) - out.len())
                .await?;
            if page.is_empty() {
                break;
            }
            out.extend(page.iter().map(SealedEvent::hash));
        }
        Ok(out)
    }
    /// The persisted Merkle tree, when the backend maintains it atomically with its appends
    /// (sled does). `None` (the default) means the node keeps one itself with
    /// [`merkle::TreeStore`], fed from [`subscribe`].
    fn merkle(&self) -> Option<Arc<PersistedTree>> {
        None
    }
    /// The most one append takes; `append` refuses more with [`StoreError::Limit`]. The
    /// writer closes a batch before it would cross them, so submissions that each fit are
    /// never refused for having been batched together.
    fn append_limits(&self) -> AppendLimits;
}

/// What one [`EventLog::append`] takes at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendLimits {
    pub events: usize,
    /// Bytes of canonical event data.
    pub bytes: usize,
}

/// The most events a subscription buffers before it waits for its reader.
pub const SUBSCRIPTION_BUFFER_MAX: usize = 8192;

/// A live stream of events; see [`subscribe`].
pub struct Subscription {
    pub rx: mpsc::Receiver<Result<SealedEvent, StoreError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next events in order: waits for one, then takes what else is already there, up
    /// to `max`. `None` when the stream has ended; an error ends it.
    pub async fn recv_page(&mut self, max: usize) -> Option<Result<Vec<SealedEvent>, StoreError>> {
        let first = self.rx.recv().await?;
        let mut page = match first {
            Ok(e) => vec![e],
            Err(e) => return Some(Err(e)),
        };
        while page.len() < max {
            match self.rx.try_recv() {
                Ok(Ok(e)) => page.push(e),
                Ok(Err(e)) => return Some(Err(e)),
                Err(_) => break,
            }
        }
        Some(Ok(page))
    }

    /// Ends the subscription and waits until its task has let go of the log.
    pub async fn close(self) {
        drop(self.rx);
        let _ = self.task.await;
    }
}

/// Every event from `from` on, in order with no gaps: first those already stored, then new
/// ones as they are appended. A read that fails with [`StoreError::Io`] (a network blip to
/// EventStoreDB, a leader change) is retried after [`SUBSCRIPTION_RETRY_FIRST`], doubling up
/// to [`SUBSCRIPTION_RETRY_MAX`], so the followers (projections, the event-hash index, the
/// Merkle tree of a remote log) never stop for a transient failure; any other error
/// (a corrupt log) ends the stream with that error. It ends quietly when the receiver is
/// dropped.
pub fn subscribe(log: Arc<dyn EventLog>, from: u64) -> Subscription {
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER_MAX);
    let mut head_rx = log.watch_head();
    let task = tokio::spawn(async move {
        let mut next = from;
        let mut retry = SUBSCRIPTION_RETRY_FIRST;
        loop {
            let len = head_rx.borrow_and_update().len;
            while next < len {
                match log.read(next, READ_EVENTS_MAX).await {
                    Ok(events) if events.is_empty() => break,
                    Ok(events) => {
                        retry = SUBSCRIPTION_RETRY_FIRST;
                        for e in events {
                            next = e.seq() + 1;
                            if tx.send(Ok(e)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(StoreError::Io(reason)) => {
                        tracing::warn!(
                            from = next,
                            error = %reason,
                            retry_ms = retry.as_millis() as u64,
                            "reading the log failed; retrying"
                        );
                        tokio::select! {
                            () = tokio::time::sleep(retry) => {}
                            () = tx.closed() => return,
                        }
                        retry = (retry * 2).min(SUBSCRIPTION_RETRY_MAX);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            tokio::select! {
                changed = head_rx.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Subscription { rx, task }
}

/// How long a subscription waits before it reads again after a failed read; it doubles
/// after each failure in a row.
pub const SUBSCRIPTION_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest a subscription waits between two reads that fail.
pub const SUBSCRIPTION_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses an append whose `what` is `value`, over the backend's limit `max`.
pub(crate) fn check_limit(what: &'static str, value: usize, max: usize) -> Result<(), StoreError> {
    if value > max {
        return Err(StoreError::Limit {
            what,
            value: value as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// Re-hashes a stored event and checks it against the hash stored beside it and its
/// position.
pub(crate) fn decode_event(
    seq: u64,
    stored_hash: Hash,
    canonical: &[u8],
) -> Result<SealedEvent, StoreError> {
    let event = SealedEvent::from_canonical(canonical.to_vec()).map_err(|e| {
        StoreError::Corrupt(match e {
            ChainError::Malformed { reason, .. } => ChainError::Malformed {
                seq: Some(seq),
                reason,
            },
            other => other,
        })
    })?;
    if event.hash() != stored_hash {
        return Err(StoreError::Corrupt(ChainError::HashMismatch {
            seq,
            declared: stored_hash,
            computed: event.hash(),
        }));
    }
    if event.seq() != seq {
        return Err(StoreError::Corrupt(ChainError::SeqGap {
            expected: seq,
            found: event.seq(),
        }));
    }
    Ok(event)
}

/// Checks that `events` continue a chain whose head is `head`: consecutive seqs from
/// `head.len`, each `prev` the hash before it. Shared by every backend.
pub fn check_continues(head: Head, events: &[SealedEvent]) -> Result<Head, StoreError> {
    let mut chain = events::ChainVerifier::resume(head.len, head.hash);
    for e in events {
        chain.push_sealed(e).map_err(StoreError::NotContinuing)?;
    }
    Ok(Head {
        len: chain.len(),
        hash: chain.head(),
    })
}
