//! A running ledger: its log, its writer and its projection runner, opened from a data
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events::Id;
use projections::LedgerState;
use tokio::sync::watch;

use crate::projector::{load_state, spawn_projector, SnapshotStore};
use crate::store::{EventLog, SledLog, StoreError};
use crate::writer::{spawn_writer, Clock, WriterConfig, WriterHandle};

/// The ledger id a new data directory gets when none is given.
pub const DEFAULT_LEDGER: &str = "main";

pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// The ledger's id; taken from the data directory when it exists already.
    pub ledger: Option<Id>,
    pub clock: Clock,
}

/// A ledger open for reading and writing.
pub struct Node {
    pub ledger: Id,
    pub log: Arc<dyn EventLog>,
    pub writer: WriterHandle,
    pub state: watch::Receiver<Arc<LedgerState>>,
    shutdown_tx: watch::Sender<bool>,
    writer_task: tokio::task::JoinHandle<()>,
    projector_task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// Reads or records the data directory's ledger id.
pub fn ledger_id(db: &sled::Db, wanted: Option<&Id>) -> anyhow::Result<Id> {
    let meta = db.open_tree("meta")?;
    match meta.get(b"ledger")? {
        Some(stored) => {
            let stored = Id::new(std::str::from_utf8(&stored)?)?;
            if let Some(w) = wanted {
                anyhow::ensure!(
                    w == &stored,
                    "--ledger {w} does not match this data directory's ledger {stored}"
                );
            }
            Ok(stored)
        }
        None => {
            let id = wanted
                .cloned()
                .unwrap_or_else(|| Id::new(DEFAULT_LEDGER).expect("default id is valid"));
            meta.insert(b"ledger", id.as_str().as_bytes())?;
            Ok(id)
        }
    }
}

impl Node {
    /// Opens the ledger in a data directory on the embedded sled backend.
    pub async fn open(config: NodeConfig) -> anyhow::Result<Node> {
        Ok(Node::open_with_db(config).await?.0)
    }

    /// Like [`Node::open`], and also hands back the sled database so other trees (the HTTP
    /// service's tokens) can live beside the log: sled allows one open per directory.
    pub async fn open_with_db(config: NodeConfig) -> anyhow::Result<(Node, sled::Db)> {
        let sled = open_sled(&config.data_dir)?;
        let db = sled.db().clone();
        let ledger = ledger_id(&db, config.ledger.as_ref())?;
        let snapshots = SnapshotStore::open(&db)?;
        let node = Node::open_with(Arc::new(sled), Some(snapshots), ledger, config.clock).await?;
        Ok((node, db))
    }

    /// Opens a ledger on any backend. `snapshots`, when given, persists the read models.
    pub async fn open_with(
        log: Arc<dyn EventLog>,
        snapshots: Option<SnapshotStore>,
        ledger: Id,
        clock: Clock,
    ) -> anyhow::Result<Node> {
        let state = load_state(log.as_ref(), snapshots.as_ref())
            .await
            .context("folding the log into the ledger state")?;
        tracing::info!(ledger = %ledger, events = state.position, "ledger open");
        let (writer, writer_task) = spawn_writer(
            log.clone(),
            state.clone(),
            WriterConfig {
                ledger: ledger.clone(),
                clock,
            },
        );
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (state_rx, projector_task) =
            spawn_projector(log.clone(), state, snapshots, shutdown_rx);
        Ok(Node {
            ledger,
            log,
            writer,
            state: state_rx,
            shutdown_tx,
            writer_task,
            projector_task,
        })
    }

    /// The read models once they reflect at least `position` events, waiting at most
    /// `timeout`; `None` when they did not catch up in time.
    pub async fn state_at(&self, position: u64, timeout: Duration) -> Option<Arc<LedgerState>> {
        let mut rx = self.state.clone();
        let result = tokio::time::timeout(timeout, rx.wait_for(|s| s.position >= position)).await;
        match result {
            Ok(Ok(state)) => Some(state.clone()),
            _ => None,
        }
    }

    /// The current read models.
    pub fn state(&self) -> Arc<LedgerState> {
        self.state.borrow().clone()
    }

    /// Finishes the writes in hand and lets the projections catch up and persist. Appends
    /// are durable when acknowledged, so nothing else needs syncing.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        drop(self.writer);
        self.writer_task.await.context("writer task")?;
        let head = self.log.head().await?;
        let mut state = self.state.clone();
        let caught_up = state.wait_for(|s| s.position >= head.len);
        if tokio::time::timeout(SHUTDOWN_CATCH_UP, caught_up)
            .await
            .is_err()
        {
            tracing::warn!("projections did not catch up before shutdown; they resume on start");
        }
        self.shutdown_tx.send_replace(true);
        self.projector_task.await.context("projection task")??;
        Ok(())
    }
}

/// How long shutdown waits for the projections to reach the log's head.
pub const SHUTDOWN_CATCH_UP: Duration = Duration::from_secs(30);

/// Opens the sled log under a data directory, with a clear error when another process holds it.
pub fn open_sled(dir: &Path) -> anyhow::Result<SledLog> {
    SledLog::open(dir).with_context(|| format!("opening the ledger in {}", dir.display()))
}
