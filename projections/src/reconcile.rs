//! Reconciliation: a statement's recorded lines matched against the ledger. A pure
//! function of the ledger state and the lines, so a reconciliation can be recomputed at any
//! time and comes out the same; what staff decided about an exception is itself an event
//! (`ExceptionResolved`) and shows up here as resolved.
//!
//! Matching, in order (docs/FINANCE.md has the details):
//! 1. By reference: a channel payment line by its merchant order number, then the channel's
//!    own order number, against donations of the statement's channel; a refund line by the
//!    payment it names; a bank credit against bank-transfer donations; a bank debit against
//!    disbursed payouts by the bank reference.
//! 2. Lines left over, by amount and date: same gross amount and currency, booked within
//!    [`MatchConfig::date_window_ms`] of the ledger entry; the closest in time wins, then
//!    the lowest seq. Such matches are listed with their rule, for review: they are
//!    proposals, and a line or entry staff have resolved takes no part in them.
//! 3. Ledger entries of the statement's channel inside its period that no line matched are
//!    missing from the statement, or a timing difference when they fall within
//!    [`MatchConfig::timing_window_ms`] of the period's end (the channel books them on the
//!    next statement).
//!
//! The statement's own figures are summed apart by direction ([`StatementTotals`]): money in
//! (payments, bank credits), money out (refunds, bank debits), fees charged and fees given
//! back, so finance staff can tick each against the bill's summary to the fen.
//!
//! Memory is kept to what a reconciliation must hold: the lines stream through
//! [`Reconciler::push`]; only the matched entry seqs and the unmatched lines are kept.
//!
//! The write side checks a resolution against its exception without the log or a whole
//! reconciliation: [`line_paired`] and [`lines_accounting_for`] run the same reference rule
//! over the lines the ledger state keeps (`StatementLine`), a few lookups each, and
//! [`line_elsewhere_accounting_for`] runs it over the other statements' lines that carry an
//! entry's reference, so a link takes an entry no line of any statement has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use events::{
    milli_minor_rounded, Channel, Currency, Resolution, StatementLineKind, StatementLineRecorded,
};
use serde::Serialize;

use crate::{
    Donation, ExceptionKey, LedgerState, Request, RequestStatus, Statement, StatementLine,
};

/// Matching tolerances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MatchConfig {
    /// How far apart a line's booking time and a ledger entry's time may be for a match by
    /// amount and date. Default: 2 days (bank value dates, weekends).
    pub date_window_ms: u64,
    /// Ledger entries this close to the end of the period that the statement lacks are
    /// timing differences rather than missing. Default: 1 hour.
    pub timing_window_ms: u64,
}

/// The widest date window staff may ask for, in hours: 30 days.
pub const DATE_WINDOW_HOURS_MAX: u64 = 720;
/// The widest timing window staff may ask for, in minutes: 7 days.
pub const TIMING_WINDOW_MINUTES_MAX: u64 = 10_080;

impl MatchConfig {
    /// The windows as staff give them (hours, minutes), each within its limit; a window
    /// beyond it is refused naming the field and the limit.
    pub fn from_windows(
        date_window_hours: u64,
        timing_window_minutes: u64,
    ) -> Result<MatchConfig, WindowError> {
        for (field, value, max) in [
            (
                "date_window_hours",
                date_window_hours,
                DATE_WINDOW_HOURS_MAX,
            ),
            (
                "timing_window_minutes",
                timing_window_minutes,
                TIMING_WINDOW_MINUTES_MAX,
            ),
        ] {
            if value > max {
                return Err(WindowError { field, value, max });
            }
        }
        Ok(MatchConfig {
            date_window_ms: date_window_hours * 3_600_000,
            timing_window_ms: timing_window_minutes * 60_000,
        })
    }
}

/// A matching window beyond its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: at most {max} (got {value})")]
pub struct WindowError {
    pub field: &'static str,
    pub value: u64,
    pub max: u64,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            date_window_ms: 2 * 86_400_000,
            timing_window_ms: 3_600_000,
        }
    }
}

/// How a line was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    /// The line's reference is the ledger entry's channel transaction id or bank reference.
    Reference,
    /// Same amount within the date window; review these.
    AmountAndDate,
    /// Staff linked the line to the entry (`ExceptionResolved` with `linked`).
    Linked,
}

impl MatchRule {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchRule::Reference => "reference",
            MatchRule::AmountAndDate => "amount_and_date",
            MatchRule::Linked => "linked",
        }
    }
}

/// Why a line or entry did not reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// A statement line with no ledger entry.
    LineNotInLedger,
    /// A ledger entry of the statement's channel and period that the statement lacks.
    MissingFromStatement,
    /// A ledger entry near the end of the period that the statement lacks: expected on the
    /// next statement.
    TimingDifference,
    /// Same reference, different gross amount.
    AmountDifference,
    /// Same reference and amount, different channel fee.
    FeeDifference,
    /// Same reference, different currency.
    CurrencyDifference,
    /// The channel refunded a payment that the ledger has not refunded.
    RefundNotInLedger,
    /// A second line for a ledger entry already matched by an earlier line.
    DuplicateLine,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 8] = [
        ReasonCode::LineNotInLedger,
        ReasonCode::MissingFromStatement,
        ReasonCode::TimingDifference,
        ReasonCode::AmountDifference,
        ReasonCode::FeeDifference,
        ReasonCode::CurrencyDifference,
        ReasonCode::RefundNotInLedger,
        ReasonCode::DuplicateLine,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::LineNotInLedger => "line_not_in_ledger",
            ReasonCode::MissingFromStatement => "missing_from_statement",
            ReasonCode::TimingDifference => "timing_difference",
            ReasonCode::AmountDifference => "amount_difference",
            ReasonCode::FeeDifference => "fee_difference",
            ReasonCode::CurrencyDifference => "currency_difference",
            ReasonCode::RefundNotInLedger => "refund_not_in_ledger",
            ReasonCode::DuplicateLine => "duplicate_line",
        }
    }
}

/// A statement line paired with a ledger entry (a donation, its refund, or a payout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedPair {
    pub line_no: u64,
    pub entry_seq: u64,
    pub rule: MatchRule,
}

/// Something that did not reconcile, with its reason and, once staff dealt with it, the
/// seq of the `ExceptionResolved` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exception {
    pub key: ExceptionKey,
    pub reason: ReasonCode,
    pub line_no: Option<u64>,
    pub entry_seq: Option<u64>,
    pub reference: String,
    /// What the statement says (gross), when there is a line.
    pub statement_amount_minor: Option<u64>,
    /// What the ledger says (gross), when there is an entry.
    pub ledger_amount_minor: Option<u64>,
    /// The line's fee: positive when the channel charged it, negative when it gave it back.
    pub statement_fee_minor: Option<i64>,
    /// The line's fee exactly, in thousandths of a minor unit, when the channel printed it
    /// finer than the minor unit (WeChat Pay's `0.00600` is 600; `statement_fee_minor` is
    /// then 1).
    pub statement_fee_milli_minor: Option<i64>,
    /// The entry's fee, signed as the line's: a gift's fee charged (positive), the part of
    /// it a refund got back (negative), 0 for a payout.
    pub ledger_fee_minor: Option<i64>,
    pub resolved_seq: Option<u64>,
    pub resolution: Option<&'static str>,
}

