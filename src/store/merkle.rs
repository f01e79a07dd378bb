//! The Merkle tree over the log (RFC 9162, see `events::merkle`), persisted so that a root,
//! a proof or a tile at any size costs O(log n) reads however long the log is.
//!
//! # Layout
//!
//! Every *perfect* node `(level, index)` of the tree (level 0 = leaf hashes) is stored once,
//! packed with its neighbours in **tiles of 256 nodes of the same level**: the key
//! `0xFF 'M' ‖ level (1 byte) ‖ tile index (8 bytes, big-endian)` (11 bytes) maps to the
//! 8192 bytes of the 256 hashes `(level, tile * 256 + i)`, `i = 0..255`. Only *full* tiles
//! are written, each exactly once. The sled backend keeps them in its `log` tree itself,
//! after every event chunk key (an 8-byte seq below `2^56` sorts before `0xFF`); the tiles an
//! append completes are applied right after its events, before the same durability barrier,
//! so the stored tree is never ahead of the stored log (see docs/VERIFY.md). For tree levels that
//! are multiples of 8, the tiles are the C2SP tlog-tiles hash tiles byte for byte (level-8L
//! tile N is `tile/L/N`).
//!
//! The nodes after the last full tile of each level (at most 255 per level, one *partial*
//! tile per level) are kept in memory only, together with the frontier (the right edge).
//! They are rebuilt on open from the stored tiles of the level below and, for level 0, from
//! the last events of the log, so nothing that can be recomputed is written twice.
//!
//! Cost: an append of `B` events writes about `2B / 256` tiles (`B/256` at level 0, half as
//! many at level 1, ...), 64 bytes per event, in a handful of large sled records instead of
//! `2B` small ones; a node read is one sled `get` (sled caches hot tiles) or a memory read.
//!
//! # Durability and what readers may see
//!
//! [`PersistedTree::prepare`] computes what an append adds without changing anything; the
//! log writes the tiles with its events, makes them durable, and only then calls
//! [`PersistedTree::commit`], which publishes the new size. Every read is bounded by the
//! published size, so a node that is not yet durable is never served, even though sled makes
//! a written tile visible before it is flushed.
//!
//! # Other backends
//!
//! A backend that cannot write tiles atomically with its events (EventStoreDB) uses
//! [`TreeStore`]: the same tree in a local sled tree, fed from a subscription to the log.
//! It is derived data: after a crash it reopens from its stored tiles and catches up from the
//! log.

use std::sync::{Arc, RwLock};

use events::merkle::{node_hash, MerkleFrontier, NodeSource};
use events::{ChainError, Hash};
use tokio::sync::watch;

use super::{subscribe, EventLog, StoreError, READ_EVENTS_MAX};

/// Nodes per stored tile.
pub const TILE_NODES: usize = 256;
/// Bytes of a stored (full) tile.
pub const TILE_BYTES: usize = TILE_NODES * 32;
/// Tree levels (a tree of at most `u64::MAX` leaves has levels 0 to 63).
pub const LEVELS: usize = 64;
/// The name of the sled tree a [`TreeStore`] keeps its tiles in (the sled log keeps them in
/// its own `log` tree).
pub const MERKLE_TREE_NAME: &str = "merkle";
/// The first bytes of every tile key: after every 8-byte seq key below `2^56`.
pub const TILE_KEY_PREFIX: [u8; 2] = [0xFF, b'M'];

/// The sled key of stored tile `tile` of tree level `level`.
pub fn tile_key(level: u8, tile: u64) -> [u8; 11] {
    let mut key = [0u8; 11];
    key[..2].copy_from_slice(&TILE_KEY_PREFIX);
    key[2] = level;
    key[3..].copy_from_slice(&tile.to_be_bytes());
    key
}

/// Removes every tile key from `tiles` (and nothing else).
fn clear_tiles(tiles: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for key in tiles.scan_prefix(TILE_KEY_PREFIX).keys() {
        batch.remove(key.map_err(StoreError::io)?);
    }
    tiles.apply_batch(batch).map_err(StoreError::io)
}

