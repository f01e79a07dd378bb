//! Transparency-log benchmarks.
//!
//! - Proof generation latency on a persisted tree of 1,000,000 leaves (built once in a temp
//!   dir through the same tile store the sled log uses): inclusion and consistency proofs at
//!   random positions, with p50/p99 from 20,000 timed proofs, plus criterion's statistics.
//! - Append throughput through the sled log with the Merkle tree maintained against without
//!   it, interleaved round by round in the same run so that the machine's load hits both
//!   alike; the ratio is the tree's cost.
//!
//! `cargo bench --bench tlog`. Under `cargo test` (no `--bench` flag) it runs on small sizes
//! only, as a smoke test.

use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use events::merkle::{consistency_proof, inclusion_proof, leaf_hash};
use events::{
    Currency, EventBody, EventRecord, Hash, Id, ProjectKind, ProjectOpened, SealedEvent, Text,
};
mod common;

use ledger::store::merkle::MERKLE_TREE_NAME;
use ledger::store::{EventLog, PersistedTree, SledLog, SledLogConfig};
use rand::{Rng, SeedableRng};

use common::full_run;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn proofs(c: &mut Criterion) {
    let leaves: u64 = if full_run() { 1_000_000 } else { 10_000 };
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(256 * 1024 * 1024)
        .open()
        .unwrap();
    let tree = PersistedTree::load(db.open_tree(MERKLE_TREE_NAME).unwrap(), 0).unwrap();
    let started = Instant::now();
    let mut n = 0u64;
    while n < leaves {
        let batch: Vec<Hash> = (n..(n + 4096).min(leaves))
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        n += batch.len() as u64;
        tree.catch_up(&batch).unwrap();
    }
    println!(
        "built a persisted tree of {leaves} leaves in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let at = tree.at(leaves).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    for (name, consistency) in [("inclusion", false), ("consistency", true)] {
        let mut times = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let m = rng.gen_range(1..leaves);
            let t = Instant::now();
            let proof = if consistency {
                consistency_proof(m, leaves, &at).unwrap()
            } else {
                inclusion_proof(m, leaves, &at).unwrap()
            };
            times.push(t.elapsed());
            black_box(proof);
        }
        times.sort();
        println!(
            "{name} proof at {leaves} leaves: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} proofs)",
            percentile(&times, 0.50).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            times.last().unwrap().as_secs_f64() * 1e6,
            times.len()
        );
    }
    let mut group = c.benchmark_group(format!("proofs at {leaves} leaves"));
    group.bench_function("inclusion", |b| {
        b.iter(|| {
            let m = rng.gen_range(0..leaves);
            black_box(inclusion_proof(m, leaves, &at).unwrap())
        })
    });
    group.bench_function("consistency", |b| {
        b.iter(|| {
            let m = rng.gen_range(1..leaves);
            black_box(consistency_proof(m, leaves, &at).unwrap())
        })
    });
    group.finish();
}

/// A source of chained events (about 330 bytes each, like the demo's donations).
struct Events {
    seq: u64,
    prev: Hash,
}

impl Events {
    fn next_batch(&mut self, n: usize) -> Vec<SealedEvent> {
        (0..n)
            .map(|_| {
                let e = EventRecord {
                    seq: self.seq,
                    prev: self.prev,
                    ledger: Id::new("bench").unwrap(),
                    ts_ms: 1_539_046_800_000 + self.seq,
                    actor: Id::new("recorder-liu").unwrap(),
                    idempotency: None,
                    token_issuer: None,
                    body: EventBody::ProjectOpened(ProjectOpened {
                        project: Id::new(&format!("project-{}", self.seq)).unwrap(),
                        kind: ProjectKind::CommunityProject,
                        name: Text::new(&format!(
                            "Reading room and after-school classes for the children of block {}",
                            self.seq
                        ))
                        .unwrap(),
                        currency: Currency::CNY,
                        goal_minor: None,
                    }),
                }
                .seal()
                .unwrap();
                self.seq += 1;
                self.prev = e.hash();
                e
            })
            .collect()
    }
}

struct Log {
    log: SledLog,
    events: Events,
    _dir: tempfile::TempDir,
}

impl Log {
    fn new(merkle: bool) -> Log {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open_with(dir.path(), SledLogConfig { merkle }).unwrap();
        Log {
            log,
            events: Events {
                seq: 0,
                prev: Hash::ZERO,
            },
            _dir: dir,
        }
    }

