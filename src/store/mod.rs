//! Storage: one [`EventLog`] trait, one implementation per backend. The log is the only
//! truth; everything else is derived from it.

use std::sync::Arc;

use async_trait::async_trait;
use events::{ChainError, Hash, SealedEvent};
use tokio::sync::{mpsc, watch};

mod compact;
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

/// The most events a subscription's channel holds (in pages of at most [`READ_EVENTS_MAX`])
/// before it waits for its reader.
pub const SUBSCRIPTION_BUFFER_MAX: usize = 8192;

/// A live stream of events; see [`subscribe`]. Events travel in pages (an append's worth at
/// a time), not one channel message each: a batch of 1024 gifts is one message, not 1024.
pub struct Subscription {
    rx: mpsc::Receiver<Result<Vec<SealedEvent>, StoreError>>,
    /// Events of a page received and not yet handed out.
    buffered: std::collections::VecDeque<SealedEvent>,
    /// The error that ended the stream, received behind events not yet handed out.
    ended: Option<StoreError>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// Waits until events are buffered: `Some(Ok)` then, `None` when the stream has ended,
    /// the error that ended it otherwise. Cancel-safe: nothing changes until a page arrives.
    async fn fill(&mut self) -> Option<Result<(), StoreError>> {
        if self.buffered.is_empty() {
            if let Some(e) = self.ended.take() {
                return Some(Err(e));
            }
            match self.rx.recv().await? {
                Ok(page) => self.buffered.extend(page),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(()))
    }

    /// The next event. `None` when the stream has ended; an error ends it. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<SealedEvent, StoreError>> {
        if let Err(e) = self.fill().await? {
            return Some(Err(e));
        }
        self.buffered.pop_front().map(Ok)
    }

    /// The next events in order: waits for one, then takes what else is already there, up
    /// to `max` (at least one). `None` when the stream has ended; an error ends it.
    /// Cancel-safe.
    pub async fn recv_page(&mut self, max: usize) -> Option<Result<Vec<SealedEvent>, StoreError>> {
        if let Err(e) = self.fill().await? {
            return Some(Err(e));
        }
        let max = max.max(1);
        while self.buffered.len() < max && self.ended.is_none() {
            match self.rx.try_recv() {
                Ok(Ok(page)) => self.buffered.extend(page),
                Ok(Err(e)) => self.ended = Some(e),
                Err(_) => break,
            }
        }
        let n = self.buffered.len().min(max);
        Some(Ok(self.buffered.drain(..n).collect()))
    }

    /// Ends the subscription and waits until its task has let go of the log.
    pub async fn close(self) {
        drop(self.rx);
        let _ = self.task.await;
    }
}

/// Every event from `from` on, in order with no gaps: first those already stored, then new
/// ones as they are appended. Reads go through [`read_retrying`], so the followers (the
/// event-hash index, the Merkle tree of a remote log, the public event stream) never stop
/// for a transient failure; any other error (a corrupt log) ends the stream with that
/// error. It ends quietly when the receiver is dropped.
pub fn subscribe(log: Arc<dyn EventLog>, from: u64) -> Subscription {
    let (tx, rx) = mpsc::channel((SUBSCRIPTION_BUFFER_MAX / READ_EVENTS_MAX).max(1));
    let mut head_rx = log.watch_head();
    let task = tokio::spawn(async move {
        let mut next = from;
        loop {
            let len = head_rx.borrow_and_update().len;
            while next < len {
                let Some(read) = read_retrying(log.as_ref(), next, tx.closed()).await else {
                    return;
                };
                match read {
                    Ok(events) if events.is_empty() => break,
                    Ok(events) => {
                        next = events.last().map_or(next, |e| e.seq() + 1);
                        if tx.send(Ok(events)).await.is_err() {
                            return;
                        }
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
    Subscription {
        rx,
        buffered: std::collections::VecDeque::new(),
        ended: None,
        task,
    }
}

/// Up to [`READ_EVENTS_MAX`] events from `from` on, for a follower of the log: a read that
/// fails with [`StoreError::Io`] (a network blip to EventStoreDB, a leader change) is
/// retried after [`SUBSCRIPTION_RETRY_FIRST`], doubling up to [`SUBSCRIPTION_RETRY_MAX`],
/// so the followers never stop for a transient failure; any other error (a corrupt log) is
/// returned. `None` when `stop` completes during a wait between two reads. A read itself is
/// never cut short: one dropped half-way would leave its blocking thread holding the log
/// (and sled's lock on the data directory) after its follower has stopped.
pub async fn read_retrying(
    log: &dyn EventLog,
    from: u64,
    stop: impl std::future::Future<Output = ()>,
) -> Option<Result<Vec<SealedEvent>, StoreError>> {
    tokio::pin!(stop);
    let mut retry = SUBSCRIPTION_RETRY_FIRST;
    loop {
        match log.read(from, READ_EVENTS_MAX).await {
            Err(StoreError::Io(reason)) => {
                tracing::warn!(
                    from,
                    error = %reason,
                    retry_ms = retry.as_millis() as u64,
                    "reading the log failed; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = &mut stop => return None,
                }
                retry = (retry * 2).min(SUBSCRIPTION_RETRY_MAX);
            }
            read => return Some(read),
        }
    }
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
    check_stored(seq, stored_hash, event)
}

/// `event`, read back from where `seq` is stored beside `stored_hash`, once its hash and
/// its position are those.
pub(crate) fn check_stored(
    seq: u64,
    stored_hash: Hash,
    event: SealedEvent,
) -> Result<SealedEvent, StoreError> {
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
