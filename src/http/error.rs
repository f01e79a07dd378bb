//! The one error type of the HTTP API and the extractors that produce it.
//!
//! Every error answers `{"error": {"code": "...", "message": "...", "items": [...]}}`: `code`
//! is stable and machine-readable, `message` is for people and names the field and the limit.
//! Caller errors are 4xx and change nothing; 5xx is only for real faults, which are logged
//! with their detail and answered without it.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::command::CommandError;
use crate::store::StoreError;
use crate::writer::WriteError;

use super::limits::JSON_BODY_BYTES_MAX;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, such as `unknown_field` or `insufficient_funds`.
    pub code: String,
    /// A sentence for people, naming the field and the limit.
    pub message: String,
    /// Per-item errors of a batch request, in item order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemError>,
    /// Where in an uploaded statement file the first error is: 1-based line and column
    /// (`malformed_statement` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

/// What was wrong with one item of a batch.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ItemError {
    /// 0-based position of the item in the request's `donations` array.
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub items: Vec<ItemError>,
    pub retry_after_s: Option<u64>,
    /// (line, column) of the first error in an uploaded file.
    pub position: Option<(u64, u64)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            items: Vec::new(),
            retry_after_s: None,
            position: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after_s = Some(1);
        e
    }
    /// A real fault: the detail goes to the log, the client gets a plain sentence.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(detail = %detail, "internal error answering a request");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    /// A refused command: 409 when it conflicts with the ledger's state, 422 when it breaks a
    /// rule.
    pub fn command(error: &CommandError) -> ApiError {
        let status = if error.is_conflict() {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError::new(status, error.code(), error.to_string())
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                items: self.items.clone(),
                line: self.position.map(|p| p.0),
                column: self.position.map(|p| p.1),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Rejected { error, .. } => ApiError::command(&error),
            WriteError::TooManyCommands { given, max } => ApiError::too_large(
                "too_many_items",
                format!("donations: {given} items; the limit is {max}"),
            ),
            WriteError::Empty => {
                ApiError::bad_request("empty_batch", "donations: no items; give 1 or more")
            }
            WriteError::Stopped => {
                ApiError::unavailable("shutting_down", "the ledger is shutting down; retry")
            }
            // Other writers kept appending first and the retries ran out: nothing was
            // written, and trying again is the answer.
            WriteError::Store(StoreError::Conflict { .. }) => ApiError::unavailable(
                "busy",
                "other writers appended first and the retries ran out; nothing was written, retry",
            ),
            // A store limit names what and the limit, nothing internal.
            WriteError::Store(e @ StoreError::Limit { .. }) => {
                ApiError::too_large("store_limit", e.to_string())
            }
            // Storage failed during the write (a failed fdatasync, a cluster that did not
            // answer): the events may have reached the disk or not. The detail goes to the
            // log; the client is told what it can do, which is safe either way.
            WriteError::Store(e @ StoreError::Io(_)) => {
                tracing::error!(error = %e, "storage failed during a write");
                ApiError::unavailable(
                    "store_failed",
                    "storage failed during this write, so whether it was recorded is unknown: \
                     retry it with the same Idempotency-Key once the service is back (a \
                     recorded write is replayed, never written twice)",
                )
            }
            e @ (WriteError::Store(_) | WriteError::Internal(_)) => ApiError::internal(e),
        }
    }
}

/// Decodes JSON, naming the field that failed (`donations[3].amount_minor`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end().map_err(|e| json_error(".", e))?;
    Ok(value)
}

/// Decodes a JSON value already parsed (a body decoded in stages), naming the field that
/// failed as [`decode_json`] does, relative to that value.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    json_error(&path, e.into_inner())
}

fn json_error(path: &str, e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let text = e.to_string();
    let (code, what) = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ("malformed_json", "body"),
        Category::Data if text.starts_with("unknown field") => ("unknown_field", path),
        Category::Data if text.starts_with("missing field") => ("missing_field", path),
        Category::Data => ("invalid_field", path),
    };
    let what = if what == "." { "body" } else { what };
    ApiError::bad_request(code, format!("{what}: {text}"))
}

/// A JSON body of at most `MAX` bytes with `Content-Type: application/json`, decoded with the
/// failing field named. An over-long body is a 413 naming the limit.
pub struct ApiJson<T, const MAX: usize = JSON_BODY_BYTES_MAX>(pub T);

