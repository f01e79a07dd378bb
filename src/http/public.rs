//! The public, read-only API: projects and their figures, the log with public fields only,
//! receipts, a live stream of public events, health and metrics. No authentication.
//!
//! Invariant 6: public responses never contain a donor's personal data. Every public shape
//! here is built field by field from an allowlist ([`public_data`] for events); the donor
//! reference and the channel's transaction id are never copied into one. The demo-data test
//! in `tests/http_public_privacy.rs` scans every public response for them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use events::{is_receipt_code, EventBody, Id, ProjectKind, SealedEvent};
use projections::{Donation, LedgerState, Request};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use super::limits::*;
use super::staff::{page_limit, MinSeq, ReadErrors};
use super::AppState;
use crate::store::subscribe;
use crate::views::{project_figures, ProjectFigures};

// ---------------------------------------------------------------------------------------------
// Public events

/// An event with public fields only. `seq`, `prev` and `hash` are the sealed event's; `data`
/// is the event's data with personal fields removed, so the hash of a donation cannot be
/// recomputed from this view (auditors use the staff log or an export for that).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicEvent {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    pub ts_ms: u64,
    pub ledger: String,
    /// The staff member who caused the event (staff act in public; donors do not).
    pub actor: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's public data: for `donation_received` the fields of [`PublicDonationData`];
    /// for every other type the event's data as sealed (they hold no donor data).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The public fields of a `donation_received` event: no `donor_ref`, no `channel_txn_id`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicDonationData {
    pub project: String,
    pub amount_minor: u64,
    pub currency: String,
    pub channel: String,
    pub fee_minor: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pledge_seq: Option<u64>,
    pub anonymous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_name: Option<String>,
    pub receipt_code: String,
}

/// The public data of an event body. Every event type is listed, so a new one must be
/// decided here before it compiles.
///
/// `state` says which projects are help requests or micro-wishes, whose payees are shown
/// only as "individual recipient" ([`crate::reports::public_payee`]).
pub fn public_data(body: &EventBody, state: &LedgerState) -> serde_json::Value {
    let value = match body {
        EventBody::DonationReceived(d) => serde_json::to_value(PublicDonationData {
            project: d.project.to_string(),
            amount_minor: d.amount_minor.minor(),
            currency: d.currency.to_string(),
            channel: d.channel.as_str().to_owned(),
            fee_minor: d.fee_minor,
            // The pledge names its sponsor publicly: an anonymous gift does not say which
            // pledge it pays, or it would name its giver.
            pledge_seq: d.pledge_seq.filter(|_| !d.anonymous),
            anonymous: d.anonymous,
            public_name: d.public_name.as_ref().map(|n| n.to_string()),
            receipt_code: d.receipt_code.clone(),
        }),
        EventBody::ProjectOpened(e) => serde_json::to_value(e),
        EventBody::ProjectClosed(e) => serde_json::to_value(e),
        EventBody::DonationRefunded(e) => serde_json::to_value(e),
        EventBody::RefundFeeReturned(e) => serde_json::to_value(e),
        EventBody::PledgeMade(e) => serde_json::to_value(e),
        EventBody::PledgeCancelled(e) => serde_json::to_value(e),
        EventBody::MatchingPoolCommitted(e) => serde_json::to_value(e),
        EventBody::MatchingPoolClosed(e) => serde_json::to_value(e),
        // A match's money is in its project's currency; the event does not repeat it, the
        // public view does, so a reader sees "¥0.33", not "0.33".
        EventBody::MatchAllocated(e) => {
            serde_json::to_value(e).map(|v| with_currency(v, state, &e.project))
        }
        EventBody::MatchReleased(e) => {
            serde_json::to_value(e).map(|v| with_currency(v, state, &e.project))
        }
        // A review names a gift by its seq (public) and says why, in staff's words (no
        // donor data: staff write reasons for the public log, as for refunds).
        EventBody::MatchFrozen(e) | EventBody::MatchUnfrozen(e) | EventBody::MatchRevoked(e) => {
            serde_json::to_value(e).map(|v| with_currency(v, state, &e.project))
        }
        EventBody::PayoutRequested(e) => serde_json::to_value(e).map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                let payee = crate::reports::public_payee(state, &e.project, e.payee.as_str());
                o.insert("payee".into(), payee.into());
            }
            v
        }),
        EventBody::PayoutApproved(e) => serde_json::to_value(e),
        EventBody::PayoutRejected(e) => serde_json::to_value(e),
        // The bank's reference of the transfer is kept private like a statement line's
        // (it is the reference a bank statement shows, and the reconciliation matches by).
        EventBody::PayoutDisbursed(e) => serde_json::to_value(e).map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("bank_reference");
            }
            v
        }),
        EventBody::MoveRequested(e) => serde_json::to_value(e),
        EventBody::MoveApproved(e) => serde_json::to_value(e),
        EventBody::MoveRejected(e) => serde_json::to_value(e),
        EventBody::StatementImported(e) => serde_json::to_value(e),
        // Who may act in which role is public, as every event's actor is; the token stays
        // secret (its id is a public name for it).
        EventBody::StaffTokenIssued(e) => serde_json::to_value(e),
        EventBody::StaffTokenRevoked(e) => serde_json::to_value(e),
        // A statement line's references are channel transaction ids, kept private like the
        // donation's own.
        EventBody::StatementLineRecorded(e) => serde_json::to_value(e).map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("reference");
                o.remove("original_reference");
            }
            v
        }),
        EventBody::ExceptionResolved(e) => serde_json::to_value(e),
    };
    // Plain structs of strings and integers always serialize.
    value.unwrap_or(serde_json::Value::Null)
}

