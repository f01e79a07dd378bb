//! The public transparency routes.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /log/checkpoint` | latest signed checkpoint, `text/plain`, `Cache-Control: no-cache` |
//! | `GET /log/key` | the verifier key, `<name>+<key id>+<base64>` and a newline |
//! | `GET /log/tile/<L>/<N>[.p/<W>]` | C2SP tlog-tiles hash tile, `application/octet-stream` |
//! | `GET /log/tile/entries/<N>[.p/<W>]` | entry bundle: each event's canonical bytes |
//! | `GET /api/v1/public/proofs/inclusion?seq=N&tree_size=M` (or `hash=HEX`) | [`InclusionProof`] |
//! | `GET /api/v1/public/proofs/consistency?from=M&to=N` | [`ConsistencyProof`] |
//! | `GET /api/v1/public/checkpoints/{size}` | the checkpoint published at that size, `text/plain` |
//! | `GET /api/v1/public/receipts/{code}/proof` | [`ReceiptProof`] |
//!
//! Full tiles never change: `Cache-Control: public, max-age=31536000, immutable`. A partial
//! tile of width W never changes either, but logs may stop serving it once the full tile
//! exists, so it gets `public, max-age=60`. Every caller error is a 4xx with
//! `{"error": {"code", "message"}}` naming the parameter and its limit; internal errors are
//! logged and answered with a 500 that says nothing about them.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use events::merkle::{consistency_proof, inclusion_proof};
use events::tiles::TILE_HEIGHT;
use events::{entry_bundle, is_receipt_code, Hash, Tile, TileKind};
use serde_json::json;

use super::index::LookupError;
use super::wire::{hashes_to_hex, ConsistencyProof, InclusionProof, ReceiptProof, RefundProof};
use super::TlogState;
use crate::store::merkle::TILE_NODES;

/// The longest query string the proof endpoints read.
pub const QUERY_BYTES_MAX: usize = 1024;
/// The longest path parameter (receipt code, size) echoed or parsed.
const PATH_PARAM_BYTES_MAX: usize = 128;

const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CACHE_PARTIAL: &str = "public, max-age=60";
const CACHE_LATEST: &str = "no-cache";

pub(super) fn router(state: TlogState) -> Router {
    Router::new()
        .route("/log/checkpoint", get(latest_checkpoint))
        .route("/log/key", get(verifier_key))
        .route("/log/tile/{*path}", get(tile))
        .route("/api/v1/public/proofs/inclusion", get(inclusion))
        .route("/api/v1/public/proofs/consistency", get(consistency))
        .route("/api/v1/public/checkpoints/{size}", get(checkpoint_at))
        .route("/api/v1/public/receipts/{code}/proof", get(receipt_proof))
        .with_state(state)
}

/// An answer other than success. Caller errors name the parameter; internal errors are
/// logged here and never described to the caller.
#[derive(Debug)]
pub enum ApiError {
    /// 400: a parameter is missing, malformed or out of its limits.
    BadParameter {
        param: &'static str,
        message: String,
    },
    /// 404: nothing at this address (yet).
    NotFound { code: &'static str, message: String },
    /// 503: the answer needs an index that is still being built.
    Unavailable(String),
    /// 500: a bug or a storage failure.
    Internal(String),
}

impl ApiError {
    fn bad(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            param,
            message: format!("{param}: {}", message.into()),
        }
    }

    fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::NotFound {
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadParameter { message, .. } => {
                (StatusCode::BAD_REQUEST, "bad_parameter", message)
            }
            ApiError::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message),
            ApiError::Unavailable(message) => {
                (StatusCode::SERVICE_UNAVAILABLE, "index_building", message)
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "tlog route failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged".to_owned(),
                )
            }
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}

