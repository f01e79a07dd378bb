//! The event model: every fact the ledger records. Events are named in the past tense and
//! never change once sealed; a mistake is corrected by a later event that names the earlier one.
//!
//! Donations, pledges, payouts and moves are identified by the `seq` of the event that
//! created them (`donation_seq`, `pledge_seq`, `payout_seq`, `move_seq`): a position in the
//! log is unique, public and needs no id generator. Projects and matching pools have ids
//! chosen by staff.

use serde::{Deserialize, Serialize};

use crate::values::{
    fee_parts, Amount, Channel, Currency, Hash, Id, ProjectKind, Text, AMOUNT_MINOR_MAX,
    MILLI_PER_MINOR,
};
use crate::ValueError;

/// The longest channel transaction id or bank reference, in bytes.
pub const REFERENCE_LEN_MAX: usize = 128;
/// The most lines one imported statement may hold.
pub const STATEMENT_LINES_MAX: u64 = 10_000_000;
/// The most projects one matching pool may cover.
pub const POOL_PROJECTS_MAX: usize = 64;

/// What happened. Serialized as `"type": "<snake_case name>", "data": {...}`.
///
/// The fields of every event struct are declared in RFC 8785 order (sorted by name), so
/// they serialize in canonical order and [`crate::jcs`] only has to check it. (Not
/// [`Resolution`]'s: it is part of the persisted `LedgerState`, whose bincode encoding
/// follows declaration order.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventBody {
    ProjectOpened(ProjectOpened),
    ProjectClosed(ProjectClosed),
    DonationReceived(DonationReceived),
    DonationRefunded(DonationRefunded),
    RefundFeeReturned(RefundFeeReturned),
    PledgeMade(PledgeMade),
    PledgeCancelled(PledgeCancelled),
    MatchingPoolCommitted(MatchingPoolCommitted),
    MatchingPoolClosed(MatchingPoolClosed),
    MatchAllocated(MatchAllocated),
    MatchReleased(MatchReleased),
    MatchFrozen(MatchReview),
    MatchUnfrozen(MatchReview),
    MatchRevoked(MatchReview),
    PayoutRequested(PayoutRequested),
    PayoutApproved(Decision),
    PayoutRejected(Rejection),
    PayoutDisbursed(PayoutDisbursed),
    MoveRequested(MoveRequested),
    MoveApproved(Decision),
    MoveRejected(Rejection),
    StatementImported(StatementImported),
    StatementLineRecorded(StatementLineRecorded),
    ExceptionResolved(ExceptionResolved),
    StaffTokenIssued(StaffTokenIssued),
    StaffTokenRevoked(StaffTokenRevoked),
}