/// `data` with the `currency` of `project` added, when the project is known.
fn with_currency(
    mut data: serde_json::Value,
    state: &LedgerState,
    project: &events::Id,
) -> serde_json::Value {
    if let (Some(o), Some(p)) = (data.as_object_mut(), state.projects.get(project)) {
        o.insert("currency".into(), p.currency.to_string().into());
    }
    data
}

pub fn public_event(e: &SealedEvent, state: &LedgerState) -> PublicEvent {
    let r = e.record();
    PublicEvent {
        seq: r.seq,
        prev: r.prev.to_hex(),
        hash: e.hash().to_hex(),
        ts_ms: r.ts_ms,
        ledger: r.ledger.to_string(),
        actor: r.actor.to_string(),
        event_type: r.body.type_name().to_owned(),
        data: public_data(&r.body, state),
    }
}

// ---------------------------------------------------------------------------------------------
// The log

/// Paging of the log.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The first seq to return (default 0).
    pub from: Option<u64>,
    /// At most this many events (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The log's head: `len` events, the last at `seq` with `hash` (none when empty).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeadView {
    pub len: u64,
    pub seq: Option<u64>,
    pub hash: Option<String>,
}

/// A page of the log. `next_from` continues it; it is absent at the head.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    pub next_from: Option<u64>,
    pub head: HeadView,
}

/// A page of the public log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicEventPage {
    pub events: Vec<PublicEvent>,
    pub next_from: Option<u64>,
    pub head: HeadView,
}

async fn head_view(s: &AppState) -> Result<HeadView, ApiError> {
    let head = s.node.log.head().await.map_err(ApiError::internal)?;
    Ok(HeadView {
        len: head.len,
        seq: head.len.checked_sub(1),
        hash: (head.len > 0).then(|| head.hash.to_hex()),
    })
}

async fn read_events(
    s: &AppState,
    q: &EventsQuery,
) -> Result<(Vec<SealedEvent>, Option<u64>, HeadView), ApiError> {
    let limit = page_limit(q.limit, PAGE_EVENTS_DEFAULT, PAGE_EVENTS_MAX)?;
    let from = q.from.unwrap_or(0);
    let head = head_view(s).await?;
    let events = if from < head.len {
        s.node
            .log
            .read(from, limit)
            .await
            .map_err(ApiError::internal)?
    } else {
        Vec::new()
    };
    let next = events.last().map(|e| e.seq() + 1).filter(|n| *n < head.len);
    Ok((events, next, head))
}

