//! The writer and the sled log together: idempotency, group commit, atomic submissions,
//! and refusing to open a broken chain.

mod common;

use std::sync::Arc;

use common::id;
use events::*;
use ledger::command::{Command, CommandError};
use ledger::node::{Node, NodeConfig};
use ledger::store::{EventLog, SledLog, StoreError};
use ledger::writer::{Outcome, Submission, WriteError, WriterHandle};

const T0: u64 = 1_539_046_800_000;

async fn open(dir: &std::path::Path) -> Node {
    Node::open(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(id("test")),
        clock: Arc::new(|| T0),
    })
    .await
    .unwrap()
}

/// A ledger in a fresh temporary directory, with the project `cp` written.
async fn open_with_project() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    write_project(&node.writer).await;
    (dir, node)
}

fn open_project(p: &str) -> Command {
    Command::OpenProject {
        project: id(p),
        kind: ProjectKind::CommunityProject,
        name: Text::new("星星课堂").unwrap(),
        currency: Currency::CNY,
        goal_minor: None,
    }
}

/// Writes the project `cp` every test records gifts to.
async fn write_project(writer: &ledger::writer::WriterHandle) {
    writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
}

fn gift(txn: &str, minor: u64) -> Command {
    Command::RecordDonation(common::donation("cp", minor, txn, "donor-1"))
}

fn keyed(key: &str, command: Command) -> Submission {
    Submission {
        actor: id("recorder"),
        token_issuer: None,
        idempotency_key: Some(key.into()),
        commands: vec![command],
    }
}

/// A writer of the ledger `test` whose clock stands at `T0`.
fn config() -> ledger::writer::WriterConfig {
    ledger::writer::WriterConfig {
        ledger: id("test"),
        clock: Arc::new(|| T0),
    }
}

/// Submits `submission` from a task of its own.
fn spawn_submit(
    writer: &WriterHandle,
    submission: Submission,
) -> tokio::task::JoinHandle<Result<Outcome, WriteError>> {
    let w = writer.clone();
    tokio::spawn(async move { w.submit(submission).await })
}

