//! Statements over HTTP: upload a channel's bill or a bank statement, read its
//! reconciliation, resolve its exceptions. The same code paths as the CLI's
//! `import-statement`, `reconcile` and `resolve-exception` ([`crate::finance_cli`]): the
//! file is checked whole by [`parse_statement`] before anything is recorded, then
//! [`record_statement`] records it and [`reconcile_statement`] reconciles it.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use projections::reconcile::{Exception, MatchConfig, Reconciliation};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use super::auth::{Principal, Role};
use super::error::{read_body_as, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::limits::*;
use super::staff::{page_limit, write, ReadErrors, WriteResponse};
use super::AppState;
use crate::finance_cli::{
    reconcile_recorded, reconcile_statement, record_statement, resolve_command, ResolutionAction,
    ResolveFields, StatementFormat, StatementInput,
};
use crate::statement::{parse_statement, StatementError, StatementOptions};
use crate::writer::WriteError;

/// The content types a statement upload may have.
pub const STATEMENT_CONTENT_TYPES: &[&str] = &[
    "text/csv",
    "application/xml",
    "text/xml",
    "text/plain",
    "application/octet-stream",
];

/// How the CLI's `--date-window-hours` and `--timing-window-minutes` default.
const DATE_WINDOW_HOURS_DEFAULT: u64 = 48;
const TIMING_WINDOW_MINUTES_DEFAULT: u64 = 60;

/// The matching windows asked for, each within its limit (`400 invalid_query` naming it).
fn match_config(
    date_window_hours: Option<u64>,
    timing_window_minutes: Option<u64>,
) -> Result<MatchConfig, ApiError> {
    MatchConfig::from_windows(
        date_window_hours.unwrap_or(DATE_WINDOW_HOURS_DEFAULT),
        timing_window_minutes.unwrap_or(TIMING_WINDOW_MINUTES_DEFAULT),
    )
    .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

/// How to read an uploaded statement.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// The statement's format: `wechat`, `alipay`, `bank-csv` or `camt053`.
    #[param(value_type = String, example = "wechat")]
    pub format: StatementFormat,
    /// The account the statement must be for (merchant number, Alipay account, IBAN); a
    /// file for another account is refused (`account_mismatch`) and nothing is recorded.
    pub account: Option<String>,
    /// Minutes east of UTC of times without a zone in the file (default 480, China);
    /// within ±840.
    pub utc_offset_minutes: Option<i32>,
    /// Match by amount when booked within this many hours of the ledger entry (default 48,
    /// at most 720).
    pub date_window_hours: Option<u64>,
    /// Entries this many minutes before the period's end that the statement lacks are timing
    /// differences (default 60, at most 10080).
    pub timing_window_minutes: Option<u64>,
}

/// The principal of a statement upload, checked to be a recorder before the body (up to
/// [`STATEMENT_BODY_BYTES_MAX`]) is read: another role's upload is refused at once.
pub struct Uploader(pub Principal);

impl FromRequestParts<AppState> for Uploader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let p = Principal::from_request_parts(parts, state).await?;
        p.require(Role::Recorder, "import_statement")?;
        Ok(Uploader(p))
    }
}

/// The raw bytes of a statement upload: at most [`STATEMENT_BODY_BYTES_MAX`], one of
/// [`STATEMENT_CONTENT_TYPES`].
pub struct StatementBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for StatementBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            read_body_as(req, STATEMENT_BODY_BYTES_MAX, true, STATEMENT_CONTENT_TYPES).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "empty_body",
                "body: the statement file is empty",
            ));
        }
        Ok(StatementBody(bytes))
    }
}

