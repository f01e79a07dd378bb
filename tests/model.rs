//! Model-based property test: random sequences of commands, good and bad, with "restart"
//! steps, against the real ledger (sled store, writer, projection runner) and a small model
//! that is obviously correct. After every step: the outcome (accepted or refused) matches the
//! model, every project's balance and available money equal the model's, money is conserved
//! per project, nothing available is negative, and projections rebuilt from event 0 are
//! byte-identical to the live ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use events::*;
use ledger::command::{Command, DonationInput};
use ledger::node::{Node, NodeConfig};
use ledger::projector::encode_state;
use ledger::store::READ_EVENTS_MAX;
use ledger::writer::Submission;
use projections::LedgerState;
use proptest::prelude::*;

const T0: u64 = 1_539_046_800_000;
const PROJECTS: usize = 4; // p0..p2 exist; p3 never does.
const CAP_PER_DONATION: u64 = 300;
const CAP_PER_DONOR_DAY: u64 = 500;
const CAP_TOTAL: u64 = 2_000;

#[derive(Debug, Clone)]
enum Step {
    Donate {
        project: usize,
        amount: u64,
        fee: u64,
        donor: usize,
    },
    Refund {
        /// Which gift: the `donation`th, wrapping around the gifts and one seq past them
        /// (no gift there, refused), so most refunds name a gift.
        donation: usize,
        /// The part of the fee the channel gives back; 0 for none (the command says
        /// `None`). Up to 9, past the largest fee (7), so refusals happen too.
        fee_returned: u64,
    },
    /// A fee the channel gave back after the refund was recorded, for one of the refunds
    /// (the `refund`th, wrapping around; or, with `gift_seq`, naming its gift's own seq
    /// instead, which is refused): 0 to 5, so a fee of 0 and more than is left of the
    /// gift's fee (at most 7) are refused too.
    ReturnFee {
        refund: usize,
        gift_seq: bool,
        fee: u64,
    },
    Payout {
        project: usize,
        amount: u64,
        requester: usize,
    },
    Decide {
        payout: usize,
        approver: usize,
        approve: bool,
    },
    Disburse {
        payout: usize,
    },
    Move {
        from: usize,
        to: usize,
        amount: u64,
        requester: usize,
    },
    DecideMove {
        request: usize,
        approver: usize,
    },
    /// A step of a match's review, on the `donation`th gift (wrapping around the gifts and
    /// one seq past them), by reviewer `reviewer` (two of them, so four eyes are tried).
    Review {
        donation: usize,
        action: ReviewAction,
        reviewer: usize,
    },
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ReviewAction {
    Freeze,
    Unfreeze,
    Release,
}

/// Where a gift's match stands in review.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MReview {
    None,
    Frozen { by: usize },
    Released,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..PROJECTS, 1u64..1_500, 0u64..8, 0usize..3)
            .prop_map(|(project, amount, fee, donor)| Step::Donate { project, amount, fee, donor }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), 1u64..10])
            .prop_map(|(donation, fee_returned)| Step::Refund { donation, fee_returned }),
        3 => (any::<usize>(), prop::bool::weighted(0.2), 0u64..6)
            .prop_map(|(refund, gift_seq, fee)| Step::ReturnFee { refund, gift_seq, fee }),
        3 => (0..PROJECTS, 1u64..2_500, 0usize..2)
            .prop_map(|(project, amount, requester)| Step::Payout { project, amount, requester }),
        3 => (0usize..10, 0usize..2, any::<bool>())
            .prop_map(|(payout, approver, approve)| Step::Decide { payout, approver, approve }),
        2 => (0usize..10).prop_map(|payout| Step::Disburse { payout }),
        1 => (0..PROJECTS, 0..PROJECTS, 1u64..1_000, 0usize..2)
            .prop_map(|(from, to, amount, requester)| Step::Move { from, to, amount, requester }),
        1 => (0usize..6, 0usize..2).prop_map(|(request, approver)| Step::DecideMove { request, approver }),
        4 => (
            any::<usize>(),
            prop_oneof![
                Just(ReviewAction::Freeze),
                Just(ReviewAction::Unfreeze),
                Just(ReviewAction::Release)
            ],
            0usize..2
        )
            .prop_map(|(donation, action, reviewer)| Step::Review { donation, action, reviewer }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Requested,
    Approved,
    Rejected,
    Disbursed,
}