/// Runs storage work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// A value as it may be echoed in an error: at most 40 characters, debug-quoted.
fn echo(value: &str) -> String {
    let mut cut: String = value.chars().take(40).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// A decimal u64: digits only, no sign, at most 20 of them.
fn parse_u64(param: &'static str, value: &str) -> Result<u64, ApiError> {
    let ok = !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::bad(
                param,
                format!(
                    "must be a decimal integer from 0 to {} (got {})",
                    u64::MAX,
                    echo(value)
                ),
            )
        })
}

/// The query parameters, each at most once, none but `allowed`.
fn parse_query(
    raw: Option<String>,
    allowed: &[&'static str],
) -> Result<HashMap<&'static str, String>, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > QUERY_BYTES_MAX {
        return Err(ApiError::bad(
            "query",
            format!("is {} bytes; the limit is {QUERY_BYTES_MAX}", raw.len()),
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw)
        .map_err(|_| ApiError::bad("query", "is not a valid URL-encoded query string"))?;
    let mut out = HashMap::new();
    for (name, value) in pairs {
        let Some(param) = allowed.iter().find(|a| **a == name) else {
            return Err(ApiError::bad(
                "query",
                format!(
                    "unknown parameter {}; this endpoint takes {}",
                    echo(&name),
                    allowed.join(", ")
                ),
            ));
        };
        if out.insert(*param, value).is_some() {
            return Err(ApiError::bad(param, "is given more than once"));
        }
    }
    Ok(out)
}

fn path_param(
    param: &'static str,
    value: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(value) = value.map_err(|_| ApiError::bad(param, "is not valid UTF-8 text"))?;
    if value.len() > PATH_PARAM_BYTES_MAX {
        return Err(ApiError::bad(
            param,
            format!(
                "is {} bytes; the limit is {PATH_PARAM_BYTES_MAX}",
                value.len()
            ),
        ));
    }
    Ok(value)
}

/// A tree size a proof may be asked at: at most the current durable size.
fn check_size(param: &'static str, size: u64, current: u64) -> Result<(), ApiError> {
    if size > current {
        return Err(ApiError::bad(
            param,
            format!("{size} is beyond the log's current tree size {current}"),
        ));
    }
    Ok(())
}

fn text_response(body: String, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

async fn latest_checkpoint(State(state): State<TlogState>) -> Result<Response, ApiError> {
    let store = state.checkpoints.clone();
    let latest = blocking(move || store.latest().map_err(ApiError::internal)).await?;
    match latest {
        Some((_, note)) => Ok(text_response(note, CACHE_LATEST)),
        None => Err(ApiError::not_found(
            "no_checkpoint",
            "this ledger has published no checkpoint yet (it signs one about a second after it grows, once it has a key)",
        )),
    }
}

async fn verifier_key(State(state): State<TlogState>) -> Result<Response, ApiError> {
    match state.checkpoints.key() {
        Some(key) => Ok(text_response(format!("{}\n", key.to_text()), CACHE_LATEST)),
        None => Err(ApiError::not_found(
            "no_key",
            "this ledger has no checkpoint signing key",
        )),
    }
}

async fn tile(
    State(state): State<TlogState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let path = path_param("tile path", path)?;
    let tile = Tile::parse_path(&format!("tile/{path}"))
        .map_err(|e| ApiError::bad("tile path", e.to_string()))?;
    let size = state.tree.size();
    let missing = || {
        ApiError::not_found(
            "no_such_tile",
            format!("tile/{path} is not in the tree of size {size}"),
        )
    };
    let bytes = match tile.kind() {
        TileKind::Hashes { level } => {
            let node_level = u32::from(level) * u32::from(TILE_HEIGHT);
            let node_level = u8::try_from(node_level)
                .ok()
                .filter(|l| *l < 64)
                .ok_or_else(missing)?;
            let tree = state.tree.clone();
            let (index, width) = (tile.index(), tile.width());
            let found = blocking(
                move || match tree.tile_bytes(node_level, index, width, size) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(crate::store::TreeReadError::NotInTree { .. }) => Ok(None),
                    Err(e) => Err(ApiError::internal(e)),
                },
            )
            .await?;
            found.ok_or_else(missing)?
        }
        TileKind::Entries => {
            let first = tile
                .index()
                .checked_mul(TILE_NODES as u64)
                .ok_or_else(missing)?;
            let end = first
                .checked_add(u64::from(tile.width()))
                .ok_or_else(missing)?;
            if end > size {
                return Err(missing());
            }
            let events = state
                .log
                .read(first, usize::from(tile.width()))
                .await
                .map_err(ApiError::internal)?;
            if events.len() != usize::from(tile.width()) {
                return Err(ApiError::internal(format!(
                    "the log returned {} events for entries {first}..{end}",
                    events.len()
                )));
            }
            entry_bundle(events.iter().map(|e| e.canonical_bytes())).map_err(ApiError::internal)?
        }
    };
    let cache = if tile.is_partial() {
        CACHE_PARTIAL
    } else {
        CACHE_IMMUTABLE
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response())
}

async fn inclusion(
    State(state): State<TlogState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<InclusionProof>, ApiError> {
    let q = parse_query(raw, &["seq", "hash", "tree_size"])?;
    let tree_size = q
        .get("tree_size")
        .ok_or_else(|| {
            ApiError::bad(
                "tree_size",
                "is required (the size of the tree the proof is for)",
            )
        })
        .and_then(|v| parse_u64("tree_size", v))?;
    let current = state.tree.size();
    if tree_size == 0 {
        return Err(ApiError::bad(
            "tree_size",
            "must be at least 1 (the empty tree has no events)",
        ));
    }
    check_size("tree_size", tree_size, current)?;
    let seq = match (q.get("seq"), q.get("hash")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("seq", "give seq or hash, not both"));
        }
        (None, None) => {
            return Err(ApiError::bad("seq", "is required (or hash instead)"));
        }
        (Some(seq), None) => parse_u64("seq", seq)?,
        (None, Some(hash)) => {
            let hash = Hash::from_hex(hash).map_err(|_| {
                ApiError::bad(
                    "hash",
                    format!(
                        "must be an event hash: 64 lowercase hex digits (got {})",
                        echo(hash)
                    ),
                )
            })?;
            let found = match state.hashes.seq(&hash).await {
                Ok(found) => found,
                Err(LookupError::Building { indexed, total }) => {
                    return Err(ApiError::Unavailable(format!(
                        "hash: the event hash index is being built ({indexed} of {total} events); ask by seq, or again in a moment"
                    )))
                }
                Err(LookupError::Store(e)) => return Err(ApiError::internal(e)),
            };
            found.ok_or_else(|| {
                ApiError::not_found(
                    "no_such_event",
                    format!("no event with hash {hash} is indexed (the index may lag the log by a moment)"),
                )
            })?
        }
    };
    if seq >= tree_size {
        return Err(ApiError::bad(
            "seq",
            format!("event {seq} is not in the tree of size {tree_size} (seq must be less than tree_size)"),
        ));
    }
    let tree = state.tree.clone();
    let hashes = blocking(move || {
        let at = tree.at(tree_size).map_err(ApiError::internal)?;
        inclusion_proof(seq, tree_size, &at).map_err(ApiError::internal)
    })
    .await?;
    Ok(Json(InclusionProof {
        leaf_index: seq,
        tree_size,
        hashes: hashes_to_hex(&hashes),
    }))
}

