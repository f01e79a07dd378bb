//! The staff API: one resource-shaped endpoint per command, a generic command endpoint, a
//! batch endpoint for donations, and the staff views (which show donor references).
//!
//! Every write goes through [`submit`]: role check, `Idempotency-Key`, the writer, and one
//! response shape ([`WriteResponse`]). Bodies are the outer crate's own types, converted by
//! hand into [`Command`]s, so the wire format can change without touching the domain.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use events::{
    Amount, Channel, Currency, EventBody, Hash, Id, Idempotency, MatchingPoolCommitted,
    MoveRequested, PayoutRequested, ProjectKind, SealedEvent, Text,
};
use projections::{LedgerState, Request};
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};

use super::auth::{Principal, Role};
use super::error::{
    decode_json, decode_value, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, ItemError,
    JsonBytes,
};
use super::limits::*;
use super::tokens::TokenInfo;
use super::AppState;
use crate::command::{decide, Command, Context, DonationInput};
use crate::writer::{Outcome, Submission, WriteError};

/// The header carrying a client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header set to `true` on a response that replays an earlier result.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

// ---------------------------------------------------------------------------------------------
// Request bodies

/// A project's kind. Help requests and micro-wishes cannot raise more than their goal.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindSchema {
    CommunityProject,
    HelpRequest,
    MicroWish,
    GeneralFund,
}

/// The payment channel of a gift.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSchema {
    Wechat,
    Alipay,
    Bank,
    Cash,
    CharityMall,
}

/// Open a project. Ids are 1–64 characters of `a-z 0-9 - _ .`; texts 1–500 characters.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenProjectBody {
    #[schema(value_type = String, example = "xingxing-classroom", max_length = 64)]
    pub project: Id,
    #[schema(value_type = KindSchema)]
    pub kind: ProjectKind,
    #[schema(value_type = String, example = "星星课堂", max_length = 500)]
    pub name: Text,
    #[schema(value_type = String, example = "CNY")]
    pub currency: Currency,
    /// Required for help requests and micro-wishes. Minor units, 1 ..= 2^53 − 1.
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9007199254740991_u64)]
    pub goal_minor: Option<Amount>,
}

/// A reason, for closing, refunding, cancelling and rejecting (1–500 characters).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// A refund of a whole gift: why, and the part of the gift's fee the channel gave back
/// (WeChat Pay and Alipay return the refund's share of it), if any.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
    /// Minor units, 1 to the gift's `fee_minor`; omit it when the channel kept its fee.
    /// The project gets it back, and the refund's statement line is matched against it.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub fee_returned_minor: Option<u64>,
}

/// A fee the channel gave back on a refund already recorded, which the refund did not
/// carry (or carried less of), e.g. shown by the channel's refund bill.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundFeeReturnedBody {
    /// Minor units, 1 to what is left of the gift's `fee_minor` after what the refund and
    /// earlier corrections gave back; more is `fee_returned_over_fee`. The project gets it
    /// back, and the refund's statement line is matched against the total.
    #[schema(minimum = 1, maximum = 9007199254740991_u64, example = 1)]
    pub fee_returned_minor: u64,
    #[schema(value_type = String, max_length = 500, example = "微信退款账单退回手续费")]
    pub reason: Text,
}

/// The generic form of [`RefundFeeReturnedBody`]: the refund named in the body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundFeeReturnedCommandBody {
    /// The seq of the `donation_refunded` event.
    pub refund_seq: u64,
    /// Minor units, 1 to what is left of the gift's `fee_minor`.
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    pub fee_returned_minor: u64,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

impl From<RefundFeeReturnedCommandBody> for Command {
    fn from(b: RefundFeeReturnedCommandBody) -> Command {
        Command::RecordRefundFeeReturned {
            refund_seq: b.refund_seq,
            fee_returned_minor: b.fee_returned_minor,
            reason: b.reason,
        }
    }
}

/// A step of a match's review through the generic route (`freeze_match`,
/// `unfreeze_match`, `release_match`): the donation whose match it is, and why.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchReviewCommandBody {
    /// The seq of the donation that triggered the match.
    pub donation_seq: u64,
    #[schema(value_type = String, max_length = 500, example = "同一付款账户拆分为多个新捐赠人")]
    pub reason: Text,
}

/// A gift from a payment channel. The ledger derives the receipt code; a channel
/// transaction is recorded at most once.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DonationBody {
    #[schema(value_type = String, example = "xingxing-classroom")]
    pub project: Id,
    /// Minor units (fen), 1 ..= 2^53 − 1.
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64, example = 100)]
    pub amount_minor: Amount,
    #[schema(value_type = String, example = "CNY")]
    pub currency: Currency,
    #[schema(value_type = ChannelSchema)]
    pub channel: Channel,
    /// The channel's transaction id: 1–128 printable ASCII characters without spaces.
    #[schema(max_length = 128, example = "wx-4200001234")]
    pub channel_txn_id: String,
    /// The channel's fee, less than the amount.
    #[serde(default)]
    pub fee_minor: u64,
    /// The pledge this gift fulfils.
    #[serde(default)]
    pub pledge_seq: Option<u64>,
    /// Shown as anonymous in public.
    #[serde(default)]
    pub anonymous: bool,
    /// The name shown in public (not with `anonymous`).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub public_name: Option<Text>,
    /// An opaque reference to the donor, kept by finance staff; never shown in public.
    #[schema(value_type = String, example = "donor-000123")]
    pub donor_ref: Id,
}

impl From<DonationBody> for DonationInput {
    fn from(b: DonationBody) -> DonationInput {
        DonationInput {
            project: b.project,
            amount_minor: b.amount_minor,
            currency: b.currency,
            channel: b.channel,
            channel_txn_id: b.channel_txn_id,
            fee_minor: b.fee_minor,
            pledge_seq: b.pledge_seq,
            anonymous: b.anonymous,
            public_name: b.public_name,
            donor_ref: b.donor_ref,
        }
    }
}

/// Up to 1000 donations, recorded all together or not at all.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    #[schema(max_items = 1000, min_items = 1)]
    pub donations: Vec<DonationBody>,
}

/// A sponsor's promise of money to a project.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PledgeBody {
    #[schema(value_type = String)]
    pub project: Id,
    #[schema(value_type = String, max_length = 500)]
    pub sponsor: Text,
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64)]
    pub amount_minor: Amount,
    #[schema(value_type = String, example = "CNY")]
    pub currency: Currency,
}