/// A read the tree cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum TreeReadError {
    /// The node is not complete in the tree size asked for (or not yet durable).
    #[error("tree node ({level}, {index}) is not complete in a tree of size {size}")]
    NotInTree { level: u8, index: u64, size: u64 },
    /// The tree size asked for is larger than the durable tree.
    #[error("tree size {asked} is beyond the tree's size {size}")]
    BeyondSize { asked: u64, size: u64 },
    /// A tile that must be stored is missing or malformed: a bug or a damaged store.
    #[error("stored tree tile ({level}, {tile}) is missing or malformed")]
    MissingTile { level: u8, tile: u64 },
    #[error("storage failed: {0}")]
    Io(String),
}

impl From<TreeReadError> for StoreError {
    fn from(e: TreeReadError) -> StoreError {
        StoreError::Io(e.to_string())
    }
}

/// The in-memory part: the frontier and the partial tile of every level.
#[derive(Clone)]
struct TreeState {
    frontier: MerkleFrontier,
    /// `partial[l]` holds the nodes of level `l` after its last full tile: nodes
    /// `(l, f * 256) .. (l, size >> l)` where `f = (size >> l) / 256`.
    partial: Vec<Vec<Hash>>,
}

impl TreeState {
    fn empty() -> TreeState {
        TreeState {
            frontier: MerkleFrontier::new(),
            partial: vec![Vec::new(); LEVELS],
        }
    }

    fn size(&self) -> u64 {
        self.frontier.size()
    }
}

/// What an append adds to the tree, computed by [`PersistedTree::prepare`] and applied by
/// [`PersistedTree::commit`] once the tiles are durable.
pub struct TreeAppend {
    from_size: u64,
    frontier: MerkleFrontier,
    /// `new_nodes[l]`: the nodes of level `l` the append completed, in index order.
    new_nodes: Vec<Vec<Hash>>,
    /// Full tiles to store: `(key, 8192 bytes)`.
    tiles: Vec<([u8; 11], Vec<u8>)>,
}

impl TreeAppend {
    /// The tiles this append completes, as a batch of their own.
    pub fn tile_batch(&self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        self.add_tiles(&mut batch);
        batch
    }

    /// Adds the tiles this append completes to `batch` (applied after the events' batch and
    /// before the barrier that makes both durable).
    pub fn add_tiles(&self, batch: &mut sled::Batch) {
        for (key, bytes) in &self.tiles {
            batch.insert(key.as_slice(), bytes.as_slice());
        }
    }

    /// How many full tiles the append completes.
    pub fn tile_count(&self) -> usize {
        self.tiles.len()
    }

    /// The tree size after the append.
    pub fn new_size(&self) -> u64 {
        self.frontier.size()
    }
}

/// The persisted Merkle tree of one log. See the module documentation for the layout.
pub struct PersistedTree {
    tiles: sled::Tree,
    state: RwLock<TreeState>,
    size_tx: watch::Sender<u64>,
}

