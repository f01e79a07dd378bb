//! Property test of the double-entry journal: random command sequences go through the real
//! writer over the sled log; after every step the journal balances in every currency and
//! each project's fund statement equals the ledger's balance projection to the fen. A
//! restart step reopens the log and refolds the books from event 0, which must give the
//! same trial balance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod common;

use common::{amount, id, text};
use events::{
    Channel, Currency, ExceptionResolved, MatchingPoolCommitted, MoveRequested, PayoutRequested,
    ProjectKind, Resolution, StatementImported, StatementLineKind, StatementLineRecorded,
    StatementSource,
};
use ledger::command::{Command, DonationInput};
use ledger::store::{EventLog, SledLog};
use ledger::writer::{catch_up, read_range, spawn_writer, Submission, WriterConfig, WriterHandle};
use projections::{Books, LedgerState, RequestStatus};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Donate {
        project: usize,
        amount: u64,
        fee_permille: u64,
        channel: usize,
        pledge: bool,
    },
    /// Refunds one of the live gifts; the channel gives back quarters (0 to 4) of its fee.
    Refund(usize, u64),
    /// Records, for one of the refunds whose gift's fee is not all back, a fee the channel
    /// gave back afterwards: quarters (1 to 5) of what is left of it, so 5 (more than is
    /// left) is refused.
    ReturnFee(usize, u64),
    Pledge {
        project: usize,
        amount: u64,
    },
    CancelPledge(usize),
    RequestPayout {
        project: usize,
        amount: u64,
    },
    ApprovePayout(usize),
    RejectPayout(usize),
    Disburse(usize),
    RequestMove {
        from: usize,
        to: usize,
        amount: u64,
    },
    ApproveMove(usize),
    RejectMove(usize),
    Settle {
        channel: usize,
        amount: u64,
    },
    MatchingPaid {
        amount: u64,
    },
    /// Freezes the match of one of the matched gifts not refunded (as `risk-a`).
    FreezeMatch(usize),
    /// Unfreezes one of the frozen matches (as `risk-a`, who froze it).
    UnfreezeMatch(usize),
    /// Releases one of the frozen matches after review (as `risk-b`).
    ReleaseMatch(usize),
    Advance(u64),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..4usize, 1..50_000u64, 0..20u64, 0..5usize, any::<bool>()).prop_map(
            |(project, amount, fee_permille, channel, pledge)| Op::Donate {
                project,
                amount,
                fee_permille,
                channel,
                pledge
            }
        ),
        2 => (any::<usize>(), 0..5u64).prop_map(|(n, quarters)| Op::Refund(n, quarters)),
        2 => (any::<usize>(), 1..6u64).prop_map(|(n, quarters)| Op::ReturnFee(n, quarters)),
        1 => (0..4usize, 1..100_000u64).prop_map(|(project, amount)| Op::Pledge { project, amount }),
        1 => any::<usize>().prop_map(Op::CancelPledge),
        2 => (0..4usize, 1..30_000u64).prop_map(|(project, amount)| Op::RequestPayout { project, amount }),
        2 => any::<usize>().prop_map(Op::ApprovePayout),
        1 => any::<usize>().prop_map(Op::RejectPayout),
        2 => any::<usize>().prop_map(Op::Disburse),
        1 => (0..4usize, 0..4usize, 1..30_000u64).prop_map(|(from, to, amount)| Op::RequestMove { from, to, amount }),
        1 => any::<usize>().prop_map(Op::ApproveMove),
        1 => any::<usize>().prop_map(Op::RejectMove),
        1 => (0..5usize, 1..50_000u64).prop_map(|(channel, amount)| Op::Settle { channel, amount }),
        1 => (1..20_000u64).prop_map(|amount| Op::MatchingPaid { amount }),
        2 => any::<usize>().prop_map(Op::FreezeMatch),
        1 => any::<usize>().prop_map(Op::UnfreezeMatch),
        2 => any::<usize>().prop_map(Op::ReleaseMatch),
        1 => (1..3_600_000u64).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

const PROJECTS: [(&str, &str); 4] = [
    ("cp-a", "CNY"),
    ("cp-b", "CNY"),
    ("wish-c", "CNY"),
    ("fund-usd", "USD"),
];
const T0: u64 = 1_539_046_800_000;