#[tokio::test]
async fn an_idempotency_key_replays_the_original_and_never_writes_twice() {
    let (dir, node) = open_with_project().await;
    let first = node
        .writer
        .submit(keyed("wx-notify-1", gift("wx-1", 100)))
        .await
        .unwrap();
    assert!(!first.replayed);
    let len = node.log.head().await.unwrap().len;
    // A payment channel retries its webhook ten times: one donation.
    for _ in 0..10 {
        let again = node
            .writer
            .submit(keyed("wx-notify-1", gift("wx-1", 100)))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(
            again.events.iter().map(|e| e.hash()).collect::<Vec<_>>(),
            first.events.iter().map(|e| e.hash()).collect::<Vec<_>>()
        );
    }
    assert_eq!(node.log.head().await.unwrap().len, len);
    // The same key with another command is a conflict that writes nothing.
    let err = node
        .writer
        .submit(keyed("wx-notify-1", gift("wx-2", 200)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::Rejected {
                error: CommandError::IdempotencyConflict { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(node.log.head().await.unwrap().len, len);
    // The key survives a restart: the write model is folded from the log.
    node.shutdown().await.unwrap();
    let node = open(dir.path()).await;
    let again = node
        .writer
        .submit(keyed("wx-notify-1", gift("wx-1", 100)))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events[0].hash(), first.events[0].hash());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_submission_is_all_or_nothing() {
    let (_dir, node) = open_with_project().await;
    let before = node.log.head().await.unwrap();
    let batch = Submission {
        actor: id("recorder"),
        token_issuer: None,
        idempotency_key: None,
        commands: vec![
            gift("t1", 100),
            gift("t2", 100),
            gift("t1", 100),
            gift("t3", 100),
        ],
    };
    let err = node.writer.submit(batch).await.unwrap_err();
    // The third gift repeats the first one's channel transaction within the same batch.
    assert!(
        matches!(
            err,
            WriteError::Rejected {
                index: 2,
                error: CommandError::DuplicateChannelTxn { .. }
            }
        ),
        "{err}"
    );
    assert_eq!(node.log.head().await.unwrap(), before);
    // Nothing of the refused batch is in the write model either: t1 is still free.
    node.writer
        .submit(Submission::one(id("recorder"), gift("t1", 100)))
        .await
        .unwrap();
    node.shutdown().await.unwrap();
}

/// Gifts are sealed beside the writer, speculatively: a submission's gifts are queued for
/// sealing as its commands are decided, and taken back when a later command refuses it.
/// Here one batch holds a refused submission of 300 gifts, gifts after it, a command sealed
/// by the writer itself (opening a project) after queued gifts, and more gifts: the log
/// holds exactly the accepted events, chained, as each caller was told, and the state's head
/// is the log's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_sealed_beside_the_writer_chain_with_everything_else() {
    let (dir, node) = open_with_project().await;
    let gifts = |prefix: &str, n: usize| -> Vec<Command> {
        (0..n)
            .map(|i| gift(&format!("{prefix}-{i}"), 100))
            .collect()
    };
    let mut refused = gifts("a", 300);
    refused.push(gift("a-7", 100));
    let submissions = [
        refused,
        gifts("b", 100),
        vec![open_project("cp2")],
        gifts("d", 70),
    ];
    let calls = submissions
        .into_iter()
        .map(|commands| spawn_submit(&node.writer, Submission::many(id("recorder"), commands)));
    let outcomes: Vec<_> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    assert!(
        matches!(
            &outcomes[0],
            Err(WriteError::Rejected {
                index: 300,
                error: CommandError::DuplicateChannelTxn { .. }
            })
        ),
        "{:?}",
        outcomes[0].as_ref().err()
    );
    let told: Vec<SealedEvent> = outcomes[1..]
        .iter()
        .flat_map(|o| o.as_ref().unwrap().events.clone())
        .collect();
    let mut told_sorted = told.clone();
    told_sorted.sort_by_key(|e| e.seq());
    assert_eq!(told_sorted.len(), 171);
    let head = node.log.head().await.unwrap();
    assert_eq!(head.len, 172);
    let state = node
        .state_at(head.len, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(state.head, head.hash);
    let logged = node.log.read(0, 200).await.unwrap();
    let mut chain = ChainVerifier::new();
    for e in &logged {
        chain.push_sealed(e).unwrap();
    }
    assert_eq!(&logged[1..], &told_sorted[..]);
    // The refused gifts were never written: their transactions are still free.
    node.writer
        .submit(Submission::one(id("recorder"), gift("a-0", 100)))
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    // Reopened, the chain goes on from where the sealed events left it.
    let node = open(dir.path()).await;
    node.writer
        .submit(Submission::many(id("recorder"), gifts("e", 5)))
        .await
        .unwrap();
    let logged = node.log.read(0, 200).await.unwrap();
    assert_eq!(logged.len(), 178);
    let mut chain = ChainVerifier::new();
    for e in &logged {
        chain.push_sealed(e).unwrap();
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_durable_events() {
    let (dir, node) = open_with_project().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let writer = node.writer.clone();
        tasks.push(tokio::spawn(async move {
            writer
                .submit(Submission::one(id("recorder"), gift(&format!("t{i}"), 100)))
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        assert_eq!(outcome.events.len(), 1);
        seqs.push(outcome.events[0].seq());
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=64).collect::<Vec<_>>(),
        "every caller got one distinct seq"
    );
    node.shutdown().await.unwrap();
    // Reopened: all 65 events are there and chain.
    let log = SledLog::open(dir.path()).unwrap();
    let events = log.read(0, 100).await.unwrap();
    assert_eq!(events.len(), 65);
    let mut chain = ChainVerifier::new();
    for e in &events {
        chain.push_sealed(e).unwrap();
    }
}

#[tokio::test]
async fn the_log_refuses_what_does_not_continue_the_chain() {
    let (_dir, node) = open_with_project().await;
    let e0 = node.log.read(0, 1).await.unwrap().remove(0);
    // Wrong expected length: a conflict, nothing written.
    let err = node.log.append(0, vec![e0.clone()]).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 0,
                actual: 1
            }
        ),
        "{err}"
    );
    // Right length, wrong chain: refused.
    let err = node.log.append(1, vec![e0]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotContinuing(_)), "{err}");
    assert_eq!(node.log.head().await.unwrap().len, 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn opening_a_store_with_a_broken_tail_names_the_first_bad_seq() {
    let (dir, node) = open_with_project().await;
    for i in 0..5 {
        node.writer
            .submit(Submission::one(id("recorder"), gift(&format!("t{i}"), 100)))
            .await
            .unwrap();
    }
    node.shutdown().await.unwrap();
    // Change one byte of event 3 behind the ledger's back.
    {
        let db = SledLog::open_db(dir.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        let (key, value) = log
            .range(..=3u64.to_be_bytes())
            .next_back()
            .unwrap()
            .unwrap();
        let first = u64::from_be_bytes(key.as_ref().try_into().unwrap());
        let mut bytes = value.to_vec();
        // An event is stored as `u32 length ‖ hash ‖ canonical bytes`, or a gift as
        // `0xC1 ‖ u32 length ‖ hash ‖ compact form`: (header, body) lengths at `offset`.
        let lengths = |bytes: &[u8], offset: usize| {
            let (header, at) = if bytes[offset] == 0xC1 {
                (37, offset + 1)
            } else {
                (36, offset)
            };
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            (header, len)
        };
        // Walk to event 3 inside the chunk and change the last byte of its stored form.
        let mut offset = 0;
        for _ in first..3 {
            let (header, len) = lengths(&bytes, offset);
            offset += header + len;
        }
        let (header, len) = lengths(&bytes, offset);
        bytes[offset + header + len - 1] ^= 1;
        log.insert(key, bytes).unwrap();
        db.flush().unwrap();
    }
    let err = SledLog::open(dir.path()).err().expect("refuses to open");
    match err {
        StoreError::Corrupt(e) => assert_eq!(e.seq(), Some(3), "{e}"),
        other => panic!("expected corruption, got {other}"),
    }
}

/// A store whose last chunk holds no events (never written so: a damaged store) is refused
/// at open as corrupt, naming the seq, instead of panicking.
#[tokio::test]
async fn opening_a_store_whose_last_chunk_is_empty_is_refused() {
    let (dir, node) = open_with_project().await;
    node.shutdown().await.unwrap();
    {
        let db = SledLog::open_db(dir.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        // Every chunk emptied: the tail check finds no event at all.
        for item in log.iter() {
            let (key, _) = item.unwrap();
            log.insert(key, Vec::new()).unwrap();
        }
        db.flush().unwrap();
    }
    let err = SledLog::open(dir.path()).err().expect("refuses to open");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("hold no events"), "{err}");
}

/// A log that holds every append until the test lets it go, and fails the appends it is
/// told to: for driving the writer's pipeline (a batch decided while the one before it is
/// being appended) through its failure paths.
struct GatedLog {
    inner: ledger::store::MemoryLog,
    gate: tokio::sync::Semaphore,
    /// Appends begun (waiting at the gate or past it).
    entered: std::sync::atomic::AtomicUsize,
    appends: std::sync::atomic::AtomicUsize,
    fail_append: usize,
    /// The failing append stores its events before it reports the failure (an outcome the
    /// writer cannot know, as when a connection drops after the server wrote).
    keep_failed: std::sync::atomic::AtomicBool,
    /// How many reads to fail (from the next one on).
    fail_reads: std::sync::atomic::AtomicUsize,
    /// Every read finds the log corrupt, while set.
    corrupt_reads: std::sync::atomic::AtomicBool,
}

impl GatedLog {
    /// A gated memory log that fails append number `fail_append` (0-based; `usize::MAX` for
    /// none), with `permits` appends let through the gate.
    fn new(fail_append: usize, permits: usize) -> GatedLog {
        GatedLog {
            inner: ledger::store::MemoryLog::new(),
            gate: tokio::sync::Semaphore::new(permits),
            entered: Default::default(),
            appends: Default::default(),
            fail_append,
            keep_failed: Default::default(),
            fail_reads: Default::default(),
            corrupt_reads: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl EventLog for GatedLog {
    async fn head(&self) -> Result<ledger::store::Head, StoreError> {
        self.inner.head().await
    }
    fn append_limits(&self) -> ledger::store::AppendLimits {
        self.inner.append_limits()
    }
    async fn append(
        &self,
        expected_len: u64,
        events: Vec<SealedEvent>,
    ) -> Result<ledger::store::Head, StoreError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        let n = self
            .appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == self.fail_append {
            if self.keep_failed.load(std::sync::atomic::Ordering::SeqCst) {
                self.inner.append(expected_len, events).await?;
            }
            return Err(StoreError::Io("the disk is on fire".into()));
        }
        self.inner.append(expected_len, events).await
    }
    async fn read(&self, from: u64, limit: usize) -> Result<Vec<SealedEvent>, StoreError> {
        let failing = self.fail_reads.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if failing.is_ok() {
            return Err(StoreError::Io("the network is down".into()));
        }
        if self.corrupt_reads.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Corrupt(ChainError::SeqGap {
                expected: from,
                found: from + 1,
            }));
        }
        self.inner.read(from, limit).await
    }
    fn watch_head(&self) -> tokio::sync::watch::Receiver<ledger::store::Head> {
        self.inner.watch_head()
    }
}

/// Waits until the writer has begun `n` appends.
async fn appends_begun(log: &GatedLog, n: usize) {
    for _ in 0..1000 {
        if log.entered.load(std::sync::atomic::Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("the writer did not begin append {n}");
}

/// A writer on a gated log that fails append number `fail_append` (0-based), with the
/// project `cp` already written (append 0, let through).
async fn gated_writer(
    fail_append: usize,
) -> (
    Arc<GatedLog>,
    ledger::writer::WriterHandle,
    tokio::task::JoinHandle<()>,
) {
    let log = Arc::new(GatedLog::new(fail_append, 0));
    let (writer, task) =
        ledger::writer::spawn_writer(log.clone(), projections::LedgerState::default(), config());
    log.gate.add_permits(1);
    write_project(&writer).await;
    (log, writer, task)
}

/// While batch A is being appended, batch B is decided on top of it. A's append fails: A's
/// callers get the store's error; B's submissions are decided again on the state without A
/// and succeed; a replay of a key first used in A is no replay at all (A never happened),
/// and the log holds exactly B's events, chained from the start.
#[tokio::test]
async fn a_failed_append_refuses_its_batch_and_redecides_the_one_decided_on_top() {
    // Append 0 (the project) goes through; append 1 will fail.
    let (log, writer, task) = gated_writer(1).await;
    // Batch A (append 1, to fail): one keyed gift. It waits at the gate.
    let a = spawn_submit(&writer, keyed("wx-1", gift("txn-a", 100)));
    appends_begun(&log, 2).await;
    // Batch B, decided while A waits: another gift, and a retry of A's key.
    let b = spawn_submit(&writer, Submission::one(id("recorder"), gift("txn-b", 200)));
    let retry = spawn_submit(&writer, keyed("wx-1", gift("txn-a", 100)));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    log.gate.add_permits(100);
    let a = a.await.unwrap();
    assert!(
        matches!(a, Err(WriteError::Store(StoreError::Io(_)))),
        "A's caller gets the store error: {a:?}"
    );
    let b = b.await.unwrap().expect("B is decided again and written");
    let retry = retry.await.unwrap().expect("the retry is written anew");
    assert!(
        !retry.replayed,
        "A never reached the log, so the retry is no replay"
    );
    let head = log.head().await.unwrap();
    assert_eq!(head.len, 3, "the project, B's gift and the retried gift");
    let events = ledger::writer::read_range(log.as_ref(), 0, 2)
        .await
        .unwrap();
    let mut chain = ChainVerifier::new();
    for e in &events {
        chain.push_sealed(e).unwrap();
    }
    let seqs: Vec<u64> = b
        .events
        .iter()
        .chain(&retry.events)
        .map(|e| e.seq())
        .collect();
    seqs.iter().for_each(|s| assert!(*s == 1 || *s == 2));
    // The writer's state is the fold of the log.
    let mut folded = projections::LedgerState::default();
    ledger::writer::catch_up(log.as_ref(), &mut folded)
        .await
        .unwrap();
    assert_eq!(**writer.committed().borrow(), folded);
    drop(writer);
    task.await.unwrap();
}

/// A retry that arrives while its original is still being appended is answered with the
/// original events, once they are durable, and writes nothing.
#[tokio::test]
async fn a_retry_while_the_original_is_in_flight_replays_it_once_durable() {
    let (log, writer, task) = gated_writer(usize::MAX).await;
    let first = spawn_submit(&writer, keyed("wx-1", gift("txn-a", 100)));
    appends_begun(&log, 2).await;
    let retry = spawn_submit(&writer, keyed("wx-1", gift("txn-a", 100)));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !retry.is_finished(),
        "the replay waits for the original to be durable"
    );
    log.gate.add_permits(100);
    let first = first.await.unwrap().unwrap();
    let retry = retry.await.unwrap().unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.events, first.events);
    assert_eq!(log.head().await.unwrap().len, 2);
    drop(writer);
    task.await.unwrap();
}

/// The followers (projections, the event-hash index, a remote log's Merkle tree) read through
/// `subscribe`: a read that fails for a moment is retried, it does not end the stream.
#[tokio::test]
async fn a_subscription_goes_on_after_reads_that_fail() {
    let log = Arc::new(GatedLog::new(usize::MAX, 0));
    log.fail_reads.store(2, std::sync::atomic::Ordering::SeqCst);
    log.inner
        .append(0, common::chained_events(0, 3, Hash::ZERO))
        .await
        .unwrap();
    let mut events = ledger::store::subscribe(log.clone(), 0);
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let page = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv_page(10))
            .await
            .expect("the subscription retries within seconds")
            .expect("the stream goes on")
            .expect("no error reaches the reader");
        seqs.extend(page.iter().map(SealedEvent::seq));
    }
    assert_eq!(seqs, [0, 1, 2]);
    assert_eq!(log.fail_reads.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Later events arrive as before.
    log.inner
        .append(
            3,
            common::chained_events(3, 1, log.inner.head().await.unwrap().hash),
        )
        .await
        .unwrap();
    let page = events.recv_page(10).await.unwrap().unwrap();
    assert_eq!(page[0].seq(), 3);
    events.close().await;
}

/// When an append fails, only what it would have written is refused: a retry in the same
/// batch of a submission already in the log is still answered with the original events,
/// while a retry of a submission earlier in the failed batch fails with it.
#[tokio::test]
async fn a_failed_append_still_answers_replays_of_what_is_in_the_log() {
    // Append 0 (the project) goes through; append 3 will fail.
    let (log, writer, task) = gated_writer(3).await;
    log.gate.add_permits(1);
    let original = writer
        .submit(keyed("wx-1", gift("txn-a", 100)))
        .await
        .unwrap();
    // Append 2 waits at the gate; the batch decided on top of it is append 3.
    let blocker = spawn_submit(&writer, Submission::one(id("recorder"), gift("txn-x", 50)));
    appends_begun(&log, 3).await;
    let replay = spawn_submit(&writer, keyed("wx-1", gift("txn-a", 100)));
    let new = spawn_submit(&writer, keyed("wx-2", gift("txn-b", 200)));
    let new_again = spawn_submit(&writer, keyed("wx-2", gift("txn-b", 200)));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    log.gate.add_permits(100);
    blocker.await.unwrap().expect("append 2 is written");
    let replay = replay.await.unwrap().expect("the replay is answered");
    assert!(replay.replayed);
    assert_eq!(replay.events, original.events);
    for refused in [new.await.unwrap(), new_again.await.unwrap()] {
        assert!(
            matches!(refused, Err(WriteError::Store(StoreError::Io(_)))),
            "{refused:?}"
        );
    }
    assert_eq!(log.head().await.unwrap().len, 3);
    drop(writer);
    task.await.unwrap();
}

/// A background task that stops (here the projections, the Merkle tree a non-sled log keeps
/// beside it, and the event-hash index, on a log that reads back corrupt) is reported by the node (`/healthz` answers 503 `degraded` with
/// it), and shutdown still waits for every task before it returns the failure.
#[tokio::test]
async fn a_background_task_that_stops_is_reported() {
    let log = Arc::new(GatedLog::new(usize::MAX, 1000));
    let node = Node::open_with(log.clone(), None, id("test"), Arc::new(|| T0))
        .await
        .unwrap();
    assert!(node.stopped_tasks().is_empty());
    node.writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
    // An event the node's writer did not append (so the projections must read it) on a log
    // whose reads now all find it corrupt.
    log.corrupt_reads
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let head = log.head().await.unwrap();
    log.append(head.len, common::chained_events(head.len, 1, head.hash))
        .await
        .unwrap();
    for _ in 0..500 {
        if node.stopped_tasks().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        node.stopped_tasks(),
        ["the projections", "the Merkle tree", "the event-hash index"]
    );
    let shutdown = node.shutdown().await.unwrap_err();
    assert!(format!("{shutdown:#}").contains("corrupt"), "{shutdown:#}");
}

/// The four-eyes rule with tokens' issuers is the writer's: a decision sent together with its
/// request (the request not yet durable, its seq guessed) is checked against it, and the
/// request's token issuer is folded from the log, so the rule holds across a restart.
#[tokio::test]
async fn a_decision_with_a_token_the_requester_issued_is_refused_even_sent_together() {
    let (dir, node) = open_with_project().await;
    node.writer
        .submit(Submission::one(id("recorder"), gift("wx-1", 10_000)))
        .await
        .unwrap();
    let request_seq = node.log.head().await.unwrap().len;
    let request = Submission::one(
        id("admin-zhao"),
        Command::RequestPayout(PayoutRequested {
            project: id("cp"),
            amount_minor: Amount::new(5_000).unwrap(),
            currency: Currency::CNY,
            payee: Text::new("星星小学").unwrap(),
            purpose: Text::new("课桌").unwrap(),
            document_sha256: sha256(b"invoice"),
        }),
    );
    let approve = |actor: &str, issuer: &str| Submission {
        token_issuer: Some(id(issuer)),
        ..Submission::one(
            id(actor),
            Command::ApprovePayout {
                payout_seq: request_seq,
            },
        )
    };
    let (requested, approved) = tokio::join!(
        node.writer.submit(request),
        node.writer.submit(approve("ghost", "admin-zhao"))
    );
    assert_eq!(requested.unwrap().events[0].seq(), request_seq);
    let err = approved.unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::Rejected {
                error: CommandError::FourEyes { .. },
                ..
            }
        ),
        "{err}"
    );
    // A request made with a token admin-zhao issued...
    let issued = node
        .writer
        .submit(Submission {
            token_issuer: Some(id("admin-zhao")),
            ..Submission::one(
                id("finance-li"),
                Command::RequestPayout(PayoutRequested {
                    project: id("cp"),
                    amount_minor: Amount::new(1_000).unwrap(),
                    currency: Currency::CNY,
                    payee: Text::new("星星小学").unwrap(),
                    purpose: Text::new("图书").unwrap(),
                    document_sha256: sha256(b"invoice-2"),
                }),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        issued.events[0].record().token_issuer,
        Some(id("admin-zhao"))
    );
    node.shutdown().await.unwrap();

    // ... is still theirs after a restart (folded from the log): they cannot decide it.
    let node = open(dir.path()).await;
    let err = node
        .writer
        .submit(Submission::one(
            id("admin-zhao"),
            Command::ApprovePayout {
                payout_seq: issued.events[0].seq(),
            },
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("admin-zhao issued the token that requested the payout"),
        "{err}"
    );
    node.shutdown().await.unwrap();
}

/// Submissions that each fit the store's append limit are not refused for having been
/// batched together: the writer closes a batch before it would cross the limit (as
/// EventStoreDB's ~1 MB an append). Here appends take 3,000 bytes (six or seven gifts):
/// twelve gifts decided while an append is in flight go out in more than one append (the
/// log refuses any append over the limit), and every one of them is written.
#[tokio::test]
async fn a_batch_closes_before_the_stores_append_limit() {
    let (log, writer, task) = gated_writer(usize::MAX).await;
    let limits = ledger::store::AppendLimits {
        events: 65_536,
        bytes: 3_000,
    };
    let _ = log.inner.clone().with_limits(limits);
    let first = spawn_submit(&writer, Submission::one(id("recorder"), gift("txn-0", 100)));
    appends_begun(&log, 2).await;
    let rest: Vec<_> = (1..=12)
        .map(|i| {
            spawn_submit(
                &writer,
                Submission::one(id("recorder"), gift(&format!("txn-{i}"), 100)),
            )
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    log.gate.add_permits(100);
    first.await.unwrap().expect("the first gift is written");
    for r in rest {
        r.await.unwrap().expect("every gift is written");
    }
    assert_eq!(
        log.head().await.unwrap().len,
        14,
        "the project and 13 gifts"
    );
    let appends = log.appends.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        appends >= 4,
        "the twelve went out in more than one append: {appends}"
    );
    drop(writer);
    task.await.unwrap();
}

/// A projection runner's states, a sender that stops it, and its task.
type Runner = (
    tokio::sync::watch::Receiver<Arc<projections::LedgerState>>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
);

/// Follows `writer` on `log` with a projection runner, as a node does.
fn follow(log: Arc<dyn EventLog>, writer: &WriterHandle) -> Runner {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (states, task) = ledger::projector::spawn_projector(
        log,
        projections::LedgerState::default(),
        None,
        Some(writer.progress()),
        stopped,
    );
    (states, stop, task)
}

/// Waits until the runner's state reflects the whole log, then checks it is the log's fold.
async fn reflects_the_log(
    states: &mut tokio::sync::watch::Receiver<Arc<projections::LedgerState>>,
    log: &dyn EventLog,
) {
    let head = log.head().await.unwrap().len;
    let state = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        states.wait_for(|s| s.position >= head),
    )
    .await
    .expect("the projection runner reaches the log's head")
    .unwrap()
    .clone();
    let mut folded = projections::LedgerState::default();
    ledger::writer::catch_up(log, &mut folded).await.unwrap();
    assert_eq!(folded.position, head);
    assert_eq!(*state, folded);
}

/// The runner adopts its local writer's states, and folds itself what that writer does not
/// publish: the events of a second writer on the same log (before which the first writer's
/// next append conflicts, catches up and goes through).
#[tokio::test]
async fn the_projector_folds_what_another_writer_appends_and_adopts_its_own_writer() {
    let log = Arc::new(ledger::store::MemoryLog::new());
    let (a, a_task) =
        ledger::writer::spawn_writer(log.clone(), projections::LedgerState::default(), config());
    let (mut states, stop, runner) = follow(log.clone(), &a);
    write_project(&a).await;
    a.submit(Submission::one(id("recorder"), gift("a-1", 100)))
        .await
        .unwrap();
    reflects_the_log(&mut states, log.as_ref()).await;
    // Writer B, on the same log: its gifts are not A's to publish.
    let mut state_b = projections::LedgerState::default();
    ledger::writer::catch_up(log.as_ref(), &mut state_b)
        .await
        .unwrap();
    let (b, b_task) = ledger::writer::spawn_writer(log.clone(), state_b, config());
    for txn in ["b-1", "b-2"] {
        b.submit(Submission::one(id("recorder"), gift(txn, 200)))
            .await
            .unwrap();
    }
    reflects_the_log(&mut states, log.as_ref()).await;
    // A's next append conflicts with B's; A catches up and appends after them.
    let outcome = a
        .submit(Submission::one(id("recorder"), gift("a-2", 300)))
        .await
        .unwrap();
    assert_eq!(outcome.events[0].seq(), 4);
    reflects_the_log(&mut states, log.as_ref()).await;
    assert_eq!(states.borrow().projects[&id("cp")].balances.raised, 800);
    drop((a, b));
    a_task.await.unwrap();
    b_task.await.unwrap();
    stop.send_replace(true);
    runner.await.unwrap().unwrap();
}

/// An append that reports a failure although the log kept its events: the writer goes back
/// to the state before them and will not publish them, so the runner folds them itself
/// rather than wait; the writer's next append conflicts, catches up and goes through.
#[tokio::test]
async fn the_projector_folds_events_an_append_kept_but_reported_failed() {
    let log = Arc::new(GatedLog::new(1, 1000));
    log.keep_failed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (writer, task) =
        ledger::writer::spawn_writer(log.clone(), projections::LedgerState::default(), config());
    let (mut states, stop, runner) = follow(log.clone(), &writer);
    write_project(&writer).await;
    let failed = writer
        .submit(Submission::one(id("recorder"), gift("kept", 100)))
        .await;
    assert!(
        matches!(failed, Err(WriteError::Store(StoreError::Io(_)))),
        "{failed:?}"
    );
    assert_eq!(log.head().await.unwrap().len, 2, "the log kept the gift");
    reflects_the_log(&mut states, log.as_ref()).await;
    assert_eq!(states.borrow().projects[&id("cp")].balances.raised, 100);
    let next = writer
        .submit(Submission::one(id("recorder"), gift("next", 200)))
        .await
        .unwrap();
    assert_eq!(next.events[0].seq(), 2);
    reflects_the_log(&mut states, log.as_ref()).await;
    drop(writer);
    task.await.unwrap();
    stop.send_replace(true);
    runner.await.unwrap().unwrap();
}