impl std::fmt::Debug for PersistedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedTree")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl PersistedTree {
    /// Loads the tree from its stored tiles, at the largest size not above `log_len` that the
    /// stored level-0 tiles cover completely (a multiple of 256). The caller then feeds the
    /// remaining leaves (at most 255 when the store is current) with [`Self::catch_up`].
    ///
    /// Tiles beyond `log_len` (which an atomic store never has) are removed; a store with a
    /// gap is cleared and rebuilt from the log by the caller.
    pub fn load(tiles: sled::Tree, log_len: u64) -> Result<PersistedTree, StoreError> {
        let mut level0 = TILE_KEY_PREFIX.to_vec();
        level0.push(0);
        let stored_leaf_tiles = match tiles
            .scan_prefix(level0)
            .next_back()
            .transpose()
            .map_err(StoreError::io)?
        {
            Some((key, _)) => key_tile(&key)? + 1,
            None => 0,
        };
        let mut base = (stored_leaf_tiles * TILE_NODES as u64).min(log_len);
        base -= base % TILE_NODES as u64;
        if stored_leaf_tiles * (TILE_NODES as u64) > log_len {
            tracing::warn!(
                stored_leaf_tiles,
                log_len,
                "the Merkle tree store holds tiles beyond the log; removing them"
            );
            remove_tiles_beyond(&tiles, base)?;
        }
        let state = match build_state(&tiles, base) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "the Merkle tree store is incomplete; rebuilding it from the log");
                clear_tiles(&tiles)?;
                TreeState::empty()
            }
        };
        let (size_tx, _) = watch::channel(state.size());
        Ok(PersistedTree {
            tiles,
            state: RwLock::new(state),
            size_tx,
        })
    }

    /// The number of leaves in the durable tree.
    pub fn size(&self) -> u64 {
        self.read_state().size()
    }

    /// The root of the durable tree.
    pub fn root(&self) -> Hash {
        self.read_state().frontier.root()
    }

    /// A receiver that sees the size every time the tree grows.
    pub fn watch_size(&self) -> watch::Receiver<u64> {
        self.size_tx.subscribe()
    }

    /// The tree of the first `size` leaves, to compute roots and proofs at that size.
    pub fn at(&self, size: u64) -> Result<TreeAt<'_>, TreeReadError> {
        let current = self.size();
        if size > current {
            return Err(TreeReadError::BeyondSize {
                asked: size,
                size: current,
            });
        }
        Ok(TreeAt { tree: self, size })
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, TreeState> {
        // The state is replaced whole under the lock; a panic cannot leave it half-written.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Computes what appending these leaf hashes adds: new nodes, completed tiles and the new
    /// frontier. Changes nothing; the caller writes [`TreeAppend::tile_batch`] and then calls
    /// [`Self::commit`]. Appends must be prepared and committed one at a time (the log's
    /// writer lock guarantees it).
    pub fn prepare(&self, leaf_hashes: impl IntoIterator<Item = Hash>) -> TreeAppend {
        let state = self.read_state();
        let from_size = state.size();
        let mut frontier = state.frontier.clone();
        let mut new_nodes: Vec<Vec<Hash>> = vec![Vec::new(); LEVELS];
        for leaf in leaf_hashes {
            for (level, _index, hash) in frontier.push(leaf) {
                new_nodes[usize::from(level)].push(hash);
            }
        }
        let mut tiles = Vec::new();
        for (level, nodes) in new_nodes.iter().enumerate() {
            let first = from_size >> level;
            let mut tile_start = 0usize; // index into `nodes` where the current tile's new part starts
            for i in 0..nodes.len() {
                let index = first + i as u64;
                if index % TILE_NODES as u64 != TILE_NODES as u64 - 1 {
                    continue;
                }
                let tile = index / TILE_NODES as u64;
                let mut bytes = Vec::with_capacity(TILE_BYTES);
                if tile * (TILE_NODES as u64) < first {
                    // The tile began before this append: its head is the partial tile.
                    let head = &state.partial[level];
                    assert_eq!(head.len() as u64, first - tile * TILE_NODES as u64);
                    for h in head {
                        bytes.extend_from_slice(&h.0);
                    }
                }
                for h in &nodes[tile_start..=i] {
                    bytes.extend_from_slice(&h.0);
                }
                assert_eq!(bytes.len(), TILE_BYTES);
                tiles.push((tile_key(level as u8, tile), bytes));
                tile_start = i + 1;
            }
        }
        TreeAppend {
            from_size,
            frontier,
            new_nodes,
            tiles,
        }
    }

    /// Publishes a prepared append whose tiles are durable.
    ///
    /// # Panics
    /// When the append was prepared on another size (appends must not interleave): a bug.
    pub fn commit(&self, append: TreeAppend) {
        let new_size = append.frontier.size();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            assert_eq!(
                state.size(),
                append.from_size,
                "tree appends are committed in the order they were prepared"
            );
            for (level, nodes) in append.new_nodes.into_iter().enumerate() {
                if nodes.is_empty() {
                    continue;
                }
                let partial = &mut state.partial[level];
                partial.extend(nodes);
                let full = partial.len() / TILE_NODES * TILE_NODES;
                partial.drain(..full);
                debug_assert_eq!(
                    partial.len() as u64,
                    (new_size >> level) % TILE_NODES as u64
                );
            }
            state.frontier = append.frontier;
        }
        self.size_tx.send_replace(new_size);
    }

    /// Appends leaves outside the log's own batch (catching up on open, or [`TreeStore`]):
    /// writes the completed tiles with one sled batch, flushes, then commits. The tree is
    /// derived data, so a crash here only means catching up again on the next open.
    pub fn catch_up(&self, leaf_hashes: &[Hash]) -> Result<(), StoreError> {
        if leaf_hashes.is_empty() {
            return Ok(());
        }
        let append = self.prepare(leaf_hashes.iter().copied());
        if append.tile_count() > 0 {
            self.tiles
                .apply_batch(append.tile_batch())
                .map_err(StoreError::io)?;
            self.tiles.flush().map_err(StoreError::io)?;
        }
        self.commit(append);
        Ok(())
    }

    /// Checks that the stored leaf hashes from `first` on equal `leaf_hashes` (the log's
    /// events re-hashed): the tree and the log agree. Names the first leaf that differs.
    pub fn check_leaves(&self, first: u64, leaf_hashes: &[Hash]) -> Result<(), StoreError> {
        for (i, expected) in leaf_hashes.iter().enumerate() {
            let index = first + i as u64;
            let stored = self.node(0, index).map_err(StoreError::from)?;
            if stored != *expected {
                return Err(StoreError::Corrupt(ChainError::Malformed {
                    seq: Some(index),
                    reason: format!(
                        "the Merkle tree holds leaf hash {stored}, the event hashes to leaf {expected}"
                    ),
                }));
            }
        }
        Ok(())
    }

    /// Node `(level, index)`, which must be complete in the durable tree.
    pub fn node(&self, level: u8, index: u64) -> Result<Hash, TreeReadError> {
        {
            let state = self.read_state();
            let size = state.size();
            let count = nodes_at(level, size);
            if index >= count {
                return Err(TreeReadError::NotInTree { level, index, size });
            }
            if index / TILE_NODES as u64 >= count / TILE_NODES as u64 {
                let offset = (index % TILE_NODES as u64) as usize;
                return Ok(state.partial[usize::from(level)][offset]);
            }
        }
        // Full tiles are immutable, and durable once the size covering them is published.
        let tile = index / TILE_NODES as u64;
        let bytes = self.full_tile(level, tile)?;
        let offset = (index % TILE_NODES as u64) as usize * 32;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[offset..offset + 32]);
        Ok(Hash(hash))
    }

    fn full_tile(&self, level: u8, tile: u64) -> Result<sled::IVec, TreeReadError> {
        read_full_tile(&self.tiles, level, tile)
    }

    /// The first `width` hashes (1 to 256) of tile `tile` of tree level `level`, concatenated,
    /// as they stand in the tree of `size` leaves. A full tile is one sled read.
    pub fn tile_bytes(
        &self,
        level: u8,
        tile: u64,
        width: u16,
        size: u64,
    ) -> Result<Vec<u8>, TreeReadError> {
        let tree_size = self.size();
        if size > tree_size {
            return Err(TreeReadError::BeyondSize {
                asked: size,
                size: tree_size,
            });
        }
        let width = usize::from(width).clamp(1, TILE_NODES);
        let last = tile
            .checked_mul(TILE_NODES as u64)
            .and_then(|first| first.checked_add(width as u64 - 1))
            .ok_or(TreeReadError::NotInTree {
                level,
                index: u64::MAX,
                size,
            })?;
        if last >= nodes_at(level, size) {
            return Err(TreeReadError::NotInTree {
                level,
                index: last,
                size,
            });
        }
        let full = |tree_size: u64| (tile + 1) * (TILE_NODES as u64) <= nodes_at(level, tree_size);
        if !full(tree_size) {
            // The tile was partial at `tree_size`; decided again under the lock, since an
            // append may have completed it meanwhile and moved the partial nodes on to the
            // next tile. A full tile never changes, so it is read after the lock.
            let state = self.read_state();
            if !full(state.size()) {
                return partial_prefix(&state.partial[usize::from(level)], width).ok_or(
                    TreeReadError::NotInTree {
                        level,
                        index: last,
                        size,
                    },
                );
            }
        }
        let bytes = self.full_tile(level, tile)?;
        Ok(bytes[..width * 32].to_vec())
    }
}