struct Harness {
    dir: tempfile::TempDir,
    log: Arc<SledLog>,
    writer: Option<WriterHandle>,
    task: Option<tokio::task::JoinHandle<()>>,
    clock: Arc<AtomicU64>,
    books: Books,
    statements: u64,
    txn: u64,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SledLog::open(dir.path()).unwrap());
        let clock = Arc::new(AtomicU64::new(T0));
        let mut h = Harness {
            dir,
            log,
            writer: None,
            task: None,
            clock,
            books: Books::default(),
            statements: 0,
            txn: 0,
        };
        h.start(LedgerState::default());
        h
    }

    /// A new harness with the projects and the matching pool of [`setup`].
    async fn set_up() -> Harness {
        let mut h = Harness::new().await;
        setup(&mut h).await;
        h
    }

    fn start(&mut self, state: LedgerState) {
        let c = self.clock.clone();
        let (writer, task) = spawn_writer(
            self.log.clone(),
            state,
            WriterConfig {
                ledger: id("prop"),
                clock: Arc::new(move || c.load(Ordering::Relaxed)),
            },
        );
        self.writer = Some(writer);
        self.task = Some(task);
    }

    async fn submit(&self, actor: &str, commands: Vec<Command>) -> Option<Vec<u64>> {
        let s = Submission {
            actor: id(actor),
            token_issuer: None,
            idempotency_key: None,
            commands,
        };
        match self.writer.as_ref().unwrap().submit(s).await {
            Ok(o) => Some(o.events.iter().map(|e| e.seq()).collect()),
            Err(ledger::writer::WriteError::Rejected { .. }) => None,
            Err(e) => panic!("the writer failed: {e}"),
        }
    }

    /// Folds the events appended since the last check and checks the books.
    async fn check(&mut self) {
        let head = self.log.head().await.unwrap();
        if head.len > self.books.ledger.position {
            let events = read_range(self.log.as_ref(), self.books.ledger.position, head.len - 1)
                .await
                .unwrap();
            for e in &events {
                let entry = self.books.apply(e).unwrap();
                assert!(entry.is_balanced(), "entry {} does not balance", e.seq());
            }
        }
        check_books(&self.books);
    }

    async fn restart(&mut self) {
        drop(self.writer.take());
        self.task.take().unwrap().await.unwrap();
        // Every handle to the database must go before it is opened again.
        let log = std::mem::replace(
            &mut self.log,
            Arc::new(SledLog::open(tempfile::tempdir().unwrap().path()).unwrap()),
        );
        drop(log);
        self.log = Arc::new(SledLog::open(self.dir.path()).unwrap());
        let mut state = LedgerState::default();
        catch_up(self.log.as_ref(), &mut state).await.unwrap();
        // Refold the books from event 0: the same trial balance as the incremental fold.
        let head = self.log.head().await.unwrap();
        let mut refolded = Books::default();
        if head.len > 0 {
            for e in read_range(self.log.as_ref(), 0, head.len - 1)
                .await
                .unwrap()
            {
                refolded.apply(&e).unwrap();
            }
        }
        assert_eq!(refolded.trial, self.books.trial);
        self.start(state);
    }
}

fn check_books(books: &Books) {
    assert!(
        books.trial.is_balanced(),
        "trial balance: {:?}",
        books.trial.totals()
    );
    for p in books.ledger.projects.values() {
        let fs = books.fund_statement(&p.id).unwrap();
        let b = &p.balances;
        let i = |v: u64| i128::from(v);
        assert_eq!(fs.donations_gross_minor, i(b.raised_gross), "{}", p.id);
        assert_eq!(fs.fees_minor, i(b.fees), "{}", p.id);
        assert_eq!(fs.fees_returned_minor, i(b.fees_returned), "{}", p.id);
        assert_eq!(
            fs.donations_gross_minor - fs.fees_minor,
            i(b.raised),
            "{}",
            p.id
        );
        assert_eq!(fs.refunded_minor, i(b.refunded), "{}", p.id);
        assert_eq!(fs.matched_minor, i(b.matched), "{}", p.id);
        assert_eq!(fs.paid_out_minor, i(b.paid_out), "{}", p.id);
        assert_eq!(fs.payable_minor, i(b.committed), "{}", p.id);
        assert_eq!(fs.moved_in_minor, i(b.moved_in), "{}", p.id);
        assert_eq!(fs.moved_out_minor, i(b.moved_out), "{}", p.id);
        assert_eq!(
            Some(fs.balance_minor()),
            b.balance().map(i128::from),
            "{}",
            p.id
        );
        let outstanding: u64 = books
            .ledger
            .pledges
            .values()
            .filter(|pl| pl.project == p.id)
            .map(|pl| pl.outstanding())
            .sum();
        assert_eq!(fs.pledges_outstanding_minor, i(outstanding), "{}", p.id);
    }
}

/// Submits, as `actor`, the command for one of `seqs` (the `n`th, wrapping around), when
/// there is one.
async fn for_one_of(
    h: &Harness,
    seqs: Vec<u64>,
    n: usize,
    actor: &str,
    command: impl FnOnce(u64) -> Command,
) {
    if !seqs.is_empty() {
        h.submit(actor, vec![command(seqs[n % seqs.len()])]).await;
    }
}