    /// Appends one batch of `n` fresh events; returns the time the append took.
    fn append(&mut self, rt: &tokio::runtime::Runtime, n: usize) -> Duration {
        let batch = self.events.next_batch(n);
        let expected = batch[0].seq();
        let t = Instant::now();
        rt.block_on(self.log.append(expected, batch)).unwrap();
        t.elapsed()
    }
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let full = full_run();
    for (batch, rounds) in [
        (1024usize, if full { 100 } else { 3 }),
        (16, if full { 1000 } else { 3 }),
    ] {
        let mut with_tree = Log::new(true);
        let mut without = Log::new(false);
        let (mut t_with, mut t_without) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::with_capacity(rounds);
        for round in 0..rounds {
            // Alternate which goes first, so neither always follows the other's fsync.
            let (w, wo) = if round % 2 == 0 {
                let w = with_tree.append(&rt, batch);
                (w, without.append(&rt, batch))
            } else {
                let wo = without.append(&rt, batch);
                (with_tree.append(&rt, batch), wo)
            };
            t_with += w;
            t_without += wo;
            ratios.push(w.as_secs_f64() / wo.as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        let median_ratio = ratios[ratios.len() / 2];
        let events = (batch * rounds) as f64;
        let rate_with = events / t_with.as_secs_f64();
        let rate_without = events / t_without.as_secs_f64();
        println!(
            "append, batches of {batch}: {rate_without:.0} events/s without the tree, {rate_with:.0} with it: the tree costs {:.1}% in total, {:.1}% in the median round ({} events each)",
            (1.0 - rate_with / rate_without) * 100.0,
            (median_ratio - 1.0) * 100.0,
            batch * rounds
        );
        let mut group = c.benchmark_group(format!("append batches of {batch}"));
        group.throughput(criterion::Throughput::Elements(batch as u64));
        group.bench_function("without tree", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| without.append(&rt, batch)).sum())
        });
        group.bench_function("with tree", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| with_tree.append(&rt, batch)).sum())
        });
        group.finish();
    }
}

/// Donations through the single writer (decide, seal, group commit, append), as the service
/// runs them: `submitters` tasks each recording donations one at a time.
struct WriterLoad {
    writer: ledger::writer::WriterHandle,
    next_txn: u64,
    _task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl WriterLoad {
    fn new(rt: &tokio::runtime::Runtime, merkle: bool) -> WriterLoad {
        let dir = tempfile::tempdir().unwrap();
        let log: std::sync::Arc<dyn EventLog> =
            std::sync::Arc::new(SledLog::open_with(dir.path(), SledLogConfig { merkle }).unwrap());
        let _guard = rt.enter();
        let (writer, task) = ledger::writer::spawn_writer(
            log,
            projections::LedgerState::default(),
            ledger::writer::WriterConfig {
                ledger: Id::new("bench").unwrap(),
                clock: ledger::writer::system_clock(),
            },
        );
        let open = ledger::command::Command::OpenProject {
            project: Id::new("library").unwrap(),
            kind: ProjectKind::CommunityProject,
            name: Text::new("Village library").unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        };
        rt.block_on(writer.submit(ledger::writer::Submission::one(
            Id::new("admin").unwrap(),
            open,
        )))
        .unwrap();
        WriterLoad {
            writer,
            next_txn: 0,
            _task: task,
            _dir: dir,
        }
    }

    /// Records `n` donations from `submitters` concurrent tasks; returns the time taken.
    fn run(&mut self, rt: &tokio::runtime::Runtime, n: u64, submitters: u64) -> Duration {
        let first = self.next_txn;
        self.next_txn += n;
        let writer = self.writer.clone();
        rt.block_on(async move {
            let t = Instant::now();
            let tasks: Vec<_> = (0..submitters)
                .map(|k| {
                    let writer = writer.clone();
                    tokio::spawn(async move {
                        let mut i = first + k;
                        while i < first + n {
                            let donation = ledger::command::DonationInput {
                                project: Id::new("library").unwrap(),
                                amount_minor: events::Amount::new(1000 + i % 5000).unwrap(),
                                currency: Currency::CNY,
                                channel: events::Channel::Wechat,
                                channel_txn_id: format!("wx-{i}"),
                                fee_minor: 6,
                                pledge_seq: None,
                                anonymous: true,
                                public_name: None,
                                donor_ref: Id::new(&format!("d-{}", i % 977)).unwrap(),
                            };
                            writer
                                .submit(ledger::writer::Submission::one(
                                    Id::new("recorder-liu").unwrap(),
                                    ledger::command::Command::RecordDonation(donation),
                                ))
                                .await
                                .unwrap();
                            i += submitters;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            t.elapsed()
        })
    }
}

/// End-to-end donations per second through the writer, with and without the tree,
/// alternating phases in the same run.
fn writer_throughput() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (phases, per_phase) = if full_run() { (8, 8192) } else { (2, 256) };
    let mut with_tree = WriterLoad::new(&rt, true);
    let mut without = WriterLoad::new(&rt, false);
    let (mut t_with, mut t_without) = (Duration::ZERO, Duration::ZERO);
    for phase in 0..phases {
        if phase % 2 == 0 {
            t_with += with_tree.run(&rt, per_phase, 512);
            t_without += without.run(&rt, per_phase, 512);
        } else {
            t_without += without.run(&rt, per_phase, 512);
            t_with += with_tree.run(&rt, per_phase, 512);
        }
    }
    let events = (phases * per_phase) as f64;
    let rate_with = events / t_with.as_secs_f64();
    let rate_without = events / t_without.as_secs_f64();
    println!(
        "writer, donations from 512 concurrent submitters: {rate_without:.0} events/s without the tree, {rate_with:.0} with it: the tree costs {:.1}% ({} donations each)",
        (1.0 - rate_with / rate_without) * 100.0,
        phases * per_phase
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if full_run() { 5 } else { 1 }));
    proofs(&mut c);
    appends(&mut c);
    writer_throughput();
    c.final_summary();
}