/// A sponsor's matching commitment (配捐).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    #[schema(value_type = String, example = "pool-warm-sun")]
    pub pool: Id,
    #[schema(value_type = String, max_length = 500)]
    pub sponsor: Text,
    /// 1 to 64 projects, each listed once.
    #[schema(value_type = Vec<String>, max_items = 64, min_items = 1)]
    pub projects: Vec<Id>,
    #[schema(value_type = String, example = "CNY")]
    pub currency: Currency,
    #[schema(minimum = 1, maximum = 100)]
    pub ratio_numerator: u32,
    #[schema(minimum = 1, maximum = 100)]
    pub ratio_denominator: u32,
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64)]
    pub cap_per_donation_minor: Amount,
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64)]
    pub cap_per_donor_per_day_minor: Amount,
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64)]
    pub total_cap_minor: Amount,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    /// Where the per-donor day starts: 480 for China. Within ±840.
    #[schema(minimum = -840, maximum = 840)]
    pub day_utc_offset_minutes: i32,
}

impl From<PoolBody> for MatchingPoolCommitted {
    fn from(b: PoolBody) -> MatchingPoolCommitted {
        MatchingPoolCommitted {
            pool: b.pool,
            sponsor: b.sponsor,
            projects: b.projects,
            currency: b.currency,
            ratio_numerator: b.ratio_numerator,
            ratio_denominator: b.ratio_denominator,
            cap_per_donation_minor: b.cap_per_donation_minor,
            cap_per_donor_per_day_minor: b.cap_per_donor_per_day_minor,
            total_cap_minor: b.total_cap_minor,
            valid_from_ms: b.valid_from_ms,
            valid_until_ms: b.valid_until_ms,
            day_utc_offset_minutes: b.day_utc_offset_minutes,
        }
    }
}

/// A payout request: money leaving a project, with its purpose and supporting document.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutBody {
    #[schema(value_type = String)]
    pub project: Id,
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64)]
    pub amount_minor: Amount,
    #[schema(value_type = String, example = "CNY")]
    pub currency: Currency,
    #[schema(value_type = String, max_length = 500)]
    pub payee: Text,
    #[schema(value_type = String, max_length = 500)]
    pub purpose: Text,
    /// SHA-256 of the supporting document (invoice, contract): 64 lowercase hex digits.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub document_sha256: Hash,
}

/// The bank transfer that paid an approved payout.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisburseBody {
    /// 1–128 printable ASCII characters without spaces.
    #[schema(max_length = 128)]
    pub bank_reference: String,
}

/// Restricted money moved from one project to another.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    #[schema(value_type = String)]
    pub from_project: Id,
    #[schema(value_type = String)]
    pub to_project: Id,
    #[schema(value_type = u64, minimum = 1, maximum = 9007199254740991_u64)]
    pub amount_minor: Amount,
    #[schema(value_type = String, example = "CNY")]
    pub currency: Currency,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// No fields (an empty body is accepted too).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// Close a project (`command: close_project`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseProjectBody {
    #[schema(value_type = String, max_length = 64)]
    pub project: Id,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// Refund a gift (`command: refund_donation`): the fields of [`RefundBody`] and the gift.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundDonationBody {
    pub donation_seq: u64,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
    /// Minor units, 1 to the gift's `fee_minor`; omit it when the channel kept its fee.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub fee_returned_minor: Option<u64>,
}

/// Cancel a pledge (`command: cancel_pledge`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelPledgeBody {
    pub pledge_seq: u64,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// Close a matching pool (`command: close_matching_pool`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosePoolBody {
    #[schema(value_type = String, max_length = 64)]
    pub pool: Id,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// Approve a payout (`command: approve_payout`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovePayoutBody {
    pub payout_seq: u64,
}

/// Reject a payout (`command: reject_payout`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectPayoutBody {
    pub payout_seq: u64,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// Record the bank transfer that paid a payout (`command: disburse_payout`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisbursePayoutBody {
    pub payout_seq: u64,
    /// 1–128 printable ASCII characters without spaces.
    #[schema(max_length = 128)]
    pub bank_reference: String,
}

/// Approve a move (`command: approve_move`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveMoveBody {
    pub move_seq: u64,
}

/// Reject a move (`command: reject_move`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectMoveBody {
    pub move_seq: u64,
    #[schema(value_type = String, max_length = 500)]
    pub reason: Text,
}

/// Declares [`CommandBody`], one variant per command with its name and body type, and the
/// decoding of a command's fields by name, from the one list.
macro_rules! command_bodies {
    ($($variant:ident($body:ty) = $name:tt,)*) => {
        /// Any command, as `{"command": "<name>", ...its fields}`: the generic form of the
        /// resource endpoints. Decoded by [`decode_command`] (not a derived `Deserialize`:
        /// serde buffers an internally tagged enum and loses the path of a bad field).
        #[derive(Debug, Clone, ToSchema)]
        #[serde(tag = "command")]
        pub enum CommandBody {
            $(#[serde(rename = $name)] $variant($body),)*
        }

        impl CommandBody {
            /// Every command's name, as `command` spells it.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The command `name` with `fields`, or `None` for no such command.
            fn decode_fields(name: &str, fields: serde_json::Value) -> Option<Result<Self, ApiError>> {
                Some(match name {
                    $($name => decode_value(fields).map(CommandBody::$variant),)*
                    _ => return None,
                })
            }
        }
    };
}

command_bodies! {
    OpenProject(OpenProjectBody) = "open_project",
    CloseProject(CloseProjectBody) = "close_project",
    RecordDonation(DonationBody) = "record_donation",
    RefundDonation(RefundDonationBody) = "refund_donation",
    RecordRefundFeeReturned(RefundFeeReturnedCommandBody) = "record_refund_fee_returned",
    MakePledge(PledgeBody) = "make_pledge",
    CancelPledge(CancelPledgeBody) = "cancel_pledge",
    CommitMatchingPool(PoolBody) = "commit_matching_pool",
    CloseMatchingPool(ClosePoolBody) = "close_matching_pool",
    FreezeMatch(MatchReviewCommandBody) = "freeze_match",
    UnfreezeMatch(MatchReviewCommandBody) = "unfreeze_match",
    ReleaseMatch(MatchReviewCommandBody) = "release_match",
    RequestPayout(PayoutBody) = "request_payout",
    ApprovePayout(ApprovePayoutBody) = "approve_payout",
    RejectPayout(RejectPayoutBody) = "reject_payout",
    DisbursePayout(DisbursePayoutBody) = "disburse_payout",
    RequestMove(MoveBody) = "request_move",
    ApproveMove(ApproveMoveBody) = "approve_move",
    RejectMove(RejectMoveBody) = "reject_move",
}

/// How much of an unknown command name an error repeats.
const COMMAND_NAME_ECHO_MAX: usize = 64;

/// Decodes the body of `POST /commands`: the `command` member first, then that command's
/// other members, so that a bad one is named by its field (`total_cap_minor: ...`) as the
/// resource routes name it.
pub fn decode_command(bytes: &[u8]) -> Result<CommandBody, ApiError> {
    let mut fields: serde_json::Map<String, serde_json::Value> = decode_json(bytes)?;
    let expected = || format!("one of {}", CommandBody::NAMES.join(", "));
    let name = match fields.remove("command") {
        Some(serde_json::Value::String(name)) => name,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_field",
                format!("command: must be a string, {}", expected()),
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "missing_field",
                format!("command: missing; give {}", expected()),
            ))
        }
    };
    CommandBody::decode_fields(&name, serde_json::Value::Object(fields)).unwrap_or_else(|| {
        let shown: String = name.chars().take(COMMAND_NAME_ECHO_MAX).collect();
        Err(ApiError::bad_request(
            "invalid_field",
            format!("command: no command {shown:?}; give {}", expected()),
        ))
    })
}