/// Runs `test` on a new single-threaded runtime.
fn block_on(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

async fn setup(h: &mut Harness) {
    let mut commands = Vec::new();
    for (project, currency) in PROJECTS {
        let kind = if project.starts_with("wish") {
            ProjectKind::MicroWish
        } else {
            ProjectKind::CommunityProject
        };
        commands.push(Command::OpenProject {
            project: id(project),
            kind,
            name: text(project),
            currency: Currency::new(currency).unwrap(),
            goal_minor: Some(amount(200_000)),
        });
    }
    commands.push(Command::CommitMatchingPool(MatchingPoolCommitted {
        pool: id("pool-1"),
        sponsor: text("嵩岳科技"),
        projects: vec![id("cp-a"), id("cp-b")],
        currency: Currency::CNY,
        ratio_numerator: 1,
        ratio_denominator: 2,
        cap_per_donation_minor: amount(5_000),
        cap_per_donor_per_day_minor: amount(8_000),
        total_cap_minor: amount(40_000),
        valid_from_ms: T0,
        valid_until_ms: T0 + 30 * 86_400_000,
        day_utc_offset_minutes: 480,
    }));
    h.submit("admin", commands).await.expect("setup");
}

async fn run(h: &mut Harness, op: Op) {
    let st = h.books.ledger.clone();
    match op {
        Op::Donate {
            project,
            amount: a,
            fee_permille,
            channel,
            pledge,
        } => {
            let (p, currency) = PROJECTS[project];
            let pledge_seq = if pledge {
                st.pledges
                    .values()
                    .find(|pl| pl.project.as_str() == p && pl.outstanding() >= a)
                    .map(|pl| pl.seq)
            } else {
                None
            };
            h.txn += 1;
            let c = Channel::ALL[channel];
            h.submit(
                "recorder",
                vec![Command::RecordDonation(DonationInput {
                    project: id(p),
                    amount_minor: amount(a),
                    currency: Currency::new(currency).unwrap(),
                    channel: c,
                    channel_txn_id: format!("t{}", h.txn),
                    fee_minor: a * fee_permille / 1000,
                    pledge_seq,
                    anonymous: true,
                    public_name: None,
                    donor_ref: id(&format!("donor-{}", h.txn % 3)),
                })],
            )
            .await;
        }
        Op::Refund(n, quarters) => {
            let live: Vec<u64> = st
                .donations
                .values()
                .filter(|d| d.refunded_seq.is_none())
                .map(|d| d.seq)
                .collect();
            for_one_of(h, live, n, "admin", |seq| Command::RefundDonation {
                donation_seq: seq,
                reason: text("duplicate"),
                fee_returned_minor: Some(st.donations[&seq].fee_minor * quarters / 4)
                    .filter(|fee| *fee > 0),
            })
            .await;
        }
        Op::ReturnFee(n, quarters) => {
            let refunds: Vec<u64> = st
                .refunds
                .iter()
                .filter(|(_, gift)| {
                    let d = &st.donations[*gift];
                    d.fee_returned_minor < d.fee_minor
                })
                .map(|(refund_seq, _)| *refund_seq)
                .collect();
            for_one_of(h, refunds, n, "recorder", |refund_seq| {
                let d = &st.donations[&st.refunds[&refund_seq]];
                Command::RecordRefundFeeReturned {
                    refund_seq,
                    // At least 1: a fee of 0 is malformed, not a fee given back.
                    fee_returned_minor: ((d.fee_minor - d.fee_returned_minor) * quarters / 4)
                        .max(1),
                    reason: text("退款账单退回手续费"),
                }
            })
            .await;
        }
        Op::Pledge { project, amount: a } => {
            let (p, currency) = PROJECTS[project];
            h.submit(
                "admin",
                vec![Command::MakePledge {
                    project: id(p),
                    sponsor: text("二七商贸集团"),
                    amount_minor: amount(a),
                    currency: Currency::new(currency).unwrap(),
                }],
            )
            .await;
        }
        Op::CancelPledge(n) => {
            let open: Vec<u64> = st
                .pledges
                .values()
                .filter(|p| !p.cancelled)
                .map(|p| p.seq)
                .collect();
            for_one_of(h, open, n, "admin", |seq| Command::CancelPledge {
                pledge_seq: seq,
                reason: text("withdrawn"),
            })
            .await;
        }
        Op::RequestPayout { project, amount: a } => {
            let (p, currency) = PROJECTS[project];
            h.submit(
                "finance-li",
                vec![Command::RequestPayout(PayoutRequested {
                    project: id(p),
                    amount_minor: amount(a),
                    currency: Currency::new(currency).unwrap(),
                    payee: text("服务中心"),
                    purpose: text("物资采购"),
                    document_sha256: events::sha256(b"invoice"),
                })],
            )
            .await;
        }
        Op::ApprovePayout(n) | Op::RejectPayout(n) => {
            let pending = requests(st.payouts.values(), RequestStatus::Requested);
            for_one_of(h, pending, n, "director-wang", |seq| {
                if matches!(op, Op::ApprovePayout(_)) {
                    Command::ApprovePayout { payout_seq: seq }
                } else {
                    Command::RejectPayout {
                        payout_seq: seq,
                        reason: text("no invoice"),
                    }
                }
            })
            .await;
        }
        Op::Disburse(n) => {
            let approved = requests(st.payouts.values(), RequestStatus::Approved);
            for_one_of(h, approved, n, "finance-li", |seq| {
                Command::DisbursePayout {
                    payout_seq: seq,
                    bank_reference: format!("ICBC-{seq}"),
                }
            })
            .await;
        }
        Op::RequestMove {
            from,
            to,
            amount: a,
        } => {
            let (f, currency) = PROJECTS[from];
            h.submit(
                "finance-li",
                vec![Command::RequestMove(MoveRequested {
                    from_project: id(f),
                    to_project: id(PROJECTS[to].0),
                    amount_minor: amount(a),
                    currency: Currency::new(currency).unwrap(),
                    reason: text("结余转入"),
                })],
            )
            .await;
        }
        Op::ApproveMove(n) | Op::RejectMove(n) => {
            let pending = requests(st.moves.values(), RequestStatus::Requested);
            for_one_of(h, pending, n, "director-wang", |seq| {
                if matches!(op, Op::ApproveMove(_)) {
                    Command::ApproveMove { move_seq: seq }
                } else {
                    Command::RejectMove {
                        move_seq: seq,
                        reason: text("no"),
                    }
                }
            })
            .await;
        }
        Op::Settle { channel, amount: a } => {
            let resolution = Resolution::Settlement {
                channel: Channel::ALL[channel],
                amount_minor: amount(a),
            };
            bank_line(h, a, resolution).await;
        }
        Op::MatchingPaid { amount: a } => {
            let resolution = Resolution::MatchingReceived {
                pool: id("pool-1"),
                amount_minor: amount(a),
            };
            bank_line(h, a, resolution).await;
        }
        Op::Advance(ms) => {
            h.clock.fetch_add(ms, Ordering::Relaxed);
        }
        Op::FreezeMatch(n) => {
            let matched: Vec<u64> = st
                .donations
                .values()
                .filter(|d| st.match_held(d).is_some() && st.match_frozen(d.seq).is_none())
                .map(|d| d.seq)
                .collect();
            for_one_of(h, matched, n, "risk-a", |donation_seq| {
                Command::FreezeMatch {
                    donation_seq,
                    reason: text("审核"),
                }
            })
            .await;
        }
        Op::UnfreezeMatch(n) | Op::ReleaseMatch(n) => {
            let frozen: Vec<u64> = st
                .match_holds
                .values()
                .filter(|hold| hold.is_frozen())
                .map(|hold| hold.donation_seq)
                .collect();
            let release = matches!(op, Op::ReleaseMatch(_));
            let actor = if release { "risk-b" } else { "risk-a" };
            for_one_of(h, frozen, n, actor, |donation_seq| {
                let reason = text("审核结束");
                if release {
                    Command::ReleaseMatch {
                        donation_seq,
                        reason,
                    }
                } else {
                    Command::UnfreezeMatch {
                        donation_seq,
                        reason,
                    }
                }
            })
            .await;
        }
        Op::Restart => h.restart().await,
    }
}

fn requests<'a>(
    map: impl Iterator<Item = &'a projections::Request>,
    status: RequestStatus,
) -> Vec<u64> {
    map.filter(|r| r.status == status).map(|r| r.seq).collect()
}

