//! The ledger state: balances, pools, pledges, donations, payouts, moves and idempotency keys.
//! The write side checks commands against it; the read side serves it. A pure fold.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet, Vector};

use events::{
    Amount, Channel, Currency, EventBody, EventRecord, Hash, Id, ProjectKind, ReceiptCode,
    Resolution, SealedEvent, StaffRole, StatementLineKind, StatementLineRecorded, StatementSource,
    Text,
};
use serde::{Deserialize, Serialize};

use crate::receipts::ReceiptIndex;
use crate::ProjectionError;

/// Money figures of one project, in minor units of its currency.
///
/// Conservation: `balance = raised + matched + fees_returned − refunded − paid_out −
/// moved_out + moved_in`, where `raised` is net of channel fees (`raised_gross − fees`),
/// `matched` is net of released matches and `fees_returned` is what channels gave back of
/// their fees on refunds. `available = balance − committed − requested − frozen`: money
/// neither promised to an approved payout, nor reserved by a pending payout or move, nor a
/// match held for review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub raised_gross: u64,
    pub fees: u64,
    pub raised: u64,
    pub matched: u64,
    pub refunded: u64,
    /// Channel fees given back on refunds (`DonationRefunded::fee_returned_minor`, and
    /// `RefundFeeReturned` for a fee given back that the refund did not record): the
    /// project's money again. `fees` stays what was charged, so each field is a sum of events.
    pub fees_returned: u64,
    pub paid_out: u64,
    pub moved_in: u64,
    pub moved_out: u64,
    /// Approved payouts not yet disbursed.
    pub committed: u64,
    /// Pending payout and move requests (reserved until approved or rejected).
    pub requested: u64,
    /// Matches held for review (`MatchFrozen`, until unfrozen, released after review or
    /// released with their gift's refund): still the project's (in `matched`), not
    /// spendable.
    pub frozen: u64,
}

impl Balances {
    /// Money the project holds: `raised + matched + fees_returned − refunded − paid_out −
    /// moved_out + moved_in`. `None` would mean the conservation rule broke, or a sum
    /// overflowed (the write side keeps a project's money below `2^62`): a bug, reported by
    /// the fold.
    pub fn balance(&self) -> Option<u64> {
        self.raised
            .checked_add(self.matched)?
            .checked_add(self.moved_in)?
            .checked_add(self.fees_returned)?
            .checked_sub(self.refunded)?
            .checked_sub(self.paid_out)?
            .checked_sub(self.moved_out)
    }
    /// Money received towards a goal: gifts net of refunds (gross: the fees are the
    /// project's cost), matches net of those released, and moves in.
    pub fn received(&self) -> u64 {
        self.raised_gross
            .saturating_sub(self.refunded)
            .saturating_add(self.matched)
            .saturating_add(self.moved_in)
    }
    /// Money free for new payouts, moves and refunds: the balance less what approved
    /// payouts, pending requests and matches under review hold.
    pub fn available(&self) -> Option<u64> {
        self.balance()?
            .checked_sub(self.committed)?
            .checked_sub(self.requested)?
            .checked_sub(self.frozen)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: Id,
    pub kind: ProjectKind,
    pub name: Text,
    pub currency: Currency,
    pub goal_minor: Option<Amount>,
    pub open: bool,
    pub opened_seq: u64,
    pub balances: Balances,
    pub donation_count: u64,
    pub donors: OrdSet<Id>,
    /// The seqs of every donation to the project, in order (an index into
    /// `LedgerState::donations`): the project's pages walk its own gifts, not every gift of
    /// the ledger. A vector, as gifts only ever come after the last one: adding one is a
    /// push onto its tail, not a search down a tree (serialized as the same sequence).
    pub donations: Vector<u64>,
    /// The seqs of every payout requested for the project (an index into
    /// `LedgerState::payouts`). Payouts are few: each one is backed by money and approved.
    pub payouts: OrdSet<u64>,
}

/// How many of a project's latest donations [`Project::recent_donations`] gives.
pub const RECENT_DONATIONS_MAX: usize = 20;

impl Project {
    /// The seqs of the project's latest donations, newest first, at most
    /// [`RECENT_DONATIONS_MAX`].
    pub fn recent_donations(&self) -> impl Iterator<Item = u64> + '_ {
        self.donations
            .iter()
            .rev()
            .take(RECENT_DONATIONS_MAX)
            .copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donation {
    pub seq: u64,
    pub ts_ms: u64,
    pub project: Id,
    pub amount_minor: u64,
    pub fee_minor: u64,
    pub currency: Currency,
    pub channel: Channel,
    pub channel_txn_id: Arc<str>,
    pub donor_ref: Id,
    /// The name the donor chose to be shown publicly; `None` when anonymous or not given.
    pub public_name: Option<Text>,
    pub anonymous: bool,
    pub pledge_seq: Option<u64>,
    pub receipt_code: ReceiptCode,
    /// The match this donation triggered: pool and amount.
    pub matched: Option<(Id, u64)>,
    pub refunded_seq: Option<u64>,
    /// When the refund was recorded.
    pub refunded_ts_ms: Option<u64>,
    /// The part of the fee the channel gave back on the refund: recorded with the refund,
    /// plus every correction since (`RefundFeeReturned`; [`LedgerState::fee_returns_after`]
    /// dates those). 0 when it kept it all (or the gift is not refunded). A plain integer,
    /// not an option: every gift carries it.
    pub fee_returned_minor: u64,
}

/// A fee a channel gave back on a refund after the refund was recorded (a
/// `RefundFeeReturned`): when it was recorded, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateFeeReturn {
    pub ts_ms: u64,
    pub fee_returned_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: Id,
    pub sponsor: Text,
    pub projects: Vec<Id>,
    pub currency: Currency,
    pub ratio_numerator: u32,
    pub ratio_denominator: u32,
    pub cap_per_donation_minor: u64,
    pub cap_per_donor_per_day_minor: u64,
    pub total_cap_minor: u64,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    pub day_utc_offset_minutes: i32,
    pub open: bool,
    pub committed_seq: u64,
    pub allocated: u64,
    pub released: u64,
    /// Matching money the sponsor has paid in (booked from bank statement lines).
    pub received: u64,
    /// Matched money per (donor, day number), net of releases.
    pub per_donor_day: OrdMap<(Id, i64), u64>,
}

impl Pool {
    /// Allocated and not released.
    pub fn used(&self) -> u64 {
        self.allocated - self.released
    }
    pub fn remaining(&self) -> u64 {
        self.total_cap_minor.saturating_sub(self.used())
    }
    /// The day number of a timestamp in the pool's time zone.
    pub fn day_of(&self, ts_ms: u64) -> i64 {
        let local_ms = ts_ms as i64 + i64::from(self.day_utc_offset_minutes) * 60_000;
        local_ms.div_euclid(86_400_000)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pledge {
    pub seq: u64,
    pub project: Id,
    pub sponsor: Text,
    pub amount_minor: u64,
    pub currency: Currency,
    pub fulfilled: u64,
    pub cancelled: bool,
}

impl Pledge {
    pub fn outstanding(&self) -> u64 {
        if self.cancelled {
            0
        } else {
            self.amount_minor.saturating_sub(self.fulfilled)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestStatus {
    Requested,
    Approved,
    Rejected,
    Disbursed,
}

impl RequestStatus {
    /// The status as the events' readers (HTTP, reports) name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Requested => "requested",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Disbursed => "disbursed",
        }
    }
}

/// A payout or a move between projects: requested by one person, decided by another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub seq: u64,
    pub ts_ms: u64,
    pub requested_by: Id,
    /// The admin who issued the token the request was made with (the event's
    /// `token_issuer`), if it was issued through the API.
    pub requester_token_issuer: Option<Id>,
    pub project: Id,
    /// For moves, the receiving project.
    pub to_project: Option<Id>,
    pub amount_minor: u64,
    pub currency: Currency,
    pub status: RequestStatus,
    pub decided_by: Option<Id>,
    pub decided_seq: Option<u64>,
    pub decided_ts_ms: Option<u64>,
    /// Payouts only: who is paid, for what, and the SHA-256 of the supporting document.
    pub payee: Option<Text>,
    pub purpose: Option<Text>,
    pub document_sha256: Option<Hash>,
    /// Moves only: why the money moves.
    pub reason: Option<Text>,
    /// Payouts only: when the money left (the `PayoutDisbursed` event).
    pub disbursed_seq: Option<u64>,
    pub disbursed_ts_ms: Option<u64>,
    /// Payouts: the bank's reference of the transfer, once disbursed.
    pub bank_reference: Option<String>,
}

/// A match held for review (`MatchFrozen`), and how the review ended if it sent the match
/// back to its pool (`MatchRevoked`). A review the match passed (`MatchUnfrozen`), or one
/// a refund of the gift ended (its `MatchReleased`), leaves nothing here: the log keeps
/// its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchHold {
    pub donation_seq: u64,
    pub pool: Id,
    pub project: Id,
    pub amount_minor: u64,
    pub frozen_seq: u64,
    pub frozen_ts_ms: u64,
    /// The actor of the freeze, and the admin who issued their token (if through the API):
    /// neither may release the match after review (four eyes).
    pub frozen_by: Id,
    pub frozen_token_issuer: Option<Id>,
    pub reason: Text,
    /// The `MatchRevoked` that released the match after review, and when.
    pub released_seq: Option<u64>,
    pub released_ts_ms: Option<u64>,
}

impl MatchHold {
    /// Still under review: held, not yet released.
    pub fn is_frozen(&self) -> bool {
        self.released_seq.is_none()
    }

