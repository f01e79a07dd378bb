//! Every rejection rule of the write side, each with the typed error it gives, and the
//! matching rules. Pure: commands go through `writer::execute` against an in-memory state.

mod common;

use common::{amount, donation, id, text};
use events::*;
use ledger::command::{Command, CommandError};
use ledger::writer::{execute, ExecuteError, Stamp};
use projections::LedgerState;

const T0: u64 = 1_539_046_800_000;
const DAY: u64 = 86_400_000;

struct Ledger {
    state: LedgerState,
    ledger: Id,
    ts_ms: u64,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            state: LedgerState::default(),
            ledger: id("test"),
            ts_ms: T0,
        }
    }

    /// Runs a command as `actor`; on rejection asserts nothing changed.
    fn run(&mut self, actor: &str, command: Command) -> Result<Vec<SealedEvent>, CommandError> {
        self.run_with_token(actor, None, command)
    }

    /// Runs a command as `actor`, with a token `issuer` made through the API.
    fn run_with_token(
        &mut self,
        actor: &str,
        issuer: Option<&str>,
        command: Command,
    ) -> Result<Vec<SealedEvent>, CommandError> {
        let before = self.state.clone();
        let mut work = self.state.clone();
        let actor = id(actor);
        let issuer = issuer.map(id);
        let at = Stamp {
            ledger: &self.ledger,
            actor: &actor,
            token_issuer: issuer.as_ref(),
            ts_ms: self.ts_ms,
            idempotency: None,
        };
        match execute(&mut work, &at, &command) {
            Ok(events) => {
                self.state = work;
                Ok(events)
            }
            Err(ExecuteError::Rejected(e)) => {
                assert_eq!(self.state, before, "a rejected command changed nothing");
                Err(e)
            }
            Err(ExecuteError::Internal(e)) => panic!("internal error: {e}"),
        }
    }

    fn ok(&mut self, actor: &str, command: Command) -> Vec<SealedEvent> {
        self.run(actor, command).expect("command accepted")
    }

    fn err(&mut self, actor: &str, command: Command) -> CommandError {
        self.run(actor, command).expect_err("command refused")
    }

    fn open(&mut self, project: &str, kind: ProjectKind, goal: Option<u64>) {
        self.ok(
            "admin",
            Command::OpenProject {
                project: id(project),
                kind,
                name: text("星星课堂"),
                currency: Currency::CNY,
                goal_minor: goal.map(amount),
            },
        );
    }

    fn available(&self, project: &str) -> u64 {
        self.state.projects[&id(project)]
            .balances
            .available()
            .unwrap()
    }
}

fn give(l: &mut Ledger, project: &str, minor: u64, txn: &str, donor: &str) -> Vec<SealedEvent> {
    l.ok(
        "recorder",
        Command::RecordDonation(donation(project, minor, txn, donor)),
    )
}

fn payout(project: &str, minor: u64) -> Command {
    Command::RequestPayout(PayoutRequested {
        project: id(project),
        amount_minor: amount(minor),
        currency: Currency::CNY,
        payee: text("二七区社工服务中心"),
        purpose: text("服务费用"),
        document_sha256: sha256(b"invoice"),
    })
}

fn pool(name: &str, projects: &[&str], caps: (u64, u64, u64)) -> Command {
    Command::CommitMatchingPool(MatchingPoolCommitted {
        pool: id(name),
        sponsor: text("二七商贸集团"),
        projects: projects.iter().map(|p| id(p)).collect(),
        currency: Currency::CNY,
        ratio_numerator: 1,
        ratio_denominator: 1,
        cap_per_donation_minor: amount(caps.0),
        cap_per_donor_per_day_minor: amount(caps.1),
        total_cap_minor: amount(caps.2),
        valid_from_ms: T0,
        valid_until_ms: T0 + 30 * DAY,
        day_utc_offset_minutes: 480,
    })
}

#[test]
fn unknown_project_is_refused_everywhere() {
    let mut l = Ledger::new();
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("nope", 100, "t1", "d1")),
    );
    assert!(
        matches!(e, CommandError::UnknownProject(ref p) if p.as_str() == "nope"),
        "{e}"
    );
    assert!(matches!(
        l.err("admin", payout("nope", 1)),
        CommandError::UnknownProject(_)
    ));
    assert!(matches!(
        l.err("admin", pool("p", &["nope"], (100, 100, 100))),
        CommandError::UnknownProject(_)
    ));
    assert_eq!(e.code(), "unknown_project");
}

#[test]
fn project_ids_are_unique_and_closed_projects_take_no_gifts() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let e = l.err(
        "admin",
        Command::OpenProject {
            project: id("cp"),
            kind: ProjectKind::GeneralFund,
            name: text("again"),
            currency: Currency::CNY,
            goal_minor: None,
        },
    );
    assert!(matches!(e, CommandError::ProjectExists(_)));
    assert!(e.is_conflict());
    l.ok(
        "admin",
        Command::CloseProject {
            project: id("cp"),
            reason: text("done"),
        },
    );
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "t1", "d1")),
    );
    assert!(matches!(e, CommandError::ProjectClosed(_)));
}

#[test]
fn currency_must_match_the_project() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let mut d = donation("cp", 100, "t1", "d1");
    d.currency = Currency::new("USD").unwrap();
    let e = l.err("recorder", Command::RecordDonation(d));
    assert!(matches!(e, CommandError::CurrencyMismatch { .. }));
    assert!(e.to_string().starts_with("currency:"), "{e}");
}

/// Money is kept in hundredths of a unit everywhere (amounts, pages, reports, statements), so
/// a project in a currency whose minor unit is not a hundredth is refused, naming the field.
#[test]
fn a_project_takes_only_a_currency_counted_in_hundredths() {
    let mut l = Ledger::new();
    let open_in = |code: &str| Command::OpenProject {
        project: id(&format!("p-{}", code.to_lowercase())),
        kind: ProjectKind::CommunityProject,
        name: text("x"),
        currency: Currency::new(code).unwrap(),
        goal_minor: None,
    };
    for (code, digits) in [("JPY", 0), ("KRW", 0), ("KWD", 3)] {
        let e = l.err("admin", open_in(code));
        assert_eq!(e.code(), "currency_not_supported");
        assert_eq!(
            e.to_string(),
            format!("currency: {code} has {digits} decimal places (ISO 4217); the ledger keeps money in hundredths of a unit (fen, cents), so it takes currencies with 2 decimal places only")
        );
    }
    for code in ["CNY", "USD", "HKD", "EUR"] {
        l.ok("admin", open_in(code));
    }
}

#[test]
fn fee_must_be_less_than_the_amount_and_anonymous_has_no_name() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let mut d = donation("cp", 100, "t1", "d1");
    d.fee_minor = 100;
    let e = l.err("recorder", Command::RecordDonation(d));
    assert!(e.to_string().contains("fee_minor"), "{e}");
    let mut d = donation("cp", 100, "t2", "d1");
    d.public_name = Some(text("小王"));
    let e = l.err("recorder", Command::RecordDonation(d));
    assert!(e.to_string().contains("public_name"), "{e}");
}

#[test]
fn a_channel_transaction_is_recorded_once() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    give(&mut l, "cp", 100, "wx-1", "d1");
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-1", "d2")),
    );
    assert!(matches!(e, CommandError::DuplicateChannelTxn { .. }), "{e}");
    // The same id on another channel is another transaction.
    let mut d = donation("cp", 100, "wx-1", "d2");
    d.channel = Channel::Alipay;
    l.ok("recorder", Command::RecordDonation(d));
}

/// The receipt index is one table shared by every copy of a state. Copies that went
/// separate ways (a batch refused after its append failed, a command tried on a copy) each
/// add their own gifts at the same seqs; each copy still finds only its own.
#[test]
fn copies_of_a_state_that_went_separate_ways_each_find_only_their_own_receipts() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    give(&mut l, "cp", 100, "wx-0", "d0");
    let mut other = Ledger {
        state: l.state.clone(),
        ledger: l.ledger.clone(),
        ts_ms: l.ts_ms,
    };
    let ours = l.ok(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-ours", "d1")),
    );
    let theirs = other.ok(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-theirs", "d2")),
    );
    assert_eq!(
        ours[0].seq(),
        theirs[0].seq(),
        "both gifts took the same seq"
    );
    let code = |events: &[SealedEvent]| match &events[0].record().body {
        EventBody::DonationReceived(d) => d.receipt_code.clone(),
        other => panic!("not a gift: {other:?}"),
    };
    let (our_code, their_code) = (code(&ours), code(&theirs));
    assert_eq!(
        l.state.donation_by_receipt(&our_code).map(|d| d.seq),
        Some(ours[0].seq())
    );
    assert!(l.state.donation_by_receipt(&their_code).is_none());
    assert_eq!(
        other.state.donation_by_receipt(&their_code).map(|d| d.seq),
        Some(theirs[0].seq())
    );
    assert!(other.state.donation_by_receipt(&our_code).is_none());
    // Each refuses its own transaction again and takes the other's.
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-ours", "d1")),
    );
    assert!(matches!(e, CommandError::DuplicateChannelTxn { .. }), "{e}");
    l.ok(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-theirs", "d2")),
    );
    // Now one receipt number has two candidates (the other copy's seq first): each copy
    // finds its own.
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-theirs", "d2")),
    );
    assert!(matches!(e, CommandError::DuplicateChannelTxn { .. }), "{e}");
    assert_eq!(
        l.state.donation_by_receipt(&their_code).map(|d| d.seq),
        Some(ours[0].seq() + 1)
    );
    let e = other.err(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-theirs", "d2")),
    );
    assert!(matches!(e, CommandError::DuplicateChannelTxn { .. }), "{e}");
    // The earliest gift, from before the copies parted, is found in both.
    let first = l.state.donations.values().next().unwrap().receipt_code;
    assert!(other.state.donation_by_receipt(first.as_str()).is_some());
}

/// A state read back from its serialized form (a snapshot) rebuilds the receipt index from
/// its donations: lookups and the duplicate rule work as before.
#[test]
fn a_state_read_back_from_a_snapshot_finds_its_receipts() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    for n in 0..50 {
        give(&mut l, "cp", 100, &format!("wx-{n}"), "d1");
    }
    let bytes = bincode::serialize(&l.state).unwrap();
    let back: LedgerState = bincode::deserialize(&bytes).unwrap();
    assert_eq!(back, l.state);
    assert_eq!(back.receipts.candidates(), 0, "filled only when first used");
    for d in l.state.donations.values() {
        let found = back.donation_by_receipt(d.receipt_code.as_str()).unwrap();
        assert_eq!(found.seq, d.seq);
    }
    assert_eq!(back.receipts.candidates(), 50);
    let mut l = Ledger {
        state: back,
        ledger: l.ledger,
        ts_ms: l.ts_ms,
    };
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("cp", 100, "wx-7", "d1")),
    );
    assert!(matches!(e, CommandError::DuplicateChannelTxn { .. }), "{e}");
    give(&mut l, "cp", 100, "wx-50", "d1");
}

