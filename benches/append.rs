//! Sealed, durable appends per second through the writer (group commit), against the raw
//! per-record sled insert rate of same-sized records in the same run.
//!
//! `cargo bench --bench append`. Figures are in README.md.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger::writer::Submission;

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
            b.to_async(&rt).iter(|| async {
                let s = Submission {
                    actor: common::recorder(),
                    idempotency_key: None,
                    commands: (0..batch).map(|_| common::gift()).collect(),
                };
                node.writer.submit(s).await.unwrap();
            });
        });
    }
    // 64 callers each submitting one gift at a time: group commit batches them.
    group.throughput(Throughput::Elements(64));
    group.bench_function("concurrent_callers/64", |b| {
        b.to_async(&rt).iter(|| async {
            let mut tasks = Vec::with_capacity(64);
            for _ in 0..64 {
                let writer = node.writer.clone();
                tasks.push(tokio::spawn(async move {
                    writer
                        .submit(Submission::one(common::recorder(), common::gift()))
                        .await
                        .unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    group.finish();
    rt.block_on(node.shutdown()).unwrap();
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

criterion_group!(benches, writer_batches, raw_sled);
criterion_main!(benches);