impl EventBody {
    /// The `type` string this event is serialized with.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::ProjectOpened(_) => "project_opened",
            EventBody::ProjectClosed(_) => "project_closed",
            EventBody::DonationReceived(_) => "donation_received",
            EventBody::DonationRefunded(_) => "donation_refunded",
            EventBody::RefundFeeReturned(_) => "refund_fee_returned",
            EventBody::PledgeMade(_) => "pledge_made",
            EventBody::PledgeCancelled(_) => "pledge_cancelled",
            EventBody::MatchingPoolCommitted(_) => "matching_pool_committed",
            EventBody::MatchingPoolClosed(_) => "matching_pool_closed",
            EventBody::MatchAllocated(_) => "match_allocated",
            EventBody::MatchReleased(_) => "match_released",
            EventBody::MatchFrozen(_) => "match_frozen",
            EventBody::MatchUnfrozen(_) => "match_unfrozen",
            EventBody::MatchRevoked(_) => "match_revoked",
            EventBody::PayoutRequested(_) => "payout_requested",
            EventBody::PayoutApproved(_) => "payout_approved",
            EventBody::PayoutRejected(_) => "payout_rejected",
            EventBody::PayoutDisbursed(_) => "payout_disbursed",
            EventBody::MoveRequested(_) => "move_requested",
            EventBody::MoveApproved(_) => "move_approved",
            EventBody::MoveRejected(_) => "move_rejected",
            EventBody::StatementImported(_) => "statement_imported",
            EventBody::StatementLineRecorded(_) => "statement_line_recorded",
            EventBody::ExceptionResolved(_) => "exception_resolved",
            EventBody::StaffTokenIssued(_) => "staff_token_issued",
            EventBody::StaffTokenRevoked(_) => "staff_token_revoked",
        }
    }

    /// The body's `data` member alone (the event struct), for serializers that place it
    /// themselves, such as [`crate::EventRecord`]'s.
    pub(crate) fn data(&self) -> BodyData<'_> {
        BodyData(self)
    }

    /// Checks the rules that concern this event alone (a fee within the amount, a sane
    /// window, caps that can be met). Rules against the ledger's state live in the writer.
    pub fn validate(&self) -> Result<(), ValueError> {
        match self {
            EventBody::ProjectOpened(e) => {
                if e.kind.goal_is_cap() && e.goal_minor.is_none() {
                    return Err(ValueError::Invalid {
                        field: "goal_minor",
                        reason: format!("a {} must have a goal", e.kind.as_str()),
                    });
                }
                Ok(())
            }
            EventBody::DonationReceived(e) => {
                if e.fee_minor >= e.amount_minor.minor() {
                    return Err(ValueError::Invalid {
                        field: "fee_minor",
                        reason: format!(
                            "the channel fee {} must be less than the amount {}",
                            e.fee_minor, e.amount_minor
                        ),
                    });
                }
                check_reference("channel_txn_id", &e.channel_txn_id)?;
                check_reference("receipt_code", &e.receipt_code)?;
                check_donor_ref(&e.donor_ref)?;
                if e.anonymous && e.public_name.is_some() {
                    return Err(ValueError::Invalid {
                        field: "public_name",
                        reason: "an anonymous donation has no public name".into(),
                    });
                }
                Ok(())
            }
            EventBody::MatchingPoolCommitted(e) => {
                if e.projects.is_empty() || e.projects.len() > POOL_PROJECTS_MAX {
                    return Err(ValueError::Invalid {
                        field: "projects",
                        reason: format!(
                            "a pool covers 1 to {POOL_PROJECTS_MAX} projects (got {})",
                            e.projects.len()
                        ),
                    });
                }
                let mut sorted = e.projects.clone();
                sorted.sort();
                sorted.dedup();
                if sorted.len() != e.projects.len() {
                    return Err(ValueError::Invalid {
                        field: "projects",
                        reason: "a project is listed twice".into(),
                    });
                }
                if e.ratio_numerator == 0 || e.ratio_denominator == 0 {
                    return Err(ValueError::Invalid {
                        field: "ratio_numerator",
                        reason: "the ratio's numerator and denominator must be 1 or more".into(),
                    });
                }
                if e.ratio_numerator > 100 || e.ratio_denominator > 100 {
                    return Err(ValueError::Invalid {
                        field: "ratio_numerator",
                        reason: "the ratio's numerator and denominator are at most 100".into(),
                    });
                }
                for (field, value) in [
                    ("valid_from_ms", e.valid_from_ms),
                    ("valid_until_ms", e.valid_until_ms),
                ] {
                    if value > crate::jcs::SAFE_INTEGER_MAX {
                        return Err(ValueError::Invalid {
                            field,
                            reason: format!(
                                "{value} is after the last time a ledger event can hold \
                                 (2^53 - 1 ms since 1970)"
                            ),
                        });
                    }
                }
                if e.valid_from_ms >= e.valid_until_ms {
                    return Err(ValueError::Invalid {
                        field: "valid_until_ms",
                        reason: "the window must end after it starts".into(),
                    });
                }
                if e.day_utc_offset_minutes.abs() > 14 * 60 {
                    return Err(ValueError::Invalid {
                        field: "day_utc_offset_minutes",
                        reason: "a UTC offset is within ±840 minutes".into(),
                    });
                }
                if e.cap_per_donation_minor > e.total_cap_minor
                    || e.cap_per_donor_per_day_minor > e.total_cap_minor
                {
                    return Err(ValueError::Invalid {
                        field: "cap_per_donation_minor",
                        reason: "a per-donation or per-donor cap cannot exceed the total cap"
                            .into(),
                    });
                }
                Ok(())
            }
            // The upper bound against the gift's own fee is the writer's (the event alone
            // does not know the gift); here only what any fee given back can be.
            EventBody::DonationRefunded(e) => match e.fee_returned_minor {
                Some(fee) => check_fee_returned(fee, "omit it when the channel gave nothing back"),
                None => Ok(()),
            },
            EventBody::RefundFeeReturned(e) => check_fee_returned(
                e.fee_returned_minor,
                "a correction records a fee the channel did give back",
            ),
            EventBody::PayoutDisbursed(e) => check_reference("bank_reference", &e.bank_reference),
            EventBody::MoveRequested(e) => {
                if e.from_project == e.to_project {
                    return Err(ValueError::Invalid {
                        field: "to_project",
                        reason: "a move goes to another project".into(),
                    });
                }
                Ok(())
            }
            EventBody::StatementImported(e) => {
                check_reference("account", &e.account)?;
                if e.period_start_ms >= e.period_end_ms {
                    return Err(ValueError::Invalid {
                        field: "period_end_ms",
                        reason: "a statement period must end after it starts".into(),
                    });
                }
                if e.line_count > STATEMENT_LINES_MAX {
                    return Err(ValueError::Invalid {
                        field: "line_count",
                        reason: format!(
                            "a statement has at most {STATEMENT_LINES_MAX} lines (got {})",
                            e.line_count
                        ),
                    });
                }
                Ok(())
            }
            EventBody::StatementLineRecorded(e) => {
                check_reference("reference", &e.reference)?;
                if let Some(original) = &e.original_reference {
                    check_reference("original_reference", original)?;
                }
                if e.line_no == 0 {
                    return Err(ValueError::Invalid {
                        field: "line_no",
                        reason: "line numbers start at 1".into(),
                    });
                }
                if e.fee_minor.unsigned_abs() > AMOUNT_MINOR_MAX {
                    return Err(ValueError::Invalid {
                        field: "fee_minor",
                        reason: format!(
                            "from -{AMOUNT_MINOR_MAX} to {AMOUNT_MINOR_MAX} (got {})",
                            e.fee_minor
                        ),
                    });
                }
                if let Some(milli) = e.fee_milli_minor {
                    check_fee_milli_minor(milli, e.fee_minor)?;
                }
                if e.kind == StatementLineKind::Refund && e.original_reference.is_none() {
                    return Err(ValueError::Invalid {
                        field: "original_reference",
                        reason: "a refund line names the payment it refunds".into(),
                    });
                }
                Ok(())
            }
            EventBody::ExceptionResolved(e) => {
                if e.line_no.is_some() == e.entry_seq.is_some() {
                    return Err(ValueError::Invalid {
                        field: "line_no",
                        reason: "an exception is either a statement line (line_no) or a ledger entry (entry_seq), exactly one".into(),
                    });
                }
                if let Resolution::Linked { .. } = e.resolution {
                    if e.line_no.is_none() {
                        return Err(ValueError::Invalid {
                            field: "resolution",
                            reason: "only a statement line can be linked to a ledger entry".into(),
                        });
                    }
                }
                if matches!(
                    e.resolution,
                    Resolution::Settlement { .. } | Resolution::MatchingReceived { .. }
                ) && e.line_no.is_none()
                {
                    return Err(ValueError::Invalid {
                        field: "resolution",
                        reason: "a settlement or matching receipt is booked from a statement line"
                            .into(),
                    });
                }
                Ok(())
            }
            EventBody::StaffTokenIssued(e) => check_token_id(&e.token_id),
            EventBody::StaffTokenRevoked(e) => check_token_id(&e.token_id),
            _ => Ok(()),
        }
    }
}