#[test]
fn help_requests_and_micro_wishes_stop_at_their_goal() {
    let mut l = Ledger::new();
    l.open("wish", ProjectKind::MicroWish, Some(5_000));
    give(&mut l, "wish", 4_000, "t1", "d1");
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("wish", 1_001, "t2", "d2")),
    );
    assert!(
        matches!(
            e,
            CommandError::OverGoal {
                raised: 4_000,
                goal: 5_000,
                ..
            }
        ),
        "{e}"
    );
    give(&mut l, "wish", 1_000, "t3", "d2");
    // A help request must have a goal.
    let e = l.err(
        "admin",
        Command::OpenProject {
            project: id("help"),
            kind: ProjectKind::HelpRequest,
            name: text("求助"),
            currency: Currency::CNY,
            goal_minor: None,
        },
    );
    assert!(e.to_string().contains("goal_minor"), "{e}");
}

fn move_to(from: &str, to: &str, minor: u64) -> Command {
    Command::RequestMove(MoveRequested {
        from_project: id(from),
        to_project: id(to),
        amount_minor: amount(minor),
        currency: Currency::CNY,
        reason: text("结余转入"),
    })
}

/// A capped project's goal counts everything it takes in: gifts net of refunds, matches and
/// moves in. A match is clamped to what is left under the goal; a move that would pass it
/// is refused when requested, and again when approved if the project filled up meanwhile.
#[test]
fn a_goal_cap_counts_matches_and_moves_in() {
    let mut l = Ledger::new();
    l.open("help", ProjectKind::HelpRequest, Some(1_000));
    l.open("fund", ProjectKind::GeneralFund, None);
    l.ok(
        "sponsor",
        pool("pool", &["help"], (10_000, 10_000, 100_000)),
    );
    // 600 matched 1:1 would make 1,200: the match is clamped to 400.
    let events = give(&mut l, "help", 600, "t1", "d1");
    match events[1].body() {
        EventBody::MatchAllocated(m) => assert_eq!(m.amount_minor.minor(), 400),
        other => panic!("expected a match, got {other:?}"),
    }
    assert_eq!(l.state.projects[&id("help")].balances.received(), 1_000);
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("help", 1, "t2", "d2")),
    );
    assert!(
        matches!(
            e,
            CommandError::OverGoal {
                raised: 1_000,
                goal: 1_000,
                ..
            }
        ),
        "{e}"
    );
    // Moves in count too.
    give(&mut l, "fund", 5_000, "t3", "d3");
    let e = l.err("finance", move_to("fund", "help", 1));
    assert!(matches!(e, CommandError::OverGoal { .. }), "{e}");
    // A refund makes room (the match is released with it); a move requested into that room
    // is refused at approval once a gift has taken the room first.
    l.ok(
        "finance",
        Command::RefundDonation {
            donation_seq: events[0].seq(),
            reason: text("捐赠人申请退款"),
            fee_returned_minor: None,
        },
    );
    assert_eq!(l.state.projects[&id("help")].balances.received(), 0);
    let requested = l.ok("finance", move_to("fund", "help", 700))[0].seq();
    give(&mut l, "help", 300, "t4", "d4");
    give(&mut l, "help", 1, "t5", "d5");
    let e = l.err(
        "approver",
        Command::ApproveMove {
            move_seq: requested,
        },
    );
    assert!(
        matches!(
            e,
            CommandError::OverGoal {
                amount: 700,
                goal: 1_000,
                ..
            }
        ),
        "{e}"
    );
}

/// A pool's window ends no later than 2^53 − 1 ms (RFC 8785 writes no larger integer
/// exactly); a later one is refused naming the field, and nothing is sealed.
#[test]
fn a_pool_window_beyond_2_pow_53_ms_is_refused_naming_the_field() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    let Command::CommitMatchingPool(mut committed) = pool("p", &["a"], (100, 100, 1_000)) else {
        unreachable!()
    };
    committed.valid_until_ms = (1 << 53) + 1;
    let e = l.err("sponsor", Command::CommitMatchingPool(committed));
    assert!(
        e.to_string()
            .starts_with("valid_until_ms: 9007199254740993 is after"),
        "{e}"
    );
}

/// A donor reference is public: one that looks like a phone, ID or account number (more than
/// six digits in a row) is refused, naming the field.
#[test]
fn a_donor_ref_that_looks_like_a_phone_number_is_refused() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("a", 100, "t1", "13800138000")),
    );
    assert!(
        e.to_string()
            .starts_with("donor_ref: 11 digits in a row; at most 6"),
        "{e}"
    );
    give(&mut l, "a", 100, "t2", "donor-000042");
}

/// A move is approved only into a project that is still open.
#[test]
fn a_move_into_a_project_closed_since_its_request_is_refused() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    l.open("b", ProjectKind::CommunityProject, None);
    give(&mut l, "a", 1_000, "t1", "d1");
    let requested = l.ok("finance", move_to("a", "b", 600))[0].seq();
    l.ok(
        "admin",
        Command::CloseProject {
            project: id("b"),
            reason: text("项目结束"),
        },
    );
    let e = l.err(
        "approver",
        Command::ApproveMove {
            move_seq: requested,
        },
    );
    assert_eq!(e, CommandError::ProjectClosed(id("b")));
    // Rejecting it is still possible, and gives the money back to a.
    l.ok(
        "approver",
        Command::RejectMove {
            move_seq: requested,
            reason: text("受助项目已结束"),
        },
    );
    assert_eq!(l.available("a"), 1_000);
}

/// A project takes in at most 2^62 minor units (gifts, matches and moves in), so no sum of
/// its figures can overflow: the gift that would pass it is refused, naming the limit.
#[test]
fn a_project_takes_in_at_most_the_inflow_limit() {
    let mut l = Ledger::new();
    l.open("big", ProjectKind::CommunityProject, None);
    let max = AMOUNT_MINOR_MAX;
    let gifts = ledger::command::PROJECT_INFLOW_MAX / max;
    for i in 0..gifts {
        give(&mut l, "big", max, &format!("t{i}"), "d1");
    }
    let e = l.err(
        "recorder",
        Command::RecordDonation(donation("big", max, "last", "d1")),
    );
    assert_eq!(
        e,
        CommandError::InflowLimit {
            project: id("big"),
            amount: max,
            max: ledger::command::PROJECT_INFLOW_MAX,
        }
    );
    assert!(
        e.to_string().contains("limit of 4611686018427387904"),
        "{e}"
    );
    let b = &l.state.projects[&id("big")].balances;
    assert_eq!(b.balance(), Some(gifts * max));
}

#[test]
fn payouts_and_moves_cannot_exceed_the_available_balance() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    l.open("b", ProjectKind::GeneralFund, None);
    give(&mut l, "a", 1_000, "t1", "d1");
    let e = l.err("finance", payout("a", 1_001));
    assert!(
        matches!(
            e,
            CommandError::InsufficientFunds {
                requested: 1_001,
                available: 1_000,
                ..
            }
        ),
        "{e}"
    );
    // A pending request reserves its money.
    l.ok("finance", payout("a", 600));
    assert_eq!(l.available("a"), 400);
    let e = l.err(
        "finance",
        Command::RequestMove(MoveRequested {
            from_project: id("a"),
            to_project: id("b"),
            amount_minor: amount(401),
            currency: Currency::CNY,
            reason: text("结余转入"),
        }),
    );
    assert!(
        matches!(e, CommandError::InsufficientFunds { available: 400, .. }),
        "{e}"
    );
    // Restricted funds: nothing moved to b without an approved move.
    assert_eq!(l.available("b"), 0);
    assert!(matches!(
        l.err("finance", payout("b", 1)),
        CommandError::InsufficientFunds { .. }
    ));
}

#[test]
fn four_eyes_and_request_states() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    l.open("b", ProjectKind::GeneralFund, None);
    give(&mut l, "a", 1_000, "t1", "d1");
    let seq = l.ok("finance-li", payout("a", 500))[0].seq();
    let e = l.err("finance-li", Command::ApprovePayout { payout_seq: seq });
    assert!(matches!(e, CommandError::FourEyes { .. }), "{e}");
    assert_eq!(e.code(), "four_eyes");
    let e = l.err(
        "finance-li",
        Command::DisbursePayout {
            payout_seq: seq,
            bank_reference: "ICBC-1".into(),
        },
    );
    assert!(
        matches!(
            e,
            CommandError::RequestState {
                needed: "approved",
                ..
            }
        ),
        "{e}"
    );
    l.ok("director-wang", Command::ApprovePayout { payout_seq: seq });
    assert_eq!(l.state.projects[&id("a")].balances.committed, 500);
    let e = l.err("director-zhang", Command::ApprovePayout { payout_seq: seq });
    assert!(
        matches!(
            e,
            CommandError::RequestState {
                status: "approved",
                ..
            }
        ),
        "{e}"
    );
    l.ok(
        "finance-li",
        Command::DisbursePayout {
            payout_seq: seq,
            bank_reference: "ICBC-1".into(),
        },
    );
    let b = &l.state.projects[&id("a")].balances;
    assert_eq!(
        (b.paid_out, b.committed, b.available().unwrap()),
        (500, 0, 500)
    );
    let e = l.err("x", Command::ApprovePayout { payout_seq: 999 });
    assert!(matches!(e, CommandError::UnknownRequest { seq: 999, .. }));

    // Moves follow the same rule.
    let mv = l.ok(
        "finance-li",
        Command::RequestMove(MoveRequested {
            from_project: id("a"),
            to_project: id("b"),
            amount_minor: amount(200),
            currency: Currency::CNY,
            reason: text("结余转入"),
        }),
    )[0]
    .seq();
    let e = l.err("finance-li", Command::ApproveMove { move_seq: mv });
    assert!(matches!(e, CommandError::FourEyes { .. }));
    l.ok("director-wang", Command::ApproveMove { move_seq: mv });
    assert_eq!(l.available("a"), 300);
    assert_eq!(l.available("b"), 200);
    // A rejected request frees its reservation.
    let p = l.ok("finance-li", payout("a", 300))[0].seq();
    assert_eq!(l.available("a"), 0);
    l.ok(
        "director-wang",
        Command::RejectPayout {
            payout_seq: p,
            reason: text("单据不全"),
        },
    );
    assert_eq!(l.available("a"), 300);
}