/// The first `width` hashes of a level's partial tile, concatenated; `None` when it holds
/// fewer.
fn partial_prefix(partial: &[Hash], width: usize) -> Option<Vec<u8>> {
    if partial.len() < width {
        return None;
    }
    Some(partial[..width].iter().flat_map(|h| h.0).collect())
}

/// How many perfect nodes level `level` has in a tree of `size` leaves.
fn nodes_at(level: u8, size: u64) -> u64 {
    if level >= 64 {
        0
    } else {
        size >> level
    }
}

fn key_tile(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .get(3..11)
        .and_then(|b| b.try_into().ok())
        .filter(|_| key.len() == 11 && key.starts_with(&TILE_KEY_PREFIX))
        .ok_or_else(|| StoreError::Io("a Merkle tile key is not 11 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn remove_tiles_beyond(tiles: &sled::Tree, size: u64) -> Result<(), StoreError> {
    for level in 0..LEVELS as u8 {
        let full = nodes_at(level, size) / TILE_NODES as u64;
        let stale: Vec<sled::IVec> = tiles
            .range(tile_key(level, full)..=tile_key(level, u64::MAX))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(StoreError::io)?;
        for key in stale {
            tiles.remove(key).map_err(StoreError::io)?;
        }
    }
    tiles.flush().map_err(StoreError::io)?;
    Ok(())
}

/// Full tile `tile` of tree level `level` as stored: missing, or not full, is an error.
fn read_full_tile(tiles: &sled::Tree, level: u8, tile: u64) -> Result<sled::IVec, TreeReadError> {
    let bytes = tiles
        .get(tile_key(level, tile))
        .map_err(|e| TreeReadError::Io(e.to_string()))?
        .ok_or(TreeReadError::MissingTile { level, tile })?;
    if bytes.len() != TILE_BYTES {
        return Err(TreeReadError::MissingTile { level, tile });
    }
    Ok(bytes)
}

/// Rebuilds the in-memory state of the tree of `size` leaves (a multiple of 256) from the
/// stored full tiles: each level's partial tile from the level below, then the frontier.
fn build_state(tiles: &sled::Tree, size: u64) -> Result<TreeState, TreeReadError> {
    debug_assert_eq!(size % TILE_NODES as u64, 0);
    let mut state = TreeState::empty();
    let read_full = |level: u8, tile: u64| read_full_tile(tiles, level, tile);
    // Level 0 has no partial tile at a multiple of 256. Level l's partial nodes are the pairs
    // of level l-1 nodes below them.
    for level in 1..LEVELS as u8 {
        let count = nodes_at(level, size);
        if count == 0 {
            break;
        }
        let first = count / TILE_NODES as u64 * TILE_NODES as u64;
        let below = usize::from(level - 1);
        let mut partial = Vec::with_capacity((count - first) as usize);
        for index in first..count {
            let child = |i: u64| -> Result<Hash, TreeReadError> {
                let below_full = nodes_at(level - 1, size) / TILE_NODES as u64;
                let tile = i / TILE_NODES as u64;
                let offset = (i % TILE_NODES as u64) as usize;
                if tile < below_full {
                    let bytes = read_full(level - 1, tile)?;
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&bytes[offset * 32..offset * 32 + 32]);
                    Ok(Hash(h))
                } else {
                    state.partial[below]
                        .get(offset)
                        .copied()
                        .ok_or(TreeReadError::NotInTree {
                            level: level - 1,
                            index: i,
                            size,
                        })
                }
            };
            partial.push(node_hash(&child(2 * index)?, &child(2 * index + 1)?));
        }
        state.partial[usize::from(level)] = partial;
    }
    // Every full tile a level should have must be there (the last one of each level is the
    // one a crash or a bug would lose).
    for level in 0..LEVELS as u8 {
        let full = nodes_at(level, size) / TILE_NODES as u64;
        if full > 0 {
            read_full(level, full - 1)?;
        }
    }
    let source = StateSource {
        tiles,
        state: &state,
        size,
    };
    state.frontier = MerkleFrontier::from_source(size, &source)?;
    Ok(state)
}

/// Reads nodes from stored tiles and a state being built.
struct StateSource<'a> {
    tiles: &'a sled::Tree,
    state: &'a TreeState,
    size: u64,
}