/// A staff token's public id: 16 lowercase hex digits (the first 8 bytes of the SHA-256 of
/// the token, which stays secret).
fn check_token_id(id: &str) -> Result<(), ValueError> {
    if id.len() == STAFF_TOKEN_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ValueError::Invalid {
            field: "token_id",
            reason: format!(
                "a token id is {STAFF_TOKEN_ID_LEN} lowercase hex digits (got {} characters)",
                id.chars().count()
            ),
        })
    }
}

/// The struct an [`EventBody`] holds, serialized as is: the `data` member of an event.
pub(crate) struct BodyData<'a>(&'a EventBody);

impl Serialize for BodyData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            EventBody::ProjectOpened(e) => e.serialize(serializer),
            EventBody::ProjectClosed(e) => e.serialize(serializer),
            EventBody::DonationReceived(e) => e.serialize(serializer),
            EventBody::DonationRefunded(e) => e.serialize(serializer),
            EventBody::RefundFeeReturned(e) => e.serialize(serializer),
            EventBody::PledgeMade(e) => e.serialize(serializer),
            EventBody::PledgeCancelled(e) => e.serialize(serializer),
            EventBody::MatchingPoolCommitted(e) => e.serialize(serializer),
            EventBody::MatchingPoolClosed(e) => e.serialize(serializer),
            EventBody::MatchAllocated(e) => e.serialize(serializer),
            EventBody::MatchReleased(e) => e.serialize(serializer),
            EventBody::MatchFrozen(e)
            | EventBody::MatchUnfrozen(e)
            | EventBody::MatchRevoked(e) => e.serialize(serializer),
            EventBody::PayoutRequested(e) => e.serialize(serializer),
            EventBody::PayoutApproved(e) | EventBody::MoveApproved(e) => e.serialize(serializer),
            EventBody::PayoutRejected(e) | EventBody::MoveRejected(e) => e.serialize(serializer),
            EventBody::PayoutDisbursed(e) => e.serialize(serializer),
            EventBody::MoveRequested(e) => e.serialize(serializer),
            EventBody::StatementImported(e) => e.serialize(serializer),
            EventBody::StatementLineRecorded(e) => e.serialize(serializer),
            EventBody::ExceptionResolved(e) => e.serialize(serializer),
            EventBody::StaffTokenIssued(e) => e.serialize(serializer),
            EventBody::StaffTokenRevoked(e) => e.serialize(serializer),
        }
    }
}

