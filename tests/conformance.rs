//! The conformance suite of the `EventLog` trait: written once, run against every backend.
//!
//! Each case is an `async fn` over a [`Fixture`] (a way to open, and reopen, one log of one
//! backend). The memory and sled backends get one `#[tokio::test]` per case and always run.
//! EventStoreDB/KurrentDB runs every case in one test when the crate is built with
//! `--features eventstore` and `EVENTSTORE_URL` names a real server; otherwise that test prints
//! one line saying it was skipped and why, and passes. No fake server stands in for it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use events::{
    Amount, ChainVerifier, Channel, Currency, EventBody, EventRecord, Hash, Id, ProjectKind,
    ProjectOpened, SealedEvent, Text,
};
use ledger::command::{Command, CommandError, DonationInput};
use ledger::store::{subscribe, EventLog, Head, MemoryLog, SledLog, StoreError, READ_EVENTS_MAX};
use ledger::writer::{catch_up, spawn_writer, Submission, WriteError, WriterConfig};
use projections::LedgerState;

/// How long a case waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(20);

/// One log of one backend, opened and reopened by the suite.
#[async_trait]
trait Fixture: Send + Sync {
    /// The ledger the log holds; events appended carry it.
    fn ledger(&self) -> Id;
    /// Opens the log: empty the first time, and after every handle was dropped, the same log
    /// as a restarted process would find it.
    async fn open(&self) -> Arc<dyn EventLog>;
    /// A second handle on the same log for a second writer: a clone in one process, a
    /// second connection for a server.
    async fn second_handle(&self, first: &Arc<dyn EventLog>) -> Arc<dyn EventLog> {
        first.clone()
    }
    /// Backend-specific checks after the idempotent-retry case appended `batch` at
    /// `expected_len` and the log holds `len` events.
    async fn check_retry(&self, _expected_len: u64, _batch: &[SealedEvent], _len: u64) {}
}

// ---------------------------------------------------------------------------------------
// Backends

struct MemoryFixture {
    ledger: Id,
    /// The "disk": the last log opened. Reopening makes a new log over its events.
    disk: Mutex<Option<MemoryLog>>,
}

fn memory() -> MemoryFixture {
    MemoryFixture {
        ledger: Id::new("conformance").unwrap(),
        disk: Mutex::new(None),
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn ledger(&self) -> Id {
        self.ledger.clone()
    }
    async fn open(&self) -> Arc<dyn EventLog> {
        let mut disk = self.disk.lock().unwrap();
        let log = match disk.as_ref() {
            None => MemoryLog::new(),
            Some(old) => old.reopen().expect("reopening the memory log"),
        };
        *disk = Some(log.clone());
        Arc::new(log)
    }
}

struct SledFixture {
    ledger: Id,
    dir: tempfile::TempDir,
}

fn sled() -> SledFixture {
    SledFixture {
        ledger: Id::new("conformance").unwrap(),
        dir: tempfile::tempdir().unwrap(),
    }
}

#[async_trait]
impl Fixture for SledFixture {
    fn ledger(&self) -> Id {
        self.ledger.clone()
    }
    async fn open(&self) -> Arc<dyn EventLog> {
        // A just-dropped sled database may hold its file lock a moment longer.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match SledLog::open(self.dir.path()) {
                Ok(log) => return Arc::new(log),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("sled not reopened yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("reopening sled: {e}"),
            }
        }
    }
}

#[cfg(feature = "eventstore")]
mod eventstoredb {
    use super::*;
    use ledger::store::eventstore_log::{event_id, EventStoreLog};

    pub struct EventStoreFixture {
        pub url: String,
        pub ledger: Id,
    }

    impl EventStoreFixture {
        /// A fresh ledger (a fresh stream) per case, so runs never see each other's events.
        pub fn new(url: &str, case: &str) -> EventStoreFixture {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!("conf-{}-{nanos:x}", case.replace('_', "-"));
            EventStoreFixture {
                url: url.to_owned(),
                ledger: Id::new(&name[..name.len().min(64)]).unwrap(),
            }
        }

