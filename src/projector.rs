//! The projection runner: folds the log into the read models as it grows, publishes each new
//! state to readers (a snapshot is an O(1) clone), and persists it in sled with the position
//! it reflects so a restart resumes instead of refolding from event 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use projections::LedgerState;
use tokio::sync::watch;

use crate::store::{read_retrying, EventLog, StoreError};
use crate::writer::{catch_up, hash_before, WriterProgress};

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

/// The key of the persisted state. It names the layout of [`LedgerState`] (bincode is not
/// self-describing, so a snapshot of another layout could be misread rather than refused):
/// change it whenever the state's fields change, and add the old key below. A snapshot
/// under another key is never read; the state is refolded from the log.
const LEDGER_STATE_KEY: &[u8] = b"ledger_state.v9";
/// Keys of earlier layouts, removed when found: `ledger_state` (before the layout was
/// versioned), `ledger_state.v2` (before requests kept their requester's token issuer, or
/// before statement lines were kept in the state: both were called v2 while they were
/// being made), `ledger_state.v3` (before statement lines' fees were signed),
/// `ledger_state.v4` (before statement references were indexed by reference first and
/// linked lines by their entry), `ledger_state.v5` (before refunds gave back fees:
/// `Balances::fees_returned`, `Donation::fee_returned_minor`), `ledger_state.v6` (before
/// staff tokens were events, `LedgerState::staff_tokens`, fees given back after a refund
/// were dated, `LedgerState::late_fee_returns`, and statement lines kept their booking
/// time, `StatementLine::booked_ms`), `ledger_state.v7` (before matches could be held
/// for review: `Balances::frozen`, `LedgerState::match_holds`), `ledger_state.v8` (before
/// projects indexed all their donations, `Project::donations`, not only the latest 20).
const OLD_LEDGER_STATE_KEYS: &[&[u8]] = &[
    b"ledger_state",
    b"ledger_state.v2",
    b"ledger_state.v3",
    b"ledger_state.v4",
    b"ledger_state.v5",
    b"ledger_state.v6",
    b"ledger_state.v7",
    b"ledger_state.v8",
];

impl SnapshotStore {
    pub fn open(db: &sled::Db) -> Result<SnapshotStore, StoreError> {
        Ok(SnapshotStore {
            tree: db.open_tree("projections").map_err(StoreError::io)?,
        })
    }

