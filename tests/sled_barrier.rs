//! What a failed durability barrier leaves behind in the sled backend. An append applies its
//! chunks to sled before its barrier (flush, fsync of new blob files, fdatasync); when the
//! barrier fails the events are in sled but not known to be durable. They must never be
//! read as part of the log, and no later append may go on from there: after a failed fsync
//! the kernel may have dropped the dirty pages, so a later barrier proves nothing about them.

mod common;

use ledger::store::{EventLog, SledLog, StoreError};

#[tokio::test]
async fn a_failed_barrier_hides_its_events_and_stops_appends_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path()).unwrap();
    let before = log
        .append(0, common::chained_events(0, 100, events::Hash::ZERO))
        .await
        .unwrap();

    log.fail_next_barrier();
    let unacknowledged = common::chained_events(100, 50, before.hash);
    let failed = log.append(100, unacknowledged).await.unwrap_err();
    assert!(matches!(failed, StoreError::Io(_)), "{failed}");
    assert_eq!(log.head().await.unwrap(), before);

    // The chunks are in sled's tree, past the head; no read returns them.
    assert!(log.read_hashes(100, 10).await.unwrap().is_empty());
    assert_eq!(log.read_hashes(90, 100).await.unwrap().len(), 10);
    assert!(log.read(100, 10).await.unwrap().is_empty());

    // Every later append is refused, whatever it holds, and says what to do.
    let retry = common::chained_events(100, 1, before.hash);
    let refused = log.append(100, retry).await.unwrap_err();
    assert!(refused.to_string().contains("restart"), "{refused}");
    assert_eq!(log.head().await.unwrap(), before);

    // Reopened, the log is what reached the disk: here sled's flush had written the 50
    // events before the injected fdatasync failure, so they are back (a lost
    // acknowledgement, not a lost event); the chain verifies on open, and appends go on.
    drop(log);
    let log = SledLog::open(dir.path()).unwrap();
    let head = log.head().await.unwrap();
    assert_eq!(head.len, 150);
    let after = log
        .append(150, common::chained_events(150, 10, head.hash))
        .await
        .unwrap();
    assert_eq!(after.len, 160);
    assert_eq!(log.read_hashes(0, 1000).await.unwrap().len(), 160);
}

/// Linux reports a failed writeback once, to whichever fsync comes first: the checkpoint
/// store's barrier failing must stop appends as an append's own would, and the checkpoint it
/// was making durable is not served.
#[tokio::test]
async fn a_barrier_failing_for_the_checkpoint_store_stops_appends_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path()).unwrap();
    let head = log
        .append(0, common::chained_events(0, 10, events::Hash::ZERO))
        .await
        .unwrap();
    let sync_log = log.clone();
    let checkpoints = ledger::tlog::CheckpointStore::open(
        log.db(),
        std::sync::Arc::new(move || sync_log.sync()),
        None,
    )
    .unwrap();

    log.fail_next_barrier();
    assert!(checkpoints.publish(10, "a signed note").is_err());
    assert_eq!(checkpoints.at(10).unwrap(), None);

    let refused = log
        .append(10, common::chained_events(10, 1, head.hash))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("restart"), "{refused}");
    assert!(log.sync().is_err(), "a stopped log refuses to sync");
}

/// Barriers run one at a time. Linux reports a writeback error to one fdatasync only, so a
/// barrier running beside one that fails could return success for pages the other's error
/// was about (an append acknowledged while the token store's barrier got its EIO). Here a
/// barrier is stopped after sled's flush; a second barrier, set to fail, must wait for it
/// rather than run beside it, and neither reports success once one failed.
#[test]
fn barriers_run_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path()).unwrap();
    let (paused, resume) = log.pause_next_barrier();
    let first = {
        let log = log.clone();
        std::thread::spawn(move || log.sync())
    };
    paused.recv().unwrap();
    log.fail_next_barrier();
    let second = {
        let log = log.clone();
        std::thread::spawn(move || log.sync())
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !second.is_finished(),
        "the second barrier ran beside the first instead of waiting for it"
    );
    resume.send(()).unwrap();
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    assert!(
        first.is_err(),
        "the first barrier took the failure: {first:?}"
    );
    assert!(second.is_err(), "the log is stopped: {second:?}");
    assert!(log.sync().is_err());
}