/// A fee given back (`fee_returned_minor`, on a refund or in a later correction) is 1 to
/// 2^53 − 1 minor units; `zero` says how a fee of nothing is spelt instead.
fn check_fee_returned(fee: u64, zero: &str) -> Result<(), ValueError> {
    if fee == 0 || fee > AMOUNT_MINOR_MAX {
        return Err(ValueError::Invalid {
            field: "fee_returned_minor",
            reason: format!(
                "a fee given back is 1 to {AMOUNT_MINOR_MAX} minor units (got {fee}); {zero}"
            ),
        });
    }
    Ok(())
}

fn check_reference(field: &'static str, value: &str) -> Result<(), ValueError> {
    let ok = !value.is_empty()
        && value.len() <= REFERENCE_LEN_MAX
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ValueError::Invalid {
            field,
            reason: format!(
                "must be 1 to {REFERENCE_LEN_MAX} printable ASCII characters without spaces (got {} bytes)",
                value.len()
            ),
        })
    }
}

/// A statement line's exact fee in thousandths: within ±(2^53 − 1), not a whole number of
/// minor units (a whole one is `fee_minor` alone), and `fee_minor` is it rounded.
fn check_fee_milli_minor(milli: i64, fee_minor: i64) -> Result<(), ValueError> {
    if milli.unsigned_abs() > AMOUNT_MINOR_MAX {
        return Err(ValueError::Invalid {
            field: "fee_milli_minor",
            reason: format!("from -{AMOUNT_MINOR_MAX} to {AMOUNT_MINOR_MAX} (got {milli})"),
        });
    }
    let (rounded, exact) = fee_parts(milli);
    if exact.is_none() {
        return Err(ValueError::Invalid {
            field: "fee_milli_minor",
            reason: format!(
                "only for a fee that is not a whole number of minor units (got {milli}, which \
                 is {rounded} minor units: record it as fee_minor alone)"
            ),
        });
    }
    if fee_minor != rounded {
        return Err(ValueError::Invalid {
            field: "fee_minor",
            reason: format!(
                "must be fee_milli_minor {milli} in whole minor units ({MILLI_PER_MINOR} \
                 thousandths each), rounded half away from zero: {rounded} (got {fee_minor})"
            ),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectOpened {
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_minor: Option<Amount>,
    pub kind: ProjectKind,
    pub name: Text,
    pub project: Id,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectClosed {
    pub project: Id,
    pub reason: Text,
}

/// A gift received through a payment channel. The channel's fee is recorded with it; the
/// project is credited with `amount_minor − fee_minor`.
///
/// No personal data: `donor_ref` is an opaque reference whose link to a person is kept by
/// finance staff outside the log (so it can be erased); `public_name` is the name the donor
/// chose to be shown publicly, absent when `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonationReceived {
    pub amount_minor: Amount,
    pub anonymous: bool,
    pub channel: Channel,
    pub channel_txn_id: String,
    pub currency: Currency,
    pub donor_ref: Id,
    pub fee_minor: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pledge_seq: Option<u64>,
    pub project: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_name: Option<Text>,
    pub receipt_code: String,
}

impl DonationReceived {
    /// What the project is credited with: the amount less the channel's fee.
    pub fn net_minor(&self) -> u64 {
        self.amount_minor.minor() - self.fee_minor
    }
}

/// A donation returned to the donor in full. The channel keeps its fee unless it gives
/// some back (`fee_returned_minor`); the match the donation triggered is released by a
/// `MatchReleased` in the same batch. A fee the channel gave back that the refund did not
/// record is added later by a [`RefundFeeReturned`] naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonationRefunded {
    pub donation_seq: u64,
    /// The part of the gift's fee the channel gave back on the refund (WeChat Pay and
    /// Alipay return the refund's share of it): 1 to the donation's `fee_minor`. Absent
    /// when the channel kept the whole fee, and in every refund recorded before this member
    /// existed (so their bytes and hashes are unchanged). The project gets it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_returned_minor: Option<u64>,
    pub reason: Text,
}

/// A correction: the channel gave back (more of) a refunded gift's fee than the refund
/// `refund_seq` (a `DonationRefunded`) recorded, e.g. a refund recorded before the
/// channel's refund notice or bill showed the fee it returned. The project gets
/// `fee_returned_minor` back, as if the refund had carried it; what the refund and its
/// corrections give back together is at most the gift's fee (the writer's rule). The
/// refund itself is never edited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundFeeReturned {
    /// 1 to 2^53 − 1 minor units on the event alone.
    pub fee_returned_minor: u64,
    pub reason: Text,
    /// The seq of the `DonationRefunded` event it corrects.
    pub refund_seq: u64,
}

/// A promise of money (not cash) from a sponsor to a project; fulfilled by donations that
/// name it, until cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PledgeMade {
    pub amount_minor: Amount,
    pub currency: Currency,
    pub project: Id,
    pub sponsor: Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PledgeCancelled {
    pub pledge_seq: u64,
    pub reason: Text,
}

/// A sponsor's matching commitment (配捐). A donation to a covered project inside the window
/// is matched `amount × numerator / denominator` (rounded down), clamped by the caps. Days
/// for the per-donor cap start at midnight at `day_utc_offset_minutes` (480 for China).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingPoolCommitted {
    pub cap_per_donation_minor: Amount,
    pub cap_per_donor_per_day_minor: Amount,
    pub currency: Currency,
    pub day_utc_offset_minutes: i32,
    pub pool: Id,
    pub projects: Vec<Id>,
    pub ratio_denominator: u32,
    pub ratio_numerator: u32,
    pub sponsor: Text,
    pub total_cap_minor: Amount,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingPoolClosed {
    pub pool: Id,
    pub reason: Text,
}

/// Matching money allocated to the donation's project, written in the same batch as the
/// donation that triggered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchAllocated {
    pub amount_minor: Amount,
    pub donation_seq: u64,
    pub pool: Id,
    pub project: Id,
}

/// A match given back to its pool because the donation that triggered it was refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchReleased {
    pub amount_minor: Amount,
    pub donation_seq: u64,
    pub pool: Id,
    pub project: Id,
}