/// Matched pairs and exceptions of a statement, counted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReconciliationSummary {
    /// Statement lines paired with a ledger entry.
    pub matched: u64,
    /// Matched pairs per rule (`reference`, `amount_and_date`, `linked`).
    pub matched_by_rule: BTreeMap<String, u64>,
    /// Exceptions, resolved or not.
    pub exceptions: u64,
    /// Exceptions not yet resolved.
    pub open_exceptions: u64,
    /// Exceptions per reason code (`line_not_in_ledger`, `missing_from_statement`, …).
    pub exceptions_by_reason: BTreeMap<String, u64>,
    /// Payment and bank credit lines of the statement.
    pub lines_in: u64,
    /// Refund and bank debit lines.
    pub lines_out: u64,
    /// The statement's own figures, in minor units, each direction apart, to tick against
    /// the bill's summary: money in (payments, bank credits), money out (refunds, bank
    /// debits), fees the channel charged, fees it gave back (a WeChat Pay refund returns its
    /// share of the fee), net fees (charged − given back) and net (in − out − net fees).
    /// Fees are summed exactly and rounded to the minor unit once (half away from zero).
    pub money_in_minor: u64,
    pub money_out_minor: u64,
    pub fees_charged_minor: u64,
    pub fees_returned_minor: u64,
    pub net_fees_minor: i64,
    /// Fees charged, fees given back and net fees exactly, in thousandths of a minor unit:
    /// WeChat Pay prints 手续费 to 0.00001 yuan (its 手续费总金额 `0.05940` is 5940). The
    /// `_minor` figures above are each rounded on their own, so charged − given back may
    /// differ from `net_fees_minor` by a fen; these three always subtract exactly.
    pub fees_charged_milli_minor: u64,
    pub fees_returned_milli_minor: u64,
    pub net_fees_milli_minor: i64,
    /// `net_fees_minor` less the lines' fees each rounded to the minor unit: what booking
    /// every line's fee to the fen leaves over. 0 when no fee is below the minor unit.
    pub fee_rounding_minor: i64,
    pub net_minor: i64,
}

/// A statement's sum as a JSON integer. A statement holds at most 10^7 lines of at most
/// 2^53 − 1 each, so a sum could in theory pass 2^63; it is then clamped.
fn clamp_u64(sum: u128) -> u64 {
    u64::try_from(sum).unwrap_or(u64::MAX)
}

fn clamp_i64(sum: i128) -> i64 {
    i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX })
}