impl From<OpenProjectBody> for Command {
    fn from(b: OpenProjectBody) -> Command {
        Command::OpenProject {
            project: b.project,
            kind: b.kind,
            name: b.name,
            currency: b.currency,
            goal_minor: b.goal_minor,
        }
    }
}

impl From<PledgeBody> for Command {
    fn from(b: PledgeBody) -> Command {
        Command::MakePledge {
            project: b.project,
            sponsor: b.sponsor,
            amount_minor: b.amount_minor,
            currency: b.currency,
        }
    }
}

impl From<PayoutBody> for Command {
    fn from(b: PayoutBody) -> Command {
        Command::RequestPayout(PayoutRequested {
            project: b.project,
            amount_minor: b.amount_minor,
            currency: b.currency,
            payee: b.payee,
            purpose: b.purpose,
            document_sha256: b.document_sha256,
        })
    }
}

impl From<MoveBody> for Command {
    fn from(b: MoveBody) -> Command {
        Command::RequestMove(MoveRequested {
            from_project: b.from_project,
            to_project: b.to_project,
            amount_minor: b.amount_minor,
            currency: b.currency,
            reason: b.reason,
        })
    }
}

impl From<CommandBody> for Command {
    fn from(b: CommandBody) -> Command {
        match b {
            CommandBody::OpenProject(b) => b.into(),
            CommandBody::CloseProject(b) => Command::CloseProject {
                project: b.project,
                reason: b.reason,
            },
            CommandBody::RecordDonation(b) => Command::RecordDonation(b.into()),
            CommandBody::RefundDonation(b) => Command::RefundDonation {
                donation_seq: b.donation_seq,
                reason: b.reason,
                fee_returned_minor: b.fee_returned_minor,
            },
            CommandBody::RecordRefundFeeReturned(b) => b.into(),
            CommandBody::MakePledge(b) => b.into(),
            CommandBody::CancelPledge(b) => Command::CancelPledge {
                pledge_seq: b.pledge_seq,
                reason: b.reason,
            },
            CommandBody::CommitMatchingPool(b) => Command::CommitMatchingPool(b.into()),
            CommandBody::CloseMatchingPool(b) => Command::CloseMatchingPool {
                pool: b.pool,
                reason: b.reason,
            },
            CommandBody::FreezeMatch(b) => Command::FreezeMatch {
                donation_seq: b.donation_seq,
                reason: b.reason,
            },
            CommandBody::UnfreezeMatch(b) => Command::UnfreezeMatch {
                donation_seq: b.donation_seq,
                reason: b.reason,
            },
            CommandBody::ReleaseMatch(b) => Command::ReleaseMatch {
                donation_seq: b.donation_seq,
                reason: b.reason,
            },
            CommandBody::RequestPayout(b) => b.into(),
            CommandBody::ApprovePayout(b) => Command::ApprovePayout {
                payout_seq: b.payout_seq,
            },
            CommandBody::RejectPayout(b) => Command::RejectPayout {
                payout_seq: b.payout_seq,
                reason: b.reason,
            },
            CommandBody::DisbursePayout(b) => Command::DisbursePayout {
                payout_seq: b.payout_seq,
                bank_reference: b.bank_reference,
            },
            CommandBody::RequestMove(b) => b.into(),
            CommandBody::ApproveMove(b) => Command::ApproveMove {
                move_seq: b.move_seq,
            },
            CommandBody::RejectMove(b) => Command::RejectMove {
                move_seq: b.move_seq,
                reason: b.reason,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// One event a write produced.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventRef {
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub hash: String,
}

/// The match a donation triggered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MatchRef {
    pub pool: String,
    pub amount_minor: u64,
}

/// What a write produced. `seq` and `hash` are those of its last event: pass `seq` as
/// `min_seq` to a read to see the write reflected.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WriteResponse {
    pub seq: u64,
    pub hash: String,
    pub first_seq: u64,
    /// True when an earlier request with the same `Idempotency-Key` produced these events.
    pub replayed: bool,
    pub events: Vec<EventRef>,
    /// Donations: the gift's seq (its id), receipt code and match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub donation_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<MatchRef>,
    /// Pledges, payouts and moves: the new request's seq (its id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pledge_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_seq: Option<u64>,
}

/// One donation of a batch, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItem {
    pub index: usize,
    pub donation_seq: u64,
    pub receipt_code: String,
    /// The match the donation triggered (0 for none).
    pub matched_minor: u64,
}

/// What a batch produced.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    pub seq: u64,
    pub hash: String,
    pub first_seq: u64,
    pub replayed: bool,
    pub count: usize,
    pub donations: Vec<BatchItem>,
}

