//! Shared by the benches: a ledger in a temp dir with one project, and gift commands.

// Each bench uses some of these.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use events::{Amount, Channel, Currency, Id, ProjectKind, Text};
use ledger::command::{Command, DonationInput};
use ledger::node::{Node, NodeConfig};
use ledger::writer::Submission;

pub async fn open_ledger(dir: &std::path::Path) -> Node {
    let node = Node::open(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(Id::new("bench").unwrap()),
        clock: ledger::writer::system_clock(),
    })
    .await
    .unwrap();
    let open = Command::OpenProject {
        project: Id::new("cp").unwrap(),
        kind: ProjectKind::CommunityProject,
        name: Text::new("星星课堂").unwrap(),
        currency: Currency::CNY,
        goal_minor: None,
    };
    node.writer
        .submit(Submission::one(Id::new("admin").unwrap(), open))
        .await
        .unwrap();
    node
}

/// A ledger in `dir` with its project opened, closed again; returns its state, for benches
/// that drive `execute` or the log directly.
pub fn opened_state(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> projections::LedgerState {
    let node = rt.block_on(open_ledger(dir));
    let state = rt
        .block_on(node.state_at(1, std::time::Duration::from_secs(10)))
        .unwrap();
    rt.block_on(node.shutdown()).unwrap();
    (*state).clone()
}

/// Whether this is a measured run (`cargo bench` passes `--bench`) rather than the smoke run
/// `cargo test --benches` makes of every bench (CI runs it, so a bench that no longer runs
/// is caught): the harness-less benches then take small sizes.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The environment variable `name` read as a number, or `default` when it is unset or not one.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static TXN: AtomicU64 = AtomicU64::new(0);

/// A one-yuan gift with a fresh channel transaction id: a ~400-byte sealed event.
pub fn gift() -> Command {
    let n = TXN.fetch_add(1, Ordering::Relaxed);
    Command::RecordDonation(DonationInput {
        project: Id::new("cp").unwrap(),
        amount_minor: Amount::new(100).unwrap(),
        currency: Currency::CNY,
        channel: Channel::Wechat,
        channel_txn_id: format!("4200000{n:012}"),
        fee_minor: 0,
        pledge_seq: None,
        anonymous: true,
        public_name: None,
        donor_ref: Id::new(&format!("donor-{:06}", n % 100_000)).unwrap(),
    })
}

/// A server time later than any the opened ledger has seen (2100-01-01T00:00:00Z), within
/// the 2^53 - 1 that sealing allows, for benches that stamp events themselves.
pub const LATER_MS: u64 = 4_102_444_800_000;

pub fn recorder() -> Id {
    Id::new("recorder").unwrap()
}
