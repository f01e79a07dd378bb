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
use crate::store::{EventLog, PersistedTree, SledLog, StoreError, TreeStore};
use crate::tlog::checkpoints::{load_signer, SyncFn, CHECKPOINT_INTERVAL};
use crate::tlog::{CheckpointSigner, CheckpointStore, EventHashIndex};
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
    /// The log's Merkle tree (maintained by the backend, or followed by the node).
    pub tree: Arc<PersistedTree>,
    /// Every published checkpoint, and the verifier key when the ledger signs them.
    pub checkpoints: CheckpointStore,
    /// Event hash → seq.
    pub event_hashes: EventHashIndex,
    shutdown_tx: watch::Sender<bool>,
    writer_task: tokio::task::JoinHandle<()>,
    projector_task: tokio::task::JoinHandle<Result<(), StoreError>>,
    /// The checkpoint signer, the hash index and (for backends without a tree) the tree.
    /// The transparency log's tasks, each with what it does.
    tlog_tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

/// Where a node keeps its transparency-log state.
#[derive(Default)]
pub struct TlogConfig {
    /// The local database for the published checkpoints, the event hash index and (when the
    /// backend keeps no tree itself) the Merkle tree. `None`: a temporary one, which forgets
    /// checkpoints on restart and rebuilds the tree from the log; fine for tests only.
    pub db: Option<sled::Db>,
    /// Makes checkpoint writes durable; `None`: sled's flush.
    pub sync: Option<SyncFn>,
    /// The key that signs checkpoints; without one, none are signed.
    pub signer: Option<events::SignerKey>,
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

/// The data directory's ledger id without recording one: the stored id (checked against
/// `wanted`), else `wanted`, else [`DEFAULT_LEDGER`]. For commands that only read.
pub fn recorded_ledger_id(db: &sled::Db, wanted: Option<&Id>) -> anyhow::Result<Id> {
    let meta = db.open_tree("meta")?;
    match meta.get(b"ledger")? {
        Some(_) => ledger_id(db, wanted),
        None => Ok(wanted
            .cloned()
            .unwrap_or_else(|| Id::new(DEFAULT_LEDGER).expect("default id is valid"))),
    }
}

impl Node {
    /// Opens the ledger in a data directory on the embedded sled backend.
    pub async fn open(config: NodeConfig) -> anyhow::Result<Node> {
        Ok(Node::open_with_db(config).await?.0)
    }

    /// Like [`Node::open`], and also hands back the sled database so other trees can live
    /// beside the log: sled allows one open per directory.
    pub async fn open_with_db(config: NodeConfig) -> anyhow::Result<(Node, sled::Db)> {
        let (node, log) = Node::open_with_log(config).await?;
        Ok((node, log.db().clone()))
    }

    /// Like [`Node::open_with_db`], handing back the sled log itself, whose durability
    /// barrier other trees beside it (the HTTP service's tokens) sync through.
    pub async fn open_with_log(config: NodeConfig) -> anyhow::Result<(Node, SledLog)> {
        let sled = open_sled(&config.data_dir)?;
        let ledger = ledger_id(sled.db(), config.ledger.as_ref())?;
        let node = Node::open_on_sled(sled.clone(), &config.data_dir, ledger, config.clock).await?;
        Ok((node, sled))
    }

    /// Opens a ledger on an already open sled log: projections, the Merkle tree and the
    /// published checkpoints live in the same database; the checkpoint signing key, if
    /// `keygen` made one, is read from the data directory.
    pub async fn open_on_sled(
        sled: SledLog,
        data_dir: &Path,
        ledger: Id,
        clock: Clock,
    ) -> anyhow::Result<Node> {
        let db = sled.db().clone();
        let snapshots = SnapshotStore::open(&db)?;
        let signer = load_signer(data_dir)?;
        let sync_log = sled.clone();
        let tlog = TlogConfig {
            db: Some(db),
            sync: Some(Arc::new(move || sync_log.sync())),
            signer,
        };
        Node::open_with_tlog(Arc::new(sled), Some(snapshots), ledger, clock, tlog).await
    }

    /// Opens a ledger on any backend. `snapshots`, when given, persists the read models.
    pub async fn open_with(
        log: Arc<dyn EventLog>,
        snapshots: Option<SnapshotStore>,
        ledger: Id,
        clock: Clock,
    ) -> anyhow::Result<Node> {
        Node::open_with_tlog(log, snapshots, ledger, clock, TlogConfig::default()).await
    }