/// The errors a write can answer with.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteErrors {
    /// Malformed JSON, a wrong type, an unknown or missing field, an out-of-range value, a bad
    /// `Idempotency-Key` (codes `malformed_json`, `invalid_field`, `unknown_field`,
    /// `missing_field`, `invalid_header`, `invalid_path`).
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No, unknown or revoked bearer token (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token's role may not do this (`forbidden`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Conflicts with the ledger's state: `idempotency_conflict` (same key, different body),
    /// `duplicate_channel_txn`, `project_exists`, `pool_exists`, `already_refunded`,
    /// `request_state`.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Body over its byte limit (`payload_too_large`) or a batch over 1000 items
    /// (`too_many_items`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `application/json` (`unsupported_media_type`).
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// A rule of the ledger refused it: `insufficient_funds`, `four_eyes`, `unknown_project`,
    /// `project_closed`, `currency_mismatch`, `over_goal`, `over_pledge`, `invalid`, ….
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// The ledger is shutting down (`shutting_down`); retry with the same key.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

fn event_refs(events: &[SealedEvent]) -> Vec<EventRef> {
    events
        .iter()
        .map(|e| EventRef {
            seq: e.seq(),
            event_type: e.body().type_name().to_owned(),
            hash: e.hash().to_hex(),
        })
        .collect()
}

fn write_response(outcome: &Outcome) -> Result<WriteResponse, ApiError> {
    let (Some(first), Some(last)) = (outcome.events.first(), outcome.events.last()) else {
        return Err(ApiError::internal("a write produced no events"));
    };
    let mut r = WriteResponse {
        seq: last.seq(),
        hash: last.hash().to_hex(),
        first_seq: first.seq(),
        replayed: outcome.replayed,
        events: event_refs(&outcome.events),
        donation_seq: None,
        receipt_code: None,
        matched: None,
        pledge_seq: None,
        payout_seq: None,
        move_seq: None,
    };
    for e in &outcome.events {
        match e.body() {
            EventBody::DonationReceived(d) => {
                r.donation_seq = Some(e.seq());
                r.receipt_code = Some(d.receipt_code.clone());
            }
            EventBody::MatchAllocated(m) => {
                r.matched = Some(MatchRef {
                    pool: m.pool.to_string(),
                    amount_minor: m.amount_minor.minor(),
                })
            }
            EventBody::PledgeMade(_) => r.pledge_seq = Some(e.seq()),
            EventBody::PayoutRequested(_) => r.payout_seq = Some(e.seq()),
            EventBody::MoveRequested(_) => r.move_seq = Some(e.seq()),
            _ => {}
        }
    }
    Ok(r)
}

/// 201 for a new write, 200 with `Idempotent-Replayed: true` for a replay.
pub(crate) fn written<T: Serialize>(replayed: bool, body: T) -> Response {
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| {
        ApiError::bad_request("invalid_header", "idempotency-key: must be printable ASCII")
    })?;
    Idempotency::check_key(key)
        .map_err(|e| ApiError::bad_request("invalid_header", e.to_string()))?;
    Ok(Some(key.to_owned()))
}

/// The one write path: role check, `Idempotency-Key`, the writer, the response.
pub(crate) async fn write(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    command: Command,
) -> Result<Response, ApiError> {
    principal.require_command(&command)?;
    let submission = Submission {
        idempotency_key: idempotency_key(headers)?,
        ..principal.submission(vec![command])
    };
    let outcome = state.node.writer.submit(submission).await?;
    Ok(written(outcome.replayed, write_response(&outcome)?))
}

// ---------------------------------------------------------------------------------------------
// Write endpoints

/// Any command, as `{"command": "<name>", ...fields}`; the role is the command's.
#[utoipa::path(post, path = "/api/v1/staff/commands", tag = "staff",
    request_body = CommandBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–128 printable ASCII characters; a retry with the same key and body replays the result")),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn command(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    JsonBytes(bytes): JsonBytes<JSON_BODY_BYTES_MAX>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, decode_command(&bytes)?.into()).await
}

/// Open a project (admin).
#[utoipa::path(post, path = "/api/v1/staff/projects", tag = "staff", request_body = OpenProjectBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn open_project(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiJson(b): ApiJson<OpenProjectBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, b.into()).await
}

fn path_id(field: &str, value: &str) -> Result<Id, ApiError> {
    Id::new(value).map_err(|e| ApiError::bad_request("invalid_path", format!("{field}: {e}")))
}