#[derive(Debug, Default, Clone, Copy)]
struct MProject {
    balance: u64,
    committed: u64,
    requested: u64,
    /// Fees channels gave back on refunds.
    fees_returned: u64,
    /// Matches frozen for review.
    frozen: u64,
}

impl MProject {
    fn available(&self) -> u64 {
        self.balance - self.committed - self.requested - self.frozen
    }
}

struct MDonation {
    seq: u64,
    project: usize,
    amount: u64,
    net: u64,
    matched: u64,
    donor: usize,
    /// The seq of its refund, once refunded.
    refund_seq: Option<u64>,
    /// What the channel gave back of its fee: on the refund and afterwards.
    fee_returned: u64,
    review: MReview,
}

struct MRequest {
    seq: u64,
    from: usize,
    to: Option<usize>,
    amount: u64,
    requester: usize,
    status: Status,
}

/// The obviously correct model: plain integers and vectors.
#[derive(Default)]
struct Model {
    projects: [MProject; PROJECTS],
    donations: Vec<MDonation>,
    payouts: Vec<MRequest>,
    moves: Vec<MRequest>,
    pool_used: u64,
    donor_used: HashMap<usize, u64>,
    next_txn: u64,
}

/// A seq no event holds: what a step names when it picks an item the model has none of,
/// so the ledger's refusal of an unknown item is exercised too.
const MISSING_SEQ: u64 = 1_000_000;

impl Model {
    /// The seq of the donation a step picks by `index`: one of the gifts, or (one time in
    /// as many as there are gifts, plus one) a seq no gift has.
    fn donation_seq(&self, index: usize) -> (usize, u64) {
        let index = index % (self.donations.len() + 1);
        let seq = self.donations.get(index).map_or(MISSING_SEQ, |d| d.seq);
        (index, seq)
    }
}

fn exists(project: usize) -> bool {
    project < PROJECTS - 1
}

fn covered(project: usize) -> bool {
    project < 2
}

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

fn project_id(p: usize) -> Id {
    id(&format!("p{p}"))
}

fn actor(prefix: &str, n: usize) -> Id {
    id(&format!("{prefix}-{n}"))
}

struct Harness {
    dir: tempfile::TempDir,
    node: Option<Node>,
}

impl Harness {
    async fn open(&mut self) {
        let node = Node::open(NodeConfig {
            data_dir: self.dir.path().to_owned(),
            ledger: Some(id("model")),
            clock: Arc::new(|| T0),
        })
        .await
        .expect("open");
        self.node = Some(node);
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("open")
    }

    async fn restart(&mut self) {
        self.node
            .take()
            .expect("open")
            .shutdown()
            .await
            .expect("shutdown");
        self.open().await;
    }

    async fn submit(&self, actor: Id, command: Command) -> Result<Vec<SealedEvent>, String> {
        self.node()
            .writer
            .submit(Submission::one(actor, command))
            .await
            .map(|o| o.events)
            .map_err(|e| e.to_string())
    }

    async fn live_state(&self) -> Arc<LedgerState> {
        let head = self.node().log.head().await.unwrap();
        self.node()
            .state_at(head.len, Duration::from_secs(10))
            .await
            .expect("projections catch up")
    }

    async fn rebuilt_state(&self) -> LedgerState {
        let mut state = LedgerState::default();
        loop {
            let page = self
                .node()
                .log
                .read(state.position, READ_EVENTS_MAX)
                .await
                .unwrap();
            if page.is_empty() {
                return state;
            }
            for e in &page {
                state.apply(e).unwrap();
            }
        }
    }
}