/// A page of the log, each event turned into JSON by `view`.
pub async fn event_page(
    s: &AppState,
    q: &EventsQuery,
    view: impl Fn(&SealedEvent) -> Result<serde_json::Value, ApiError>,
) -> Result<EventPage, ApiError> {
    let (events, next_from, head) = read_events(s, q).await?;
    let events = events.iter().map(view).collect::<Result<_, _>>()?;
    Ok(EventPage {
        events,
        next_from,
        head,
    })
}

/// The log, paged, public fields only.
#[utoipa::path(get, path = "/api/v1/public/events", tag = "public", params(EventsQuery),
    responses((status = 200, body = PublicEventPage), ReadErrors))]
pub async fn events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<PublicEventPage>, ApiError> {
    let (events, next_from, head) = read_events(&s, &q).await?;
    let state = s.node.state();
    Ok(Json(PublicEventPage {
        events: events.iter().map(|e| public_event(e, &state)).collect(),
        next_from,
        head,
    }))
}

/// The log's head.
#[utoipa::path(get, path = "/api/v1/public/head", tag = "public",
    responses((status = 200, body = HeadView)))]
pub async fn head(State(s): State<AppState>) -> Result<Json<HeadView>, ApiError> {
    Ok(Json(head_view(&s).await?))
}

/// Where a stream starts.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The first seq to send (default: the head, so only new events). A reconnecting
    /// client's `Last-Event-ID` header wins over this.
    pub from: Option<u64>,
}

/// New public events as Server-Sent Events: `id` is the seq, `event` the type, `data` a
/// [`PublicEvent`]. At most 256 streams at once (503 beyond); a comment every 15 s keeps
/// idle connections open.
#[utoipa::path(get, path = "/api/v1/public/stream", tag = "public", params(StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq")),
    responses((status = 200, content_type = "text/event-stream", body = PublicEvent,
        description = "A stream of events"), ReadErrors))]
pub async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_header", "last-event-id: must be a seq")
                })?,
        ),
    };
    let from = match (last_id, q.from) {
        (Some(id), _) => id.saturating_add(1),
        (None, Some(from)) => from,
        (None, None) => s.node.log.head().await.map_err(ApiError::internal)?.len,
    };
    let permit = s.sse_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "too_many_streams",
            format!("stream: {SSE_STREAMS_MAX} streams are open, the limit; retry later"),
        )
    })?;
    let rx = subscribe(s.node.log.clone(), from);
    let shutdown = s.shutdown.clone();
    let node = s.node.clone();
    let events = futures_util::stream::unfold(
        (rx, shutdown, permit, node),
        |(mut rx, mut shutdown, permit, node)| async move {
            if *shutdown.borrow() {
                return None;
            }
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            match item {
                Some(Ok(e)) => {
                    let view = public_event(&e, &node.state());
                    let event = Event::default()
                        .id(e.seq().to_string())
                        .event(view.event_type.clone())
                        .json_data(&view)
                        .unwrap_or_else(|_| Event::default().comment("unserializable"));
                    Some((Ok::<_, Infallible>(event), (rx, shutdown, permit, node)))
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "the event stream failed reading the log");
                    None
                }
                None => None,
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Projects

/// Paging of the project list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProjectsQuery {
    /// Only projects whose id sorts after this one (paging).
    pub after: Option<String>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<usize>,
    /// Wait (at most 5 s) until the read models include this seq.
    pub min_seq: Option<u64>,
}

/// A page of projects, ordered by id; `next_after` continues it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectPage {
    pub items: Vec<ProjectFigures>,
    pub next_after: Option<String>,
    /// Events folded into these figures.
    pub position: u64,
}

/// Projects and their figures, in minor units.
#[utoipa::path(get, path = "/api/v1/public/projects", tag = "public", params(ProjectsQuery),
    responses((status = 200, body = ProjectPage), ReadErrors))]
pub async fn projects(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ProjectsQuery>,
) -> Result<Json<ProjectPage>, ApiError> {
    let limit = page_limit(q.limit, PAGE_ITEMS_DEFAULT, PAGE_ITEMS_MAX)?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            Id::new(a).map_err(|e| ApiError::bad_request("invalid_query", format!("after: {e}")))
        })
        .transpose()?;
    let state = s.read_state(q.min_seq).await?;
    let (page, next) = crate::views::project_page(&state, after.as_ref(), limit, |_| true);
    Ok(Json(ProjectPage {
        items: page.into_iter().map(project_figures).collect(),
        next_after: next.map(|id| id.to_string()),
        position: state.position,
    }))
}