impl ReconciliationSummary {
    fn of(rec: &Reconciliation) -> ReconciliationSummary {
        let open = rec.open_exceptions().count() as u64;
        ReconciliationSummary {
            matched: rec.matched.len() as u64,
            matched_by_rule: rec
                .matched_counts()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            exceptions: rec.exceptions.len() as u64,
            open_exceptions: open,
            exceptions_by_reason: rec
                .counts()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            lines_in: rec.totals.lines_in,
            lines_out: rec.totals.lines_out,
            money_in_minor: clamp_u64(rec.totals.money_in_minor),
            money_out_minor: clamp_u64(rec.totals.money_out_minor),
            fees_charged_minor: clamp_u64(rec.totals.fees_charged_minor()),
            fees_returned_minor: clamp_u64(rec.totals.fees_returned_minor()),
            net_fees_minor: clamp_i64(rec.totals.net_fees_minor()),
            fees_charged_milli_minor: clamp_u64(rec.totals.fees_charged_milli_minor),
            fees_returned_milli_minor: clamp_u64(rec.totals.fees_returned_milli_minor),
            net_fees_milli_minor: clamp_i64(rec.totals.net_fees_milli_minor()),
            fee_rounding_minor: clamp_i64(rec.totals.fee_rounding_minor()),
            net_minor: clamp_i64(rec.totals.net_minor()),
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportResponse {
    /// The seq of the statement's `StatementImported` event: its id.
    pub statement_seq: u64,
    /// True when the same file had been imported before: nothing changed.
    pub already_imported: bool,
    /// Lines in the file.
    pub line_count: u64,
    /// Lines recorded by this upload (all of them, the rest of an interrupted import, or 0).
    pub lines_recorded_now: u64,
    pub source: String,
    pub account: String,
    pub currency: String,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    /// SHA-256 of the file, 64 hex digits.
    pub sha256: String,
    pub reconciliation: ReconciliationSummary,
}

/// The errors an upload can answer with.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ImportErrors {
    /// A bad query (`invalid_query`) or an empty body (`empty_body`).
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No, unknown or revoked bearer token (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Not the recorder role (`forbidden`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The ledger refused a line (`statement_line_order`, …).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The file is over 64 MiB (`payload_too_large`, naming the limit).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `text/csv`, `application/xml`, `text/xml`, `text/plain` or
    /// `application/octet-stream` (`unsupported_media_type`).
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The file is malformed (`malformed_statement`, with `line` and `column` of the first
    /// error) or for another account (`account_mismatch`); nothing was recorded.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// The ledger is shutting down (`shutting_down`); upload the same file again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

fn statement_error(e: StatementError) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "malformed_statement",
        format!("{e}; nothing was recorded"),
    );
    if let StatementError::Malformed { line, column, .. } = e {
        err.position = Some((line, column));
    }
    err
}

fn recording_error(e: anyhow::Error) -> ApiError {
    match e.downcast::<WriteError>() {
        Ok(w) => w.into(),
        Err(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// Import a statement (recorder): the file is the body. The whole file is checked first: a
/// malformed one is refused with the line and column of its first error and nothing is
/// recorded. Uploading the same file again changes nothing (200, `already_imported`); an
/// interrupted import resumes. Answers the statement seq and its reconciliation summary.
#[utoipa::path(post, path = "/api/v1/staff/statements", tag = "staff",
    params(ImportQuery),
    request_body(description = "The statement file (UTF-8), at most 64 MiB",
        content((String = "text/csv"), (String = "application/xml"))),
    responses(
        (status = 201, description = "Imported", body = ImportResponse),
        (status = 200, description = "The same file was imported before; nothing changed", body = ImportResponse),
        ImportErrors),
    security(("bearer" = [])))]
pub async fn import_statement(
    State(s): State<AppState>,
    Uploader(p): Uploader,
    ApiQuery(q): ApiQuery<ImportQuery>,
    StatementBody(bytes): StatementBody,
) -> Result<Response, ApiError> {
    let utc_offset_minutes = q.utc_offset_minutes.unwrap_or(480);
    if !(-840..=840).contains(&utc_offset_minutes) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("utc_offset_minutes: must be within ±840 (got {utc_offset_minutes})"),
        ));
    }
    let options = StatementOptions { utc_offset_minutes };
    // Checked before anything is recorded.
    let config = match_config(q.date_window_hours, q.timing_window_minutes)?;
    let source = q.format.source();
    // Pass 1: the whole file is checked before anything is recorded.
    let input = StatementInput::Bytes(bytes);
    let check = input.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let reader = check
            .open()
            .map_err(|e| StatementError::Io(e.to_string()))?;
        parse_statement(source, reader, &options, &mut |_| Ok(()))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(statement_error)?;
    if let Some(account) = &q.account {
        if account != &summary.account {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "account_mismatch",
                format!(
                    "account: the statement is for account {:?}, not {account:?}; nothing was recorded",
                    summary.account
                ),
            ));
        }
    }
    // Lines are recorded in order: one upload at a time.
    let _one_at_a_time = s.statement_imports.lock().await;
    let recorded = record_statement(
        &s.node,
        &input,
        &summary,
        (&p.actor, p.issued_by.as_ref()),
        &options,
    )
    .await
    .map_err(recording_error)?;
    let rec = reconcile_recorded(&s.node, recorded.statement_seq, config)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let body = ImportResponse {
        statement_seq: recorded.statement_seq,
        already_imported: !recorded.changed(),
        line_count: summary.line_count,
        lines_recorded_now: recorded.lines_recorded_now,
        source: summary.source.as_str().to_owned(),
        account: summary.account.clone(),
        currency: summary.currency.to_string(),
        period_start_ms: summary.period_start_ms,
        period_end_ms: summary.period_end_ms,
        sha256: summary.sha256.to_hex(),
        reconciliation: ReconciliationSummary::of(&rec),
    };
    let status = if recorded.changed() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// Which exceptions to list.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionFilter {
    /// Not yet resolved (the default).
    #[default]
    Open,
    Resolved,
    All,
}

/// Paging, filter and matching tolerances of a reconciliation.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationQuery {
    /// `open` (default), `resolved` or `all`.
    pub status: Option<ExceptionFilter>,
    /// Continue after this exception (`next_after` of the previous page): `line-<n>` or
    /// `entry-<seq>`. A cursor, not a position, so resolving the exceptions of one page does
    /// not make the next one skip any.
    pub after: Option<String>,
    /// At most this many exceptions (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Match by amount when booked within this many hours of the ledger entry (default 48,
    /// at most 720).
    pub date_window_hours: Option<u64>,
    /// Timing window before the period's end, in minutes (default 60, at most 10080).
    pub timing_window_minutes: Option<u64>,
    /// Wait (at most 5 s) until the read models include this seq.
    pub min_seq: Option<u64>,
}