async fn setup(h: &mut Harness) {
    h.open().await;
    let admin = actor("admin", 0);
    for p in 0..PROJECTS - 1 {
        h.submit(
            admin.clone(),
            Command::OpenProject {
                project: project_id(p),
                kind: ProjectKind::CommunityProject,
                name: Text::new("模型项目").unwrap(),
                currency: Currency::CNY,
                goal_minor: None,
            },
        )
        .await
        .unwrap();
    }
    h.submit(
        admin,
        Command::CommitMatchingPool(MatchingPoolCommitted {
            pool: id("pool"),
            sponsor: Text::new("配捐企业").unwrap(),
            projects: vec![project_id(0), project_id(1)],
            currency: Currency::CNY,
            ratio_numerator: 1,
            ratio_denominator: 1,
            cap_per_donation_minor: Amount::new(CAP_PER_DONATION).unwrap(),
            cap_per_donor_per_day_minor: Amount::new(CAP_PER_DONOR_DAY).unwrap(),
            total_cap_minor: Amount::new(CAP_TOTAL).unwrap(),
            valid_from_ms: T0 - 1,
            valid_until_ms: T0 + 1,
            day_utc_offset_minutes: 480,
        }),
    )
    .await
    .unwrap();
}

/// Applies a step to the model and the ledger; returns an error text on disagreement.
async fn run_step(h: &mut Harness, m: &mut Model, step: &Step) -> Result<(), String> {
    match *step {
        Step::Restart => {
            h.restart().await;
            Ok(())
        }
        Step::Review {
            donation,
            action,
            reviewer,
        } => run_review(h, m, donation, action, reviewer).await,
        Step::Donate {
            project,
            amount,
            fee,
            donor,
        } => {
            let fee = fee.min(amount - 1);
            m.next_txn += 1;
            let command = Command::RecordDonation(DonationInput {
                project: project_id(project),
                amount_minor: Amount::new(amount).unwrap(),
                currency: Currency::CNY,
                channel: Channel::Alipay,
                channel_txn_id: format!("ali-{}", m.next_txn),
                fee_minor: fee,
                pledge_seq: None,
                anonymous: true,
                public_name: None,
                donor_ref: actor("donor", donor),
            });
            let result = h.submit(actor("recorder", 0), command).await;
            if !exists(project) {
                return expect_refused(result, "unknown project");
            }
            let events = result.map_err(|e| format!("donation refused: {e}"))?;
            let matched = if covered(project) {
                let used = m.donor_used.get(&donor).copied().unwrap_or(0);
                amount
                    .min(CAP_PER_DONATION)
                    .min(CAP_PER_DONOR_DAY - used)
                    .min(CAP_TOTAL - m.pool_used)
            } else {
                0
            };
            let expected_events = if matched > 0 { 2 } else { 1 };
            if events.len() != expected_events {
                return Err(format!(
                    "expected {expected_events} events, got {}",
                    events.len()
                ));
            }
            m.pool_used += matched;
            *m.donor_used.entry(donor).or_default() += matched;
            m.projects[project].balance += amount - fee + matched;
            m.donations.push(MDonation {
                seq: events[0].seq(),
                project,
                amount,
                net: amount - fee,
                matched,
                donor,
                refund_seq: None,
                fee_returned: 0,
                review: MReview::None,
            });
            Ok(())
        }
        Step::Refund {
            donation,
            fee_returned,
        } => {
            let (donation, seq) = m.donation_seq(donation);
            let command = Command::RefundDonation {
                donation_seq: seq,
                reason: Text::new("退款").unwrap(),
                fee_returned_minor: (fee_returned > 0).then_some(fee_returned),
            };
            let result = h.submit(actor("recorder", 0), command).await;
            let Some(d) = m.donations.get_mut(donation) else {
                return expect_refused(result, "unknown donation");
            };
            let p = &mut m.projects[d.project];
            // The fee given back is at most the gift's fee and comes back to the project.
            let fee = d.amount - d.net;
            // A match released after review is back in the pool already; one under review
            // goes back with the refund, and its hold with it.
            let matched = if d.review == MReview::Released {
                0
            } else {
                d.matched
            };
            let frozen = if matches!(d.review, MReview::Frozen { .. }) {
                d.matched
            } else {
                0
            };
            if d.refund_seq.is_some()
                || fee_returned > fee
                || p.available() + frozen < d.amount + matched - fee_returned
            {
                return expect_refused(result, "refunded, fee over, or not enough money");
            }
            let events = result.map_err(|e| format!("refund refused: {e}"))?;
            d.refund_seq = Some(events[0].seq());
            d.fee_returned = fee_returned;
            p.balance -= d.amount + matched - fee_returned;
            p.fees_returned += fee_returned;
            p.frozen -= frozen;
            if frozen > 0 {
                d.review = MReview::None;
            }
            m.pool_used -= matched;
            *m.donor_used.get_mut(&d.donor).unwrap() -= matched;
            Ok(())
        }
        Step::ReturnFee {
            refund,
            gift_seq,
            fee,
        } => {
            let refunded: Vec<usize> = (0..m.donations.len())
                .filter(|i| m.donations[*i].refund_seq.is_some())
                .collect();
            let donation = (!refunded.is_empty()).then(|| refunded[refund % refunded.len()]);
            let seq = donation.map_or(MISSING_SEQ, |i| {
                let d = &m.donations[i];
                if gift_seq {
                    d.seq
                } else {
                    d.refund_seq.expect("refunded")
                }
            });
            let command = Command::RecordRefundFeeReturned {
                refund_seq: seq,
                fee_returned_minor: fee,
                reason: Text::new("退款手续费退回").unwrap(),
            };
            let result = h.submit(actor("recorder", 0), command).await;
            let Some(d) = donation.map(|i| &mut m.donations[i]) else {
                return expect_refused(result, "no refund at that seq");
            };
            // Only a refund's seq is taken, and a fee of 1 up to what is left of the gift's.
            if gift_seq || fee == 0 || d.fee_returned + fee > d.amount - d.net {
                return expect_refused(result, "not a refund, fee 0, or more than the fee");
            }
            result.map_err(|e| format!("fee returned refused: {e}"))?;
            d.fee_returned += fee;
            let p = &mut m.projects[d.project];
            p.balance += fee;
            p.fees_returned += fee;
            Ok(())
        }
        Step::Payout {
            project,
            amount,
            requester,
        } => {
            let command = Command::RequestPayout(PayoutRequested {
                project: project_id(project),
                amount_minor: Amount::new(amount).unwrap(),
                currency: Currency::CNY,
                payee: Text::new("服务中心").unwrap(),
                purpose: Text::new("服务费用").unwrap(),
                document_sha256: sha256(b"doc"),
            });
            let result = h.submit(actor("finance", requester), command).await;
            if !exists(project) || m.projects[project].available() < amount {
                return expect_refused(result, "unknown project or not enough money");
            }
            let events = result.map_err(|e| format!("payout refused: {e}"))?;
            m.projects[project].requested += amount;
            m.payouts.push(MRequest {
                seq: events[0].seq(),
                from: project,
                to: None,
                amount,
                requester,
                status: Status::Requested,
            });
            Ok(())
        }
        Step::Decide {
            payout,
            approver,
            approve,
        } => {
            let seq = m.payouts.get(payout).map(|r| r.seq).unwrap_or(MISSING_SEQ);
            let command = if approve {
                Command::ApprovePayout { payout_seq: seq }
            } else {
                Command::RejectPayout {
                    payout_seq: seq,
                    reason: Text::new("驳回").unwrap(),
                }
            };
            let result = h.submit(actor("finance", approver), command).await;
            let Some(r) = m.payouts.get_mut(payout) else {
                return expect_refused(result, "unknown payout");
            };
            if r.status != Status::Requested || r.requester == approver {
                return expect_refused(result, "not pending, or four eyes");
            }
            result.map_err(|e| format!("decision refused: {e}"))?;
            let p = &mut m.projects[r.from];
            p.requested -= r.amount;
            if approve {
                p.committed += r.amount;
                r.status = Status::Approved;
            } else {
                r.status = Status::Rejected;
            }
            Ok(())
        }
        Step::Disburse { payout } => {
            let seq = m.payouts.get(payout).map(|r| r.seq).unwrap_or(MISSING_SEQ);
            let command = Command::DisbursePayout {
                payout_seq: seq,
                bank_reference: "BANK-1".into(),
            };
            let result = h.submit(actor("finance", 0), command).await;
            let Some(r) = m.payouts.get_mut(payout) else {
                return expect_refused(result, "unknown payout");
            };
            if r.status != Status::Approved {
                return expect_refused(result, "not approved");
            }
            result.map_err(|e| format!("disbursement refused: {e}"))?;
            let p = &mut m.projects[r.from];
            p.committed -= r.amount;
            p.balance -= r.amount;
            r.status = Status::Disbursed;
            Ok(())
        }
        Step::Move {
            from,
            to,
            amount,
            requester,
        } => {
            let command = Command::RequestMove(MoveRequested {
                from_project: project_id(from),
                to_project: project_id(to),
                amount_minor: Amount::new(amount).unwrap(),
                currency: Currency::CNY,
                reason: Text::new("调剂").unwrap(),
            });
            let result = h.submit(actor("finance", requester), command).await;
            if !exists(from) || !exists(to) || from == to || m.projects[from].available() < amount {
                return expect_refused(result, "bad move");
            }
            let events = result.map_err(|e| format!("move refused: {e}"))?;
            m.projects[from].requested += amount;
            m.moves.push(MRequest {
                seq: events[0].seq(),
                from,
                to: Some(to),
                amount,
                requester,
                status: Status::Requested,
            });
            Ok(())
        }
        Step::DecideMove { request, approver } => {
            let seq = m.moves.get(request).map(|r| r.seq).unwrap_or(MISSING_SEQ);
            let result = h
                .submit(
                    actor("finance", approver),
                    Command::ApproveMove { move_seq: seq },
                )
                .await;
            let Some(r) = m.moves.get_mut(request) else {
                return expect_refused(result, "unknown move");
            };
            if r.status != Status::Requested || r.requester == approver {
                return expect_refused(result, "not pending, or four eyes");
            }
            result.map_err(|e| format!("move approval refused: {e}"))?;
            m.projects[r.from].requested -= r.amount;
            m.projects[r.from].balance -= r.amount;
            m.projects[r.to.unwrap()].balance += r.amount;
            r.status = Status::Approved;
            Ok(())
        }
    }
}