async fn consistency(
    State(state): State<TlogState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let q = parse_query(raw, &["from", "to"])?;
    let required = |param: &'static str| {
        q.get(param)
            .ok_or_else(|| ApiError::bad(param, "is required"))
            .and_then(|v| parse_u64(param, v))
    };
    let from = required("from")?;
    let to = required("to")?;
    check_size("to", to, state.tree.size())?;
    if from > to {
        return Err(ApiError::bad(
            "from",
            format!("{from} is larger than to ({to}); a consistency proof goes from a smaller tree to a larger one"),
        ));
    }
    let tree = state.tree.clone();
    let hashes = blocking(move || {
        let at = tree.at(to).map_err(ApiError::internal)?;
        consistency_proof(from, to, &at).map_err(ApiError::internal)
    })
    .await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        hashes: hashes_to_hex(&hashes),
    }))
}

async fn checkpoint_at(
    State(state): State<TlogState>,
    size: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let size = parse_u64("size", &path_param("size", size)?)?;
    let store = state.checkpoints.clone();
    let note = blocking(move || store.at(size).map_err(ApiError::internal)).await?;
    match note {
        Some(note) => Ok(text_response(note, CACHE_IMMUTABLE)),
        None => Err(ApiError::not_found(
            "no_checkpoint",
            format!("no checkpoint was published at tree size {size}"),
        )),
    }
}

