//! The HTTP service (axum): a staff API behind bearer tokens with roles, a public read-only
//! transparency API, Server-Sent Events of new public events, `/healthz`, Prometheus
//! `/metrics` and the OpenAPI 3 document at `/openapi.json`, generated from these handlers.
//!
//! The router comes from [`app`], so tests drive it with `tower::ServiceExt::oneshot`;
//! [`serve`] runs it on a listener with graceful shutdown. `docs/HTTP.md` is the user's guide.

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use axum::Router;
use projections::LedgerState;
use tokio::sync::{watch, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::node::Node;

pub mod auth;
pub mod error;
pub mod openapi;
pub mod public;
pub mod staff;
pub mod statements;
pub mod tokens;

pub use auth::{Principal, Role};
pub use error::{ApiError, ErrorBody};
pub use tokens::{TokenInfo, TokenStore};

/// Every limit of the HTTP API in one place; `docs/HTTP.md` lists them.
pub mod limits {
    use std::time::Duration;

    /// The largest JSON body of a single-command request.
    pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;
    /// The largest body of a batch request (1000 donations of a few hundred bytes each).
    pub const BATCH_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;
    /// The most donations in one batch request (the writer's submission limit).
    pub const BATCH_DONATIONS_MAX: usize = crate::writer::SUBMISSION_COMMANDS_MAX;
    /// How long a read with `min_seq` waits for the read models to catch up.
    pub const READ_WAIT: Duration = Duration::from_secs(5);
    /// The longest a request may take before it is answered 504 (outcome unknown).
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Events per page of the log, by default and at most.
    pub const PAGE_EVENTS_DEFAULT: usize = 100;
    pub const PAGE_EVENTS_MAX: usize = 1000;
    /// Items per page of other lists (projects, payouts, pledges, moves), by default and at most.
    pub const PAGE_ITEMS_DEFAULT: usize = 100;
    pub const PAGE_ITEMS_MAX: usize = 500;
    /// The largest statement file uploaded to `POST /api/v1/staff/statements` (64 MiB).
    pub const STATEMENT_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// Exceptions per page of a statement's reconciliation, by default and at most.
    pub const PAGE_EXCEPTIONS_DEFAULT: usize = 100;
    pub const PAGE_EXCEPTIONS_MAX: usize = 1000;
    /// Server-Sent Events streams open at once; more are answered 503.
    pub const SSE_STREAMS_MAX: usize = 256;
    /// How often an idle SSE stream sends a keep-alive comment.
    pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
    /// How long graceful shutdown waits for open connections before it stops anyway.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    pub tokens: TokenStore,
    shutdown_tx: Arc<watch::Sender<bool>>,
    pub shutdown: watch::Receiver<bool>,
    pub sse_streams: Arc<Semaphore>,
    /// Statement uploads record one at a time (lines must be recorded in order).
    pub statement_imports: Arc<tokio::sync::Mutex<()>>,
    /// Whether the verification page honours its test hook (`&tamper=`, docs/WEB.md). Off
    /// in service: a link with it would make a donor's page fail a good receipt. The browser
    /// tests turn it on ([`AppState::with_test_hooks`]).
    pub test_hooks: bool,
}

impl AppState {
    pub fn new(node: Arc<Node>, tokens: TokenStore) -> AppState {
        let (tx, rx) = watch::channel(false);
        AppState {
            node,
            tokens,
            shutdown_tx: Arc::new(tx),
            shutdown: rx,
            sse_streams: Arc::new(Semaphore::new(limits::SSE_STREAMS_MAX)),
            statement_imports: Arc::new(tokio::sync::Mutex::new(())),
            test_hooks: false,
        }
    }

    /// The same state with the verification page's test hook on (for tests only).
    pub fn with_test_hooks(mut self) -> AppState {
        self.test_hooks = true;
        self
    }

    /// Ends the SSE streams, so a graceful shutdown does not wait for them forever.
    pub fn begin_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
    }

    /// The read models, after waiting (at most [`limits::READ_WAIT`]) until they include the
    /// event at `min_seq`.
    pub async fn read_state(&self, min_seq: Option<u64>) -> Result<Arc<LedgerState>, ApiError> {
        let Some(seq) = min_seq else {
            return Ok(self.node.state());
        };
        let position = seq.checked_add(1).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "min_seq: must be below 2^64 − 1")
        })?;
        match self.node.state_at(position, limits::READ_WAIT).await {
            Some(state) => Ok(state),
            None => Err(ApiError::unavailable(
                "not_caught_up",
                format!(
                    "min_seq: the read models hold events up to position {} and did not reach seq {seq} within {} s",
                    self.node.state().position,
                    limits::READ_WAIT.as_secs()
                ),
            )),
        }
    }
}

/// The whole router: routes, OpenAPI document, error shaping, timeouts, limits, tracing.
pub fn app(state: AppState) -> Router {
    // The transparency log's public routes (checkpoints, tiles, proofs, receipt bundles).
    let tlog = crate::tlog::routes(crate::tlog::TlogState::from_node(&state.node));
    let state_for_web = state.clone();
    let (router, doc) = openapi::router().split_for_parts();
    let doc_json = Arc::new(doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialize");
        "{}".to_owned()
    }));
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
        .merge(tlog)
        .merge(crate::web::routes(state_for_web))
        .layer(CatchPanicLayer::new())
        // 504, not 408: the caller did nothing wrong, and a write that timed out may still
        // be recorded (its job is queued), so its outcome is unknown (docs/HTTP.md).
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            limits::REQUEST_TIMEOUT,
        ))
        // Outside the panic and timeout layers, so their answers get the JSON shape too.
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::from_fn(error::body_limit))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then stops taking
/// connections, ends the SSE streams, lets in-flight requests (and so in-flight writes)
/// finish, waiting at most [`limits::SHUTDOWN_GRACE`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone());
    let (stopping_tx, mut stopping_rx) = watch::channel(false);
    let on_signal = {
        let state = state.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            state.begin_shutdown();
            stopping_tx.send_replace(true);
        }
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(on_signal);
    let server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = stopping_rx.wait_for(|s| *s).await;
            tokio::time::sleep(limits::SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open after the shutdown grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