    /// [`Node::open_with`], with the transparency log's storage and signing key.
    pub async fn open_with_tlog(
        log: Arc<dyn EventLog>,
        snapshots: Option<SnapshotStore>,
        ledger: Id,
        clock: Clock,
        tlog: TlogConfig,
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
        let (state_rx, projector_task) = spawn_projector(
            log.clone(),
            state,
            snapshots,
            Some(writer.progress()),
            shutdown_rx.clone(),
        );
        let db = match tlog.db {
            Some(db) => db,
            None => sled::Config::new().temporary(true).open()?,
        };
        let sync = tlog.sync.unwrap_or_else(|| {
            let db = db.clone();
            Arc::new(move || db.flush().map(|_| ()).map_err(StoreError::io))
        });
        let mut tlog_tasks = Vec::new();
        let tree = match log.merkle() {
            Some(tree) => tree,
            None => {
                let tiles = db.open_tree(crate::store::merkle::MERKLE_TREE_NAME)?;
                let (tree, task) = TreeStore::follow(tiles, log.clone(), shutdown_rx.clone())
                    .await
                    .context("building the Merkle tree from the log")?;
                tlog_tasks.push(("the Merkle tree", task));
                tree
            }
        };
        let verifier = tlog.signer.as_ref().map(|k| k.verifier_key());
        let checkpoints = CheckpointStore::open(&db, sync, verifier)?;
        if let Some(key) = tlog.signer {
            let signer = CheckpointSigner::new(tree.clone(), checkpoints.clone(), key)
                .context("checking the published checkpoints against the log")?;
            tlog_tasks.push((
                "the checkpoint signer",
                signer.spawn(CHECKPOINT_INTERVAL, shutdown_rx.clone()),
            ));
        }
        // Earlier versions kept the hash index in sled; it now lives in memory.
        db.drop_tree(crate::tlog::index::LEGACY_TREE_NAME)
            .map_err(StoreError::io)?;
        let event_hashes = EventHashIndex::new(log.clone());
        tlog_tasks.push((
            "the event-hash index",
            event_hashes.spawn_follow(shutdown_rx),
        ));
        Ok(Node {
            ledger,
            log,
            writer,
            state: state_rx,
            tree,
            checkpoints,
            event_hashes,
            shutdown_tx,
            writer_task,
            projector_task,
            tlog_tasks,
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

    /// The background tasks that have stopped although the node has not been shut down
    /// (each logged why): the writer, the projections, the transparency log's followers.
    /// Empty while the node is whole.
    pub fn stopped_tasks(&self) -> Vec<&'static str> {
        let mut stopped = Vec::new();
        if self.writer_task.is_finished() {
            stopped.push("the writer");
        }
        if self.projector_task.is_finished() {
            stopped.push("the projections");
        }
        stopped.extend(
            self.tlog_tasks
                .iter()
                .filter(|(_, task)| task.is_finished())
                .map(|(what, _)| *what),
        );
        stopped
    }

    /// Finishes the writes in hand and lets the projections catch up and persist. Appends
    /// are durable when acknowledged, so nothing else needs syncing.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        drop(self.writer);
        let writer = self.writer_task.await.context("writer task");
        let head = self.log.head().await;
        if let Ok(head) = &head {
            let mut state = self.state.clone();
            let caught_up = state.wait_for(|s| s.position >= head.len);
            if tokio::time::timeout(SHUTDOWN_CATCH_UP, caught_up)
                .await
                .is_err()
            {
                tracing::warn!(
                    "projections did not catch up before shutdown; they resume on start"
                );
            }
        }
        self.shutdown_tx.send_replace(true);
        // Every task is waited for, even after one failed: each holds the log (and so
        // sled's lock on the data directory) until it ends. The first failure is returned.
        let projector = self.projector_task.await;
        // The checkpoint signer signs the final size before it stops.
        let mut tlog = Ok(());
        for (what, task) in self.tlog_tasks {
            let ended = task.await.with_context(|| format!("{what} task"));
            tlog = tlog.and(ended);
        }
        writer?;
        head?;
        projector.context("projection task")??;
        tlog
    }
}

/// How long shutdown waits for the projections to reach the log's head.
pub const SHUTDOWN_CATCH_UP: Duration = Duration::from_secs(30);

/// Opens the sled log under a data directory, with a clear error when another process holds
/// it; makes a new, empty ledger there if there is none (for `serve` and `demo`).
pub fn open_sled(dir: &Path) -> anyhow::Result<SledLog> {
    SledLog::open(dir).with_context(|| format!("opening the ledger in {}", dir.display()))
}

/// [`open_sled`] for commands that read or add to a ledger that must already exist
/// (`verify`, `export`, the reports, statement imports...): a data directory holding no
/// ledger, a mistyped `--data` say, is refused, and nothing is created in it. Otherwise it
/// would read as a ledger that is empty and valid.
pub fn open_existing_sled(dir: &Path) -> anyhow::Result<SledLog> {
    if !SledLog::exists(dir) {
        anyhow::bail!(
            "--data {}: no ledger there (no sled database under it); check the path. \
             `ledger demo` or `ledger serve` makes a new ledger",
            dir.display()
        );
    }
    open_sled(dir)
}

/// Which backend holds the log.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// The embedded sled database in the data directory (the default; no setup).
    #[default]
    Sled,
    /// An EventStoreDB/KurrentDB node or cluster (needs the `eventstore` feature).
    Eventstoredb,
}

fn parse_id(s: &str) -> Result<Id, String> {
    Id::new(s).map_err(|e| e.to_string())
}

/// Where the log lives, for every command that opens a ledger. Flattened into the CLI as
/// global options, so `serve`, `demo`, `verify` and the rest take the same flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Where the log lives: `sled` (embedded, in --data) or `eventstoredb`.
    #[arg(
        long = "store",
        global = true,
        value_enum,
        default_value_t,
        env = "LEDGER_STORE"
    )]
    pub kind: StoreKind,
    /// The EventStoreDB/KurrentDB connection string for `--store eventstoredb`, e.g.
    /// `esdb://127.0.0.1:2113?tls=false` or `esdb+discover://node1:2113`.
    #[arg(long, global = true, env = "EVENTSTORE_URL", hide_env_values = true)]
    pub eventstore_url: Option<String>,
    /// The ledger to open on EventStoreDB (it lives in the stream `ledger-<id>`). On sled the
    /// data directory records its own ledger.
    #[arg(long, global = true, env = "LEDGER_ID", value_parser = parse_id)]
    pub ledger: Option<Id>,
}