/// A step in the review of a match (the brief: large platforms freeze matches under
/// review, e.g. a gift split across made-up donors to farm matches). One shape for the
/// three steps, as `Decision` is for approvals:
/// - `match_frozen`: the match is held. It stays allocated from its pool and counted in the
///   project's `matched`, but the project cannot spend it (payouts, moves) until the review
///   ends.
/// - `match_unfrozen`: the review cleared the match; the project may spend it again.
/// - `match_revoked`: the review sent the match back to its pool (released after review),
///   as a refund's `MatchReleased` would, while the gift itself stays. Four eyes: not by
///   the hand that froze it.
///
/// Pool, project and amount repeat the match being reviewed (as `MatchReleased` does), so
/// a reader of one event knows what money it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchReview {
    pub amount_minor: Amount,
    /// The donation that triggered the match.
    pub donation_seq: u64,
    pub pool: Id,
    pub project: Id,
    pub reason: Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequested {
    pub amount_minor: Amount,
    pub currency: Currency,
    pub document_sha256: Hash,
    pub payee: Text,
    pub project: Id,
    pub purpose: Text,
}

/// The length of a staff token's public id, in hex digits.
pub const STAFF_TOKEN_ID_LEN: usize = 16;

/// What a staff token may do (the staff API's roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// Records donations, refunds, pledges and statements.
    Recorder,
    /// Approves or rejects payouts and moves, and resolves reconciliation exceptions.
    Approver,
    /// Opens and closes projects and pools, requests payouts and moves, manages tokens.
    Admin,
    /// Reads every staff view; writes nothing.
    Auditor,
}