async fn receipt_proof(
    State(state): State<TlogState>,
    code: Result<Path<String>, PathRejection>,
) -> Result<Json<ReceiptProof>, ApiError> {
    let code = path_param("code", code)?;
    if !is_receipt_code(&code) {
        return Err(ApiError::bad(
            "code",
            format!(
                "{} is not a receipt code: 16 uppercase hex digits in groups of four, such as \
                 3F2A-91C0-5B7E-D4A8",
                echo(&code)
            ),
        ));
    }
    let found = state
        .ledger
        .borrow()
        .donation_by_receipt(&code)
        .map(|d| (d.seq, d.refunded_seq));
    let (seq, refunded_seq) = found.ok_or_else(|| {
        ApiError::not_found(
            "no_such_receipt",
            format!("no donation has receipt code {code}"),
        )
    })?;
    let store = state.checkpoints.clone();
    let latest = blocking(move || store.latest().map_err(ApiError::internal)).await?;
    let (size, note) = latest.filter(|(size, _)| *size > seq).ok_or_else(|| {
        ApiError::not_found(
            "not_yet_checkpointed",
            format!(
                "event {seq} is not yet covered by a signed checkpoint; ask again in a few seconds"
            ),
        )
    })?;
    let (event_hash, event, inclusion) = proven_event(&state, seq, size).await?;
    let inclusion = inclusion.ok_or_else(|| ApiError::internal("a checkpointed event unproven"))?;
    let refund = match refunded_seq {
        None => None,
        Some(refund_seq) => {
            let (event_hash, event, inclusion) = proven_event(&state, refund_seq, size).await?;
            Some(RefundProof {
                seq: refund_seq,
                event_hash,
                event,
                inclusion,
            })
        }
    };
    Ok(Json(ReceiptProof {
        receipt_code: code,
        seq,
        event_hash,
        event,
        checkpoint: note,
        inclusion,
        refund,
    }))
}

/// Event `seq`'s hash and canonical bytes, and its inclusion proof at tree size `size` when
/// the tree of that size holds it.
async fn proven_event(
    state: &TlogState,
    seq: u64,
    size: u64,
) -> Result<(String, String, Option<InclusionProof>), ApiError> {
    let event = state
        .log
        .read(seq, 1)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .next()
        .filter(|e| e.seq() == seq)
        .ok_or_else(|| ApiError::internal(format!("event {seq} of a receipt is not in the log")))?;
    let inclusion = if seq < size {
        let tree = state.tree.clone();
        let hashes = blocking(move || {
            let at = tree.at(size).map_err(ApiError::internal)?;
            inclusion_proof(seq, size, &at).map_err(ApiError::internal)
        })
        .await?;
        Some(InclusionProof {
            leaf_index: seq,
            tree_size: size,
            hashes: hashes_to_hex(&hashes),
        })
    } else {
        None
    };
    let canonical = String::from_utf8(event.canonical_bytes().to_vec())
        .map_err(|_| ApiError::internal("canonical bytes are not UTF-8"))?;
    Ok((event.hash().to_hex(), canonical, inclusion))
}