    /// Whether the one releasing the match (`actor`, with a token from `token_issuer`)
    /// shares a hand with the one who froze it or the issuer of their token.
    pub fn shared_hand<'a>(
        &'a self,
        actor: &'a Id,
        token_issuer: Option<&'a Id>,
    ) -> Option<SharedHand<'a>> {
        shared_hand(
            (&self.frozen_by, self.frozen_token_issuer.as_ref()),
            (actor, token_issuer),
        )
    }
}

/// Someone who could act both for a request and for a decision on it: the four-eyes rule
/// is broken. A request or decision could be made by its actor, and by the admin who issued
/// the actor's token (who saw it when it was made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedHand<'a> {
    pub person: &'a Id,
    /// The person issued the token the request was made with (else they made it).
    pub issued_request_token: bool,
    /// The person issued the token the decision is made with (else they make it).
    pub issued_decision_token: bool,
}

impl Request {
    /// Whether the decider (`actor`, acting with a token from `token_issuer`) shares a hand
    /// with the request's requester or the issuer of the requester's token.
    pub fn shared_hand<'a>(
        &'a self,
        actor: &'a Id,
        token_issuer: Option<&'a Id>,
    ) -> Option<SharedHand<'a>> {
        shared_hand(
            (&self.requested_by, self.requester_token_issuer.as_ref()),
            (actor, token_issuer),
        )
    }
}

/// The person behind both a first step (a request, a freeze: its actor and the issuer of
/// their token) and a second one that must be someone else's (a decision, a release after
/// review), if any.
fn shared_hand<'a>(
    (first_actor, first_issuer): (&'a Id, Option<&'a Id>),
    (actor, token_issuer): (&'a Id, Option<&'a Id>),
) -> Option<SharedHand<'a>> {
    let first = [(Some(first_actor), false), (first_issuer, true)];
    let second = [(Some(actor), false), (token_issuer, true)];
    first.iter().find_map(|&(r, issued_request_token)| {
        second.iter().find_map(|&(d, issued_decision_token)| {
            (r.is_some() && r == d).then(|| SharedHand {
                person: r.expect("checked"),
                issued_request_token,
                issued_decision_token,
            })
        })
    })
}

/// An imported statement and the lines recorded so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub seq: u64,
    pub ts_ms: u64,
    pub sha256: Hash,
    pub source: StatementSource,
    pub account: String,
    pub currency: Currency,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub line_count: u64,
    pub lines_recorded: u64,
    /// The lines recorded so far, in order (line `n` at index `n - 1`). A persistent vector:
    /// lines come in order, so its chunks fill up, and a copy of the state shares them.
    pub lines: Vector<StatementLine>,
}

impl Statement {
    /// Every line announced has been recorded.
    pub fn is_complete(&self) -> bool {
        self.lines_recorded == self.line_count
    }

    /// The recorded line `line_no` (1-based).
    pub fn line(&self, line_no: u64) -> Option<&StatementLine> {
        self.lines
            .get(usize::try_from(line_no.checked_sub(1)?).ok()?)
    }
}

