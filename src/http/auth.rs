//! Roles and the bearer-token extractor.
//!
//! | role | may |
//! |---|---|
//! | `recorder` | record donations (one or a batch), refund donations and record a fee a channel gave back on a refund afterwards, make and cancel pledges |
//! | `approver` | approve or reject payouts and moves |
//! | `admin` | open and close projects, commit and close matching pools, request payouts and moves, disburse approved payouts, manage tokens |
//! | `auditor` | read every staff view; write nothing |
//!
//! Every role reads the staff views (which show donor references). The four-eyes rule is the
//! writer's: a payout or move is decided by a different *actor* than the one who requested
//! it, whatever tokens they hold.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use events::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::command::Command;

/// A staff token's role: the events crate's, since the log records which tokens were issued
/// with which role (`staff_token_issued`).
pub use events::StaffRole as Role;

/// A role, as the OpenAPI document shows it ([`Role`] lives in the events crate).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleSchema {
    Recorder,
    Approver,
    Admin,
    Auditor,
}

/// The one role that may submit a command.
pub fn role_for(command: &Command) -> Role {
    match command {
        Command::RecordDonation(_)
        | Command::RefundDonation { .. }
        | Command::RecordRefundFeeReturned { .. }
        | Command::MakePledge { .. }
        | Command::CancelPledge { .. }
        | Command::ImportStatement(_)
        | Command::RecordStatementLine(_) => Role::Recorder,
        // Resolving a reconciliation exception books money (a settlement, a sponsor's
        // payment): a second person's decision, like an approval.
        Command::ResolveException(_)
        // Holding a match, clearing it and sending it back to its pool decide about a
        // sponsor's money (risk control): an approver's, as a payout's approval is. A
        // release after review also needs a second approver (four eyes, in decide()).
        | Command::FreezeMatch { .. }
        | Command::UnfreezeMatch { .. }
        | Command::ReleaseMatch { .. }
        | Command::ApprovePayout { .. }
        | Command::RejectPayout { .. }
        | Command::ApproveMove { .. }
        | Command::RejectMove { .. } => Role::Approver,
        Command::OpenProject { .. }
        | Command::CloseProject { .. }
        | Command::CommitMatchingPool(_)
        | Command::CloseMatchingPool { .. }
        | Command::RequestPayout(_)
        | Command::DisbursePayout { .. }
        | Command::RequestMove(_)
        | Command::IssueStaffToken(_)
        | Command::RevokeStaffToken(_) => Role::Admin,
    }
}

/// The staff member behind a request's bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Id,
    pub role: Role,
    pub token_id: String,
    /// The admin who issued the token, when it was issued through the API.
    pub issued_by: Option<Id>,
}

impl Principal {
    /// Refuses (403) unless the token has `role`.
    pub fn require(&self, role: Role, what: &str) -> Result<(), ApiError> {
        if self.role == role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} needs the {} role; this token ({}) has the {} role",
                role.as_str(),
                self.actor,
                self.role.as_str()
            )))
        }
    }

    /// Refuses (403) a command this token's role may not submit.
    pub fn require_command(&self, command: &Command) -> Result<(), ApiError> {
        self.require(role_for(command), command.name())
    }

    /// Commands submitted by this token's actor, its issuer recorded with them (the
    /// writer's four-eyes rule counts the issuer as the actor).
    pub fn submission(&self, commands: Vec<Command>) -> crate::writer::Submission {
        crate::writer::Submission {
            token_issuer: self.issued_by.clone(),
            ..crate::writer::Submission::many(self.actor.clone(), commands)
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "authorization: a bearer token is required (Authorization: Bearer ldg_…)",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("authorization: expected the Bearer scheme"))?;
        // One sled read, normally from sled's cache: cheaper than a hop to a blocking thread.
        let info = state
            .tokens
            .lookup(token)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::unauthorized("authorization: unknown or revoked token"))?;
        Ok(Principal {
            actor: info.actor,
            role: info.role,
            token_id: info.id,
            issued_by: info.issued_by,
        })
    }
}
