//! The embedded default backend: the log in a sled tree.
//!
//! Layout: tree `log` maps the big-endian `seq` of the first event of a *chunk* to the chunk.
//! A chunk is a run of consecutive events, each encoded as `u32 BE length ‖ 32-byte hash ‖
//! canonical bytes`, or, for a gift or a match sealed here, `0xC1 ‖ u32 BE length ‖ 32-byte
//! hash ‖ compact form` ([`super::compact`]; a canonical record starts with a 0 byte). One
//! append writes its events as one or more chunks of at most [`CHUNK_BYTES_MAX`] in one
//! atomic sled batch, so a batch of 1024 gifts costs some twenty-five sled records instead
//! of 1024. A sled 0.34 leaf splits only after its 17th record,
//! and a page larger than a quarter of a segment less 20 bytes is written as a separate blob
//! file, which sled never fsyncs. New data directories use [`SEGMENT_SIZE`] (1 MiB) segments,
//! under which a leaf of 17 of the largest chunks is no blob; 32 KiB chunks at 512 KiB
//! segments made every leaf a blob at less than half the append rate, and 2, 4, 7 and
//! 12 KiB chunks measured no better than 8 (docs/BENCHMARKS.md).
//!
//! The Merkle tree over the log (RFC 9162) is kept in the same tree, as tiles of 256 nodes
//! under keys `0xFF 'M' ...` that sort after every chunk key (see [`super::merkle`]): each
//! append applies its events, then (hashed meanwhile on a second thread) the tiles they
//! complete, then one durability barrier. sled recovers a prefix of its log, so after a
//! crash the stored tree may be behind the stored log (caught up from the log on open), but
//! never ahead of it. Seqs are
//! limited to below [`SEQ_LIMIT`] (2^56) so chunk keys always sort first. [`SledLogConfig::merkle`] turns it off
//! (for the benchmark that measures what it costs).
//!
//! Durability: sled 0.34's `flush` ends in `sync_file_range`, which neither flushes the
//! drive's write cache nor file metadata. After every flush this backend fsyncs the blob
//! files sled wrote since the last flush ([`SledLog::sync`]), then calls `fdatasync`
//! (`File::sync_data`) on sled's `db` file through a handle of its own, which does both; an
//! append is acknowledged only after that returns. Reads stop at the acknowledged head, so
//! chunks applied before their barrier are never read as part of the log. If the chunks
//! cannot be applied whole, or their barrier fails, the log refuses every further append
//! until it is reopened (as PostgreSQL stops on a failed fsync: the kernel may have dropped
//! the pages, and a later fsync would succeed without them); reopening recovers what sled
//! has on disk, whose chain is checked as always.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use events::{ChainError, ChainVerifier, Hash, SealedEvent};
use tokio::sync::watch;

use super::merkle::{leaf_hashes, PersistedTree, TILE_KEY_PREFIX, TILE_NODES};
use super::{
    check_continues, check_limit, check_stored, decode_event, EventLog, Head, StoreError,
    READ_EVENTS_MAX, READ_HASHES_MAX,
};

/// The largest chunk record in bytes, unless one event alone is larger (at most 8 KiB plus
/// its 36-byte header); typical 300-byte events make chunks of about 20.
pub const CHUNK_BYTES_MAX: usize = 8 * 1024;
/// sled's segment size for new data directories (its default is 512 KiB). sled writes a
/// page larger than a quarter of a segment less 20 bytes as a separate blob file, and it
/// never fsyncs blob files: the fdatasync of its `db` file would make the pointer to a blob
/// durable but not the blob, and a power loss could leave a log page unreadable. At 1 MiB
/// the threshold is 262,124 bytes, and a log leaf (at most 17 records, sled splits leaves
/// past 16) of the largest chunks stays well below it; see [`LOG_LEAF_BYTES_MAX`].
pub const SEGMENT_SIZE: usize = 1024 * 1024;
/// sled 0.34 splits a leaf once it holds more than 16 records.
const LEAF_RECORDS_MAX: usize = 17;
/// The largest chunk record: [`CHUNK_BYTES_MAX`], or one event alone of the largest size
/// with its header.
const CHUNK_RECORD_MAX: usize = if CHUNK_BYTES_MAX > 36 + events::EVENT_BYTES_MAX {
    CHUNK_BYTES_MAX
} else {
    36 + events::EVENT_BYTES_MAX
};
/// An upper bound of a log leaf page in bytes: its records with their keys and 64 bytes of
/// sled's framing each, and 1 KiB for the page header.
pub const LOG_LEAF_BYTES_MAX: usize = LEAF_RECORDS_MAX * (CHUNK_RECORD_MAX + 8 + 64) + 1024;
const _: () = assert!(LOG_LEAF_BYTES_MAX < SEGMENT_SIZE / 4 - 20);