    /// The persisted state, if any. An unreadable snapshot is ignored (it is rebuildable).
    /// That includes one sled cannot read back: a snapshot is larger than sled's blob
    /// threshold, so sled keeps it in a blob file, which it writes without fsync; after a
    /// power loss the file may be gone or torn.
    pub fn load(&self) -> Result<Option<LedgerState>, StoreError> {
        for old in OLD_LEDGER_STATE_KEYS {
            if self.tree.remove(old).map_err(StoreError::io)?.is_some() {
                tracing::info!("dropped a projection snapshot of an older format; rebuilding");
            }
        }
        let bytes = match self.tree.get(LEDGER_STATE_KEY) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a projection snapshot sled cannot read");
                return Ok(None);
            }
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
        for key in OLD_LEDGER_STATE_KEYS.iter().chain([&LEDGER_STATE_KEY]) {
            self.tree.remove(key).map_err(StoreError::io)?;
        }
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
/// persists (if given a store) when [`snapshot_due`] says so and when `shutdown` turns true.
///
/// With `writer` (the local writer's progress, see [`WriterProgress`]), events that writer
/// appends are not folded a second time, nor even read: the runner adopts the writer's
/// state, which shares its structure, and waits for it while the head is within the append
/// in flight. It reads and folds only what the writer will not publish: events of other
/// writers on a shared log, or those of an append that failed after the log took them.
pub fn spawn_projector(
    log: Arc<dyn EventLog>,
    state: LedgerState,
    snapshots: Option<SnapshotStore>,
    writer: Option<WriterProgress>,
    mut shutdown: watch::Receiver<bool>,
) -> (
    watch::Receiver<Arc<LedgerState>>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
) {
    let (tx, rx) = watch::channel(Arc::new(state.clone()));
    let task = tokio::spawn(async move {
        let mut state = state;
        let mut writer = writer;
        let mut head_rx = log.watch_head();
        let mut saved = Saved {
            position: state.position,
            at: Instant::now(),
        };
        loop {
            let before = state.position;
            let head = head_rx.borrow_and_update().len;
            let mut writers_end = 0;
            if let Some(w) = writer.as_mut() {
                let theirs = w.committed.borrow_and_update().clone();
                if theirs.position > state.position {
                    state = LedgerState::clone(&theirs);
                }
                writers_end = *w.appending.borrow_and_update();
            }
            if head > state.position.max(writers_end) {
                let Some(page) =
                    read_retrying(log.as_ref(), state.position, stopped(&mut shutdown)).await
                else {
                    break;
                };
                let page = page?;
                let folded = state.position;
                for event in page.iter().filter(|e| e.seq() >= folded) {
                    state.apply(event).map_err(|e| {
                        StoreError::Corrupt(events::ChainError::Malformed {
                            seq: Some(event.seq()),
                            reason: e.to_string(),
                        })
                    })?;
                }
            }
            if state.position != before {
                tx.send_replace(Arc::new(state.clone()));
                crate::metrics::record_positions(state.position, head_rx.borrow().len);
                if snapshot_due(&saved, state.position) {
                    saved = save(snapshots.as_ref(), &state).await;
                }
                continue;
            }
            // Nothing (more) to fold: wait for the log, the writer or the shutdown. (A read
            // that gave nothing although the head is further waits too, rather than spin.)
            // A writer that is gone publishes nothing more: from then on everything is
            // folded here.
            tokio::select! {
                changed = head_rx.changed() => if changed.is_err() { break },
                gone = writer_changed(writer.as_mut()) => if gone { writer = None },
                () = stopped(&mut shutdown) => break,
            }
        }
        if state.position != saved.position {
            save(snapshots.as_ref(), &state).await;
        }
        Ok(())
    });
    (rx, task)
}

/// Waits until the writer publishes a state or the extent of a new append; `true` when
/// it has stopped. Never returns without a writer.
async fn writer_changed(writer: Option<&mut WriterProgress>) -> bool {
    let Some(w) = writer else {
        return std::future::pending().await;
    };
    tokio::select! {
        changed = w.committed.changed() => changed.is_err(),
        changed = w.appending.changed() => changed.is_err(),
    }
}

/// Returns once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// When the last snapshot was written.
struct Saved {
    position: u64,
    at: Instant,
}

/// Whether to persist the state at `position` now: at most every [`SNAPSHOT_INTERVAL`], and
/// only once the log has grown by an eighth since the last snapshot (at least
/// [`SNAPSHOT_EVENTS_MIN`] events). Writing a snapshot costs time proportional to the
/// state, so this keeps its cost per event constant however large the ledger grows, while a
/// restart refolds at most about an eighth of the log.
fn snapshot_due(saved: &Saved, position: u64) -> bool {
    let grown = position.saturating_sub(saved.position);
    saved.at.elapsed() >= SNAPSHOT_INTERVAL && grown >= SNAPSHOT_EVENTS_MIN.max(saved.position / 8)
}

/// The fewest new events worth a snapshot.
pub const SNAPSHOT_EVENTS_MIN: u64 = 1000;

/// Persists `state` off the async threads (encoding a large state takes a while). A failure
/// is logged: the snapshot is only a shortcut, rebuilt from the log.
async fn save(store: Option<&SnapshotStore>, state: &LedgerState) -> Saved {
    if let Some(store) = store {
        let (store, copy) = (store.clone(), state.clone());
        match tokio::task::spawn_blocking(move || store.save(&copy)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not persist the projections"),
            Err(e) => tracing::warn!(error = %e, "could not persist the projections"),
        }
    }
    Saved {
        position: state.position,
        at: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot saved under an earlier layout's key is never read (bincode could misread
    /// it) and is dropped; the state is refolded, and the current one reads back.
    #[test]
    fn a_snapshot_of_an_earlier_layout_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = SnapshotStore::open(&db).unwrap();
        let state = LedgerState {
            position: 7,
            ..LedgerState::default()
        };
        for old in OLD_LEDGER_STATE_KEYS {
            store.tree.insert(old, encode_state(&state)).unwrap();
            assert_eq!(store.load().unwrap(), None);
            assert!(!store.tree.contains_key(old).unwrap());
        }
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), Some(state));
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }
}