/// Something that did not reconcile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExceptionItem {
    /// `line_not_in_ledger`, `missing_from_statement`, `timing_difference`,
    /// `amount_difference`, `fee_difference`, `currency_difference`, `refund_not_in_ledger`,
    /// `duplicate_line`.
    pub reason: String,
    /// The statement line (1-based), when the exception is about a line: resolve it with `line`.
    pub line_no: Option<u64>,
    /// The ledger entry (donation, refund or payout seq), when there is one; resolve an
    /// exception without a line with `entry`.
    pub entry_seq: Option<u64>,
    pub reference: String,
    pub statement_amount_minor: Option<u64>,
    pub ledger_amount_minor: Option<u64>,
    /// The line's fee: positive when the channel charged it, negative when it gave it back.
    pub statement_fee_minor: Option<i64>,
    /// The line's fee exactly, in thousandths of a minor unit, when it is below the fen's
    /// precision (WeChat Pay's `0.00600` is 600); `null` otherwise.
    pub statement_fee_milli_minor: Option<i64>,
    /// The entry's fee, signed as the line's: a gift's fee (positive), the part of it a
    /// refund got back (negative), 0 for a payout.
    pub ledger_fee_minor: Option<i64>,
    /// The `ExceptionResolved` event, once resolved.
    pub resolved_seq: Option<u64>,
    pub resolution: Option<String>,
}

impl From<&Exception> for ExceptionItem {
    fn from(e: &Exception) -> ExceptionItem {
        ExceptionItem {
            reason: e.reason.as_str().to_owned(),
            line_no: e.line_no,
            entry_seq: e.entry_seq,
            reference: e.reference.clone(),
            statement_amount_minor: e.statement_amount_minor,
            ledger_amount_minor: e.ledger_amount_minor,
            statement_fee_minor: e.statement_fee_minor,
            statement_fee_milli_minor: e.statement_fee_milli_minor,
            ledger_fee_minor: e.ledger_fee_minor,
            resolved_seq: e.resolved_seq,
            resolution: e.resolution.map(str::to_owned),
        }
    }
}

/// A statement's reconciliation: the summary and one page of its exceptions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReconciliationPage {
    pub statement_seq: u64,
    pub source: String,
    pub account: String,
    pub currency: String,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub line_count: u64,
    pub lines_recorded: u64,
    pub summary: ReconciliationSummary,
    /// The page of exceptions (filtered by `status`), in the reconciler's order.
    pub exceptions: Vec<ExceptionItem>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Where a page of exceptions ends, in the reconciler's order (lines by number, then ledger
/// entries by seq), which resolving an exception does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExceptionCursor {
    Line(u64),
    Entry(u64),
}

impl ExceptionCursor {
    /// An exception's cursor: the line or entry it is about (one exception each).
    fn of(e: &projections::reconcile::Exception) -> ExceptionCursor {
        match e.key {
            projections::ExceptionKey::Line(line) => ExceptionCursor::Line(line),
            projections::ExceptionKey::Entry(entry) => ExceptionCursor::Entry(entry),
        }
    }

    fn parse(s: &str) -> Result<ExceptionCursor, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "after: `line-<n>` or `entry-<seq>`, as `next_after` gives it (got {:?})",
                    s.chars().take(40).collect::<String>()
                ),
            )
        };
        let (kind, n) = s.split_once('-').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        match kind {
            "line" => Ok(ExceptionCursor::Line(n)),
            "entry" => Ok(ExceptionCursor::Entry(n)),
            _ => Err(bad()),
        }
    }

    /// Whether `e` comes after this cursor.
    fn precedes(self, e: &projections::reconcile::Exception) -> bool {
        match (self, ExceptionCursor::of(e)) {
            (ExceptionCursor::Line(a), ExceptionCursor::Line(b)) => b > a,
            (ExceptionCursor::Line(_), ExceptionCursor::Entry(_)) => true,
            (ExceptionCursor::Entry(_), ExceptionCursor::Line(_)) => false,
            (ExceptionCursor::Entry(a), ExceptionCursor::Entry(b)) => b > a,
        }
    }
}

impl std::fmt::Display for ExceptionCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExceptionCursor::Line(n) => write!(f, "line-{n}"),
            ExceptionCursor::Entry(n) => write!(f, "entry-{n}"),
        }
    }
}

/// A statement's reconciliation (any staff role): matched pairs counted, exceptions listed
/// (open ones by default), paged. Recomputed from the log on every call, like the CLI's
/// `reconcile`.
#[utoipa::path(get, path = "/api/v1/staff/statements/{seq}/reconciliation", tag = "staff",
    params(("seq" = u64, Path, description = "The statement's seq"), ReconciliationQuery),
    responses((status = 200, body = ReconciliationPage), ReadErrors),
    security(("bearer" = [])))]