/// The raw bytes of a JSON body of at most `MAX` bytes, for handlers that decode in stages.
pub struct JsonBytes<const MAX: usize>(pub Vec<u8>);

impl<S, const MAX: usize> FromRequest<S> for JsonBytes<MAX>
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBytes(read_body(req, MAX, false).await?))
    }
}

/// Like [`ApiJson`], but an empty body decodes as `T::default()` (for actions such as
/// approving a payout, which carry no fields).
pub struct OptionalJson<T>(pub T);

async fn read_body(req: Request, max: usize, allow_empty: bool) -> Result<Vec<u8>, ApiError> {
    Ok(read_body_as(req, max, allow_empty, &["application/json"])
        .await?
        .to_vec())
}

/// Reads a body of at most `max` bytes (413 naming the limit beyond) whose content type is
/// one of `accepted` (415 otherwise).
pub(crate) async fn read_body_as(
    req: Request,
    max: usize,
    allow_empty: bool,
    accepted: &[&str],
) -> Result<axum::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > max as u64 {
            return Err(too_large_body(len, max));
        }
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(req.into_body(), max)
        .await
        .map_err(|e| {
            if is_length_limit(&e) {
                too_large_body(max as u64 + 1, max)
            } else {
                ApiError::bad_request("unreadable_body", format!("body: could not be read: {e}"))
            }
        })?;
    if bytes.is_empty() && allow_empty {
        return Ok(bytes);
    }
    let accepted_type = content_type.as_deref().is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        accepted.iter().any(|a| mime.eq_ignore_ascii_case(a))
    });
    if !accepted_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content-type: expected {} (got {:?})",
                accepted.join(" or "),
                content_type.as_deref().unwrap_or("none")
            ),
        ));
    }
    Ok(bytes)
}

/// The outer body limit of every request: [`super::limits::STATEMENT_BODY_BYTES_MAX`] for a
/// statement upload, [`super::limits::BATCH_BODY_BYTES_MAX`] for anything else. Each
/// extractor then applies its own, smaller limit. Over the limit is a 413 naming it.
pub async fn body_limit(req: Request, next: axum::middleware::Next) -> Response {
    let max = if req.method() == axum::http::Method::POST
        && req.uri().path() == "/api/v1/staff/statements"
    {
        super::limits::STATEMENT_BODY_BYTES_MAX
    } else {
        super::limits::BATCH_BODY_BYTES_MAX
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > max as u64 {
            return too_large_body(len, max).into_response();
        }
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, max));
    next.run(Request::from_parts(parts, body)).await
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

pub(crate) fn too_large_body(given: u64, max: usize) -> ApiError {
    ApiError::too_large(
        "payload_too_large",
        format!("body: {given} bytes or more; the limit is {max} bytes"),
    )
}

impl<S, T, const MAX: usize> FromRequest<S> for ApiJson<T, MAX>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, MAX, false).await?;
        Ok(ApiJson(decode_json(&bytes)?))
    }
}

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, JSON_BODY_BYTES_MAX, true).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        Ok(OptionalJson(decode_json(&bytes)?))
    }
}

/// Path parameters, with a 400 naming the parameter when one does not parse.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => {
                // The route's parameter names, to name the one that did not parse.
                let names: Vec<String> =
                    axum::extract::RawPathParams::from_request_parts(parts, state)
                        .await
                        .map(|raw| raw.iter().map(|(name, _)| name.to_owned()).collect())
                        .unwrap_or_default();
                Err(ApiError::bad_request(
                    "invalid_path",
                    path_error_message(&e, &names),
                ))
            }
        }
    }
}

/// A path parameter that does not parse, named, with what it must be: `seq: must be a
/// whole number from 0 to 18446744073709551615 (got "abc")`.
fn path_error_message(e: &axum::extract::rejection::PathRejection, names: &[String]) -> String {
    use axum::extract::path::ErrorKind;
    use axum::extract::rejection::PathRejection;
    let PathRejection::FailedToDeserializePathParams(inner) = e else {
        return format!("path: {}", e.body_text());
    };
    let (key, value, expected) = match inner.kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => (key.as_str(), value, *expected_type),
        // One parameter (`{seq}`): its name is the route's only one.
        ErrorKind::ParseError {
            value,
            expected_type,
        } if names.len() == 1 => (names[0].as_str(), value, *expected_type),
        _ => return format!("path: {}", e.body_text()),
    };
    let what = match expected {
        "u64" => format!("a whole number from 0 to {}", u64::MAX),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        other => format!("a {other}"),
    };
    let shown: String = value.chars().take(40).collect();
    format!("{key}: must be {what} (got {shown:?})")
}

