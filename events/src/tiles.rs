//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): the Merkle tree and the entries served
//! as immutable static files.
//!
//! - A *hash tile* at level `L` with index `N` holds up to 256 consecutive 32-byte hashes of
//!   tree level `8 * L`: hash `i` is the perfect subtree node `(8 * L, N * 256 + i)`, the
//!   `MTH` of leaves `[(N * 256 + i) * 256^L, (N * 256 + i + 1) * 256^L)`. Level 0 tiles
//!   hold leaf hashes.
//! - An *entry bundle* with index `N` holds entries `N * 256 ..`, each as a big-endian
//!   uint16 length followed by the entry's bytes.
//! - A full tile is 256 wide; the rightmost tile of a level may be *partial*, of width
//!   `floor(size / 256^L) mod 256` (1 to 255).
//! - Paths: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, where `<N>` is written in
//!   zero-padded groups of 3 digits, all but the last prefixed with `x`: 1234067 is
//!   `x001/x234/067`.

use std::fmt;
use std::str::FromStr;

use crate::merkle::NodeSource;
use crate::values::Hash;

/// How many tree levels one tile spans: a full tile holds `2^8 = 256` hashes.
pub const TILE_HEIGHT: u8 = 8;
/// The width of a full tile.
pub const TILE_WIDTH: u16 = 256;
/// The highest tile level a path may name.
pub const TILE_LEVEL_MAX: u8 = 63;
/// The longest entry an entry bundle can hold (its length is a uint16).
pub const BUNDLE_ENTRY_LEN_MAX: usize = u16::MAX as usize;

/// A tile path, tile or bundle that breaks a rule of the tlog-tiles format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("tile path {path:?}: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("a tile is 1 to 256 wide (got {width})")]
    Width { width: u16 },
    #[error("a tile level is 0 to 63 (got {level})")]
    Level { level: u8 },
    #[error("a level-{level} tile covers more leaves than a 64-bit tree can hold")]
    LevelBeyondTree { level: u8 },
    #[error("tile index {index} is beyond the largest tree")]
    IndexBeyondTree { index: u64 },
    #[error("an entry bundle is not a hash tile")]
    NotAHashTile,
    #[error("entry {index} is {len} bytes; a bundle entry is at most 65535 bytes")]
    EntryTooLarge { index: usize, len: usize },
    #[error("an entry bundle holds 1 to 256 entries (got {count})")]
    BundleCount { count: usize },
    #[error("entry bundle, byte {offset}: {reason}")]
    MalformedBundle { offset: usize, reason: &'static str },
    #[error("a hash tile is 1 to 256 hashes of 32 bytes (got {len} bytes)")]
    HashTileLength { len: usize },
}

/// A tile that could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileReadError<E> {
    #[error(transparent)]
    Tile(#[from] TileError),
    #[error("reading a tree node: {0}")]
    Source(E),
}

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TileKind {
    /// Hashes of tree level `8 * level`.
    Hashes { level: u8 },
    /// Entries (leaf inputs), as a bundle.
    Entries,
}

impl TileKind {
    /// The tile level (0 for entry bundles, which align with level-0 hash tiles).
    pub fn level(self) -> u8 {
        match self {
            TileKind::Hashes { level } => level,
            TileKind::Entries => 0,
        }
    }
}

/// One tile or entry bundle: its kind, index within its level, and width (256 when full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tile {
    kind: TileKind,
    index: u64,
    width: u16,
}

/// The number of hashes at tree level `8 * level` in a tree of `size` leaves, or `None` when
/// such a hash would cover 2^64 leaves or more.
fn hashes_at_tile_level(level: u8, size: u64) -> Option<u64> {
    let shift = u32::from(level) * u32::from(TILE_HEIGHT);
    (shift < 64).then(|| size >> shift)
}

impl Tile {
    /// A tile of this kind, index and width (1 to 256; 256 is a full tile).
    pub fn new(kind: TileKind, index: u64, width: u16) -> Result<Tile, TileError> {
        if !(1..=TILE_WIDTH).contains(&width) {
            return Err(TileError::Width { width });
        }
        if kind.level() > TILE_LEVEL_MAX {
            return Err(TileError::Level {
                level: kind.level(),
            });
        }
        Ok(Tile { kind, index, width })
    }

