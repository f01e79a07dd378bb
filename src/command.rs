//! Commands and the rules they are checked against. `decide` is a pure function of the
//! ledger state and a command: it returns the events the command produces or a typed
//! rejection, and writes nothing.

use events::{
    Amount, Channel, Currency, Decision, DonationReceived, DonationRefunded, EventBody,
    ExceptionResolved, Hash, Id, MatchAllocated, MatchReleased, MatchReview, MatchingPoolClosed,
    MatchingPoolCommitted, MoveRequested, PayoutDisbursed, PayoutRequested, PledgeCancelled,
    PledgeMade, ProjectClosed, ProjectKind, ProjectOpened, RefundFeeReturned, Rejection,
    Resolution, StaffTokenIssued, StaffTokenRevoked, StatementImported, StatementLineKind,
    StatementLineRecorded, Text, ValueError,
};
use projections::reconcile::{self, Entry, EntryKind};
use projections::{
    Donation, LedgerState, MatchHold, Project, RequestStatus, Statement, StatementLine,
};
use serde::{Deserialize, Serialize};

/// Something staff ask the ledger to do. Serialized as `{"command": "<name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    OpenProject {
        project: Id,
        kind: ProjectKind,
        name: Text,
        currency: Currency,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        goal_minor: Option<Amount>,
    },
    CloseProject {
        project: Id,
        reason: Text,
    },
    RecordDonation(DonationInput),
    RefundDonation {
        donation_seq: u64,
        reason: Text,
        /// The part of the gift's fee the channel gave back (WeChat Pay and Alipay return
        /// the refund's share): 1 to the gift's `fee_minor`; `None` when it kept it all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fee_returned_minor: Option<u64>,
    },
    /// Records a fee the channel gave back on a refund already recorded, which the refund
    /// did not carry (or carried less of): `refund_seq` is the `donation_refunded` event.
    /// What the refund and its corrections give back together is at most the gift's fee.
    RecordRefundFeeReturned {
        refund_seq: u64,
        fee_returned_minor: u64,
        reason: Text,
    },
    MakePledge {
        project: Id,
        sponsor: Text,
        amount_minor: Amount,
        currency: Currency,
    },
    CancelPledge {
        pledge_seq: u64,
        reason: Text,
    },
    CommitMatchingPool(MatchingPoolCommitted),
    CloseMatchingPool {
        pool: Id,
        reason: Text,
    },
    /// Holds a donation's match for review (risk control: a gift split across made-up
    /// donors to farm matches). The match stays allocated from its pool and counted as the
    /// project's, but the project cannot spend it until the review ends.
    FreezeMatch {
        donation_seq: u64,
        reason: Text,
    },
    /// Ends a review that cleared the match: the project may spend it again.
    UnfreezeMatch {
        donation_seq: u64,
        reason: Text,
    },
    /// Ends a review by sending the match back to its pool (the gift stays). Four eyes:
    /// not by the one who froze it, nor with a token they issued.
    ReleaseMatch {
        donation_seq: u64,
        reason: Text,
    },
    RequestPayout(PayoutRequested),
    ApprovePayout {
        payout_seq: u64,
    },
    RejectPayout {
        payout_seq: u64,
        reason: Text,
    },
    DisbursePayout {
        payout_seq: u64,
        bank_reference: String,
    },
    RequestMove(MoveRequested),
    ApproveMove {
        move_seq: u64,
    },
    RejectMove {
        move_seq: u64,
        reason: Text,
    },
    /// Announces a statement whose lines follow; refused when the same file was imported.
    ImportStatement(StatementImported),
    RecordStatementLine(StatementLineRecorded),
    ResolveException(ExceptionResolved),
    /// Records that a staff token was issued (the token store holds its secret's hash).
    IssueStaffToken(StaffTokenIssued),
    /// Records that a staff token was revoked.
    RevokeStaffToken(StaffTokenRevoked),
}

/// A donation as recorded by staff or a payment channel's webhook. The receipt code is
/// derived by the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonationInput {
    pub project: Id,
    pub amount_minor: Amount,
    pub currency: Currency,
    pub channel: Channel,
    pub channel_txn_id: String,
    #[serde(default)]
    pub fee_minor: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pledge_seq: Option<u64>,
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_name: Option<Text>,
    pub donor_ref: Id,
}

impl Command {
    /// The stable name of the command, as serialized.
    pub fn name(&self) -> &'static str {
        match self {
            Command::OpenProject { .. } => "open_project",
            Command::CloseProject { .. } => "close_project",
            Command::RecordDonation(_) => "record_donation",
            Command::RefundDonation { .. } => "refund_donation",
            Command::RecordRefundFeeReturned { .. } => "record_refund_fee_returned",
            Command::MakePledge { .. } => "make_pledge",
            Command::CancelPledge { .. } => "cancel_pledge",
            Command::CommitMatchingPool(_) => "commit_matching_pool",
            Command::CloseMatchingPool { .. } => "close_matching_pool",
            Command::FreezeMatch { .. } => "freeze_match",
            Command::UnfreezeMatch { .. } => "unfreeze_match",
            Command::ReleaseMatch { .. } => "release_match",
            Command::RequestPayout(_) => "request_payout",
            Command::ApprovePayout { .. } => "approve_payout",
            Command::RejectPayout { .. } => "reject_payout",
            Command::DisbursePayout { .. } => "disburse_payout",
            Command::RequestMove(_) => "request_move",
            Command::ApproveMove { .. } => "approve_move",
            Command::RejectMove { .. } => "reject_move",
            Command::ImportStatement(_) => "import_statement",
            Command::RecordStatementLine(_) => "record_statement_line",
            Command::ResolveException(_) => "resolve_exception",
            Command::IssueStaffToken(_) => "issue_staff_token",
            Command::RevokeStaffToken(_) => "revoke_staff_token",
        }
    }
}