/// The admin who issued an API token could act with it (they saw it when it was made), so
/// the four-eyes rule counts them as its holder too: nobody may be behind both a request and
/// its decision, whether as the actor or as the issuer of the actor's token.
#[test]
fn four_eyes_counts_a_tokens_issuer_as_its_holder() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    give(&mut l, "a", 10_000, "t1", "d1");
    let approve = |seq| Command::ApprovePayout { payout_seq: seq };
    let refused = |l: &mut Ledger, actor, issuer, seq| {
        let e = l
            .run_with_token(actor, issuer, approve(seq))
            .expect_err("four eyes");
        assert_eq!(e.code(), "four_eyes", "{e}");
        e.to_string()
    };

    // admin-zhao requests, then decides with a token made for someone else.
    let seq = l.ok("admin-zhao", payout("a", 100))[0].seq();
    assert_eq!(
        refused(&mut l, "ghost", Some("admin-zhao"), seq),
        format!(
            "four eyes: admin-zhao requested the payout at seq {seq} and cannot also decide it \
             with a token they issued"
        )
    );
    // A request made with a token admin-zhao issued cannot be decided by admin-zhao...
    let seq = l
        .run_with_token("finance-li", Some("admin-zhao"), payout("a", 100))
        .unwrap()[0]
        .seq();
    assert_eq!(
        l.state.payouts[&seq].requester_token_issuer,
        Some(id("admin-zhao"))
    );
    assert_eq!(
        refused(&mut l, "admin-zhao", None, seq),
        format!(
            "four eyes: admin-zhao issued the token that requested the payout at seq {seq} and \
             cannot also decide it"
        )
    );
    // ... nor with another token admin-zhao issued, whoever it names ...
    assert_eq!(
        refused(&mut l, "director-wang", Some("admin-zhao"), seq),
        format!(
            "four eyes: admin-zhao issued the token that requested the payout at seq {seq} and \
             cannot also decide it with a token they issued"
        )
    );
    // ... nor by the requester with a token someone else issued.
    refused(&mut l, "finance-li", Some("admin-qian"), seq);
    // Someone whose token another admin issued decides it; both events say who issued what.
    let decided = l
        .run_with_token("director-wang", Some("admin-qian"), approve(seq))
        .unwrap();
    assert_eq!(decided[0].record().token_issuer, Some(id("admin-qian")));
    let request = &l.state.payouts[&seq];
    assert_eq!(request.decided_by, Some(id("director-wang")));

    // The same for moves.
    l.open("b", ProjectKind::GeneralFund, None);
    let mv = l
        .run_with_token(
            "finance-li",
            Some("admin-zhao"),
            Command::RequestMove(MoveRequested {
                from_project: id("a"),
                to_project: id("b"),
                amount_minor: amount(200),
                currency: Currency::CNY,
                reason: text("结余转入"),
            }),
        )
        .unwrap()[0]
        .seq();
    let e = l
        .run_with_token(
            "ghost",
            Some("admin-zhao"),
            Command::ApproveMove { move_seq: mv },
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("issued the token that requested the move"),
        "{e}"
    );
    l.ok("director-wang", Command::ApproveMove { move_seq: mv });
}

/// The fold holds the rule as an invariant: a log in which a request is decided with a token
/// its requester issued does not fold (as one decided by its requester does not).
#[test]
fn the_fold_refuses_a_decision_by_the_issuer_of_the_requesters_token() {
    let mut l = Ledger::new();
    l.open("a", ProjectKind::CommunityProject, None);
    give(&mut l, "a", 1_000, "t1", "d1");
    let seq = l
        .run_with_token("finance-li", Some("admin-zhao"), payout("a", 100))
        .unwrap()[0]
        .seq();
    let decision = EventRecord {
        seq: l.state.position,
        prev: l.state.head,
        ledger: l.ledger.clone(),
        ts_ms: l.ts_ms,
        actor: id("admin-zhao"),
        idempotency: None,
        token_issuer: None,
        body: EventBody::PayoutApproved(Decision { request_seq: seq }),
    };
    let sealed = decision.seal().unwrap();
    let e = l.state.clone().apply(&sealed).unwrap_err();
    assert!(e.to_string().contains("same hand"), "{e}");
}

#[test]
fn refunds_name_a_donation_once_and_release_the_match() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    l.ok("admin", pool("pool", &["cp"], (10_000, 20_000, 100_000)));
    let events = give(&mut l, "cp", 500, "t1", "d1");
    assert_eq!(events.len(), 2, "the gift and its match are one batch");
    let donation_seq = events[0].seq();
    match events[1].body() {
        EventBody::MatchAllocated(m) => {
            assert_eq!(m.donation_seq, donation_seq);
            assert_eq!(m.amount_minor.minor(), 500);
        }
        other => panic!("expected a match, got {other:?}"),
    }
    let e = l.err(
        "recorder",
        Command::RefundDonation {
            donation_seq: 999,
            reason: text("x"),
            fee_returned_minor: None,
        },
    );
    assert!(matches!(e, CommandError::UnknownDonation(999)));
    let refund = l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq,
            reason: text("重复支付"),
            fee_returned_minor: None,
        },
    );
    assert_eq!(
        refund.len(),
        2,
        "the refund releases the match in the same batch"
    );
    assert!(matches!(refund[1].body(), EventBody::MatchReleased(_)));
    assert_eq!(l.state.pools[&id("pool")].used(), 0);
    assert_eq!(l.available("cp"), 0);
    let e = l.err(
        "recorder",
        Command::RefundDonation {
            donation_seq,
            reason: text("again"),
            fee_returned_minor: None,
        },
    );
    assert!(matches!(e, CommandError::AlreadyRefunded(_)));
    assert!(e.is_conflict());
}

#[test]
fn a_refund_cannot_take_money_already_paid_out() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let seq = give(&mut l, "cp", 1_000, "t1", "d1")[0].seq();
    l.ok("finance", payout("cp", 800));
    let e = l.err(
        "recorder",
        Command::RefundDonation {
            donation_seq: seq,
            reason: text("x"),
            fee_returned_minor: None,
        },
    );
    assert!(
        matches!(
            e,
            CommandError::InsufficientFunds {
                requested: 1_000,
                available: 200,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn the_channel_keeps_its_fee_on_refund() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    give(&mut l, "cp", 10_000, "t0", "d0");
    let mut d = donation("cp", 1_000, "t1", "d1");
    d.fee_minor = 6;
    let seq = l.ok("recorder", Command::RecordDonation(d))[0].seq();
    assert_eq!(l.available("cp"), 10_994);
    l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: seq,
            reason: text("x"),
            fee_returned_minor: None,
        },
    );
    assert_eq!(
        l.available("cp"),
        9_994,
        "the donor gets 1,000 back; the fee of 6 is lost"
    );
}

/// WeChat Pay and Alipay give back the refund's share of the fee: recorded on the refund,
/// it comes back to the project, so a refund needs only the amount (and match) less it.
#[test]
fn a_fee_given_back_on_a_refund_returns_to_the_project() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let mut d = donation("cp", 1_000, "t1", "d1");
    d.fee_minor = 6;
    let seq = l.ok("recorder", Command::RecordDonation(d))[0].seq();
    assert_eq!(l.available("cp"), 994);
    let refund = |fee_returned_minor| Command::RefundDonation {
        donation_seq: seq,
        reason: text("捐赠人申请退款"),
        fee_returned_minor,
    };
    // Keeping the fee, the channel would take back more than the project holds.
    let e = l.err("recorder", refund(None));
    assert!(
        matches!(
            e,
            CommandError::InsufficientFunds {
                requested: 1_000,
                available: 994,
                ..
            }
        ),
        "{e}"
    );
    let events = l.ok("recorder", refund(Some(6)));
    match events[0].body() {
        EventBody::DonationRefunded(r) => assert_eq!(r.fee_returned_minor, Some(6)),
        other => panic!("expected a refund, got {other:?}"),
    }
    let b = &l.state.projects[&id("cp")].balances;
    assert_eq!((b.fees, b.fees_returned, b.refunded), (6, 6, 1_000));
    assert_eq!(
        l.available("cp"),
        0,
        "the donor has it all back, the fee too"
    );
    // A part of the fee: the project keeps the rest as its cost.
    give(&mut l, "cp", 10_000, "t3", "d3");
    let mut d = donation("cp", 2_000, "t2", "d2");
    d.fee_minor = 12;
    let seq = l.ok("recorder", Command::RecordDonation(d))[0].seq();
    l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: seq,
            reason: text("x"),
            fee_returned_minor: Some(5),
        },
    );
    assert_eq!(l.available("cp"), 10_000 + 1_988 - 2_000 + 5);
}

/// A channel gives back at most the fee it charged: more than the gift's fee, or any fee
/// on a gift that paid none, is refused naming `fee_returned_minor` and the limit, and
/// nothing is written. Zero is spelt by leaving it out.
#[test]
fn a_returned_fee_is_at_most_the_gifts_fee() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    give(&mut l, "cp", 10_000, "t0", "d0");
    let mut d = donation("cp", 1_000, "t1", "d1");
    d.fee_minor = 6;
    let with_fee = l.ok("recorder", Command::RecordDonation(d))[0].seq();
    let without_fee = give(&mut l, "cp", 1_000, "t2", "d2")[0].seq();
    let refund = |donation_seq, fee_returned_minor| Command::RefundDonation {
        donation_seq,
        reason: text("x"),
        fee_returned_minor: Some(fee_returned_minor),
    };
    let e = l.err("recorder", refund(with_fee, 7));
    assert_eq!(e.code(), "fee_returned_over_fee");
    assert!(!e.is_conflict());
    assert_eq!(
        e.to_string(),
        format!("fee_returned_minor: 7 is more than the fee of 6 that donation {with_fee} paid; a channel gives back at most the gift's fee (1 to 6)")
    );
    let e = l.err("recorder", refund(without_fee, 1));
    assert_eq!(e.code(), "fee_returned_over_fee");
    assert_eq!(
        e.to_string(),
        format!("fee_returned_minor: 1 is more than the fee of 0 that donation {without_fee} paid; a channel gives back at most the gift's fee (the gift paid no fee: omit fee_returned_minor)")
    );
    let e = l.err("recorder", refund(with_fee, 0));
    assert_eq!(e.code(), "invalid");
    assert!(e.to_string().contains("fee_returned_minor"), "{e}");
    // The whole fee is allowed.
    l.ok("recorder", refund(with_fee, 6));
}

fn refund_fee_returned(refund_seq: u64, fee_returned_minor: u64) -> Command {
    Command::RecordRefundFeeReturned {
        refund_seq,
        fee_returned_minor,
        reason: text("微信退款账单退回手续费"),
    }
}

/// A gift of 1,000 with a fee of 6 to cp (which holds 10,000 more), refunded giving back
/// `fee_returned_minor`: answers the ledger, the gift's seq and the refund's.
fn refunded_gift_with_fee(fee_returned_minor: Option<u64>) -> (Ledger, u64, u64) {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    give(&mut l, "cp", 10_000, "t0", "d0");
    let mut d = donation("cp", 1_000, "t1", "d1");
    d.fee_minor = 6;
    let gift = l.ok("recorder", Command::RecordDonation(d))[0].seq();
    let refund = l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: gift,
            reason: text("捐赠人申请退款"),
            fee_returned_minor,
        },
    )[0]
    .seq();
    (l, gift, refund)
}

/// A refund recorded without the fee its channel gave back gets it later: the correction
/// names the refund, and the project and the gift have the fee back as if the refund had
/// carried it; a second correction adds the rest of the fee.
#[test]
fn a_fee_returned_after_the_refund_is_added_to_it() {
    let (mut l, gift, refund) = refunded_gift_with_fee(None);
    let available = l.available("cp");
    let events = l.ok("recorder", refund_fee_returned(refund, 2));
    assert_eq!(events.len(), 1);
    match events[0].body() {
        EventBody::RefundFeeReturned(c) => {
            assert_eq!((c.refund_seq, c.fee_returned_minor), (refund, 2));
        }
        other => panic!("expected a refund_fee_returned, got {other:?}"),
    }
    assert_eq!(l.state.donations[&gift].fee_returned_minor, 2);
    let b = &l.state.projects[&id("cp")].balances;
    assert_eq!((b.fees, b.fees_returned, b.refunded), (6, 2, 1_000));
    assert_eq!(l.available("cp"), available + 2);
    // The rest of the fee, in a second correction: all of the 6 is back.
    l.ok("recorder", refund_fee_returned(refund, 4));
    assert_eq!(l.state.donations[&gift].fee_returned_minor, 6);
    assert_eq!(l.state.projects[&id("cp")].balances.fees_returned, 6);
    assert_eq!(l.available("cp"), available + 6);
    // Each correction is dated; the refund itself gave back nothing.
    let late: Vec<u64> = l
        .state
        .fee_returns_after(refund)
        .map(|(_, late)| late.fee_returned_minor)
        .collect();
    assert_eq!(late, vec![2, 4]);
    assert_eq!(l.state.fee_returned_at_refund(&l.state.donations[&gift]), 0);
}