/// Close a project (admin).
#[utoipa::path(post, path = "/api/v1/staff/projects/{project}/close", tag = "staff", request_body = ReasonBody,
    params(("project" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn close_project(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(project): ApiPath<String>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let project = path_id("project", &project)?;
    let c = Command::CloseProject {
        project,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// Record one donation (recorder). Answers the receipt code and the match it triggered.
#[utoipa::path(post, path = "/api/v1/staff/donations", tag = "staff", request_body = DonationBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn record_donation(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiJson(b): ApiJson<DonationBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, Command::RecordDonation(b.into())).await
}

/// Record up to 1000 donations all together or not at all (recorder). On rejection nothing
/// is recorded and `error.items` lists every refused item (index, code, message).
#[utoipa::path(post, path = "/api/v1/staff/donations/batch", tag = "staff", request_body = BatchBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = BatchResponse), (status = 200, description = "Replayed", body = BatchResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn record_batch(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    JsonBytes(bytes): JsonBytes<BATCH_BODY_BYTES_MAX>,
) -> Result<Response, ApiError> {
    p.require(Role::Recorder, "record_donation")?;
    let key = idempotency_key(&h)?;
    let inputs = decode_batch(&bytes)?;
    let commands: Vec<Command> = inputs
        .into_iter()
        .map(|d| Command::RecordDonation(d.into()))
        .collect();
    let submission = Submission {
        idempotency_key: key,
        ..p.submission(commands)
    };
    let outcome = match s.node.writer.submit(submission.clone()).await {
        Ok(o) => o,
        Err(WriteError::Rejected { index, error }) => {
            // Dry-run the other items against read models that have caught up with the log.
            let head = s.node.log.head().await.map_err(ApiError::internal)?;
            let state = s
                .node
                .state_at(head.len, READ_WAIT)
                .await
                .unwrap_or_else(|| s.node.state());
            return Err(batch_rejection(
                &state,
                &s.node.ledger,
                &submission,
                index,
                &error,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(written(outcome.replayed, batch_response(&outcome)?))
}

/// Decodes a batch body in one pass; when that fails, again item by item, so every
/// malformed item is reported, not just the first.
fn decode_batch(bytes: &[u8]) -> Result<Vec<DonationBody>, ApiError> {
    let first_error = match decode_json::<BatchBody>(bytes) {
        Ok(b) => return check_batch_len(b.donations),
        Err(e) => e,
    };
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(first_error);
    };
    match diagnose_batch(raw) {
        Ok(_) => Err(first_error),
        Err(e) => Err(e),
    }
}

/// A batch's items, when there are 1 to [`BATCH_DONATIONS_MAX`] of them.
fn check_batch_len<T>(items: Vec<T>) -> Result<Vec<T>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "donations: no items; give 1 or more",
        ));
    }
    if items.len() > BATCH_DONATIONS_MAX {
        return Err(ApiError::too_large(
            "too_many_items",
            format!(
                "donations: {} items; the limit is {BATCH_DONATIONS_MAX}",
                items.len()
            ),
        ));
    }
    Ok(items)
}

fn diagnose_batch(raw: serde_json::Value) -> Result<Vec<DonationBody>, ApiError> {
    let serde_json::Value::Object(mut map) = raw else {
        return Err(ApiError::bad_request(
            "invalid_field",
            "body: expected an object with a `donations` array",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| k.as_str() != "donations") {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!("{unknown}: unknown field, expected `donations`"),
        ));
    }
    let Some(serde_json::Value::Array(items)) = map.remove("donations") else {
        return Err(ApiError::bad_request(
            "missing_field",
            "donations: an array of 1 to 1000 donations is required",
        ));
    };
    let items = check_batch_len(items)?;
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        // Re-encoding one item is cheap next to the write, and gives field paths per item.
        let bytes = serde_json::to_vec(&item).map_err(ApiError::internal)?;
        match decode_json::<DonationBody>(&bytes) {
            Ok(d) => out.push(d),
            Err(e) => errors.push(ItemError {
                index,
                code: e.code.to_owned(),
                message: format!("donations[{index}].{}", e.message),
            }),
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    let mut e = ApiError::bad_request(
        "batch_rejected",
        format!(
            "{} of {} donations are malformed; nothing was recorded",
            errors.len(),
            out.len() + errors.len()
        ),
    );
    e.items = errors;
    Err(e)
}

/// The answer to a refused batch: the writer's reason for the item it stopped at, and every
/// other item that would be refused on its own against the current state (a dry run of the
/// pure `decide`, plus duplicates inside the batch).
fn batch_rejection(
    state: &LedgerState,
    ledger: &Id,
    submission: &Submission,
    index: usize,
    error: &crate::command::CommandError,
) -> ApiError {
    let mut items = vec![ItemError {
        index,
        code: error.code().to_owned(),
        message: format!("donations[{index}]: {error}"),
    }];
    let mut seen = std::collections::HashSet::new();
    for (i, command) in submission.commands.iter().enumerate() {
        if let Command::RecordDonation(d) = command {
            if !seen.insert((d.channel, d.channel_txn_id.as_str())) && i != index {
                items.push(ItemError {
                    index: i,
                    code: "duplicate_channel_txn".into(),
                    message: format!(
                        "donations[{i}]: channel_txn_id: {} transaction {} appears twice in the batch",
                        d.channel.as_str(),
                        d.channel_txn_id
                    ),
                });
                continue;
            }
        }
        if i == index {
            continue;
        }
        let ctx = Context {
            ledger,
            actor: &submission.actor,
            token_issuer: submission.token_issuer.as_ref(),
            ts_ms: state.last_ts_ms,
            next_seq: state.position,
        };
        if let Err(e) = decide(state, &ctx, command) {
            items.push(ItemError {
                index: i,
                code: e.code().to_owned(),
                message: format!("donations[{i}]: {e}"),
            });
        }
    }
    items.sort_by_key(|i| i.index);
    items.dedup_by_key(|i| i.index);
    let status = if error.is_conflict() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let code = if error.code() == "idempotency_conflict" {
        "idempotency_conflict"
    } else {
        "batch_rejected"
    };
    let mut e = ApiError::new(
        status,
        code,
        format!(
            "{} of {} donations were refused; nothing was recorded",
            items.len(),
            submission.commands.len()
        ),
    );
    if code == "idempotency_conflict" {
        e.message = error.to_string();
    } else {
        e.items = items;
    }
    e
}

fn batch_response(outcome: &Outcome) -> Result<BatchResponse, ApiError> {
    let (Some(first), Some(last)) = (outcome.events.first(), outcome.events.last()) else {
        return Err(ApiError::internal("a batch produced no events"));
    };
    let mut donations: Vec<BatchItem> = Vec::new();
    for e in &outcome.events {
        match e.body() {
            EventBody::DonationReceived(d) => donations.push(BatchItem {
                index: donations.len(),
                donation_seq: e.seq(),
                receipt_code: d.receipt_code.to_string(),
                matched_minor: 0,
            }),
            EventBody::MatchAllocated(m) => {
                if let Some(item) = donations.last_mut() {
                    item.matched_minor = m.amount_minor.minor();
                }
            }
            _ => {}
        }
    }
    Ok(BatchResponse {
        seq: last.seq(),
        hash: last.hash().to_hex(),
        first_seq: first.seq(),
        replayed: outcome.replayed,
        count: donations.len(),
        donations,
    })
}

/// Refund a donation in full (recorder); its match is released in the same write. The part
/// of the fee the channel gave back, if any, comes back to the project.
#[utoipa::path(post, path = "/api/v1/staff/donations/{seq}/refund", tag = "staff", request_body = RefundBody,
    params(("seq" = u64, Path, description = "The donation's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn refund_donation(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<RefundBody>,
) -> Result<Response, ApiError> {
    let c = Command::RefundDonation {
        donation_seq: seq,
        reason: b.reason,
        fee_returned_minor: b.fee_returned_minor,
    };
    write(&s, &p, &h, c).await
}

/// Record a fee the channel gave back on a refund already recorded (recorder), which the
/// refund did not carry: the project gets it back, the journal books it as a fee returned
/// on the refund, and the refund's statement line is matched against the total.
#[utoipa::path(post, path = "/api/v1/staff/refunds/{refund_seq}/fee-returned", tag = "staff", request_body = RefundFeeReturnedBody,
    params(("refund_seq" = u64, Path, description = "The seq of the refund (its donation_refunded event)"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn record_refund_fee_returned(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(refund_seq): ApiPath<u64>,
    ApiJson(b): ApiJson<RefundFeeReturnedBody>,
) -> Result<Response, ApiError> {
    let c = Command::RecordRefundFeeReturned {
        refund_seq,
        fee_returned_minor: b.fee_returned_minor,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// Freeze a donation's match for review (approver): it stays allocated from its pool and
/// counted as the project's, but the project cannot spend it (it is taken out of the
/// available money) until the review unfreezes it or releases it.
#[utoipa::path(post, path = "/api/v1/staff/donations/{seq}/match/freeze", tag = "staff", request_body = ReasonBody,
    params(("seq" = u64, Path, description = "The seq of the donation that triggered the match"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn freeze_match(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::FreezeMatch {
        donation_seq: seq,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// End a match's review by clearing it (approver): the project may spend it again.
#[utoipa::path(post, path = "/api/v1/staff/donations/{seq}/match/unfreeze", tag = "staff", request_body = ReasonBody,
    params(("seq" = u64, Path, description = "The seq of the donation that triggered the match"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn unfreeze_match(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::UnfreezeMatch {
        donation_seq: seq,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// End a match's review by sending it back to its pool (approver, not the one who froze
/// it nor with a token they issued): the gift stays, the pool and the donor's daily cap get
/// the match back, and the journal books it as a refund's release of a match.
#[utoipa::path(post, path = "/api/v1/staff/donations/{seq}/match/release", tag = "staff", request_body = ReasonBody,
    params(("seq" = u64, Path, description = "The seq of the donation that triggered the match"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn release_match(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::ReleaseMatch {
        donation_seq: seq,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// Record a pledge (recorder).
#[utoipa::path(post, path = "/api/v1/staff/pledges", tag = "staff", request_body = PledgeBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn make_pledge(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiJson(b): ApiJson<PledgeBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, b.into()).await
}

/// Cancel a pledge (recorder).
#[utoipa::path(post, path = "/api/v1/staff/pledges/{seq}/cancel", tag = "staff", request_body = ReasonBody,
    params(("seq" = u64, Path, description = "The pledge's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn cancel_pledge(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::CancelPledge {
        pledge_seq: seq,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// Commit a matching pool (admin).
#[utoipa::path(post, path = "/api/v1/staff/matching-pools", tag = "staff", request_body = PoolBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn commit_pool(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiJson(b): ApiJson<PoolBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, Command::CommitMatchingPool(b.into())).await
}

/// Close a matching pool (admin).
#[utoipa::path(post, path = "/api/v1/staff/matching-pools/{pool}/close", tag = "staff", request_body = ReasonBody,
    params(("pool" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn close_pool(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(pool): ApiPath<String>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::CloseMatchingPool {
        pool: path_id("pool", &pool)?,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// Request a payout (admin). An approver with a different actor decides it.
#[utoipa::path(post, path = "/api/v1/staff/payouts", tag = "staff", request_body = PayoutBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn request_payout(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiJson(b): ApiJson<PayoutBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, b.into()).await
}

/// Approve a payout (approver; not the requester's actor: `four_eyes`).
#[utoipa::path(post, path = "/api/v1/staff/payouts/{seq}/approve", tag = "staff", request_body(content = Option<EmptyBody>, description = "Empty, or `{}`"),
    params(("seq" = u64, Path, description = "The payout's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn approve_payout(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    _body: super::error::OptionalJson<EmptyBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, Command::ApprovePayout { payout_seq: seq }).await
}

/// Reject a payout (approver; not the requester's actor).
#[utoipa::path(post, path = "/api/v1/staff/payouts/{seq}/reject", tag = "staff", request_body = ReasonBody,
    params(("seq" = u64, Path, description = "The payout's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn reject_payout(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::RejectPayout {
        payout_seq: seq,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

/// Record the bank transfer of an approved payout (admin).
#[utoipa::path(post, path = "/api/v1/staff/payouts/{seq}/disburse", tag = "staff", request_body = DisburseBody,
    params(("seq" = u64, Path, description = "The payout's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn disburse_payout(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<DisburseBody>,
) -> Result<Response, ApiError> {
    let c = Command::DisbursePayout {
        payout_seq: seq,
        bank_reference: b.bank_reference,
    };
    write(&s, &p, &h, c).await
}

/// Request a move of restricted money between projects (admin).
#[utoipa::path(post, path = "/api/v1/staff/moves", tag = "staff", request_body = MoveBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn request_move(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiJson(b): ApiJson<MoveBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, b.into()).await
}

/// Approve a move (approver; not the requester's actor).
#[utoipa::path(post, path = "/api/v1/staff/moves/{seq}/approve", tag = "staff", request_body(content = Option<EmptyBody>, description = "Empty, or `{}`"),
    params(("seq" = u64, Path, description = "The move's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn approve_move(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    _body: super::error::OptionalJson<EmptyBody>,
) -> Result<Response, ApiError> {
    write(&s, &p, &h, Command::ApproveMove { move_seq: seq }).await
}

/// Reject a move (approver; not the requester's actor).
#[utoipa::path(post, path = "/api/v1/staff/moves/{seq}/reject", tag = "staff", request_body = ReasonBody,
    params(("seq" = u64, Path, description = "The move's seq"), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse), WriteErrors),
    security(("bearer" = [])))]
pub async fn reject_move(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let c = Command::RejectMove {
        move_seq: seq,
        reason: b.reason,
    };
    write(&s, &p, &h, c).await
}

// ---------------------------------------------------------------------------------------------
// Tokens (admin)

/// A new token for a staff member.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    #[schema(value_type = String, example = "director-wang")]
    pub actor: Id,
    #[schema(value_type = super::auth::RoleSchema)]
    pub role: Role,
}

/// The new token, shown this once; only its hash is kept.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// The errors of read and token endpoints.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    /// A bad query or path parameter (`invalid_query`, `invalid_path`).
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No, unknown or revoked bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token's role may not do this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such item (`not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The read models did not reach `min_seq` within 5 s (`not_caught_up`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Create a token (admin). The token is in the answer once and never again.
#[utoipa::path(post, path = "/api/v1/staff/tokens", tag = "staff", request_body = CreateTokenBody,
    responses((status = 201, body = CreatedToken), ReadErrors), security(("bearer" = [])))]
pub async fn create_token(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(b): ApiJson<CreateTokenBody>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin, "creating a token")?;
    // The four-eyes rule counts a token's issuer as its holder, one level up. A token issued
    // through the API issuing tokens in turn would hide its own issuer (who saw both): an
    // admin could issue a made-up admin, and through it an approver for their own requests.
    if let Some(issuer) = &p.issued_by {
        return Err(ApiError::forbidden(format!(
            "creating a token needs an admin token made on the server (`ledger token create`); \
             this one ({}) was issued through the API by {issuer}, and tokens it issued would \
             hide that {issuer} could act with them",
            p.actor
        )));
    }
    let (token, info) = s
        .tokens
        .issue(&s.node.writer, p.actor.clone(), b.actor, b.role)
        .await
        .map_err(token_error)?;
    tracing::info!(by = %p.actor, id = %info.id, actor = %info.actor, role = info.role.as_str(), "token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })).into_response())
}

fn token_error(e: super::tokens::TokenError) -> ApiError {
    match e {
        super::tokens::TokenError::Store(e) => ApiError::internal(e),
        super::tokens::TokenError::Write(e) => e.into(),
    }
}

/// List tokens (admin): ids, actors, roles, never the tokens.
#[utoipa::path(get, path = "/api/v1/staff/tokens", tag = "staff",
    responses((status = 200, body = Vec<TokenInfo>), ReadErrors), security(("bearer" = [])))]
pub async fn list_tokens(
    State(s): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    p.require(Role::Admin, "listing tokens")?;
    Ok(Json(s.tokens.list().map_err(ApiError::internal)?))
}

/// Revoke a token by id (admin). Revoking twice is harmless.
#[utoipa::path(delete, path = "/api/v1/staff/tokens/{id}", tag = "staff",
    params(("id" = String, Path, description = "The token's id (16 hex digits)")),
    responses((status = 200, body = TokenInfo), ReadErrors), security(("bearer" = [])))]
pub async fn revoke_token(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    p.require(Role::Admin, "revoking a token")?;
    let info = s
        .tokens
        .withdraw(&s.node.writer, &s.node.state(), p.actor.clone(), &id)
        .await
        .map_err(token_error)?
        .ok_or_else(|| ApiError::not_found(format!("id: no token {id}")))?;
    tracing::info!(by = %p.actor, id = %info.id, "token revoked");
    Ok(Json(info))
}

// ---------------------------------------------------------------------------------------------
// Staff views

/// Who this token is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WhoAmI {
    pub actor: String,
    #[schema(value_type = super::auth::RoleSchema)]
    pub role: Role,
    pub token_id: String,
}

/// The caller's actor and role.
#[utoipa::path(get, path = "/api/v1/staff/whoami", tag = "staff",
    responses((status = 200, body = WhoAmI), ReadErrors), security(("bearer" = [])))]
pub async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI {
        actor: p.actor.to_string(),
        role: p.role,
        token_id: p.token_id,
    })
}

/// `min_seq`: wait (at most 5 s) until the read models include this seq.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MinSeq {
    /// Wait (at most 5 s) until the read models include the event at this seq.
    pub min_seq: Option<u64>,
}

/// A donation as staff see it, with the donor reference.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaffDonation {
    pub seq: u64,
    pub ts_ms: u64,
    pub project: String,
    pub amount_minor: u64,
    pub fee_minor: u64,
    pub currency: String,
    pub channel: String,
    pub donor_ref: String,
    pub anonymous: bool,
    pub public_name: Option<String>,
    pub pledge_seq: Option<u64>,
    pub receipt_code: String,
    pub matched_pool: Option<String>,
    pub matched_minor: u64,
    pub refunded_seq: Option<u64>,
    /// The part of the fee the channel gave back on the refund: with the refund and in
    /// corrections since (0 when none, or not refunded).
    pub fee_returned_minor: u64,
    /// The `match_frozen` event holding the match for review, while it is frozen.
    pub match_frozen_seq: Option<u64>,
    /// The `match_revoked` event that released the match after review, if one did.
    pub match_released_after_review_seq: Option<u64>,
}

/// One donation with its donor reference (any staff role).
#[utoipa::path(get, path = "/api/v1/staff/donations/{seq}", tag = "staff",
    params(("seq" = u64, Path), MinSeq),
    responses((status = 200, body = StaffDonation), ReadErrors), security(("bearer" = [])))]
pub async fn get_donation(
    State(s): State<AppState>,
    _p: Principal,
    ApiPath(seq): ApiPath<u64>,
    ApiQuery(q): ApiQuery<MinSeq>,
) -> Result<Json<StaffDonation>, ApiError> {
    let state = s.read_state(q.min_seq).await?;
    let d = state
        .donations
        .get(&seq)
        .ok_or_else(|| ApiError::not_found(format!("seq: no donation at seq {seq}")))?;
    Ok(Json(StaffDonation {
        seq: d.seq,
        ts_ms: d.ts_ms,
        project: d.project.to_string(),
        amount_minor: d.amount_minor,
        fee_minor: d.fee_minor,
        currency: d.currency.to_string(),
        channel: d.channel.as_str().to_owned(),
        donor_ref: d.donor_ref.to_string(),
        anonymous: d.anonymous,
        public_name: d.public_name.as_ref().map(|n| n.to_string()),
        pledge_seq: d.pledge_seq,
        receipt_code: d.receipt_code.to_string(),
        matched_pool: d.matched.as_ref().map(|(p, _)| p.to_string()),
        matched_minor: d.matched.as_ref().map(|(_, m)| *m).unwrap_or(0),
        refunded_seq: d.refunded_seq,
        fee_returned_minor: d.fee_returned_minor,
        match_frozen_seq: state.match_frozen(seq).map(|h| h.frozen_seq),
        match_released_after_review_seq: state
            .match_released_after_review(seq)
            .and_then(|h| h.released_seq),
    }))
}

/// Which requests to list.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Requested,
    Approved,
    Rejected,
    Disbursed,
}

/// Paging and filters for payouts and moves.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// Only requests in this state (`requested` lists what waits for an approver).
    pub status: Option<StatusFilter>,
    /// Only requests with a seq above this one (paging).
    pub after: Option<u64>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<usize>,
    /// Wait (at most 5 s) until the read models include this seq.
    pub min_seq: Option<u64>,
}

/// A payout or move as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaffRequest {
    pub seq: u64,
    pub ts_ms: u64,
    pub status: String,
    pub requested_by: String,
    pub project: String,
    pub to_project: Option<String>,
    pub amount_minor: u64,
    pub currency: String,
    pub payee: Option<String>,
    pub purpose: Option<String>,
    pub document_sha256: Option<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_seq: Option<u64>,
    pub disbursed_seq: Option<u64>,
}

/// A page of requests; `next_after` continues the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestPage {
    pub items: Vec<StaffRequest>,
    pub next_after: Option<u64>,
}

pub(crate) fn page_limit(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit: must be 1 to {max} (got 0)"),
        )),
        Some(n) if n > max => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit: must be 1 to {max} (got {n})"),
        )),
        Some(n) => Ok(n),
    }
}