/// Why a command was refused. Nothing was written. Each variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Invalid(#[from] ValueError),
    #[error("project {0} does not exist")]
    UnknownProject(Id),
    #[error("project {0} already exists")]
    ProjectExists(Id),
    #[error("project {0} is closed")]
    ProjectClosed(Id),
    #[error("currency: {given} does not match project {project}'s currency {expected}")]
    CurrencyMismatch {
        project: Id,
        given: Currency,
        expected: Currency,
    },
    #[error("{field}: {currency} has {digits} decimal places (ISO 4217); the ledger keeps money in hundredths of a unit (fen, cents), so it takes currencies with 2 decimal places only")]
    CurrencyNotSupported {
        field: &'static str,
        currency: Currency,
        digits: u8,
    },
    #[error("fee_returned_minor: {given}{} more than the fee of {fee} that donation {donation_seq} paid; a channel gives back at most the gift's fee ({limit})", with_returned_before(*.returned_before))]
    FeeReturnedOverFee {
        donation_seq: u64,
        given: u64,
        fee: u64,
        /// What the channel gave back of the fee before: on the refund and in corrections
        /// since (0 when the refund itself is being recorded).
        returned_before: u64,
        /// The allowed range in words: `1 to <what is left>`, or why nothing is.
        limit: String,
    },
    #[error("amount_minor: {requested} exceeds project {project}'s available balance {available}")]
    InsufficientFunds {
        project: Id,
        requested: u64,
        available: u64,
    },
    #[error("amount_minor: {amount} would take project {project} past its goal {goal} ({raised} received: gifts net of refunds, matches and moves in); a {kind} cannot take in more than its goal")]
    OverGoal {
        project: Id,
        kind: &'static str,
        amount: u64,
        raised: u64,
        goal: u64,
    },
    #[error("amount_minor: {amount} would take project {project}'s money received (gifts, matches and moves in) past the limit of {max} minor units")]
    InflowLimit { project: Id, amount: u64, max: u64 },
    #[error("channel_txn_id: {channel} transaction {txn_id} is already recorded")]
    DuplicateChannelTxn {
        channel: &'static str,
        txn_id: String,
    },
    #[error("channel_txn_id: its receipt code {receipt_code} collides with another donation's; record it with a different channel_txn_id suffix")]
    ReceiptCollision { receipt_code: String },
    #[error("donation_seq: no donation at seq {0}")]
    UnknownDonation(u64),
    #[error("donation_seq: the donation at seq {0} is already refunded")]
    AlreadyRefunded(u64),
    #[error(
        "donation_seq: the donation at seq {0} triggered no match; only a match can be reviewed"
    )]
    NoMatch(u64),
    #[error("donation_seq: the match of the donation at seq {donation_seq} is {status}; {needed}")]
    MatchState {
        donation_seq: u64,
        /// Where its review stands, with the seq that put it there.
        status: String,
        /// What the command needs, in words.
        needed: &'static str,
    },
    #[error("refund_seq: no refund (donation_refunded) at seq {seq}: {reason}")]
    UnknownRefund { seq: u64, reason: String },
    #[error("pledge_seq: no pledge at seq {0}")]
    UnknownPledge(u64),
    #[error("pledge_seq: pledge {0} is cancelled")]
    PledgeCancelled(u64),
    #[error("pledge_seq: pledge {seq} is for project {pledge_project}, not {project}")]
    PledgeProjectMismatch {
        seq: u64,
        pledge_project: Id,
        project: Id,
    },
    #[error("amount_minor: {amount} exceeds pledge {seq}'s outstanding {outstanding}")]
    OverPledge {
        seq: u64,
        amount: u64,
        outstanding: u64,
    },
    #[error("pool: matching pool {0} does not exist")]
    UnknownPool(Id),
    #[error("pool: matching pool {0} already exists")]
    PoolExists(Id),
    #[error("pool: matching pool {0} is closed")]
    PoolClosed(Id),
    #[error("{field}: no {what} at seq {seq}")]
    UnknownRequest {
        field: &'static str,
        what: &'static str,
        seq: u64,
    },
    #[error("{field}: the {what} at seq {seq} is {status}, not {needed}")]
    RequestState {
        field: &'static str,
        what: &'static str,
        seq: u64,
        status: &'static str,
        needed: &'static str,
    },
    #[error("four eyes: {actor} {requested} the {what} at seq {seq} and cannot also {decides}")]
    FourEyes {
        actor: Id,
        /// "requested", or "issued the token that requested".
        requested: &'static str,
        what: &'static str,
        seq: u64,
        /// "decide it", or "decide it with a token they issued".
        decides: &'static str,
    },
    #[error("idempotency_key: {key:?} was used for a different command")]
    IdempotencyConflict { key: String },
    #[error("statement_sha256: this statement was imported already, at seq {seq}")]
    StatementExists { seq: u64 },
    #[error("statement_seq: no statement at seq {0}")]
    UnknownStatement(u64),
    #[error("line_no: statement {statement_seq} expects line {expected} next (of {line_count}), got {got}")]
    StatementLineOrder {
        statement_seq: u64,
        expected: u64,
        got: u64,
        line_count: u64,
    },
    #[error("statement_seq: statement {seq} has {recorded} of its {line_count} lines recorded; finish the import first")]
    StatementIncomplete {
        seq: u64,
        recorded: u64,
        line_count: u64,
    },
    #[error("line_no: statement {statement_seq} has {line_count} lines (got {line_no})")]
    UnknownStatementLine {
        statement_seq: u64,
        line_no: u64,
        line_count: u64,
    },
    #[error("entry_seq: no donation, refund or payout at seq {0}")]
    UnknownEntry(u64),
    #[error("statement {statement_seq}: this exception was resolved already, at seq {seq}")]
    AlreadyResolved { statement_seq: u64, seq: u64 },
    #[error("resolution: {0}")]
    BadResolution(String),
    #[error("{field}: the bank credit {reference} of {amount_minor} was booked already, from line {line_no} of statement {statement_seq} (at seq {resolution_seq}); {what} would count that money twice")]
    CreditBooked {
        field: &'static str,
        reference: String,
        amount_minor: u64,
        statement_seq: u64,
        line_no: u64,
        resolution_seq: u64,
        /// What was refused, in words.
        what: &'static str,
    },
    #[error("token_id: staff token {token_id} was issued already, at seq {seq}")]
    TokenExists { token_id: String, seq: u64 },
    #[error("token_id: no staff token {0} was issued")]
    UnknownToken(String),
    #[error("token_id: staff token {token_id} was revoked already, at seq {seq}")]
    TokenRevoked { token_id: String, seq: u64 },
    #[error("line_no: line {line_no} of statement {statement_seq} is matched by reference to entry {entry_seq}; only an open exception is resolved")]
    LineMatched {
        statement_seq: u64,
        line_no: u64,
        entry_seq: u64,
    },
    #[error("{field}: the {what} at seq {entry_seq} is already matched to line {line_no} of statement {statement_seq} ({rule}); an entry is matched to one statement line")]
    EntryMatched {
        field: &'static str,
        what: &'static str,
        entry_seq: u64,
        statement_seq: u64,
        line_no: u64,
        rule: &'static str,
    },
    #[error("entry_seq: the {what} at seq {entry_seq} is not an exception of statement {statement_seq}: {reason}")]
    NotAnException {
        statement_seq: u64,
        what: &'static str,
        entry_seq: u64,
        reason: String,
    },
    #[error("{field}: line {line_no} of statement {statement_seq} is a {line_kind}: {reason}")]
    LineMismatch {
        field: &'static str,
        statement_seq: u64,
        line_no: u64,
        line_kind: &'static str,
        reason: String,
    },
    #[error("{field}: {given} has {what} {given_minor}, line {line_no} of statement {statement_seq} has {line_minor}: {rule}")]
    AmountMismatch {
        field: &'static str,
        given: &'static str,
        what: &'static str,
        /// Minor units (at most 2^53 − 1 in size); a fee may be negative (given back).
        given_minor: i64,
        statement_seq: u64,
        line_no: u64,
        line_minor: i64,
        rule: &'static str,
    },
}