/// `refund_seq` names a `donation_refunded` event: the gift's own seq, a gift not
/// refunded, another event or a seq past the log are refused with `unknown_refund`,
/// naming the field and what is at that seq, and nothing is written.
#[test]
fn a_correction_names_a_refund() {
    let (mut l, gift, refund) = refunded_gift_with_fee(None);
    let unrefunded = give(&mut l, "cp", 500, "t2", "d2")[0].seq();
    let cases = [
        (
            gift,
            format!("refund_seq: no refund (donation_refunded) at seq {gift}: it is the gift, donation {gift}; its refund is at seq {refund}"),
        ),
        (
            unrefunded,
            format!("refund_seq: no refund (donation_refunded) at seq {unrefunded}: it is the gift, donation {unrefunded}, which is not refunded; refund it with its fee_returned_minor"),
        ),
        (
            0,
            "refund_seq: no refund (donation_refunded) at seq 0: the event there is not a refund; give the seq of the donation_refunded event".to_owned(),
        ),
        (
            1_000,
            format!("refund_seq: no refund (donation_refunded) at seq 1000: the ledger has {} events so far", l.state.position),
        ),
    ];
    for (seq, message) in cases {
        let e = l.err("recorder", refund_fee_returned(seq, 1));
        assert_eq!(e.code(), "unknown_refund", "{e}");
        assert!(!e.is_conflict());
        assert_eq!(e.to_string(), message);
    }
    // The refund itself is taken.
    l.ok("recorder", refund_fee_returned(refund, 1));
}

/// What a refund and its corrections give back together is at most the gift's fee: more
/// is `fee_returned_over_fee`, naming `fee_returned_minor`, what was given back before and
/// what is left; a fee of 0 is malformed (`invalid`, with the event's limit). Nothing is
/// written.
#[test]
fn a_correction_gives_back_at_most_what_is_left_of_the_fee() {
    let (mut l, gift, refund) = refunded_gift_with_fee(Some(4));
    let e = l.err("recorder", refund_fee_returned(refund, 3));
    assert_eq!(e.code(), "fee_returned_over_fee");
    assert!(!e.is_conflict());
    assert_eq!(
        e.to_string(),
        format!("fee_returned_minor: 3 and the 4 given back before are more than the fee of 6 that donation {gift} paid; a channel gives back at most the gift's fee (1 to the 2 left)")
    );
    let e = l.err("recorder", refund_fee_returned(refund, 0));
    assert_eq!(e.code(), "invalid");
    assert_eq!(
        e.to_string(),
        format!("fee_returned_minor: a fee given back is 1 to {AMOUNT_MINOR_MAX} minor units (got 0); a correction records a fee the channel did give back")
    );
    l.ok("recorder", refund_fee_returned(refund, 2));
    // All of it is back: nothing more is taken.
    let e = l.err("recorder", refund_fee_returned(refund, 1));
    assert_eq!(e.code(), "fee_returned_over_fee");
    assert_eq!(
        e.to_string(),
        format!("fee_returned_minor: 1 and the 6 given back before are more than the fee of 6 that donation {gift} paid; a channel gives back at most the gift's fee (all of its 6 was given back already)")
    );
    // A gift that paid no fee has none to give back.
    let free = give(&mut l, "cp", 700, "t3", "d3")[0].seq();
    let free_refund = l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: free,
            reason: text("x"),
            fee_returned_minor: None,
        },
    )[0]
    .seq();
    let e = l.err("recorder", refund_fee_returned(free_refund, 1));
    assert_eq!(e.code(), "fee_returned_over_fee");
    assert_eq!(
        e.to_string(),
        format!("fee_returned_minor: 1 is more than the fee of 0 that donation {free} paid; a channel gives back at most the gift's fee (the gift paid no fee: there is nothing to give back)")
    );
}

#[test]
fn matching_caps_and_window() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    l.open("other", ProjectKind::CommunityProject, None);
    // Per donation 300, per donor per day 500, total 1,000.
    l.ok("admin", pool("pool", &["cp"], (300, 500, 1_000)));
    let matched = |events: &[SealedEvent]| -> u64 {
        events
            .iter()
            .filter_map(|e| match e.body() {
                EventBody::MatchAllocated(m) => Some(m.amount_minor.minor()),
                _ => None,
            })
            .sum()
    };
    assert_eq!(
        matched(&give(&mut l, "cp", 1_000, "t1", "d1")),
        300,
        "per-donation cap"
    );
    assert_eq!(
        matched(&give(&mut l, "cp", 1_000, "t2", "d1")),
        200,
        "per-donor day cap"
    );
    assert_eq!(
        matched(&give(&mut l, "cp", 1_000, "t3", "d1")),
        0,
        "donor's day is used up"
    );
    assert_eq!(
        matched(&give(&mut l, "other", 100, "t4", "d2")),
        0,
        "project not covered"
    );
    l.ts_ms += DAY;
    assert_eq!(
        matched(&give(&mut l, "cp", 100, "t5", "d1")),
        100,
        "a new day"
    );
    assert_eq!(matched(&give(&mut l, "cp", 1_000, "t6", "d3")), 300);
    assert_eq!(
        matched(&give(&mut l, "cp", 1_000, "t7", "d4")),
        100,
        "total cap"
    );
    assert_eq!(l.state.pools[&id("pool")].remaining(), 0);
    assert_eq!(
        matched(&give(&mut l, "cp", 1_000, "t8", "d5")),
        0,
        "pool exhausted"
    );

    // Window: nothing before it opens or after it ends; a closed pool matches nothing.
    let mut l = Ledger::new();
    l.ts_ms = T0 - 1;
    l.open("cp", ProjectKind::CommunityProject, None);
    l.ok("admin", pool("pool", &["cp"], (300, 500, 1_000)));
    assert_eq!(
        matched(&give(&mut l, "cp", 100, "t1", "d1")),
        0,
        "before the window"
    );
    l.ts_ms = T0 + DAY;
    assert_eq!(
        matched(&give(&mut l, "cp", 100, "t2", "d1")),
        100,
        "inside the window"
    );
    l.ts_ms = T0 + 30 * DAY;
    assert_eq!(
        matched(&give(&mut l, "cp", 100, "t3", "d1")),
        0,
        "after the window"
    );
    let mut longer = match pool("pool2", &["cp"], (300, 500, 1_000)) {
        Command::CommitMatchingPool(p) => p,
        _ => unreachable!(),
    };
    longer.valid_until_ms = T0 + 60 * DAY;
    l.ok("admin", Command::CommitMatchingPool(longer));
    assert_eq!(
        matched(&give(&mut l, "cp", 100, "t4", "d1")),
        100,
        "the second pool"
    );
    l.ok(
        "admin",
        Command::CloseMatchingPool {
            pool: id("pool2"),
            reason: text("期满"),
        },
    );
    assert_eq!(
        matched(&give(&mut l, "cp", 100, "t5", "d1")),
        0,
        "closed pool"
    );
    let e = l.err(
        "admin",
        Command::CloseMatchingPool {
            pool: id("pool2"),
            reason: text("x"),
        },
    );
    assert!(matches!(e, CommandError::PoolClosed(_)));
}

#[test]
fn matching_ratio_rounds_down() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let mut c = match pool("pool", &["cp"], (10_000, 10_000, 100_000)) {
        Command::CommitMatchingPool(p) => p,
        _ => unreachable!(),
    };
    c.ratio_numerator = 1;
    c.ratio_denominator = 2;
    l.ok("admin", Command::CommitMatchingPool(c));
    let events = give(&mut l, "cp", 101, "t1", "d1");
    match events[1].body() {
        EventBody::MatchAllocated(m) => assert_eq!(m.amount_minor.minor(), 50),
        other => panic!("{other:?}"),
    }
    // 1 fen at 1:2 rounds to zero: no match event at all.
    assert_eq!(give(&mut l, "cp", 1, "t2", "d1").len(), 1);
}

#[test]
fn pool_rules() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    l.ok("admin", pool("pool", &["cp"], (100, 100, 1_000)));
    assert!(matches!(
        l.err("admin", pool("pool", &["cp"], (100, 100, 1_000))),
        CommandError::PoolExists(_)
    ));
    let e = l.err("admin", pool("p2", &["cp"], (2_000, 100, 1_000)));
    assert!(e.to_string().contains("cap_per_donation_minor"), "{e}");
    let e = l.err("admin", pool("p3", &["cp", "cp"], (100, 100, 1_000)));
    assert!(e.to_string().contains("projects"), "{e}");
}

#[test]
fn pledges_are_fulfilled_by_gifts_that_name_them() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    l.open("other", ProjectKind::CommunityProject, None);
    let seq = l.ok(
        "admin",
        Command::MakePledge {
            project: id("cp"),
            sponsor: text("中原绿城建设"),
            amount_minor: amount(5_000),
            currency: Currency::CNY,
        },
    )[0]
    .seq();
    let mut d = donation("cp", 3_000, "b1", "org-1");
    d.pledge_seq = Some(seq);
    l.ok("recorder", Command::RecordDonation(d));
    assert_eq!(l.state.pledges[&seq].outstanding(), 2_000);
    let mut d = donation("cp", 2_001, "b2", "org-1");
    d.pledge_seq = Some(seq);
    assert!(matches!(
        l.err("recorder", Command::RecordDonation(d)),
        CommandError::OverPledge {
            outstanding: 2_000,
            ..
        }
    ));
    let mut d = donation("other", 100, "b3", "org-1");
    d.pledge_seq = Some(seq);
    assert!(matches!(
        l.err("recorder", Command::RecordDonation(d)),
        CommandError::PledgeProjectMismatch { .. }
    ));
    let mut d = donation("cp", 100, "b4", "org-1");
    d.pledge_seq = Some(seq + 100);
    assert!(matches!(
        l.err("recorder", Command::RecordDonation(d)),
        CommandError::UnknownPledge(_)
    ));
    l.ok(
        "admin",
        Command::CancelPledge {
            pledge_seq: seq,
            reason: text("企业撤回"),
        },
    );
    assert_eq!(l.state.pledges[&seq].outstanding(), 0);
    let mut d = donation("cp", 100, "b5", "org-1");
    d.pledge_seq = Some(seq);
    assert!(matches!(
        l.err("recorder", Command::RecordDonation(d)),
        CommandError::PledgeCancelled(_)
    ));
}