/// The segment size a sled database under `sled_dir` was made with, read from the `conf`
/// file sled keeps (`segment_size: N` among `key: value` lines, then a 4-byte CRC); `None`
/// for a new directory.
fn recorded_segment_size(sled_dir: &Path) -> Option<usize> {
    let conf = std::fs::read(sled_dir.join("conf")).ok()?;
    let text = String::from_utf8_lossy(conf.get(..conf.len().checked_sub(4)?)?).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
}

/// How long opening waits for sled's lock on a data directory that another handle (one
/// being closed, or a process exiting) still holds.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many events at the end of the log are re-checked (hashes and links) on open.
pub const TAIL_CHECK_EVENTS: u64 = 4096;
/// From how many events an append hashes the Merkle tree on a second thread.
const PARALLEL_APPEND_EVENTS_MIN: usize = 256;
/// The most events one append takes.
pub const APPEND_EVENTS_MAX: usize = 65_536;
/// Every seq is below 2^56, so an 8-byte chunk key never starts with `0xFF` and sorts before
/// the Merkle tiles kept in the same tree.
pub const SEQ_LIMIT: u64 = 1 << 56;
/// The end of the chunk keys: every chunk key is less than this one-byte key.
const CHUNK_KEYS_END: [u8; 1] = [TILE_KEY_PREFIX[0]];

/// Options of the sled backend.
#[derive(Debug, Clone, Copy)]
pub struct SledLogConfig {
    /// Maintain the persisted Merkle tree on every append (the default).
    pub merkle: bool,
}

impl Default for SledLogConfig {
    fn default() -> Self {
        SledLogConfig { merkle: true }
    }
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    /// The Merkle tree, when maintained (its tiles live in `log`).
    merkle: Option<Arc<PersistedTree>>,
    /// A handle on sled's data file, for fdatasync after sled's own flush.
    db_file: File,
    /// sled's blob directory, and the blob files in it already fsynced.
    blobs_dir: PathBuf,
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
    head: Mutex<Head>,
    head_tx: watch::Sender<Head>,
    /// The last [`RECENT_EVENTS_MAX`] events appended by this process, so subscribers (the
    /// projections, indexes, live streams) get new events without reading them back from
    /// sled and parsing them again. What is here is exactly what was made durable.
    recent: Mutex<std::collections::VecDeque<SealedEvent>>,
    /// Set when an append's events reached sled but could not be made durable (a barrier
    /// failed, whoever called it, or the tiles could not be applied): why. From then on
    /// every append and barrier is refused ([`SledLog::ensure_not_failed`]).
    failed: std::sync::OnceLock<String>,
    /// Fault injection for tests: the next barrier fails ([`SledLog::fail_next_barrier`]).
    fail_next_barrier: std::sync::atomic::AtomicBool,
    /// One barrier at a time (see [`SledLog::sync`]).
    barrier_lock: Mutex<()>,
    /// Test hook: the next barrier stops after sled's flush, says so on the first channel and
    /// waits for the second ([`SledLog::pause_next_barrier`]).
    #[allow(clippy::type_complexity)]
    pause_next_barrier: Mutex<
        Option<(
            std::sync::mpsc::SyncSender<()>,
            std::sync::mpsc::Receiver<()>,
        )>,
    >,
}

/// How many of the latest appended events are kept in memory for readers.
pub const RECENT_EVENTS_MAX: usize = 65_536;

/// [`SledLog::sync`] for a log that may have closed: then an error, nothing synced.
#[derive(Clone)]
pub struct BarrierHandle(std::sync::Weak<Inner>);

