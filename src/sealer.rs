//! Sealing beside the writer. A gift's canonical bytes and hash are about 40% of what the
//! writer spends on it, and the only part that needs the event before it (its `prev`): the
//! rules and the fold need neither. So the writer decides and applies a gift at once and
//! queues its record here; a thread of this pipe seals the queue in order while the writer
//! decides the next commands, and the writer takes the sealed events when it closes the
//! batch. Records that might not seal (all but gifts and matches, see
//! [`EventRecord::sealed_len_bound`]) are sealed by the writer itself before it applies
//! them, after the pipe has sealed everything before them, so a refusal still leaves the
//! state untouched.
//!
//! The writer seals speculatively: a submission's records are queued as its commands are
//! decided, and taken back ([`SealPipe::truncate`]) when a later command refuses it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use events::{EventRecord, Hash, SealedEvent, EVENT_BYTES_MAX};
use projections::LedgerState;

use crate::command::Command;
use crate::writer::{Added, ExecuteError, Stamp};

/// The writer hands the thread this many records at a time (about 50 µs of sealing): fewer
/// wake-ups of a thread that keeps up with the writer and so often waits.
const HAND_OVER_RECORDS: usize = 64;

/// The writer's end of the pipe; the thread stops when it is dropped.
pub struct SealPipe {
    shared: Arc<Shared>,
    /// Records not yet handed to the thread.
    local: Vec<EventRecord>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<Pipe>,
    changed: Condvar,
}

struct Pipe {
    /// Records to seal, in seq order, after those in `sealed` and those being sealed.
    queue: VecDeque<EventRecord>,
    /// Whether the thread holds records it took off the queue.
    sealing: bool,
    /// Sealed since the last [`SealPipe::take`], in seq order.
    sealed: Vec<SealedEvent>,
    /// The hash of the last event sealed (or of the event before the first in `sealed`).
    prev: Hash,
    /// The hash before the first event in `sealed`.
    start_prev: Hash,
    /// Records of the queue that did not seal (a bug: the writer queues only records whose
    /// bound says they will): the first seq the thread had taken with them, and why.
    failed: Option<(u64, String)>,
    closed: bool,
}