impl CommandError {
    /// A stable machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Invalid(_) => "invalid",
            CommandError::UnknownProject(_) => "unknown_project",
            CommandError::ProjectExists(_) => "project_exists",
            CommandError::ProjectClosed(_) => "project_closed",
            CommandError::CurrencyMismatch { .. } => "currency_mismatch",
            CommandError::CurrencyNotSupported { .. } => "currency_not_supported",
            CommandError::InsufficientFunds { .. } => "insufficient_funds",
            CommandError::FeeReturnedOverFee { .. } => "fee_returned_over_fee",
            CommandError::OverGoal { .. } => "over_goal",
            CommandError::InflowLimit { .. } => "inflow_limit",
            CommandError::DuplicateChannelTxn { .. } => "duplicate_channel_txn",
            CommandError::ReceiptCollision { .. } => "receipt_collision",
            CommandError::UnknownDonation(_) => "unknown_donation",
            CommandError::AlreadyRefunded(_) => "already_refunded",
            CommandError::NoMatch(_) => "no_match",
            CommandError::MatchState { .. } => "match_state",
            CommandError::UnknownRefund { .. } => "unknown_refund",
            CommandError::UnknownPledge(_) => "unknown_pledge",
            CommandError::PledgeCancelled(_) => "pledge_cancelled",
            CommandError::PledgeProjectMismatch { .. } => "pledge_project_mismatch",
            CommandError::OverPledge { .. } => "over_pledge",
            CommandError::UnknownPool(_) => "unknown_pool",
            CommandError::PoolExists(_) => "pool_exists",
            CommandError::PoolClosed(_) => "pool_closed",
            CommandError::UnknownRequest { .. } => "unknown_request",
            CommandError::RequestState { .. } => "request_state",
            CommandError::FourEyes { .. } => "four_eyes",
            CommandError::IdempotencyConflict { .. } => "idempotency_conflict",
            CommandError::StatementExists { .. } => "statement_exists",
            CommandError::UnknownStatement(_) => "unknown_statement",
            CommandError::StatementLineOrder { .. } => "statement_line_order",
            CommandError::StatementIncomplete { .. } => "statement_incomplete",
            CommandError::UnknownStatementLine { .. } => "unknown_statement_line",
            CommandError::UnknownEntry(_) => "unknown_entry",
            CommandError::AlreadyResolved { .. } => "already_resolved",
            CommandError::BadResolution(_) => "bad_resolution",
            CommandError::CreditBooked { .. } => "credit_booked",
            CommandError::TokenExists { .. } => "token_exists",
            CommandError::UnknownToken(_) => "unknown_token",
            CommandError::TokenRevoked { .. } => "token_revoked",
            CommandError::LineMatched { .. } => "line_matched",
            CommandError::EntryMatched { .. } => "entry_matched",
            CommandError::NotAnException { .. } => "not_an_exception",
            CommandError::LineMismatch { .. } => "line_mismatch",
            CommandError::AmountMismatch { .. } => "amount_mismatch",
        }
    }

    /// Whether the command conflicts with the ledger's state (HTTP 409) rather than being
    /// malformed or impossible (HTTP 422).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            CommandError::ProjectExists(_)
                | CommandError::PoolExists(_)
                | CommandError::DuplicateChannelTxn { .. }
                | CommandError::ReceiptCollision { .. }
                | CommandError::AlreadyRefunded(_)
                | CommandError::MatchState { .. }
                | CommandError::RequestState { .. }
                | CommandError::IdempotencyConflict { .. }
                | CommandError::StatementExists { .. }
                | CommandError::StatementLineOrder { .. }
                | CommandError::AlreadyResolved { .. }
                | CommandError::LineMatched { .. }
                | CommandError::EntryMatched { .. }
                | CommandError::CreditBooked { .. }
                | CommandError::TokenExists { .. }
                | CommandError::TokenRevoked { .. }
        )
    }
}

/// How [`CommandError::FeeReturnedOverFee`] counts what was given back before `given`.
fn with_returned_before(returned_before: u64) -> String {
    match returned_before {
        0 => " is".to_owned(),
        before => format!(" and the {before} given back before are"),
    }
}

/// What the writer knows when it decides: who acts, when, where the events will land.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub ledger: &'a Id,
    pub actor: &'a Id,
    /// The admin who issued the actor's API token, if it was issued through the API.
    pub token_issuer: Option<&'a Id>,
    pub ts_ms: u64,
    /// The seq the command's first event will get.
    pub next_seq: u64,
}

fn project<'s>(state: &'s LedgerState, id: &Id) -> Result<&'s Project, CommandError> {
    state
        .projects
        .get(id)
        .ok_or_else(|| CommandError::UnknownProject(id.clone()))
}

fn open_project<'s>(state: &'s LedgerState, id: &Id) -> Result<&'s Project, CommandError> {
    let p = project(state, id)?;
    if !p.open {
        return Err(CommandError::ProjectClosed(id.clone()));
    }
    Ok(p)
}

/// Refuses a currency whose minor unit is not a hundredth: every amount, page, report and
/// statement reads minor units as hundredths (`1.00` is 100).
fn check_hundredths(field: &'static str, currency: Currency) -> Result<(), CommandError> {
    match currency.minor_unit_digits() {
        2 => Ok(()),
        digits => Err(CommandError::CurrencyNotSupported {
            field,
            currency,
            digits,
        }),
    }
}

fn same_currency(p: &Project, given: Currency) -> Result<(), CommandError> {
    if p.currency != given {
        return Err(CommandError::CurrencyMismatch {
            project: p.id.clone(),
            given,
            expected: p.currency,
        });
    }
    Ok(())
}

fn available(p: &Project) -> u64 {
    // The fold refuses any event that would make this negative.
    p.balances
        .available()
        .expect("available balance is never negative")
}

fn ensure_available(p: &Project, amount: u64) -> Result<(), CommandError> {
    let available = available(p);
    if amount > available {
        return Err(CommandError::InsufficientFunds {
            project: p.id.clone(),
            requested: amount,
            available,
        });
    }
    Ok(())
}