/// A review step: freeze (a match neither under review nor released, of a gift not
/// refunded, that the project still has available), unfreeze (a frozen match), release
/// after review (a frozen match, by another reviewer than the one who froze it).
async fn run_review(
    h: &mut Harness,
    m: &mut Model,
    donation: usize,
    action: ReviewAction,
    reviewer: usize,
) -> Result<(), String> {
    let (donation, seq) = m.donation_seq(donation);
    let reason = Text::new("审核").unwrap();
    let command = match action {
        ReviewAction::Freeze => Command::FreezeMatch {
            donation_seq: seq,
            reason,
        },
        ReviewAction::Unfreeze => Command::UnfreezeMatch {
            donation_seq: seq,
            reason,
        },
        ReviewAction::Release => Command::ReleaseMatch {
            donation_seq: seq,
            reason,
        },
    };
    let result = h.submit(actor("risk", reviewer), command).await;
    let Some(d) = m.donations.get_mut(donation) else {
        return expect_refused(result, "unknown donation");
    };
    if d.matched == 0 || d.refund_seq.is_some() {
        return expect_refused(result, "no match, or refunded");
    }
    let p = &mut m.projects[d.project];
    match (action, d.review) {
        (ReviewAction::Freeze, MReview::None) if p.available() >= d.matched => {
            result.map_err(|e| format!("freeze refused: {e}"))?;
            d.review = MReview::Frozen { by: reviewer };
            p.frozen += d.matched;
        }
        (ReviewAction::Unfreeze, MReview::Frozen { .. }) => {
            result.map_err(|e| format!("unfreeze refused: {e}"))?;
            d.review = MReview::None;
            p.frozen -= d.matched;
        }
        (ReviewAction::Release, MReview::Frozen { by }) if by != reviewer => {
            result.map_err(|e| format!("release refused: {e}"))?;
            d.review = MReview::Released;
            p.frozen -= d.matched;
            p.balance -= d.matched;
            m.pool_used -= d.matched;
            *m.donor_used.get_mut(&d.donor).unwrap() -= d.matched;
        }
        _ => return expect_refused(result, "wrong review state, money spent, or four eyes"),
    }
    Ok(())
}

