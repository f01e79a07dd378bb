//! Benchmark: reconciling a one-day WeChat Pay style bill of 1,000,000 lines against a
//! ledger holding the day's 1,000,000 gifts.
//!
//! ```text
//! cargo bench --bench reconcile                    # 1,000,000 lines
//! RECONCILE_LINES=100000 cargo bench --bench reconcile
//! /usr/bin/time -v target/release/deps/reconcile-*  # peak memory of the whole run
//! RECONCILE_LINES=100000 RECONCILE_BILL_OUT=/tmp/bill.csv cargo bench --bench reconcile
//! ```
//!
//! Phases, each timed: fold the day's gifts into the ledger state (setup, not measured as
//! reconciliation); write the bill to a temporary file; parse the bill (streaming, SHA-256
//! on the way); parse and match together, as `import-statement` and `reconcile` do. Prints
//! lines per second and the process's peak resident memory (VmHWM) after each phase.
//! `harness = false`: criterion's repetitions would take minutes on a shared 2-core machine.

mod common;

use std::io::{BufWriter, Write};
use std::time::Instant;

use events::{
    Amount, Channel, Currency, DonationReceived, EventBody, EventRecord, Hash, Id, ProjectKind,
    ProjectOpened, StatementSource, Text,
};
use ledger::statement::synth::{write_wechat_bill, BillLine};
use ledger::statement::{parse_statement, StatementOptions};
use projections::reconcile::{MatchConfig, Reconciler};
use projections::LedgerState;

/// 2018-10-09 00:00 China time.
const DAY_START_MS: u64 = 1_539_014_400_000;
const DAY_MS: u64 = 86_400_000;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn record(seq: u64, ts_ms: u64, body: EventBody) -> EventRecord {
    EventRecord {
        seq,
        prev: Hash::ZERO,
        ledger: Id::new("bench").unwrap(),
        ts_ms,
        actor: Id::new("recorder").unwrap(),
        idempotency: None,
        token_issuer: None,
        body,
    }
}

fn main() {
    let lines: u64 = common::env_or(
        "RECONCILE_LINES",
        if common::full_run() {
            1_000_000
        } else {
            10_000
        },
    );
    println!("reconcile bench: {lines} gifts in the ledger, a bill of about {lines} lines");

    // Setup: the day's gifts, folded straight into the state (no storage).
    let t = Instant::now();
    let mut state = LedgerState::default();
    let project = Id::new("cp-001").unwrap();
    let mut seq = 0;
    let apply = |state: &mut LedgerState, seq: &mut u64, ts: u64, body: EventBody| {
        state
            .apply_record(&record(*seq, ts, body), Hash::ZERO)
            .unwrap();
        *seq += 1;
    };
    apply(
        &mut state,
        &mut seq,
        DAY_START_MS,
        EventBody::ProjectOpened(ProjectOpened {
            project: project.clone(),
            kind: ProjectKind::GeneralFund,
            name: Text::new("99 公益日").unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        }),
    );
    let gift_ts = |i: u64| DAY_START_MS + i * (DAY_MS - 1) / lines.max(1);
    let ledger = Id::new("bench").unwrap();
    for i in 0..lines {
        let amount = if i % 20 == 0 { 1_000 } else { 100 };
        let txn = format!("wx{i:012}");
        apply(
            &mut state,
            &mut seq,
            gift_ts(i),
            EventBody::DonationReceived(DonationReceived {
                project: project.clone(),
                amount_minor: Amount::new(amount).unwrap(),
                currency: Currency::CNY,
                channel: Channel::Wechat,
                channel_txn_id: txn.clone(),
                // The bill's 0.6% rounded to the fen, as the ledger books a fee.
                fee_minor: (amount * 6 + 500) / 1000,
                pledge_seq: None,
                anonymous: true,
                public_name: None,
                donor_ref: Id::new(&format!("d{}", i % 50_000)).unwrap(),
                receipt_code: events::receipt_code(&ledger, Channel::Wechat, &txn),
            }),
        );
    }
    println!(
        "setup: folded {lines} gifts in {:.1} s; peak RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    // The bill: every gift, less 1 in 10,000 (missing), 1 in 10,000 with another amount,
    // plus 1 in 10,000 strangers' payments.
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bill.csv");
    let mut out = BufWriter::new(std::fs::File::create(&path).unwrap());
    let bill = (0..lines).filter_map(|i| {
        if i % 10_000 == 1 {
            return None;
        }
        let amount = if i % 20 == 0 { 1_000 } else { 100 };
        Some(BillLine {
            ts_ms: gift_ts(i) + 10,
            order_id: if i % 10_000 == 3 {
                format!("stranger{i:012}")
            } else {
                format!("wx{i:012}")
            },
            channel_order_id: format!("4200{i:016}"),
            amount_minor: if i % 10_000 == 2 { amount + 1 } else { amount },
            // 0.6%, printed to 0.00001 yuan as WeChat Pay prints it.
            fee_milli_minor: i64::try_from(amount * 6).expect("a small fee"),
            refund_id: None,
        })
    });
    let written = write_wechat_bill(&mut out, "1900000109", bill).unwrap();
    out.flush().unwrap();
    drop(out);
    let bytes = std::fs::metadata(&path).unwrap().len();
    // Keep a copy for timing `ledger import-statement` on it (see docs/FINANCE.md).
    if let Ok(keep) = std::env::var("RECONCILE_BILL_OUT") {
        std::fs::copy(&path, &keep).unwrap();
    }
    println!(
        "bill: {written} lines, {:.1} MB written in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // Parse only.
    let t = Instant::now();
    let mut parsed = 0u64;
    let summary = parse_statement(
        StatementSource::Wechat,
        std::fs::File::open(&path).unwrap(),
        &StatementOptions::default(),
        &mut |_| {
            parsed += 1;
            Ok(())
        },
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "parse: {parsed} lines in {secs:.2} s = {:.0} lines/s ({:.0} MB/s); peak RSS {:.0} MiB",
        parsed as f64 / secs,
        bytes as f64 / 1e6 / secs,
        peak_rss_mib()
    );

    // The statement as the ledger would hold it after `import-statement`.
    let statement_seq = seq;
    apply(
        &mut state,
        &mut seq,
        DAY_START_MS + DAY_MS + 3_600_000,
        EventBody::StatementImported(summary.imported()),
    );
    let statement = state.statements[&statement_seq].clone();

    // Parse and match: the reconciliation.
    let t = Instant::now();
    let mut reconciler = Reconciler::new(&state, &statement, MatchConfig::default());
    parse_statement(
        StatementSource::Wechat,
        std::fs::File::open(&path).unwrap(),
        &StatementOptions::default(),
        &mut |l| {
            reconciler.push(&l.recorded(statement_seq));
            Ok(())
        },
    )
    .unwrap();
    let rec = reconciler.finish();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "reconcile (parse + match): {} lines in {secs:.2} s = {:.0} lines/s; peak RSS {:.0} MiB",
        rec.lines,
        rec.lines as f64 / secs,
        peak_rss_mib()
    );
    println!(
        "  matched {:?}; exceptions {:?}",
        rec.matched_counts(),
        rec.counts()
    );
    assert_eq!(rec.lines, written);
}