/// Checks a command against the state and returns the events it produces, in order.
pub fn decide(
    state: &LedgerState,
    ctx: &Context<'_>,
    command: &Command,
) -> Result<Vec<EventBody>, CommandError> {
    for (field, text) in command.public_texts() {
        check_public_text(field, text)?;
    }
    let events = match command {
        Command::OpenProject {
            project: id,
            kind,
            name,
            currency,
            goal_minor,
        } => {
            if state.projects.contains_key(id) {
                return Err(CommandError::ProjectExists(id.clone()));
            }
            check_hundredths("currency", *currency)?;
            vec![EventBody::ProjectOpened(ProjectOpened {
                project: id.clone(),
                kind: *kind,
                name: name.clone(),
                currency: *currency,
                goal_minor: *goal_minor,
            })]
        }
        Command::CloseProject {
            project: id,
            reason,
        } => {
            open_project(state, id)?;
            vec![EventBody::ProjectClosed(ProjectClosed {
                project: id.clone(),
                reason: reason.clone(),
            })]
        }
        Command::RecordDonation(input) => decide_donation(state, ctx, input)?,
        Command::RefundDonation {
            donation_seq,
            reason,
            fee_returned_minor,
        } => {
            let d = state
                .donations
                .get(donation_seq)
                .ok_or(CommandError::UnknownDonation(*donation_seq))?;
            if d.refunded_seq.is_some() {
                return Err(CommandError::AlreadyRefunded(*donation_seq));
            }
            if let Some(given) = *fee_returned_minor {
                check_fee_returned(d, given)?;
            }
            let p = project(state, &d.project)?;
            // A match a review released already went back to its pool.
            let held = state.match_held(d);
            let matched = held.map_or(0, |(_, m)| m);
            // A match under review is held out of the available money; its release frees
            // the hold in the same batch.
            let frozen = state.match_frozen(d.seq).map_or(0, |h| h.amount_minor);
            // The project pays back the gift and gives up its match; the fee the channel
            // returns comes back to it in the same event, so it needs only the difference
            // (the fee returned is below the gift's fee, itself below the amount).
            ensure_available(
                p,
                d.amount_minor + matched - fee_returned_minor.unwrap_or(0) - frozen,
            )?;
            let mut out = vec![EventBody::DonationRefunded(DonationRefunded {
                donation_seq: *donation_seq,
                fee_returned_minor: *fee_returned_minor,
                reason: reason.clone(),
            })];
            if let Some((pool, amount)) = held {
                out.push(EventBody::MatchReleased(MatchReleased {
                    pool: pool.clone(),
                    donation_seq: *donation_seq,
                    project: d.project.clone(),
                    amount_minor: Amount::new(amount)?,
                }));
            }
            out
        }
        Command::RecordRefundFeeReturned {
            refund_seq,
            fee_returned_minor,
            reason,
        } => {
            let correction = EventBody::RefundFeeReturned(RefundFeeReturned {
                fee_returned_minor: *fee_returned_minor,
                reason: reason.clone(),
                refund_seq: *refund_seq,
            });
            // Field rules first, so a fee of 0 is named as such. No money check: the fee
            // comes back to the project (a closed one too, as the refund went out of it).
            correction.validate()?;
            check_fee_returned(refunded_gift(state, *refund_seq)?, *fee_returned_minor)?;
            vec![correction]
        }
        Command::MakePledge {
            project: id,
            sponsor,
            amount_minor,
            currency,
        } => {
            same_currency(open_project(state, id)?, *currency)?;
            vec![EventBody::PledgeMade(PledgeMade {
                project: id.clone(),
                sponsor: sponsor.clone(),
                amount_minor: *amount_minor,
                currency: *currency,
            })]
        }
        Command::CancelPledge { pledge_seq, reason } => {
            let pl = state
                .pledges
                .get(pledge_seq)
                .ok_or(CommandError::UnknownPledge(*pledge_seq))?;
            if pl.cancelled {
                return Err(CommandError::PledgeCancelled(*pledge_seq));
            }
            vec![EventBody::PledgeCancelled(PledgeCancelled {
                pledge_seq: *pledge_seq,
                reason: reason.clone(),
            })]
        }
        Command::CommitMatchingPool(pool) => {
            if state.pools.contains_key(&pool.pool) {
                return Err(CommandError::PoolExists(pool.pool.clone()));
            }
            for id in &pool.projects {
                same_currency(open_project(state, id)?, pool.currency)?;
            }
            vec![EventBody::MatchingPoolCommitted(pool.clone())]
        }
        Command::CloseMatchingPool { pool, reason } => {
            let p = state
                .pools
                .get(pool)
                .ok_or_else(|| CommandError::UnknownPool(pool.clone()))?;
            if !p.open {
                return Err(CommandError::PoolClosed(pool.clone()));
            }
            vec![EventBody::MatchingPoolClosed(MatchingPoolClosed {
                pool: pool.clone(),
                reason: reason.clone(),
            })]
        }
        Command::FreezeMatch {
            donation_seq,
            reason,
        } => {
            let review = reviewed_match(state, *donation_seq, reason)?;
            if let Some(hold) = state.match_holds.get(donation_seq) {
                return Err(CommandError::MatchState {
                    donation_seq: *donation_seq,
                    status: review_status(hold),
                    needed: "only a match that is not under review and not released can be frozen",
                });
            }
            // The hold takes the match out of the money the project may spend: it must
            // still be there (not paid out, nor reserved by a payout or move).
            ensure_available(
                project(state, &review.project)?,
                review.amount_minor.minor(),
            )?;
            vec![EventBody::MatchFrozen(review)]
        }
        Command::UnfreezeMatch {
            donation_seq,
            reason,
        } => {
            let review = reviewed_match(state, *donation_seq, reason)?;
            frozen_match(state, *donation_seq, "only a frozen match can be unfrozen")?;
            vec![EventBody::MatchUnfrozen(review)]
        }
        Command::ReleaseMatch {
            donation_seq,
            reason,
        } => {
            let review = reviewed_match(state, *donation_seq, reason)?;
            let hold = frozen_match(
                state,
                *donation_seq,
                "a match is released after review only while frozen: freeze it first",
            )?;
            if let Some(shared) = hold.shared_hand(ctx.actor, ctx.token_issuer) {
                return Err(CommandError::FourEyes {
                    actor: shared.person.clone(),
                    requested: if shared.issued_request_token {
                        "issued the token that froze"
                    } else {
                        "froze"
                    },
                    what: "match of the donation",
                    seq: *donation_seq,
                    decides: if shared.issued_decision_token {
                        "release it after review with a token they issued"
                    } else {
                        "release it after review"
                    },
                });
            }
            // No money check: the match leaves the project's money and its hold together.
            vec![EventBody::MatchRevoked(review)]
        }
        Command::RequestPayout(req) => {
            let p = project(state, &req.project)?;
            same_currency(p, req.currency)?;
            ensure_available(p, req.amount_minor.minor())?;
            vec![EventBody::PayoutRequested(req.clone())]
        }
        Command::ApprovePayout { payout_seq } => {
            check_decision(state, ctx, *payout_seq, true)?;
            vec![EventBody::PayoutApproved(Decision {
                request_seq: *payout_seq,
            })]
        }
        Command::RejectPayout { payout_seq, reason } => {
            check_decision(state, ctx, *payout_seq, true)?;
            vec![EventBody::PayoutRejected(Rejection {
                request_seq: *payout_seq,
                reason: reason.clone(),
            })]
        }
        Command::DisbursePayout {
            payout_seq,
            bank_reference,
        } => {
            let req = state
                .payouts
                .get(payout_seq)
                .ok_or(CommandError::UnknownRequest {
                    field: "payout_seq",
                    what: "payout",
                    seq: *payout_seq,
                })?;
            if req.status != RequestStatus::Approved {
                return Err(CommandError::RequestState {
                    field: "payout_seq",
                    what: "payout",
                    seq: *payout_seq,
                    status: req.status.as_str(),
                    needed: "approved",
                });
            }
            vec![EventBody::PayoutDisbursed(PayoutDisbursed {
                payout_seq: *payout_seq,
                bank_reference: bank_reference.clone(),
            })]
        }
        Command::RequestMove(req) => {
            let from = project(state, &req.from_project)?;
            let to = open_project(state, &req.to_project)?;
            same_currency(from, req.currency)?;
            same_currency(to, req.currency)?;
            ensure_available(from, req.amount_minor.minor())?;
            check_inflow(to, req.amount_minor.minor())?;
            vec![EventBody::MoveRequested(req.clone())]
        }
        Command::ApproveMove { move_seq } => {
            check_decision(state, ctx, *move_seq, false)?;
            // The receiving project may have closed, or filled up, since the request.
            let req = &state.moves[move_seq];
            if let Some(to) = &req.to_project {
                check_inflow(open_project(state, to)?, req.amount_minor)?;
            }
            vec![EventBody::MoveApproved(Decision {
                request_seq: *move_seq,
            })]
        }
        Command::RejectMove { move_seq, reason } => {
            check_decision(state, ctx, *move_seq, false)?;
            vec![EventBody::MoveRejected(Rejection {
                request_seq: *move_seq,
                reason: reason.clone(),
            })]
        }
        Command::ImportStatement(st) => {
            if let Some(seq) = state.statement_digests.get(&st.statement_sha256) {
                return Err(CommandError::StatementExists { seq: *seq });
            }
            check_hundredths("currency", st.currency)?;
            vec![EventBody::StatementImported(st.clone())]
        }
        Command::RecordStatementLine(line) => {
            let st = state
                .statements
                .get(&line.statement_seq)
                .ok_or(CommandError::UnknownStatement(line.statement_seq))?;
            let expected = st.lines_recorded + 1;
            if line.line_no != expected || line.line_no > st.line_count {
                return Err(CommandError::StatementLineOrder {
                    statement_seq: st.seq,
                    expected,
                    got: line.line_no,
                    line_count: st.line_count,
                });
            }
            if line.currency != st.currency {
                return Err(CommandError::BadResolution(format!(
                    "currency: the line is in {}, the statement in {}",
                    line.currency, st.currency
                )));
            }
            vec![EventBody::StatementLineRecorded(line.clone())]
        }
        Command::ResolveException(x) => {
            check_resolution(state, x)?;
            vec![EventBody::ExceptionResolved(x.clone())]
        }
        Command::IssueStaffToken(t) => {
            if let Some(issued) = state.staff_tokens.get(&t.token_id) {
                return Err(CommandError::TokenExists {
                    token_id: t.token_id.clone(),
                    seq: issued.issued_seq,
                });
            }
            vec![EventBody::StaffTokenIssued(t.clone())]
        }
        Command::RevokeStaffToken(t) => {
            let issued = state
                .staff_tokens
                .get(&t.token_id)
                .ok_or_else(|| CommandError::UnknownToken(t.token_id.clone()))?;
            if let Some(seq) = issued.revoked_seq {
                return Err(CommandError::TokenRevoked {
                    token_id: t.token_id.clone(),
                    seq,
                });
            }
            vec![EventBody::StaffTokenRevoked(t.clone())]
        }
    };
    for e in &events {
        e.validate()?;
    }
    Ok(events)
}

