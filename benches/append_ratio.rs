//! Batch 1024 through the writer against raw per-record sled, interleaved in one process.
//!
//! ```text
//! cargo bench --bench append_ratio
//! RATIO_ROUNDS=40 RATIO_BATCHES=50 cargo bench --bench append_ratio
//! ```
//!
//! On this shared virtual machine both figures drift by up to 2× within minutes (docs/
//! BENCHMARKS.md), more than the difference being measured, and `cargo bench --bench append`
//! measures the two cases one after the other. Here each round times `RATIO_BATCHES`
//! closed-loop batches of 1024 gifts through the writer (as `writer_append/batch/1024`: the
//! commands made before the clock starts, sent as two submissions together, waited for),
//! then as many raw sled batches (as `raw_sled_per_record/flush_every/1024`: 1024 inserts of
//! 430-byte records, a flush and an fdatasync), and the ratio of the two means is that
//! round's. Prints every round and the median ratio over the rounds (> 1: the writer is
//! faster). Whole rounds, not single batches, are compared so that each mean carries the
//! periodic costs (a table growing, an IO buffer written) as a criterion sample would.
//! `harness = false`: the rounds are the repetitions.

mod common;

use std::time::{Duration, Instant};

use ledger::writer::{Submission, WriterHandle, SUBMISSION_COMMANDS_MAX};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GIFTS: usize = 1024;
const RECORD_BYTES: usize = 430;

fn gifts() -> Vec<Submission> {
    (0..GIFTS)
        .step_by(SUBMISSION_COMMANDS_MAX)
        .map(|first| {
            Submission::many(
                common::recorder(),
                (first..(first + SUBMISSION_COMMANDS_MAX).min(GIFTS))
                    .map(|_| common::gift())
                    .collect(),
            )
        })
        .collect()
}

/// The mean time of `n` closed-loop writer batches.
fn writer_round(rt: &tokio::runtime::Runtime, writer: &WriterHandle, n: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        let submissions = gifts();
        let start = Instant::now();
        rt.block_on(async {
            let outcomes =
                futures_util::future::join_all(submissions.into_iter().map(|s| writer.submit(s)))
                    .await;
            for outcome in outcomes {
                outcome.unwrap();
            }
        });
        total += start.elapsed();
    }
    total / n as u32
}

struct RawSled {
    db: sled::Db,
    tree: sled::Tree,
    file: std::fs::File,
    key: u64,
    record: Vec<u8>,
}

impl RawSled {
    fn open(dir: &std::path::Path) -> RawSled {
        let db = sled::Config::new()
            .path(dir.join("raw"))
            .flush_every_ms(None)
            .open()
            .unwrap();
        let file = std::fs::File::open(dir.join("raw").join("db")).unwrap();
        let tree = db.open_tree("log").unwrap();
        RawSled {
            db,
            tree,
            file,
            key: 0,
            record: vec![b'x'; RECORD_BYTES],
        }
    }

    /// The mean time of `n` batches of 1024 inserts, a flush and an fdatasync.
    fn round(&mut self, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            for _ in 0..GIFTS {
                self.key += 1;
                self.tree
                    .insert(self.key.to_be_bytes(), self.record.as_slice())
                    .unwrap();
            }
            self.db.flush().unwrap();
            self.file.sync_data().unwrap();
        }
        start.elapsed() / n as u32
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let full = common::full_run();
    let rounds: usize = common::env_or("RATIO_ROUNDS", if full { 20 } else { 2 });
    let batches: usize = common::env_or("RATIO_BATCHES", if full { 50 } else { 3 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = rt.block_on(common::open_ledger(&dir.path().join("ledger")));
    let writer = node.writer.clone();
    let mut raw = RawSled::open(dir.path());
    // Warm-up: both stores past their first segments and tables.
    writer_round(&rt, &writer, batches);
    raw.round(batches);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (mut writer_ms, mut raw_ms, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let w = writer_round(&rt, &writer, batches);
        let r = raw.round(batches);
        let ratio = r.as_secs_f64() / w.as_secs_f64();
        println!(
            "round {round:>3}: writer {:.3} ms, raw sled {:.3} ms a batch of {GIFTS}: {ratio:.2}x",
            ms(w),
            ms(r)
        );
        writer_ms.push(ms(w));
        raw_ms.push(ms(r));
        ratios.push(ratio);
    }
    println!(
        "median over {rounds} rounds of {batches} batches: writer {:.3} ms, raw sled {:.3} ms, \
         ratio {:.2}x (raw sled's time over the writer's; above 1 the writer is faster)",
        median(writer_ms),
        median(raw_ms),
        median(ratios)
    );
    drop(writer);
    rt.block_on(node.shutdown()).unwrap();
}
