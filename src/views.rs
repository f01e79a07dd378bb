//! Plain read-model shapes for people and programs: the outer crate's own types, converted
//! by hand from the projections so the wire format can change without touching the domain.

use events::Id;
use projections::{LedgerState, Project};
use serde::Serialize;

/// A page of `state`'s projects in id order: at most `limit` of those after `after` that
/// `keep` holds for, and the id to continue after when more follow (the API's `next_after`,
/// the projects page's "next page" link).
pub fn project_page<'a>(
    state: &'a LedgerState,
    after: Option<&Id>,
    limit: usize,
    keep: impl Fn(&Project) -> bool,
) -> (Vec<&'a Project>, Option<&'a Id>) {
    let lower = match after {
        Some(a) => std::ops::Bound::Excluded(a.clone()),
        None => std::ops::Bound::Unbounded,
    };
    let mut listed = state
        .projects
        .range((lower, std::ops::Bound::Unbounded))
        .map(|(_, p)| p)
        .filter(|p| keep(p));
    let page: Vec<&Project> = listed.by_ref().take(limit).collect();
    let next = match (page.last(), listed.next()) {
        (Some(last), Some(_)) => Some(&last.id),
        _ => None,
    };
    (page, next)
}

/// A project's public figures, in minor units of its currency.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ProjectFigures {
    pub project: String,
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub name: String,
    pub currency: String,
    pub open: bool,
    pub goal_minor: Option<u64>,
    pub raised_gross_minor: u64,
    pub fees_minor: u64,
    pub raised_minor: u64,
    pub matched_minor: u64,
    pub refunded_minor: u64,
    /// Channel fees given back on refunds: the project's money again.
    pub fees_returned_minor: u64,
    pub paid_out_minor: u64,
    pub moved_in_minor: u64,
    pub moved_out_minor: u64,
    pub committed_minor: u64,
    pub requested_minor: u64,
    /// Matches held for review: the project's, not spendable until the review ends.
    pub frozen_minor: u64,
    pub balance_minor: u64,
    pub available_minor: u64,
    pub donor_count: u64,
    pub donation_count: u64,
}

pub fn project_figures(p: &Project) -> ProjectFigures {
    let b = &p.balances;
    ProjectFigures {
        project: p.id.to_string(),
        kind: p.kind.as_str(),
        name: p.name.to_string(),
        currency: p.currency.to_string(),
        open: p.open,
        goal_minor: p.goal_minor.map(|g| g.minor()),
        raised_gross_minor: b.raised_gross,
        fees_minor: b.fees,
        raised_minor: b.raised,
        matched_minor: b.matched,
        refunded_minor: b.refunded,
        fees_returned_minor: b.fees_returned,
        paid_out_minor: b.paid_out,
        moved_in_minor: b.moved_in,
        moved_out_minor: b.moved_out,
        committed_minor: b.committed,
        requested_minor: b.requested,
        frozen_minor: b.frozen,
        // The fold refuses events that would make these negative.
        balance_minor: b.balance().unwrap_or(0),
        available_minor: b.available().unwrap_or(0),
        donor_count: p.donors.len() as u64,
        donation_count: p.donation_count,
    }
}
