//! The projection runner: folds the log into the read models as it grows, publishes each new
//! state to readers (a snapshot is an O(1) clone), and persists it in sled with the position
//! it reflects so a restart resumes instead of refolding from event 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use projections::LedgerState;
use tokio::sync::watch;

use crate::store::{subscribe, EventLog, StoreError, READ_EVENTS_MAX};
use crate::writer::{catch_up, hash_before};

/// How often, at most, the runner persists its state while events keep arriving.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);

/// Serializes a state; two states are equal exactly when these bytes are.
pub fn encode_state(state: &LedgerState) -> Vec<u8> {
    bincode::serialize(state).expect("ledger state serializes")
}

/// Persisted read models in a sled tree beside the log.
#[derive(Clone)]
pub struct SnapshotStore {
    tree: sled::Tree,
}

const LEDGER_STATE_KEY: &[u8] = b"ledger_state";

impl SnapshotStore {
    pub fn open(db: &sled::Db) -> Result<SnapshotStore, StoreError> {
        Ok(SnapshotStore {
            tree: db.open_tree("projections").map_err(StoreError::io)?,
        })
    }

    /// The persisted state, if any. An unreadable snapshot is ignored (it is rebuildable).
    pub fn load(&self) -> Result<Option<LedgerState>, StoreError> {
        let Some(bytes) = self.tree.get(LEDGER_STATE_KEY).map_err(StoreError::io)? else {
            return Ok(None);
        };
        match bincode::deserialize(&bytes) {
            Ok(state) => Ok(Some(state)),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable projection snapshot");
                Ok(None)
            }
        }
    }

    /// Persists a state. Not fsynced: a lost snapshot is rebuilt from the log.
    pub fn save(&self, state: &LedgerState) -> Result<(), StoreError> {
        self.tree
            .insert(LEDGER_STATE_KEY, encode_state(state))
            .map_err(StoreError::io)?;
        self.tree.flush().map_err(StoreError::io)?;
        Ok(())
    }

    /// Forgets the persisted state.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.tree.remove(LEDGER_STATE_KEY).map_err(StoreError::io)?;
        Ok(())
    }
}

/// The state at the log's head: the snapshot when it matches the log, else a fold from 0.
pub async fn load_state(
    log: &dyn EventLog,
    snapshots: Option<&SnapshotStore>,
) -> Result<LedgerState, StoreError> {
    let mut state = LedgerState::default();
    if let Some(store) = snapshots {
        if let Some(snapshot) = store.load()? {
            let head = log.head().await?;
            if snapshot.position <= head.len
                && hash_before(log, snapshot.position).await? == snapshot.head
            {
                state = snapshot;
            } else {
                tracing::warn!(
                    position = snapshot.position,
                    "the projection snapshot does not match the log; refolding from event 0"
                );
            }
        }
    }
    catch_up(log, &mut state).await?;
    Ok(state)
}

/// Starts the runner from `state`. It publishes every new state on the returned receiver and
/// persists (if given a store) at most every [`SNAPSHOT_INTERVAL`] and when `shutdown`
/// turns true.
pub fn spawn_projector(
    log: Arc<dyn EventLog>,
    state: LedgerState,
    snapshots: Option<SnapshotStore>,
    mut shutdown: watch::Receiver<bool>,
) -> (
    watch::Receiver<Arc<LedgerState>>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    let (tx, rx) = watch::channel(Arc::new(state.clone()));
    let task = tokio::spawn(async move {
        let mut state = state;
        let mut events = subscribe(log.clone(), state.position);
        let head_rx = log.watch_head();
        let mut saved_position = state.position;
        let mut saved_at = Instant::now();
        let save = |state: &LedgerState, saved_position: &mut u64, saved_at: &mut Instant| {
            if let Some(store) = &snapshots {
                if state.position != *saved_position {
                    if let Err(e) = store.save(state) {
                        tracing::warn!(error = %e, "could not persist the projections");
                    }
                    *saved_position = state.position;
                }
            }
            *saved_at = Instant::now();
        };
        loop {
            tokio::select! {
                page = events.recv_page(READ_EVENTS_MAX) => {
                    let Some(page) = page else { break };
                    for event in page? {
                        state.apply(&event).map_err(|e| {
                            StoreError::Corrupt(events::ChainError::Malformed {
                                seq: Some(event.seq()),
                                reason: e.to_string(),
                            })
                        })?;
                    }
                    tx.send_replace(Arc::new(state.clone()));
                    crate::metrics::record_positions(state.position, head_rx.borrow().len);
                    if saved_at.elapsed() >= SNAPSHOT_INTERVAL {
                        save(&state, &mut saved_position, &mut saved_at);
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        events.close().await;
        save(&state, &mut saved_position, &mut saved_at);
        Ok(())
    });
    (rx, task)
}
