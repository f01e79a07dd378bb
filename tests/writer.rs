//! The writer and the sled log together: idempotency, group commit, atomic submissions,
//! and refusing to open a broken chain.

use std::sync::Arc;

use events::*;
use ledger::command::{Command, CommandError, DonationInput};
use ledger::node::{Node, NodeConfig};
use ledger::store::{EventLog, SledLog, StoreError};
use ledger::writer::{Submission, WriteError};

const T0: u64 = 1_539_046_800_000;

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

async fn open(dir: &std::path::Path) -> Node {
    Node::open(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(id("test")),
        clock: Arc::new(|| T0),
    })
    .await
    .unwrap()
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

fn gift(txn: &str, minor: u64) -> Command {
    Command::RecordDonation(DonationInput {
        project: id("cp"),
        amount_minor: Amount::new(minor).unwrap(),
        currency: Currency::CNY,
        channel: Channel::Wechat,
        channel_txn_id: txn.into(),
        fee_minor: 0,
        pledge_seq: None,
        anonymous: true,
        public_name: None,
        donor_ref: id("donor-1"),
    })
}

fn keyed(key: &str, command: Command) -> Submission {
    Submission {
        actor: id("recorder"),
        idempotency_key: Some(key.into()),
        commands: vec![command],
    }
}

#[tokio::test]
async fn an_idempotency_key_replays_the_original_and_never_writes_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
    let before = node.log.head().await.unwrap();
    let batch = Submission {
        actor: id("recorder"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_durable_events() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.writer
        .submit(Submission::one(id("admin"), open_project("cp")))
        .await
        .unwrap();
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
        // Walk to event 3 inside the chunk and flip a digit of its amount.
        let mut offset = 0;
        for _ in first..3 {
            let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            offset += 36 + len;
        }
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let body = &mut bytes[offset + 36..offset + 36 + len];
        let at = String::from_utf8_lossy(body)
            .find("\"amount_minor\":100")
            .unwrap()
            + 15;
        body[at] = b'9';
        log.insert(key, bytes).unwrap();
        db.flush().unwrap();
    }
    let err = SledLog::open(dir.path()).err().expect("refuses to open");
    match err {
        StoreError::Corrupt(e) => assert_eq!(e.seq(), Some(3), "{e}"),
        other => panic!("expected corruption, got {other}"),
    }
}