/// What the ledger keeps of a recorded statement line: what the write side needs to tell,
/// without reading the log, whether the reconciliation matches the line by reference and
/// whether a resolution fits the line (its direction, amount and fee). The references kept
/// are those the reference rule can still consult (see `crate::reconcile`):
/// - a payment or bank credit keeps its `reference`, and its `original_reference` only if no
///   donation of the statement's channel had the reference when the line was recorded (a
///   donation is never removed and a channel transaction is recorded once, so the rule,
///   which tries the original reference only when the reference finds nothing, would never
///   consult it);
/// - a refund keeps only its `original_reference` (the payment it refunds);
/// - a bank debit keeps only its `reference` (a payout's bank reference).
///
/// A reference equal to a donation's channel transaction id shares its string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub kind: StatementLineKind,
    /// Gross, as the statement says (for a refund: the amount returned).
    pub amount_minor: u64,
    /// Signed, as the line records it: positive charged, negative given back.
    pub fee_minor: i64,
    pub currency: Currency,
    pub reference: Option<Arc<str>>,
    pub original_reference: Option<Arc<str>>,
    /// When the bank or channel booked it: with the account, reference and amount, what
    /// tells one bank credit shown by two statements (overlapping exports) from another.
    pub booked_ms: u64,
}

/// How and when staff resolved a reconciliation exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedException {
    pub seq: u64,
    pub resolution: Resolution,
}

/// What a reconciliation exception is about: a statement line, or a ledger entry (a
/// donation or payout seq) that the statement lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ExceptionKey {
    Line(u64),
    Entry(u64),
}

/// What a command with an idempotency key produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentResult {
    pub command_sha256: Hash,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// The whole state, folded from the log. Ordered maps and vectors only (the receipt index, a
/// hash table, is not serialized), so serialized state is a pure function of the events
/// (byte-identical on rebuild). The maps are persistent (structurally shared): a clone is
/// O(1), which lets the writer try a command on a copy and lets readers hold a snapshot while
/// the writer goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// Events applied: the next seq expected.
    pub position: u64,
    pub head: Hash,
    pub last_ts_ms: u64,
    pub projects: OrdMap<Id, Project>,
    pub pools: OrdMap<Id, Pool>,
    pub pledges: OrdMap<u64, Pledge>,
    /// Each donation behind its own `Arc`: a map node then holds 16 pointers rather than 16
    /// donations, so appending (which leaves nodes half full) and copying a node on write
    /// (the writer works on a copy of the state) move pointers, not records. Serialized as
    /// the donations themselves.
    pub donations: OrdMap<u64, Arc<Donation>>,
    /// Receipt number (the 64 bits a receipt code spells) → donation seq, as candidates
    /// checked against `donations` (see [`crate::receipts`]); use
    /// [`Self::donation_with_receipt`].
    /// Not serialized: it is rebuilt from `donations`.
    #[serde(skip, default = "ReceiptIndex::unbuilt")]
    pub receipts: ReceiptIndex,
    /// The ledger's id, from its first event (receipt codes are derived from it).
    pub ledger: Option<Id>,
    pub payouts: OrdMap<u64, Request>,
    pub moves: OrdMap<u64, Request>,
    pub idempotency: OrdMap<String, IdempotentResult>,
    /// Refunds: the refund's seq to the donation's.
    pub refunds: OrdMap<u64, u64>,
    /// Fees given back on refunds after they were recorded, by (refund seq, the
    /// correction's seq). Few: one per refund recorded without the fee its bill shows.
    pub late_fee_returns: OrdMap<(u64, u64), LateFeeReturn>,
    pub statements: OrdMap<u64, Statement>,
    /// Statements by the SHA-256 of their file.
    pub statement_digests: OrdMap<Hash, u64>,
    /// Resolved reconciliation exceptions by (statement seq, what).
    pub resolved: OrdMap<(u64, ExceptionKey), ResolvedException>,
    /// (reference, statement seq, line number) for every reference a [`StatementLine`]
    /// keeps: the lines that may name a given ledger entry, in one statement (a range of
    /// the reference and the statement) or in all of them (a range of the reference).
    pub statement_references: OrdSet<(Arc<str>, u64, u64)>,
    /// (entry seq, statement seq, line number) for every line staff linked to a ledger
    /// entry (`ExceptionResolved` with `linked`): the lines linked to a given entry, in one
    /// statement or in all of them.
    pub linked_lines: OrdSet<(u64, u64, u64)>,
    /// Staff tokens by their public id, as the log records their issue and revocation.
    pub staff_tokens: OrdMap<String, StaffToken>,
    /// Matches under review, and those a review released, by the donation's seq. Few: the
    /// matches risk control looks at.
    pub match_holds: OrdMap<u64, MatchHold>,
}

/// A staff token's grant as the log records it (the token itself is never in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffToken {
    pub holder: Id,
    pub role: StaffRole,
    pub issued_seq: u64,
    /// The actor of the issuing event: the admin who issued it.
    pub issued_by: Id,
    pub revoked_seq: Option<u64>,
}

fn invariant(seq: u64, what: impl Into<String>) -> ProjectionError {
    ProjectionError::Invariant {
        seq,
        what: what.into(),
    }
}

fn add(a: &mut u64, b: u64, seq: u64) -> Result<(), ProjectionError> {
    *a = a
        .checked_add(b)
        .ok_or_else(|| invariant(seq, "a figure overflowed u64"))?;
    Ok(())
}

fn sub(a: &mut u64, b: u64, seq: u64, what: &str) -> Result<(), ProjectionError> {
    *a = a
        .checked_sub(b)
        .ok_or_else(|| invariant(seq, format!("{what} would go below zero")))?;
    Ok(())
}