fn request_page<'a>(
    requests: impl Iterator<Item = (&'a u64, &'a Request)>,
    q: &RequestQuery,
) -> Result<RequestPage, ApiError> {
    let limit = page_limit(q.limit, PAGE_ITEMS_DEFAULT, PAGE_ITEMS_MAX)?;
    let mut items: Vec<StaffRequest> = Vec::new();
    let mut next_after = None;
    for (_, r) in requests {
        if q.status
            .is_some_and(|f| r.status.as_str() != status_filter_name(f))
        {
            continue;
        }
        if items.len() == limit {
            next_after = items.last().map(|i| i.seq);
            break;
        }
        items.push(staff_request(r));
    }
    Ok(RequestPage { items, next_after })
}

fn first_after(after: Option<u64>) -> u64 {
    after.map(|a| a.saturating_add(1)).unwrap_or(0)
}

fn status_filter_name(f: StatusFilter) -> &'static str {
    match f {
        StatusFilter::Requested => "requested",
        StatusFilter::Approved => "approved",
        StatusFilter::Rejected => "rejected",
        StatusFilter::Disbursed => "disbursed",
    }
}

fn staff_request(r: &Request) -> StaffRequest {
    StaffRequest {
        seq: r.seq,
        ts_ms: r.ts_ms,
        status: r.status.as_str().to_owned(),
        requested_by: r.requested_by.to_string(),
        project: r.project.to_string(),
        to_project: r.to_project.as_ref().map(|p| p.to_string()),
        amount_minor: r.amount_minor,
        currency: r.currency.to_string(),
        payee: r.payee.as_ref().map(|t| t.to_string()),
        purpose: r.purpose.as_ref().map(|t| t.to_string()),
        document_sha256: r.document_sha256.map(|h| h.to_hex()),
        reason: r.reason.as_ref().map(|t| t.to_string()),
        decided_by: r.decided_by.as_ref().map(|a| a.to_string()),
        decided_seq: r.decided_seq,
        disbursed_seq: r.disbursed_seq,
    }
}

