//! Shared set-up for the HTTP tests: a ledger in a temporary directory, one token per role,
//! the router, and a request helper that answers (status, headers, JSON).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use events::Id;
use ledger::http::{app, AppState, Role, TokenStore};
use ledger::node::{Node, NodeConfig};
use serde_json::Value;
use tower::ServiceExt;

/// 2024-06-01 12:00 UTC.
pub const T0_MS: u64 = 1_717_243_200_000;

pub struct TestApp {
    pub app: Router,
    pub state: AppState,
    pub node: Arc<Node>,
    pub clock: Arc<AtomicU64>,
    pub tokens: HashMap<&'static str, String>,
    pub dir: tempfile::TempDir,
}

/// The tokens every test gets: name → (actor, role).
pub const TOKENS: &[(&str, &str, Role)] = &[
    ("admin", "admin-zhao", Role::Admin),
    ("recorder", "recorder-liu", Role::Recorder),
    ("approver", "director-wang", Role::Approver),
    ("auditor", "auditor-chen", Role::Auditor),
    // Same actor as `admin`, approver role: the four-eyes rule must still refuse.
    ("approver_as_admin", "admin-zhao", Role::Approver),
];

pub async fn setup() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(T0_MS));
    let c = clock.clone();
    let (node, log) = Node::open_with_log(NodeConfig {
        data_dir: dir.path().to_owned(),
        ledger: Some(Id::new("test").unwrap()),
        clock: Arc::new(move || c.load(Ordering::Relaxed)),
    })
    .await
    .unwrap();
    let store = TokenStore::open(&log).unwrap();
    let mut tokens = HashMap::new();
    for (name, actor, role) in TOKENS {
        let (token, _) = store.create(Id::new(actor).unwrap(), *role).unwrap();
        tokens.insert(*name, token);
    }
    let node = Arc::new(node);
    let state = AppState::new(node.clone(), store);
    TestApp {
        app: app(state.clone()),
        state,
        node,
        clock,
        tokens,
        dir,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl TestApp {
    /// Shuts the ledger down the way `serve` does. Letting the runtime drop the last handle
    /// on the sled database from a cancelled task can hang in sled's flush-on-drop.
    pub async fn finish(self) {
        self.state.begin_shutdown();
        let TestApp {
            app,
            state,
            node,
            dir,
            ..
        } = self;
        drop(app);
        drop(state);
        ledger::cli::shutdown_node(node).await.unwrap();
        drop(dir);
    }

    pub fn token(&self, name: &str) -> &str {
        &self.tokens[name]
    }

    /// Sends a request with an optional token (by name) and JSON body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, uri, token, body.map(|b| b.to_string()), &[])
            .await
    }

    /// Sends raw body text with extra headers; `application/json` unless a header says otherwise.
    pub async fn call_with(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {}", self.token(t)));
        }
        let has_ct = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_ct {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, uri, token, None).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(token), Some(body)).await
    }

    /// Posts with an `Idempotency-Key`.
    pub async fn post_keyed(&self, uri: &str, token: &str, body: &Value, key: &str) -> Reply {
        self.call_with(
            Method::POST,
            uri,
            Some(token),
            Some(body.to_string()),
            &[("idempotency-key", key)],
        )
        .await
    }

    /// Posts and asserts 201.
    pub async fn created(&self, uri: &str, token: &str, body: Value) -> Value {
        let r = self.post(uri, token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "POST {uri}: {r:?}");
        r.body
    }

    /// Opens a general fund `id` and gives it `amount` through one donation.
    pub async fn funded_project(&self, id: &str, amount: u64) -> Value {
        self.created(
            "/api/v1/staff/projects",
            "admin",
            serde_json::json!({"project": id, "kind": "general_fund", "name": "基金", "currency": "CNY"}),
        )
        .await;
        self.created(
            "/api/v1/staff/donations",
            "recorder",
            donation(id, amount, &format!("fund-{id}"), "donor-000001"),
        )
        .await
    }
}

pub fn donation(project: &str, amount: u64, txn: &str, donor: &str) -> Value {
    serde_json::json!({
        "project": project,
        "amount_minor": amount,
        "currency": "CNY",
        "channel": "wechat",
        "channel_txn_id": txn,
        "donor_ref": donor,
    })
}
