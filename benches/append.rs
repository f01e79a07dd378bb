//! Sealed, durable appends per second through the writer (group commit), against the raw
//! per-record sled insert rate of same-sized records in the same run.
//!
//! `cargo bench --bench append`. Figures are in README.md.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger::writer::Submission;

// The ledger allocates many small objects per event (values, map nodes); mimalloc is
// markedly faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn writer_batches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = rt.block_on(common::open_ledger(dir.path()));
    let mut group = c.benchmark_group("writer_append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.to_async(&rt).iter_custom(|iters| {
                let writer = node.writer.clone();
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        // The commands are made before the clock starts (in the service
                        // they come parsed from HTTP). A submission holds at most 1000
                        // commands, so 1024 gifts go as two submissions, sent together,
                        // which the writer seals and appends as one batch.
                        let submissions = gifts_in_submissions(batch);
                        let start = Instant::now();
                        submit_together(&writer, submissions).await;
                        timed += start.elapsed();
                    }
                    timed
                }
            });
        });
    }
    // Two callers, each sending 1024 gifts and waiting for them: the pipelined writer decides
    // one caller's batch while the other's is appended, and each append still holds one
    // caller's 1024 gifts (the events per append are printed to check it). An iteration is
    // one batch of 1024; both callers' commands are made before the clock starts.
    group.throughput(Throughput::Elements(1024));
    group.bench_function("batch/1024/two_callers", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let writer = node.writer.clone();
            async move {
                let per_caller = iters.div_ceil(2);
                let work: Vec<Vec<Vec<Submission>>> = (0..2)
                    .map(|_| {
                        (0..per_caller)
                            .map(|_| gifts_in_submissions(1024))
                            .collect()
                    })
                    .collect();
                let (events_before, appends_before) = ledger::metrics::appended();
                let start = Instant::now();
                let callers: Vec<_> = work
                    .into_iter()
                    .map(|batches| {
                        let writer = writer.clone();
                        tokio::spawn(async move {
                            for submissions in batches {
                                submit_together(&writer, submissions).await;
                            }
                        })
                    })
                    .collect();
                for caller in callers {
                    caller.await.unwrap();
                }
                let elapsed = start.elapsed();
                let (events, appends) = ledger::metrics::appended();
                eprintln!(
                    "two callers: {:.0} events per append",
                    (events - events_before) as f64 / (appends - appends_before).max(1) as f64
                );
                // Time for `iters` batches (the callers ran 2 × ceil(iters / 2)).
                elapsed.mul_f64(iters as f64 / (2 * per_caller) as f64)
            }
        });
    });
    // 64 callers each submitting one gift at a time: group commit batches them.
    group.throughput(Throughput::Elements(64));
    group.bench_function("concurrent_callers/64", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let writer = node.writer.clone();
            async move {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let gifts: Vec<_> = (0..64).map(|_| common::gift()).collect();
                    let start = Instant::now();
                    let tasks: Vec<_> = gifts
                        .into_iter()
                        .map(|gift| {
                            let writer = writer.clone();
                            tokio::spawn(async move {
                                writer
                                    .submit(Submission::one(common::recorder(), gift))
                                    .await
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap().unwrap();
                    }
                    timed += start.elapsed();
                }
                timed
            }
        });
    });
    group.finish();
    rt.block_on(node.shutdown()).unwrap();
}

/// `n` gifts as submissions of at most [`ledger::writer::SUBMISSION_COMMANDS_MAX`] commands.
fn gifts_in_submissions(n: usize) -> Vec<Submission> {
    let max = ledger::writer::SUBMISSION_COMMANDS_MAX;
    (0..n)
        .step_by(max)
        .map(|first| Submission {
            actor: common::recorder(),
            token_issuer: None,
            idempotency_key: None,
            commands: (first..(first + max).min(n))
                .map(|_| common::gift())
                .collect(),
        })
        .collect()
}

/// Sends submissions together (the writer decides and appends them as one batch) and waits
/// until all are durable.
async fn submit_together(writer: &ledger::writer::WriterHandle, submissions: Vec<Submission>) {
    let outcomes =
        futures_util::future::join_all(submissions.into_iter().map(|s| writer.submit(s))).await;
    for outcome in outcomes {
        outcome.unwrap();
    }
}

/// The reference: one sled insert per record of the same size as a sealed gift, then one
/// flush (plus the same fdatasync the ledger does) per `batch` records.
fn raw_sled(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path().join("raw"))
        .flush_every_ms(None)
        .open()
        .unwrap();
    let file = std::fs::File::open(dir.path().join("raw").join("db")).unwrap();
    let tree = db.open_tree("log").unwrap();
    let record = vec![b'x'; 430];
    let mut key: u64 = 0;
    let mut group = c.benchmark_group("raw_sled_per_record");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::new("flush_every", batch),
            &batch,
            |b, &batch| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..batch {
                            key += 1;
                            tree.insert(key.to_be_bytes(), record.as_slice()).unwrap();
                        }
                        db.flush().unwrap();
                        file.sync_data().unwrap();
                    }
                    start.elapsed()
                });
            },
        );
    }
    group.finish();
}

/// The write side's CPU alone: decide, seal (RFC 8785 + SHA-256) and fold one gift, with no IO,
/// against a state that already holds 100,000 gifts.
fn execute_only(c: &mut Criterion) {
    use events::Id;
    use ledger::writer::{execute, Stamp};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut state = common::opened_state(&rt, dir.path());
    let ledger = Id::new("bench").unwrap();
    let actor = common::recorder();
    let at = Stamp {
        ledger: &ledger,
        actor: &actor,
        token_issuer: None,
        ts_ms: common::LATER_MS,
        idempotency: None,
    };
    for _ in 0..100_000 {
        execute(&mut state, &at, &common::gift()).unwrap();
    }
    let mut group = c.benchmark_group("execute_only");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    group.bench_function("gift", |b| {
        // As the writer does for a one-command submission: decided, then applied in place.
        b.iter(|| execute(&mut state, &at, &common::gift()).unwrap());
    });
    group.finish();
}

/// The storage side alone: appends of 1024 gifts sealed beforehand (untimed) through the
/// sled log (chunks, Merkle tiles, flush, fdatasync), to set beside `raw_sled_per_record`.
fn log_append(c: &mut Criterion) {
    use events::Id;
    use ledger::store::{EventLog, SledLog};
    use ledger::writer::{execute, Stamp};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut state = common::opened_state(&rt, dir.path());
    // The same log, now without the node: only the appends below touch it.
    let log = SledLog::open(dir.path()).unwrap();
    let ledger = Id::new("bench").unwrap();
    let actor = common::recorder();
    let mut group = c.benchmark_group("log_append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(1024));
    group.bench_function("presealed/1024", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let expected = state.position;
                let at = Stamp {
                    ledger: &ledger,
                    actor: &actor,
                    token_issuer: None,
                    ts_ms: common::LATER_MS,
                    idempotency: None,
                };
                let batch: Vec<_> = (0..1024)
                    .flat_map(|_| execute(&mut state, &at, &common::gift()).unwrap())
                    .collect();
                let start = Instant::now();
                rt.block_on(log.append(expected, batch)).unwrap();
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, writer_batches, raw_sled, execute_only, log_append);
criterion_main!(benches);
