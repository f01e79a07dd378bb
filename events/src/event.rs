//! The event model: every fact the ledger records. Events are named in the past tense and
//! never change once sealed; a mistake is corrected by a later event that names the earlier one.
//!
//! Donations, pledges, payouts and moves are identified by the `seq` of the event that
//! created them (`donation_seq`, `pledge_seq`, `payout_seq`, `move_seq`): a position in the
//! log is unique, public and needs no id generator. Projects and matching pools have ids
//! chosen by staff.

use serde::{Deserialize, Serialize};

use crate::values::{Amount, Channel, Currency, Hash, Id, ProjectKind, Text};
use crate::ValueError;

/// The longest channel transaction id or bank reference, in bytes.
pub const REFERENCE_LEN_MAX: usize = 128;
/// The most projects one matching pool may cover.
pub const POOL_PROJECTS_MAX: usize = 64;

/// What happened. Serialized as `"type": "<snake_case name>", "data": {...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventBody {
    ProjectOpened(ProjectOpened),
    ProjectClosed(ProjectClosed),
    DonationReceived(DonationReceived),
    DonationRefunded(DonationRefunded),
    PledgeMade(PledgeMade),
    PledgeCancelled(PledgeCancelled),
    MatchingPoolCommitted(MatchingPoolCommitted),
    MatchingPoolClosed(MatchingPoolClosed),
    MatchAllocated(MatchAllocated),
    MatchReleased(MatchReleased),
    PayoutRequested(PayoutRequested),
    PayoutApproved(Decision),
    PayoutRejected(Rejection),
    PayoutDisbursed(PayoutDisbursed),
    MoveRequested(MoveRequested),
    MoveApproved(Decision),
    MoveRejected(Rejection),
}

impl EventBody {
    /// The `type` string this event is serialized with.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::ProjectOpened(_) => "project_opened",
            EventBody::ProjectClosed(_) => "project_closed",
            EventBody::DonationReceived(_) => "donation_received",
            EventBody::DonationRefunded(_) => "donation_refunded",
            EventBody::PledgeMade(_) => "pledge_made",
            EventBody::PledgeCancelled(_) => "pledge_cancelled",
            EventBody::MatchingPoolCommitted(_) => "matching_pool_committed",
            EventBody::MatchingPoolClosed(_) => "matching_pool_closed",
            EventBody::MatchAllocated(_) => "match_allocated",
            EventBody::MatchReleased(_) => "match_released",
            EventBody::PayoutRequested(_) => "payout_requested",
            EventBody::PayoutApproved(_) => "payout_approved",
            EventBody::PayoutRejected(_) => "payout_rejected",
            EventBody::PayoutDisbursed(_) => "payout_disbursed",
            EventBody::MoveRequested(_) => "move_requested",
            EventBody::MoveApproved(_) => "move_approved",
            EventBody::MoveRejected(_) => "move_rejected",
        }
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
            _ => Ok(()),
        }
    }
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectOpened {
    pub project: Id,
    pub kind: ProjectKind,
    pub name: Text,
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_minor: Option<Amount>,
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
    pub project: Id,
    pub amount_minor: Amount,
    pub currency: Currency,
    pub channel: Channel,
    pub channel_txn_id: String,
    pub fee_minor: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pledge_seq: Option<u64>,
    pub anonymous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_name: Option<Text>,
    pub donor_ref: Id,
    pub receipt_code: String,
}

impl DonationReceived {
    /// What the project is credited with: the amount less the channel's fee.
    pub fn net_minor(&self) -> u64 {
        self.amount_minor.minor() - self.fee_minor
    }
}

/// A donation returned to the donor in full. The channel keeps its fee; the match the
/// donation triggered is released by a `MatchReleased` in the same batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonationRefunded {
    pub donation_seq: u64,
    pub reason: Text,
}

/// A promise of money (not cash) from a sponsor to a project; fulfilled by donations that
/// name it, until cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PledgeMade {
    pub project: Id,
    pub sponsor: Text,
    pub amount_minor: Amount,
    pub currency: Currency,
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
    pub pool: Id,
    pub sponsor: Text,
    pub projects: Vec<Id>,
    pub currency: Currency,
    pub ratio_numerator: u32,
    pub ratio_denominator: u32,
    pub cap_per_donation_minor: Amount,
    pub cap_per_donor_per_day_minor: Amount,
    pub total_cap_minor: Amount,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    pub day_utc_offset_minutes: i32,
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
    pub pool: Id,
    pub donation_seq: u64,
    pub project: Id,
    pub amount_minor: Amount,
}

/// A match given back to its pool because the donation that triggered it was refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchReleased {
    pub pool: Id,
    pub donation_seq: u64,
    pub project: Id,
    pub amount_minor: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequested {
    pub project: Id,
    pub amount_minor: Amount,
    pub currency: Currency,
    pub payee: Text,
    pub purpose: Text,
    pub document_sha256: Hash,
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
    pub request_seq: u64,
    pub reason: Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutDisbursed {
    pub payout_seq: u64,
    pub bank_reference: String,
}

/// Restricted money moved from one project to another; approved like a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequested {
    pub from_project: Id,
    pub to_project: Id,
    pub amount_minor: Amount,
    pub currency: Currency,
    pub reason: Text,
}