/// A log opened through [`StoreArgs`], with the store its projection snapshots persist in.
pub struct OpenedLog {
    pub ledger: Id,
    pub log: Arc<dyn EventLog>,
    pub snapshots: Option<SnapshotStore>,
}

/// Where the projection snapshots of an EventStoreDB ledger are cached, under the data
/// directory. The log is on the server; this is a local, disposable cache checked against the
/// log on every open (a mismatch refolds from event 0).
pub fn eventstore_cache_dir(data_dir: &Path, ledger: &Id) -> PathBuf {
    data_dir.join("eventstoredb-cache").join(ledger.as_str())
}

/// Opens the log that `store` names. `ledger` is the id a command wants (the demo's), else
/// `--ledger`; on sled the data directory's own id wins and a different one is refused.
pub async fn open_log(
    store: &StoreArgs,
    data_dir: &Path,
    ledger: Option<&Id>,
) -> anyhow::Result<OpenedLog> {
    let wanted = ledger.or(store.ledger.as_ref());
    match store.kind {
        StoreKind::Sled => {
            let sled = open_existing_sled(data_dir)?;
            let ledger = recorded_ledger_id(sled.db(), wanted)?;
            let snapshots = SnapshotStore::open(sled.db())?;
            Ok(OpenedLog {
                ledger,
                log: Arc::new(sled),
                snapshots: Some(snapshots),
            })
        }
        StoreKind::Eventstoredb => open_eventstore(store, data_dir, wanted).await,
    }
}

#[cfg(feature = "eventstore")]
async fn open_eventstore(
    store: &StoreArgs,
    data_dir: &Path,
    wanted: Option<&Id>,
) -> anyhow::Result<OpenedLog> {
    let url = store.eventstore_url.as_deref().context(
        "--store eventstoredb needs --eventstore-url (or EVENTSTORE_URL), e.g. esdb://127.0.0.1:2113?tls=false",
    )?;
    let ledger = wanted.cloned().context(
        "--store eventstoredb needs --ledger (or LEDGER_ID): the ledger's stream is ledger-<id>",
    )?;
    let log = crate::store::EventStoreLog::connect(url, &ledger)
        .await
        .with_context(|| format!("opening ledger {ledger} on EventStoreDB"))?;
    let cache = eventstore_cache_dir(data_dir, &ledger);
    let db = SledLog::open_db(&cache)
        .with_context(|| format!("opening the projection cache in {}", cache.display()))?;
    ledger_id(&db, Some(&ledger))?;
    let snapshots = SnapshotStore::open(&db)?;
    Ok(OpenedLog {
        ledger,
        log: Arc::new(log),
        snapshots: Some(snapshots),
    })
}