impl StaffRole {
    pub const ALL: [StaffRole; 4] = [
        StaffRole::Recorder,
        StaffRole::Approver,
        StaffRole::Admin,
        StaffRole::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Recorder => "recorder",
            StaffRole::Approver => "approver",
            StaffRole::Admin => "admin",
            StaffRole::Auditor => "auditor",
        }
    }
}

impl std::fmt::Display for StaffRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StaffRole {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        StaffRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ValueError::Invalid {
                field: "role",
                reason: format!("one of recorder, approver, admin, auditor (got {s:?})"),
            })
    }
}

/// A bearer token for the staff API was issued to `holder` with `role`, by the event's
/// actor. The token itself stays secret (the service keeps only its SHA-256); `token_id` is
/// the public id under which it is listed and revoked. With these events the log says who
/// could act in which role, and from when to when, so a four-eyes check can be audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffTokenIssued {
    pub holder: Id,
    pub role: StaffRole,
    pub token_id: String,
}

/// The staff token `token_id` was revoked, by the event's actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffTokenRevoked {
    pub token_id: String,
}

/// Approval of a payout or move; the actor (in the envelope) differs from the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub request_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    pub reason: Text,
    pub request_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutDisbursed {
    pub bank_reference: String,
    pub payout_seq: u64,
}

/// Restricted money moved from one project to another; approved like a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequested {
    pub amount_minor: Amount,
    pub currency: Currency,
    pub from_project: Id,
    pub reason: Text,
    pub to_project: Id,
}

/// Where an imported statement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementSource {
    /// A WeChat Pay style daily transaction bill (CSV).
    Wechat,
    /// An Alipay style business detail bill (CSV).
    Alipay,
    /// A bank account statement (CSV).
    BankCsv,
    /// A bank account statement in ISO 20022 camt.053 XML.
    Camt053,
}

impl StatementSource {
    pub const ALL: [StatementSource; 4] = [
        StatementSource::Wechat,
        StatementSource::Alipay,
        StatementSource::BankCsv,
        StatementSource::Camt053,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            StatementSource::Wechat => "wechat",
            StatementSource::Alipay => "alipay",
            StatementSource::BankCsv => "bank_csv",
            StatementSource::Camt053 => "camt053",
        }
    }
    /// The payment channel whose ledger entries this statement is reconciled against.
    pub fn channel(self) -> Channel {
        match self {
            StatementSource::Wechat => Channel::Wechat,
            StatementSource::Alipay => Channel::Alipay,
            StatementSource::BankCsv | StatementSource::Camt053 => Channel::Bank,
        }
    }
}

/// A statement from a payment channel or bank, taken in for reconciliation. Its lines follow
/// as `StatementLineRecorded` events numbered 1 ..= `line_count`. A statement is known by
/// the SHA-256 of its file, so importing the same file again records nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementImported {
    /// The merchant number or bank account the statement is for.
    pub account: String,
    pub currency: Currency,
    pub line_count: u64,
    pub period_end_ms: u64,
    /// The period covered, `[start, end)` in milliseconds since the Unix epoch.
    pub period_start_ms: u64,
    pub source: StatementSource,
    pub statement_sha256: Hash,
}

/// What a statement line says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementLineKind {
    /// A payment received by the channel (a gift).
    Payment,
    /// A payment returned to the payer; `original_reference` names the payment.
    Refund,
    /// Money into a bank account.
    Credit,
    /// Money out of a bank account.
    Debit,
}

impl StatementLineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementLineKind::Payment => "payment",
            StatementLineKind::Refund => "refund",
            StatementLineKind::Credit => "credit",
            StatementLineKind::Debit => "debit",
        }
    }
    /// Payments and bank credits bring money into the account; refunds and bank debits take
    /// it out.
    pub fn is_money_in(self) -> bool {
        match self {
            StatementLineKind::Payment | StatementLineKind::Credit => true,
            StatementLineKind::Refund | StatementLineKind::Debit => false,
        }
    }
}