/// What a statement's lines add up to, each direction of money and of fees apart (never
/// netted into one gross), in minor units of the statement's currency. A channel's bill
/// states the same figures in its summary: WeChat Pay's 应结订单总金额 is `money_in_minor`,
/// 退款总金额 `money_out_minor` and 手续费总金额 [`StatementTotals::net_fees_milli_minor`].
///
/// Fees are summed exactly, in thousandths of a minor unit, as WeChat Pay prints them
/// (`0.05940`). What the channel keeps is taken to be that sum rounded once, half away from
/// zero, to the fen ([`StatementTotals::net_fees_minor`]); each line is compared with the
/// ledger at its own fee rounded to the fen, and [`StatementTotals::fee_rounding_minor`]
/// is what those per-line fees differ from the statement's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatementTotals {
    /// Payment and bank credit lines.
    pub lines_in: u64,
    /// Refund and bank debit lines.
    pub lines_out: u64,
    /// Money in: the amounts of payments and bank credits.
    pub money_in_minor: u128,
    /// Money out: the amounts of refunds and bank debits.
    pub money_out_minor: u128,
    /// Fees the channel charged (lines with a positive fee), exactly, in thousandths of a
    /// minor unit.
    pub fees_charged_milli_minor: u128,
    /// Fees the channel gave back (lines with a negative fee, by their magnitude), exactly,
    /// in thousandths of a minor unit: a WeChat Pay refund returns its share of the
    /// payment's fee.
    pub fees_returned_milli_minor: u128,
    /// The lines' fees each rounded to whole minor units (`fee_minor`), net, over every
    /// line (a payment line's fee is the one the matching compares with its gift's).
    pub line_fees_minor: i128,
}

impl StatementTotals {
    /// Adds one line.
    pub fn add(&mut self, line: &StatementLineRecorded) {
        let amount = u128::from(line.amount_minor.minor());
        if line.kind.is_money_in() {
            self.lines_in += 1;
            self.money_in_minor += amount;
        } else {
            self.lines_out += 1;
            self.money_out_minor += amount;
        }
        let fee = line.fee_exact_milli_minor();
        if fee >= 0 {
            self.fees_charged_milli_minor += fee.unsigned_abs();
        } else {
            self.fees_returned_milli_minor += fee.unsigned_abs();
        }
        self.line_fees_minor += i128::from(line.fee_minor);
    }
    /// Fees charged, rounded to whole minor units.
    pub fn fees_charged_minor(&self) -> u128 {
        milli_minor_rounded(signed(self.fees_charged_milli_minor)).unsigned_abs()
    }
    /// Fees given back, rounded to whole minor units.
    pub fn fees_returned_minor(&self) -> u128 {
        milli_minor_rounded(signed(self.fees_returned_milli_minor)).unsigned_abs()
    }
    /// Fees charged less fees given back, exactly, in thousandths of a minor unit.
    pub fn net_fees_milli_minor(&self) -> i128 {
        signed(self.fees_charged_milli_minor) - signed(self.fees_returned_milli_minor)
    }
    /// What the channel kept: the net fees rounded once to whole minor units.
    pub fn net_fees_minor(&self) -> i128 {
        milli_minor_rounded(self.net_fees_milli_minor())
    }
    /// The statement's net fees less the sum of its lines' rounded fees: what booking each
    /// line's fee to the fen leaves over, to book as a rounding difference. 0 when every
    /// fee is a whole number of minor units.
    pub fn fee_rounding_minor(&self) -> i128 {
        self.net_fees_minor() - self.line_fees_minor
    }
    /// Money in less money out less the net fees: what the statement's lines leave on the
    /// account (for a channel, what it owes the merchant for them).
    pub fn net_minor(&self) -> i128 {
        signed(self.money_in_minor) - signed(self.money_out_minor) - self.net_fees_minor()
    }
}

/// A sum of at most [`events::STATEMENT_LINES_MAX`] values of at most 2^53 − 1 fits an
/// `i128` many times over.
fn signed(sum: u128) -> i128 {
    i128::try_from(sum).expect("a statement's sums stay far below 2^127")
}

/// The outcome of reconciling one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub statement_seq: u64,
    pub source: &'static str,
    pub currency: Currency,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub lines: u64,
    /// The statement's own figures, by direction.
    pub totals: StatementTotals,
    pub matched: Vec<MatchedPair>,
    pub exceptions: Vec<Exception>,
}

impl Reconciliation {
    /// Exceptions not yet resolved.
    pub fn open_exceptions(&self) -> impl Iterator<Item = &Exception> {
        self.exceptions.iter().filter(|e| e.resolved_seq.is_none())
    }
    /// How many exceptions have each reason.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for e in &self.exceptions {
            *out.entry(e.reason.as_str()).or_insert(0) += 1;
        }
        out
    }
    /// How many lines each rule matched.
    pub fn matched_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for m in &self.matched {
            *out.entry(m.rule.as_str()).or_insert(0) += 1;
        }
        out
    }
}

/// The ledger entry a line might be: a donation (by channel and reference) or a payout.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    seq: u64,
    ts_ms: u64,
    amount_minor: u64,
    /// Signed as statement lines sign fees: charged positive, given back negative.
    fee_minor: i64,
    currency: Currency,
}

/// A fee of the ledger (at most 2^53 − 1) signed as statement lines sign it.
fn signed_fee(minor: u64) -> i64 {
    i64::try_from(minor).unwrap_or(i64::MAX)
}

impl Candidate {
    /// A donation, as the money in it was received.
    fn donation(d: &Donation) -> Candidate {
        Candidate {
            seq: d.seq,
            ts_ms: d.ts_ms,
            amount_minor: d.amount_minor,
            fee_minor: signed_fee(d.fee_minor),
            currency: d.currency,
        }
    }

    /// A donation's refund, as the money went back: the whole amount, and the part of the
    /// fee the channel gave back (negative): recorded with the refund, plus what
    /// corrections (`RefundFeeReturned`) added since, so a refund line showing the fee
    /// matches once staff record it. `None` when the donation is not refunded.
    fn refund(d: &Donation) -> Option<Candidate> {
        Some(Candidate {
            seq: d.refunded_seq?,
            ts_ms: d.refunded_ts_ms?,
            amount_minor: d.amount_minor,
            fee_minor: -signed_fee(d.fee_returned_minor),
            currency: d.currency,
        })
    }

    /// A payout, as it was disbursed.
    fn payout(p: &Request) -> Candidate {
        Candidate {
            seq: p.seq,
            ts_ms: p.disbursed_ts_ms.unwrap_or(p.ts_ms),
            amount_minor: p.amount_minor,
            fee_minor: 0,
            currency: p.currency,
        }
    }
}

/// A statement line as the reference rule reads it: from the log (`StatementLineRecorded`)
/// or as the ledger keeps it ([`StatementLine`], which keeps the references the rule can
/// still consult, so both give the same answer).
#[derive(Debug, Clone, Copy)]
struct LineFacts<'l> {
    kind: StatementLineKind,
    reference: Option<&'l str>,
    original_reference: Option<&'l str>,
    amount_minor: u64,
    /// Signed: positive charged, negative given back.
    fee_minor: i64,
    currency: Currency,
}

impl<'l> LineFacts<'l> {
    fn recorded(l: &'l StatementLineRecorded) -> Self {
        LineFacts {
            kind: l.kind,
            reference: Some(&l.reference),
            original_reference: l.original_reference.as_deref(),
            amount_minor: l.amount_minor.minor(),
            fee_minor: l.fee_minor,
            currency: l.currency,
        }
    }

    fn kept(l: &'l StatementLine) -> Self {
        LineFacts {
            kind: l.kind,
            reference: l.reference.as_deref(),
            original_reference: l.original_reference.as_deref(),
            amount_minor: l.amount_minor,
            fee_minor: l.fee_minor,
            currency: l.currency,
        }
    }
}

/// What the reference rule finds for one line, before duplicates are looked at.
#[derive(Debug, Clone, Copy)]
enum ByReference {
    /// Nothing: the line is left for matching by amount and date.
    NotFound,
    /// A refund line naming a donation the ledger has not refunded (shown with the donation).
    RefundNotInLedger(Candidate),
    /// The line accounts for `entry` (a donation, refund or payout seq), shown as `shown` (a
    /// refund by its donation), with their difference, if any.
    Found {
        entry: u64,
        shown: Candidate,
        difference: Option<ReasonCode>,
    },
}