    /// The tile with this kind and index as it stands in a tree of `tree_size` leaves: full,
    /// partial, or `None` when it has no hashes yet.
    pub fn in_tree(kind: TileKind, index: u64, tree_size: u64) -> Option<Tile> {
        let hashes = hashes_at_tile_level(kind.level(), tree_size)?;
        let full_tiles = hashes / u64::from(TILE_WIDTH);
        let partial_width = (hashes % u64::from(TILE_WIDTH)) as u16;
        let width = match index.cmp(&full_tiles) {
            std::cmp::Ordering::Less => TILE_WIDTH,
            std::cmp::Ordering::Equal if partial_width > 0 => partial_width,
            _ => return None,
        };
        Tile::new(kind, index, width).ok()
    }

    /// What the tile holds.
    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// The index of the tile within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many hashes or entries the tile holds.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile holds fewer than 256 hashes or entries.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The path of the tile below the log's prefix, such as `tile/0/x001/x234/067.p/5`.
    pub fn path(&self) -> String {
        let mut out = String::from("tile/");
        match self.kind {
            TileKind::Hashes { level } => out.push_str(&format!("{level}/")),
            TileKind::Entries => out.push_str("entries/"),
        }
        out.push_str(&encode_tile_index(self.index));
        if self.is_partial() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Parses `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`. Only the canonical form
    /// is accepted (no leading zeros in `<L>` and `<W>`, no leading `x000` group in `<N>`,
    /// no `.p/256`), so each tile has exactly one path.
    pub fn parse_path(path: &str) -> Result<Tile, TileError> {
        let bad = |reason| TileError::Path {
            path: path.to_owned(),
            reason,
        };
        let rest = path
            .strip_prefix("tile/")
            .ok_or(bad("a tile path starts with tile/"))?;
        let (kind, rest) = match rest.strip_prefix("entries/") {
            Some(rest) => (TileKind::Entries, rest),
            None => {
                let (level, rest) = rest
                    .split_once('/')
                    .ok_or(bad("expected tile/<L>/<N> or tile/entries/<N>"))?;
                let level = parse_decimal(level)
                    .filter(|&l| l <= u64::from(TILE_LEVEL_MAX))
                    .ok_or(bad("the level is a decimal number from 0 to 63"))?;
                // Cannot fail: at most 63.
                let level = u8::try_from(level).map_err(|_| bad("level"))?;
                (TileKind::Hashes { level }, rest)
            }
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let width = parse_decimal(width)
                    .filter(|w| (1..u64::from(TILE_WIDTH)).contains(w))
                    .ok_or(bad(
                        "a partial tile's width is a decimal number from 1 to 255",
                    ))?;
                (index, width as u16)
            }
            None => (rest, TILE_WIDTH),
        };
        let index = decode_tile_index(index).ok_or(bad(
            "the index is groups of 3 digits, all but the last starting with x",
        ))?;
        Tile::new(kind, index, width)
    }