impl BarrierHandle {
    /// The log's durability barrier ([`SledLog::sync`]), if the log is still open.
    pub fn sync(&self) -> Result<(), StoreError> {
        let inner = self
            .0
            .upgrade()
            .ok_or_else(|| StoreError::io("the ledger's log is closed"))?;
        SledLog { inner }.sync()
    }
}

/// The sled-backed event log. Cheap to clone.
#[derive(Clone)]
pub struct SledLog {
    inner: Arc<Inner>,
}

impl SledLog {
    /// Opens (or creates) the log under `dir`, checking the tail of the chain. Refuses to open
    /// a log whose tail does not verify, naming the first bad `seq`.
    pub fn open(dir: &Path) -> Result<SledLog, StoreError> {
        Self::open_with(dir, SledLogConfig::default())
    }

    /// [`SledLog::open`] with options.
    pub fn open_with(dir: &Path, config: SledLogConfig) -> Result<SledLog, StoreError> {
        let db = Self::open_db(dir)?;
        Self::from_db_with(db, dir, config)
    }

    /// Opens sled under `dir/sled` with the settings this backend relies on.
    pub fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io)?;
        let sled_dir = Self::sled_dir(dir);
        // sled refuses to open a database with another segment size than it was made with.
        let segment_size = recorded_segment_size(&sled_dir).unwrap_or(SEGMENT_SIZE);
        if segment_size != SEGMENT_SIZE {
            tracing::warn!(
                segment_size,
                "this data directory was made with sled segments of another size: log pages \
                 may be written as blob files, which sled does not fsync (see ARCHITECTURE.md)"
            );
        }
        let config = sled::Config::new()
            .path(sled_dir)
            .segment_size(segment_size)
            // Flushes happen on every append, explicitly; no background flusher.
            .flush_every_ms(None)
            .cache_capacity(256 * 1024 * 1024);
        // sled's IO threads may hold a closed database's file lock for a moment after its
        // last handle is dropped (a restart in the same process, or a previous process
        // still exiting): wait for it a little before calling the directory taken.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                opened => return opened.map_err(StoreError::io),
            }
        }
    }

    fn sled_dir(dir: &Path) -> PathBuf {
        dir.join("sled")
    }

    /// Whether `dir` holds a sled database (made by an earlier open), without creating one.
    pub fn exists(dir: &Path) -> bool {
        Self::sled_dir(dir).join("conf").is_file()
    }

    /// Builds the log on an already open sled database (other trees of the same database
    /// hold projections and the Merkle tree).
    pub fn from_db(db: sled::Db, dir: &Path) -> Result<SledLog, StoreError> {
        Self::from_db_with(db, dir, SledLogConfig::default())
    }

    /// [`SledLog::from_db`] with options. With the Merkle tree on, it is loaded and brought
    /// up to the log's head (rebuilt from the log when missing, e.g. in a data directory
    /// written before the tree existed), after checking its last full tile against the log.
    pub fn from_db_with(
        db: sled::Db,
        dir: &Path,
        config: SledLogConfig,
    ) -> Result<SledLog, StoreError> {
        let log = db.open_tree("log").map_err(StoreError::io)?;
        let sled_dir = Self::sled_dir(dir);
        let db_file = File::open(sled_dir.join("db")).map_err(StoreError::io)?;
        let blobs_dir = sled_dir.join("blobs");
        // Make the directory entries themselves durable on first creation.
        if let Ok(d) = File::open(&sled_dir) {
            d.sync_all().map_err(StoreError::io)?;
        }
        let head = check_tail(&log)?;
        let merkle = if config.merkle {
            Some(Arc::new(PersistedTree::load(log.clone(), head.len)?))
        } else {
            None
        };
        let (head_tx, _) = watch::channel(head);
        let this = SledLog {
            inner: Arc::new(Inner {
                db,
                log,
                merkle,
                db_file,
                blobs_dir,
                synced_blobs: Mutex::new(Default::default()),
                head: Mutex::new(head),
                head_tx,
                recent: Mutex::new(std::collections::VecDeque::new()),
                failed: std::sync::OnceLock::new(),
                fail_next_barrier: std::sync::atomic::AtomicBool::new(false),
                barrier_lock: Mutex::new(()),
                pause_next_barrier: Mutex::new(None),
            }),
        };
        if let Some(tree) = &this.inner.merkle {
            this.catch_up_tree(tree, head.len)?;
        }
        Ok(this)
    }

    /// Checks the tree's last full tile against the log, then feeds it the events it lacks.
    fn catch_up_tree(&self, tree: &PersistedTree, len: u64) -> Result<(), StoreError> {
        let size = tree.size();
        if size > 0 {
            let from = size.saturating_sub(TILE_NODES as u64);
            let page = self.read_blocking(from, (size - from) as usize)?;
            tree.check_leaves(from, &leaf_hashes(&page))?;
        }
        if len - tree.size() > READ_EVENTS_MAX as u64 {
            tracing::warn!(
                from = tree.size(),
                to = len,
                "building the Merkle tree from the log"
            );
        }
        while tree.size() < len {
            let page = self.read_blocking(tree.size(), READ_EVENTS_MAX)?;
            if page.is_empty() {
                break;
            }
            tree.catch_up(&leaf_hashes(&page))?;
        }
        assert_eq!(tree.size(), len, "the Merkle tree covers the whole log");
        Ok(())
    }

    /// The persisted Merkle tree, when this log maintains one.
    pub fn tree(&self) -> Option<Arc<PersistedTree>> {
        self.inner.merkle.clone()
    }

    /// The sled database, for other trees kept beside the log.
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// A handle on this log's barrier that does not keep the log open: for other trees of
    /// its database (the HTTP tokens), whose holders may be dropped late, by a cancelled
    /// task, where dropping the last handle on the log would run sled's flush-on-drop.
    pub fn barrier_handle(&self) -> BarrierHandle {
        BarrierHandle(Arc::downgrade(&self.inner))
    }

    /// Flushes sled and fdatasyncs its data file: the durability barrier. Blob files sled
    /// wrote since the last barrier are fsynced first (see [`Self::sync_new_blobs`]).
    ///
    /// Every caller's barrier counts (the checkpoint store's too): Linux reports a failed
    /// writeback once, to whichever fsync comes first, so a failure here stops all appends
    /// ([`Self::fail`]) whoever called it, and a stopped log refuses to sync.
    ///
    /// Barriers run one at a time. Two side by side could split one writeback error: the
    /// token store's fdatasync would get the EIO for an append's pages while the append's
    /// own fdatasync, on the same file, returned 0 and the append was acknowledged. In turn,
    /// each barrier's fdatasync reports every error since the one before it, and a barrier
    /// that finds the log stopped by an earlier one is refused.
    pub fn sync(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self
            .inner
            .barrier_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.ensure_not_failed()?;
        self.barrier().map_err(|e| self.fail(&e))
    }

    fn barrier(&self) -> Result<(), StoreError> {
        self.inner.db.flush().map_err(StoreError::io)?;
        let pause = self
            .inner
            .pause_next_barrier
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some((paused, resume)) = pause {
            let _ = paused.send(());
            let _ = resume.recv();
        }
        self.sync_new_blobs()?;
        if self
            .inner
            .fail_next_barrier
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Err(StoreError::io("fdatasync failed (injected by a test)"));
        }
        self.inner.db_file.sync_data().map_err(StoreError::io)
    }

    /// Stops the next durability barrier after sled's flush until the returned sender is
    /// used (or dropped); the receiver hears when it has stopped. For tests of barriers side
    /// by side; nothing else calls it.
    #[doc(hidden)]
    pub fn pause_next_barrier(
        &self,
    ) -> (
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::SyncSender<()>,
    ) {
        let (paused_tx, paused_rx) = std::sync::mpsc::sync_channel(1);
        let (resume_tx, resume_rx) = std::sync::mpsc::sync_channel(1);
        *self
            .inner
            .pause_next_barrier
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((paused_tx, resume_rx));
        (paused_rx, resume_tx)
    }

    /// Makes the next durability barrier fail as a failing `fdatasync` would, after sled's
    /// flush. For tests of what a failed barrier leaves behind; nothing else calls it.
    #[doc(hidden)]
    pub fn fail_next_barrier(&self) {
        self.inner
            .fail_next_barrier
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuses every further append from now on, saying why: an append's events are in sled
    /// but are not known to be durable. A later barrier may succeed without them (after a
    /// failed fsync the kernel may have dropped the dirty pages), and a later append at
    /// the same positions would leave their chunks behind its own. Restarting the node
    /// reopens the log from what is on disk.
    fn fail(&self, why: &StoreError) -> StoreError {
        let why = why.to_string();
        tracing::error!(error = %why, "an append could not be made durable; the log refuses appends until the node restarts");
        let _ = self.inner.failed.set(why);
        self.ensure_not_failed()
            .expect_err("the log has just been marked failed")
    }

    /// The error every append and barrier gets after [`Self::fail`].
    fn ensure_not_failed(&self) -> Result<(), StoreError> {
        match self.inner.failed.get() {
            None => Ok(()),
            Some(why) => Err(StoreError::Io(format!(
                "the log refuses appends since an earlier append could not be made durable \
                 ({why}); restart the node to reopen it from what is on disk"
            ))),
        }
    }

    /// fsyncs every file in sled's blob directory not fsynced before, then the directory.
    ///
    /// sled writes a page larger than its blob threshold (a projection snapshot; a log page
    /// only in a data directory made with small segments, see [`SEGMENT_SIZE`]) to a file
    /// of its own and never fsyncs it, while the log message that points to it is in the
    /// `db` file. After a power loss a torn blob is worse than a lost one: sled's recovery
    /// stops reading its log at a blob it cannot read, dropping everything written after
    /// it. So before the `db` file is made durable, so is every blob it may point to.
    fn sync_new_blobs(&self) -> Result<(), StoreError> {
        let entries = match std::fs::read_dir(&self.inner.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(e)),
        };
        let mut synced = self
            .inner
            .synced_blobs
            .lock()
            .map_err(|_| StoreError::io("blob list lock poisoned"))?;
        let mut present = std::collections::HashSet::new();
        let mut any_new = false;
        for entry in entries {
            let entry = entry.map_err(StoreError::io)?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_all().map_err(StoreError::io)?,
                    // Removed by sled since the listing: nothing to make durable.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::io(e)),
                }
                any_new = true;
            }
            present.insert(name);
        }
        if any_new {
            File::open(&self.inner.blobs_dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::io)?;
        }
        *synced = present;
        Ok(())
    }

    /// How many of sled's blob files the last barrier found fsynced.
    pub fn synced_blob_files(&self) -> usize {
        self.inner.synced_blobs.lock().map_or(0, |s| s.len())
    }

    fn append_blocking(
        &self,
        expected_len: u64,
        events: &[SealedEvent],
    ) -> Result<Head, StoreError> {
        check_limit("events in one append", events.len(), APPEND_EVENTS_MAX)?;
        let mut head = self
            .inner
            .head
            .lock()
            .map_err(|_| StoreError::io("log lock poisoned"))?;
        self.ensure_not_failed()?;
        if expected_len != head.len {
            return Err(StoreError::Conflict {
                expected: expected_len,
                actual: head.len,
            });
        }
        if events.is_empty() {
            return Ok(*head);
        }
        let new_head = check_continues(*head, events)?;
        if new_head.len > SEQ_LIMIT {
            return Err(StoreError::Limit {
                what: "the log length",
                value: new_head.len,
                max: SEQ_LIMIT,
            });
        }
        // The Merkle tree's new nodes are hashed on a second thread while this one encodes
        // the chunks and applies them; the tiles they complete are applied next, before the
        // barrier. sled recovers a prefix of its log, so a crash can leave the stored tree
        // behind the log (caught up from the log on open) but never ahead of it. The threads
        // are rayon's, long-lived: a thread started per append would take fresh memory from
        // the OS for its allocator heap every time (seen in perf as a quarter of the CPU
        // zeroing pages).
        let write_chunks = || {
            let mut batch = sled::Batch::default();
            for (first, chunk) in encode_chunks(events) {
                batch.insert(&first.to_be_bytes(), chunk);
            }
            self.inner.log.apply_batch(batch)
        };
        let hash_tree = || {
            self.inner.merkle.as_ref().map(|tree| {
                let append = tree.prepare(leaf_hashes(events));
                debug_assert_eq!(append.new_size(), new_head.len);
                (tree, append)
            })
        };
        // A small append is not worth handing half of it to another thread.
        let (applied, tree_append) = if events.len() >= PARALLEL_APPEND_EVENTS_MIN {
            rayon::join(write_chunks, hash_tree)
        } else {
            (write_chunks(), hash_tree())
        };
        // A batch that failed half-way may have left some of its chunks in the tree.
        applied.map_err(|e| self.fail(&StoreError::io(e)))?;
        // The events are in sled now (a scan stops at the head, so nobody reads them), and
        // another caller's flush may already have made them durable: from here a failure
        // cannot take them back, so it stops all appends.
        if let Some((_, append)) = tree_append.as_ref().filter(|(_, a)| a.tile_count() > 0) {
            let mut tiles = sled::Batch::default();
            append.add_tiles(&mut tiles);
            self.inner
                .log
                .apply_batch(tiles)
                .map_err(|e| self.fail(&StoreError::io(e)))?;
        }
        self.sync()?;
        // Publish the tree only now that its tiles are durable.
        if let Some((tree, append)) = tree_append {
            tree.commit(append);
        }
        let dropped: Vec<SealedEvent> = match self.inner.recent.lock() {
            Ok(mut recent) => {
                recent.extend(events.iter().cloned());
                let excess = recent.len().saturating_sub(RECENT_EVENTS_MAX);
                recent.drain(..excess).collect()
            }
            Err(_) => Vec::new(),
        };
        // Freeing events that left the window (often their last copy) takes a while for a
        // big batch: not on the way to the acknowledgement.
        if !dropped.is_empty() {
            rayon::spawn(move || drop(dropped));
        }
        *head = new_head;
        self.inner.head_tx.send_replace(new_head);
        Ok(new_head)
    }

    /// Events from `from` on out of the in-memory window of recent appends, when `from` is
    /// inside it (or just past its end, when there is nothing new yet).
    fn read_recent(&self, from: u64, limit: usize) -> Option<Vec<SealedEvent>> {
        let recent = self.inner.recent.lock().ok()?;
        let first = recent.front()?.seq();
        let start = usize::try_from(from.checked_sub(first)?).ok()?;
        if start > recent.len() {
            return None;
        }
        let end = recent.len().min(start + limit.min(READ_EVENTS_MAX));
        Some(recent.range(start..end).cloned().collect())
    }

    fn read_blocking(&self, from: u64, limit: usize) -> Result<Vec<SealedEvent>, StoreError> {
        self.scan_blocking(from, limit.min(READ_EVENTS_MAX), decode_stored)
    }

    /// Up to `limit` items from `from` on, each made by `item` from an event's seq, stored
    /// hash and stored form.
    fn scan_blocking<T>(
        &self,
        from: u64,
        limit: usize,
        item: impl Fn(u64, Hash, Stored<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        // Only what has been acknowledged: an append applies its chunks before its barrier,
        // and a failed one leaves them in the tree, past the head.
        let committed = self.inner.head_tx.borrow().len;
        let limit =
            limit.min(usize::try_from(committed.saturating_sub(from)).unwrap_or(usize::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        let start_key = match self
            .inner
            .log
            .range(..=from.min(SEQ_LIMIT - 1).to_be_bytes())
            .next_back()
            .transpose()
            .map_err(StoreError::io)?
        {
            Some((k, _)) => k,
            None => return Ok(out),
        };
        for entry in self
            .inner
            .log
            .range(start_key..CHUNK_KEYS_END.to_vec().into())
        {
            let (key, chunk) = entry.map_err(StoreError::io)?;
            let mut seq = key_seq(&key)?;
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let (stored_hash, stored, tail) = split_event(rest, seq)?;
                rest = tail;
                if seq >= from {
                    out.push(item(seq, stored_hash, stored)?);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
                seq += 1;
            }
        }
        Ok(out)
    }
}

/// Consecutive events as chunk records of at most [`CHUNK_BYTES_MAX`] (one event alone may
/// be larger): each chunk's first seq and its bytes.
fn encode_chunks(events: &[SealedEvent]) -> Vec<(u64, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES_MAX);
    let Some(mut chunk_first) = events.first().map(SealedEvent::seq) else {
        return chunks;
    };
    let mut record = Vec::with_capacity(1024);
    for e in events {
        record.clear();
        encode_event(&mut record, e);
        if !chunk.is_empty() && chunk.len() + record.len() > CHUNK_BYTES_MAX {
            chunks.push((chunk_first, std::mem::take(&mut chunk)));
            chunk.reserve(CHUNK_BYTES_MAX);
            chunk_first = e.seq();
        }
        chunk.extend_from_slice(&record);
    }
    chunks.push((chunk_first, chunk));
    chunks
}

/// An event as a chunk stores it: a gift or a match sealed here in compact form,
/// `0xC1 ‖ u32 BE length ‖ 32-byte hash ‖ compact form`; any other event as
/// `u32 BE length ‖ 32-byte hash ‖ canonical bytes`.
fn encode_event(buf: &mut Vec<u8>, e: &SealedEvent) {
    let start = buf.len();
    buf.push(COMPACT_TAG);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(e.hash().as_bytes());
    if super::compact::encode(buf, e) {
        let len = (buf.len() - start - 37) as u32;
        buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        return;
    }
    buf.truncate(start);
    let bytes = e.canonical_bytes();
    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(e.hash().as_bytes());
    buf.extend_from_slice(bytes);
}

fn key_seq(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        StoreError::Corrupt(ChainError::Malformed {
            seq: None,
            reason: "a log key is not 8 bytes".into(),
        })
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// An event as a chunk stores it.
#[derive(Clone, Copy)]
enum Stored<'a> {
    /// Its canonical bytes.
    Canonical(&'a [u8]),
    /// The compact form of a gift or a match ([`super::compact`]).
    Compact(&'a [u8]),
}

/// The first byte of an event stored in compact form. A canonical one starts with its
/// 4-byte length, whose first byte is always 0 (an event is at most `EVENT_BYTES_MAX`).
const COMPACT_TAG: u8 = 0xC1;
const _: () = assert!(events::EVENT_BYTES_MAX < 1 << 24);

/// The first event of `rest` (the rest of a chunk), at `seq`: its stored hash, its stored
/// form, and what follows it.
fn split_event(rest: &[u8], seq: u64) -> Result<(Hash, Stored<'_>, &[u8]), StoreError> {
    let corrupt = |reason: &str| {
        StoreError::Corrupt(ChainError::Malformed {
            seq: Some(seq),
            reason: reason.into(),
        })
    };
    let (compact, rest) = match rest.split_first() {
        Some((&COMPACT_TAG, tail)) => (true, tail),
        _ => (false, rest),
    };
    if rest.len() < 36 {
        return Err(corrupt("truncated event header"));
    }
    let len = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let hash = Hash(rest[4..36].try_into().expect("32 bytes"));
    let body = rest
        .get(36..36 + len)
        .ok_or_else(|| corrupt("truncated event"))?;
    let stored = if compact {
        Stored::Compact(body)
    } else {
        Stored::Canonical(body)
    };
    Ok((hash, stored, &rest[36 + len..]))
}

/// The event stored at `seq`, checked against its stored hash: canonical bytes are parsed
/// and hashed ([`decode_event`]); a compact form is sealed again from its record.
fn decode_stored(
    seq: u64,
    stored_hash: Hash,
    stored: Stored<'_>,
) -> Result<SealedEvent, StoreError> {
    let bytes = match stored {
        Stored::Canonical(bytes) => return decode_event(seq, stored_hash, bytes),
        Stored::Compact(bytes) => bytes,
    };
    let malformed = |reason: String| {
        StoreError::Corrupt(ChainError::Malformed {
            seq: Some(seq),
            reason,
        })
    };
    let event = super::compact::decode(seq, bytes)
        .map_err(malformed)?
        .seal()
        .map_err(|e| malformed(e.to_string()))?;
    check_stored(seq, stored_hash, event)
}

/// Finds the head and re-checks the last [`TAIL_CHECK_EVENTS`] events.
fn check_tail(log: &sled::Tree) -> Result<Head, StoreError> {
    // Walk back over chunks until enough events are covered.
    let mut chunks = Vec::new();
    let mut covered = 0u64;
    for item in log.range(..CHUNK_KEYS_END).rev() {
        let (key, chunk) = item.map_err(StoreError::io)?;
        let first = key_seq(&key)?;
        let mut n = 0u64;
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let (_, _, tail) = split_event(rest, first + n)?;
            rest = tail;
            n += 1;
        }
        covered += n;
        chunks.push((first, chunk));
        if covered >= TAIL_CHECK_EVENTS {
            break;
        }
    }
    chunks.reverse();
    let Some((first_seq, _)) = chunks.first() else {
        return Ok(Head::default());
    };
    let mut verifier: Option<ChainVerifier> = None;
    let mut expected_seq = *first_seq;
    for (first, chunk) in &chunks {
        if *first != expected_seq {
            return Err(StoreError::Corrupt(ChainError::SeqGap {
                expected: expected_seq,
                found: *first,
            }));
        }
        let mut rest: &[u8] = chunk;
        let mut seq = *first;
        while !rest.is_empty() {
            let (stored_hash, stored, tail) = split_event(rest, seq)?;
            rest = tail;
            let event = decode_stored(seq, stored_hash, stored)?;
            let v = verifier
                .get_or_insert_with(|| ChainVerifier::resume(event.seq(), event.record().prev));
            v.push_sealed(&event).map_err(StoreError::Corrupt)?;
            seq += 1;
        }
        expected_seq = seq;
    }
    // Chunks are never stored empty: a tail of empty chunks is a damaged store, said as
    // such rather than a panic at open.
    let v = verifier.ok_or_else(|| {
        StoreError::Corrupt(ChainError::Malformed {
            seq: Some(*first_seq),
            reason: "the log's last chunks hold no events".into(),
        })
    })?;
    Ok(Head {
        len: v.len(),
        hash: v.head(),
    })
}

#[async_trait]
impl EventLog for SledLog {
    fn append_limits(&self) -> super::AppendLimits {
        // sled takes any size of batch; the events-per-append limit is this log's own.
        super::AppendLimits {
            events: APPEND_EVENTS_MAX,
            bytes: usize::MAX,
        }
    }

    async fn head(&self) -> Result<Head, StoreError> {
        Ok(*self.inner.head_tx.borrow())
    }

    async fn append(
        &self,
        expected_len: u64,
        events: Vec<SealedEvent>,
    ) -> Result<Head, StoreError> {
        // On rayon's pool rather than tokio's blocking threads: the append hands half of its
        // work to the pool's other thread, and starting from one of its threads saves two
        // thread hand-offs (batch 64 and 1024 −4 to −11%). A panic is caught here, as
        // `spawn_blocking` would: rayon's own handler would abort the process.
        let this = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                this.append_blocking(expected_len, &events)
            }))
            .unwrap_or_else(|_| Err(StoreError::io("the append panicked")));
            // This handle on the database goes before the answer does, so a caller that
            // then drops its own can reopen the directory at once (sled locks it).
            drop((this, events));
            let _ = tx.send(result);
        });
        rx.await.map_err(StoreError::io)?
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<SealedEvent>, StoreError> {
        if let Some(events) = self.read_recent(from, limit) {
            return Ok(events);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(from, limit))
            .await
            .map_err(StoreError::io)?
    }

    fn watch_head(&self) -> watch::Receiver<Head> {
        self.inner.head_tx.subscribe()
    }

    async fn read_hashes(&self, from: u64, limit: usize) -> Result<Vec<Hash>, StoreError> {
        let this = self.clone();
        let limit = limit.min(READ_HASHES_MAX);
        tokio::task::spawn_blocking(move || this.scan_blocking(from, limit, |_, hash, _| Ok(hash)))
            .await
            .map_err(StoreError::io)?
    }

    fn merkle(&self) -> Option<Arc<PersistedTree>> {
        self.tree()
    }
}
