//! Event hash → seq, for proofs asked for by hash. Derived data kept in sled tree
//! `event_hashes` (32-byte event hash → 8-byte big-endian seq, and the key `position` → how
//! many events are indexed), fed from a subscription to the log off the append path: it may
//! lag the log by a moment, and after a crash it resumes from its stored position.

use std::sync::Arc;

use events::Hash;
use tokio::sync::watch;

use crate::store::{subscribe, EventLog, StoreError, READ_EVENTS_MAX};

/// The name of the sled tree of the index.
pub const EVENT_HASHES_TREE_NAME: &str = "event_hashes";
const POSITION_KEY: &[u8] = b"position";

/// The index of event hashes.
#[derive(Clone)]
pub struct EventHashIndex {
    tree: sled::Tree,
}

impl EventHashIndex {
    /// The index in `db`.
    pub fn open(db: &sled::Db) -> Result<EventHashIndex, StoreError> {
        Ok(EventHashIndex {
            tree: db
                .open_tree(EVENT_HASHES_TREE_NAME)
                .map_err(StoreError::io)?,
        })
    }

    /// An index in memory only.
    pub fn temporary() -> Result<EventHashIndex, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(StoreError::io)?;
        EventHashIndex::open(&db)
    }

    /// The seq of the event with this hash, if indexed.
    pub fn seq(&self, hash: &Hash) -> Result<Option<u64>, StoreError> {
        let Some(value) = self.tree.get(hash.as_bytes()).map_err(StoreError::io)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Io("an event hash index entry is not 8 bytes".into()))?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    /// How many events (from seq 0) are indexed.
    pub fn position(&self) -> Result<u64, StoreError> {
        Ok(self
            .tree
            .get(POSITION_KEY)
            .map_err(StoreError::io)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    fn index(&self, events: &[events::SealedEvent]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for e in events {
            batch.insert(e.hash().as_bytes(), &e.seq().to_be_bytes());
        }
        batch.insert(POSITION_KEY, &(last.seq() + 1).to_be_bytes());
        self.tree.apply_batch(batch).map_err(StoreError::io)
    }

    /// Starts indexing the log from the stored position on, until the subscription ends or
    /// `shutdown` turns true.
    pub fn spawn_follow(
        &self,
        log: Arc<dyn EventLog>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let index = self.clone();
        let from = self.position()?;
        Ok(tokio::spawn(async move {
            let mut events = subscribe(log, from);
            loop {
                let page = tokio::select! {
                    page = events.recv_page(READ_EVENTS_MAX) => page,
                    _ = shutdown.changed() => break,
                };
                let page = match page {
                    None => break,
                    Some(Ok(page)) => page,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "the event hash index stopped");
                        break;
                    }
                };
                let index = index.clone();
                let done = tokio::task::spawn_blocking(move || index.index(&page)).await;
                if !matches!(done, Ok(Ok(()))) {
                    tracing::error!("the event hash index could not write; it stops");
                    break;
                }
            }
            events.close().await;
            let _ = index.tree.flush_async().await;
        }))
    }
}