impl LedgerState {
    /// A project's donations in seq order (none for an unknown project), through its index:
    /// a project's pages cost its own gifts, not every gift of the ledger.
    pub fn project_donations<'a>(&'a self, project: &Id) -> impl Iterator<Item = &'a Donation> {
        self.projects
            .get(project)
            .into_iter()
            .flat_map(|p| p.donations.iter())
            .filter_map(|seq| self.donations.get(seq).map(|d| &**d))
    }

    /// This state's donation whose receipt code spells `number`.
    pub fn donation_with_receipt(&self, number: u64) -> Option<&Donation> {
        let mut found = None;
        self.built_receipts().find(number, |seq| {
            found = self.donation_holding(seq, number);
            found.is_some()
        });
        found
    }

    /// The receipt index, filled from the donations first if this state was read back from
    /// a snapshot.
    fn built_receipts(&self) -> &ReceiptIndex {
        self.receipts.ensure_built(|| {
            self.donations
                .values()
                .map(|d| (d.receipt_code.number(), d.seq))
                .collect()
        });
        &self.receipts
    }

    /// This state's donation at `seq`, if its receipt number is `number`.
    fn donation_holding(&self, seq: u64, number: u64) -> Option<&Donation> {
        self.donations
            .get(&seq)
            .map(|d| &**d)
            .filter(|d| d.receipt_code.number() == number)
    }

    /// The donation a receipt code names.
    pub fn donation_by_receipt(&self, code: &str) -> Option<&Donation> {
        self.donation_with_receipt(events::receipt_number(code)?)
            .filter(|d| d.receipt_code.as_str() == code)
    }

    /// The donation recorded for a channel's transaction id: found through its receipt code,
    /// which is derived from the ledger, the channel and the id.
    pub fn donation_by_channel_txn(&self, channel: Channel, txn_id: &str) -> Option<&Donation> {
        let code = events::receipt_code(self.ledger.as_ref()?, channel, txn_id);
        self.donation_by_receipt(&code)
            .filter(|d| d.channel == channel && &*d.channel_txn_id == txn_id)
    }

    /// Applies one sealed event.
    pub fn apply(&mut self, event: &SealedEvent) -> Result<(), ProjectionError> {
        self.apply_record(event.record(), event.hash())
    }

    /// Applies one event record with its hash. Events must come in order.
    pub fn apply_record(&mut self, r: &EventRecord, hash: Hash) -> Result<(), ProjectionError> {
        let seq = r.seq;
        if seq != self.position {
            return Err(ProjectionError::OutOfOrder {
                expected: self.position,
                found: seq,
            });
        }
        if r.ts_ms < self.last_ts_ms {
            return Err(invariant(seq, "the timestamp went backwards"));
        }
        if self.ledger.is_none() {
            self.ledger = Some(r.ledger.clone());
        } else if self.ledger.as_ref() != Some(&r.ledger) {
            return Err(invariant(seq, "an event of another ledger"));
        }
        self.apply_body(r)?;
        if let Some(idem) = &r.idempotency {
            let entry = self
                .idempotency
                .entry(idem.key.clone())
                .or_insert(IdempotentResult {
                    command_sha256: idem.command_sha256,
                    first_seq: seq,
                    last_seq: seq,
                });
            if entry.command_sha256 != idem.command_sha256 {
                return Err(invariant(seq, "an idempotency key was reused"));
            }
            entry.last_seq = seq;
        }
        for project in self.touched_projects(&r.body).into_iter().flatten() {
            let p = &self.projects[project];
            if p.balances.available().is_none() {
                return Err(invariant(
                    seq,
                    format!("project {project}'s available balance went below zero"),
                ));
            }
        }
        self.position = seq + 1;
        self.head = hash;
        self.last_ts_ms = r.ts_ms;
        Ok(())
    }

    /// The projects whose money an event changes: at most two (a move's).
    fn touched_projects<'a>(&'a self, body: &'a EventBody) -> [Option<&'a Id>; 2] {
        match body {
            EventBody::ProjectOpened(e) => [Some(&e.project), None],
            EventBody::DonationReceived(e) => [Some(&e.project), None],
            EventBody::MatchAllocated(e) => [Some(&e.project), None],
            EventBody::MatchReleased(e) => [Some(&e.project), None],
            EventBody::MatchFrozen(e)
            | EventBody::MatchUnfrozen(e)
            | EventBody::MatchRevoked(e) => [Some(&e.project), None],
            EventBody::DonationRefunded(_) | EventBody::RefundFeeReturned(_) => {
                [self.fee_returned_by(body).map(|(d, _)| &d.project), None]
            }
            EventBody::PayoutRequested(e) => [Some(&e.project), None],
            EventBody::MoveRequested(e) => [Some(&e.from_project), Some(&e.to_project)],
            EventBody::PayoutApproved(d) | EventBody::MoveApproved(d) => {
                self.request_projects(d.request_seq)
            }
            EventBody::PayoutRejected(d) | EventBody::MoveRejected(d) => {
                self.request_projects(d.request_seq)
            }
            EventBody::PayoutDisbursed(e) => self.request_projects(e.payout_seq),
            _ => [None, None],
        }
    }

    fn request_projects(&self, seq: u64) -> [Option<&Id>; 2] {
        match self.payouts.get(&seq).or_else(|| self.moves.get(&seq)) {
            Some(r) => [Some(&r.project), r.to_project.as_ref()],
            None => [None, None],
        }
    }

    fn project_mut(&mut self, id: &Id, seq: u64) -> Result<&mut Project, ProjectionError> {
        self.projects
            .get_mut(id)
            .ok_or_else(|| invariant(seq, format!("unknown project {id}")))
    }

    fn donation_mut(
        &mut self,
        donation_seq: u64,
        seq: u64,
    ) -> Result<&mut Donation, ProjectionError> {
        let d = self
            .donations
            .get_mut(&donation_seq)
            .ok_or_else(|| invariant(seq, format!("unknown donation {donation_seq}")))?;
        Ok(Arc::make_mut(d))
    }

    /// A refunded gift's channel gave back `fee` more of its fee (on the refund, or in a
    /// correction after it): the gift's `fee_returned_minor` and its project's
    /// `fees_returned` rise by it. Together at most the gift's fee.
    fn return_fee(&mut self, donation_seq: u64, fee: u64, seq: u64) -> Result<(), ProjectionError> {
        let d = self.donation_mut(donation_seq, seq)?;
        let returned = d
            .fee_returned_minor
            .checked_add(fee)
            .filter(|returned| *returned <= d.fee_minor)
            .ok_or_else(|| {
                invariant(
                    seq,
                    format!(
                        "a fee of {fee} given back on top of {} would be more than the gift's {}",
                        d.fee_returned_minor, d.fee_minor
                    ),
                )
            })?;
        d.fee_returned_minor = returned;
        let project = d.project.clone();
        add(
            &mut self.project_mut(&project, seq)?.balances.fees_returned,
            fee,
            seq,
        )
    }

    /// The refunded gift whose fee an event gives back (in part), and how much: a refund's
    /// `fee_returned_minor` (0 when it kept none), or a later correction's. `None` for any
    /// other event, or one naming no refunded gift of this state. Read against the state
    /// before the event, so journals and reports book both the same way.
    pub fn fee_returned_by(&self, body: &EventBody) -> Option<(&Donation, u64)> {
        match body {
            EventBody::DonationRefunded(e) => Some((
                self.donations.get(&e.donation_seq)?,
                e.fee_returned_minor.unwrap_or(0),
            )),
            EventBody::RefundFeeReturned(e) => Some((
                self.donations.get(self.refunds.get(&e.refund_seq)?)?,
                e.fee_returned_minor,
            )),
            _ => None,
        }
    }

    /// The fees given back on the refund `refund_seq` after it was recorded, by the seq of
    /// each correction, in order.
    pub fn fee_returns_after(
        &self,
        refund_seq: u64,
    ) -> impl Iterator<Item = (u64, &LateFeeReturn)> + '_ {
        self.late_fee_returns
            .range((refund_seq, 0)..=(refund_seq, u64::MAX))
            .map(|((_, seq), late)| (*seq, late))
    }

    /// The part of a refunded gift's fee that its refund itself gave back: its
    /// `fee_returned_minor` less what corrections added since.
    pub fn fee_returned_at_refund(&self, d: &Donation) -> u64 {
        let later: u64 = d
            .refunded_seq
            .map(|refund_seq| {
                self.fee_returns_after(refund_seq)
                    .map(|(_, late)| late.fee_returned_minor)
                    .sum()
            })
            .unwrap_or(0);
        d.fee_returned_minor - later
    }

    fn apply_body(&mut self, r: &EventRecord) -> Result<(), ProjectionError> {
        let seq = r.seq;
        match &r.body {
            EventBody::ProjectOpened(e) => {
                if self.projects.contains_key(&e.project) {
                    return Err(invariant(
                        seq,
                        format!("project {} opened twice", e.project),
                    ));
                }
                self.projects.insert(
                    e.project.clone(),
                    Project {
                        id: e.project.clone(),
                        kind: e.kind,
                        name: e.name.clone(),
                        currency: e.currency,
                        goal_minor: e.goal_minor,
                        open: true,
                        opened_seq: seq,
                        balances: Balances::default(),
                        donation_count: 0,
                        donors: OrdSet::new(),
                        donations: Vector::new(),
                        payouts: OrdSet::new(),
                    },
                );
            }
            EventBody::ProjectClosed(e) => {
                self.project_mut(&e.project, seq)?.open = false;
            }
            EventBody::DonationReceived(e) => {
                let p = self.project_mut(&e.project, seq)?;
                add(&mut p.balances.raised_gross, e.amount_minor.minor(), seq)?;
                add(&mut p.balances.fees, e.fee_minor, seq)?;
                add(&mut p.balances.raised, e.net_minor(), seq)?;
                p.donation_count += 1;
                // The donation shares the project's id and the donor's from the project's set
                // rather than keep the event's copies (allocated for one command each), so
                // the state holds one copy of every id. Most gifts come from known donors:
                // looking first also spares a shared set (the writer works on a copy of the
                // state) a copy to re-insert one.
                let project = p.id.clone();
                let donor_ref = match p.donors.get(&e.donor_ref) {
                    Some(known) => known.clone(),
                    None => {
                        p.donors.insert(e.donor_ref.clone());
                        e.donor_ref.clone()
                    }
                };
                p.donations.push_back(seq);
                if let Some(pledge_seq) = e.pledge_seq {
                    let pledge = self
                        .pledges
                        .get_mut(&pledge_seq)
                        .ok_or_else(|| invariant(seq, format!("unknown pledge {pledge_seq}")))?;
                    add(&mut pledge.fulfilled, e.amount_minor.minor(), seq)?;
                }
                let receipt_code = ReceiptCode::parse(&e.receipt_code)
                    .ok_or_else(|| invariant(seq, "a malformed receipt code"))?;
                let number = receipt_code.number();
                let earlier = self
                    .built_receipts()
                    .add(number, seq, |s| self.donation_holding(s, number).is_some());
                if earlier.is_some() {
                    return Err(invariant(seq, "a receipt code was issued twice"));
                }
                self.donations.insert(
                    seq,
                    Arc::new(Donation {
                        seq,
                        ts_ms: r.ts_ms,
                        project,
                        amount_minor: e.amount_minor.minor(),
                        fee_minor: e.fee_minor,
                        currency: e.currency,
                        channel: e.channel,
                        donor_ref,
                        public_name: e.public_name.clone(),
                        anonymous: e.anonymous,
                        pledge_seq: e.pledge_seq,
                        channel_txn_id: Arc::from(e.channel_txn_id.as_str()),
                        receipt_code,
                        matched: None,
                        refunded_seq: None,
                        refunded_ts_ms: None,
                        fee_returned_minor: 0,
                    }),
                );
            }
            EventBody::DonationRefunded(e) => {
                let d = self.donation_mut(e.donation_seq, seq)?;
                if d.refunded_seq.is_some() {
                    return Err(invariant(seq, "donation refunded twice"));
                }
                d.refunded_seq = Some(seq);
                d.refunded_ts_ms = Some(r.ts_ms);
                let (project, amount, pledge) = (d.project.clone(), d.amount_minor, d.pledge_seq);
                self.refunds.insert(seq, e.donation_seq);
                if let Some(pledge_seq) = pledge {
                    if let Some(pl) = self.pledges.get_mut(&pledge_seq) {
                        sub(&mut pl.fulfilled, amount, seq, "pledge fulfilment")?;
                    }
                }
                add(
                    &mut self.project_mut(&project, seq)?.balances.refunded,
                    amount,
                    seq,
                )?;
                self.return_fee(e.donation_seq, e.fee_returned_minor.unwrap_or(0), seq)?;
            }
            EventBody::RefundFeeReturned(e) => {
                let donation_seq = *self
                    .refunds
                    .get(&e.refund_seq)
                    .ok_or_else(|| invariant(seq, format!("unknown refund {}", e.refund_seq)))?;
                self.return_fee(donation_seq, e.fee_returned_minor, seq)?;
                self.late_fee_returns.insert(
                    (e.refund_seq, seq),
                    LateFeeReturn {
                        ts_ms: r.ts_ms,
                        fee_returned_minor: e.fee_returned_minor,
                    },
                );
            }
            EventBody::PledgeMade(e) => {
                self.pledges.insert(
                    seq,
                    Pledge {
                        seq,
                        project: e.project.clone(),
                        sponsor: e.sponsor.clone(),
                        amount_minor: e.amount_minor.minor(),
                        currency: e.currency,
                        fulfilled: 0,
                        cancelled: false,
                    },
                );
            }
            EventBody::PledgeCancelled(e) => {
                self.pledges
                    .get_mut(&e.pledge_seq)
                    .ok_or_else(|| invariant(seq, format!("unknown pledge {}", e.pledge_seq)))?
                    .cancelled = true;
            }
            EventBody::MatchingPoolCommitted(e) => {
                self.pools.insert(
                    e.pool.clone(),
                    Pool {
                        id: e.pool.clone(),
                        sponsor: e.sponsor.clone(),
                        projects: e.projects.clone(),
                        currency: e.currency,
                        ratio_numerator: e.ratio_numerator,
                        ratio_denominator: e.ratio_denominator,
                        cap_per_donation_minor: e.cap_per_donation_minor.minor(),
                        cap_per_donor_per_day_minor: e.cap_per_donor_per_day_minor.minor(),
                        total_cap_minor: e.total_cap_minor.minor(),
                        valid_from_ms: e.valid_from_ms,
                        valid_until_ms: e.valid_until_ms,
                        day_utc_offset_minutes: e.day_utc_offset_minutes,
                        open: true,
                        committed_seq: seq,
                        allocated: 0,
                        released: 0,
                        received: 0,
                        per_donor_day: OrdMap::new(),
                    },
                );
            }
            EventBody::MatchingPoolClosed(e) => {
                self.pools
                    .get_mut(&e.pool)
                    .ok_or_else(|| invariant(seq, format!("unknown pool {}", e.pool)))?
                    .open = false;
            }
            EventBody::MatchAllocated(e) => {
                let amount = e.amount_minor.minor();
                let d = self.donation_mut(e.donation_seq, seq)?;
                d.matched = Some((e.pool.clone(), amount));
                let (donor, donation_ts) = (d.donor_ref.clone(), d.ts_ms);
                let pool = self
                    .pools
                    .get_mut(&e.pool)
                    .ok_or_else(|| invariant(seq, format!("unknown pool {}", e.pool)))?;
                add(&mut pool.allocated, amount, seq)?;
                if pool.used() > pool.total_cap_minor {
                    return Err(invariant(seq, "a pool allocated beyond its total cap"));
                }
                let day = pool.day_of(donation_ts);
                add(
                    pool.per_donor_day.entry((donor, day)).or_default(),
                    amount,
                    seq,
                )?;
                let p = self.project_mut(&e.project, seq)?;
                add(&mut p.balances.matched, amount, seq)?;
            }
            EventBody::MatchReleased(e) => {
                // With the gift's refund: a hold on the match ends with it, and the money it
                // held goes back with the match.
                if let Some(hold) = self.match_frozen(e.donation_seq) {
                    let held = hold.amount_minor;
                    self.match_holds.remove(&e.donation_seq);
                    let p = self.project_mut(&e.project, seq)?;
                    sub(&mut p.balances.frozen, held, seq, "frozen money")?;
                }
                self.release_match(&e.pool, e.donation_seq, &e.project, e.amount_minor, seq)?;
            }
            EventBody::MatchFrozen(e) => {
                let d = self.donations.get(&e.donation_seq).ok_or_else(|| {
                    invariant(seq, format!("unknown donation {}", e.donation_seq))
                })?;
                let amount = e.amount_minor.minor();
                if d.matched.as_ref() != Some(&(e.pool.clone(), amount)) || d.project != e.project {
                    return Err(invariant(
                        seq,
                        "a freeze names another match than the gift's",
                    ));
                }
                if d.refunded_seq.is_some() {
                    return Err(invariant(seq, "a freeze of a refunded gift's match"));
                }
                if self.match_holds.contains_key(&e.donation_seq) {
                    return Err(invariant(seq, "a match frozen twice, or after its release"));
                }
                self.match_holds.insert(
                    e.donation_seq,
                    MatchHold {
                        donation_seq: e.donation_seq,
                        pool: e.pool.clone(),
                        project: e.project.clone(),
                        amount_minor: amount,
                        frozen_seq: seq,
                        frozen_ts_ms: r.ts_ms,
                        frozen_by: r.actor.clone(),
                        frozen_token_issuer: r.token_issuer.clone(),
                        reason: e.reason.clone(),
                        released_seq: None,
                        released_ts_ms: None,
                    },
                );
                add(
                    &mut self.project_mut(&e.project, seq)?.balances.frozen,
                    amount,
                    seq,
                )?;
            }
            EventBody::MatchUnfrozen(e) => {
                self.frozen_hold(e, seq)?;
                self.match_holds.remove(&e.donation_seq);
                let p = self.project_mut(&e.project, seq)?;
                sub(
                    &mut p.balances.frozen,
                    e.amount_minor.minor(),
                    seq,
                    "frozen money",
                )?;
            }
            EventBody::MatchRevoked(e) => {
                let hold = self.frozen_hold(e, seq)?;
                if hold
                    .shared_hand(&r.actor, r.token_issuer.as_ref())
                    .is_some()
                {
                    return Err(invariant(
                        seq,
                        "a match was released after review by the hand that froze it",
                    ));
                }
                let hold = self
                    .match_holds
                    .get_mut(&e.donation_seq)
                    .expect("looked up above");
                hold.released_seq = Some(seq);
                hold.released_ts_ms = Some(r.ts_ms);
                let p = self.project_mut(&e.project, seq)?;
                sub(
                    &mut p.balances.frozen,
                    e.amount_minor.minor(),
                    seq,
                    "frozen money",
                )?;
                self.release_match(&e.pool, e.donation_seq, &e.project, e.amount_minor, seq)?;
            }
            EventBody::PayoutRequested(e) => {
                let amount = e.amount_minor.minor();
                let p = self.project_mut(&e.project, seq)?;
                add(&mut p.balances.requested, amount, seq)?;
                p.payouts.insert(seq);
                self.payouts.insert(
                    seq,
                    Request {
                        seq,
                        ts_ms: r.ts_ms,
                        requested_by: r.actor.clone(),
                        requester_token_issuer: r.token_issuer.clone(),
                        project: e.project.clone(),
                        to_project: None,
                        amount_minor: amount,
                        currency: e.currency,
                        status: RequestStatus::Requested,
                        decided_by: None,
                        decided_seq: None,
                        decided_ts_ms: None,
                        payee: Some(e.payee.clone()),
                        purpose: Some(e.purpose.clone()),
                        document_sha256: Some(e.document_sha256),
                        reason: None,
                        disbursed_seq: None,
                        bank_reference: None,
                        disbursed_ts_ms: None,
                    },
                );
            }
            EventBody::MoveRequested(e) => {
                let amount = e.amount_minor.minor();
                add(
                    &mut self.project_mut(&e.from_project, seq)?.balances.requested,
                    amount,
                    seq,
                )?;
                self.moves.insert(
                    seq,
                    Request {
                        seq,
                        ts_ms: r.ts_ms,
                        requested_by: r.actor.clone(),
                        requester_token_issuer: r.token_issuer.clone(),
                        project: e.from_project.clone(),
                        to_project: Some(e.to_project.clone()),
                        amount_minor: amount,
                        currency: e.currency,
                        status: RequestStatus::Requested,
                        decided_by: None,
                        decided_seq: None,
                        decided_ts_ms: None,
                        payee: None,
                        purpose: None,
                        document_sha256: None,
                        reason: Some(e.reason.clone()),
                        disbursed_seq: None,
                        bank_reference: None,
                        disbursed_ts_ms: None,
                    },
                );
            }
            EventBody::PayoutApproved(d) => {
                let req = self.decide(
                    (&r.actor, r.token_issuer.as_ref()),
                    (seq, r.ts_ms),
                    d.request_seq,
                    true,
                    RequestStatus::Approved,
                )?;
                let b = &mut self.project_mut(&req.project, seq)?.balances;
                sub(&mut b.requested, req.amount_minor, seq, "requested money")?;
                add(&mut b.committed, req.amount_minor, seq)?;
            }
            // A rejected payout or move frees the money its request reserved.
            EventBody::PayoutRejected(d) | EventBody::MoveRejected(d) => {
                let payout = matches!(r.body, EventBody::PayoutRejected(_));
                let req = self.decide(
                    (&r.actor, r.token_issuer.as_ref()),
                    (seq, r.ts_ms),
                    d.request_seq,
                    payout,
                    RequestStatus::Rejected,
                )?;
                let b = &mut self.project_mut(&req.project, seq)?.balances;
                sub(&mut b.requested, req.amount_minor, seq, "requested money")?;
            }
            EventBody::PayoutDisbursed(e) => {
                let req = self
                    .payouts
                    .get_mut(&e.payout_seq)
                    .ok_or_else(|| invariant(seq, format!("unknown payout {}", e.payout_seq)))?;
                if req.status != RequestStatus::Approved {
                    return Err(invariant(seq, "disbursed a payout that is not approved"));
                }
                req.status = RequestStatus::Disbursed;
                req.disbursed_seq = Some(seq);
                req.bank_reference = Some(e.bank_reference.clone());
                req.disbursed_ts_ms = Some(r.ts_ms);
                let (project, amount) = (req.project.clone(), req.amount_minor);
                let b = &mut self.project_mut(&project, seq)?.balances;
                sub(&mut b.committed, amount, seq, "committed money")?;
                add(&mut b.paid_out, amount, seq)?;
            }
            EventBody::MoveApproved(d) => {
                let req = self.decide(
                    (&r.actor, r.token_issuer.as_ref()),
                    (seq, r.ts_ms),
                    d.request_seq,
                    false,
                    RequestStatus::Approved,
                )?;
                let to = req
                    .to_project
                    .clone()
                    .ok_or_else(|| invariant(seq, "a move without a receiving project"))?;
                let from = &mut self.project_mut(&req.project, seq)?.balances;
                sub(
                    &mut from.requested,
                    req.amount_minor,
                    seq,
                    "requested money",
                )?;
                add(&mut from.moved_out, req.amount_minor, seq)?;
                add(
                    &mut self.project_mut(&to, seq)?.balances.moved_in,
                    req.amount_minor,
                    seq,
                )?;
            }
            EventBody::StatementImported(e) => {
                if self.statement_digests.contains_key(&e.statement_sha256) {
                    return Err(invariant(seq, "a statement was imported twice"));
                }
                self.statement_digests.insert(e.statement_sha256, seq);
                self.statements.insert(
                    seq,
                    Statement {
                        seq,
                        ts_ms: r.ts_ms,
                        sha256: e.statement_sha256,
                        source: e.source,
                        account: e.account.clone(),
                        currency: e.currency,
                        period_start_ms: e.period_start_ms,
                        period_end_ms: e.period_end_ms,
                        line_count: e.line_count,
                        lines_recorded: 0,
                        lines: Vector::new(),
                    },
                );
            }
            EventBody::StatementLineRecorded(e) => {
                let st = self.statements.get(&e.statement_seq).ok_or_else(|| {
                    invariant(seq, format!("unknown statement {}", e.statement_seq))
                })?;
                if e.line_no != st.lines_recorded + 1 || e.line_no > st.line_count {
                    return Err(invariant(seq, "statement lines out of order"));
                }
                let line = self.statement_line(st.source.channel(), e);
                for reference in [&line.reference, &line.original_reference]
                    .into_iter()
                    .flatten()
                {
                    self.statement_references.insert((
                        reference.clone(),
                        e.statement_seq,
                        e.line_no,
                    ));
                }
                let st = self
                    .statements
                    .get_mut(&e.statement_seq)
                    .expect("looked up above");
                st.lines_recorded = e.line_no;
                st.lines.push_back(line);
            }
            EventBody::ExceptionResolved(e) => {
                let key = match (e.line_no, e.entry_seq) {
                    (Some(line), None) => ExceptionKey::Line(line),
                    (None, Some(entry)) => ExceptionKey::Entry(entry),
                    _ => return Err(invariant(seq, "an exception names one subject")),
                };
                if !self.statements.contains_key(&e.statement_seq) {
                    return Err(invariant(
                        seq,
                        format!("unknown statement {}", e.statement_seq),
                    ));
                }
                // decide() refuses a link to an entry a line of another statement accounts
                // for (`EntryMatched`). The fold does not assert it, as with the other
                // resolution checks: a log written before the rule must still open.
                let link = match (key, &e.resolution) {
                    (ExceptionKey::Line(line_no), Resolution::Linked { entry_seq }) => {
                        Some((*entry_seq, e.statement_seq, line_no))
                    }
                    _ => None,
                };
                let resolved = ResolvedException {
                    seq,
                    resolution: e.resolution.clone(),
                };
                if self
                    .resolved
                    .insert((e.statement_seq, key), resolved)
                    .is_some()
                {
                    return Err(invariant(seq, "an exception was resolved twice"));
                }
                if let Some(link) = link {
                    self.linked_lines.insert(link);
                }
                if let Resolution::MatchingReceived { pool, amount_minor } = &e.resolution {
                    let pool = self
                        .pools
                        .get_mut(pool)
                        .ok_or_else(|| invariant(seq, format!("unknown pool {pool}")))?;
                    add(&mut pool.received, amount_minor.minor(), seq)?;
                    if pool.received > pool.used() {
                        return Err(invariant(seq, "a pool received more than it matched"));
                    }
                }
            }
            EventBody::StaffTokenIssued(e) => {
                let token = StaffToken {
                    holder: e.holder.clone(),
                    role: e.role,
                    issued_seq: seq,
                    issued_by: r.actor.clone(),
                    revoked_seq: None,
                };
                if self
                    .staff_tokens
                    .insert(e.token_id.clone(), token)
                    .is_some()
                {
                    return Err(invariant(
                        seq,
                        format!("staff token {} issued twice", e.token_id),
                    ));
                }
            }
            EventBody::StaffTokenRevoked(e) => {
                let token = self
                    .staff_tokens
                    .get_mut(&e.token_id)
                    .ok_or_else(|| invariant(seq, format!("unknown staff token {}", e.token_id)))?;
                if token.revoked_seq.replace(seq).is_some() {
                    return Err(invariant(
                        seq,
                        format!("staff token {} revoked twice", e.token_id),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What is kept of a statement line of a statement of `channel` (see [`StatementLine`]).
    fn statement_line(&self, channel: Channel, e: &StatementLineRecorded) -> StatementLine {
        let known = |r: &str| {
            self.donation_by_channel_txn(channel, r)
                .map(|d| d.channel_txn_id.clone())
        };
        let shared = |r: &str| known(r).unwrap_or_else(|| Arc::from(r));
        let (reference, original_reference) = match e.kind {
            StatementLineKind::Payment | StatementLineKind::Credit => match known(&e.reference) {
                Some(reference) => (Some(reference), None),
                None => (
                    Some(Arc::from(e.reference.as_str())),
                    e.original_reference.as_deref().map(shared),
                ),
            },
            StatementLineKind::Refund => (None, e.original_reference.as_deref().map(shared)),
            StatementLineKind::Debit => (Some(Arc::from(e.reference.as_str())), None),
        };
        StatementLine {
            kind: e.kind,
            amount_minor: e.amount_minor.minor(),
            fee_minor: e.fee_minor,
            currency: e.currency,
            reference,
            original_reference,
            booked_ms: e.booked_ms,
        }
    }

    /// Records a decision on a pending request; enforces four eyes as an invariant.
    fn decide(
        &mut self,
        (actor, token_issuer): (&Id, Option<&Id>),
        (seq, ts_ms): (u64, u64),
        request_seq: u64,
        payout: bool,
        status: RequestStatus,
    ) -> Result<Request, ProjectionError> {
        let map = if payout {
            &mut self.payouts
        } else {
            &mut self.moves
        };
        let req = map
            .get_mut(&request_seq)
            .ok_or_else(|| invariant(seq, format!("unknown request {request_seq}")))?;
        if req.status != RequestStatus::Requested {
            return Err(invariant(seq, "a request was decided twice"));
        }
        if req.shared_hand(actor, token_issuer).is_some() {
            return Err(invariant(
                seq,
                "a request was decided by its requester or with a token of the same hand",
            ));
        }
        req.status = status;
        req.decided_by = Some(actor.clone());
        req.decided_seq = Some(seq);
        req.decided_ts_ms = Some(ts_ms);
        Ok(req.clone())
    }

    /// A match going back to its pool, with its gift's refund (`MatchReleased`) or after
    /// review (`MatchRevoked`): the pool's `released` and the donor's matched money for
    /// the gift's day (so the per-donor and total caps have room again) and the project's
    /// `matched` all fall by it. One path for both.
    fn release_match(
        &mut self,
        pool_id: &Id,
        donation_seq: u64,
        project: &Id,
        amount: Amount,
        seq: u64,
    ) -> Result<(), ProjectionError> {
        let amount = amount.minor();
        let d = self
            .donations
            .get(&donation_seq)
            .ok_or_else(|| invariant(seq, format!("unknown donation {donation_seq}")))?;
        if self
            .match_holds
            .get(&donation_seq)
            .is_some_and(|h| h.released_seq.is_some_and(|s| s != seq))
        {
            return Err(invariant(seq, "a match released twice"));
        }
        let (donor, donation_ts) = (d.donor_ref.clone(), d.ts_ms);
        let pool = self
            .pools
            .get_mut(pool_id)
            .ok_or_else(|| invariant(seq, format!("unknown pool {pool_id}")))?;
        add(&mut pool.released, amount, seq)?;
        if pool.released > pool.allocated {
            return Err(invariant(seq, "a pool released more than it allocated"));
        }
        let day = pool.day_of(donation_ts);
        let used = pool.per_donor_day.entry((donor, day)).or_default();
        sub(used, amount, seq, "per-donor matched money")?;
        let p = self.project_mut(project, seq)?;
        sub(&mut p.balances.matched, amount, seq, "matched money")
    }

    /// The hold a review step (unfreeze, release after review) ends: the match must be
    /// frozen, and the event must name it as its freeze did.
    fn frozen_hold(
        &self,
        e: &events::MatchReview,
        seq: u64,
    ) -> Result<&MatchHold, ProjectionError> {
        let hold = self
            .match_holds
            .get(&e.donation_seq)
            .filter(|h| h.is_frozen())
            .ok_or_else(|| {
                invariant(
                    seq,
                    format!("the match of donation {} is not frozen", e.donation_seq),
                )
            })?;
        if hold.pool != e.pool
            || hold.project != e.project
            || hold.amount_minor != e.amount_minor.minor()
        {
            return Err(invariant(
                seq,
                "a review step names another match than its freeze",
            ));
        }
        Ok(hold)
    }

    /// The match of a gift under review (frozen, not yet unfrozen or released).
    pub fn match_frozen(&self, donation_seq: u64) -> Option<&MatchHold> {
        self.match_holds
            .get(&donation_seq)
            .filter(|h| h.is_frozen())
    }

    /// The match of a gift that a review sent back to its pool.
    pub fn match_released_after_review(&self, donation_seq: u64) -> Option<&MatchHold> {
        self.match_holds
            .get(&donation_seq)
            .filter(|h| !h.is_frozen())
    }

    /// The match a gift still holds: its pool and amount, unless a refund or a review
    /// released it.
    pub fn match_held<'d>(&self, d: &'d Donation) -> Option<(&'d Id, u64)> {
        let (pool, amount) = d.matched.as_ref()?;
        if d.refunded_seq.is_some() || self.match_released_after_review(d.seq).is_some() {
            return None;
        }
        Some((pool, *amount))
    }

    /// The projects in a stable order.
    pub fn project_list(&self) -> impl Iterator<Item = &Project> {
        self.projects.values()
    }
}