/// The reference rule (step 1 of the matching) for one line of a statement of `channel`,
/// against the ledger as it is. `payout` finds the disbursed payout with a bank reference.
fn by_reference(
    state: &LedgerState,
    channel: Channel,
    line: LineFacts<'_>,
    payout: impl Fn(&str) -> Option<Candidate>,
) -> ByReference {
    let donation = |r: &str| {
        state
            .donation_by_channel_txn(channel, r)
            .map(Candidate::donation)
    };
    let found = match line.kind {
        StatementLineKind::Payment | StatementLineKind::Credit => line
            .reference
            .and_then(donation)
            .or_else(|| line.original_reference.and_then(donation)),
        StatementLineKind::Refund => line.original_reference.and_then(donation),
        StatementLineKind::Debit => line.reference.and_then(payout),
    };
    let Some(c) = found else {
        return ByReference::NotFound;
    };
    if line.kind == StatementLineKind::Refund {
        let refund = state
            .donations
            .get(&c.seq)
            .and_then(|d| Candidate::refund(d));
        let Some(refund) = refund else {
            return ByReference::RefundNotInLedger(c);
        };
        // Shown by its donation (the reference), with the refund's own fee: the part of the
        // gift's fee given back, negative as the line's.
        let difference = if line.amount_minor != refund.amount_minor {
            Some(ReasonCode::AmountDifference)
        } else if line.fee_minor != refund.fee_minor {
            Some(ReasonCode::FeeDifference)
        } else {
            None
        };
        return ByReference::Found {
            entry: refund.seq,
            shown: Candidate {
                fee_minor: refund.fee_minor,
                ..c
            },
            difference,
        };
    }
    let difference = if line.currency != c.currency {
        Some(ReasonCode::CurrencyDifference)
    } else if line.amount_minor != c.amount_minor {
        Some(ReasonCode::AmountDifference)
    } else if line.kind == StatementLineKind::Payment && line.fee_minor != c.fee_minor {
        Some(ReasonCode::FeeDifference)
    } else {
        None
    };
    ByReference::Found {
        entry: c.seq,
        shown: c,
        difference,
    }
}

/// The disbursed payout with a bank reference, for a bank statement: the latest of those
/// sharing it, as [`Reconciler`]'s table by reference finds it. Payouts are few (each one is
/// approved by hand), so this looks at each.
fn payout_by_reference(
    state: &LedgerState,
    channel: Channel,
    reference: &str,
) -> Option<Candidate> {
    if channel != Channel::Bank {
        return None;
    }
    state
        .payouts
        .values()
        .rev()
        .find(|p| {
            p.status == RequestStatus::Disbursed && p.bank_reference.as_deref() == Some(reference)
        })
        .map(Candidate::payout)
}

/// The reference a statement line would carry for a ledger entry: a donation's channel
/// transaction id (a refund's: its donation's), a payout's bank reference.
fn entry_reference(state: &LedgerState, seq: u64) -> Option<&str> {
    let donation = state.refunds.get(&seq).copied().unwrap_or(seq);
    if let Some(d) = state.donations.get(&donation) {
        return Some(&d.channel_txn_id);
    }
    state
        .payouts
        .get(&seq)
        .and_then(|p| p.bank_reference.as_deref())
}

/// The entry staff linked a statement's line to, if they did.
fn linked_entry(state: &LedgerState, statement_seq: u64, line_no: u64) -> Option<u64> {
    match state
        .resolved
        .get(&(statement_seq, ExceptionKey::Line(line_no)))?
        .resolution
    {
        Resolution::Linked { entry_seq } => Some(entry_seq),
        _ => None,
    }
}

/// The lines of a recorded statement that account for a ledger entry in its reconciliation,
/// in line order, with how: lines whose reference finds the entry (with or without a
/// difference: such a line accounts for it too) and lines staff linked to it. Decided from
/// the ledger state alone (the lines it keeps), as [`Reconciler`] would decide it; pairings
/// by amount and date are not looked at: they are proposals for review, which a resolution
/// may overrule.
pub fn lines_accounting_for(
    state: &LedgerState,
    statement: &Statement,
    entry_seq: u64,
) -> Vec<(u64, MatchRule)> {
    let st = statement.seq;
    let mut out: Vec<(u64, MatchRule)> = accounting_lines(state, entry_seq, st..=st)
        .map(|a| (a.line_no, a.rule))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A line of a recorded statement that accounts for a ledger entry, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineAccounting {
    pub statement_seq: u64,
    pub line_no: u64,
    pub rule: MatchRule,
}

/// The first line (by statement, then line) of a statement other than `statement_seq` that
/// accounts for a ledger entry, as [`lines_accounting_for`] decides within each statement:
/// a line staff linked to the entry, or a line whose reference finds it (paired, or with a
/// difference, or a duplicate). A link takes an entry that no such line has, so across the
/// ledger an entry is linked only when no other statement's line shows it. Entries are
/// what lines are matched to: a payment line accounts for its donation, a refund line for
/// the refund (another entry), so a gift's payment and its refund may be on two statements.
pub fn line_elsewhere_accounting_for(
    state: &LedgerState,
    statement_seq: u64,
    entry_seq: u64,
) -> Option<LineAccounting> {
    accounting_lines(state, entry_seq, 0..=u64::MAX)
        .filter(|a| a.statement_seq != statement_seq)
        .min()
}

/// The lines of the statements whose seqs are in `statements` that account for a ledger
/// entry: those staff linked to it, then those whose reference finds it (a linked line is
/// not counted by its reference, so the two never name the same line). Looks only at the
/// lines linked to the entry and the lines carrying its reference (the state's indexes, a
/// few lookups each), never at whole statements.
fn accounting_lines(
    state: &LedgerState,
    entry_seq: u64,
    statements: std::ops::RangeInclusive<u64>,
) -> impl Iterator<Item = LineAccounting> + '_ {
    let (first, last) = (*statements.start(), *statements.end());
    let linked = state
        .linked_lines
        .range((entry_seq, first, 0)..=(entry_seq, last, u64::MAX))
        .map(|(_, st, n)| LineAccounting {
            statement_seq: *st,
            line_no: *n,
            rule: MatchRule::Linked,
        });
    let reference: Option<Arc<str>> = entry_reference(state, entry_seq).map(Arc::from);
    let by_reference = reference.into_iter().flat_map(move |reference| {
        state
            .statement_references
            .range((reference.clone(), first, 0)..=(reference, last, u64::MAX))
            .filter(move |(_, st, n)| {
                state.statements.get(st).is_some_and(|statement| {
                    line_finds_by_reference(state, statement, *n, entry_seq)
                })
            })
            .map(|(_, st, n)| LineAccounting {
                statement_seq: *st,
                line_no: *n,
                rule: MatchRule::Reference,
            })
    });
    linked.chain(by_reference)
}

/// A bank credit already booked (as a settlement or a matching receipt): where, and the
/// resolution that booked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookedCredit {
    pub statement_seq: u64,
    pub line_no: u64,
    pub resolution_seq: u64,
}

/// A credit line with `reference` and `amount_minor`, of a statement other than `except`,
/// booked as a settlement or a matching receipt; narrowed to the statements of `account`
/// and to lines booked at `booked_ms` when those are given. Two statements that overlap (two
/// exports of one account) show the same credit twice: booking it from both, or booking it
/// and also recording it as a bank gift, would count the money twice.
pub fn credit_booked(
    state: &LedgerState,
    account: Option<&str>,
    reference: &str,
    amount_minor: u64,
    booked_ms: Option<u64>,
    except: Option<u64>,
) -> Option<BookedCredit> {
    let reference: Arc<str> = Arc::from(reference);
    state
        .statement_references
        .range((reference.clone(), 0, 0)..=(reference, u64::MAX, u64::MAX))
        .filter(|(_, st, _)| Some(*st) != except)
        .find_map(|(_, st, n)| {
            let statement = state.statements.get(st)?;
            if account.is_some_and(|a| statement.account != a) {
                return None;
            }
            let line = statement.line(*n)?;
            let same = line.kind == StatementLineKind::Credit
                && line.amount_minor == amount_minor
                && booked_ms.is_none_or(|b| line.booked_ms == b);
            let resolved = state.resolved.get(&(*st, ExceptionKey::Line(*n)))?;
            let booked = matches!(
                resolved.resolution,
                Resolution::Settlement { .. } | Resolution::MatchingReceived { .. }
            );
            (same && booked).then_some(BookedCredit {
                statement_seq: *st,
                line_no: *n,
                resolution_seq: resolved.seq,
            })
        })
}