/// Imports a one-line bank statement and resolves its line with `resolution`.
async fn bank_line(h: &mut Harness, a: u64, resolution: Resolution) {
    h.statements += 1;
    let now = h.clock.load(Ordering::Relaxed);
    let Some(seqs) = h
        .submit(
            "recorder",
            vec![Command::ImportStatement(StatementImported {
                statement_sha256: events::sha256(format!("stmt-{}", h.statements).as_bytes()),
                source: StatementSource::BankCsv,
                account: "6222020200000000".into(),
                currency: Currency::CNY,
                period_start_ms: now - 86_400_000,
                period_end_ms: now,
                line_count: 1,
            })],
        )
        .await
    else {
        return;
    };
    let statement_seq = seqs[0];
    h.submit(
        "recorder",
        vec![Command::RecordStatementLine(StatementLineRecorded {
            statement_seq,
            line_no: 1,
            kind: StatementLineKind::Credit,
            reference: format!("B{statement_seq}"),
            original_reference: None,
            booked_ms: now - 1,
            amount_minor: amount(a),
            fee_minor: 0,
            fee_milli_minor: None,
            currency: Currency::CNY,
        })],
    )
    .await
    .expect("the line follows its statement");
    h.submit(
        "finance-li",
        vec![Command::ResolveException(ExceptionResolved {
            statement_seq,
            line_no: Some(1),
            entry_seq: None,
            resolution,
            note: text("settled"),
        })],
    )
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn journal_balances_and_fund_statements_equal_balances(ops in proptest::collection::vec(op(), 1..60)) {
        block_on(async {
            let mut h = Harness::set_up().await;
            h.check().await;
            for op in ops {
                run(&mut h, op).await;
                h.check().await;
            }
            h.restart().await;
            h.check().await;
        });
    }
}