    /// The bytes of this hash tile: its `width` hashes of tree level `8 * L`, concatenated,
    /// read from `src`.
    pub fn hash_tile_bytes<S: NodeSource>(
        &self,
        src: &S,
    ) -> Result<Vec<u8>, TileReadError<S::Error>> {
        let TileKind::Hashes { level } = self.kind else {
            return Err(TileError::NotAHashTile.into());
        };
        let node_level = level
            .checked_mul(TILE_HEIGHT)
            .filter(|&l| l < 64)
            .ok_or(TileError::LevelBeyondTree { level })?;
        let first = self
            .index
            .checked_mul(u64::from(TILE_WIDTH))
            .ok_or(TileError::IndexBeyondTree { index: self.index })?;
        let mut out = Vec::with_capacity(usize::from(self.width) * 32);
        for i in 0..u64::from(self.width) {
            let hash = src
                .node(node_level, first + i)
                .map_err(TileReadError::Source)?;
            out.extend_from_slice(&hash.0);
        }
        Ok(out)
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl FromStr for Tile {
    type Err = TileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tile::parse_path(s)
    }
}

/// A decimal number without leading zeros (other than `0` itself).
fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Writes a tile index as zero-padded groups of 3 digits, all but the last prefixed with
/// `x`: 1234067 is `x001/x234/067`, 5 is `005`.
pub fn encode_tile_index(index: u64) -> String {
    let mut out = format!("{:03}", index % 1000);
    let mut rest = index / 1000;
    while rest > 0 {
        out = format!("x{:03}/{out}", rest % 1000);
        rest /= 1000;
    }
    out
}

/// Reads a tile index written by [`encode_tile_index`]; `None` for any other form.
pub fn decode_tile_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    let (last, leading) = groups.split_last()?;
    fn digits3(g: &str) -> Option<&str> {
        (g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())).then_some(g)
    }
    let mut index: u64 = 0;
    for (i, group) in leading.iter().enumerate() {
        let digits = digits3(group.strip_prefix('x')?)?;
        if i == 0 && digits == "000" {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    index
        .checked_mul(1000)?
        .checked_add(digits3(last)?.parse().ok()?)
}

/// The bytes of an entry bundle: each entry as a big-endian uint16 length, then its bytes.
pub fn entry_bundle<I>(entries: I) -> Result<Vec<u8>, TileError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut out = Vec::new();
    let mut count = 0usize;
    for (index, entry) in entries.into_iter().enumerate() {
        let entry = entry.as_ref();
        let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge {
            index,
            len: entry.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
        count += 1;
    }
    if !(1..=usize::from(TILE_WIDTH)).contains(&count) {
        return Err(TileError::BundleCount { count });
    }
    Ok(out)
}

/// Splits an entry bundle into its entries.
pub fn parse_entry_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let malformed = |reason| TileError::MalformedBundle { offset, reason };
        let len_bytes = bytes
            .get(offset..offset + 2)
            .ok_or(malformed("a length needs 2 bytes"))?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let entry = bytes
            .get(offset + 2..offset + 2 + len)
            .ok_or(malformed("the entry is shorter than its length"))?;
        entries.push(entry);
        offset += 2 + len;
        if entries.len() > usize::from(TILE_WIDTH) {
            return Err(TileError::BundleCount {
                count: entries.len(),
            });
        }
    }
    if entries.is_empty() {
        return Err(TileError::BundleCount { count: 0 });
    }
    Ok(entries)
}