/// Whether the reference rule on a kept line finds `entry_seq`, with or without a
/// difference. A linked line is paired by its link; the reference rule is not applied to
/// it.
fn line_finds_by_reference(
    state: &LedgerState,
    statement: &Statement,
    line_no: u64,
    entry_seq: u64,
) -> bool {
    if linked_entry(state, statement.seq, line_no).is_some() {
        return false;
    }
    matches!(
        kept_line_by_reference(state, statement, line_no),
        Some(ByReference::Found { entry, .. }) if entry == entry_seq
    )
}

/// The entry a recorded statement line is paired with by reference or by staff's link, if
/// it is: the reference rule finds the entry with no difference and no earlier line
/// accounts for it (else the line is an exception: a difference or a duplicate). Decided
/// from the ledger state alone, as [`Reconciler`] would decide it; a pairing by amount and
/// date is not looked at (see [`lines_accounting_for`]).
pub fn line_paired(
    state: &LedgerState,
    statement: &Statement,
    line_no: u64,
) -> Option<(u64, MatchRule)> {
    if let Some(entry) = linked_entry(state, statement.seq, line_no) {
        return Some((entry, MatchRule::Linked));
    }
    let ByReference::Found {
        entry,
        difference: None,
        ..
    } = kept_line_by_reference(state, statement, line_no)?
    else {
        return None;
    };
    let first = lines_accounting_for(state, statement, entry)
        .first()
        .copied();
    (first == Some((line_no, MatchRule::Reference))).then_some((entry, MatchRule::Reference))
}

/// The ledger entry a line's reference names, whether or not the line agrees with it (a
/// difference, a duplicate): the reconciler counts the entry as accounted for by a line that
/// names it, so such a line cannot also be booked as something else.
pub fn line_reference_entry(
    state: &LedgerState,
    statement: &Statement,
    line_no: u64,
) -> Option<u64> {
    match kept_line_by_reference(state, statement, line_no)? {
        ByReference::Found { entry, .. } => Some(entry),
        ByReference::NotFound | ByReference::RefundNotInLedger(_) => None,
    }
}

/// The reference rule on a line as the ledger keeps it (`None`: no such line).
fn kept_line_by_reference(
    state: &LedgerState,
    statement: &Statement,
    line_no: u64,
) -> Option<ByReference> {
    let line = statement.line(line_no)?;
    let channel = statement.source.channel();
    Some(by_reference(state, channel, LineFacts::kept(line), |r| {
        payout_by_reference(state, channel, r)
    }))
}

/// What a ledger entry is, as statement lines may show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Donation,
    Refund,
    Payout,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Donation => "donation",
            EntryKind::Refund => "refund",
            EntryKind::Payout => "payout",
        }
    }
}

/// A ledger entry a statement line may show: a donation, a refund (of a whole donation) or
/// a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub kind: EntryKind,
    /// The channel the money moved through: the donation's (for a refund, its donation's);
    /// bank for a payout.
    pub channel: Channel,
    pub currency: Currency,
    /// Gross: a donation's amount, the amount a refund returned, a payout's amount.
    pub amount_minor: u64,
    /// Signed as statement lines sign fees: a donation's channel fee (positive), the part of
    /// it a refund got back (negative, 0 when the channel kept it all), 0 for a payout.
    pub fee_minor: i64,
    /// When the money moved: the donation, the refund, the payout's disbursement (its
    /// request while it is not disbursed).
    pub ts_ms: u64,
    /// A payout's status.
    pub payout_status: Option<RequestStatus>,
}

impl Entry {
    /// The donation, refund or payout at `seq`, as the matching sees it ([`Candidate`]).
    pub fn at(state: &LedgerState, seq: u64) -> Option<Entry> {
        let entry = |kind, channel, c: Candidate, payout_status| Entry {
            seq,
            kind,
            channel,
            currency: c.currency,
            amount_minor: c.amount_minor,
            fee_minor: c.fee_minor,
            ts_ms: c.ts_ms,
            payout_status,
        };
        if let Some(d) = state.donations.get(&seq) {
            return Some(entry(
                EntryKind::Donation,
                d.channel,
                Candidate::donation(d),
                None,
            ));
        }
        if let Some(d) = state.refunds.get(&seq).and_then(|d| state.donations.get(d)) {
            return Candidate::refund(d).map(|c| entry(EntryKind::Refund, d.channel, c, None));
        }
        let p = state.payouts.get(&seq)?;
        Some(entry(
            EntryKind::Payout,
            Channel::Bank,
            Candidate::payout(p),
            Some(p.status),
        ))
    }

    /// Why a statement does not reconcile this entry, or `None` when it does: a statement
    /// reconciles its channel's donations and refunds and, a bank statement, disbursed
    /// payouts, in its currency, dated in its period (as [`Reconciler`] lists entries the
    /// statement lacks).
    pub fn outside(&self, statement: &Statement) -> Option<String> {
        let channel = statement.source.channel();
        if self.channel != channel {
            return Some(format!(
                "it went through {}, the statement ({}) reconciles {}",
                self.channel.as_str(),
                statement.source.as_str(),
                channel.as_str()
            ));
        }
        if let Some(status) = self
            .payout_status
            .filter(|s| *s != RequestStatus::Disbursed)
        {
            return Some(format!("the payout is {}, not disbursed", status.as_str()));
        }
        if self.currency != statement.currency {
            return Some(format!(
                "it is in {}, the statement in {}",
                self.currency, statement.currency
            ));
        }
        if self.ts_ms < statement.period_start_ms || self.ts_ms >= statement.period_end_ms {
            return Some("it is dated outside the statement's period".into());
        }
        None
    }
}

/// Reconciles one statement: feed it the statement's lines in order with [`push`], then
/// [`finish`].
///
/// [`push`]: Reconciler::push
/// [`finish`]: Reconciler::finish
pub struct Reconciler<'a> {
    state: &'a LedgerState,
    statement: &'a Statement,
    config: MatchConfig,
    channel: Channel,
    /// Disbursed payouts by bank reference (bank statements only).
    payouts_by_ref: HashMap<&'a str, u64>,
    matched_entries: HashSet<u64>,
    matched: Vec<MatchedPair>,
    exceptions: Vec<Exception>,
    /// Lines no reference matched, kept for the second pass.
    pending: Vec<StatementLineRecorded>,
    lines: u64,
    totals: StatementTotals,
}

impl<'a> Reconciler<'a> {
    pub fn new(state: &'a LedgerState, statement: &'a Statement, config: MatchConfig) -> Self {
        let channel = statement.source.channel();
        // Collected in seq order: of payouts sharing a bank reference, the latest is found
        // (as `payout_by_reference` finds it).
        let payouts_by_ref = if channel == Channel::Bank {
            state
                .payouts
                .values()
                .filter(|p| p.status == RequestStatus::Disbursed)
                .filter_map(|p| p.bank_reference.as_deref().map(|r| (r, p.seq)))
                .collect()
        } else {
            HashMap::new()
        };
        Reconciler {
            state,
            statement,
            config,
            channel,
            payouts_by_ref,
            matched_entries: HashSet::new(),
            matched: Vec::new(),
            exceptions: Vec::new(),
            pending: Vec::new(),
            lines: 0,
            totals: StatementTotals::default(),
        }
    }

    fn payout(&self, reference: &str) -> Option<Candidate> {
        let seq = *self.payouts_by_ref.get(reference)?;
        self.state.payouts.get(&seq).map(Candidate::payout)
    }

    fn is_resolved(&self, key: ExceptionKey) -> bool {
        self.state.resolved.contains_key(&(self.statement.seq, key))
    }