impl SealPipe {
    /// A pipe whose first event follows the one hashed `head`.
    pub fn start(head: Hash) -> SealPipe {
        let shared = Arc::new(Shared {
            state: Mutex::new(Pipe {
                queue: VecDeque::new(),
                sealing: false,
                sealed: Vec::new(),
                prev: head,
                start_prev: head,
                failed: None,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ledger-sealer".into())
                .spawn(move || seal_loop(&shared))
                .expect("the sealing thread starts")
        };
        SealPipe {
            shared,
            local: Vec::with_capacity(HAND_OVER_RECORDS),
            thread: Some(thread),
        }
    }

    /// Decides `command` against `state` and applies its events.
    /// A gift or a match is queued to be sealed when `defer` allows; any other event is
    /// sealed here, before it is applied. A rejected command leaves `state` and the pipe
    /// untouched; an `Internal` error (a bug) may leave part of it applied.
    pub fn execute(
        &mut self,
        state: &mut LedgerState,
        at: &Stamp<'_>,
        command: &Command,
        defer: bool,
    ) -> Result<Added, ExecuteError> {
        let records = crate::writer::records(state, at, command)?;
        let bounds: Option<Vec<usize>> = records
            .iter()
            .map(|r| r.sealed_len_bound().filter(|b| *b <= EVENT_BYTES_MAX))
            .collect();
        let events = records.len();
        if let Some(bounds) = bounds.filter(|_| defer) {
            for record in &records {
                // The hash is not known yet: the writer sets the state's head once the batch
                // is sealed ([`SealPipe::take`]).
                state
                    .apply_record(record, Hash::ZERO)
                    .map_err(crate::writer::fold_refused)?;
            }
            self.local.extend(records);
            if self.local.len() >= HAND_OVER_RECORDS {
                self.hand_over();
            }
            Ok(Added {
                events,
                bytes: bounds.iter().sum(),
            })
        } else {
            let prev = self.drain()?;
            let sealed = crate::writer::seal_and_apply(state, records, prev)?;
            let bytes = sealed.iter().map(|e| e.canonical_bytes().len()).sum();
            let mut pipe = self.shared.lock();
            pipe.prev = sealed.last().map_or(pipe.prev, SealedEvent::hash);
            pipe.sealed.extend(sealed);
            Ok(Added { events, bytes })
        }
    }

    /// Everything sealed since the last take, in seq order; the next batch continues the
    /// chain after it. An error when a queued record did not seal (a bug).
    pub fn take(&mut self) -> Result<Vec<SealedEvent>, ExecuteError> {
        self.drain()?;
        let mut pipe = self.shared.lock();
        pipe.start_prev = pipe.prev;
        Ok(std::mem::take(&mut pipe.sealed))
    }

    /// Forgets the events from `seq` on (sealed or not): their submission was refused.
    pub fn truncate(&mut self, seq: u64) {
        self.local.retain(|r| r.seq < seq);
        let mut pipe = self.shared.idle();
        pipe.queue.retain(|r| r.seq < seq);
        if let Some(keep) = pipe.sealed.iter().position(|e| e.seq() >= seq) {
            pipe.sealed.truncate(keep);
            pipe.prev = pipe
                .sealed
                .last()
                .map_or(pipe.start_prev, SealedEvent::hash);
        }
        if pipe.failed.as_ref().is_some_and(|(at, _)| *at >= seq) {
            pipe.failed = None;
        }
    }

    /// Forgets everything not taken: the chain starts again after `head` (the writer went
    /// back to a state whose head it is).
    pub fn restart(&mut self, head: Hash) {
        self.local.clear();
        let mut pipe = self.shared.idle();
        pipe.queue.clear();
        pipe.sealed.clear();
        pipe.prev = head;
        pipe.start_prev = head;
        pipe.failed = None;
    }

    /// Seals everything queued (the thread's records first, the rest here, which saves
    /// waking it for a small batch) and returns the hash of the last event sealed.
    fn drain(&mut self) -> Result<Hash, ExecuteError> {
        let mut pipe = self.shared.idle();
        let mut records: Vec<EventRecord> = pipe.queue.drain(..).collect();
        records.append(&mut self.local);
        let prev = pipe.prev;
        if let Some((seq, why)) = &pipe.failed {
            return Err(ExecuteError::Internal(format!(
                "event {seq} did not seal after it was applied: {why}"
            )));
        }
        // The thread is idle and the queue empty: nobody else touches the chain meanwhile.
        drop(pipe);
        let sealed = crate::writer::seal_chain(records, prev).map_err(|e| match e {
            ExecuteError::Rejected(e) => {
                ExecuteError::Internal(format!("an event did not seal after it was applied: {e}"))
            }
            internal => internal,
        })?;
        let mut pipe = self.shared.lock();
        pipe.prev = sealed.last().map_or(prev, SealedEvent::hash);
        pipe.sealed.extend(sealed);
        Ok(pipe.prev)
    }

    fn hand_over(&mut self) {
        let mut pipe = self.shared.lock();
        let wake = pipe.queue.is_empty();
        pipe.queue.extend(self.local.drain(..));
        drop(pipe);
        if wake {
            self.shared.changed.notify_all();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pipe> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The pipe, once the thread is not sealing (it may take no more until this is dropped).
    fn idle(&self) -> MutexGuard<'_, Pipe> {
        self.changed
            .wait_while(self.lock(), |p| p.sealing)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for SealPipe {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: takes everything queued, seals it after the last hash, and repeats.
fn seal_loop(shared: &Shared) {
    loop {
        let (records, mut prev) = {
            let pipe = shared
                .changed
                .wait_while(shared.lock(), |p| {
                    !p.closed && (p.queue.is_empty() || p.failed.is_some())
                })
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut pipe = pipe;
            if pipe.closed {
                return;
            }
            pipe.sealing = true;
            (pipe.queue.drain(..).collect::<Vec<_>>(), pipe.prev)
        };
        let first = records.first().map(|r| r.seq);
        // A panic here must not leave the writer waiting for a thread that is gone: it is
        // reported like a record that did not seal, and the writer drops the batch.
        let sealing = std::panic::catch_unwind(|| {
            let sealed = crate::writer::seal_chain(records, prev)?;
            // The Merkle leaf hash too, while the bytes are in this core's cache: the append
            // then finds it done.
            sealed.iter().for_each(|e| {
                e.leaf_hash();
            });
            Ok::<_, ExecuteError>(sealed)
        });
        let (mut sealed, failed) = match sealing {
            Ok(Ok(sealed)) => {
                prev = sealed.last().map_or(prev, SealedEvent::hash);
                (sealed, None)
            }
            Ok(Err(e)) => (Vec::new(), first.map(|seq| (seq, format!("{e:?}")))),
            Err(_) => (
                Vec::new(),
                first.map(|seq| (seq, "the sealing thread panicked".to_owned())),
            ),
        };
        let mut pipe = shared.lock();
        pipe.sealing = false;
        pipe.sealed.append(&mut sealed);
        pipe.prev = prev;
        if failed.is_some() {
            pipe.queue.clear();
            pipe.failed = failed;
        }
        drop(pipe);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{EventBody, Id, ProjectClosed, Text};

    fn records(seqs: std::ops::Range<u64>) -> Vec<EventRecord> {
        seqs.map(|seq| EventRecord {
            seq,
            prev: Hash::ZERO,
            ledger: Id::new("test").unwrap(),
            ts_ms: 1_539_046_800_000,
            actor: Id::new("admin").unwrap(),
            idempotency: None,
            token_issuer: None,
            body: EventBody::ProjectClosed(ProjectClosed {
                project: Id::new("cp").unwrap(),
                reason: Text::new("done").unwrap(),
            }),
        })
        .collect()
    }

    /// Queues records as the writer does: handed to the thread, or kept back (`hand: false`).
    fn queue(pipe: &mut SealPipe, seqs: std::ops::Range<u64>, hand: bool) {
        pipe.local.extend(records(seqs));
        if hand {
            pipe.hand_over();
        }
    }

    /// Whatever the thread sealed, what the writer sealed, and what was taken back, a take
    /// gives exactly the chain sealing the kept records in one go would give.
    #[test]
    fn taken_back_and_restarted_chains_equal_sealing_in_one_go() {
        let head = Hash([7; 32]);
        let mut pipe = SealPipe::start(head);
        queue(&mut pipe, 0..200, true);
        queue(&mut pipe, 200..230, false);
        // A submission from seq 150 on is refused: some of it sealed, some queued, some
        // still with the writer.
        pipe.truncate(150);
        queue(&mut pipe, 150..170, true);
        queue(&mut pipe, 170..175, false);
        let sealed = pipe.take().unwrap();
        let expected = crate::writer::seal_chain(records(0..175), head).unwrap();
        assert_eq!(sealed, expected);
        // The next batch goes on from the last hash taken.
        queue(&mut pipe, 175..300, true);
        let next = pipe.take().unwrap();
        let last = expected.last().unwrap().hash();
        assert_eq!(
            next,
            crate::writer::seal_chain(records(175..300), last).unwrap()
        );
        // Taken back to the start of a batch, then restarted elsewhere.
        queue(&mut pipe, 300..400, true);
        pipe.truncate(300);
        assert!(pipe.take().unwrap().is_empty());
        queue(&mut pipe, 300..310, true);
        let other = Hash([9; 32]);
        pipe.restart(other);
        queue(&mut pipe, 40..45, true);
        let restarted = pipe.take().unwrap();
        assert_eq!(
            restarted,
            crate::writer::seal_chain(records(40..45), other).unwrap()
        );
        // Every sealed event's leaf hash is already computed (by whichever thread sealed it)
        // and is the one its bytes give.
        for e in sealed.iter().chain(&next).chain(&restarted) {
            assert_eq!(
                e.leaf_hash(),
                events::merkle::leaf_hash(e.canonical_bytes())
            );
        }
    }
}
