//! The persisted Merkle tree against `events::MemoryTree`, across reopen; and tampering with
//! a stored event, which `verify` must catch and name.

mod common;

use std::path::Path;
use std::process::Command;

use events::merkle::{consistency_proof, inclusion_proof, root, MemoryTree};
use events::{Hash, SealedEvent};
use ledger::store::{EventLog, SledLog};
use proptest::prelude::*;

use common::chained_events;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Appends `n` events to the log and the model.
fn append(
    rt: &tokio::runtime::Runtime,
    log: &SledLog,
    memory: &mut MemoryTree,
    prev: &mut Hash,
    n: u64,
) {
    let len = memory.size();
    let events = chained_events(len, n, *prev);
    *prev = events.last().unwrap().hash();
    for e in &events {
        memory.push_leaf(e.canonical_bytes());
    }
    rt.block_on(log.append(len, events)).unwrap();
}

/// Every root and proof the persisted tree gives equals the in-memory model's.
fn check(log: &SledLog, memory: &MemoryTree) {
    let tree = log.tree().expect("sled maintains the tree");
    let n = memory.size();
    assert_eq!(tree.size(), n);
    assert_eq!(tree.root(), memory.root());
    if n == 0 {
        return;
    }
    let at = tree.at(n).unwrap();
    let sizes = [1, n / 3 + 1, n / 2 + 1, n - 1, n];
    for &size in sizes.iter().filter(|&&s| s >= 1 && s <= n) {
        assert_eq!(root(size, &at).unwrap(), root(size, memory).unwrap());
        for index in [0, size / 2, size - 1] {
            assert_eq!(
                inclusion_proof(index, size, &at).unwrap(),
                inclusion_proof(index, size, memory).unwrap(),
                "inclusion of {index} at {size}"
            );
        }
        for old in [1, size / 2, size - 1] {
            if old <= size {
                assert_eq!(
                    consistency_proof(old, size, &at).unwrap(),
                    consistency_proof(old, size, memory).unwrap(),
                    "consistency {old} -> {size}"
                );
            }
        }
    }
}

/// Opens the log again. sled's background threads may hold the previous handle's file lock
/// for a moment after it is dropped, so a lock error is retried for up to 5 seconds.
fn reopen(dir: &Path) -> SledLog {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledLog::open(dir) {
            Ok(log) => return log,
            Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("reopening the log: {e}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Append(u64),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..700).prop_map(Step::Append),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Model-based: appends of random sizes and restarts, compared with the model after
    /// every step.
    #[test]
    fn the_persisted_tree_equals_a_memory_tree_across_restarts(
        steps in proptest::collection::vec(step(), 1..8)
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let mut log = SledLog::open(dir.path()).unwrap();
        let mut memory = MemoryTree::new();
        let mut prev = Hash::ZERO;
        for step in steps {
            match step {
                Step::Append(n) => append(&rt, &log, &mut memory, &mut prev, n),
                Step::Reopen => {
                    drop(log);
                    log = reopen(dir.path());
                }
            }
            check(&log, &memory);
        }
    }
}

#[test]
fn a_data_directory_without_a_tree_gets_one_on_open() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut memory = MemoryTree::new();
    let mut prev = Hash::ZERO;
    {
        let log =
            SledLog::open_with(dir.path(), ledger::store::SledLogConfig { merkle: false }).unwrap();
        assert!(log.tree().is_none());
        append(&rt, &log, &mut memory, &mut prev, 1000);
    }
    let log = reopen(dir.path());
    check(&log, &memory);
    append(&rt, &log, &mut memory, &mut prev, 300);
    check(&log, &memory);
}

/// An append applies its events, then the tiles they complete, before one barrier: a crash
/// between the two leaves the stored tree behind the log. Simulated by appending with the
/// tree off; on open the tree is caught up from the log.
#[test]
fn a_tree_behind_the_log_is_caught_up_on_open() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut memory = MemoryTree::new();
    let mut prev = Hash::ZERO;
    {
        let log = reopen(dir.path());
        append(&rt, &log, &mut memory, &mut prev, 1000);
        check(&log, &memory);
    }
    {
        let log =
            SledLog::open_with(dir.path(), ledger::store::SledLogConfig { merkle: false }).unwrap();
        append(&rt, &log, &mut memory, &mut prev, 300);
    }
    let log = reopen(dir.path());
    check(&log, &memory);
    append(&rt, &log, &mut memory, &mut prev, 100);
    check(&log, &memory);
}