    fn exception(
        &mut self,
        reason: ReasonCode,
        line: Option<&StatementLineRecorded>,
        entry: Option<Candidate>,
    ) {
        let key = match (line, entry) {
            (Some(l), _) => ExceptionKey::Line(l.line_no),
            (None, Some(c)) => ExceptionKey::Entry(c.seq),
            (None, None) => return,
        };
        let resolved = self.state.resolved.get(&(self.statement.seq, key));
        self.exceptions.push(Exception {
            key,
            reason,
            line_no: line.map(|l| l.line_no),
            entry_seq: entry.map(|c| c.seq),
            reference: match line {
                Some(l) => l.reference.clone(),
                None => entry
                    .and_then(|c| entry_reference(self.state, c.seq))
                    .unwrap_or_default()
                    .to_owned(),
            },
            statement_amount_minor: line.map(|l| l.amount_minor.minor()),
            ledger_amount_minor: entry.map(|c| c.amount_minor),
            statement_fee_minor: line.map(|l| l.fee_minor),
            statement_fee_milli_minor: line.and_then(|l| l.fee_milli_minor),
            ledger_fee_minor: entry.map(|c| c.fee_minor),
            resolved_seq: resolved.map(|r| r.seq),
            resolution: resolved.map(|r| r.resolution.as_str()),
        });
    }

    fn pair(&mut self, line_no: u64, entry_seq: u64, rule: MatchRule) {
        self.matched_entries.insert(entry_seq);
        self.matched.push(MatchedPair {
            line_no,
            entry_seq,
            rule,
        });
    }

    /// Takes the next line of the statement.
    pub fn push(&mut self, line: &StatementLineRecorded) {
        self.lines += 1;
        self.totals.add(line);
        // A line staff linked to an entry is matched to it, whatever it says.
        if let Some(r) = self
            .state
            .resolved
            .get(&(self.statement.seq, ExceptionKey::Line(line.line_no)))
        {
            if let Resolution::Linked { entry_seq } = r.resolution {
                self.pair(line.line_no, entry_seq, MatchRule::Linked);
                return;
            }
        }
        let found = by_reference(self.state, self.channel, LineFacts::recorded(line), |r| {
            self.payout(r)
        });
        match found {
            ByReference::NotFound => self.pending.push(line.clone()),
            ByReference::RefundNotInLedger(c) => {
                self.exception(ReasonCode::RefundNotInLedger, Some(line), Some(c));
            }
            ByReference::Found {
                entry,
                shown,
                difference,
            } => {
                if self.matched_entries.contains(&entry) {
                    self.exception(ReasonCode::DuplicateLine, Some(line), Some(shown));
                } else if let Some(reason) = difference {
                    // The entry is accounted for by this line; it is not also missing.
                    self.matched_entries.insert(entry);
                    self.exception(reason, Some(line), Some(shown));
                } else {
                    self.pair(line.line_no, entry, MatchRule::Reference);
                }
            }
        }
    }

    /// The ledger entries of the statement's channel that lines could match: money in
    /// (donations) or money out (refunds of the channel's donations and, for bank
    /// statements, disbursed payouts).
    fn entries(&self, debit: bool) -> Vec<Candidate> {
        if debit {
            let refunds = self
                .state
                .donations
                .values()
                .filter(|d| d.channel == self.channel)
                .filter_map(|d| Candidate::refund(d));
            let payouts = self
                .state
                .payouts
                .values()
                .filter(|_| self.channel == Channel::Bank)
                .filter(|p| p.status == RequestStatus::Disbursed)
                .map(Candidate::payout);
            return refunds.chain(payouts).collect();
        }
        self.state
            .donations
            .values()
            .filter(|d| d.channel == self.channel)
            .map(|d| Candidate::donation(d))
            .collect()
    }

    /// Matches what is left by amount and date, lists the exceptions and returns the result.
    /// (See [`nearest`] for how a line picks its entry.)
    pub fn finish(mut self) -> Reconciliation {
        let st = self.statement;
        let currency = st.currency;
        let window = self.config.date_window_ms;
        let pending = std::mem::take(&mut self.pending);
        for debit in [false, true] {
            let lines: Vec<&StatementLineRecorded> = pending
                .iter()
                .filter(|p| (p.kind == StatementLineKind::Debit) == debit)
                .collect();
            if lines.is_empty() {
                continue;
            }
            // The unmatched candidates by amount, each by (time, seq). A line takes the nearest
            // in time within the window (the lower seq on a tie), found on either side of its
            // time in a log's cost, and removed: a day of one-yuan lines is not quadratic.
            let mut by_amount: HashMap<u64, BTreeMap<(u64, u64), Candidate>> = HashMap::new();
            // A pairing by amount and date is a proposal; staff's resolution of a line or an
            // entry overrules it, so resolved lines and entries take no part.
            for c in self.entries(debit) {
                if c.currency == currency
                    && !self.matched_entries.contains(&c.seq)
                    && !self.is_resolved(ExceptionKey::Entry(c.seq))
                {
                    by_amount
                        .entry(c.amount_minor)
                        .or_default()
                        .insert((c.ts_ms, c.seq), c);
                }
            }
            for p in lines {
                let best = if p.kind == StatementLineKind::Refund
                    || self.is_resolved(ExceptionKey::Line(p.line_no))
                {
                    None
                } else {
                    by_amount
                        .get_mut(&p.amount_minor.minor())
                        .and_then(|cands| nearest(cands, p.booked_ms, window))
                };
                match best {
                    Some(c) => self.pair(p.line_no, c.seq, MatchRule::AmountAndDate),
                    None => self.exception(ReasonCode::LineNotInLedger, Some(p), None),
                }
            }
        }
        // Entries in the period that no line accounts for.
        let end = st.period_end_ms;
        let in_period = |c: &Candidate| c.ts_ms >= st.period_start_ms && c.ts_ms < end;
        let mut missing: Vec<Candidate> = self
            .entries(false)
            .into_iter()
            .chain(self.entries(true))
            .filter(|c| c.currency == currency && in_period(c))
            .filter(|c| !self.matched_entries.contains(&c.seq))
            .collect();
        missing.sort_by_key(|c| c.seq);
        for c in missing {
            let reason = if c.ts_ms.saturating_add(self.config.timing_window_ms) >= end {
                ReasonCode::TimingDifference
            } else {
                ReasonCode::MissingFromStatement
            };
            self.exception(reason, None, Some(c));
        }
        self.matched.sort_by_key(|m| m.line_no);
        self.exceptions
            .sort_by_key(|e| (e.line_no.is_none(), e.line_no, e.entry_seq));
        Reconciliation {
            statement_seq: st.seq,
            source: st.source.as_str(),
            currency,
            period_start_ms: st.period_start_ms,
            period_end_ms: st.period_end_ms,
            lines: self.lines,
            totals: self.totals,
            matched: self.matched,
            exceptions: self.exceptions,
        }
    }
}

/// Reconciles a statement whose lines are all at hand.
pub fn reconcile<'l>(
    state: &LedgerState,
    statement: &Statement,
    lines: impl IntoIterator<Item = &'l StatementLineRecorded>,
    config: MatchConfig,
) -> Reconciliation {
    let mut r = Reconciler::new(state, statement, config);
    for line in lines {
        r.push(line);
    }
    r.finish()
}