/// A donation as the public sees it: never the donor's reference.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicDonation {
    pub seq: u64,
    pub ts_ms: u64,
    pub project: String,
    pub amount_minor: u64,
    pub currency: String,
    pub channel: String,
    /// True when the donor asked to be anonymous or gave no public name.
    pub anonymous: bool,
    /// The name the donor chose to be shown, if any.
    pub public_name: Option<String>,
    pub matched_minor: u64,
    pub refunded: bool,
}

fn public_donation(d: &Donation) -> PublicDonation {
    let public_name = if d.anonymous {
        None
    } else {
        d.public_name.as_ref().map(|n| n.to_string())
    };
    PublicDonation {
        seq: d.seq,
        ts_ms: d.ts_ms,
        project: d.project.to_string(),
        amount_minor: d.amount_minor,
        currency: d.currency.to_string(),
        channel: d.channel.as_str().to_owned(),
        anonymous: public_name.is_none(),
        public_name,
        matched_minor: d.matched.as_ref().map(|(_, m)| *m).unwrap_or(0),
        refunded: d.refunded_seq.is_some(),
    }
}

/// A payout: what the money was for, who got it, the document it rests on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicPayout {
    pub seq: u64,
    pub requested_ts_ms: u64,
    pub amount_minor: u64,
    pub currency: String,
    pub payee: Option<String>,
    pub purpose: Option<String>,
    pub document_sha256: Option<String>,
    /// `requested`, `approved`, `rejected` or `disbursed`.
    pub status: String,
    pub decided_ts_ms: Option<u64>,
    pub disbursed_ts_ms: Option<u64>,
}

fn public_payout(kind: ProjectKind, r: &Request) -> PublicPayout {
    PublicPayout {
        seq: r.seq,
        requested_ts_ms: r.ts_ms,
        amount_minor: r.amount_minor,
        currency: r.currency.to_string(),
        payee: r
            .payee
            .as_ref()
            .map(|t| crate::reports::masked_payee(kind, t.as_str())),
        purpose: r.purpose.as_ref().map(|t| t.to_string()),
        document_sha256: r.document_sha256.map(|h| h.to_hex()),
        status: r.status.as_str().to_owned(),
        decided_ts_ms: r.decided_ts_ms,
        disbursed_ts_ms: r.disbursed_ts_ms,
    }
}

/// Money moved between projects.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicMove {
    pub seq: u64,
    pub ts_ms: u64,
    pub from_project: String,
    pub to_project: String,
    pub amount_minor: u64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
}

/// A matching pool covering the project, and how much of it is used.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicPool {
    pub pool: String,
    pub sponsor: String,
    pub projects: Vec<String>,
    pub currency: String,
    pub ratio_numerator: u32,
    pub ratio_denominator: u32,
    pub cap_per_donation_minor: u64,
    pub cap_per_donor_per_day_minor: u64,
    pub total_cap_minor: u64,
    pub used_minor: u64,
    pub remaining_minor: u64,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    pub open: bool,
}

/// A sponsor's pledge to the project.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicPledge {
    pub seq: u64,
    pub sponsor: String,
    pub amount_minor: u64,
    pub currency: String,
    pub fulfilled_minor: u64,
    pub outstanding_minor: u64,
    pub cancelled: bool,
}

/// Everything public about one project.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectDetail {
    pub figures: ProjectFigures,
    /// The latest donations (at most 20), newest first.
    pub recent_donations: Vec<PublicDonation>,
    /// Every payout requested for the project, oldest first.
    pub payouts: Vec<PublicPayout>,
    /// Moves into or out of the project, oldest first.
    pub moves: Vec<PublicMove>,
    /// Matching pools covering the project, with their sponsors and usage.
    pub matching: Vec<PublicPool>,
    pub pledges: Vec<PublicPledge>,
    /// Events folded into these figures.
    pub position: u64,
}