/// The most digits in a row a public free text may hold (digits grouped by one kind of
/// separator counted through): a mobile number has 11, an ID card number 17 or 18, a bank
/// card 16 to 19.
pub const PUBLIC_TEXT_DIGITS_RUN_MAX: usize = 10;

impl Command {
    /// The command's free texts that are published as written (reasons, payout purposes,
    /// resolution notes), each with its field's name. Names (of projects, sponsors, payees)
    /// are not among them: a project's or sponsor's name is public by design, and a payee
    /// who is a person is masked on every public page.
    pub fn public_texts(&self) -> Vec<(&'static str, &Text)> {
        match self {
            Command::CloseProject { reason, .. }
            | Command::RefundDonation { reason, .. }
            | Command::RecordRefundFeeReturned { reason, .. }
            | Command::CancelPledge { reason, .. }
            | Command::CloseMatchingPool { reason, .. }
            | Command::FreezeMatch { reason, .. }
            | Command::UnfreezeMatch { reason, .. }
            | Command::ReleaseMatch { reason, .. }
            | Command::RejectPayout { reason, .. }
            | Command::RejectMove { reason, .. } => vec![("reason", reason)],
            Command::RequestPayout(p) => vec![("purpose", &p.purpose)],
            Command::RequestMove(m) => vec![("reason", &m.reason)],
            Command::ResolveException(r) => vec![("note", &r.note)],
            _ => Vec::new(),
        }
    }
}

/// A public free text must not carry a number that identifies a person: more than
/// [`PUBLIC_TEXT_DIGITS_RUN_MAX`] digits in a row is refused, naming the field. Digits are
/// ASCII or full-width; groups of them joined by single separators of one kind (spaces, or
/// hyphens, half- or full-width), as phone and card numbers are written, count as one run,
/// while a change of separator ends it, so a date and time (`2018-10-09 10:30`) or a date
/// and an amount pass. Names in the text are not checked: staff must keep them out
/// (ARCHITECTURE.md, "Known gaps").
fn check_public_text(field: &'static str, text: &Text) -> Result<(), ValueError> {
    let separator = |c: char| match c {
        ' ' | '\u{3000}' => Some(' '),
        '-' | '\u{FF0D}' => Some('-'),
        _ => None,
    };
    // The current run's length, its separator once it has one, and whether the last
    // character was that separator.
    let (mut run, mut longest) = (0usize, 0usize);
    let (mut joined_by, mut after_separator) = (None, false);
    for c in text.as_str().chars() {
        if c.is_ascii_digit() || ('０'..='９').contains(&c) {
            run += 1;
            longest = longest.max(run);
            after_separator = false;
        } else if let Some(kind) = separator(c).filter(|kind| {
            run > 0 && !after_separator && joined_by.is_none_or(|joined| joined == *kind)
        }) {
            joined_by = Some(kind);
            after_separator = true;
        } else {
            (run, joined_by, after_separator) = (0, None, false);
        }
    }
    if longest > PUBLIC_TEXT_DIGITS_RUN_MAX {
        return Err(ValueError::Invalid {
            field,
            reason: format!(
                "{longest} digits in a row; at most {PUBLIC_TEXT_DIGITS_RUN_MAX}: this text is \
                 published as written and must not hold a phone, ID card or bank card number"
            ),
        });
    }
    Ok(())
}

/// The match a review step is about, as the event names it: the donation must exist,
/// have triggered a match and not be refunded (a refund released its match).
fn reviewed_match(
    state: &LedgerState,
    donation_seq: u64,
    reason: &Text,
) -> Result<MatchReview, CommandError> {
    let d = state
        .donations
        .get(&donation_seq)
        .ok_or(CommandError::UnknownDonation(donation_seq))?;
    let Some((pool, amount)) = &d.matched else {
        return Err(CommandError::NoMatch(donation_seq));
    };
    if d.refunded_seq.is_some() {
        return Err(CommandError::AlreadyRefunded(donation_seq));
    }
    Ok(MatchReview {
        amount_minor: Amount::new(*amount)?,
        donation_seq,
        pool: pool.clone(),
        project: d.project.clone(),
        reason: reason.clone(),
    })
}

/// The hold on a match under review; refused, saying where its review stands, when it is
/// not frozen.
fn frozen_match<'s>(
    state: &'s LedgerState,
    donation_seq: u64,
    needed: &'static str,
) -> Result<&'s MatchHold, CommandError> {
    match state.match_holds.get(&donation_seq) {
        Some(hold) if hold.is_frozen() => Ok(hold),
        hold => Err(CommandError::MatchState {
            donation_seq,
            status: hold.map_or_else(|| "not frozen".to_owned(), review_status),
            needed,
        }),
    }
}

/// Where a match's review stands, in words, with the seq that put it there.
fn review_status(hold: &MatchHold) -> String {
    match hold.released_seq {
        None => format!("frozen (at seq {})", hold.frozen_seq),
        Some(seq) => format!("released after review (at seq {seq})"),
    }
}

/// A channel gives back at most the fee it charged: `given` and what it gave back of the
/// gift's fee before (on its refund and in corrections since) are together at most the
/// gift's `fee_minor`. For a refund being recorded and for a later correction alike.
fn check_fee_returned(d: &Donation, given: u64) -> Result<(), CommandError> {
    // The fold keeps what was given back within the fee.
    let left = d.fee_minor - d.fee_returned_minor;
    if given <= left {
        return Ok(());
    }
    let limit = match (d.fee_minor, left) {
        (0, _) if d.refunded_seq.is_none() => {
            "the gift paid no fee: omit fee_returned_minor".into()
        }
        (0, _) => "the gift paid no fee: there is nothing to give back".into(),
        (fee, 0) => format!("all of its {fee} was given back already"),
        (fee, left) if left == fee => format!("1 to {fee}"),
        (_, left) => format!("1 to the {left} left"),
    };
    Err(CommandError::FeeReturnedOverFee {
        donation_seq: d.seq,
        given,
        fee: d.fee_minor,
        returned_before: d.fee_returned_minor,
        limit,
    })
}