fn expect_refused(result: Result<Vec<SealedEvent>, String>, why: &str) -> Result<(), String> {
    match result {
        Err(_) => Ok(()),
        Ok(events) => Err(format!(
            "the ledger accepted what the model refuses ({why}): {events:?}"
        )),
    }
}

async fn check(h: &Harness, m: &Model) -> Result<(), String> {
    let live = h.live_state().await;
    for p in 0..PROJECTS {
        let id = project_id(p);
        let Some(project) = live.projects.get(&id) else {
            if exists(p) {
                return Err(format!("project {id} is missing"));
            }
            continue;
        };
        let b = &project.balances;
        let balance = b
            .balance()
            .ok_or("conservation broke: balance below zero")?;
        let available = b.available().ok_or("available below zero")?;
        // Conservation, to the fen.
        let lhs = b.raised as i128 + b.matched as i128
            - b.refunded as i128
            - b.paid_out as i128
            - b.moved_out as i128
            + b.moved_in as i128
            + b.fees_returned as i128;
        if lhs != balance as i128 || b.raised != b.raised_gross - b.fees {
            return Err(format!("{id}: conservation: {b:?}"));
        }
        // The project's index of its gifts is exactly its gifts, in order.
        let indexed: Vec<u64> = project.donations.iter().copied().collect();
        let gifts: Vec<u64> = m
            .donations
            .iter()
            .filter(|d| d.project == p)
            .map(|d| d.seq)
            .collect();
        if indexed != gifts {
            return Err(format!("{id}: indexed gifts {indexed:?}, model {gifts:?}"));
        }
        let mp = &m.projects[p];
        if (
            balance,
            available,
            b.committed,
            b.requested,
            b.fees_returned,
            b.frozen,
        ) != (
            mp.balance,
            mp.available(),
            mp.committed,
            mp.requested,
            mp.fees_returned,
            mp.frozen,
        ) {
            return Err(format!("{id}: ledger {b:?} vs model {mp:?}"));
        }
    }
    if live.pools[&id("pool")].used() != m.pool_used {
        return Err("pool usage differs from the model".into());
    }
    for d in &m.donations {
        let fee_returned = live.donations[&d.seq].fee_returned_minor;
        if fee_returned != d.fee_returned {
            return Err(format!(
                "donation {}: fee returned {fee_returned}, model {}",
                d.seq, d.fee_returned
            ));
        }
        let review = (
            live.match_frozen(d.seq).is_some(),
            live.match_released_after_review(d.seq).is_some(),
        );
        let expected = (
            matches!(d.review, MReview::Frozen { .. }),
            d.review == MReview::Released,
        );
        if review != expected {
            return Err(format!(
                "donation {}: (frozen, released after review) {review:?}, model {:?}",
                d.seq, d.review
            ));
        }
    }
    let rebuilt = h.rebuilt_state().await;
    if encode_state(&rebuilt) != encode_state(&live) {
        return Err("rebuilt projections differ from the live ones".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_model(steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let result: Result<(), String> = rt.block_on(async {
            let mut h = Harness { dir: tempfile::tempdir().unwrap(), node: None };
            let mut m = Model::default();
            setup(&mut h).await;
            for (i, step) in steps.iter().enumerate() {
                run_step(&mut h, &mut m, step).await.map_err(|e| format!("step {i} {step:?}: {e}"))?;
                check(&h, &m).await.map_err(|e| format!("after step {i} {step:?}: {e}"))?;
            }
            h.node.take().unwrap().shutdown().await.map_err(|e| e.to_string())?;
            Ok(())
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}