fn project_detail_of(state: &LedgerState, id: &Id) -> Option<ProjectDetail> {
    let p = state.projects.get(id)?;
    let recent_donations = p
        .recent_donations()
        .filter_map(|seq| state.donations.get(&seq))
        .map(|d| public_donation(d))
        .collect();
    let payouts = p
        .payouts
        .iter()
        .filter_map(|seq| state.payouts.get(seq))
        .map(|r| public_payout(p.kind, r))
        .collect();
    let moves = state
        .moves
        .values()
        .filter(|m| &m.project == id || m.to_project.as_ref() == Some(id))
        .map(|m| PublicMove {
            seq: m.seq,
            ts_ms: m.ts_ms,
            from_project: m.project.to_string(),
            to_project: m
                .to_project
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
            amount_minor: m.amount_minor,
            currency: m.currency.to_string(),
            reason: m.reason.as_ref().map(|t| t.to_string()),
            status: m.status.as_str().to_owned(),
        })
        .collect();
    let matching = state
        .pools
        .values()
        .filter(|pool| pool.projects.contains(id))
        .map(|pool| PublicPool {
            pool: pool.id.to_string(),
            sponsor: pool.sponsor.to_string(),
            projects: pool.projects.iter().map(|p| p.to_string()).collect(),
            currency: pool.currency.to_string(),
            ratio_numerator: pool.ratio_numerator,
            ratio_denominator: pool.ratio_denominator,
            cap_per_donation_minor: pool.cap_per_donation_minor,
            cap_per_donor_per_day_minor: pool.cap_per_donor_per_day_minor,
            total_cap_minor: pool.total_cap_minor,
            used_minor: pool.used(),
            remaining_minor: pool.remaining(),
            valid_from_ms: pool.valid_from_ms,
            valid_until_ms: pool.valid_until_ms,
            open: pool.open,
        })
        .collect();
    let pledges = state
        .pledges
        .values()
        .filter(|pl| &pl.project == id)
        .map(|pl| PublicPledge {
            seq: pl.seq,
            sponsor: pl.sponsor.to_string(),
            amount_minor: pl.amount_minor,
            currency: pl.currency.to_string(),
            fulfilled_minor: pl.fulfilled,
            outstanding_minor: pl.outstanding(),
            cancelled: pl.cancelled,
        })
        .collect();
    Some(ProjectDetail {
        figures: project_figures(p),
        recent_donations,
        payouts,
        moves,
        matching,
        pledges,
        position: state.position,
    })
}

/// One project: figures, recent donations, payouts, moves, matching sponsors, pledges.
#[utoipa::path(get, path = "/api/v1/public/projects/{project}", tag = "public",
    params(("project" = String, Path), MinSeq),
    responses((status = 200, body = ProjectDetail), ReadErrors))]
pub async fn project(
    State(s): State<AppState>,
    ApiPath(project): ApiPath<String>,
    ApiQuery(q): ApiQuery<MinSeq>,
) -> Result<Json<ProjectDetail>, ApiError> {
    let id = Id::new(&project)
        .map_err(|e| ApiError::bad_request("invalid_path", format!("project: {e}")))?;
    let state = s.read_state(q.min_seq).await?;
    project_detail_of(&state, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("project: no project {id}")))
}

// ---------------------------------------------------------------------------------------------
// Receipts

/// The match a donation triggered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptMatch {
    pub pool: String,
    pub sponsor: String,
    pub amount_minor: u64,
    /// True when the match went back to the pool: the donation was refunded, or a review
    /// released it (`released_after_review`).
    pub released: bool,
    /// True while the match is held for review: the project cannot spend it yet.
    pub under_review: bool,
    /// True when a review sent the match back to its pool (the gift itself stands).
    pub released_after_review: bool,
}

/// What a donor sees for their receipt code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptView {
    pub receipt_code: String,
    pub seq: u64,
    pub hash: String,
    pub donation: PublicDonation,
    pub matched: Option<ReceiptMatch>,
    /// The donation's event as published in the public log.
    pub event: PublicEvent,
    /// The project's current figures.
    pub project: ProjectFigures,
}

/// Look up a donation by its receipt code (`XXXX-XXXX-XXXX-XXXX`, uppercase hex).
#[utoipa::path(get, path = "/api/v1/public/receipts/{code}", tag = "public",
    params(("code" = String, Path, description = "The receipt code"), MinSeq),
    responses((status = 200, body = ReceiptView), ReadErrors))]
