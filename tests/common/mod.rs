//! Helpers shared by the integration tests: value constructors, chained events and a
//! demo ledger for the transparency-log tests.
#![allow(dead_code)]

pub mod server;

use std::path::Path;
use std::sync::Arc;

use events::{
    Amount, Channel, Currency, EventBody, EventRecord, Hash, Id, ProjectKind, ProjectOpened,
    SealedEvent, Text,
};
use ledger::command::DonationInput;
use ledger::demo::{run_demo, DemoClock, DemoSize, Progress};
use ledger::node::{Node, NodeConfig};
use ledger::store::SledLog;

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}
pub fn text(s: &str) -> Text {
    Text::new(s).unwrap()
}
pub fn amount(v: u64) -> Amount {
    Amount::new(v).unwrap()
}

/// An anonymous WeChat Pay gift of `minor` fen to `project`, without fee.
pub fn donation(project: &str, minor: u64, txn: &str, donor: &str) -> DonationInput {
    DonationInput {
        project: id(project),
        amount_minor: amount(minor),
        currency: Currency::CNY,
        channel: Channel::Wechat,
        channel_txn_id: txn.into(),
        fee_minor: 0,
        pledge_seq: None,
        anonymous: true,
        public_name: None,
        donor_ref: id(donor),
    }
}

/// `n` chained events from `seq` on, after an event with hash `prev`. Each opens a project
/// (the log checks only the chain, not the business rules).
pub fn chained_events(seq: u64, n: u64, mut prev: Hash) -> Vec<SealedEvent> {
    (seq..seq + n)
        .map(|s| {
            let e = EventRecord {
                seq: s,
                prev,
                ledger: Id::new("test").unwrap(),
                ts_ms: 1_539_046_800_000 + s,
                actor: Id::new("admin").unwrap(),
                idempotency: None,
                token_issuer: None,
                body: EventBody::ProjectOpened(ProjectOpened {
                    project: Id::new(&format!("p{s}")).unwrap(),
                    kind: ProjectKind::CommunityProject,
                    name: Text::new(&format!("Project {s}")).unwrap(),
                    currency: Currency::CNY,
                    goal_minor: None,
                }),
            }
            .seal()
            .unwrap();
            prev = e.hash();
            e
        })
        .collect()
}

pub struct NoProgress;
impl Progress for NoProgress {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// A small demo ledger in `dir`, with a checkpoint signing key when `key` is set.
pub async fn demo_node(dir: &Path, donations: usize, key: bool) -> Node {
    if key {
        ledger::tlog::checkpoints::keygen(dir, "example.org/ledger/erqi").unwrap();
    }
    demo_with_log(dir, &demo_size(donations, 7)).await.0
}

/// A small demo: three community projects, two help requests, two micro-wishes, a general
/// fund, two sponsors, `donations` gifts, made from `seed`.
pub fn demo_size(donations: usize, seed: u64) -> DemoSize {
    DemoSize {
        community_projects: 3,
        help_requests: 2,
        micro_wishes: 2,
        general_funds: 1,
        sponsors: 2,
        donations,
        seed,
    }
}

/// The demo ledger `size` describes, in `dir`, and its sled log (for the HTTP service's
/// tokens, which live in its database and sync through its barrier).
pub async fn demo_with_log(dir: &Path, size: &DemoSize) -> (Node, SledLog) {
    let (node, log, clock) = open_erqi(dir).await;
    run_demo(&node.writer, &clock, size, &NoProgress)
        .await
        .unwrap();
    (node, log)
}

/// Opens the ledger `erqi` in `dir` on a demo clock, with its sled log.
pub async fn open_erqi(dir: &Path) -> (Node, SledLog, DemoClock) {
    let clock = DemoClock::new();
    let (node, log) = Node::open_with_log(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(Id::new("erqi").unwrap()),
        clock: clock.clock(),
    })
    .await
    .unwrap();
    (node, log, clock)
}

/// Signs a checkpoint at the node's current size now (the background signer is rate
/// limited) and returns the note.
pub fn sign_now(node: &Node, dir: &Path) -> String {
    let size = sign_current(node, dir);
    node.checkpoints.at(size).unwrap().unwrap()
}

/// Signs a checkpoint at the node's current size now and returns that size.
pub fn sign_current(node: &Node, dir: &Path) -> u64 {
    let key = ledger::tlog::checkpoints::load_signer(dir)
        .unwrap()
        .unwrap();
    ledger::tlog::CheckpointSigner::new(node.tree.clone(), node.checkpoints.clone(), key)
        .unwrap()
        .sign_current()
        .unwrap()
}

/// Waits until the read models have folded the whole log.
pub async fn caught_up(node: &Node) -> Arc<projections::LedgerState> {
    let head = node.log.head().await.unwrap();
    node.state_at(head.len, std::time::Duration::from_secs(30))
        .await
        .expect("the projections catch up")
}
