//! An in-memory [`EventLog`]: for tests, and a second target of the conformance suite.
//!
//! It has the semantics of the sled backend (atomic batches, an exact expected length, the
//! chain checked before anything is written, every event re-checked when read) without the
//! durability: the events live as long as some handle on them does. [`MemoryLog::reopen`]
//! plays the part of a restart: a new log, with its own head watchers, over the events the old
//! one held, re-checked from event 0 the way opening a store checks its tail.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use events::{ChainVerifier, Hash, SealedEvent};
use tokio::sync::watch;

use super::{
    check_continues, check_limit, decode_event, EventLog, Head, StoreError, READ_EVENTS_MAX,
};

/// The most events one append takes (as in the sled backend).
pub const APPEND_EVENTS_MAX: usize = 65_536;

/// An event as kept: the hash beside the canonical bytes, like the sled backend keeps it, so a
/// read re-hashes and compares instead of handing out what was stored.
#[derive(Clone)]
struct Stored {
    hash: Hash,
    canonical: Arc<[u8]>,
}

struct Inner {
    events: Mutex<Vec<Stored>>,
    head_tx: watch::Sender<Head>,
    /// What one append takes ([`MemoryLog::with_limits`] lowers it, as EventStoreDB's is).
    limits: Mutex<super::AppendLimits>,
}

/// The in-memory event log. Cheap to clone; clones share the events (two writers on one log).
#[derive(Clone)]
pub struct MemoryLog {
    inner: Arc<Inner>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog::new()
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> MemoryLog {
        MemoryLog::from_stored(Vec::new(), Head::default())
    }

    fn from_stored(events: Vec<Stored>, head: Head) -> MemoryLog {
        let (head_tx, _) = watch::channel(head);
        MemoryLog {
            inner: Arc::new(Inner {
                events: Mutex::new(events),
                head_tx,
                limits: Mutex::new(super::AppendLimits {
                    events: APPEND_EVENTS_MAX,
                    bytes: usize::MAX,
                }),
            }),
        }
    }

    /// A new log over a copy of this one's events, as if the process had restarted: the whole
    /// chain is re-checked, and watchers of the old log see nothing of the new one.
    pub fn reopen(&self) -> Result<MemoryLog, StoreError> {
        let events = self.lock()?.clone();
        let mut chain = ChainVerifier::new();
        for (seq, stored) in events.iter().enumerate() {
            let event = decode_event(seq as u64, stored.hash, &stored.canonical)?;
            chain.push_sealed(&event).map_err(StoreError::Corrupt)?;
        }
        let head = Head {
            len: chain.len(),
            hash: chain.head(),
        };
        Ok(MemoryLog::from_stored(events, head))
    }

    /// This log with lower append limits, as a backend with a size limit per append
    /// (EventStoreDB's `MaxAppendSize`) has: for tests of how the writer batches under them.
    pub fn with_limits(self, limits: super::AppendLimits) -> MemoryLog {
        *self
            .inner
            .limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = limits;
        self
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Stored>>, StoreError> {
        self.inner
            .events
            .lock()
            .map_err(|_| StoreError::io("memory log lock poisoned"))
    }

    fn head_now(&self) -> Head {
        *self.inner.head_tx.borrow()
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    fn append_limits(&self) -> super::AppendLimits {
        *self
            .inner
            .limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn head(&self) -> Result<Head, StoreError> {
        Ok(self.head_now())
    }

    async fn append(
        &self,
        expected_len: u64,
        events: Vec<SealedEvent>,
    ) -> Result<Head, StoreError> {
        let limits = self.append_limits();
        check_limit("events in one append", events.len(), limits.events)?;
        let bytes: usize = events.iter().map(|e| e.canonical_bytes().len()).sum();
        check_limit("bytes of event data in one append", bytes, limits.bytes)?;
        // The lock is held from the length check to the publication of the new head, so two
        // writers on clones of one log can never both succeed at the same length.
        let mut stored = self.lock()?;
        let head = self.head_now();
        assert_eq!(head.len, stored.len() as u64, "memory log head out of step");
        if expected_len != head.len {
            return Err(StoreError::Conflict {
                expected: expected_len,
                actual: head.len,
            });
        }
        if events.is_empty() {
            return Ok(head);
        }
        let new_head = check_continues(head, &events)?;
        stored.extend(events.iter().map(|e| Stored {
            hash: e.hash(),
            canonical: Arc::from(e.canonical_bytes()),
        }));
        self.inner.head_tx.send_replace(new_head);
        Ok(new_head)
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<SealedEvent>, StoreError> {
        let limit = limit.min(READ_EVENTS_MAX);
        // Copy out under the lock, decode outside it.
        let page: Vec<Stored> = {
            let stored = self.lock()?;
            let start = usize::try_from(from)
                .unwrap_or(usize::MAX)
                .min(stored.len());
            let end = start.saturating_add(limit).min(stored.len());
            stored[start..end].to_vec()
        };
        page.iter()
            .enumerate()
            .map(|(i, s)| decode_event(from + i as u64, s.hash, &s.canonical))
            .collect()
    }

    fn watch_head(&self) -> watch::Receiver<Head> {
        self.inner.head_tx.subscribe()
    }
}