/// One line of an imported statement, as the channel or bank reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementLineRecorded {
    /// The gross amount, without a sign: `kind` says which way the money went (payments and
    /// credits in, refunds and debits out).
    pub amount_minor: Amount,
    /// When the channel or bank booked it, milliseconds since the Unix epoch.
    pub booked_ms: u64,
    pub currency: Currency,
    /// The fee exactly, in thousandths of a minor unit, present only when it is not a whole
    /// number of minor units: WeChat Pay prints 手续费 to 0.00001 yuan (`0.05940` is 5,940).
    /// Signed as `fee_minor`, within ±(2^53 − 1); `fee_minor` is it rounded
    /// ([`crate::milli_minor_rounded`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_milli_minor: Option<i64>,
    /// The channel's fee on this line, signed as the channel's bill states its direction:
    /// positive when the channel charged it, negative when the channel gave it back (a
    /// WeChat Pay refund returns its share of the payment's fee). Within ±(2^53 − 1).
    /// Lines recorded before fees were signed hold the fee's magnitude, so a returned fee
    /// in such a line reads as charged. When the channel prints a fee finer than the minor
    /// unit, this is that fee rounded half away from zero and `fee_milli_minor` holds it
    /// exactly.
    pub fee_minor: i64,
    pub kind: StatementLineKind,
    /// 1-based number of the entry within the statement.
    pub line_no: u64,
    /// For refunds: the payment's reference. For channel payments: the channel's own
    /// order number, tried when `reference` matches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_reference: Option<String>,
    /// The channel transaction id (merchant order number) or bank reference.
    pub reference: String,
    /// The seq of the `StatementImported` event.
    pub statement_seq: u64,
}

impl StatementLineRecorded {
    /// The fee exactly, in thousandths of a minor unit.
    pub fn fee_exact_milli_minor(&self) -> i128 {
        self.fee_milli_minor.map_or_else(
            || i128::from(self.fee_minor) * i128::from(MILLI_PER_MINOR),
            i128::from,
        )
    }
}

/// How staff settled a reconciliation exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Resolution {
    /// The difference is explained and accepted; no money moves.
    Explained,
    /// The statement line belongs to this ledger entry (a donation, refund or payout of the
    /// line's amount, often one recorded after the import to fill the gap).
    Linked { entry_seq: u64 },
    /// The bank line is a channel paying out its settled balance: `amount_minor` moves from
    /// the channel's clearing account to the bank. The amount is the line's (the ledger
    /// refuses another).
    Settlement {
        channel: Channel,
        amount_minor: Amount,
    },
    /// The bank line is a sponsor paying what its pool matched: `amount_minor` (the line's)
    /// of the pool's receivable is settled.
    MatchingReceived { pool: Id, amount_minor: Amount },
}

impl Resolution {
    /// The money the resolution books, if any.
    pub fn amount_minor(&self) -> Option<Amount> {
        match self {
            Resolution::Settlement { amount_minor, .. }
            | Resolution::MatchingReceived { amount_minor, .. } => Some(*amount_minor),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Resolution::Explained => "explained",
            Resolution::Linked { .. } => "linked",
            Resolution::Settlement { .. } => "settlement",
            Resolution::MatchingReceived { .. } => "matching_received",
        }
    }
}

/// Staff resolved one reconciliation exception of a statement: a statement line
/// (`line_no`) or a ledger entry the statement lacks (`entry_seq`), exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionResolved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_no: Option<u64>,
    pub note: Text,
    pub resolution: Resolution,
    pub statement_seq: u64,
}

/// The most digits in a row a donor reference may hold.
pub const DONOR_REF_DIGITS_RUN_MAX: usize = 6;

/// A donor reference is public (it is in every gift's event) and must reveal nothing about
/// the person: no phone number (11 digits), ID card number (18) or account number. Such
/// numbers are refused by their one sure sign, a run of more than
/// [`DONOR_REF_DIGITS_RUN_MAX`] digits; `donor-000042` passes, `13800138000` does not.
fn check_donor_ref(donor_ref: &Id) -> Result<(), ValueError> {
    let longest = donor_ref
        .as_str()
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest > DONOR_REF_DIGITS_RUN_MAX {
        return Err(ValueError::Invalid {
            field: "donor_ref",
            reason: format!(
                "{longest} digits in a row; at most {DONOR_REF_DIGITS_RUN_MAX}: a donor reference \
                 must not be a phone, ID or account number (use the platform's opaque donor id)"
            ),
        });
    }
    Ok(())
}