impl NodeSource for StateSource<'_> {
    type Error = TreeReadError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, TreeReadError> {
        let count = nodes_at(level, self.size);
        if index >= count {
            return Err(TreeReadError::NotInTree {
                level,
                index,
                size: self.size,
            });
        }
        let tile = index / TILE_NODES as u64;
        let offset = (index % TILE_NODES as u64) as usize;
        if tile < count / TILE_NODES as u64 {
            let bytes = self
                .tiles
                .get(tile_key(level, tile))
                .map_err(|e| TreeReadError::Io(e.to_string()))?
                .filter(|b| b.len() == TILE_BYTES)
                .ok_or(TreeReadError::MissingTile { level, tile })?;
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes[offset * 32..offset * 32 + 32]);
            Ok(Hash(h))
        } else {
            Ok(self.state.partial[usize::from(level)][offset])
        }
    }
}

/// The persisted tree as it stood at one size: a [`NodeSource`] for roots and proofs at
/// that size. Asking for a node not complete at that size is an error, never a wrong hash.
#[derive(Clone, Copy)]
pub struct TreeAt<'a> {
    tree: &'a PersistedTree,
    size: u64,
}

impl TreeAt<'_> {
    /// The tree size this view answers for.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl NodeSource for TreeAt<'_> {
    type Error = TreeReadError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, TreeReadError> {
        if index >= nodes_at(level, self.size) {
            return Err(TreeReadError::NotInTree {
                level,
                index,
                size: self.size,
            });
        }
        self.tree.node(level, index)
    }
}

