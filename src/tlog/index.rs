//! Event hash → seq, for proofs asked for by hash.
//!
//! Kept in memory: a map from the first 8 bytes of each event's hash to its seq (about 20 to
//! 40 bytes an event; 10 million events take some 300 MiB), fed from a subscription to the
//! log off the append path, so it may lag the log by a moment. On open it is rebuilt from
//! the hashes the log stores beside its events ([`EventLog::read_hashes`]; for sled a scan
//! without re-hashing, millions of events a second); until then lookups say the index is
//! still being built. A hit on the 8-byte prefix is confirmed by reading the event and
//! comparing its full hash; the rare second event with the same prefix is kept by its full
//! hash.
//!
//! Earlier versions kept this index in a sled tree, one random-key insert per event, which
//! cost a quarter of the CPU of a busy ledger; the tree (`event_hashes`) is dropped on open.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use events::Hash;
use rustc_hash::FxBuildHasher;
use tokio::sync::watch;

use crate::store::{subscribe, EventLog, StoreError, READ_EVENTS_MAX, READ_HASHES_MAX};

/// The name of the sled tree earlier versions kept the index in; dropped on open.
pub const LEGACY_TREE_NAME: &str = "event_hashes";

/// The index of event hashes.
#[derive(Clone)]
pub struct EventHashIndex {
    log: Arc<dyn EventLog>,
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The first 8 bytes of a hash → the seq of the first event indexed with them.
    by_prefix: HashMap<u64, u64, FxBuildHasher>,
    /// Full hash → seq for events whose prefix was already taken.
    collisions: HashMap<Hash, u64>,
    /// How many events (from seq 0) are indexed.
    position: u64,
    /// Whether every event the log held when the index was opened is indexed.
    built: bool,
}

/// A lookup the index cannot answer yet.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("the event hash index is being built ({indexed} of {total} events so far)")]
    Building { indexed: u64, total: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn prefix(hash: &Hash) -> u64 {
    u64::from_be_bytes(hash.0[..8].try_into().expect("8 bytes"))
}

impl Inner {
    fn insert(&mut self, seq: u64, hash: &Hash) {
        if let Some(&taken) = self.by_prefix.get(&prefix(hash)) {
            if taken != seq {
                self.collisions.insert(*hash, seq);
            }
        } else {
            self.by_prefix.insert(prefix(hash), seq);
        }
    }
}

impl EventHashIndex {
    /// An empty index over `log`; [`EventHashIndex::spawn_follow`] fills it.
    pub fn new(log: Arc<dyn EventLog>) -> EventHashIndex {
        EventHashIndex {
            log,
            inner: Arc::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // The lock guards plain inserts, which cannot leave the maps half-written.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The seq of the event with this hash: `None` when no indexed event has it, an error
    /// while the index is still catching up with the log it was opened on.
    pub async fn seq(&self, hash: &Hash) -> Result<Option<u64>, LookupError> {
        let (candidate, position, built) = {
            let inner = self.read();
            let found = inner
                .collisions
                .get(hash)
                .or_else(|| inner.by_prefix.get(&prefix(hash)))
                .copied();
            (found, inner.position, inner.built)
        };
        if let Some(seq) = candidate {
            let event = self.log.read(seq, 1).await?;
            if event.first().is_some_and(|e| e.hash() == *hash) {
                return Ok(Some(seq));
            }
        }
        if !built {
            return Err(LookupError::Building {
                indexed: position,
                total: self.log.head().await?.len,
            });
        }
        Ok(None)
    }

    /// How many events (from seq 0) are indexed.
    pub fn position(&self) -> u64 {
        self.read().position
    }

    fn index(&self, from: u64, hashes: &[Hash]) {
        let mut inner = self.write();
        for (seq, hash) in (from..).zip(hashes) {
            inner.insert(seq, hash);
        }
        inner.position = from + hashes.len() as u64;
    }

    /// Builds the index from the log's stored hashes, then follows the log until the
    /// subscription ends or `shutdown` turns true.
    pub fn spawn_follow(&self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let index = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let target = match index.log.head().await {
                Ok(head) => head.len,
                Err(e) => {
                    tracing::error!(error = %e, "the event hash index cannot read the log's head");
                    return;
                }
            };
            while index.position() < target {
                // Shutdown is checked between reads, not raced against one: a read dropped
                // half-way would leave its blocking thread holding the log (and sled's lock
                // on the data directory) after shutdown has returned.
                if *shutdown.borrow_and_update() {
                    return;
                }
                let from = index.position();
                match index.log.read_hashes(from, READ_HASHES_MAX).await {
                    Ok(h) if h.is_empty() => break,
                    Ok(h) => index.index(from, &h),
                    Err(e) => {
                        tracing::error!(error = %e, "the event hash index stopped");
                        return;
                    }
                }
            }
            index.write().built = true;
            tracing::info!(
                events = index.position(),
                ms = started.elapsed().as_millis() as u64,
                "event hash index built"
            );
            let mut events = subscribe(index.log.clone(), index.position());
            loop {
                let page = tokio::select! {
                    page = events.recv_page(READ_EVENTS_MAX) => page,
                    _ = shutdown.changed() => break,
                };
                match page {
                    None => break,
                    Some(Ok(page)) => {
                        let Some(first) = page.first().map(|e| e.seq()) else {
                            continue;
                        };
                        let hashes: Vec<Hash> = page.iter().map(|e| e.hash()).collect();
                        index.index(first, &hashes);
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "the event hash index stopped");
                        break;
                    }
                }
            }
            events.close().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_hash_with_a_taken_prefix_is_kept_whole() {
        let mut inner = Inner::default();
        let first = Hash([7; 32]);
        let mut second = Hash([7; 32]);
        second.0[31] = 8;
        inner.insert(0, &first);
        inner.insert(1, &second);
        // Indexing the same event again (a resumed subscription) adds nothing.
        inner.insert(0, &first);
        assert_eq!(inner.by_prefix.get(&prefix(&first)), Some(&0));
        assert_eq!(inner.collisions.get(&second), Some(&1));
        assert_eq!(inner.collisions.len(), 1);
    }
}