        async fn connect(&self) -> EventStoreLog {
            EventStoreLog::connect(&self.url, &self.ledger)
                .await
                .expect("connecting to EventStoreDB at EVENTSTORE_URL")
        }
    }

    #[async_trait]
    impl Fixture for EventStoreFixture {
        fn ledger(&self) -> Id {
            self.ledger.clone()
        }
        async fn open(&self) -> Arc<dyn EventLog> {
            Arc::new(self.connect().await)
        }
        async fn second_handle(&self, _first: &Arc<dyn EventLog>) -> Arc<dyn EventLog> {
            // A second API server: its own connection, its own view of the head.
            Arc::new(self.connect().await)
        }
        async fn check_retry(&self, expected_len: u64, batch: &[SealedEvent], len: u64) {
            let log = self.connect().await;
            // The stored ids are the ones derived from the hashes.
            let ids = log.stored_event_ids(0, READ_EVENTS_MAX).await.unwrap();
            assert_eq!(ids.len() as u64, len);
            for e in batch {
                assert_eq!(
                    ids[e.seq() as usize],
                    event_id(&e.hash()),
                    "seq {}",
                    e.seq()
                );
            }
            // A retry after a lost acknowledgement sends the same events at the same
            // expected revision straight to the server: it is recognised, not duplicated.
            match log.resend(expected_len, batch).await {
                Ok(reported) => assert_eq!(reported, expected_len + batch.len() as u64),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("resending a batch: {e}"),
            }
            assert_eq!(
                log.head().await.unwrap().len,
                len,
                "no duplicate after a resend"
            );
            let ids_after = log.stored_event_ids(0, READ_EVENTS_MAX).await.unwrap();
            assert_eq!(ids_after, ids);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn event(ledger: &Id, seq: u64, prev: Hash) -> SealedEvent {
    EventRecord {
        seq,
        prev,
        ledger: ledger.clone(),
        ts_ms: 1_539_046_800_000 + seq,
        actor: Id::new("conformance").unwrap(),
        idempotency: None,
        token_issuer: None,
        body: EventBody::ProjectOpened(ProjectOpened {
            project: Id::new(&format!("p-{seq}")).unwrap(),
            kind: ProjectKind::GeneralFund,
            name: Text::new(&format!("项目 {seq}")).unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        }),
    }
    .seal()
    .unwrap()
}

/// `n` events continuing the chain at `head`.
fn chain(ledger: &Id, head: Head, n: u64) -> Vec<SealedEvent> {
    let mut prev = head.hash;
    (head.len..head.len + n)
        .map(|seq| {
            let e = event(ledger, seq, prev);
            prev = e.hash();
            e
        })
        .collect()
}

fn head_after(events: &[SealedEvent]) -> Head {
    let last = events.last().expect("some events");
    Head {
        len: last.seq() + 1,
        hash: last.hash(),
    }
}

/// Appends `n` new events at the head and checks the new head.
async fn append_new(f: &dyn Fixture, log: &dyn EventLog, n: u64) -> Vec<SealedEvent> {
    let head = log.head().await.unwrap();
    let batch = chain(&f.ledger(), head, n);
    let new_head = log.append(head.len, batch.clone()).await.unwrap();
    assert_eq!(new_head, head_after(&batch));
    batch
}

async fn read_all(log: &dyn EventLog) -> Vec<SealedEvent> {
    let mut out = Vec::new();
    loop {
        let page = log.read(out.len() as u64, READ_EVENTS_MAX).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The whole log re-checked from event 0: every hash, every link, and the head agrees.
async fn assert_chain_verifies(log: &dyn EventLog, len: u64) {
    let all = read_all(log).await;
    let mut chain = ChainVerifier::new();
    for e in &all {
        chain.push_sealed(e).unwrap();
    }
    assert_eq!(chain.len(), len, "events in the log");
    let head = log.head().await.unwrap();
    assert_eq!(head.len, len);
    assert_eq!(head.hash, chain.head());
}

fn assert_conflict(result: Result<Head, StoreError>, expected: u64, actual: u64) {
    match result {
        Err(StoreError::Conflict {
            expected: e,
            actual: a,
        }) => assert_eq!((e, a), (expected, actual)),
        other => {
            panic!("wanted Conflict {{ expected: {expected}, actual: {actual} }}, got {other:?}")
        }
    }
}

fn assert_not_continuing(result: Result<Head, StoreError>) {
    match result {
        Err(StoreError::NotContinuing(_)) => {}
        other => panic!("wanted NotContinuing, got {other:?}"),
    }
}

async fn recv(rx: &mut ledger::store::Subscription) -> SealedEvent {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the subscription delivers in time")
        .expect("the subscription is open")
        .expect("the subscription reads without error")
}

// ---------------------------------------------------------------------------------------
// The cases

mod cases {
    use super::*;

    pub async fn append_and_read_back(f: &dyn Fixture) {
        let log = f.open().await;
        assert_eq!(log.head().await.unwrap(), Head::default());
        assert!(log.read(0, 10).await.unwrap().is_empty());

        let first = append_new(f, log.as_ref(), 3).await;
        let second = append_new(f, log.as_ref(), 2).await;
        let all: Vec<SealedEvent> = first.iter().chain(&second).cloned().collect();
        let head = head_after(&all);
        assert_eq!(log.head().await.unwrap(), head);
        assert_eq!(*log.watch_head().borrow(), head);

        // What comes back is what went in, byte for byte.
        let read = log.read(0, 100).await.unwrap();
        assert_eq!(read, all);
        for (r, e) in read.iter().zip(&all) {
            assert_eq!(r.canonical_bytes(), e.canonical_bytes());
            assert_eq!(r.hash(), e.hash());
        }
        assert_eq!(log.read(2, 2).await.unwrap(), all[2..4].to_vec());
        assert!(log.read(5, 10).await.unwrap().is_empty());
        assert!(log.read(1_000, 10).await.unwrap().is_empty());

        // An empty append at the head changes nothing.
        assert_eq!(log.append(5, Vec::new()).await.unwrap(), head);
        assert_chain_verifies(log.as_ref(), 5).await;
    }

    pub async fn read_limits(f: &dyn Fixture) {
        let log = f.open().await;
        let total = READ_EVENTS_MAX as u64 + 10;
        let mut appended = 0;
        while appended < total {
            let n = (total - appended).min(500);
            append_new(f, log.as_ref(), n).await;
            appended += n;
        }
        assert_eq!(
            log.read(0, usize::MAX).await.unwrap().len(),
            READ_EVENTS_MAX
        );
        assert_eq!(
            log.read(0, READ_EVENTS_MAX + 1).await.unwrap().len(),
            READ_EVENTS_MAX
        );
        assert!(log.read(0, 0).await.unwrap().is_empty());
        let tail = log.read(READ_EVENTS_MAX as u64, usize::MAX).await.unwrap();
        assert_eq!(tail.len(), 10);
        assert_eq!(tail[0].seq(), READ_EVENTS_MAX as u64);
        let page = log.read(7, 3).await.unwrap();
        assert_eq!(
            page.iter().map(SealedEvent::seq).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_chain_verifies(log.as_ref(), total).await;
    }

    pub async fn expected_length_conflicts(f: &dyn Fixture) {
        let ledger = f.ledger();
        let log = f.open().await;
        // Expecting events that are not there: refused, nothing written.
        let ahead = chain(&ledger, Head::default(), 1);
        assert_conflict(log.append(1, ahead).await, 1, 0);
        assert_eq!(log.head().await.unwrap(), Head::default());
        assert!(log.read(0, 10).await.unwrap().is_empty());

        let written = append_new(f, log.as_ref(), 2).await;
        // A writer that has not seen those two events: refused, nothing written.
        let stale = chain(&ledger, Head::default(), 1);
        assert_conflict(log.append(0, stale).await, 0, 2);
        let beyond = chain(&ledger, head_after(&written), 1);
        assert_conflict(log.append(5, beyond).await, 5, 2);
        assert_conflict(log.append(1, Vec::new()).await, 1, 2);

        assert_eq!(log.head().await.unwrap(), head_after(&written));
        assert_eq!(read_all(log.as_ref()).await, written);
        assert_chain_verifies(log.as_ref(), 2).await;
    }

    pub async fn batch_atomicity(f: &dyn Fixture) {
        let ledger = f.ledger();
        let log = f.open().await;
        let written = append_new(f, log.as_ref(), 2).await;
        let head = head_after(&written);

        // The third event of the batch does not link: none of the three is written.
        let mut bad_link = chain(&ledger, head, 2);
        bad_link.push(event(&ledger, 4, Hash([7; 32])));
        assert_not_continuing(log.append(2, bad_link).await);
        // A gap in the seqs.
        let mut gap = chain(&ledger, head, 1);
        let after_gap = head_after(&gap);
        gap.push(event(&ledger, after_gap.len + 1, after_gap.hash));
        assert_not_continuing(log.append(2, gap).await);
        // A first event that does not link to the head.
        let wrong_prev = vec![event(&ledger, 2, Hash([1; 32]))];
        assert_not_continuing(log.append(2, wrong_prev).await);
        // A batch that starts at the wrong seq.
        let wrong_seq = chain(
            &ledger,
            Head {
                len: 3,
                hash: head.hash,
            },
            2,
        );
        assert_not_continuing(log.append(2, wrong_seq).await);

        assert_eq!(log.head().await.unwrap(), head);
        assert!(log.read(2, 10).await.unwrap().is_empty());
        // The right batch still goes in.
        append_new(f, log.as_ref(), 3).await;
        assert_chain_verifies(log.as_ref(), 5).await;
    }

    pub async fn idempotent_retry(f: &dyn Fixture) {
        let log = f.open().await;
        let batch = append_new(f, log.as_ref(), 3).await;
        let head = head_after(&batch);
        // The same batch again at the same expected length: a conflict, no duplicate.
        assert_conflict(log.append(0, batch.clone()).await, 0, 3);
        assert_eq!(log.head().await.unwrap(), head);
        assert_eq!(read_all(log.as_ref()).await, batch);
        f.check_retry(0, &batch, 3).await;

        let more = append_new(f, log.as_ref(), 2).await;
        assert_conflict(log.append(3, more.clone()).await, 3, 5);
        f.check_retry(3, &more, 5).await;
        let all: Vec<SealedEvent> = batch.iter().chain(&more).cloned().collect();
        assert_eq!(read_all(log.as_ref()).await, all);
        assert_chain_verifies(log.as_ref(), 5).await;
    }

    pub async fn subscription_from_a_position(f: &dyn Fixture) {
        let log = f.open().await;
        let mut expected = append_new(f, log.as_ref(), 5).await;

        let mut from_two = subscribe(log.clone(), 2);
        for want in &expected[2..] {
            assert_eq!(&recv(&mut from_two).await, want);
        }
        // Events appended after subscribing arrive too, in order, with no gaps, while the
        // subscriber is still reading.
        let writer = {
            let log = log.clone();
            let ledger = f.ledger();
            tokio::spawn(async move {
                let mut appended = Vec::new();
                for _ in 0..3 {
                    let head = log.head().await.unwrap();
                    let batch = chain(&ledger, head, 4);
                    log.append(head.len, batch.clone()).await.unwrap();
                    appended.extend(batch);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                appended
            })
        };
        let mut later = Vec::new();
        for _ in 0..12 {
            later.push(recv(&mut from_two).await);
        }
        let appended = writer.await.unwrap();
        assert_eq!(later, appended);
        expected.extend(appended);

        // From 0: everything, in order.
        let mut from_zero = subscribe(log.clone(), 0);
        for want in &expected {
            assert_eq!(&recv(&mut from_zero).await, want);
        }
        // From the head: nothing until the next append, then exactly that.
        let len = expected.len() as u64;
        let mut from_head = subscribe(log.clone(), len);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), from_head.recv())
                .await
                .is_err(),
            "nothing past the head yet"
        );
        let next = append_new(f, log.as_ref(), 1).await;
        assert_eq!(recv(&mut from_head).await, next[0]);
        assert_eq!(recv(&mut from_zero).await, next[0]);
        assert_eq!(recv(&mut from_two).await, next[0]);
        drop((from_two, from_zero, from_head));
        assert_chain_verifies(log.as_ref(), len + 1).await;
    }

    pub async fn reopen_and_resume(f: &dyn Fixture) {
        let log = f.open().await;
        let mut all = append_new(f, log.as_ref(), 4).await;
        all.extend(append_new(f, log.as_ref(), 3).await);
        let head = log.head().await.unwrap();
        drop(log);

        let log = f.open().await;
        assert_eq!(
            log.head().await.unwrap(),
            head,
            "the head survives a reopen"
        );
        assert_eq!(*log.watch_head().borrow(), head);
        assert_eq!(
            read_all(log.as_ref()).await,
            all,
            "the events survive a reopen"
        );
        // And the log goes on where it was.
        all.extend(append_new(f, log.as_ref(), 3).await);
        drop(log);

        let log = f.open().await;
        assert_eq!(log.head().await.unwrap(), head_after(&all));
        assert_eq!(read_all(log.as_ref()).await, all);
        assert_chain_verifies(log.as_ref(), 10).await;
    }

    /// A second handle (another API server) sees the first one's appends without appending
    /// or asking: its head watch and its subscriptions follow the log.
    pub async fn a_second_handle_follows_appends(f: &dyn Fixture) {
        let log_a = f.open().await;
        let log_b = f.second_handle(&log_a).await;
        let mut on_b = subscribe(log_b.clone(), 0);
        let mut watch_b = log_b.watch_head();
        let mut all = append_new(f, log_a.as_ref(), 3).await;
        all.extend(append_new(f, log_a.as_ref(), 2).await);
        for want in &all {
            assert_eq!(&recv(&mut on_b).await, want);
        }
        let head = head_after(&all);
        tokio::time::timeout(PATIENCE, watch_b.wait_for(|h| *h == head))
            .await
            .expect("the second handle's head watch follows in time")
            .expect("the head watch is open");
        assert_eq!(log_b.head().await.unwrap(), head);
        drop(on_b);
        assert_chain_verifies(log_b.as_ref(), 5).await;
    }

    /// Two writer tasks over one log, as two API servers on one ledger: optimistic
    /// concurrency decides who appends, and the loser catches up and decides again.
    pub async fn two_writers_one_log(f: &dyn Fixture) {
        let ledger = f.ledger();
        let log_a = f.open().await;
        let log_b = f.second_handle(&log_a).await;
        let clock: ledger::writer::Clock = Arc::new(|| 1_539_046_800_000);
        let config = || WriterConfig {
            ledger: ledger.clone(),
            clock: clock.clone(),
        };
        let staff = Id::new("recorder").unwrap();
        let project = Id::new("fund-01").unwrap();
        let donation = |txn: String| {
            Command::RecordDonation(DonationInput {
                project: project.clone(),
                amount_minor: Amount::new(100).unwrap(),
                currency: Currency::CNY,
                channel: Channel::Wechat,
                channel_txn_id: txn,
                fee_minor: 0,
                pledge_seq: None,
                anonymous: true,
                public_name: None,
                donor_ref: Id::new("donor-1").unwrap(),
            })
        };
        let refund = |donation_seq: u64| Command::RefundDonation {
            donation_seq,
            reason: Text::new("重复扣款").unwrap(),
            fee_returned_minor: None,
        };

        // Writer A sets the ledger up: a fund and four gifts (seqs 1 to 4).
        let (a, a_task) = spawn_writer(log_a.clone(), LedgerState::default(), config());
        let mut setup = vec![Command::OpenProject {
            project: project.clone(),
            kind: ProjectKind::GeneralFund,
            name: Text::new("温暖二七慈善基金").unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        }];
        setup.extend((0..4).map(|i| donation(format!("setup-{i}"))));
        let setup = a
            .submit(Submission {
                actor: staff.clone(),
                token_issuer: None,
                idempotency_key: None,
                commands: setup,
            })
            .await
            .unwrap();
        assert_eq!(setup.events.len(), 5);

        // Writer B starts from the log as it is now.
        let mut state_b = LedgerState::default();
        catch_up(log_b.as_ref(), &mut state_b).await.unwrap();
        assert_eq!(state_b.position, 5);
        let (b, b_task) = spawn_writer(log_b.clone(), state_b, config());

        // A refunds gift 1. B has not seen that: its append conflicts, it catches up,
        // decides again and refuses. A blind append would have refunded twice.
        let by_a = a.submit(Submission::one(staff.clone(), refund(1))).await;
        assert!(by_a.is_ok(), "{by_a:?}");
        let by_b = b.submit(Submission::one(staff.clone(), refund(1))).await;
        match by_b {
            Err(WriteError::Rejected {
                error: CommandError::AlreadyRefunded(1),
                ..
            }) => {}
            other => panic!("writer B should have caught up and refused: {other:?}"),
        }

        // Both refund gift 2 at the same moment: exactly one wins.
        let (r_a, r_b) = tokio::join!(
            a.submit(Submission::one(staff.clone(), refund(2))),
            b.submit(Submission::one(staff.clone(), refund(2))),
        );
        let refused = |r: &Result<ledger::writer::Outcome, WriteError>| {
            matches!(
                r,
                Err(WriteError::Rejected {
                    error: CommandError::AlreadyRefunded(2),
                    ..
                })
            )
        };
        assert!(
            (r_a.is_ok() && refused(&r_b)) || (refused(&r_a) && r_b.is_ok()),
            "exactly one refund of gift 2: A {r_a:?}, B {r_b:?}"
        );

        // Many gifts through both writers at once, each with an idempotency key. A
        // submission whose writer ran out of conflict retries is sent again, as a client
        // would; the key makes that safe.
        const GIFTS_PER_WRITER: usize = 100;
        let send_all = |w: ledger::writer::WriterHandle, name: &'static str| {
            let staff = staff.clone();
            async move {
                let jobs = (0..GIFTS_PER_WRITER).map(|i| {
                    let w = w.clone();
                    let staff = staff.clone();
                    let command = donation(format!("{name}-{i}"));
                    async move {
                        let submission = Submission {
                            actor: staff,
                            token_issuer: None,
                            idempotency_key: Some(format!("{name}-{i}")),
                            commands: vec![command],
                        };
                        for _ in 0..20 {
                            match w.submit(submission.clone()).await {
                                Err(WriteError::Store(StoreError::Conflict { .. })) => {
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                                other => return other.unwrap(),
                            }
                        }
                        panic!("{name}-{i}: still conflicting after 20 tries");
                    }
                });
                futures_join_all(jobs).await
            }
        };
        let (outcomes_a, outcomes_b) =
            tokio::join!(send_all(a.clone(), "a"), send_all(b.clone(), "b"));

        drop((a, b));
        a_task.await.unwrap();
        b_task.await.unwrap();

        // Every acknowledged event is in the log at its seq, none twice, and the log holds
        // nothing that no caller was told about.
        let all = read_all(log_a.as_ref()).await;
        let mut acknowledged: BTreeMap<u64, SealedEvent> = BTreeMap::new();
        let mut add = |events: &[SealedEvent]| {
            for e in events {
                assert!(
                    acknowledged.insert(e.seq(), e.clone()).is_none(),
                    "seq {} acknowledged twice",
                    e.seq()
                );
            }
        };
        add(&setup.events);
        for o in [by_a.unwrap(), r_a.or(r_b).unwrap()] {
            add(&o.events);
        }
        for o in outcomes_a.iter().chain(&outcomes_b) {
            assert!(!o.replayed, "no gift was written before its first answer");
            add(&o.events);
        }
        assert_eq!(
            acknowledged.len(),
            all.len(),
            "acknowledged events = events in the log"
        );
        for e in &all {
            assert_eq!(acknowledged.get(&e.seq()), Some(e), "seq {}", e.seq());
        }
        // One gift per key, and the fold agrees.
        let keys: BTreeSet<String> = all
            .iter()
            .filter_map(|e| e.record().idempotency.as_ref().map(|i| i.key.clone()))
            .collect();
        assert_eq!(keys.len(), 2 * GIFTS_PER_WRITER);
        let mut state = LedgerState::default();
        catch_up(log_b.as_ref(), &mut state).await.unwrap();
        assert_eq!(state.donations.len(), 4 + 2 * GIFTS_PER_WRITER);
        assert_eq!(
            state
                .donations
                .values()
                .filter(|d| d.refunded_seq.is_some())
                .count(),
            2,
            "gifts 1 and 2 refunded once each"
        );
        assert_chain_verifies(log_a.as_ref(), all.len() as u64).await;
        assert_chain_verifies(log_b.as_ref(), all.len() as u64).await;
    }
}

/// Awaits every future, concurrently, in order (no extra crate for `join_all`).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a submitting task panicked"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// One test per case per in-process backend; one test running every case on EventStoreDB.

type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type Case = for<'a> fn(&'a dyn Fixture) -> CaseFuture<'a>;

/// Calls `$then!` with the name of every case, so no list is kept twice.
macro_rules! with_every_case {
    ($then:ident) => {
        $then! {
            append_and_read_back
            read_limits
            expected_length_conflicts
            batch_atomicity
            idempotent_retry
            subscription_from_a_position
            reopen_and_resume
            a_second_handle_follows_appends
            two_writers_one_log
        }
    };
}

macro_rules! tests_per_backend {
    ($($case:ident)*) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(&super::memory()).await;
                }
            )*
        }
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(&super::sled()).await;
                }
            )*
        }
    };
}