pub async fn reconciliation(
    State(s): State<AppState>,
    _p: Principal,
    ApiPath(seq): ApiPath<u64>,
    ApiQuery(q): ApiQuery<ReconciliationQuery>,
) -> Result<Json<ReconciliationPage>, ApiError> {
    let limit = page_limit(q.limit, PAGE_EXCEPTIONS_DEFAULT, PAGE_EXCEPTIONS_MAX)?;
    let config = match_config(q.date_window_hours, q.timing_window_minutes)?;
    let state = s.read_state(q.min_seq).await?;
    let statement = state
        .statements
        .get(&seq)
        .ok_or_else(|| ApiError::not_found(format!("statement: no statement at seq {seq}")))?;
    let rec = reconcile_statement(s.node.log.as_ref(), &state, seq, config)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let filter = q.status.unwrap_or_default();
    let after = q.after.as_deref().map(ExceptionCursor::parse).transpose()?;
    let mut selected = rec
        .exceptions
        .iter()
        .filter(|e| after.is_none_or(|a| a.precedes(e)))
        .filter(|e| match filter {
            ExceptionFilter::Open => e.resolved_seq.is_none(),
            ExceptionFilter::Resolved => e.resolved_seq.is_some(),
            ExceptionFilter::All => true,
        });
    let page: Vec<_> = selected.by_ref().take(limit).collect();
    let next_after = match (page.last(), selected.next()) {
        (Some(last), Some(_)) => Some(ExceptionCursor::of(last).to_string()),
        _ => None,
    };
    let exceptions: Vec<ExceptionItem> = page.into_iter().map(ExceptionItem::from).collect();
    Ok(Json(ReconciliationPage {
        statement_seq: seq,
        source: statement.source.as_str().to_owned(),
        account: statement.account.clone(),
        currency: statement.currency.to_string(),
        period_start_ms: statement.period_start_ms,
        period_end_ms: statement.period_end_ms,
        line_count: statement.line_count,
        lines_recorded: statement.lines_recorded,
        summary: ReconciliationSummary::of(&rec),
        exceptions,
        next_after,
    }))
}

/// Resolve one exception: the fields of the CLI's `resolve-exception`. Give `line` or
/// `entry`; `link_to` for `linked`; `channel` and `amount` for `settlement`; `pool` and
/// `amount` for `matching_received`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// The statement line the exception is about.
    pub line: Option<u64>,
    /// The ledger entry (donation or payout seq) the exception is about.
    pub entry: Option<u64>,
    pub action: ResolutionAction,
    /// For `linked`: the donation, refund or payout seq the line belongs to.
    pub link_to: Option<u64>,
    /// For `settlement`: the channel that paid out (`wechat`, `alipay`, `cash`, `charity_mall`).
    pub channel: Option<String>,
    /// For `matching_received`: the pool whose sponsor paid.
    pub pool: Option<String>,
    /// For `settlement` and `matching_received`: the amount in yuan, e.g. `"1234.50"`.
    pub amount: Option<String>,
    /// Why: shown in the history (1–500 characters).
    pub note: String,
}

/// Resolve a reconciliation exception (approver). Records `ExceptionResolved`; the
/// exception then leaves the open list. `Idempotency-Key` is honoured like other writes.
#[utoipa::path(post, path = "/api/v1/staff/statements/{seq}/exceptions/resolve", tag = "staff",
    request_body = ResolveBody,
    params(("seq" = u64, Path, description = "The statement's seq"),
        ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WriteResponse), (status = 200, description = "Replayed", body = WriteResponse),
        super::staff::WriteErrors),
    security(("bearer" = [])))]
pub async fn resolve_exception(
    State(s): State<AppState>,
    p: Principal,
    h: HeaderMap,
    ApiPath(seq): ApiPath<u64>,
    ApiJson(b): ApiJson<ResolveBody>,
) -> Result<Response, ApiError> {
    p.require(Role::Approver, "resolve_exception")?;
    let fields = ResolveFields {
        statement: seq,
        line: b.line,
        entry: b.entry,
        action: b.action,
        link_to: b.link_to,
        channel: b.channel,
        pool: b.pool,
        amount: b.amount,
        note: b.note,
    };
    let command = resolve_command(&fields)
        .map_err(|e| ApiError::bad_request("invalid_field", e.to_string()))?;
    write(&s, &p, &h, command).await
}