/// A hand-checked example: a gift with a fee, its match, a refund, a payout and a move.
#[test]
fn worked_example_postings() {
    block_on(async {
        let mut h = Harness::set_up().await;
        run(
            &mut h,
            Op::Donate {
                project: 0,
                amount: 10_000,
                fee_permille: 6,
                channel: 0,
                pledge: false,
            },
        )
        .await;
        h.check().await;
        let cny = Currency::CNY;
        let tb = &h.books.trial;
        use projections::Account as A;
        let bal = |a: A| tb.turnover(cny, &a).balance();
        assert_eq!(
            bal(A::Clearing {
                channel: Channel::Wechat
            }),
            9_940
        );
        assert_eq!(
            bal(A::ChannelFees {
                channel: Channel::Wechat,
                project: id("cp-a")
            }),
            60
        );
        assert_eq!(
            bal(A::DonationIncome {
                project: id("cp-a")
            }),
            -10_000
        );
        // 1:2 match capped at 5,000 per donation.
        assert_eq!(bal(A::MatchingReceivable { pool: id("pool-1") }), 5_000);
        let fs = h.books.fund_statement(&id("cp-a")).unwrap();
        assert_eq!(fs.balance_minor(), 9_940 + 5_000);

        // A second gift by bank transfer (no fee, 500 matched) leaves room for the refund.
        run(
            &mut h,
            Op::Donate {
                project: 0,
                amount: 1_000,
                fee_permille: 0,
                channel: 2,
                pledge: false,
            },
        )
        .await;
        // Refund: the full 10,000 leaves the clearing account; the fee stays spent.
        let first = *h.books.ledger.donations.keys().next().unwrap();
        run(&mut h, Op::Refund(0, 0)).await;
        h.check().await;
        assert!(h.books.ledger.donations[&first].refunded_seq.is_some());
        h.check().await;
        let tb = &h.books.trial;
        let bal = |a: A| tb.turnover(cny, &a).balance();
        assert_eq!(
            bal(A::Clearing {
                channel: Channel::Wechat
            }),
            -60
        );
        assert_eq!(bal(A::Bank), 1_000);
        assert_eq!(bal(A::MatchingReceivable { pool: id("pool-1") }), 500);
        let fs = h.books.fund_statement(&id("cp-a")).unwrap();
        assert_eq!(
            fs.balance_minor(),
            9_940 + 5_000 + 1_000 + 500 - 10_000 - 5_000
        );
        assert_eq!(
            Some(fs.balance_minor()),
            h.books.ledger.projects[&id("cp-a")]
                .balances
                .balance()
                .map(i128::from)
        );

        // A WeChat gift of 2,000 with a fee of 12, refunded with the whole fee given back:
        // the clearing account owes the 12 again (Dr 1101) and the fee expense is reversed
        // (Cr 5101), so the project has its 12 back.
        h.txn += 1;
        let gift = h
            .submit(
                "recorder",
                vec![Command::RecordDonation(DonationInput {
                    project: id("cp-a"),
                    amount_minor: amount(2_000),
                    currency: cny,
                    channel: Channel::Wechat,
                    channel_txn_id: "wx-fee-back".into(),
                    fee_minor: 12,
                    pledge_seq: None,
                    anonymous: true,
                    public_name: None,
                    donor_ref: id("donor-9"),
                })],
            )
            .await
            .unwrap()[0];
        h.check().await;
        let clearing = A::Clearing {
            channel: Channel::Wechat,
        };
        let fees = A::ChannelFees {
            channel: Channel::Wechat,
            project: id("cp-a"),
        };
        let before = h.books.trial.clone();
        let balance_before = h.books.ledger.projects[&id("cp-a")]
            .balances
            .balance()
            .unwrap();
        h.submit(
            "admin",
            vec![Command::RefundDonation {
                donation_seq: gift,
                reason: text("捐赠人申请退款"),
                fee_returned_minor: Some(12),
            }],
        )
        .await
        .unwrap();
        h.check().await;
        let moved = |a: &A| {
            let (now, was) = (h.books.trial.turnover(cny, a), before.turnover(cny, a));
            (
                now.debit_minor - was.debit_minor,
                now.credit_minor - was.credit_minor,
            )
        };
        assert_eq!(moved(&clearing), (12, 2_000));
        assert_eq!(moved(&fees), (0, 12));
        let fs = h.books.fund_statement(&id("cp-a")).unwrap();
        assert_eq!((fs.fees_minor, fs.fees_returned_minor), (60 + 12, 12));
        let b = &h.books.ledger.projects[&id("cp-a")].balances;
        let matched = h.books.ledger.donations[&gift]
            .matched
            .as_ref()
            .map_or(0, |(_, m)| *m);
        assert_eq!(b.balance().unwrap(), balance_before - 2_000 - matched + 12);
    });
}

