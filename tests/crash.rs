//! Crash test: a child process appending in a loop (`ledger soak`) is killed with SIGKILL at
//! a random moment, repeatedly; after each kill the store reopens, every event the child saw
//! acknowledged is there, and the whole chain verifies. (SIGKILL tests process crashes; power
//! loss is covered by fdatasync after every flush, see ARCHITECTURE.md.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use events::ChainVerifier;
use ledger::store::{EventLog, SledLog, READ_EVENTS_MAX};
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 8;

async fn verify_all(dir: &std::path::Path) -> u64 {
    let log = SledLog::open(dir).expect("the store reopens after a kill");
    let mut chain = ChainVerifier::new();
    loop {
        let page = log.read(chain.len(), READ_EVENTS_MAX).await.unwrap();
        if page.is_empty() {
            break;
        }
        for e in &page {
            chain
                .push_sealed(e)
                .expect("the chain verifies after a kill");
        }
    }
    assert_eq!(chain.len(), log.head().await.unwrap().len);
    chain.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_lose_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut total_acked = 0u64;
    for round in 0..ROUNDS {
        // Every other round with many callers, so the kill also cuts batches of hundreds of
        // events (and the pipelined writer's next batch, decided while one is appended).
        let concurrency = if round % 2 == 1 { "512" } else { "16" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["soak", "--data"])
            .arg(dir.path())
            .args(["--count", "1000000", "--concurrency", concurrency])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the soak child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line.strip_prefix("acked ").and_then(|s| s.parse().ok()) {
                    if tx.send(seq).is_err() {
                        break;
                    }
                }
            }
        });
        // Wait for the first acknowledgement, then kill at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child acknowledges");
        let mut max_acked = first;
        let kill_after = Duration::from_millis(rng.gen_range(10..400));
        let started = Instant::now();
        while started.elapsed() < kill_after {
            while let Ok(seq) = rx.try_recv() {
                max_acked = max_acked.max(seq);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // SIGKILL: no chance to flush or shut down.
        child.kill().expect("kill the child");
        child.wait().unwrap();
        reader.join().unwrap();
        while let Ok(seq) = rx.try_recv() {
            max_acked = max_acked.max(seq);
        }
        let len = verify_all(dir.path()).await;
        assert!(
            max_acked < len,
            "round {round}: event {max_acked} was acknowledged but the log holds only {len}"
        );
        total_acked = max_acked;
    }
    assert!(total_acked > 0);
}
