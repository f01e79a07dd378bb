//! `verify` throughput: re-hash and re-link every stored event, in events per second, next to
//! the bare SHA-256 rate over the same canonical bytes.
//!
//! `cargo bench --bench verify`. Figures are in README.md.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ledger::store::READ_EVENTS_MAX;
use ledger::writer::Submission;

// The ledger allocates many small objects per event (values, map nodes); mimalloc is
// markedly faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: u64 = 100_000;

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = rt.block_on(common::open_ledger(dir.path()));
    rt.block_on(async {
        let mut written = 1;
        while written < EVENTS {
            let s = Submission {
                actor: common::recorder(),
                token_issuer: None,
                idempotency_key: None,
                commands: (0..1000).map(|_| common::gift()).collect(),
            };
            written += node.writer.submit(s).await.unwrap().events.len() as u64;
        }
    });
    let log = node.log.clone();
    let len = rt.block_on(log.head()).unwrap().len;
    let canonical: Vec<Vec<u8>> = rt.block_on(async {
        let mut out = Vec::new();
        while (out.len() as u64) < len {
            let page = log.read(out.len() as u64, READ_EVENTS_MAX).await.unwrap();
            out.extend(page.iter().map(|e| e.canonical_bytes().to_vec()));
        }
        out
    });
    let mut group = c.benchmark_group("verify");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(len));
    group.bench_function("data_dir", |b| {
        b.to_async(&rt).iter(|| async {
            let chain = ledger::cli::verify_log(log.as_ref(), &indicatif::ProgressBar::hidden())
                .await
                .unwrap();
            assert_eq!(chain.len(), len);
        });
    });
    group.bench_function("sha256_only", |b| {
        b.iter(|| {
            for bytes in &canonical {
                std::hint::black_box(events::sha256(bytes));
            }
        });
    });
    group.finish();
    drop(log);
    rt.block_on(node.shutdown()).unwrap();
}

criterion_group!(benches, verify);
criterion_main!(benches);