/// Leaf hashes of the events `from .. from + n` of a log read page.
pub fn leaf_hashes(events: &[events::SealedEvent]) -> Vec<Hash> {
    events.iter().map(events::SealedEvent::leaf_hash).collect()
}

/// Brings a loaded tree up to the log's head by reading the events it lacks, after checking
/// the last full level-0 tile it holds against the log.
pub async fn catch_up_from_log(tree: &PersistedTree, log: &dyn EventLog) -> Result<(), StoreError> {
    let size = tree.size();
    if size > 0 {
        let check_from = size.saturating_sub(TILE_NODES as u64);
        let page = log.read(check_from, (size - check_from) as usize).await?;
        tree.check_leaves(check_from, &leaf_hashes(&page))?;
    }
    loop {
        let from = tree.size();
        let page = log.read(from, READ_EVENTS_MAX).await?;
        if page.is_empty() {
            return Ok(());
        }
        if page[0].seq() != from {
            return Err(StoreError::Corrupt(ChainError::SeqGap {
                expected: from,
                found: page[0].seq(),
            }));
        }
        tree.catch_up(&leaf_hashes(&page))?;
    }
}

/// The Merkle tree of a backend that does not maintain one itself, fed from a subscription.
pub struct TreeStore;

impl TreeStore {
    /// Opens the tree kept in `tiles` (a sled tree of any local database, or of a temporary
    /// one), catches it up with `log` and keeps it following the log until the log's
    /// subscription ends or `shutdown` turns true.
    pub async fn follow(
        tiles: sled::Tree,
        log: Arc<dyn EventLog>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<PersistedTree>, tokio::task::JoinHandle<()>), StoreError> {
        let head = log.head().await?;
        let tree = Arc::new(PersistedTree::load(tiles, head.len)?);
        catch_up_from_log(&tree, log.as_ref()).await?;
        let follower = tree.clone();
        let task = tokio::spawn(async move {
            let mut events = subscribe(log, follower.size());
            loop {
                let page = tokio::select! {
                    page = events.recv_page(READ_EVENTS_MAX) => page,
                    _ = shutdown.changed() => break,
                };
                let result = match page {
                    None => break,
                    Some(Ok(page)) => follower.catch_up(&leaf_hashes(&page)),
                    Some(Err(e)) => Err(e),
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "the Merkle tree stopped following the log");
                    break;
                }
            }
            events.close().await;
        });
        Ok((tree, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::merkle::{consistency_proof, inclusion_proof, root, MemoryTree};

    fn temp_tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree(MERKLE_TREE_NAME).unwrap()
    }

    fn leaf(i: u64) -> Hash {
        events::merkle::leaf_hash(&i.to_be_bytes())
    }

    #[test]
    fn tiles_and_partials_agree_with_a_memory_tree() {
        let tiles = temp_tree();
        let tree = PersistedTree::load(tiles.clone(), 0).unwrap();
        let mut memory = MemoryTree::new();
        let mut n = 0u64;
        for batch in [1u64, 255, 1, 300, 1000, 3, 700] {
            let hashes: Vec<Hash> = (n..n + batch).map(leaf).collect();
            tree.catch_up(&hashes).unwrap();
            for h in hashes {
                memory.push_leaf_hash(h);
            }
            n += batch;
            assert_eq!(tree.size(), n);
            assert_eq!(tree.root(), memory.root());
        }
        let at = tree.at(n).unwrap();
        for size in [1, 2, 255, 256, 257, 1000, n] {
            assert_eq!(root(size, &at).unwrap(), root(size, &memory).unwrap());
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    inclusion_proof(index, size, &at).unwrap(),
                    inclusion_proof(index, size, &memory).unwrap()
                );
            }
            assert_eq!(
                consistency_proof(size / 3, size, &at).unwrap(),
                consistency_proof(size / 3, size, &memory).unwrap()
            );
        }
        // Reopen at every size the tiles allow.
        let reopened = PersistedTree::load(tiles, n).unwrap();
        assert_eq!(reopened.size(), n / 256 * 256);
        let rest: Vec<Hash> = (reopened.size()..n).map(leaf).collect();
        reopened.catch_up(&rest).unwrap();
        assert_eq!(reopened.root(), memory.root());
        let at = reopened.at(n).unwrap();
        assert_eq!(
            inclusion_proof(7, n, &at).unwrap(),
            inclusion_proof(7, n, &memory).unwrap()
        );
    }

    #[test]
    fn nodes_beyond_the_size_are_refused() {
        let tree = PersistedTree::load(temp_tree(), 0).unwrap();
        tree.catch_up(&[leaf(0), leaf(1), leaf(2)]).unwrap();
        assert!(matches!(
            tree.node(0, 3),
            Err(TreeReadError::NotInTree { .. })
        ));
        assert!(matches!(
            tree.node(2, 0),
            Err(TreeReadError::NotInTree { .. })
        ));
        let at2 = tree.at(2).unwrap();
        assert!(at2.node(0, 2).is_err());
        assert!(tree.at(4).is_err());
        // Prepared but not committed: invisible.
        let pending = tree.prepare([leaf(3)]);
        assert!(tree.node(0, 3).is_err());
        tree.commit(pending);
        assert!(tree.node(0, 3).is_ok());
    }

    #[test]
    fn a_store_with_a_gap_is_rebuilt() {
        let tiles = temp_tree();
        let tree = PersistedTree::load(tiles.clone(), 0).unwrap();
        let hashes: Vec<Hash> = (0..1024).map(leaf).collect();
        tree.catch_up(&hashes).unwrap();
        // Lose the last level-1 tile.
        tiles.remove(tile_key(1, 1)).unwrap();
        let reopened = PersistedTree::load(tiles, 1024).unwrap();
        assert_eq!(reopened.size(), 0);
        reopened.catch_up(&hashes).unwrap();
        assert_eq!(reopened.root(), tree.root());
    }
}