/// The gift a refund returned, by the refund's seq (a `donation_refunded` event): refused
/// for any other seq, saying what is there when it is a gift (its refund's seq, or that it
/// is not refunded).
fn refunded_gift(state: &LedgerState, refund_seq: u64) -> Result<&Donation, CommandError> {
    if let Some(d) = state
        .refunds
        .get(&refund_seq)
        .and_then(|donation_seq| state.donations.get(donation_seq))
    {
        return Ok(d);
    }
    let reason = match state.donations.get(&refund_seq) {
        Some(d) => match d.refunded_seq {
            Some(refund) => {
                format!("it is the gift, donation {refund_seq}; its refund is at seq {refund}")
            }
            None => format!(
                "it is the gift, donation {refund_seq}, which is not refunded; refund it with \
                 its fee_returned_minor"
            ),
        },
        None if refund_seq >= state.position => {
            format!("the ledger has {} events so far", state.position)
        }
        None => {
            "the event there is not a refund; give the seq of the donation_refunded event".into()
        }
    };
    Err(CommandError::UnknownRefund {
        seq: refund_seq,
        reason,
    })
}

/// Checks a resolution against the exception it resolves: the statement is fully recorded,
/// the line or entry is an open exception of it (not paired by reference or by a link;
/// a pairing by amount and date is a proposal, which a resolution may overrule), and the
/// resolution fits it (see [`check_link`], [`check_booked_line`]; a link also takes an entry
/// no line of any other statement has, [`check_unaccounted_elsewhere`]). Reads only the ledger
/// state: the reconciliation's rules come from `projections::reconcile`, over the lines the
/// state keeps.
fn check_resolution(state: &LedgerState, x: &ExceptionResolved) -> Result<(), CommandError> {
    EventBody::ExceptionResolved(x.clone()).validate()?;
    let st = state
        .statements
        .get(&x.statement_seq)
        .ok_or(CommandError::UnknownStatement(x.statement_seq))?;
    if !st.is_complete() {
        return Err(CommandError::StatementIncomplete {
            seq: st.seq,
            recorded: st.lines_recorded,
            line_count: st.line_count,
        });
    }
    let key = match (x.line_no, x.entry_seq) {
        (Some(line_no), _) => {
            if line_no == 0 || line_no > st.line_count {
                return Err(CommandError::UnknownStatementLine {
                    statement_seq: st.seq,
                    line_no,
                    line_count: st.line_count,
                });
            }
            projections::ExceptionKey::Line(line_no)
        }
        (None, Some(entry_seq)) => {
            Entry::at(state, entry_seq).ok_or(CommandError::UnknownEntry(entry_seq))?;
            projections::ExceptionKey::Entry(entry_seq)
        }
        (None, None) => {
            return Err(CommandError::BadResolution(
                "name a statement line (line_no) or a ledger entry (entry_seq)".into(),
            ))
        }
    };
    if let Some(done) = state.resolved.get(&(st.seq, key)) {
        return Err(CommandError::AlreadyResolved {
            statement_seq: st.seq,
            seq: done.seq,
        });
    }
    // Only an open exception is resolved.
    match key {
        projections::ExceptionKey::Line(line_no) => {
            if let Some((entry_seq, _)) = reconcile::line_paired(state, st, line_no) {
                return Err(CommandError::LineMatched {
                    statement_seq: st.seq,
                    line_no,
                    entry_seq,
                });
            }
        }
        projections::ExceptionKey::Entry(entry_seq) => {
            let entry = Entry::at(state, entry_seq).expect("looked up above");
            if let Some(reason) = entry.outside(st) {
                return Err(CommandError::NotAnException {
                    statement_seq: st.seq,
                    what: entry.kind.as_str(),
                    entry_seq,
                    reason,
                });
            }
            check_unaccounted(state, st, "entry_seq", &entry, None)?;
        }
    }
    let line = |line_no: Option<u64>| {
        // `validate` above: a link, settlement or matching receipt names a line, and every
        // line of a complete statement is kept.
        let line_no = line_no.expect("validated: the resolution names a line");
        let line = st
            .line(line_no)
            .expect("a complete statement's lines are kept");
        (line_no, line)
    };
    match &x.resolution {
        Resolution::Explained => {}
        Resolution::Linked { entry_seq } => {
            let (line_no, line) = line(x.line_no);
            let entry =
                Entry::at(state, *entry_seq).ok_or(CommandError::UnknownEntry(*entry_seq))?;
            check_link(st, line_no, line, &entry)?;
            check_unaccounted(state, st, "resolution.entry_seq", &entry, Some(line_no))?;
            check_unaccounted_elsewhere(state, st, &entry)?;
        }
        Resolution::Settlement {
            channel,
            amount_minor,
        } => {
            if st.source.channel() != events::Channel::Bank {
                return Err(CommandError::BadResolution(
                    "a settlement is booked from a bank statement line".into(),
                ));
            }
            if *channel == events::Channel::Bank {
                return Err(CommandError::BadResolution(
                    "channel: bank transfers are in the bank already; settle wechat, alipay, cash or charity_mall".into(),
                ));
            }
            let (line_no, line) = line(x.line_no);
            check_booked_line(st, line_no, line, "the settlement", *amount_minor)?;
            check_names_no_entry(state, st, line_no, "a settlement")?;
            check_credit_unbooked(state, st, line)?;
        }
        Resolution::MatchingReceived { pool, amount_minor } => {
            if st.source.channel() != events::Channel::Bank {
                return Err(CommandError::BadResolution(
                    "a matching receipt is booked from a bank statement line".into(),
                ));
            }
            let (line_no, line) = line(x.line_no);
            check_booked_line(st, line_no, line, "the matching receipt", *amount_minor)?;
            check_names_no_entry(state, st, line_no, "a matching receipt")?;
            check_credit_unbooked(state, st, line)?;
            let p = state
                .pools
                .get(pool)
                .ok_or_else(|| CommandError::UnknownPool(pool.clone()))?;
            if p.currency != st.currency {
                return Err(CommandError::BadResolution(format!(
                    "pool {pool} is in {}, the statement in {}",
                    p.currency, st.currency
                )));
            }
            let owed = p.used().saturating_sub(p.received);
            if amount_minor.minor() > owed {
                return Err(CommandError::BadResolution(format!(
                    "amount_minor: {} exceeds what pool {pool} owes ({owed})",
                    amount_minor.minor()
                )));
            }
        }
    }
    Ok(())
}

/// Refuses an entry that a line of the statement (other than `line_no`) already accounts
/// for, by reference or by a link: within a statement, an entry is matched to one line.
fn check_unaccounted(
    state: &LedgerState,
    st: &Statement,
    field: &'static str,
    entry: &Entry,
    line_no: Option<u64>,
) -> Result<(), CommandError> {
    let other = reconcile::lines_accounting_for(state, st, entry.seq)
        .into_iter()
        .find(|(n, _)| Some(*n) != line_no);
    if let Some((other, rule)) = other {
        return Err(CommandError::EntryMatched {
            field,
            what: entry.kind.as_str(),
            entry_seq: entry.seq,
            statement_seq: st.seq,
            line_no: other,
            rule: rule.as_str(),
        });
    }
    Ok(())
}

/// Refuses to link an entry that a line of another statement already accounts for, by
/// reference or by a link (`reconcile::line_elsewhere_accounting_for`; the fold records
/// links without this check, so an older log still opens): across the ledger, an entry is
/// linked only when no other line shows it. A
/// gift's refund is another entry than the gift, so its refund line may be linked while a
/// payment line of another statement has the gift.
fn check_unaccounted_elsewhere(
    state: &LedgerState,
    st: &Statement,
    entry: &Entry,
) -> Result<(), CommandError> {
    match reconcile::line_elsewhere_accounting_for(state, st.seq, entry.seq) {
        None => Ok(()),
        Some(other) => Err(CommandError::EntryMatched {
            field: "resolution.entry_seq",
            what: entry.kind.as_str(),
            entry_seq: entry.seq,
            statement_seq: other.statement_seq,
            line_no: other.line_no,
            rule: other.rule.as_str(),
        }),
    }
}