/// A fee the channel gave back after the refund was recorded is booked as one given back
/// with the refund: Dr 1101 (the channel owes it again), Cr 5101 (the project's fee
/// expense falls), dated when the correction was recorded; the fund statement's fees
/// returned and the project's balance rise by it.
#[test]
fn a_fee_returned_after_the_refund_posts_as_one_returned_with_it() {
    use projections::journal::{Posting, Side};
    use projections::Account as A;
    block_on(async {
        let mut h = Harness::set_up().await;
        let usd = Currency::new("USD").unwrap();
        let p = || id("fund-usd");
        let gift = |txn: &str, amount_minor: u64, channel: Channel, fee_minor: u64| {
            Command::RecordDonation(DonationInput {
                project: p(),
                amount_minor: amount(amount_minor),
                currency: usd,
                channel,
                channel_txn_id: txn.into(),
                fee_minor,
                pledge_seq: None,
                anonymous: true,
                public_name: None,
                donor_ref: id("donor-1"),
            })
        };
        let refund = |donation_seq: u64, fee_returned_minor: Option<u64>| {
            vec![Command::RefundDonation {
                donation_seq,
                reason: text("捐赠人申请退款"),
                fee_returned_minor,
            }]
        };
        h.submit("recorder", vec![gift("usd-bank", 5_000, Channel::Bank, 0)])
            .await
            .unwrap();
        let kept = h
            .submit(
                "recorder",
                vec![gift("usd-wx-1", 2_000, Channel::Wechat, 12)],
            )
            .await
            .unwrap()[0];
        let given = h
            .submit(
                "recorder",
                vec![gift("usd-wx-2", 2_000, Channel::Wechat, 12)],
            )
            .await
            .unwrap()[0];
        // One refund gives back 5 of its fee with it; the other keeps all of it, and the 5
        // is recorded a day later.
        h.submit("recorder", refund(given, Some(5))).await.unwrap();
        let kept_refund = h.submit("recorder", refund(kept, None)).await.unwrap()[0];
        h.check().await;
        let balance_before = h.books.ledger.projects[&p()].balances.balance().unwrap();
        let corrected_at = T0 + 86_400_000;
        h.clock.store(corrected_at, Ordering::Relaxed);
        let correction = h
            .submit(
                "recorder",
                vec![Command::RecordRefundFeeReturned {
                    refund_seq: kept_refund,
                    fee_returned_minor: 5,
                    reason: text("微信退款账单退回手续费"),
                }],
            )
            .await
            .unwrap()[0];
        h.check().await;

        let head = h.log.head().await.unwrap();
        let mut books = Books::default();
        let mut entries = std::collections::BTreeMap::new();
        for e in read_range(h.log.as_ref(), 0, head.len - 1).await.unwrap() {
            entries.insert(e.seq(), books.apply(&e).unwrap());
        }
        let post = |account: A, side: Side, amount_minor: u64| Posting {
            account,
            side,
            amount_minor,
            currency: usd,
        };
        let fee_back = vec![
            post(
                A::Clearing {
                    channel: Channel::Wechat,
                },
                Side::Debit,
                5,
            ),
            post(
                A::ChannelFees {
                    channel: Channel::Wechat,
                    project: p(),
                },
                Side::Credit,
                5,
            ),
        ];
        let entry = &entries[&correction];
        assert_eq!(entry.event_type, "refund_fee_returned");
        assert_eq!(entry.postings, fee_back);
        assert_eq!(entry.ts_ms, corrected_at);
        // The same postings as the part of the refund that gave its 5 back with it.
        let refund_with_fee = entries
            .values()
            .find(|e| e.event_type == "donation_refunded" && e.seq < kept_refund)
            .unwrap();
        assert_eq!(refund_with_fee.postings[2..], fee_back[..]);
        let fs = books.fund_statement(&p()).unwrap();
        assert_eq!((fs.fees_minor, fs.fees_returned_minor), (24, 10));
        let b = &books.ledger.projects[&p()].balances;
        assert_eq!(b.fees_returned, 10);
        assert_eq!(b.balance().unwrap(), balance_before + 5);
        assert_eq!(Some(fs.balance_minor()), b.balance().map(i128::from));
        assert!(books.trial.is_balanced());
    });
}