pub async fn receipt(
    State(s): State<AppState>,
    ApiPath(code): ApiPath<String>,
    ApiQuery(q): ApiQuery<MinSeq>,
) -> Result<Json<ReceiptView>, ApiError> {
    if !is_receipt_code(&code) {
        return Err(ApiError::bad_request(
            "invalid_path",
            "code: a receipt code is 16 uppercase hex digits in groups of four, such as 3F2A-91C0-5B7E-D4A8",
        ));
    }
    let state: Arc<LedgerState> = s.read_state(q.min_seq).await?;
    let not_found = || ApiError::not_found(format!("code: no donation has receipt code {code}"));
    let d = state.donation_by_receipt(&code).ok_or_else(not_found)?;
    let seq = d.seq;
    let p = state
        .projects
        .get(&d.project)
        .ok_or_else(|| ApiError::internal(format!("donation {seq}'s project is missing")))?;
    let event = s
        .node
        .log
        .read(seq, 1)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(format!("donation {seq} is not in the log")))?;
    let matched = d.matched.as_ref().map(|(pool, amount)| ReceiptMatch {
        pool: pool.to_string(),
        sponsor: state
            .pools
            .get(pool)
            .map(|p| p.sponsor.to_string())
            .unwrap_or_default(),
        amount_minor: *amount,
        released: state.match_held(d).is_none(),
        under_review: state.match_frozen(seq).is_some(),
        released_after_review: state.match_released_after_review(seq).is_some(),
    });
    Ok(Json(ReceiptView {
        receipt_code: code.clone(),
        seq,
        hash: event.hash().to_hex(),
        donation: public_donation(d),
        matched,
        event: public_event(&event, &state),
        project: project_figures(p),
    }))
}

// ---------------------------------------------------------------------------------------------
// Operations

/// Liveness and how far the read models are.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub ledger: String,
    pub log_len: u64,
    pub projection_position: u64,
}

/// Liveness: 200 while the service answers and its background tasks run; 503 `degraded`
/// naming the tasks that stopped (the reason is in the service's log), so an orchestrator
/// restarts it.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    let stopped = s.node.stopped_tasks();
    if !stopped.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            format!(
                "stopped: {}; the reason is in the service's log; restart it",
                stopped.join(", ")
            ),
        ));
    }
    let head = s.node.log.head().await.map_err(ApiError::internal)?;
    Ok(Json(Health {
        status: "ok".into(),
        ledger: s.node.ledger.to_string(),
        log_len: head.len,
        projection_position: s.node.state().position,
    }))
}

/// Prometheus text format: events appended, append batch sizes, projection lag.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{Amount, Currency, EventRecord, Hash, Id, MatchAllocated, ProjectKind, Text};

    /// A match's public data names its project's currency, which the event leaves out, so
    /// the feed shows "¥0.33", not "0.33".
    #[test]
    fn a_match_is_shown_in_its_projects_currency() {
        let id = |s: &str| Id::new(s).unwrap();
        let mut state = LedgerState::default();
        let opened = EventRecord {
            seq: 0,
            prev: Hash::ZERO,
            ledger: id("l"),
            ts_ms: 0,
            actor: id("admin"),
            idempotency: None,
            token_issuer: None,
            body: EventBody::ProjectOpened(events::ProjectOpened {
                project: id("cp"),
                kind: ProjectKind::CommunityProject,
                name: Text::new("星星课堂").unwrap(),
                currency: Currency::CNY,
                goal_minor: None,
            }),
        };
        state.apply(&opened.seal().unwrap()).unwrap();
        let matched = |project: &str| {
            EventBody::MatchAllocated(MatchAllocated {
                pool: id("pool"),
                donation_seq: 1,
                project: id(project),
                amount_minor: Amount::new(33).unwrap(),
            })
        };
        let data = public_data(&matched("cp"), &state);
        assert_eq!(data["currency"], "CNY");
        assert_eq!(data["amount_minor"], 33);
        assert!(public_data(&matched("unknown"), &state)
            .get("currency")
            .is_none());
    }
}