#[test]
fn out_of_range_values_are_refused_when_parsed_naming_the_limit() {
    let base = serde_json::json!({
        "command": "record_donation", "project": "cp", "amount_minor": 100, "currency": "CNY",
        "channel": "wechat", "channel_txn_id": "t1", "donor_ref": "d1"
    });
    assert!(serde_json::from_value::<Command>(base.clone()).is_ok());
    for (field, value, needle) in [
        ("amount_minor", serde_json::json!(0), "9007199254740991"),
        (
            "amount_minor",
            serde_json::json!(9_007_199_254_740_992u64),
            "9007199254740991",
        ),
        ("amount_minor", serde_json::json!(1.5), "floating point"),
        ("currency", serde_json::json!("yuan"), "ISO 4217"),
        ("project", serde_json::json!("Not An Id"), "1 to 64"),
        ("channel", serde_json::json!("paypal"), "variant"),
    ] {
        let mut v = base.clone();
        v[field] = value;
        let e = serde_json::from_value::<Command>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{field}: {e}");
    }
    let mut v = base.clone();
    v["unexpected"] = serde_json::json!(1);
    assert!(
        serde_json::from_value::<Command>(v).is_err(),
        "unknown fields are refused"
    );
}

/// A bank statement of the day around T0 and the ledger it is reconciled against: bank
/// gifts B-1 (on the statement), B-2 (on it under the bank's own reference: paired by
/// amount and date, a proposal), B-3 (300.00, which two unknown 300.00 credits could be)
/// and B-4 (missing from the statement), a WeChat gift, a disbursed payout ICBC-1 and an
/// approved one.
struct Reconciled {
    l: Ledger,
    st: u64,
    lines: Vec<StatementLineRecorded>,
    g1: u64,
    g2: u64,
    g3: u64,
    g4: u64,
    wechat: u64,
    paid: u64,
    approved: u64,
}

fn bank_gift(l: &mut Ledger, minor: u64, txn: &str) -> u64 {
    let mut d = donation("cp", minor, txn, "donor-1");
    d.channel = Channel::Bank;
    l.ok("recorder", Command::RecordDonation(d))[0].seq()
}

fn reconciled() -> Reconciled {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let g1 = bank_gift(&mut l, 50_000, "B-1");
    let g2 = bank_gift(&mut l, 80_000, "B-2");
    let g3 = bank_gift(&mut l, 30_000, "B-3");
    let g4 = bank_gift(&mut l, 45_600, "B-4");
    let wechat = give(&mut l, "cp", 45_600, "wx-1", "donor-2")[0].seq();
    let mut payout_of = |minor: u64, disburse: bool| {
        let seq = l.ok("finance", payout("cp", minor))[0].seq();
        l.ok("director", Command::ApprovePayout { payout_seq: seq });
        if disburse {
            l.ok(
                "finance",
                Command::DisbursePayout {
                    payout_seq: seq,
                    bank_reference: "ICBC-1".into(),
                },
            );
        }
        seq
    };
    let paid = payout_of(20_000, true);
    let approved = payout_of(10_000, false);
    use StatementLineKind::{Credit, Debit};
    let lines = [
        (Credit, "B-1", 50_000),           // 1: B-1 by reference
        (Credit, "TENPAY-SETTLE", 99_400), // 2: a channel's settlement
        (Debit, "ICBC-9", 12_345),         // 3: money out the ledger does not know
        (Credit, "BANK-77", 80_000),       // 4: B-2 by amount and date
        (Credit, "B-1", 50_000),           // 5: B-1 again: a duplicate
        (Credit, "X-6", 30_000),           // 6: B-3 by amount and date
        (Credit, "X-7", 30_000),           // 7: unknown
        (Debit, "BANKREF-P", 20_000),      // 8: ICBC-1 by amount and date
    ];
    let st = l.ok(
        "recorder",
        Command::ImportStatement(StatementImported {
            statement_sha256: sha256(b"bank statement"),
            source: StatementSource::BankCsv,
            account: "6222020200000000".into(),
            currency: Currency::CNY,
            period_start_ms: T0 - DAY / 2,
            period_end_ms: T0 + DAY / 2,
            line_count: lines.len() as u64,
        }),
    )[0]
    .seq();
    let lines: Vec<StatementLineRecorded> = lines
        .into_iter()
        .zip(1..)
        .map(
            |((kind, reference, minor), line_no)| StatementLineRecorded {
                statement_seq: st,
                line_no,
                kind,
                reference: reference.into(),
                original_reference: None,
                booked_ms: T0,
                amount_minor: amount(minor),
                fee_minor: 0,
                fee_milli_minor: None,
                currency: Currency::CNY,
            },
        )
        .collect();
    for line in &lines {
        l.ok("recorder", Command::RecordStatementLine(line.clone()));
    }
    Reconciled {
        l,
        st,
        lines,
        g1,
        g2,
        g3,
        g4,
        wechat,
        paid,
        approved,
    }
}

impl Reconciled {
    fn resolve(
        &mut self,
        subject: (Option<u64>, Option<u64>),
        resolution: Resolution,
    ) -> Result<Vec<SealedEvent>, CommandError> {
        self.l.run(
            "finance",
            Command::ResolveException(ExceptionResolved {
                statement_seq: self.st,
                line_no: subject.0,
                entry_seq: subject.1,
                resolution,
                note: text("对账"),
            }),
        )
    }
    fn line(
        &mut self,
        line_no: u64,
        resolution: Resolution,
    ) -> Result<Vec<SealedEvent>, CommandError> {
        self.resolve((Some(line_no), None), resolution)
    }
    fn entry(&mut self, entry_seq: u64) -> Result<Vec<SealedEvent>, CommandError> {
        self.resolve((None, Some(entry_seq)), Resolution::Explained)
    }
    fn reconcile(&self) -> projections::reconcile::Reconciliation {
        let statement = &self.l.state.statements[&self.st];
        projections::reconcile::reconcile(
            &self.l.state,
            statement,
            &self.lines,
            projections::reconcile::MatchConfig::default(),
        )
    }
}

fn settlement(minor: u64) -> Resolution {
    Resolution::Settlement {
        channel: Channel::Wechat,
        amount_minor: amount(minor),
    }
}

fn link(entry_seq: u64) -> Resolution {
    Resolution::Linked { entry_seq }
}

#[test]
fn the_reconciliation_is_as_the_resolution_tests_expect() {
    let r = reconciled();
    let rec = r.reconcile();
    let matched: Vec<_> = rec
        .matched
        .iter()
        .map(|m| (m.line_no, m.entry_seq, m.rule.as_str()))
        .collect();
    assert_eq!(
        matched,
        vec![
            (1, r.g1, "reference"),
            (4, r.g2, "amount_and_date"),
            (6, r.g3, "amount_and_date"),
            (8, r.paid, "amount_and_date"),
        ]
    );
    let exceptions: Vec<_> = rec
        .exceptions
        .iter()
        .map(|e| (e.reason.as_str(), e.line_no, e.entry_seq))
        .collect();
    assert_eq!(
        exceptions,
        vec![
            ("line_not_in_ledger", Some(2), None),
            ("line_not_in_ledger", Some(3), None),
            ("duplicate_line", Some(5), Some(r.g1)),
            ("line_not_in_ledger", Some(7), None),
            ("missing_from_statement", None, Some(r.g4)),
        ]
    );
}

/// A line whose reference names a ledger entry (here a duplicate of gift B-1's line) counts
/// for that entry in the reconciliation, open exception though it is: booking it as a
/// settlement or a sponsor's payment would count that money twice.
#[test]
fn a_line_naming_an_entry_is_not_booked_as_a_settlement() {
    let mut r = reconciled();
    for resolution in [
        settlement(50_000),
        Resolution::MatchingReceived {
            pool: id("pool-1"),
            amount_minor: amount(50_000),
        },
    ] {
        let e = r.line(5, resolution).unwrap_err();
        assert_eq!(e.code(), "line_mismatch", "{e}");
        assert!(
            e.to_string().contains(&format!(
                "its reference names entry {}, which it accounts for",
                r.g1
            )),
            "{e}"
        );
    }
    // It can still be explained.
    r.line(5, Resolution::Explained).unwrap();
}

#[test]
fn a_settlement_books_a_bank_credit_of_exactly_the_lines_amount() {
    let mut r = reconciled();
    // The wrong amount, by one fen either way.
    for minor in [99_399, 99_401, 1] {
        let e = r.line(2, settlement(minor)).unwrap_err();
        assert_eq!(
            e,
            CommandError::AmountMismatch {
                field: "amount_minor",
                given: "the settlement",
                what: "amount",
                given_minor: minor as i64,
                statement_seq: r.st,
                line_no: 2,
                line_minor: 99_400,
                rule: "it books the line's amount, to the fen",
            }
        );
        assert_eq!(e.code(), "amount_mismatch");
        assert!(!e.is_conflict());
        assert!(
            e.to_string()
                .starts_with("amount_minor: the settlement has amount"),
            "{e}"
        );
    }
    // A matching receipt too.
    let e = r
        .line(
            7,
            Resolution::MatchingReceived {
                pool: id("pool-1"),
                amount_minor: amount(29_999),
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::AmountMismatch {
                field: "amount_minor",
                given_minor: 29_999,
                line_minor: 30_000,
                ..
            }
        ),
        "{e:?}"
    );
    // Money out is not a settlement.
    let e = r.line(3, settlement(12_345)).unwrap_err();
    assert_eq!(
        e,
        CommandError::LineMismatch {
            field: "resolution",
            statement_seq: r.st,
            line_no: 3,
            line_kind: "debit",
            reason: "the settlement is booked from a bank credit (money in)".into(),
        }
    );
    assert_eq!(e.code(), "line_mismatch");
    // The right amount on an open credit.
    r.line(2, settlement(99_400))
        .expect("the settlement fits its line");
}

#[test]
fn a_line_matched_by_reference_is_not_resolved() {
    let mut r = reconciled();
    let matched = CommandError::LineMatched {
        statement_seq: r.st,
        line_no: 1,
        entry_seq: r.g1,
    };
    // A settlement of the gift's own amount would count the money twice in the bank.
    assert_eq!(r.line(1, settlement(50_000)).unwrap_err(), matched);
    assert_eq!(r.line(1, Resolution::Explained).unwrap_err(), matched);
    assert_eq!(r.line(1, link(r.g4)).unwrap_err(), matched);
    assert_eq!(matched.code(), "line_matched");
    assert!(matched.is_conflict());
    // Its entry is not an exception either.
    let e = r.entry(r.g1).unwrap_err();
    assert_eq!(
        e,
        CommandError::EntryMatched {
            field: "entry_seq",
            what: "donation",
            entry_seq: r.g1,
            statement_seq: r.st,
            line_no: 1,
            rule: "reference",
        }
    );
    // The second line for the same gift is an exception (a duplicate): it can be explained.
    r.line(5, Resolution::Explained)
        .expect("a duplicate is an open exception");
}

#[test]
fn a_pairing_by_amount_and_date_is_a_proposal_a_resolution_overrules() {
    let mut r = reconciled();
    // Line 4 was paired with B-2 by its amount; it is the channel's settlement.
    r.line(4, settlement(80_000))
        .expect("a proposal can be overruled");
    let rec = r.reconcile();
    assert!(rec.matched.iter().all(|m| m.line_no != 4), "{rec:?}");
    let four = rec
        .exceptions
        .iter()
        .find(|e| e.line_no == Some(4))
        .unwrap();
    assert_eq!(four.resolution, Some("settlement"));
    assert!(rec
        .exceptions
        .iter()
        .any(|e| e.entry_seq == Some(r.g2) && e.reason.as_str() == "missing_from_statement"));
    // And an entry proposed for a line can be linked to another.
    r.line(7, link(r.g3))
        .expect("B-3 was only proposed for line 6");
    let rec = r.reconcile();
    let pairs: Vec<_> = rec
        .matched
        .iter()
        .filter(|m| m.entry_seq == r.g3)
        .map(|m| (m.line_no, m.rule.as_str()))
        .collect();
    assert_eq!(pairs, vec![(7, "linked")]);
}