/// The posting rules of docs/FINANCE.md, event by event, on a scripted history.
#[test]
fn posting_rules_per_event() {
    use projections::journal::{Posting, Side};
    use projections::Account as A;
    block_on(async {
        let mut h = Harness::set_up().await;
        let cny = Currency::CNY;
        let p = || id("cp-b");
        let pledge = h
            .submit(
                "admin",
                vec![Command::MakePledge {
                    project: p(),
                    sponsor: text("二七商贸集团"),
                    amount_minor: amount(50_000),
                    currency: cny,
                }],
            )
            .await
            .unwrap()[0];
        h.txn += 1;
        h.submit(
            "recorder",
            vec![Command::RecordDonation(DonationInput {
                project: p(),
                amount_minor: amount(20_000),
                currency: cny,
                channel: Channel::Bank,
                channel_txn_id: "pledge-pay-1".into(),
                fee_minor: 0,
                pledge_seq: Some(pledge),
                anonymous: false,
                public_name: Some(text("二七商贸集团")),
                donor_ref: id("org-1"),
            })],
        )
        .await
        .unwrap();
        h.submit(
            "admin",
            vec![Command::CancelPledge {
                pledge_seq: pledge,
                reason: text("项目调整"),
            }],
        )
        .await
        .unwrap();
        let payout = h
            .submit(
                "finance-li",
                vec![Command::RequestPayout(PayoutRequested {
                    project: p(),
                    amount_minor: amount(7_000),
                    currency: cny,
                    payee: text("服务中心"),
                    purpose: text("物资采购"),
                    document_sha256: events::sha256(b"invoice"),
                })],
            )
            .await
            .unwrap()[0];
        h.submit(
            "director-wang",
            vec![Command::ApprovePayout { payout_seq: payout }],
        )
        .await
        .unwrap();
        h.submit(
            "finance-li",
            vec![Command::DisbursePayout {
                payout_seq: payout,
                bank_reference: "ICBC-1".into(),
            }],
        )
        .await
        .unwrap();
        let mv = h
            .submit(
                "finance-li",
                vec![Command::RequestMove(MoveRequested {
                    from_project: p(),
                    to_project: id("cp-a"),
                    amount_minor: amount(1_000),
                    currency: cny,
                    reason: text("结余转入"),
                })],
            )
            .await
            .unwrap()[0];
        h.submit("director-wang", vec![Command::ApproveMove { move_seq: mv }])
            .await
            .unwrap();
        bank_line(
            &mut h,
            3_000,
            Resolution::Settlement {
                channel: Channel::Alipay,
                amount_minor: amount(3_000),
            },
        )
        .await;

        // Collect every entry by its seq.
        let head = h.log.head().await.unwrap();
        let mut books = Books::default();
        let mut entries = std::collections::BTreeMap::new();
        for e in read_range(h.log.as_ref(), 0, head.len - 1).await.unwrap() {
            entries.insert(e.seq(), books.apply(&e).unwrap());
        }
        let post = |account: A, side: Side, amount_minor: u64| Posting {
            account,
            side,
            amount_minor,
            currency: cny,
        };
        let by_type = |t: &str| -> Vec<Vec<Posting>> {
            entries
                .values()
                .filter(|e| e.event_type == t)
                .map(|e| e.postings.clone())
                .collect()
        };
        let memo_r = || A::PledgesReceivable { project: p() };
        let memo_o = || A::PledgesOutstanding { project: p() };
        assert_eq!(
            by_type("pledge_made"),
            vec![vec![
                post(memo_r(), Side::Debit, 50_000),
                post(memo_o(), Side::Credit, 50_000)
            ]]
        );
        assert_eq!(
            by_type("donation_received"),
            vec![vec![
                post(A::Bank, Side::Debit, 20_000),
                post(A::DonationIncome { project: p() }, Side::Credit, 20_000),
                post(memo_o(), Side::Debit, 20_000),
                post(memo_r(), Side::Credit, 20_000),
            ]]
        );
        assert_eq!(
            by_type("pledge_cancelled"),
            vec![vec![
                post(memo_o(), Side::Debit, 30_000),
                post(memo_r(), Side::Credit, 30_000)
            ]]
        );
        // The 20,000 gift earned a 1:2 match capped at 5,000.
        assert_eq!(
            by_type("match_allocated"),
            vec![vec![
                post(
                    A::MatchingReceivable { pool: id("pool-1") },
                    Side::Debit,
                    5_000
                ),
                post(
                    A::MatchingIncome {
                        pool: id("pool-1"),
                        project: p()
                    },
                    Side::Credit,
                    5_000
                ),
            ]]
        );
        assert_eq!(by_type("payout_requested"), vec![vec![]]);
        assert_eq!(
            by_type("payout_approved"),
            vec![vec![
                post(A::ProgrammeCost { project: p() }, Side::Debit, 7_000),
                post(A::PayoutsPayable { project: p() }, Side::Credit, 7_000),
            ]]
        );
        assert_eq!(
            by_type("payout_disbursed"),
            vec![vec![
                post(A::PayoutsPayable { project: p() }, Side::Debit, 7_000),
                post(A::Bank, Side::Credit, 7_000),
            ]]
        );
        assert_eq!(
            by_type("move_approved"),
            vec![vec![
                post(A::FundTransfers { project: p() }, Side::Debit, 1_000),
                post(
                    A::FundTransfers {
                        project: id("cp-a")
                    },
                    Side::Credit,
                    1_000
                ),
            ]]
        );
        assert_eq!(by_type("statement_line_recorded"), vec![vec![]]);
        assert_eq!(
            by_type("exception_resolved"),
            vec![vec![
                post(A::Bank, Side::Debit, 3_000),
                post(
                    A::Clearing {
                        channel: Channel::Alipay
                    },
                    Side::Credit,
                    3_000
                ),
            ]]
        );
        let fs = books.fund_statement(&p()).unwrap();
        assert_eq!(fs.pledges_outstanding_minor, 0);
        assert_eq!(fs.net_assets_minor(), 20_000 + 5_000 - 7_000 - 1_000);
        assert_eq!(fs.balance_minor(), fs.net_assets_minor());
        assert!(books.trial.is_balanced());
    });
}

