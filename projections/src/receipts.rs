//! The receipt index: receipt number (the 64 bits a receipt code spells) → donation seq.
//!
//! Every gift looks a number up (is this channel transaction already recorded?) and adds
//! one, and the writer shares its state every batch (it keeps the state before the batch
//! and publishes the one after it). Receipt numbers are uniformly random (SHA-256 derived),
//! so in a persistent map each insert copies a node no other insert shares, and each
//! lookup misses the cache at every level: measured, the index was two fifths of the
//! writer's CPU per gift.
//!
//! So the index is not a value of the state. It is one hash table shared by every copy of a
//! state (`clone` shares it), only ever added to, and it holds *candidates*: the state's
//! own `donations` map is the authority. [`crate::LedgerState::donation_with_receipt`] accepts a
//! candidate seq only when that state holds a donation at it with the same receipt number.
//! Copies of a state that went separate ways (a batch refused after its append failed, a
//! command tried on a copy) may each have added their own donations at the same seqs; each
//! copy still answers for itself, because it checks every candidate against its own
//! donations. What the index holds is therefore a function of the donations, so it is
//! neither compared nor serialized: a state read back from a snapshot rebuilds it from its
//! donations at the first lookup.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rustc_hash::FxBuildHasher;

#[derive(Clone)]
pub struct ReceiptIndex {
    shared: Arc<Shared>,
}

struct Shared {
    /// False for a state read back from a snapshot until the table is filled from its
    /// donations.
    built: AtomicBool,
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    /// A number → the first seq indexed under it.
    first: HashMap<u64, u64, FxBuildHasher>,
    /// Further seqs under the same number, indexed by copies of a state that went separate
    /// ways. Almost always empty.
    more: HashMap<u64, Vec<u64>, FxBuildHasher>,
}

impl Default for ReceiptIndex {
    /// An empty index, for an empty state.
    fn default() -> Self {
        Self::new(true)
    }
}

impl ReceiptIndex {
    fn new(built: bool) -> Self {
        ReceiptIndex {
            shared: Arc::new(Shared {
                built: AtomicBool::new(built),
                table: RwLock::new(Table::default()),
            }),
        }
    }

    /// The index of a state read back from a snapshot: filled at the first use.
    pub fn unbuilt() -> Self {
        Self::new(false)
    }

    /// Fills an unbuilt index from every (number, seq) of the state's donations, once.
    pub fn ensure_built(&self, donations: impl FnOnce() -> Vec<(u64, u64)>) {
        if self.shared.built.load(Ordering::Acquire) {
            return;
        }
        let mut table = self.write();
        if self.shared.built.load(Ordering::Acquire) {
            return;
        }
        for (number, seq) in donations() {
            table.add(number, seq);
        }
        self.shared.built.store(true, Ordering::Release);
    }

    /// The first candidate seq under `number` that `accept` takes.
    pub fn find(&self, number: u64, mut accept: impl FnMut(u64) -> bool) -> Option<u64> {
        self.shared
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find(number, &mut accept)
    }

    /// Adds `seq` as a candidate under `number`, unless a candidate there that `is_own`
    /// takes is found first: then nothing is added and that one is returned. One look-up of
    /// the table when the number is new, as it almost always is.
    pub fn add(&self, number: u64, seq: u64, mut is_own: impl FnMut(u64) -> bool) -> Option<u64> {
        let mut table = self.write();
        if let Entry::Vacant(v) = table.first.entry(number) {
            v.insert(seq);
            return None;
        }
        if let Some(earlier) = table.find(number, |s| s != seq && is_own(s)) {
            return Some(earlier);
        }
        table.add(number, seq);
        None
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.shared
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many candidates the shared table holds (for all copies of the state).
    pub fn candidates(&self) -> usize {
        let table = self
            .shared
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        table.first.len() + table.more.values().map(Vec::len).sum::<usize>()
    }
}

impl Table {
    /// The first candidate under `number` that `accept` takes.
    fn find(&self, number: u64, mut accept: impl FnMut(u64) -> bool) -> Option<u64> {
        let first = *self.first.get(&number)?;
        if accept(first) {
            return Some(first);
        }
        self.more.get(&number)?.iter().copied().find(|&s| accept(s))
    }

    fn add(&mut self, number: u64, seq: u64) {
        match self.first.entry(number) {
            Entry::Vacant(v) => {
                v.insert(seq);
            }
            Entry::Occupied(o) if *o.get() == seq => {}
            Entry::Occupied(_) => {
                let more = self.more.entry(number).or_default();
                if !more.contains(&seq) {
                    more.push(seq);
                }
            }
        }
    }
}

/// Equal always: what the index holds follows from the donations, which are compared.
impl PartialEq for ReceiptIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ReceiptIndex {}

impl std::fmt::Debug for ReceiptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptIndex")
            .field("candidates", &self.candidates())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_kept_per_copy_and_checked_by_the_caller() {
        let index = ReceiptIndex::default();
        let n = 0xABCD;
        assert_eq!(index.add(n, 1, |_| false), None);
        // Adding the same candidate again adds nothing.
        assert_eq!(index.add(n, 1, |_| false), None);
        assert_eq!(index.candidates(), 1);
        // A copy that holds seq 1 under n finds it and adds nothing.
        assert_eq!(index.add(n, 2, |s| s == 1), Some(1));
        assert_eq!(index.candidates(), 1);
        // A copy that does not (it went its own way) adds its own.
        assert_eq!(index.add(n, 2, |_| false), None);
        assert_eq!(index.candidates(), 2);
        assert_eq!(index.find(n, |s| s == 2), Some(2));
        assert_eq!(index.find(n, |s| s == 1), Some(1));
        assert_eq!(index.find(n, |_| false), None);
        assert_eq!(index.find(n + 1, |_| true), None);
        // The second candidate is found too when adding.
        assert_eq!(index.add(n, 3, |s| s == 2), Some(2));
        assert_eq!(index.candidates(), 2);
        // Clones share the table.
        let copy = index.clone();
        assert_eq!(copy.add(7, 9, |_| false), None);
        assert_eq!(index.find(7, |s| s == 9), Some(9));
    }

    #[test]
    fn an_unbuilt_index_is_filled_once() {
        let index = ReceiptIndex::unbuilt();
        index.ensure_built(|| vec![(5, 50), (6, 60)]);
        index.ensure_built(|| panic!("filled twice"));
        assert_eq!(index.find(6, |_| true), Some(60));
        assert_eq!(index.candidates(), 2);
        // A new index is built (empty) from the start.
        ReceiptIndex::default().ensure_built(|| panic!("an empty state has no donations"));
    }
}