#[test]
fn one_entry_is_linked_to_one_line() {
    let mut r = reconciled();
    r.line(6, link(r.g3)).expect("line 6 is B-3");
    let e = r.line(7, link(r.g3)).unwrap_err();
    assert_eq!(
        e,
        CommandError::EntryMatched {
            field: "resolution.entry_seq",
            what: "donation",
            entry_seq: r.g3,
            statement_seq: r.st,
            line_no: 6,
            rule: "linked",
        }
    );
    assert_eq!(e.code(), "entry_matched");
    assert!(e.is_conflict());
    // Nor to a line when another line has it by reference (the duplicate, line 5, is B-1's
    // amount and direction: only the match stands in the way).
    let e = r.line(5, link(r.g1)).unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::EntryMatched {
                line_no: 1,
                rule: "reference",
                ..
            }
        ),
        "{e:?}"
    );
    // A linked entry is not explained as missing either.
    let e = r.entry(r.g3).unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::EntryMatched {
                field: "entry_seq",
                line_no: 6,
                rule: "linked",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_link_needs_the_lines_direction_channel_and_amount() {
    let mut r = reconciled();
    // Money out linked to a gift; money in linked to a payout.
    let e = r.line(3, link(r.g4)).unwrap_err();
    assert!(
        matches!(&e, CommandError::LineMismatch { field: "resolution.entry_seq", line_no: 3, line_kind: "debit", reason, .. } if reason.contains("money out")),
        "{e:?}"
    );
    let e = r.line(7, link(r.paid)).unwrap_err();
    assert!(
        matches!(&e, CommandError::LineMismatch { line_no: 7, line_kind: "credit", reason, .. } if reason.contains("not the payout")),
        "{e:?}"
    );
    // A bank credit is not a WeChat gift.
    let e = r.line(2, link(r.wechat)).unwrap_err();
    assert!(
        matches!(&e, CommandError::LineMismatch { reason, .. } if reason.contains("went through wechat")),
        "{e:?}"
    );
    // A payout that has not left the bank.
    let e = r.line(3, link(r.approved)).unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::RequestState {
                field: "resolution.entry_seq",
                status: "approved",
                needed: "disbursed",
                ..
            }
        ),
        "{e:?}"
    );
    // Amounts agree to the fen: 300.00 is not 456.00.
    let e = r.line(7, link(r.g4)).unwrap_err();
    assert_eq!(
        e,
        CommandError::AmountMismatch {
            field: "resolution.entry_seq",
            given: "the linked entry",
            what: "amount",
            given_minor: 45_600,
            statement_seq: r.st,
            line_no: 7,
            line_minor: 30_000,
            rule: "a link pairs a line with an entry of the same amount and fee, to the fen; resolve a difference as explained",
        }
    );
    // What fits: the debit of 200.00 is the disbursed payout (only proposed for it).
    r.line(8, link(r.paid)).expect("line 8 is the payout");
}

/// A WeChat Pay bill of the day around T0, recorded in full: `lines` of (kind, reference,
/// original reference, amount), without fees. `digest` tells bills apart. Its seq.
fn wechat_bill(
    l: &mut Ledger,
    digest: &[u8],
    lines: &[(StatementLineKind, &str, Option<&str>, u64)],
) -> u64 {
    let st = l.ok(
        "recorder",
        Command::ImportStatement(StatementImported {
            statement_sha256: sha256(digest),
            source: StatementSource::Wechat,
            account: "1900000109".into(),
            currency: Currency::CNY,
            period_start_ms: T0 - DAY / 2,
            period_end_ms: T0 + DAY / 2,
            line_count: lines.len() as u64,
        }),
    )[0]
    .seq();
    for ((kind, reference, original, minor), line_no) in lines.iter().zip(1..) {
        l.ok(
            "recorder",
            Command::RecordStatementLine(StatementLineRecorded {
                statement_seq: st,
                line_no,
                kind: *kind,
                reference: (*reference).into(),
                original_reference: original.map(Into::into),
                booked_ms: T0,
                amount_minor: amount(*minor),
                fee_minor: 0,
                fee_milli_minor: None,
                currency: Currency::CNY,
            }),
        );
    }
    st
}

/// Links line `line_no` of statement `statement_seq` to the entry at `entry_seq`.
fn link_line(
    l: &mut Ledger,
    (statement_seq, line_no): (u64, u64),
    entry_seq: u64,
) -> Result<Vec<SealedEvent>, CommandError> {
    l.run(
        "finance",
        Command::ResolveException(ExceptionResolved {
            statement_seq,
            line_no: Some(line_no),
            entry_seq: None,
            resolution: link(entry_seq),
            note: text("对账"),
        }),
    )
}

/// An entry is matched to one statement line in the whole ledger: a link from a line of a
/// second bill is refused when a line of the first accounts for the entry, by reference
/// (paired, or with a difference) or by an earlier link, naming that line; nothing is
/// written.
#[test]
fn a_link_takes_an_entry_no_line_of_another_statement_has() {
    use StatementLineKind::Payment;
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let g1 = give(&mut l, "cp", 10_000, "wx-1", "donor-1")[0].seq();
    let g2 = give(&mut l, "cp", 20_000, "wx-2", "donor-2")[0].seq();
    let g3 = give(&mut l, "cp", 30_000, "wx-3", "donor-3")[0].seq();
    let g4 = give(&mut l, "cp", 40_000, "wx-4", "donor-4")[0].seq();
    // Bill A: wx-1 by reference, wx-3 with another amount (the line still accounts for the
    // gift), and a payment under WeChat's own order number, which staff link to wx-2.
    let a = wechat_bill(
        &mut l,
        b"bill A",
        &[
            (Payment, "wx-1", None, 10_000),
            (Payment, "wx-3", None, 29_999),
            (Payment, "4200000002", None, 20_000),
        ],
    );
    link_line(&mut l, (a, 3), g2).expect("no line has wx-2 yet");
    // Bill B shows the same gifts again, under numbers the ledger does not know (each line
    // an open exception of its own bill, of the gift's amount and fee), and wx-4 twice.
    let b = wechat_bill(
        &mut l,
        b"bill B",
        &[
            (Payment, "4200000011", None, 10_000),
            (Payment, "4200000012", None, 20_000),
            (Payment, "4200000013", None, 30_000),
            (Payment, "4200000014", None, 40_000),
            (Payment, "4200000015", None, 40_000),
        ],
    );
    let before = l.state.position;
    let matched = |entry_seq: u64, line_no: u64, rule: &'static str| CommandError::EntryMatched {
        field: "resolution.entry_seq",
        what: "donation",
        entry_seq,
        statement_seq: a,
        line_no,
        rule,
    };
    // Paired by reference on bill A.
    let e = link_line(&mut l, (b, 1), g1).unwrap_err();
    assert_eq!(e, matched(g1, 1, "reference"));
    assert_eq!(e.code(), "entry_matched");
    assert!(e.is_conflict());
    assert!(
        e.to_string().starts_with(&format!(
            "resolution.entry_seq: the donation at seq {g1} is already matched to line 1 of statement {a} (reference)"
        )),
        "{e}"
    );
    // Linked on bill A.
    assert_eq!(
        link_line(&mut l, (b, 2), g2).unwrap_err(),
        matched(g2, 3, "linked")
    );
    // Named by reference on bill A, with a difference: that line accounts for it too.
    assert_eq!(
        link_line(&mut l, (b, 3), g3).unwrap_err(),
        matched(g3, 2, "reference")
    );
    assert_eq!(l.state.position, before, "a refused link writes nothing");
    // Within one bill the rule holds as before: wx-4 is on no other bill, is linked once,
    // and the second line for it is refused, naming the first.
    link_line(&mut l, (b, 4), g4).expect("no line has wx-4 yet");
    let before = l.state.position;
    assert_eq!(
        link_line(&mut l, (b, 5), g4).unwrap_err(),
        CommandError::EntryMatched {
            field: "resolution.entry_seq",
            what: "donation",
            entry_seq: g4,
            statement_seq: b,
            line_no: 4,
            rule: "linked",
        }
    );
    assert_eq!(l.state.position, before, "a refused link writes nothing");
}

/// A link pairs a refund line with a refund of the same fee given back, as the reference
/// rule does: a line giving back 0.06 is not linked to a refund recorded as keeping the fee
/// (`amount_mismatch` naming both fees, nothing written), and is linked to one giving back 6.
#[test]
fn a_refund_line_is_linked_only_to_a_refund_giving_back_its_fee() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    give(&mut l, "cp", 10_000, "wx-0", "donor-0");
    let gift = |l: &mut Ledger, txn: &str| {
        let mut d = donation("cp", 1_000, txn, "donor-1");
        d.fee_minor = 6;
        l.ok("recorder", Command::RecordDonation(d))[0].seq()
    };
    let kept = gift(&mut l, "wx-1");
    let returned = gift(&mut l, "wx-2");
    let refund = |l: &mut Ledger, donation_seq: u64, fee_returned_minor| {
        l.ok(
            "finance",
            Command::RefundDonation {
                donation_seq,
                reason: text("捐赠人申请退款"),
                fee_returned_minor,
            },
        )[0]
        .seq()
    };
    let r_kept = refund(&mut l, kept, None);
    let r_returned = refund(&mut l, returned, Some(6));
    // One bill, two refund lines each giving back 0.06, naming their payments by WeChat's
    // own numbers (which the ledger does not know, so only a link pairs them).
    let st = l.ok(
        "recorder",
        Command::ImportStatement(StatementImported {
            statement_sha256: sha256(b"refund fees"),
            source: StatementSource::Wechat,
            account: "1900000109".into(),
            currency: Currency::CNY,
            period_start_ms: T0 - DAY / 2,
            period_end_ms: T0 + DAY / 2,
            line_count: 2,
        }),
    )[0]
    .seq();
    for (line_no, original) in [(1, "4200000001"), (2, "4200000002")] {
        l.ok(
            "recorder",
            Command::RecordStatementLine(StatementLineRecorded {
                statement_seq: st,
                line_no,
                kind: StatementLineKind::Refund,
                reference: format!("RF-{line_no}"),
                original_reference: Some(original.into()),
                booked_ms: T0,
                amount_minor: amount(1_000),
                fee_minor: -6,
                fee_milli_minor: None,
                currency: Currency::CNY,
            }),
        );
    }
    let before = l.state.position;
    let e = link_line(&mut l, (st, 1), r_kept).unwrap_err();
    assert_eq!(e.code(), "amount_mismatch");
    assert_eq!(
        e.to_string(),
        format!("resolution.entry_seq: the linked entry has fee 0, line 1 of statement {st} has -6: a link pairs a line with an entry of the same amount and fee, to the fen; resolve a difference as explained")
    );
    assert_eq!(l.state.position, before, "a refused link writes nothing");
    link_line(&mut l, (st, 2), r_returned).expect("the same fee given back");
}