/// A link says the line *is* the entry, as a match by reference would: the entry is one the
/// line's direction can show, in the statement's channel and currency, with the same gross
/// amount (and, for a channel's payment or refund line, the same fee: a gift's fee, or the part of it a refund got back), to the fen. A difference is
/// not linked away; staff resolve it as `explained` (or correct the ledger).
fn check_link(
    st: &Statement,
    line_no: u64,
    line: &StatementLine,
    entry: &Entry,
) -> Result<(), CommandError> {
    const FIELD: &str = "resolution.entry_seq";
    let mismatch = |reason: String| CommandError::LineMismatch {
        field: FIELD,
        statement_seq: st.seq,
        line_no,
        line_kind: line.kind.as_str(),
        reason,
    };
    let channel = st.source.channel();
    let (fits, shows) = match line.kind {
        StatementLineKind::Payment | StatementLineKind::Credit => {
            (entry.kind == EntryKind::Donation, "money in: a donation")
        }
        StatementLineKind::Refund => (entry.kind == EntryKind::Refund, "a refund"),
        StatementLineKind::Debit => (
            entry.kind != EntryKind::Donation,
            "money out: a disbursed payout or a refund",
        ),
    };
    if !fits {
        return Err(mismatch(format!(
            "it shows {shows}, not the {} at seq {}",
            entry.kind.as_str(),
            entry.seq
        )));
    }
    if entry.channel != channel {
        return Err(mismatch(format!(
            "the {} at seq {} went through {}, the statement ({}) shows {}",
            entry.kind.as_str(),
            entry.seq,
            entry.channel.as_str(),
            st.source.as_str(),
            channel.as_str()
        )));
    }
    if let Some(status) = entry.payout_status {
        if status != RequestStatus::Disbursed {
            return Err(CommandError::RequestState {
                field: FIELD,
                what: "payout",
                seq: entry.seq,
                status: status.as_str(),
                needed: "disbursed",
            });
        }
    }
    if entry.currency != line.currency {
        return Err(mismatch(format!(
            "it is in {}, the {} at seq {} in {}",
            line.currency,
            entry.kind.as_str(),
            entry.seq,
            entry.currency
        )));
    }
    let rule = "a link pairs a line with an entry of the same amount and fee, to the fen; resolve a difference as explained";
    if entry.amount_minor != line.amount_minor {
        return Err(CommandError::AmountMismatch {
            field: FIELD,
            given: "the linked entry",
            what: "amount",
            given_minor: signed_minor(entry.amount_minor),
            statement_seq: st.seq,
            line_no,
            line_minor: signed_minor(line.amount_minor),
            rule,
        });
    }
    // A channel's payment line shows the gift's fee, its refund line the part of it given
    // back (negative, as the refund entry's); a bank line carries no fee.
    if matches!(
        line.kind,
        StatementLineKind::Payment | StatementLineKind::Refund
    ) && entry.fee_minor != line.fee_minor
    {
        return Err(CommandError::AmountMismatch {
            field: FIELD,
            given: "the linked entry",
            what: "fee",
            given_minor: entry.fee_minor,
            statement_seq: st.seq,
            line_no,
            line_minor: line.fee_minor,
            rule,
        });
    }
    Ok(())
}

/// An amount of minor units as a signed one, for messages beside signed fees (amounts are at
/// most 2^53 − 1, far within `i64`).
fn signed_minor(minor: u64) -> i64 {
    i64::try_from(minor).unwrap_or(i64::MAX)
}

/// A settlement or a matching receipt books money the ledger does not have yet, so it cannot
/// be booked from a line whose reference names a ledger entry (a bank gift it differs from,
/// or a duplicate of one): the reconciler counts that entry as accounted for by the line,
/// and booking the line again would count the money twice.
fn check_names_no_entry(
    state: &LedgerState,
    st: &projections::Statement,
    line_no: u64,
    what: &str,
) -> Result<(), CommandError> {
    match projections::reconcile::line_reference_entry(state, st, line_no) {
        None => Ok(()),
        Some(entry) => Err(CommandError::LineMismatch {
            field: "resolution",
            statement_seq: st.seq,
            line_no,
            line_kind: "line naming a ledger entry",
            reason: format!(
                "its reference names entry {entry}, which it accounts for; {what} would count \
                 that money twice (resolve the difference as explained)"
            ),
        }),
    }
}

/// Refuses to book a bank credit line that another statement of the same account shows too
/// (same reference, amount and booking time) and that was booked there already: two exports
/// of one account that overlap would otherwise book one credit twice.
fn check_credit_unbooked(
    state: &LedgerState,
    st: &Statement,
    line: &StatementLine,
) -> Result<(), CommandError> {
    let Some(reference) = line.reference.as_deref() else {
        return Ok(());
    };
    let booked = reconcile::credit_booked(
        state,
        Some(&st.account),
        reference,
        line.amount_minor,
        Some(line.booked_ms),
        Some(st.seq),
    );
    match booked {
        None => Ok(()),
        Some(b) => Err(CommandError::CreditBooked {
            field: "resolution",
            reference: reference.to_owned(),
            amount_minor: line.amount_minor,
            statement_seq: b.statement_seq,
            line_no: b.line_no,
            resolution_seq: b.resolution_seq,
            what: "booking it again (resolve this line as explained)",
        }),
    }
}

/// A settlement or a matching receipt books a bank credit: money in, of exactly the line's
/// amount (the journal's debit to the bank is this amount, and the bank got the line's).
fn check_booked_line(
    st: &Statement,
    line_no: u64,
    line: &StatementLine,
    given: &'static str,
    amount: Amount,
) -> Result<(), CommandError> {
    if line.kind != StatementLineKind::Credit {
        return Err(CommandError::LineMismatch {
            field: "resolution",
            statement_seq: st.seq,
            line_no,
            line_kind: line.kind.as_str(),
            reason: format!("{given} is booked from a bank credit (money in)"),
        });
    }
    if amount.minor() != line.amount_minor {
        return Err(CommandError::AmountMismatch {
            field: "amount_minor",
            given,
            what: "amount",
            given_minor: signed_minor(amount.minor()),
            statement_seq: st.seq,
            line_no,
            line_minor: signed_minor(line.amount_minor),
            rule: "it books the line's amount, to the fen",
        });
    }
    Ok(())
}

fn check_decision(
    state: &LedgerState,
    ctx: &Context<'_>,
    seq: u64,
    payout: bool,
) -> Result<(), CommandError> {
    let (field, what, req) = if payout {
        ("payout_seq", "payout", state.payouts.get(&seq))
    } else {
        ("move_seq", "move", state.moves.get(&seq))
    };
    let req = req.ok_or(CommandError::UnknownRequest { field, what, seq })?;
    if req.status != RequestStatus::Requested {
        return Err(CommandError::RequestState {
            field,
            what,
            seq,
            status: req.status.as_str(),
            needed: "requested",
        });
    }
    if let Some(shared) = req.shared_hand(ctx.actor, ctx.token_issuer) {
        return Err(CommandError::FourEyes {
            actor: shared.person.clone(),
            requested: if shared.issued_request_token {
                "issued the token that requested"
            } else {
                "requested"
            },
            what,
            seq,
            decides: if shared.issued_decision_token {
                "decide it with a token they issued"
            } else {
                "decide it"
            },
        });
    }
    Ok(())
}