#[cfg(not(feature = "eventstore"))]
async fn open_eventstore(
    _store: &StoreArgs,
    _data_dir: &Path,
    _wanted: Option<&Id>,
) -> anyhow::Result<OpenedLog> {
    anyhow::bail!(
        "--store eventstoredb: this binary was built without the `eventstore` feature; build it with `cargo build --release --features eventstore`"
    )
}

/// Opens a ledger for reading and writing on the backend `store` names (sled by default).
/// `config.ledger` is the id a command wants, else `--ledger` applies.
pub async fn open_backend(store: &StoreArgs, config: NodeConfig) -> anyhow::Result<Node> {
    match store.kind {
        StoreKind::Sled => {
            Node::open(NodeConfig {
                ledger: config.ledger.or_else(|| store.ledger.clone()),
                ..config
            })
            .await
        }
        StoreKind::Eventstoredb => {
            let opened = open_log(store, &config.data_dir, config.ledger.as_ref()).await?;
            Node::open_with(opened.log, opened.snapshots, opened.ledger, config.clock).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Cmd};

    #[test]
    fn sled_is_the_default_and_the_store_flags_are_global() {
        let cli = Cli::try_parse_from(["ledger", "verify"]).unwrap();
        assert_eq!(cli.store.kind, StoreKind::Sled);
        assert!(matches!(cli.command, Cmd::Verify { .. }));

        let cli = Cli::try_parse_from([
            "ledger",
            "balances",
            "--store",
            "eventstoredb",
            "--eventstore-url",
            "esdb://127.0.0.1:2113?tls=false",
            "--ledger",
            "erqi",
        ])
        .unwrap();
        assert_eq!(cli.store.kind, StoreKind::Eventstoredb);
        assert_eq!(
            cli.store.eventstore_url.as_deref(),
            Some("esdb://127.0.0.1:2113?tls=false")
        );
        assert_eq!(cli.store.ledger, Some(Id::new("erqi").unwrap()));

        let err = Cli::try_parse_from(["ledger", "--ledger", "Not An Id", "verify"]).unwrap_err();
        assert!(err.to_string().contains("Not An Id"), "{err}");
    }

    #[tokio::test]
    async fn eventstoredb_without_a_url_or_ledger_is_refused_with_the_flag_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreArgs {
            kind: StoreKind::Eventstoredb,
            eventstore_url: None,
            ledger: Some(Id::new("erqi").unwrap()),
        };
        let err = open_log(&store, dir.path(), None)
            .await
            .err()
            .expect("refused");
        let message = format!("{err:#}");
        if cfg!(feature = "eventstore") {
            assert!(message.contains("--eventstore-url"), "{message}");
            let store = StoreArgs {
                eventstore_url: Some("esdb://127.0.0.1:1?tls=false".into()),
                ledger: None,
                ..store
            };
            let err = open_log(&store, dir.path(), None)
                .await
                .err()
                .expect("refused");
            assert!(format!("{err:#}").contains("--ledger"), "{err:#}");
        } else {
            assert!(message.contains("--features eventstore"), "{message}");
        }
    }

    #[tokio::test]
    async fn read_only_commands_refuse_a_directory_without_a_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("typo");
        let err = open_log(&StoreArgs::default(), &missing, None)
            .await
            .err()
            .expect("refused");
        assert!(format!("{err:#}").contains("no ledger there"), "{err:#}");
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn read_only_commands_do_not_record_a_ledger_id() {
        let dir = tempfile::tempdir().unwrap();
        // A data directory with an empty ledger that has no id yet (made by `serve`, say).
        drop(open_sled(dir.path()).unwrap());
        let opened = open_log(&StoreArgs::default(), dir.path(), None)
            .await
            .unwrap();
        assert_eq!(opened.ledger.as_str(), DEFAULT_LEDGER);
        drop(opened);
        // A demo can still claim the directory for its own ledger afterwards.
        let sled = open_sled(dir.path()).unwrap();
        let id = ledger_id(sled.db(), Some(&Id::new("erqi").unwrap())).unwrap();
        assert_eq!(id.as_str(), "erqi");
    }
}