/// A gift's payment and its refund are two entries, so a payment line of one bill and a
/// refund line of another legitimately both name the gift: the refund line is linked to the
/// refund whether the payment line has the gift by reference or by a link. The refund is
/// then had by that line, and a third bill's refund line cannot be linked to it.
#[test]
fn a_refund_line_is_linked_beside_its_payment_on_another_statement() {
    use StatementLineKind::{Payment, Refund};
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let g1 = give(&mut l, "cp", 10_000, "wx-1", "donor-1")[0].seq();
    let g2 = give(&mut l, "cp", 20_000, "wx-2", "donor-2")[0].seq();
    // Bill A: wx-1 by reference; wx-2 under WeChat's own number, linked.
    let a = wechat_bill(
        &mut l,
        b"bill A",
        &[
            (Payment, "wx-1", None, 10_000),
            (Payment, "4200000002", None, 20_000),
        ],
    );
    link_line(&mut l, (a, 2), g2).expect("no line has wx-2 yet");
    let refund = |l: &mut Ledger, donation_seq: u64| {
        l.ok(
            "finance",
            Command::RefundDonation {
                donation_seq,
                reason: text("捐赠人申请退款"),
                fee_returned_minor: None,
            },
        )[0]
        .seq()
    };
    let r1 = refund(&mut l, g1);
    let r2 = refund(&mut l, g2);
    // Bill B: both refunds, each naming its payment by WeChat's own number, which the
    // ledger does not know.
    let b = wechat_bill(
        &mut l,
        b"bill B",
        &[
            (Refund, "RF-1", Some("4200000001"), 10_000),
            (Refund, "RF-2", Some("4200000002"), 20_000),
        ],
    );
    link_line(&mut l, (b, 1), r1).expect("a refund line beside the payment line on bill A");
    link_line(&mut l, (b, 2), r2).expect("a refund line beside the linked payment on bill A");
    // The gifts themselves are still had by bill A's lines.
    assert_eq!(
        projections::reconcile::line_elsewhere_accounting_for(&l.state, b, g1).map(|x| (
            x.statement_seq,
            x.line_no,
            x.rule.as_str()
        )),
        Some((a, 1, "reference"))
    );
    // Bill C shows the first refund again: bill B's line has it.
    let c = wechat_bill(
        &mut l,
        b"bill C",
        &[(Refund, "RF-1", Some("4200000001"), 10_000)],
    );
    let before = l.state.position;
    assert_eq!(
        link_line(&mut l, (c, 1), r1).unwrap_err(),
        CommandError::EntryMatched {
            field: "resolution.entry_seq",
            what: "refund",
            entry_seq: r1,
            statement_seq: b,
            line_no: 1,
            rule: "linked",
        }
    );
    assert_eq!(l.state.position, before, "a refused link writes nothing");
}

#[test]
fn an_entry_resolved_is_one_the_statement_lacks() {
    let mut r = reconciled();
    let e = r.entry(r.wechat).unwrap_err();
    assert!(
        matches!(&e, CommandError::NotAnException { what: "donation", reason, .. } if reason.contains("wechat")),
        "{e:?}"
    );
    assert_eq!(e.code(), "not_an_exception");
    let e = r.entry(r.approved).unwrap_err();
    assert!(
        matches!(&e, CommandError::NotAnException { what: "payout", reason, .. } if reason.contains("approved")),
        "{e:?}"
    );
    r.entry(r.g4).expect("B-4 is missing from the statement");
}

/// A staff token's grant is recorded once, its revocation once, and only of a grant the log
/// holds; a token id is 16 lowercase hex digits. The state follows who holds what.
#[test]
fn staff_token_grants_and_revocations_are_recorded_once() {
    let mut l = Ledger::new();
    let issue = |token_id: &str| {
        Command::IssueStaffToken(StaffTokenIssued {
            holder: id("cashier-sun"),
            role: StaffRole::Recorder,
            token_id: token_id.into(),
        })
    };
    let revoke = |token_id: &str| {
        Command::RevokeStaffToken(StaffTokenRevoked {
            token_id: token_id.into(),
        })
    };
    let tid = "00112233445566ff";
    for bad in ["0011223344556", "00112233445566FF", "00112233445566fg", ""] {
        let e = l.run("admin-zhao", issue(bad)).unwrap_err();
        assert!(
            matches!(
                &e,
                CommandError::Invalid(ValueError::Invalid {
                    field: "token_id",
                    ..
                })
            ),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(
        l.run("admin-zhao", revoke(tid)).unwrap_err(),
        CommandError::UnknownToken(tid.into())
    );
    let issued = l.run("admin-zhao", issue(tid)).unwrap();
    let seq = issued[0].seq();
    let grant = &l.state.staff_tokens[tid];
    assert_eq!(
        (
            &grant.holder,
            grant.role,
            grant.issued_seq,
            &grant.issued_by,
            grant.revoked_seq
        ),
        (
            &id("cashier-sun"),
            StaffRole::Recorder,
            seq,
            &id("admin-zhao"),
            None
        )
    );
    assert_eq!(
        l.run("admin-zhao", issue(tid)).unwrap_err(),
        CommandError::TokenExists {
            token_id: tid.into(),
            seq
        }
    );
    let revoked = l.run("admin-qian", revoke(tid)).unwrap();
    assert_eq!(
        l.state.staff_tokens[tid].revoked_seq,
        Some(revoked[0].seq())
    );
    let e = l.run("admin-zhao", revoke(tid)).unwrap_err();
    assert_eq!(
        e,
        CommandError::TokenRevoked {
            token_id: tid.into(),
            seq: revoked[0].seq()
        }
    );
    assert_eq!(e.code(), "token_revoked");
    assert!(e.is_conflict());
}

/// One bank credit shown by two statements of the same account (overlapping exports) is
/// booked once: a settlement from the second is refused, naming the first; a credit of
/// another day, amount or account is not the same credit. And a bank gift whose transfer
/// was booked as a settlement is refused too, so neither order counts the money twice.
#[test]
fn a_bank_credit_is_booked_once_across_statements() {
    let mut r = reconciled();
    let booked = r.line(2, settlement(99_400)).unwrap()[0].seq();
    let second = |r: &mut Reconciled, tag: &[u8], account: &str, minor: u64, booked_ms: u64| {
        let st = r.l.ok(
            "recorder",
            Command::ImportStatement(StatementImported {
                statement_sha256: sha256(tag),
                source: StatementSource::BankCsv,
                account: account.into(),
                currency: Currency::CNY,
                period_start_ms: T0 - DAY / 2,
                period_end_ms: T0 + DAY,
                line_count: 1,
            }),
        )[0]
        .seq();
        r.l.ok(
            "recorder",
            Command::RecordStatementLine(StatementLineRecorded {
                statement_seq: st,
                line_no: 1,
                kind: StatementLineKind::Credit,
                reference: "TENPAY-SETTLE".into(),
                original_reference: None,
                booked_ms,
                amount_minor: amount(minor),
                fee_minor: 0,
                fee_milli_minor: None,
                currency: Currency::CNY,
            }),
        );
        st
    };
    let book = |r: &mut Reconciled, st: u64, minor: u64| {
        r.l.run(
            "finance",
            Command::ResolveException(ExceptionResolved {
                statement_seq: st,
                line_no: Some(1),
                entry_seq: None,
                resolution: settlement(minor),
                note: text("对账"),
            }),
        )
    };
    // The same credit in a second export of the account.
    let overlap = second(
        &mut r,
        b"bank statement (camt)",
        "6222020200000000",
        99_400,
        T0,
    );
    let e = book(&mut r, overlap, 99_400).unwrap_err();
    assert_eq!(
        e,
        CommandError::CreditBooked {
            field: "resolution",
            reference: "TENPAY-SETTLE".into(),
            amount_minor: 99_400,
            statement_seq: r.st,
            line_no: 2,
            resolution_seq: booked,
            what: "booking it again (resolve this line as explained)",
        }
    );
    assert_eq!(e.code(), "credit_booked");
    assert!(e.to_string().contains("count that money twice"), "{e}");
    // A matching receipt from it is refused the same way.
    let pool_owes = r.l.run(
        "finance",
        Command::ResolveException(ExceptionResolved {
            statement_seq: overlap,
            line_no: Some(1),
            entry_seq: None,
            resolution: Resolution::MatchingReceived {
                pool: id("nope"),
                amount_minor: amount(99_400),
            },
            note: text("对账"),
        }),
    );
    assert!(
        matches!(pool_owes, Err(CommandError::CreditBooked { .. })),
        "{pool_owes:?}"
    );
    // The next day's settlement with the same reference and amount is another credit, as is
    // one of another amount or another account.
    let next_day = second(
        &mut r,
        b"next day",
        "6222020200000000",
        99_400,
        T0 + DAY / 2,
    );
    book(&mut r, next_day, 99_400).unwrap();
    let other_amount = second(&mut r, b"other amount", "6222020200000000", 99_500, T0);
    book(&mut r, other_amount, 99_500).unwrap();
    let other_account = second(&mut r, b"other account", "6222020200000001", 99_400, T0);
    book(&mut r, other_account, 99_400).unwrap();

    // The other order: line 7 ("X-7", 30,000) booked as a settlement, then a bank gift of
    // that transfer.
    let seven = r.line(7, settlement(30_000)).unwrap()[0].seq();
    let mut gift = donation("cp", 30_000, "X-7", "donor-9");
    gift.channel = Channel::Bank;
    let e =
        r.l.run("recorder", Command::RecordDonation(gift.clone()))
            .unwrap_err();
    assert_eq!(
        e,
        CommandError::CreditBooked {
            field: "channel_txn_id",
            reference: "X-7".into(),
            amount_minor: 30_000,
            statement_seq: r.st,
            line_no: 7,
            resolution_seq: seven,
            what: "recording it as a gift too",
        }
    );
    // Through another channel, or of another amount, it is another payment.
    gift.channel = Channel::Wechat;
    r.l.ok("recorder", Command::RecordDonation(gift.clone()));
    let mut other = donation("cp", 30_001, "X-7", "donor-9");
    other.channel = Channel::Bank;
    r.l.ok("recorder", Command::RecordDonation(other));
}

// ---------------------------------------------------------------------------------------------
// Matches under review: freeze, unfreeze, release after review.

fn freeze(donation_seq: u64) -> Command {
    Command::FreezeMatch {
        donation_seq,
        reason: text("同一账户拆分为多个新捐赠人"),
    }
}

fn unfreeze(donation_seq: u64) -> Command {
    Command::UnfreezeMatch {
        donation_seq,
        reason: text("核实为真实捐赠人"),
    }
}

fn release(donation_seq: u64) -> Command {
    Command::ReleaseMatch {
        donation_seq,
        reason: text("核实为刷配捐"),
    }
}

/// A project `cp` with a 1:1 pool (300 per gift, 500 per donor a day, 1,000 in all) and a
/// gift of 1,000 from `d1` matched 300: the gift's seq.
fn matched_gift() -> (Ledger, u64) {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    l.ok("admin", pool("pool", &["cp"], (300, 500, 1_000)));
    let events = give(&mut l, "cp", 1_000, "t1", "d1");
    assert_eq!(events.len(), 2);
    (l, events[0].seq())
}

fn balances(l: &Ledger) -> projections::Balances {
    l.state.projects[&id("cp")].balances.clone()
}

#[test]
fn a_frozen_match_stays_matched_but_cannot_be_spent_until_unfrozen() {
    let (mut l, seq) = matched_gift();
    assert_eq!(l.available("cp"), 1_300);
    let events = l.ok("risk-a", freeze(seq));
    assert_eq!(events.len(), 1);
    match events[0].body() {
        EventBody::MatchFrozen(m) => {
            assert_eq!(m.donation_seq, seq);
            assert_eq!(m.amount_minor.minor(), 300);
            assert_eq!(m.pool.as_str(), "pool");
            assert_eq!(m.project.as_str(), "cp");
        }
        other => panic!("expected a freeze, got {other:?}"),
    }
    let b = balances(&l);
    assert_eq!((b.matched, b.frozen, b.balance()), (300, 300, Some(1_300)));
    assert_eq!(l.available("cp"), 1_000, "the match is held out");
    assert_eq!(l.state.pools[&id("pool")].used(), 300, "still allocated");
    assert!(l.state.match_frozen(seq).is_some());
    // Payouts and moves cannot spend it.
    let e = l.err("finance", payout("cp", 1_001));
    assert!(
        matches!(
            e,
            CommandError::InsufficientFunds {
                requested: 1_001,
                available: 1_000,
                ..
            }
        ),
        "{e}"
    );
    l.open("other", ProjectKind::CommunityProject, None);
    let e = l.err("finance", move_to("cp", "other", 1_001));
    assert!(matches!(e, CommandError::InsufficientFunds { .. }), "{e}");
    l.ok("finance", payout("cp", 1_000));
    assert_eq!(l.available("cp"), 0);
    // Cleared: the project may spend it again.
    let events = l.ok("risk-a", unfreeze(seq));
    assert!(matches!(events[0].body(), EventBody::MatchUnfrozen(_)));
    let b = balances(&l);
    assert_eq!((b.matched, b.frozen), (300, 0));
    assert_eq!(l.available("cp"), 300);
    assert!(l.state.match_holds.is_empty());
    // A match cleared once may be frozen again (new evidence).
    l.ok("risk-a", freeze(seq));
    assert_eq!(l.available("cp"), 0);
}

#[test]
fn a_freeze_names_a_match_that_is_there_to_hold() {
    let (mut l, seq) = matched_gift();
    let e = l.err("risk-a", freeze(999));
    assert!(matches!(e, CommandError::UnknownDonation(999)), "{e}");
    assert!(e.to_string().starts_with("donation_seq: "), "{e}");
    // A gift the pool did not match (the donor's day is used up after 500).
    give(&mut l, "cp", 1_000, "t2", "d1");
    let unmatched = give(&mut l, "cp", 1_000, "t3", "d1");
    assert_eq!(unmatched.len(), 1);
    let e = l.err("risk-a", freeze(unmatched[0].seq()));
    assert!(
        matches!(e, CommandError::NoMatch(s) if s == unmatched[0].seq()),
        "{e}"
    );
    assert_eq!(e.code(), "no_match");
    assert!(e.to_string().starts_with("donation_seq: "), "{e}");
    // Frozen already.
    let frozen_at = l.ok("risk-a", freeze(seq))[0].seq();
    let e = l.err("risk-b", freeze(seq));
    assert!(matches!(e, CommandError::MatchState { .. }), "{e}");
    assert!(e.is_conflict());
    assert_eq!(e.code(), "match_state");
    assert!(
        e.to_string()
            .contains(&format!("is frozen (at seq {frozen_at})")),
        "{e}"
    );
    // Released after review.
    l.ok("risk-b", release(seq));
    let e = l.err("risk-a", freeze(seq));
    assert!(
        e.to_string().contains("released after review (at seq"),
        "{e}"
    );
    // A refunded gift's match went back with the refund.
    let (mut l, seq) = matched_gift();
    l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: seq,
            reason: text("重复支付"),
            fee_returned_minor: None,
        },
    );
    let e = l.err("risk-a", freeze(seq));
    assert!(
        matches!(e, CommandError::AlreadyRefunded(s) if s == seq),
        "{e}"
    );
}

