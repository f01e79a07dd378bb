//! The single writer: one task per ledger turns commands into sealed events and appends them
//! in batches (group commit: one durable flush for every command waiting at that moment).
//! A caller is answered only after its events are durable.

use std::collections::VecDeque;
use std::sync::Arc;

use events::{EventRecord, Hash, Id, Idempotency, SealedEvent};
use projections::LedgerState;
use tokio::sync::{mpsc, oneshot, watch};

use crate::command::{decide, Command, CommandError, Context};
use crate::sealer::SealPipe;
use crate::store::{AppendLimits, EventLog, Head, StoreError, READ_EVENTS_MAX};

/// The most submissions the writer takes into one batch.
pub const BATCH_SUBMISSIONS_MAX: usize = 1024;
/// The most commands in one submission (a batch request of donations).
pub const SUBMISSION_COMMANDS_MAX: usize = 1000;
/// The writer stops taking submissions into a batch once it holds this many commands, so a
/// batch of full submissions (at most two events per command, plus one submission's worth
/// of overshoot) stays well under the store's events-per-append limit.
pub const BATCH_COMMANDS_MAX: usize = 16_384;
const _: () = assert!(
    2 * (BATCH_COMMANDS_MAX + SUBMISSION_COMMANDS_MAX) <= crate::store::sled_log::APPEND_EVENTS_MAX
);
/// The most submissions waiting for the writer; callers beyond it wait for room.
pub const QUEUE_SUBMISSIONS_MAX: usize = 16_384;
/// How often the writer catches up and retries a batch after another writer appended first.
pub const CONFLICT_RETRIES_MAX: usize = 5;

/// Milliseconds since the Unix epoch. Passed in so tests control time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// One or more commands from one actor, applied all together or not at all.
#[derive(Debug, Clone)]
pub struct Submission {
    pub actor: Id,
    /// The admin who issued the API token the actor acts with, if it was issued through the
    /// API: recorded in every event as `token_issuer`, and counted as the actor by the
    /// four-eyes rule.
    pub token_issuer: Option<Id>,
    pub idempotency_key: Option<String>,
    pub commands: Vec<Command>,
}

impl Submission {
    pub fn one(actor: Id, command: Command) -> Submission {
        Submission::many(actor, vec![command])
    }

    /// Commands applied all together, by an actor with a server-made token (no issuer) and
    /// no idempotency key.
    pub fn many(actor: Id, commands: Vec<Command>) -> Submission {
        Submission {
            actor,
            token_issuer: None,
            idempotency_key: None,
            commands,
        }
    }
}

/// What a submission produced: its events, durable.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub events: Vec<SealedEvent>,
    /// True when the idempotency key had been used for this same submission before and these
    /// are the original events.
    pub replayed: bool,
}

impl Outcome {
    /// The seq of the last event, for read-your-writes.
    pub fn last_seq(&self) -> Option<u64> {
        self.events.last().map(|e| e.seq())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A command was refused; nothing of the submission was written.
    #[error("command {index}: {error}")]
    Rejected { index: usize, error: CommandError },
    #[error("submission: {given} commands; the limit is {max}")]
    TooManyCommands { given: usize, max: usize },
    #[error("submission: no commands")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer has stopped")]
    Stopped,
    #[error("internal invariant broken: {0}")]
    Internal(String),
}

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

/// A handle to send submissions to the writer. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    progress: WriterProgress,
}

/// What a writer publishes for the projection runner ([`WriterHandle::progress`]).
#[derive(Clone)]
pub struct WriterProgress {
    /// The writer's state after each durable append: the fold of exactly the events the
    /// log holds at its `position`.
    pub committed: watch::Receiver<Arc<LedgerState>>,
    /// The log's length once the writer's append in flight returns (the committed position
    /// when none is in flight). The writer publishes the events below it on `committed`;
    /// if that append fails, this goes back below them. Set before the append starts, so a
    /// follower that sees the log's head move and finds the head at or below this knows
    /// the state is on its way and need not fold those events again.
    pub appending: watch::Receiver<u64>,
}