/// The most money a project may take in, in minor units: gifts (gross), matches and moves in
/// together. No real project comes near it (2^62 fen is some 46 trillion yuan); it keeps every
/// sum of a project's figures within `u64`, so the fold never overflows.
pub const PROJECT_INFLOW_MAX: u64 = 1 << 62;

/// What a project may still take in under [`PROJECT_INFLOW_MAX`].
fn limit_room(p: &Project) -> u64 {
    let b = &p.balances;
    let inflow = b
        .raised_gross
        .saturating_add(b.matched)
        .saturating_add(b.moved_in);
    PROJECT_INFLOW_MAX.saturating_sub(inflow)
}

/// What a project may still take in under its goal, when the goal is a cap (help requests
/// and micro-wishes): the goal and the room left under it.
fn goal_room(p: &Project) -> Option<(u64, u64)> {
    let goal = p.goal_minor.filter(|_| p.kind.goal_is_cap())?.minor();
    Some((goal, goal.saturating_sub(p.balances.received())))
}

/// How much more money a project may take in: under [`PROJECT_INFLOW_MAX`], and under its
/// goal when the goal is a cap.
fn inflow_room(p: &Project) -> u64 {
    goal_room(p)
        .map_or(u64::MAX, |(_, room)| room)
        .min(limit_room(p))
}

/// Refuses `amount` of new money into `p` beyond [`inflow_room`], naming the limit it breaks
/// (the goal first).
fn check_inflow(p: &Project, amount: u64) -> Result<(), CommandError> {
    if let Some((goal, _)) = goal_room(p).filter(|(_, room)| amount > *room) {
        return Err(CommandError::OverGoal {
            project: p.id.clone(),
            kind: p.kind.as_str(),
            amount,
            raised: p.balances.received(),
            goal,
        });
    }
    if amount > limit_room(p) {
        return Err(CommandError::InflowLimit {
            project: p.id.clone(),
            amount,
            max: PROJECT_INFLOW_MAX,
        });
    }
    Ok(())
}

fn decide_donation(
    state: &LedgerState,
    ctx: &Context<'_>,
    input: &DonationInput,
) -> Result<Vec<EventBody>, CommandError> {
    let p = open_project(state, &input.project)?;
    same_currency(p, input.currency)?;
    let amount = input.amount_minor.minor();
    // The receipt number is derived once: the code is spelled from it, the index keyed by it.
    let number = events::receipt_number_of(ctx.ledger, input.channel, &input.channel_txn_id);
    let donation = EventBody::DonationReceived(DonationReceived {
        project: input.project.clone(),
        amount_minor: input.amount_minor,
        currency: input.currency,
        channel: input.channel,
        channel_txn_id: input.channel_txn_id.clone(),
        fee_minor: input.fee_minor,
        pledge_seq: input.pledge_seq,
        anonymous: input.anonymous,
        public_name: input.public_name.clone(),
        donor_ref: input.donor_ref.clone(),
        receipt_code: events::ReceiptCode::of_number(number).as_str().to_owned(),
    });
    // Field rules first, so a malformed gift is named as such.
    donation.validate()?;
    // A channel transaction is recorded once. Its receipt code is derived from it, so the
    // receipt index finds an earlier one; the stored id tells a repeat from a (2^-64) collision.
    if let Some(earlier) = state.donation_with_receipt(number) {
        if earlier.channel == input.channel && *earlier.channel_txn_id == *input.channel_txn_id {
            return Err(CommandError::DuplicateChannelTxn {
                channel: input.channel.as_str(),
                txn_id: input.channel_txn_id.clone(),
            });
        }
        return Err(CommandError::ReceiptCollision {
            receipt_code: events::ReceiptCode::of_number(number).as_str().to_owned(),
        });
    }
    // A bank transfer whose credit was booked from a statement (as a settlement or a
    // matching receipt) is in the books already.
    if input.channel == Channel::Bank {
        if let Some(b) =
            reconcile::credit_booked(state, None, &input.channel_txn_id, amount, None, None)
        {
            return Err(CommandError::CreditBooked {
                field: "channel_txn_id",
                reference: input.channel_txn_id.clone(),
                amount_minor: amount,
                statement_seq: b.statement_seq,
                line_no: b.line_no,
                resolution_seq: b.resolution_seq,
                what: "recording it as a gift too",
            });
        }
    }
    check_inflow(p, amount)?;
    if let Some(seq) = input.pledge_seq {
        let pl = state
            .pledges
            .get(&seq)
            .ok_or(CommandError::UnknownPledge(seq))?;
        if pl.cancelled {
            return Err(CommandError::PledgeCancelled(seq));
        }
        if pl.project != input.project {
            return Err(CommandError::PledgeProjectMismatch {
                seq,
                pledge_project: pl.project.clone(),
                project: input.project.clone(),
            });
        }
        if amount > pl.outstanding() {
            return Err(CommandError::OverPledge {
                seq,
                amount,
                outstanding: pl.outstanding(),
            });
        }
    }
    let mut out = vec![donation];
    if let Some((pool, matched)) = match_for(state, ctx.ts_ms, input) {
        out.push(EventBody::MatchAllocated(MatchAllocated {
            pool,
            donation_seq: ctx.next_seq,
            project: input.project.clone(),
            amount_minor: matched,
        }));
    }
    Ok(out)
}

/// The match a donation earns: from the oldest open pool that covers its project, is in its
/// window, has the same currency and has money left; `amount × ratio` rounded down, then
/// clamped by the per-donation cap, what is left of the donor's cap for the day, what is
/// left of the pool, and what the project may still take in after the gift (its goal, for a
/// help request or micro-wish). One pool per donation: the first, in that order, whose
/// clamped match is not zero (a pool whose caps leave nothing for this gift passes it on).
pub fn match_for(state: &LedgerState, ts_ms: u64, input: &DonationInput) -> Option<(Id, Amount)> {
    let project_room = state
        .projects
        .get(&input.project)
        .map_or(0, inflow_room)
        .saturating_sub(input.amount_minor.minor());
    let mut pools: Vec<_> = state
        .pools
        .values()
        .filter(|pool| {
            pool.open
                && pool.currency == input.currency
                && pool.projects.contains(&input.project)
                && (pool.valid_from_ms..pool.valid_until_ms).contains(&ts_ms)
                && pool.remaining() > 0
        })
        .collect();
    pools.sort_by_key(|pool| pool.committed_seq);
    for pool in pools {
        let by_ratio = (u128::from(input.amount_minor.minor()) * u128::from(pool.ratio_numerator)
            / u128::from(pool.ratio_denominator)) as u64;
        let donor_used = pool
            .per_donor_day
            .get(&(input.donor_ref.clone(), pool.day_of(ts_ms)))
            .copied()
            .unwrap_or(0);
        let donor_left = pool.cap_per_donor_per_day_minor.saturating_sub(donor_used);
        let matched = by_ratio
            .min(pool.cap_per_donation_minor)
            .min(donor_left)
            .min(pool.remaining())
            .min(project_room);
        if let Ok(amount) = Amount::new(matched) {
            return Some((pool.id.clone(), amount));
        }
    }
    None
}

/// The digest an idempotency key is bound to: SHA-256 of the RFC 8785 bytes of the actor
/// and the submission's commands.
pub fn commands_digest(actor: &Id, commands: &[Command]) -> Hash {
    #[derive(serde::Serialize)]
    struct Digested<'a> {
        actor: &'a Id,
        commands: &'a [Command],
    }
    // Commands hold no floats.
    let bytes = events::jcs::to_vec(&Digested { actor, commands }).expect("commands serialize");
    events::sha256(&bytes)
}