/// Takes out of `cands` (keyed by time, then seq) the candidate nearest to `t` within
/// `window`, the lower seq on a tie: the first at or after `t`, or the earliest seq at the
/// last time before `t`, whichever is nearer.
fn nearest(cands: &mut BTreeMap<(u64, u64), Candidate>, t: u64, window: u64) -> Option<Candidate> {
    let after = cands.range((t, 0)..).next().map(|(k, _)| *k);
    let before = cands
        .range(..(t, 0))
        .next_back()
        .and_then(|((ts, _), _)| cands.range((*ts, 0)..).next())
        .map(|(k, _)| *k);
    let key = [before, after]
        .into_iter()
        .flatten()
        .filter(|(ts, _)| ts.abs_diff(t) <= window)
        .min_by_key(|(ts, seq)| (ts.abs_diff(t), *seq))?;
    cands.remove(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{
        Amount, Decision, DonationReceived, EventBody, EventRecord, Hash, Id, PayoutDisbursed,
        PayoutRequested, ProjectKind, ProjectOpened, StatementImported, StatementSource, Text,
    };

    const T0: u64 = 1_539_014_400_000;
    const HOUR: u64 = 3_600_000;

    proptest::proptest! {
        /// `nearest` picks what a scan of every candidate would: the least time distance
        /// within the window, then the lowest seq.
        #[test]
        fn nearest_picks_what_a_full_scan_picks(
            times in proptest::collection::vec(0u64..40, 0..30),
            lines in proptest::collection::vec(0u64..40, 1..20),
            window in 0u64..10,
        ) {
            let mut cands: BTreeMap<(u64, u64), Candidate> = BTreeMap::new();
            for (seq, ts) in times.iter().enumerate() {
                let c = Candidate {
                    seq: seq as u64 * 7 % 31,
                    ts_ms: *ts,
                    amount_minor: 1,
                    fee_minor: 0,
                    currency: Currency::CNY,
                };
                cands.insert((c.ts_ms, c.seq), c);
            }
            for t in lines {
                let scan = cands
                    .values()
                    .filter(|c| c.ts_ms.abs_diff(t) <= window)
                    .min_by_key(|c| (c.ts_ms.abs_diff(t), c.seq))
                    .map(|c| c.seq);
                let got = nearest(&mut cands, t, window).map(|c| c.seq);
                proptest::prop_assert_eq!(got, scan);
                if let Some(seq) = got {
                    proptest::prop_assert!(cands.values().all(|c| c.seq != seq));
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// What the write side decides from the lines the state keeps (`line_paired`,
        /// `lines_accounting_for`) is what the reconciler decides from the recorded lines:
        /// with gifts recorded before and after the statement, refunds, payouts, shared
        /// references, differences, duplicates and links (even links that do not fit).
        #[test]
        fn the_write_sides_view_agrees_with_the_reconciler(
            bank in proptest::bool::ANY,
            gifts in proptest::collection::vec(
                (0u8..6, 1u64..4, 0u64..2, proptest::bool::ANY, proptest::bool::ANY, proptest::bool::ANY),
                0..12,
            ),
            payouts in proptest::collection::vec((0u8..3, 1u64..4), 0..4),
            lines in proptest::collection::vec(
                (0u8..4, 0u8..10, proptest::option::of(0u8..10), 1u64..4, 0u64..2),
                1..14,
            ),
            links in proptest::collection::vec((0usize..14, 0usize..24), 0..4),
        ) {
            let mut l = Ledger::with_project();
            l.gift_via(Channel::Cash, T0, 1_000_000, "funds");
            let reference = |i: u8| match i {
                0..=5 => format!("t{i}"),
                6..=7 => format!("r{}", i - 6),
                _ => format!("u{i}"),
            };
            let mut seen = HashSet::new();
            let gifts: Vec<_> = gifts
                .into_iter()
                .filter(|(txn, _, _, via_bank, ..)| seen.insert((*txn, *via_bank)))
                .collect();
            let mut entries = Vec::new();
            let give = |l: &mut Ledger, entries: &mut Vec<u64>, after: bool| {
                for (i, (txn, units, fee, via_bank, later, _)) in gifts.iter().enumerate() {
                    if *later != after {
                        continue;
                    }
                    let channel = if *via_bank { Channel::Bank } else { Channel::Wechat };
                    let ts = if after { T0 + 30 * HOUR } else { T0 + HOUR + i as u64 };
                    let txn = format!("t{txn}");
                    entries.push(l.apply(
                        "recorder",
                        ts,
                        EventBody::DonationReceived(DonationReceived {
                            project: id("p"),
                            amount_minor: Amount::new(units * 100).unwrap(),
                            currency: Currency::CNY,
                            channel,
                            channel_txn_id: txn.clone(),
                            fee_minor: *fee,
                            pledge_seq: None,
                            anonymous: true,
                            public_name: None,
                            donor_ref: id("d"),
                            receipt_code: events::receipt_code(&id("t"), channel, &txn),
                        }),
                    ));
                }
            };
            give(&mut l, &mut entries, false);
            for (r, units) in &payouts {
                entries.push(l.payout(T0 + 2 * HOUR, units * 100, &format!("r{r}")));
            }
            let (source, money_in) = if bank {
                (StatementSource::BankCsv, StatementLineKind::Credit)
            } else {
                (StatementSource::Wechat, StatementLineKind::Payment)
            };
            let st = l.statement(1, source, "acct", lines.len() as u64);
            let recorded: Vec<StatementLineRecorded> = lines
                .iter()
                .zip(1..)
                .map(|((kind, r, original, units, fee), n)| {
                    let kind = match kind {
                        0 => money_in,
                        1 => StatementLineKind::Refund,
                        2 => StatementLineKind::Debit,
                        _ => StatementLineKind::Credit,
                    };
                    let mut x = line(st, n, kind, &reference(*r), T0 + 3 * HOUR, units * 100);
                    // Refunds give their fee back (negative), as WeChat Pay's do.
                    let fee = i64::try_from(*fee).expect("a small fee");
                    x.fee_minor = if kind == StatementLineKind::Refund { -fee } else { fee };
                    x.original_reference = original.map(reference);
                    if kind == StatementLineKind::Refund && x.original_reference.is_none() {
                        x.original_reference = Some(x.reference.clone());
                    }
                    x
                })
                .collect();
            for x in &recorded {
                l.apply("recorder", T0 + 30 * HOUR, EventBody::StatementLineRecorded(x.clone()));
            }
            // Gifts recorded after the statement, and refunds.
            give(&mut l, &mut entries, true);
            let donations: Vec<u64> = entries
                .iter()
                .copied()
                .filter(|s| l.state.donations.contains_key(s))
                .collect();
            for (seq, (.., refunded)) in donations.iter().zip(&gifts) {
                if *refunded {
                    entries.push(l.apply(
                        "admin",
                        T0 + 31 * HOUR,
                        EventBody::DonationRefunded(events::DonationRefunded {
                            donation_seq: *seq,
                            reason: Text::new("退款").unwrap(),
                            fee_returned_minor: None,
                        }),
                    ));
                }
            }
            let mut linked = HashSet::new();
            for (n, e) in links {
                let (n, Some(entry)) = ((n % recorded.len()) as u64 + 1, entries.get(e)) else {
                    continue;
                };
                if linked.insert(n) {
                    l.apply(
                        "finance",
                        T0 + 32 * HOUR,
                        EventBody::ExceptionResolved(events::ExceptionResolved {
                            statement_seq: st,
                            line_no: Some(n),
                            entry_seq: None,
                            resolution: Resolution::Linked { entry_seq: *entry },
                            note: Text::new("对账").unwrap(),
                        }),
                    );
                }
            }

            let statement = l.state.statements[&st].clone();
            let rec = reconcile(&l.state, &statement, &recorded, MatchConfig::default());
            for x in &recorded {
                let paired = rec
                    .matched
                    .iter()
                    .find(|m| m.line_no == x.line_no && m.rule != MatchRule::AmountAndDate)
                    .map(|m| (m.entry_seq, m.rule));
                proptest::prop_assert_eq!(line_paired(&l.state, &statement, x.line_no), paired);
            }
            // The lines that account for each entry: pairs by reference or link, and lines
            // whose reference found it with a difference or as a duplicate.
            let claimed = |e: &Exception| {
                let line = &recorded[e.line_no? as usize - 1];
                let shown = e.entry_seq?;
                match e.reason {
                    ReasonCode::AmountDifference
                    | ReasonCode::FeeDifference
                    | ReasonCode::CurrencyDifference
                    | ReasonCode::DuplicateLine => {}
                    _ => return None,
                }
                if line.kind == StatementLineKind::Refund {
                    l.state.donations[&shown].refunded_seq
                } else {
                    Some(shown)
                }
            };
            for entry in &entries {
                let mut expected: Vec<(u64, MatchRule)> = rec
                    .matched
                    .iter()
                    .filter(|m| m.entry_seq == *entry && m.rule != MatchRule::AmountAndDate)
                    .map(|m| (m.line_no, m.rule))
                    .chain(
                        rec.exceptions
                            .iter()
                            .filter(|e| claimed(e) == Some(*entry))
                            .filter_map(|e| Some((e.line_no?, MatchRule::Reference))),
                    )
                    .collect();
                expected.sort_unstable();
                proptest::prop_assert_eq!(
                    lines_accounting_for(&l.state, &statement, *entry),
                    expected,
                    "entry {}",
                    entry
                );
            }
        }
    }

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    struct Ledger {
        state: LedgerState,
    }

    impl Ledger {
        /// A ledger with the general fund "p" open.
        fn with_project() -> Ledger {
            let mut l = Ledger {
                state: LedgerState::default(),
            };
            l.apply(
                "admin",
                T0,
                EventBody::ProjectOpened(ProjectOpened {
                    project: id("p"),
                    kind: ProjectKind::GeneralFund,
                    name: Text::new("基金").unwrap(),
                    currency: Currency::CNY,
                    goal_minor: None,
                }),
            );
            l
        }
        /// Imports a CNY statement of `line_count` lines over the day from T0; its seq.
        fn statement(
            &mut self,
            sha: u8,
            source: StatementSource,
            account: &str,
            line_count: u64,
        ) -> u64 {
            self.apply(
                "recorder",
                T0 + 30 * HOUR,
                EventBody::StatementImported(StatementImported {
                    statement_sha256: Hash([sha; 32]),
                    source,
                    account: account.into(),
                    currency: Currency::CNY,
                    period_start_ms: T0,
                    period_end_ms: T0 + 24 * HOUR,
                    line_count,
                }),
            )
        }
        fn apply(&mut self, actor: &str, ts_ms: u64, body: EventBody) -> u64 {
            self.try_apply(actor, ts_ms, body).unwrap()
        }
        /// Applies an event; on an error the state is as it was.
        fn try_apply(
            &mut self,
            actor: &str,
            ts_ms: u64,
            body: EventBody,
        ) -> Result<u64, crate::ProjectionError> {
            let seq = self.state.position;
            let r = EventRecord {
                seq,
                prev: self.state.head,
                ledger: id("t"),
                ts_ms,
                actor: id(actor),
                idempotency: None,
                token_issuer: None,
                body,
            };
            let mut next = self.state.clone();
            next.apply_record(&r, Hash([seq as u8; 32]))?;
            self.state = next;
            Ok(seq)
        }
        fn gift(&mut self, ts_ms: u64, minor: u64, txn: &str) -> u64 {
            self.gift_via(Channel::Bank, ts_ms, minor, txn)
        }
        fn gift_via(&mut self, channel: Channel, ts_ms: u64, minor: u64, txn: &str) -> u64 {
            self.apply(
                "recorder",
                ts_ms,
                EventBody::DonationReceived(DonationReceived {
                    project: id("p"),
                    amount_minor: Amount::new(minor).unwrap(),
                    currency: Currency::CNY,
                    channel,
                    channel_txn_id: txn.into(),
                    fee_minor: 0,
                    pledge_seq: None,
                    anonymous: true,
                    public_name: None,
                    donor_ref: id("d"),
                    receipt_code: events::receipt_code(&id("t"), channel, txn),
                }),
            )
        }
        fn payout(&mut self, ts_ms: u64, minor: u64, bank_ref: &str) -> u64 {
            let seq = self.apply(
                "finance",
                ts_ms,
                EventBody::PayoutRequested(PayoutRequested {
                    project: id("p"),
                    amount_minor: Amount::new(minor).unwrap(),
                    currency: Currency::CNY,
                    payee: Text::new("服务中心").unwrap(),
                    purpose: Text::new("物资").unwrap(),
                    document_sha256: Hash::ZERO,
                }),
            );
            self.apply(
                "director",
                ts_ms,
                EventBody::PayoutApproved(Decision { request_seq: seq }),
            );
            self.apply(
                "finance",
                ts_ms,
                EventBody::PayoutDisbursed(PayoutDisbursed {
                    payout_seq: seq,
                    bank_reference: bank_ref.into(),
                }),
            );
            seq
        }
    }

    fn line(
        seq: u64,
        n: u64,
        kind: StatementLineKind,
        reference: &str,
        ts: u64,
        minor: u64,
    ) -> StatementLineRecorded {
        StatementLineRecorded {
            statement_seq: seq,
            line_no: n,
            kind,
            reference: reference.into(),
            original_reference: None,
            booked_ms: ts,
            amount_minor: Amount::new(minor).unwrap(),
            fee_minor: 0,
            fee_milli_minor: None,
            currency: Currency::CNY,
        }
    }

    /// (reason, line, entry) of each exception, in order.
    fn exceptions(rec: &Reconciliation) -> Vec<(ReasonCode, Option<u64>, Option<u64>)> {
        rec.exceptions
            .iter()
            .map(|e| (e.reason, e.line_no, e.entry_seq))
            .collect()
    }

    /// A channel's payments, refunds and the fees they carry are summed by direction: a
    /// refund is money out (not added to the money in), and a fee given back on a refund
    /// is counted apart from the fees charged, not added to them.
    #[test]
    fn statement_totals_keep_directions_of_money_and_fees_apart() {
        let with_fee = |mut l: StatementLineRecorded, fee: i64| {
            l.fee_minor = fee;
            l
        };
        let wechat = [
            with_fee(line(1, 1, StatementLineKind::Payment, "a", T0, 100), 1),
            with_fee(line(1, 2, StatementLineKind::Payment, "b", T0, 2_550), 15),
            with_fee(line(1, 3, StatementLineKind::Payment, "c", T0, 1_000), 6),
            with_fee(line(1, 4, StatementLineKind::Refund, "r", T0, 1_000), -6),
            line(1, 5, StatementLineKind::Refund, "s", T0, 100),
        ];
        let mut t = StatementTotals::default();
        for l in &wechat {
            t.add(l);
        }
        assert_eq!(
            t,
            StatementTotals {
                lines_in: 3,
                lines_out: 2,
                money_in_minor: 3_650,
                money_out_minor: 1_100,
                fees_charged_milli_minor: 22_000,
                fees_returned_milli_minor: 6_000,
                line_fees_minor: 16,
            }
        );
        assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (22, 6));
        assert_eq!(t.net_fees_minor(), 16);
        assert_eq!(t.fee_rounding_minor(), 0);
        assert_eq!(t.net_minor(), 3_650 - 1_100 - 16);

        let bank = [
            line(2, 1, StatementLineKind::Credit, "x", T0, 994_000),
            line(2, 2, StatementLineKind::Debit, "y", T0, 100_000),
            line(2, 3, StatementLineKind::Debit, "z", T0, 5),
        ];
        let mut t = StatementTotals::default();
        for l in &bank {
            t.add(l);
        }
        assert_eq!((t.money_in_minor, t.money_out_minor), (994_000, 100_005));
        assert_eq!((t.lines_in, t.lines_out), (1, 2));
        assert_eq!((t.net_fees_minor(), t.net_minor()), (0, 893_995));
    }

    /// Fees below the fen (WeChat Pay's `0.00600`) are summed exactly, rounded once for what
    /// the channel keeps, and the lines' own rounded fees are kept apart to show the
    /// rounding difference.
    #[test]
    fn statement_totals_round_fees_below_the_fen_once() {
        let exact = |n: u64, kind, milli: i64| {
            let (fee_minor, fee_milli_minor) = events::fee_parts(milli);
            StatementLineRecorded {
                fee_minor,
                fee_milli_minor,
                ..line(1, n, kind, "a", T0, 100)
            }
        };
        let mut t = StatementTotals::default();
        for l in [
            exact(1, StatementLineKind::Payment, 600),
            exact(2, StatementLineKind::Payment, 600),
            exact(3, StatementLineKind::Payment, 600),
            exact(4, StatementLineKind::Payment, 5_940),
            exact(5, StatementLineKind::Refund, -600),
        ] {
            t.add(&l);
        }
        assert_eq!(
            (t.fees_charged_milli_minor, t.fees_returned_milli_minor),
            (7_740, 600)
        );
        assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (8, 1));
        assert_eq!(t.net_fees_milli_minor(), 7_140);
        // 0.07140 rounds to 0.07; the lines' own fen (1 + 1 + 1 + 6 − 1) make 0.08.
        assert_eq!((t.net_fees_minor(), t.line_fees_minor), (7, 8));
        assert_eq!(t.fee_rounding_minor(), -1);
        assert_eq!(t.net_minor(), 400 - 100 - 7);
    }

    /// What decide() consults before a link: the line of another statement that accounts
    /// for the entry, by reference or by a link. A refund is another entry than its gift,
    /// so a refund line may be linked while another statement has the gift. The fold
    /// records links without refusing them (a log from before the rule still opens).
    #[test]
    fn a_line_of_another_statement_accounting_for_an_entry_is_found() {
        use StatementLineKind::{Credit, Debit};
        let mut l = Ledger::with_project();
        let g1 = l.gift(T0 + HOUR, 500, "B-1");
        let g2 = l.gift(T0 + HOUR, 700, "B-2");
        let link = |statement_seq: u64, line_no: u64, entry_seq: u64| {
            EventBody::ExceptionResolved(events::ExceptionResolved {
                statement_seq,
                line_no: Some(line_no),
                entry_seq: None,
                resolution: Resolution::Linked { entry_seq },
                note: Text::new("对账").unwrap(),
            })
        };
        let record = |l: &mut Ledger, x: StatementLineRecorded| {
            l.apply(
                "recorder",
                T0 + 30 * HOUR,
                EventBody::StatementLineRecorded(x),
            );
        };
        // Statement A: B-1 by reference, and a credit staff link to B-2.
        let a = l.statement(1, StatementSource::BankCsv, "6222", 2);
        record(&mut l, line(a, 1, Credit, "B-1", T0, 500));
        record(&mut l, line(a, 2, Credit, "X-2", T0, 700));
        l.apply("finance", T0 + 30 * HOUR, link(a, 2, g2));
        // Statement B shows both gifts again, and B-1's refund.
        let b = l.statement(2, StatementSource::BankCsv, "6222", 3);
        record(&mut l, line(b, 1, Credit, "X-1", T0, 500));
        record(&mut l, line(b, 2, Credit, "X-3", T0, 700));
        record(&mut l, line(b, 3, Debit, "X-4", T0, 500));
        let refund = l.apply(
            "admin",
            T0 + 31 * HOUR,
            EventBody::DonationRefunded(events::DonationRefunded {
                donation_seq: g1,
                reason: Text::new("退款").unwrap(),
                fee_returned_minor: None,
            }),
        );
        for (line_no, entry, had_by) in [
            (1, g1, (1, MatchRule::Reference)),
            (2, g2, (2, MatchRule::Linked)),
        ] {
            let had_by = LineAccounting {
                statement_seq: a,
                line_no: had_by.0,
                rule: had_by.1,
            };
            assert_eq!(
                line_elsewhere_accounting_for(&l.state, b, entry),
                Some(had_by)
            );
            // Statement A's own lines are not "elsewhere" for statement A.
            assert_eq!(line_elsewhere_accounting_for(&l.state, a, entry), None);
            // The fold records such a link (decide() refuses it), as an older log holds it.
            l.apply("finance", T0 + 32 * HOUR, link(b, line_no, entry));
            assert!(l.state.linked_lines.contains(&(entry, b, line_no)));
        }
        // The refund is another entry: the debit is linked to it.
        assert_eq!(line_elsewhere_accounting_for(&l.state, b, refund), None);
        l.apply("finance", T0 + 32 * HOUR, link(b, 3, refund));
        assert!(l.state.linked_lines.contains(&(refund, b, 3)));
    }

    #[test]
    fn bank_statement_matches_gifts_and_payouts() {
        let mut l = Ledger::with_project();
        let g1 = l.gift(T0 + HOUR, 500_000, "B-1");
        let g2 = l.gift(T0 + 2 * HOUR, 80_000, "B-2");
        let g3 = l.gift(T0 + 3 * HOUR, 1_000, "B-3");
        let p1 = l.payout(T0 + 4 * HOUR, 20_000, "ICBC-1");
        let p2 = l.payout(T0 + 5 * HOUR, 30_000, "ICBC-2");
        let st = l.statement(9, StatementSource::Camt053, "6222", 5);
        let lines = vec![
            line(st, 1, StatementLineKind::Credit, "B-1", T0, 500_000),
            // The bank's own reference, but the gift's amount, the next day.
            line(
                st,
                2,
                StatementLineKind::Credit,
                "BANKREF77",
                T0 + 20 * HOUR,
                80_000,
            ),
            line(st, 3, StatementLineKind::Debit, "ICBC-1", T0, 20_000),
            // A channel settlement: not in the ledger until staff resolve it.
            line(
                st,
                4,
                StatementLineKind::Credit,
                "TENPAY-SETTLE",
                T0,
                99_400,
            ),
            line(st, 5, StatementLineKind::Debit, "ICBC-2", T0, 30_001),
        ];
        let statement = l.state.statements[&st].clone();
        let rec = reconcile(&l.state, &statement, &lines, MatchConfig::default());
        let matched: Vec<_> = rec
            .matched
            .iter()
            .map(|m| (m.line_no, m.entry_seq, m.rule))
            .collect();
        assert_eq!(
            matched,
            vec![
                (1, g1, MatchRule::Reference),
                (2, g2, MatchRule::AmountAndDate),
                (3, p1, MatchRule::Reference),
            ]
        );
        assert_eq!(
            exceptions(&rec),
            vec![
                (ReasonCode::LineNotInLedger, Some(4), None),
                (ReasonCode::AmountDifference, Some(5), Some(p2)),
                (ReasonCode::MissingFromStatement, None, Some(g3)),
            ]
        );
        // A narrower date window leaves line 2 unmatched.
        let tight = MatchConfig {
            date_window_ms: HOUR,
            ..MatchConfig::default()
        };
        let rec = reconcile(&l.state, &statement, &lines, tight);
        assert!(rec
            .exceptions
            .iter()
            .any(|e| e.line_no == Some(2) && e.reason == ReasonCode::LineNotInLedger));
    }

    #[test]
    fn channel_refunds_match_or_go_missing() {
        let mut l = Ledger::with_project();
        l.gift_via(Channel::Alipay, T0 + HOUR, 1_000_000, "big");
        let g1 = l.gift_via(Channel::Alipay, T0 + HOUR, 100, "a-1");
        let g2 = l.gift_via(Channel::Alipay, T0 + HOUR, 200, "a-2");
        let g3 = l.gift_via(Channel::Alipay, T0 + HOUR, 300, "a-3");
        let refund = |l: &mut Ledger, seq: u64| {
            l.apply(
                "admin",
                T0 + 2 * HOUR,
                EventBody::DonationRefunded(events::DonationRefunded {
                    donation_seq: seq,
                    reason: Text::new("重复").unwrap(),
                    fee_returned_minor: None,
                }),
            )
        };
        let r1 = refund(&mut l, g1);
        let r2 = refund(&mut l, g2);
        let st = l.statement(7, StatementSource::Alipay, "2088", 6);
        let refund_line = |n: u64, of: &str, minor: u64| {
            let mut x = line(
                st,
                n,
                StatementLineKind::Refund,
                &format!("RF-{n}"),
                T0 + 2 * HOUR,
                minor,
            );
            x.original_reference = Some(of.into());
            x
        };
        let lines = vec![
            line(
                st,
                1,
                StatementLineKind::Payment,
                "big",
                T0 + HOUR,
                1_000_000,
            ),
            line(st, 2, StatementLineKind::Payment, "a-1", T0 + HOUR, 100),
            line(st, 3, StatementLineKind::Payment, "a-2", T0 + HOUR, 200),
            line(st, 4, StatementLineKind::Payment, "a-3", T0 + HOUR, 300),
            refund_line(5, "a-1", 100),
            refund_line(6, "a-3", 300),
        ];
        let statement = l.state.statements[&st].clone();
        let rec = reconcile(&l.state, &statement, &lines, MatchConfig::default());
        assert!(rec
            .matched
            .iter()
            .any(|m| m.line_no == 5 && m.entry_seq == r1 && m.rule == MatchRule::Reference));
        assert_eq!(
            exceptions(&rec),
            vec![
                (ReasonCode::RefundNotInLedger, Some(6), Some(g3)),
                (ReasonCode::MissingFromStatement, None, Some(r2)),
            ]
        );
        assert_eq!(rec.exceptions[1].reference, "a-2");
    }
}
