//! The receipt index: receipt number (the 64 bits a receipt code spells) → donation seq.
//!
//! Its keys are uniformly random (SHA-256 derived), so in one persistent B-tree every gift
//! inserts into a different leaf; and since the writer shares its state every batch (it keeps
//! the state before the batch and publishes the one after it), each such insert copies a
//! leaf and the branches above it, and every lookup misses the cache several times. Here the
//! index is an immutable hash map shared by every copy of the state, plus a small persistent
//! map of the receipts since it was last rebuilt; when that reaches [`RECENT_MAX`] entries the
//! two are folded into a new hash map (once per that many gifts, a copy of the index's table,
//! or none when no other copy of the state holds it).
//!
//! It serializes as one map in key order, exactly as an `OrdMap<u64, u64>` does, so snapshot
//! and `rebuild` bytes do not depend on where the split happens to be.

use std::collections::HashMap;
use std::sync::Arc;

use imbl::OrdMap;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many receipts the small persistent part holds before it is folded into the hash map.
pub const RECENT_MAX: usize = 65_536;

#[derive(Clone, Default)]
pub struct ReceiptIndex {
    /// Everything up to the last fold. Never changed in place: a fold makes a new one.
    frozen: Arc<HashMap<u64, u64, FxBuildHasher>>,
    /// Receipts since the last fold; never a key of `frozen`.
    recent: OrdMap<u64, u64>,
}

impl ReceiptIndex {
    pub fn get(&self, number: &u64) -> Option<&u64> {
        self.recent.get(number).or_else(|| self.frozen.get(number))
    }

    /// Adds a receipt. A number already present is left as it was and its seq returned.
    pub fn insert(&mut self, number: u64, seq: u64) -> Option<u64> {
        if let Some(&earlier) = self.get(&number) {
            return Some(earlier);
        }
        self.recent.insert(number, seq);
        if self.recent.len() >= RECENT_MAX {
            self.fold();
        }
        None
    }

    pub fn len(&self) -> usize {
        self.frozen.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry in key order.
    pub fn sorted(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self
            .frozen
            .iter()
            .map(|(&k, &v)| (k, v))
            .chain(self.recent.iter().map(|(&k, &v)| (k, v)))
            .collect();
        all.sort_unstable_by_key(|&(k, _)| k);
        all
    }

    /// Moves the recent receipts into the hash map: in place when no other copy of the state
    /// holds it (a refold from the log), else into a copy (a table copy, not a rehash).
    fn fold(&mut self) {
        let frozen = Arc::make_mut(&mut self.frozen);
        frozen.reserve(self.recent.len());
        frozen.extend(self.recent.iter().map(|(&k, &v)| (k, v)));
        self.recent = OrdMap::new();
    }
}

impl PartialEq for ReceiptIndex {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .frozen
                .iter()
                .chain(self.recent.iter())
                .all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for ReceiptIndex {}

impl std::fmt::Debug for ReceiptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

impl Serialize for ReceiptIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.sorted())
    }
}

impl<'de> Deserialize<'de> for ReceiptIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = HashMap::<u64, u64, FxBuildHasher>::deserialize(deserializer)?;
        Ok(ReceiptIndex {
            frozen: Arc::new(entries),
            recent: OrdMap::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a plain ordered map: the same answers, and the same serialized bytes,
        /// across folds (a small fold size would need a test hook; 3 × `RECENT_MAX` keys
        /// are cheap enough in one case below).
        #[test]
        fn it_answers_and_serializes_as_an_ordered_map(
            keys in proptest::collection::vec(any::<u64>(), 0..300),
            probes in proptest::collection::vec(any::<u64>(), 0..50),
        ) {
            let mut index = ReceiptIndex::default();
            let mut model = OrdMap::new();
            for (seq, k) in keys.iter().enumerate() {
                let expected = model.get(k).copied();
                if expected.is_none() {
                    model.insert(*k, seq as u64);
                }
                prop_assert_eq!(index.insert(*k, seq as u64), expected);
            }
            for k in keys.iter().chain(&probes) {
                prop_assert_eq!(index.get(k), model.get(k));
            }
            prop_assert_eq!(index.len(), model.len());
            prop_assert_eq!(
                serde_json::to_string(&index).unwrap(),
                serde_json::to_string(&model).unwrap()
            );
        }
    }

    #[test]
    fn folds_keep_every_receipt_and_the_serialized_form() {
        let mut index = ReceiptIndex::default();
        let mut model = OrdMap::new();
        // Pseudo-random keys, as receipt numbers are, through three folds.
        let mut k: u64 = 0x9E37_79B9_7F4A_7C15;
        for seq in 0..(3 * RECENT_MAX as u64 + 17) {
            k ^= k << 13;
            k ^= k >> 7;
            k ^= k << 17;
            assert_eq!(index.insert(k, seq), None);
            model.insert(k, seq);
        }
        assert!(index.recent.len() < RECENT_MAX);
        assert_eq!(index.frozen.len(), 3 * RECENT_MAX);
        assert_eq!(index.len(), model.len());
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(json, serde_json::to_string(&model).unwrap());
        // A copy taken before more inserts does not see them; both answer for themselves.
        let before = index.clone();
        assert_eq!(index.insert(k, 0), Some(3 * RECENT_MAX as u64 + 16));
        assert_eq!(index.insert(1, 99), None);
        assert_eq!(before.get(&1), None);
        assert_eq!(index.get(&1), Some(&99));
        // A fold while a copy holds the hash map leaves the copy as it was.
        let held = index.clone();
        for seq in 0..RECENT_MAX as u64 {
            index.insert(u64::MAX - seq, seq);
        }
        assert_eq!(index.len(), held.len() + RECENT_MAX);
        assert_eq!(held.get(&u64::MAX), None);
        assert_eq!(index.get(&u64::MAX), Some(&0));
        assert_eq!(held.get(&1), Some(&99));
        // Read back: equal to the original, which was written in two parts.
        let back: ReceiptIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(back, before);
        assert!(back.recent.is_empty());
    }
}