/// Payout requests (any staff role); `?status=requested` is an approver's inbox.
#[utoipa::path(get, path = "/api/v1/staff/payouts", tag = "staff", params(RequestQuery),
    responses((status = 200, body = RequestPage), ReadErrors), security(("bearer" = [])))]
pub async fn list_payouts(
    State(s): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let state = s.read_state(q.min_seq).await?;
    Ok(Json(request_page(
        state.payouts.range(first_after(q.after)..),
        &q,
    )?))
}

/// Move requests (any staff role).
#[utoipa::path(get, path = "/api/v1/staff/moves", tag = "staff", params(RequestQuery),
    responses((status = 200, body = RequestPage), ReadErrors), security(("bearer" = [])))]
pub async fn list_moves(
    State(s): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let state = s.read_state(q.min_seq).await?;
    Ok(Json(request_page(
        state.moves.range(first_after(q.after)..),
        &q,
    )?))
}

/// The full log for auditors: every field of every event (donor references included), in
/// the exported form whose hashes anyone can recompute.
#[utoipa::path(get, path = "/api/v1/staff/events", tag = "staff", params(super::public::EventsQuery),
    responses((status = 200, body = super::public::EventPage), ReadErrors), security(("bearer" = [])))]
pub async fn staff_events(
    State(s): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<super::public::EventsQuery>,
) -> Result<Json<super::public::EventPage>, ApiError> {
    super::public::event_page(&s, &q, |e| {
        serde_json::from_slice(&e.export_line()).map_err(ApiError::internal)
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_body_converts() {
        let body = decode_command(br#"{"command":"approve_payout","payout_seq":7}"#).unwrap();
        assert_eq!(
            Command::from(body),
            Command::ApprovePayout { payout_seq: 7 }
        );
        let e =
            decode_command(br#"{"command":"approve_payout","payout_seq":7,"x":1}"#).unwrap_err();
        assert_eq!(e.code, "unknown_field", "{e:?}");
    }

    /// Every name in `NAMES` decodes as its own command: a name with no fields is refused
    /// for a missing field of that command (or accepted, for none), never as unknown.
    #[test]
    fn every_command_name_is_decoded() {
        for name in CommandBody::NAMES {
            let body = format!(r#"{{"command":"{name}"}}"#);
            if let Err(e) = decode_command(body.as_bytes()) {
                assert_eq!(e.code, "missing_field", "{name}: {e:?}");
            }
        }
        assert_eq!(CommandBody::NAMES.len(), 19);
    }

    /// The OpenAPI document spells the commands as `decode_command` reads them.
    #[test]
    fn the_document_names_the_commands_decoded() {
        let doc = serde_json::to_value(crate::http::openapi::document()).unwrap();
        let variants = doc["components"]["schemas"]["CommandBody"]["oneOf"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = variants
            .iter()
            .map(|v| {
                v["allOf"][1]["properties"]["command"]["enum"][0]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(names, CommandBody::NAMES);
    }

    /// A bad field inside a command is named by its field, as the resource routes name it.
    #[test]
    fn a_bad_field_inside_a_command_is_named() {
        let pool = br#"{"command":"commit_matching_pool","pool":"p","sponsor":"S",
            "projects":["cp"],"currency":"CNY","ratio_numerator":1,"ratio_denominator":1,
            "cap_per_donation_minor":100,"cap_per_donor_per_day_minor":100,
            "total_cap_minor":0,"valid_from_ms":0,"valid_until_ms":1}"#;
        let e = decode_command(pool).unwrap_err();
        assert_eq!(e.code, "invalid_field", "{e:?}");
        assert!(e.message.starts_with("total_cap_minor: "), "{e:?}");
        let e = decode_command(br#"{"command":"refund_donation","donation_seq":"x","reason":"r"}"#)
            .unwrap_err();
        assert!(e.message.starts_with("donation_seq: "), "{e:?}");
        let e = decode_command(br#"{"command":"reject_move","move_seq":1}"#).unwrap_err();
        assert_eq!(e.code, "missing_field", "{e:?}");
        assert!(e.message.contains("reason"), "{e:?}");
    }

    #[test]
    fn the_command_member_is_checked_first() {
        let e = decode_command(br#"{"payout_seq":7}"#).unwrap_err();
        assert_eq!(e.code, "missing_field", "{e:?}");
        assert!(e.message.starts_with("command: "), "{e:?}");
        assert!(e.message.contains("approve_payout"), "{e:?}");
        let e = decode_command(br#"{"command":7}"#).unwrap_err();
        assert_eq!(e.code, "invalid_field", "{e:?}");
        let long = format!(r#"{{"command":"{}"}}"#, "z".repeat(1000));
        let e = decode_command(long.as_bytes()).unwrap_err();
        assert_eq!(e.code, "invalid_field", "{e:?}");
        assert!(e.message.len() < 600, "the name is cut short: {e:?}");
        let e = decode_command(b"[1]").unwrap_err();
        assert_eq!(e.code, "invalid_field", "{e:?}");
        let e = decode_command(b"{").unwrap_err();
        assert_eq!(e.code, "malformed_json", "{e:?}");
    }
}