/// Splits a hash tile into its hashes.
pub fn parse_hash_tile(bytes: &[u8]) -> Result<Vec<Hash>, TileError> {
    let width = bytes.len() / 32;
    if bytes.len() % 32 != 0 || !(1..=usize::from(TILE_WIDTH)).contains(&width) {
        return Err(TileError::HashTileLength { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|chunk| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(chunk);
            Hash(hash)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, node_hash, MemoryTree};

    #[test]
    fn index_encoding_matches_the_spec() {
        assert_eq!(encode_tile_index(1_234_067), "x001/x234/067");
        assert_eq!(encode_tile_index(0), "000");
        assert_eq!(encode_tile_index(5), "005");
        assert_eq!(encode_tile_index(1000), "x001/000");
        assert_eq!(decode_tile_index("x001/x234/067"), Some(1_234_067));
        assert_eq!(
            decode_tile_index(&encode_tile_index(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "",
            "67",
            "0067",
            "x067",
            "x000/067",
            "001/067",
            "x01/067",
            "x001/",
            "x001//067",
            "06a",
            "x018/x446/x744/x073/x709/x551/616",
        ] {
            assert_eq!(decode_tile_index(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn paths_round_trip() {
        let cases = [
            (
                TileKind::Hashes { level: 0 },
                1_234_067,
                256,
                "tile/0/x001/x234/067",
            ),
            (TileKind::Hashes { level: 1 }, 0, 17, "tile/1/000.p/17"),
            (TileKind::Hashes { level: 63 }, 999, 1, "tile/63/999.p/1"),
            (
                TileKind::Entries,
                1_234_067,
                255,
                "tile/entries/x001/x234/067.p/255",
            ),
            (TileKind::Entries, 273, 256, "tile/entries/273"),
        ];
        for (kind, index, width, path) in cases {
            let tile = Tile::new(kind, index, width).unwrap();
            assert_eq!(tile.path(), path);
            assert_eq!(Tile::parse_path(path), Ok(tile));
            assert_eq!(path.parse::<Tile>(), Ok(tile));
        }
        for bad in [
            "tile/0/x001/x234/067.p/256",
            "tile/0/000.p/0",
            "tile/0/000.p/05",
            "tile/00/000",
            "tile/64/000",
            "tile/entries/000.p/",
            "tile/0/",
            "tile/x/000",
            "tiles/0/000",
            "tile/0/000/",
            "tile/entries/x000/001",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tiles_in_a_tree_match_the_spec_examples() {
        // A tree of 70,000 leaves: 273 full level-0 tiles and a partial one of width 112;
        // one full level-1 tile and a partial one of width 17; a partial level-2 tile of
        // width 1.
        let size = 70_000;
        let l0 = TileKind::Hashes { level: 0 };
        let l1 = TileKind::Hashes { level: 1 };
        let l2 = TileKind::Hashes { level: 2 };
        assert_eq!(Tile::in_tree(l0, 272, size).map(|t| t.width()), Some(256));
        assert_eq!(Tile::in_tree(l0, 273, size).map(|t| t.width()), Some(112));
        assert_eq!(Tile::in_tree(l0, 274, size), None);
        assert_eq!(Tile::in_tree(l1, 0, size).map(|t| t.width()), Some(256));
        assert_eq!(Tile::in_tree(l1, 1, size).map(|t| t.width()), Some(17));
        assert_eq!(Tile::in_tree(l1, 2, size), None);
        assert_eq!(Tile::in_tree(l2, 0, size).map(|t| t.width()), Some(1));
        assert_eq!(Tile::in_tree(TileKind::Hashes { level: 3 }, 0, size), None);
        assert_eq!(
            Tile::in_tree(TileKind::Entries, 273, size).map(|t| t.path()),
            Some("tile/entries/273.p/112".to_owned())
        );
        // A tree of 256 leaves: one full level-0 tile and a level-1 tile of width 1.
        assert_eq!(Tile::in_tree(l0, 0, 256).map(|t| t.width()), Some(256));
        assert_eq!(Tile::in_tree(l0, 1, 256), None);
        assert_eq!(Tile::in_tree(l1, 0, 256).map(|t| t.width()), Some(1));
        assert_eq!(
            Tile::in_tree(TileKind::Hashes { level: 8 }, 0, u64::MAX),
            None
        );
    }

    #[test]
    fn hash_tiles_hold_the_nodes_of_their_level() {
        let tree = MemoryTree::from_leaves((0u32..600).map(|i| i.to_be_bytes()));
        let tile = Tile::in_tree(TileKind::Hashes { level: 0 }, 2, 600).unwrap();
        assert_eq!(tile.width(), 88);
        let hashes = parse_hash_tile(&tile.hash_tile_bytes(&tree).unwrap()).unwrap();
        assert_eq!(hashes.len(), 88);
        assert_eq!(hashes[0], leaf_hash(&512u32.to_be_bytes()));
        let l1 = Tile::in_tree(TileKind::Hashes { level: 1 }, 0, 600).unwrap();
        assert_eq!(l1.width(), 2);
        let top = parse_hash_tile(&l1.hash_tile_bytes(&tree).unwrap()).unwrap();
        // A level-1 hash is the root of the full level-0 tile below it.
        let full0 = Tile::in_tree(TileKind::Hashes { level: 0 }, 1, 600).unwrap();
        let below = parse_hash_tile(&full0.hash_tile_bytes(&tree).unwrap()).unwrap();
        let mut layer = below;
        while layer.len() > 1 {
            layer = layer.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        assert_eq!(top[1], layer[0]);
        let bundle = Tile::new(TileKind::Entries, 0, 1).unwrap();
        assert_eq!(
            bundle.hash_tile_bytes(&tree),
            Err(TileReadError::Tile(TileError::NotAHashTile))
        );
        let beyond = Tile::new(TileKind::Hashes { level: 0 }, 3, 1).unwrap();
        assert!(matches!(
            beyond.hash_tile_bytes(&tree),
            Err(TileReadError::Source(_))
        ));
        assert_eq!(
            Tile::new(TileKind::Hashes { level: 8 }, 0, 1)
                .unwrap()
                .hash_tile_bytes(&tree),
            Err(TileReadError::Tile(TileError::LevelBeyondTree { level: 8 }))
        );
        assert!(parse_hash_tile(&[0; 33]).is_err());
        assert!(parse_hash_tile(&[]).is_err());
    }

    #[test]
    fn entry_bundles_round_trip() {
        let entries: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7; 300]];
        let bytes = entry_bundle(&entries).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(&bytes[5..7], &[1, 44]);
        let back = parse_entry_bundle(&bytes).unwrap();
        assert_eq!(back, entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(
            entry_bundle([vec![0u8; 65_536]]),
            Err(TileError::EntryTooLarge {
                index: 0,
                len: 65_536
            })
        );
        assert!(entry_bundle(Vec::<Vec<u8>>::new()).is_err());
        assert!(entry_bundle(vec![b"x"; 257]).is_err());
        assert!(parse_entry_bundle(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_entry_bundle(&[0]).is_err());
        assert!(parse_entry_bundle(&[]).is_err());
    }
}