#[test]
fn a_match_already_spent_cannot_be_held() {
    let (mut l, seq) = matched_gift();
    l.ok("finance", payout("cp", 1_100));
    let e = l.err("risk-a", freeze(seq));
    assert!(
        matches!(
            e,
            CommandError::InsufficientFunds {
                requested: 300,
                available: 200,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("amount_minor: 300"), "{e}");
}

#[test]
fn only_a_frozen_match_is_unfrozen_or_released() {
    let (mut l, seq) = matched_gift();
    for command in [unfreeze(seq), release(seq)] {
        let e = l.err("risk-a", command);
        assert!(matches!(e, CommandError::MatchState { .. }), "{e}");
        assert!(e.to_string().contains("is not frozen"), "{e}");
        assert!(e.to_string().starts_with("donation_seq: "), "{e}");
    }
    let e = l.err("risk-a", release(seq));
    assert!(e.to_string().contains("freeze it first"), "{e}");
    let e = l.err("risk-a", unfreeze(999));
    assert!(matches!(e, CommandError::UnknownDonation(999)), "{e}");
    l.ok("risk-a", freeze(seq));
    l.ok("risk-b", release(seq));
    for command in [unfreeze(seq), release(seq)] {
        let e = l.err("risk-a", command);
        assert!(
            e.to_string().contains("released after review (at seq"),
            "{e}"
        );
    }
}

#[test]
fn a_release_after_review_takes_four_eyes() {
    let (mut l, seq) = matched_gift();
    l.run_with_token("risk-a", Some("admin-zhao"), freeze(seq))
        .unwrap();
    let e = l.err("risk-a", release(seq));
    assert!(
        matches!(e, CommandError::FourEyes { ref actor, .. } if actor.as_str() == "risk-a"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "four eyes: risk-a froze the match of the donation at seq {seq} and cannot also \
             release it after review"
        )
    );
    // The admin who issued the freezer's token, acting or issuing the releaser's token.
    let e = l.err("admin-zhao", release(seq));
    assert!(
        e.to_string()
            .contains("admin-zhao issued the token that froze"),
        "{e}"
    );
    let e = l
        .run_with_token("risk-b", Some("admin-zhao"), release(seq))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot also release it after review with a token they issued"),
        "{e}"
    );
    // The one who froze it may still clear it; someone else may release it.
    l.run_with_token("risk-b", Some("admin-qian"), release(seq))
        .unwrap();
}

#[test]
fn a_release_after_review_gives_the_match_back_to_its_pool_and_the_gift_stays() {
    let (mut l, seq) = matched_gift();
    l.ok("risk-a", freeze(seq));
    let events = l.ok("risk-b", release(seq));
    assert_eq!(events.len(), 1);
    assert!(
        matches!(events[0].body(), EventBody::MatchRevoked(m) if m.amount_minor.minor() == 300)
    );
    let b = balances(&l);
    assert_eq!(
        (b.raised, b.matched, b.frozen, b.refunded, b.balance()),
        (1_000, 0, 0, 0, Some(1_000))
    );
    assert_eq!(l.available("cp"), 1_000);
    let pool = &l.state.pools[&id("pool")];
    assert_eq!((pool.allocated, pool.released, pool.used()), (300, 300, 0));
    assert!(
        l.state.donations[&seq].refunded_seq.is_none(),
        "the gift stays"
    );
    assert!(l.state.match_released_after_review(seq).is_some());
    // The donor's cap for the day has room again: 300 per gift, 500 a day.
    let again = give(&mut l, "cp", 1_000, "t2", "d1");
    assert!(
        matches!(again[1].body(), EventBody::MatchAllocated(m) if m.amount_minor.minor() == 300),
        "the day's cap was freed"
    );
    // Refunding the gift later returns it alone: its match went back already.
    let refund = l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: seq,
            reason: text("捐赠人申请退款"),
            fee_returned_minor: None,
        },
    );
    assert_eq!(refund.len(), 1, "no second release of the match");
    assert_eq!(
        l.state.pools[&id("pool")].used(),
        300,
        "only the new gift's"
    );
}

#[test]
fn a_refund_of_a_gift_under_review_releases_its_match_and_the_hold() {
    let (mut l, seq) = matched_gift();
    l.ok("risk-a", freeze(seq));
    // 1,300 held, 1,000 available: the refund needs the gift's 1,000, the match takes its
    // own hold with it.
    assert_eq!(l.available("cp"), 1_000);
    let refund = l.ok(
        "recorder",
        Command::RefundDonation {
            donation_seq: seq,
            reason: text("捐赠人申请退款"),
            fee_returned_minor: None,
        },
    );
    assert_eq!(refund.len(), 2);
    assert!(matches!(refund[1].body(), EventBody::MatchReleased(_)));
    let b = balances(&l);
    assert_eq!((b.matched, b.frozen, b.balance()), (0, 0, Some(0)));
    assert_eq!(l.available("cp"), 0);
    assert!(l.state.match_holds.is_empty());
    assert_eq!(l.state.pools[&id("pool")].used(), 0);
}

#[test]
fn closing_the_pool_does_not_stop_a_review() {
    let (mut l, seq) = matched_gift();
    let second = give(&mut l, "cp", 200, "t2", "d2")[0].seq();
    l.ok("risk-a", freeze(seq));
    l.ok(
        "admin",
        Command::CloseMatchingPool {
            pool: id("pool"),
            reason: text("活动结束"),
        },
    );
    l.ok("risk-a", freeze(second));
    l.ok("risk-a", unfreeze(second));
    l.ok("risk-b", release(seq));
    assert_eq!(l.state.pools[&id("pool")].used(), 200);
    assert_eq!(balances(&l).frozen, 0);
}

/// A public free text (a reason, a payout's purpose, a resolution's note) is published as
/// written, so one holding a number that identifies a person (a mobile number, an ID card or
/// a bank card: more than 10 digits in a row, spaces or hyphens between them counted
/// through, ASCII or full-width) is refused, naming the field; dates, amounts and short
/// numbers pass.
#[test]
fn a_public_text_with_a_personal_number_is_refused() {
    let mut l = Ledger::new();
    l.open("cp", ProjectKind::CommunityProject, None);
    let gift = give(&mut l, "cp", 10_000, "wx-1", "donor-1")[0].seq();
    let refund = |reason: &str| Command::RefundDonation {
        donation_seq: gift,
        reason: text(reason),
        fee_returned_minor: None,
    };
    let refused = |e: CommandError, field: &str| match e {
        CommandError::Invalid(ValueError::Invalid { field: f, reason }) => {
            assert_eq!(f, field);
            assert!(reason.contains("at most 10"), "{reason}");
        }
        other => panic!("{other:?}"),
    };
    for personal in [
        "捐赠人来电 13800138000 要求退款",
        "捐赠人来电 138-0013-8000",
        "捐赠人来电 138 0013 8000",
        "身份证 11010519491231002X",
        "捐赠人来电１３８００１３８０００",
        "捐赠人来电 １３８　００１３　８０００",
        "捐赠人来电 １３８－００１３－８０００",
    ] {
        refused(l.err("recorder", refund(personal)), "reason");
    }
    let mut purpose = payout("cp", 1_000);
    if let Command::RequestPayout(p) = &mut purpose {
        p.purpose = text("转账至 6222 0202 0000 1234 567");
    }
    refused(l.err("finance", purpose), "purpose");
    // Dates, amounts, times and short numbers are what reasons hold: they pass, a date
    // followed by an amount too (the change of separator ends the run).
    l.ok(
        "recorder",
        refund("2018-10-09 3000元 2018-10-09 10:30 重复支付 100 元，单号 12345678"),
    );
}