macro_rules! case_table {
    ($($case:ident)*) => {
        mod boxed {
            $(
                pub fn $case<'a>(f: &'a dyn super::Fixture) -> super::CaseFuture<'a> {
                    Box::pin(super::cases::$case(f))
                }
            )*
        }
        /// Every case with its name.
        fn every_case() -> Vec<(&'static str, Case)> {
            vec![$((stringify!($case), boxed::$case as Case)),*]
        }
    };
}

with_every_case!(tests_per_backend);
with_every_case!(case_table);

/// A line on the real standard error, past the test harness's capture, so a skip is seen.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventstoredb() {
    let cases = every_case();
    let url = std::env::var("EVENTSTORE_URL").unwrap_or_default();
    #[cfg(not(feature = "eventstore"))]
    {
        let _ = (cases, url);
        say("conformance: eventstoredb SKIPPED: built without `--features eventstore` (memory and sled ran; see docs/SCALE-OUT.md)");
    }
    #[cfg(feature = "eventstore")]
    {
        if url.trim().is_empty() {
            say("conformance: eventstoredb SKIPPED: EVENTSTORE_URL is not set, so no real EventStoreDB/KurrentDB server to run against (memory and sled ran; see docs/SCALE-OUT.md)");
            return;
        }
        for (name, case) in &cases {
            let fixture = eventstoredb::EventStoreFixture::new(&url, name);
            say(&format!(
                "conformance: eventstoredb: {name} (stream ledger-{})",
                fixture.ledger
            ));
            case(&fixture).await;
        }
        say(&format!(
            "conformance: eventstoredb: all {} cases passed against the server at EVENTSTORE_URL",
            cases.len()
        ));
    }
}