/// A match frozen for review posts nothing (the match is still the project's income and
/// the sponsor's debt); released after review it is reversed as a refund's release of a
/// match is: Dr 4201 matching income, Cr 1201 matching receivable. The gift stays booked.
#[test]
fn a_match_released_after_review_is_reversed_as_a_refunds_release() {
    use projections::journal::{Account as A, Side};
    block_on(async {
        let mut h = Harness::set_up().await;
        run(
            &mut h,
            Op::Donate {
                project: 0,
                amount: 10_000,
                fee_permille: 0,
                channel: 2,
                pledge: false,
            },
        )
        .await;
        h.check().await;
        let gift = *h.books.ledger.donations.keys().next().unwrap();
        run(&mut h, Op::FreezeMatch(0)).await;
        h.check().await;
        assert!(h.books.ledger.match_frozen(gift).is_some());
        run(&mut h, Op::ReleaseMatch(0)).await;
        h.check().await;
        assert!(h.books.ledger.match_released_after_review(gift).is_some());
        let cny = Currency::CNY;
        let income = A::MatchingIncome {
            pool: id("pool-1"),
            project: id("cp-a"),
        };
        let receivable = A::MatchingReceivable { pool: id("pool-1") };
        assert_eq!(h.books.trial.turnover(cny, &receivable).balance(), 0);
        assert_eq!(h.books.trial.turnover(cny, &income).balance(), 0);
        assert_eq!(h.books.trial.turnover(cny, &A::Bank).balance(), 10_000);
        let fs = h.books.fund_statement(&id("cp-a")).unwrap();
        assert_eq!((fs.matched_minor, fs.balance_minor()), (0, 10_000));

        let head = h.log.head().await.unwrap();
        let mut books = Books::default();
        let mut entries = Vec::new();
        for e in read_range(h.log.as_ref(), 0, head.len - 1).await.unwrap() {
            entries.push(books.apply(&e).unwrap());
        }
        let of = |t: &str| entries.iter().find(|e| e.event_type == t).unwrap();
        let frozen = of("match_frozen");
        assert!(frozen.postings.is_empty(), "{frozen:?}");
        assert!(frozen.memo.contains("frozen for review"), "{}", frozen.memo);
        let revoked = of("match_revoked");
        let shape: Vec<_> = revoked
            .postings
            .iter()
            .map(|p| (p.account.clone(), p.side, p.amount_minor))
            .collect();
        assert_eq!(
            shape,
            vec![
                (income.clone(), Side::Debit, 5_000),
                (receivable.clone(), Side::Credit, 5_000),
            ]
        );
        assert!(revoked.memo.contains("after review"), "{}", revoked.memo);
    });
}