/// Rewrites the stored bytes of event `seq` in the sled data directory with `edit`, which
/// gets the event's stored record (`u32 length ‖ 32-byte hash ‖ canonical bytes`).
fn tamper(dir: &Path, seq: u64, edit: impl FnOnce(&mut [u8])) {
    let db = SledLog::open_db(dir).unwrap();
    let log = db.open_tree("log").unwrap();
    let (key, chunk) = log
        .range(..=seq.to_be_bytes())
        .next_back()
        .unwrap()
        .unwrap();
    let mut chunk = chunk.to_vec();
    let mut at = 0usize;
    let mut s = u64::from_be_bytes(key.as_ref().try_into().unwrap());
    loop {
        let len = u32::from_be_bytes(chunk[at..at + 4].try_into().unwrap()) as usize;
        if s == seq {
            edit(&mut chunk[at..at + 36 + len]);
            break;
        }
        at += 36 + len;
        s += 1;
    }
    log.insert(key, chunk).unwrap();
    db.flush().unwrap();
    drop((log, db));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while SledLog::open_db(dir).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn replace_once(record: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let body = &mut record[36..];
    let at = body
        .windows(from.len())
        .position(|w| w == from)
        .expect("the field is in the event");
    body[at..at + from.len()].copy_from_slice(to);
}

fn verify_data(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["verify", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

fn write_log(dir: &Path, n: u64) -> Vec<SealedEvent> {
    let rt = runtime();
    let log = SledLog::open(dir).unwrap();
    let mut all = Vec::new();
    let mut prev = Hash::ZERO;
    let mut len = 0;
    while len < n {
        let batch = chained_events(len, 1000.min(n - len), prev);
        prev = batch.last().unwrap().hash();
        rt.block_on(log.append(len, batch.clone())).unwrap();
        len += batch.len() as u64;
        all.extend(batch);
    }
    drop(log);
    wait_unlocked(dir);
    all
}

/// Waits until no handle of this process holds the data directory's sled lock, so that a
/// child process can open it.
fn wait_unlocked(dir: &Path) {
    drop(reopen(dir));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while SledLog::open_db(dir).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A change to one stored event record.
type Edit = Box<dyn Fn(&mut [u8])>;

#[test]
fn changing_one_byte_of_a_stored_event_fails_verify_naming_its_seq() {
    // 5,000 events: seq 100 is outside the tail that opening re-checks (the last 4,096), so
    // the full verification must find it; seq 4,500 is inside it, so opening refuses.
    let cases: Vec<(u64, &str, Edit)> = vec![
        (
            100,
            "a letter of the project name",
            Box::new(|r: &mut [u8]| replace_once(r, b"Project 100", b"Praject 100")),
        ),
        (
            101,
            "a digit of the timestamp",
            Box::new(|r: &mut [u8]| replace_once(r, b"1539046800101", b"1539046800102")),
        ),
        (
            102,
            "the seq field",
            Box::new(|r: &mut [u8]| replace_once(r, b"\"seq\":102", b"\"seq\":103")),
        ),
        (
            103,
            "a byte of the stored hash",
            Box::new(|r: &mut [u8]| r[10] ^= 1),
        ),
        (
            104,
            "a byte into invalid JSON",
            Box::new(|r: &mut [u8]| r[36] = b'['),
        ),
        (
            4500,
            "a letter of the actor, in the tail",
            Box::new(|r: &mut [u8]| replace_once(r, b"\"admin\"", b"\"admim\"")),
        ),
    ];
    let pristine = tempfile::tempdir().unwrap();
    write_log(pristine.path(), 5000);
    let (ok, out) = verify_data(pristine.path());
    assert!(ok, "{out}");
    for (seq, what, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        tamper(dir.path(), seq, edit);
        let (ok, out) = verify_data(dir.path());
        assert!(
            !ok,
            "tampering with {what} of event {seq} went unnoticed: {out}"
        );
        assert!(
            out.contains(&format!("event {seq}")),
            "tampering with {what}: the report names another event: {out}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A backend that keeps no tree (as EventStoreDB) gets one from `TreeStore`, fed from a
/// subscription, persisted in a local sled tree and caught up on reopen.
#[test]
fn tree_store_follows_a_log_without_a_tree() {
    use ledger::store::merkle::MERKLE_TREE_NAME;
    use ledger::store::TreeStore;
    use std::sync::Arc;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let log =
        SledLog::open_with(dir.path(), ledger::store::SledLogConfig { merkle: false }).unwrap();
    let mut memory = MemoryTree::new();
    let mut prev = Hash::ZERO;
    append(&rt, &log, &mut memory, &mut prev, 700);
    let log: Arc<dyn EventLog> = Arc::new(log);
    let db = sled::open(local.path()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (tree, task) = rt
        .block_on(TreeStore::follow(
            db.open_tree(MERKLE_TREE_NAME).unwrap(),
            log.clone(),
            stop_rx.clone(),
        ))
        .unwrap();
    assert_eq!((tree.size(), tree.root()), (700, memory.root()));
    // New events reach the tree through the subscription.
    let events = chained_events(700, 300, prev);
    for e in &events {
        memory.push_leaf(e.canonical_bytes());
    }
    rt.block_on(log.append(700, events)).unwrap();
    let mut sizes = tree.watch_size();
    rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            sizes.wait_for(|s| *s == 1000),
        )
        .await
        .unwrap()
        .unwrap();
    });
    assert_eq!(tree.root(), memory.root());
    let at = tree.at(1000).unwrap();
    assert_eq!(
        inclusion_proof(999, 1000, &at).unwrap(),
        inclusion_proof(999, 1000, &memory).unwrap()
    );
    stop_tx.send_replace(true);
    rt.block_on(task).unwrap();
    drop(tree);
    // Reopened from its stored tiles.
    let (tree, _task) = rt
        .block_on(TreeStore::follow(
            db.open_tree(MERKLE_TREE_NAME).unwrap(),
            log,
            stop_rx,
        ))
        .unwrap();
    assert_eq!((tree.size(), tree.root()), (1000, memory.root()));
}