impl WriterHandle {
    /// The writer's state after each durable append: the fold of exactly the events the log
    /// holds at `position`. The projection runner adopts it instead of folding those events
    /// a second time.
    pub fn committed(&self) -> watch::Receiver<Arc<LedgerState>> {
        self.progress.committed.clone()
    }

    /// The committed state and the extent of the append in flight, for the projection
    /// runner.
    pub fn progress(&self) -> WriterProgress {
        self.progress.clone()
    }

    /// Submits and waits until the events are durable (or the submission is refused).
    pub async fn submit(&self, submission: Submission) -> Result<Outcome, WriteError> {
        if submission.commands.is_empty() {
            return Err(WriteError::Empty);
        }
        if submission.commands.len() > SUBMISSION_COMMANDS_MAX {
            return Err(WriteError::TooManyCommands {
                given: submission.commands.len(),
                max: SUBMISSION_COMMANDS_MAX,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { submission, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

/// Configuration of a writer.
pub struct WriterConfig {
    pub ledger: Id,
    pub clock: Clock,
}

/// Starts the writer task for a ledger whose state has been folded up to the log's head.
/// The task ends when every handle is dropped, after finishing the batch in hand.
pub fn spawn_writer(
    log: Arc<dyn EventLog>,
    state: LedgerState,
    config: WriterConfig,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_SUBMISSIONS_MAX);
    let (committed_tx, committed) = watch::channel(Arc::new(state.clone()));
    let (appending_tx, appending) = watch::channel(state.position);
    let writer = Writer {
        log,
        seal: SealPipe::start(state.head),
        state,
        config,
        poisoned: false,
        committed: committed_tx,
        appending: appending_tx,
    };
    let task = tokio::spawn(writer.run(rx));
    let progress = WriterProgress {
        committed,
        appending,
    };
    (WriterHandle { tx, progress }, task)
}

struct Writer {
    log: Arc<dyn EventLog>,
    /// Seals gifts and matches beside the writer while it decides the next commands.
    seal: SealPipe,
    /// The fold of every event decided. Its `head` is the hash of its last event only once
    /// that event is sealed: [`Writer::start`] sets it from the sealed batch.
    state: LedgerState,
    config: WriterConfig,
    /// Set when the fold refused an event decide() accepted (a bug): the batch is dropped.
    poisoned: bool,
    /// Where the state goes after every durable append.
    committed: watch::Sender<Arc<LedgerState>>,
    /// [`WriterProgress::appending`].
    appending: watch::Sender<u64>,
}

type Reply = Result<Outcome, WriteError>;

/// A batch decided against the writer's state: its jobs, a pending reply for each, its new
/// events, and the state before and after it.
struct Decided {
    jobs: Vec<Job>,
    replies: Vec<Pending>,
    /// How many events it holds.
    count: usize,
    /// Its events, once sealed ([`Writer::start`]).
    events: Vec<SealedEvent>,
    commands: usize,
    /// Bytes of canonical event data in its events (an upper bound for those sealed later).
    bytes: usize,
    /// Closed: the next submission would have taken it past the store's append limits.
    full: bool,
    before: LedgerState,
    after: LedgerState,
}

impl Decided {
    /// Whether it can take more submissions.
    fn has_room(&self) -> bool {
        !self.full && self.jobs.len() < BATCH_SUBMISSIONS_MAX && self.commands < BATCH_COMMANDS_MAX
    }

    /// Whether a submission of `commands` might take this batch past `limits` (each command
    /// makes at most [`EVENTS_PER_COMMAND_MAX`] events of at most `EVENT_BYTES_MAX` bytes).
    fn might_exceed(&self, commands: usize, limits: AppendLimits) -> bool {
        let events = commands.saturating_mul(EVENTS_PER_COMMAND_MAX);
        let bytes = events.saturating_mul(events::EVENT_BYTES_MAX);
        self.count.saturating_add(events) > limits.events
            || self.bytes.saturating_add(bytes) > limits.bytes
    }

    fn exceeds(&self, limits: AppendLimits) -> bool {
        self.count > limits.events || self.bytes > limits.bytes
    }
}

/// The most events one command makes (a gift and its match; a refund and the release of
/// its match).
const EVENTS_PER_COMMAND_MAX: usize = 2;

/// A decided batch whose append is running.
struct InFlight {
    batch: Decided,
    append: tokio::task::JoinHandle<Result<Head, StoreError>>,
}

impl Writer {
    /// The loop. Pipelined: while one batch is being appended (flush and fdatasync), the
    /// submissions that arrive meanwhile are decided and sealed into the next batch, on top
    /// of the one in flight; when the append returns, the next batch's append starts at once.
    /// So sealing overlaps storing, and a batch still gathers everything that arrived during
    /// the append before it. At most one append runs at a time, in order. Until its append
    /// returns a batch is speculative: if the append fails, the state goes back to before it
    /// and the batch decided on top of it is decided again (after catching up, for a
    /// conflict) or refused with the store's error.
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        // Submissions to decide: new ones, or ones back from a batch that was not appended.
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut next: Option<Decided> = None;
        let mut in_flight: Option<InFlight> = None;
        let mut open = true;
        let mut conflicts = 0usize;
        loop {
            // Decide what is queued and whatever else is waiting, into the next batch.
            while open && queue.len() < BATCH_SUBMISSIONS_MAX {
                match rx.try_recv() {
                    Ok(job) => queue.push_back(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            if !queue.is_empty() && next.as_ref().is_none_or(Decided::has_room) {
                let mut batch = next.take().unwrap_or_else(|| self.new_batch());
                self.decide_into(&mut batch, &mut queue);
                next = Some(batch);
            }
            let Some(flight) = &mut in_flight else {
                if let Some(batch) = next.take() {
                    self.start(batch, &mut in_flight).await;
                    continue;
                }
                if !queue.is_empty() {
                    continue;
                }
                if !open {
                    break;
                }
                match rx.recv().await {
                    Some(job) => queue.push_back(job),
                    None => open = false,
                }
                // Woken by one submission: let others sent at the same moment (a caller's
                // batch split in submissions, or concurrent callers) arrive before deciding,
                // so they share one append rather than wait for a second.
                tokio::task::yield_now().await;
                continue;
            };
            // An append is in flight: decide what arrives meanwhile, until it returns.
            let room = next.as_ref().is_none_or(Decided::has_room);
            tokio::select! {
                job = rx.recv(), if open && room => match job {
                    Some(job) => queue.push_back(job),
                    None => open = false,
                },
                done = &mut flight.append => {
                    let flight = in_flight.take().expect("an append is in flight");
                    let done = joined(done);
                    if done.is_err() {
                        // The next batch was decided on top of one that is not in the log:
                        // its submissions go back to the queue, behind those of the failed
                        // batch if those are retried (settle puts the state back before both).
                        if let Some(batch) = next.take() {
                            requeue(&mut queue, batch.jobs);
                        }
                    }
                    self.settle(flight.batch, done, &mut queue, &mut conflicts).await;
                }
            }
        }
        tracing::info!(ledger = %self.config.ledger, "writer stopped");
    }

    /// Starts appending a decided batch; a batch with nothing to append (refusals and
    /// replays only) is answered now, which is safe because no append is in flight, so the
    /// events it replays are durable.
    async fn start(&mut self, mut batch: Decided, in_flight: &mut Option<InFlight>) {
        debug_assert!(in_flight.is_none());
        let sealed = self.seal.take().and_then(|events| {
            if events.len() == batch.count {
                Ok(events)
            } else {
                Err(ExecuteError::Internal(format!(
                    "{} events were decided and {} sealed",
                    batch.count,
                    events.len()
                )))
            }
        });
        match sealed {
            Ok(events) => batch.events = events,
            Err(e) => {
                // A bug: the batch is dropped, as when the fold refuses an event.
                tracing::error!(error = ?e, "the batch was dropped: its events did not seal");
                self.state = batch.before;
                self.seal.restart(self.state.head);
                drop_jobs(batch.jobs);
                return;
            }
        }
        if let Some(last) = batch.events.last() {
            batch.after.head = last.hash();
            if self.state.position == batch.after.position {
                self.state.head = last.hash();
            }
        }
        if batch.events.is_empty() {
            let replies = self.fill_replays(batch.replies, &[]).await;
            answer(batch.jobs, replies);
            return;
        }
        let log = self.log.clone();
        let (expected, events) = (batch.before.position, batch.events.clone());
        self.appending.send_replace(batch.after.position);
        *in_flight = Some(InFlight {
            batch,
            append: tokio::spawn(async move { log.append(expected, events).await }),
        });
    }

    /// Answers the submissions of a batch whose append has returned. On success, publishes
    /// the state after it. On a conflict (another writer appended first) the state goes back
    /// to before the batch, catches up with the log, and the batch's submissions are queued
    /// to be decided again, at most [`CONFLICT_RETRIES_MAX`] times in a row; any other
    /// failure refuses them.
    async fn settle(
        &mut self,
        batch: Decided,
        done: Result<Head, StoreError>,
        queue: &mut VecDeque<Job>,
        conflicts: &mut usize,
    ) {
        match done {
            Ok(head) => {
                *conflicts = 0;
                debug_assert_eq!(head.len, batch.after.position);
                tracing::debug!(
                    events = batch.events.len(),
                    submissions = batch.jobs.len(),
                    "batch appended"
                );
                crate::metrics::record_batch(batch.events.len() as u64);
                self.committed.send_replace(Arc::new(batch.after));
                let replies = self.fill_replays(batch.replies, &batch.events).await;
                answer(batch.jobs, replies);
            }
            Err(StoreError::Conflict { expected, actual }) if *conflicts < CONFLICT_RETRIES_MAX => {
                *conflicts += 1;
                tracing::warn!(
                    expected,
                    actual,
                    attempt = *conflicts,
                    "another writer appended first; catching up"
                );
                let start = batch.before.position;
                self.appending.send_replace(start);
                self.state = batch.before;
                let caught_up = catch_up(self.log.as_ref(), &mut self.state).await;
                self.seal.restart(self.state.head);
                if let Err(e) = caught_up {
                    self.refuse(batch.jobs, batch.replies, &e, start).await;
                    return;
                }
                requeue(queue, batch.jobs);
            }
            Err(e) => {
                *conflicts = 0;
                tracing::error!(error = %e, "append failed; the batch is refused");
                let start = batch.before.position;
                self.appending.send_replace(start);
                self.state = batch.before;
                self.seal.restart(self.state.head);
                self.refuse(batch.jobs, batch.replies, &e, start).await;
            }
        }
    }

    /// Answers a batch (whose first event would have been at `start`) that was not
    /// appended, having failed with `e` ([`refuse_new`]).
    async fn refuse(&self, jobs: Vec<Job>, replies: Vec<Pending>, e: &StoreError, start: u64) {
        let replies = self.fill_replays(refuse_new(replies, e, start), &[]).await;
        answer(jobs, replies);
    }

    /// An empty batch that starts at the current state.
    fn new_batch(&self) -> Decided {
        Decided {
            jobs: Vec::new(),
            replies: Vec::new(),
            count: 0,
            events: Vec::new(),
            commands: 0,
            bytes: 0,
            full: false,
            before: self.state.clone(),
            after: self.state.clone(),
        }
    }

    /// Decides submissions off the front of `queue` into `batch` while it has room, applying
    /// the events of those accepted. If the fold refuses an event the rules accepted (a bug),
    /// the submissions decided in this call are dropped: the state goes back and each gets an
    /// internal error.
    fn decide_into(&mut self, batch: &mut Decided, queue: &mut VecDeque<Job>) {
        let before = self.state.clone();
        let ts_ms = (self.config.clock)().max(self.state.last_ts_ms);
        let (first_job, first_event, bytes, commands) =
            (batch.jobs.len(), batch.count, batch.bytes, batch.commands);
        let limits = self.log.append_limits();
        while batch.has_room() {
            let Some(job) = queue.pop_front() else { break };
            // Near the store's append limits (EventStoreDB takes about 1 MB an append), a
            // submission that would take the batch past them is taken back out and waits for
            // the next batch, so submissions that each fit are not refused for having been
            // batched together. Only then is the state copied to go back to: far from the
            // limits (always, on sled) a batch costs no copy per submission.
            let job_commands = job.submission.commands.len();
            // There, too, events are sealed before they are applied (a batch's first
            // submission included), so their exact size counts, not a bound.
            let near = batch.might_exceed(job_commands, limits);
            let undo =
                (!batch.jobs.is_empty() && near).then(|| (self.state.clone(), self.poisoned));
            let (reply, added) = self.decide_one(&job.submission, ts_ms, !near, batch.count);
            batch.count += added.events;
            batch.bytes += added.bytes;
            if let Some((state, poisoned)) = undo {
                if batch.exceeds(limits) {
                    self.seal.truncate(state.position);
                    self.state = state;
                    self.poisoned = poisoned;
                    batch.count -= added.events;
                    batch.bytes -= added.bytes;
                    batch.full = true;
                    queue.push_front(job);
                    break;
                }
            }
            batch.commands += job_commands;
            batch.replies.push(reply);
            batch.jobs.push(job);
        }
        if self.poisoned {
            self.poisoned = false;
            self.seal.truncate(before.position);
            self.state = before;
            tracing::error!("submissions were dropped after an internal invariant failure");
            batch.count = first_event;
            batch.bytes = bytes;
            batch.replies.truncate(first_job);
            batch.commands = commands;
            drop_jobs(batch.jobs.drain(first_job..).collect());
        }
        batch.after = self.state.clone();
    }

    /// Decides one submission and applies its events, the first of which is the batch's
    /// `first_new`th; gifts and matches are sealed later when `defer` allows.
    fn decide_one(
        &mut self,
        s: &Submission,
        ts_ms: u64,
        defer: bool,
        first_new: usize,
    ) -> (Pending, Added) {
        let none = Added::default();
        let idempotency = match &s.idempotency_key {
            None => None,
            Some(key) => {
                if let Err(e) = Idempotency::check_key(key) {
                    let error = e.into();
                    return (
                        Pending::Failed(WriteError::Rejected { index: 0, error }),
                        none,
                    );
                }
                let digest = crate::command::commands_digest(&s.actor, &s.commands);
                if let Some(done) = self.state.idempotency.get(key) {
                    if done.command_sha256 != digest {
                        let error = CommandError::IdempotencyConflict { key: key.clone() };
                        return (
                            Pending::Failed(WriteError::Rejected { index: 0, error }),
                            none,
                        );
                    }
                    let (first_seq, last_seq) = (done.first_seq, done.last_seq);
                    return (
                        Pending::Replay {
                            first_seq,
                            last_seq,
                        },
                        none,
                    );
                }
                Some(Idempotency {
                    key: key.clone(),
                    command_sha256: digest,
                })
            }
        };
        // A single command is decided before anything is applied, so it runs on the state
        // itself; several commands run on an O(1) copy that is kept only if all succeed.
        let single = s.commands.len() == 1;
        let mut copy = (!single).then(|| self.state.clone());
        let first_seq = self.state.position;
        let mut added = Added::default();
        for (index, command) in s.commands.iter().enumerate() {
            let at = Stamp {
                ledger: &self.config.ledger,
                actor: &s.actor,
                token_issuer: s.token_issuer.as_ref(),
                ts_ms,
                idempotency: idempotency.as_ref(),
            };
            let work = copy.as_mut().unwrap_or(&mut self.state);
            match self.seal.execute(work, &at, command, defer) {
                Ok(one) => {
                    added.events += one.events;
                    added.bytes += one.bytes;
                }
                Err(error) => {
                    self.seal.truncate(first_seq);
                    let failed = Pending::Failed(match error {
                        ExecuteError::Rejected(error) => WriteError::Rejected { index, error },
                        ExecuteError::Internal(e) => {
                            self.poisoned = true;
                            WriteError::Internal(e)
                        }
                    });
                    return (failed, none);
                }
            }
        }
        if let Some(work) = copy {
            self.state = work;
        }
        let range = first_new..first_new + added.events;
        (Pending::New { range }, added)
    }

    /// Turns pending replies into outcomes, reading replayed events from the log (or from
    /// this batch, when the original was earlier in the same batch).
    async fn fill_replays(&self, replies: Vec<Pending>, appended: &[SealedEvent]) -> Vec<Reply> {
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            out.push(match r {
                Pending::Failed(e) => Err(e),
                Pending::New { range } => Ok(Outcome {
                    events: appended[range].to_vec(),
                    replayed: false,
                }),
                Pending::Replay {
                    first_seq,
                    last_seq,
                } => read_range(self.log.as_ref(), first_seq, last_seq)
                    .await
                    .map(|events| Outcome {
                        events,
                        replayed: true,
                    })
                    .map_err(WriteError::from),
            });
        }
        out
    }
}

/// Who, when and under which idempotency key a command's events are sealed.
pub struct Stamp<'a> {
    pub ledger: &'a Id,
    pub actor: &'a Id,
    pub token_issuer: Option<&'a Id>,
    pub ts_ms: u64,
    pub idempotency: Option<&'a Idempotency>,
}

#[derive(Debug)]
pub enum ExecuteError {
    /// The command breaks a rule; nothing was applied.
    Rejected(CommandError),
    /// The fold refused an event the rules accepted: a bug.
    Internal(String),
}

/// Decides one command against `state`, seals its events at the state's head and applies
/// them to `state`. Pure: the caller makes them durable. A rejected command leaves `state`
/// untouched; an `Internal` error (a bug) may leave part of the command applied.
pub fn execute(
    state: &mut LedgerState,
    at: &Stamp<'_>,
    command: &Command,
) -> Result<Vec<SealedEvent>, ExecuteError> {
    let records = records(state, at, command)?;
    let head = state.head;
    seal_and_apply(state, records, head)
}

/// Seals consecutive records after the event hashed `prev`, then applies them to `state`.
/// Every event is sealed first, so a refusal (an oversized event) leaves `state` untouched;
/// folding cannot fail for events decide() accepted (a failure is a bug: `Internal`).
pub(crate) fn seal_and_apply(
    state: &mut LedgerState,
    records: Vec<EventRecord>,
    prev: Hash,
) -> Result<Vec<SealedEvent>, ExecuteError> {
    let sealed = seal_chain(records, prev)?;
    for event in &sealed {
        state.apply(event).map_err(fold_refused)?;
    }
    Ok(sealed)
}

/// Decides `command` against `state`: the records of its events, from the state's position
/// on, their `prev` left at zeros for [`seal_chain`] to set.
pub(crate) fn records(
    state: &LedgerState,
    at: &Stamp<'_>,
    command: &Command,
) -> Result<Vec<EventRecord>, ExecuteError> {
    let ctx = Context {
        ledger: at.ledger,
        actor: at.actor,
        token_issuer: at.token_issuer,
        ts_ms: at.ts_ms,
        next_seq: state.position,
    };
    let bodies = decide(state, &ctx, command).map_err(ExecuteError::Rejected)?;
    Ok(bodies
        .into_iter()
        .zip(state.position..)
        .map(|(body, seq)| EventRecord {
            seq,
            prev: Hash::ZERO,
            ledger: at.ledger.clone(),
            ts_ms: at.ts_ms,
            actor: at.actor.clone(),
            idempotency: at.idempotency.cloned(),
            token_issuer: at.token_issuer.cloned(),
            body,
        })
        .collect())
}

/// Seals consecutive records, the first after the event hashed `prev`. Refused (nothing
/// sealed) when one does not seal: an oversized event, or an integer beyond 2^53 − 1.
pub(crate) fn seal_chain(
    records: Vec<EventRecord>,
    mut prev: Hash,
) -> Result<Vec<SealedEvent>, ExecuteError> {
    records
        .into_iter()
        .map(|mut record| {
            record.prev = prev;
            let event = record
                .seal()
                .map_err(|e| ExecuteError::Rejected(e.into()))?;
            prev = event.hash();
            Ok(event)
        })
        .collect()
}

/// The fold refused an event the writer decided: a bug.
pub(crate) fn fold_refused(e: projections::ProjectionError) -> ExecuteError {
    tracing::error!(error = %e, "the fold refused an event the writer decided");
    ExecuteError::Internal(e.to_string())
}

/// What deciding a command or a submission added to a batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct Added {
    pub events: usize,
    /// Bytes of canonical event data: exact for events sealed at once, an upper bound
    /// ([`EventRecord::sealed_len_bound`]) for those sealed later.
    pub bytes: usize,
}

enum Pending {
    Failed(WriteError),
    New { range: std::ops::Range<usize> },
    Replay { first_seq: u64, last_seq: u64 },
}

/// Puts submissions back at the front of the queue, in their order, to be decided again.
fn requeue(queue: &mut VecDeque<Job>, jobs: Vec<Job>) {
    for job in jobs.into_iter().rev() {
        queue.push_front(job);
    }
}

/// Answers submissions dropped after an internal invariant failure.
fn drop_jobs(jobs: Vec<Job>) {
    let replies = jobs
        .iter()
        .map(|_| Err(WriteError::Internal("the batch was dropped".into())))
        .collect();
    answer(jobs, replies);
}

/// Sends each submission its reply (a caller that stopped waiting is no error).
fn answer(jobs: Vec<Job>, replies: Vec<Reply>) {
    for (job, reply) in jobs.into_iter().zip(replies) {
        let _ = job.reply.send(reply);
    }
}

/// An append task's result, a panic in it being a store failure.
fn joined(
    done: Result<Result<Head, StoreError>, tokio::task::JoinError>,
) -> Result<Head, StoreError> {
    done.map_err(StoreError::io)?
}

/// The replies of a batch whose append failed with `e`: its new events were not written, so
/// their submissions get the store's error, as does a replay of a submission earlier in the
/// same batch (its original, at or past `start`, was not written either). Refusals stay as
/// they were, and a replay of events already in the log is still answered with them.
fn refuse_new(replies: Vec<Pending>, e: &StoreError, start: u64) -> Vec<Pending> {
    let message = e.to_string();
    replies
        .into_iter()
        .map(|r| match r {
            Pending::New { .. } => Pending::Failed(WriteError::Store(copy_error(e, &message))),
            Pending::Replay { first_seq, .. } if first_seq >= start => {
                Pending::Failed(WriteError::Store(copy_error(e, &message)))
            }
            other => other,
        })
        .collect()
}

/// The same store error for every submission of a failed batch. A conflict (the retries ran
/// out) and a limit keep their kind, so a caller can tell "try again" from "storage failed".
fn copy_error(e: &StoreError, message: &str) -> StoreError {
    match e {
        StoreError::Conflict { expected, actual } => StoreError::Conflict {
            expected: *expected,
            actual: *actual,
        },
        StoreError::Limit { what, value, max } => StoreError::Limit {
            what,
            value: *value,
            max: *max,
        },
        _ => StoreError::Io(message.to_owned()),
    }
}

/// Reads events `first..=last`.
pub async fn read_range(
    log: &dyn EventLog,
    first: u64,
    last: u64,
) -> Result<Vec<SealedEvent>, StoreError> {
    let mut out = Vec::new();
    let mut next = first;
    while next <= last {
        let want = ((last - next + 1) as usize).min(READ_EVENTS_MAX);
        let page = log.read(next, want).await?;
        if page.is_empty() {
            break;
        }
        next += page.len() as u64;
        out.extend(page);
    }
    Ok(out)
}

/// Folds every event after `state.position` into `state`.
pub async fn catch_up(log: &dyn EventLog, state: &mut LedgerState) -> Result<(), StoreError> {
    loop {
        let page = log.read(state.position, READ_EVENTS_MAX).await?;
        if page.is_empty() {
            return Ok(());
        }
        for e in &page {
            if e.record().prev != state.head {
                return Err(StoreError::Corrupt(events::ChainError::BrokenLink {
                    seq: e.seq(),
                    expected_prev: state.head,
                    found_prev: e.record().prev,
                }));
            }
            state.apply(e).map_err(|err| {
                StoreError::Corrupt(events::ChainError::Malformed {
                    seq: Some(e.seq()),
                    reason: err.to_string(),
                })
            })?;
        }
    }
}

/// The hash of the event before `position` (zeros at 0), for checking a snapshot.
pub async fn hash_before(log: &dyn EventLog, position: u64) -> Result<Hash, StoreError> {
    if position == 0 {
        return Ok(Hash::ZERO);
    }
    let page = log.read(position - 1, 1).await?;
    page.first()
        .map(|e| e.hash())
        .ok_or_else(|| StoreError::Io(format!("no event at seq {}", position - 1)))
}