/// Query parameters, with a 400 naming the parameter when one does not parse or is unknown.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::bad_request(
                "invalid_query",
                format!("query: {}", e.body_text()),
            )),
        }
    }
}

/// Gives the JSON error body to error responses made outside the handlers (unknown route,
/// wrong method, request timeout, body limit, panic), so every error has the same shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        // The web pages (src/web) answer their errors as HTML pages.
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not take that method".to_owned(),
        ),
        StatusCode::GATEWAY_TIMEOUT => (
            "timeout",
            format!(
                "the request took longer than the limit of {} s; its outcome is unknown: a \
                 write may still be recorded, so retry it with the same Idempotency-Key",
                super::limits::REQUEST_TIMEOUT.as_secs()
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!(
                "body: the limit is {} bytes",
                super::limits::BATCH_BODY_BYTES_MAX
            ),
        ),
        s if s.is_server_error() => (
            "internal",
            "an internal error occurred; it has been logged".to_owned(),
        ),
        s => ("http_error", s.to_string()),
    };
    if status.is_server_error() {
        tracing::error!(%status, "a request failed outside its handler");
    }
    let mut out = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = response.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn shaped(status: StatusCode) -> (StatusCode, serde_json::Value) {
        let plain = Response::builder()
            .status(status)
            .body(axum::body::Body::empty())
            .unwrap();
        let out = json_errors(plain).await;
        let status = out.status();
        let bytes = axum::body::to_bytes(out.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn store_conflicts_limits_and_failures_are_not_internal_errors() {
        let busy = ApiError::from(WriteError::Store(StoreError::Conflict {
            expected: 1,
            actual: 2,
        }));
        assert_eq!(
            (busy.status, busy.code, busy.retry_after_s),
            (StatusCode::SERVICE_UNAVAILABLE, "busy", Some(1))
        );
        let limit = ApiError::from(WriteError::Store(StoreError::Limit {
            what: "events in one append",
            value: 70_000,
            max: 65_536,
        }));
        assert_eq!(
            (limit.status, limit.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "store_limit")
        );
        assert!(limit.message.contains("the limit is 65536"), "{limit:?}");
        // A storage failure during a write: its outcome is unknown, and the answer says how
        // to retry safely, and nothing of the failure itself.
        let io = ApiError::from(WriteError::Store(StoreError::Io(
            "fdatasync of /srv/ledger/sled/db: EIO".into(),
        )));
        assert_eq!(
            (io.status, io.code, io.retry_after_s),
            (StatusCode::SERVICE_UNAVAILABLE, "store_failed", Some(1))
        );
        assert!(io.message.contains("same Idempotency-Key"), "{io:?}");
        assert!(!io.message.contains("/srv"), "no internals: {io:?}");
    }

    #[tokio::test]
    async fn errors_from_layers_get_the_json_shape() {
        let (status, body) = shaped(StatusCode::GATEWAY_TIMEOUT).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body["error"]["code"], "timeout");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("30 s") && message.contains("Idempotency-Key"));
        let (_, body) = shaped(StatusCode::PAYLOAD_TOO_LARGE).await;
        assert_eq!(body["error"]["code"], "payload_too_large");
        let (_, body) = shaped(StatusCode::INTERNAL_SERVER_ERROR).await;
        assert_eq!(body["error"]["code"], "internal");
        // A handler's own JSON error passes through untouched.
        let own = ApiError::not_found("project: no project x").into_response();
        let out = json_errors(own).await;
        let bytes = axum::body::to_bytes(out.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("no project x"));
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            inner: Vec<U>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct U {
            amount_minor: events::Amount,
        }
        let e = decode_json::<T>(br#"{"inner": [{"amount_minor": 1}, {"amount_minor": 0}]}"#)
            .unwrap_err();
        assert_eq!(e.code, "invalid_field");
        assert!(e.message.starts_with("inner[1].amount_minor: "), "{e:?}");
        let e = decode_json::<T>(b"{\"inner\": [").unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }
}
