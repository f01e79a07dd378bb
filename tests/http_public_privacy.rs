//! Invariant 6: public responses never contain a donor's personal data. Loads the demo data
//! set and scans every public response (project list, every project's detail, every page of
//! the log, every receipt, the head, a sample of the live stream) for the `donor_ref` key,
//! any donor reference and any channel transaction id.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ledger::demo::DemoSize;
use ledger::http::{app, AppState, TokenStore};
use serde_json::Value;
use tower::ServiceExt;

struct Scanner {
    app: axum::Router,
    personal: HashSet<String>,
    scanned: usize,
}

impl Scanner {
    async fn get(&mut self, uri: &str) -> Value {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {uri}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        self.check(uri, &text);
        serde_json::from_str(&text).unwrap()
    }

    fn check(&mut self, what: &str, text: &str) {
        self.scanned += 1;
        assert!(!text.contains("donor_ref"), "{what}: has the donor_ref key");
        assert!(
            !text.contains("channel_txn_id"),
            "{what}: has the channel_txn_id key"
        );
        // Every demo donor reference starts with one of these.
        assert!(!text.contains("donor-"), "{what}: has a donor reference");
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return, // SSE text is checked as text and per event below
        };
        self.check_value(what, &value);
    }

    fn check_value(&self, what: &str, v: &Value) {
        match v {
            Value::String(s) => assert!(
                !self.personal.contains(s),
                "{what}: has personal value {s:?}"
            ),
            Value::Array(items) => items.iter().for_each(|i| self.check_value(what, i)),
            Value::Object(map) => {
                for (k, v) in map {
                    assert!(!self.personal.contains(k), "{what}: has personal key {k:?}");
                    self.check_value(what, v);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_public_response_carries_donor_data() {
    let dir = tempfile::tempdir().unwrap();
    let size = DemoSize {
        donations: 2000,
        ..DemoSize::default()
    };
    let (node, log) = common::demo_with_log(dir.path(), &size).await;
    let head = node.log.head().await.unwrap().len;
    let state = node
        .state_at(head, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    // What counts as personal: every donor reference and channel transaction id, and the
    // bank references of payouts (the same references a bank statement line shows).
    let mut personal = HashSet::new();
    for d in state.donations.values() {
        personal.insert(d.donor_ref.to_string());
        personal.insert(d.channel_txn_id.to_string());
    }
    let bank_references: Vec<String> = state
        .payouts
        .values()
        .filter_map(|p| p.bank_reference.clone())
        .collect();
    assert!(!bank_references.is_empty(), "the demo disburses payouts");
    personal.extend(bank_references);
    assert!(personal.len() > 1000, "the demo has donors to look for");
    let receipts: Vec<String> = state
        .donations
        .values()
        .map(|d| d.receipt_code.to_string())
        .collect();
    let projects: Vec<String> = state.projects.keys().map(|p| p.to_string()).collect();
    let node = Arc::new(node);
    let app_state = AppState::new(node.clone(), TokenStore::open(&log).unwrap());
    let mut s = Scanner {
        app: app(app_state.clone()),
        personal,
        scanned: 0,
    };

    // Positive control: the staff view of the same data does show donor references, so the
    // scan would notice a leak.
    let (token, _) = TokenStore::open(&log)
        .unwrap()
        .create(
            events::Id::new("auditor-chen").unwrap(),
            ledger::http::Role::Auditor,
        )
        .unwrap();
    let req = Request::builder()
        .uri("/api/v1/staff/events?limit=1000")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let staff = s.app.clone().oneshot(req).await.unwrap();
    let staff = staff.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&staff).contains("donor_ref"));

    // Projects: every page of the list and every project's detail.
    let mut after: Option<String> = None;
    let mut listed = 0;
    loop {
        let uri = match &after {
            Some(a) => format!("/api/v1/public/projects?limit=50&after={a}"),
            None => "/api/v1/public/projects?limit=50".to_owned(),
        };
        let page = s.get(&uri).await;
        listed += page["items"].as_array().unwrap().len();
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, projects.len());
    // A help request's or micro-wish's payee is a person: shown only as "individual
    // recipient", as in the exports.
    let mut masked = 0;
    for p in &projects {
        let detail = s.get(&format!("/api/v1/public/projects/{p}")).await;
        assert_eq!(detail["figures"]["project"], p.as_str());
        let kind = state.projects[&events::Id::new(p).unwrap()].kind;
        if kind.goal_is_cap() {
            for payout in detail["payouts"].as_array().unwrap() {
                assert_eq!(payout["payee"], "个人受助人 (individual recipient)", "{p}");
                masked += 1;
            }
        }
    }
    assert!(
        masked > 0,
        "the demo pays out to help requests or micro-wishes"
    );
    let masked_in_details = masked;
    // The whole log, page by page.
    let mut from = 0u64;
    let mut seen = 0u64;
    loop {
        let page = s
            .get(&format!("/api/v1/public/events?from={from}&limit=1000"))
            .await;
        let events = page["events"].as_array().unwrap();
        seen += events.len() as u64;
        for e in events.iter().filter(|e| e["type"] == "payout_requested") {
            let project = events::Id::new(e["data"]["project"].as_str().unwrap()).unwrap();
            if state.projects[&project].kind.goal_is_cap() {
                assert_eq!(e["data"]["payee"], "个人受助人 (individual recipient)");
                masked += 1;
            }
        }
        match page["next_from"].as_u64() {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(seen, head);
    assert!(
        masked > masked_in_details,
        "the log shows masked payees too"
    );
    s.get("/api/v1/public/head").await;
    // Every receipt.
    for code in &receipts {
        let r = s.get(&format!("/api/v1/public/receipts/{code}")).await;
        assert_eq!(r["receipt_code"], code.as_str());
    }
    // A sample of the live stream from the start of the log.
    let req = Request::builder()
        .uri("/api/v1/public/stream?from=0")
        .body(Body::empty())
        .unwrap();
    let mut body = s.app.clone().oneshot(req).await.unwrap().into_body();
    let mut text = String::new();
    while text.matches("\n\n").count() < 500 {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("stream events")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    s.check("stream", &text);
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: Value = serde_json::from_str(line).unwrap();
        s.check_value("stream event", &v);
    }
    assert!(s.scanned > receipts.len() + projects.len());
    // Shut the ledger down properly: letting the runtime drop the last handle on the sled
    // database from a cancelled task can hang in sled's flush-on-drop.
    drop(body);
    drop(s);
    app_state.begin_shutdown();
    drop(app_state);
    ledger::cli::shutdown_node(node).await.unwrap();
}

/// A pledge names its sponsor publicly, so an anonymous gift's public data does not say
/// which pledge it pays; a named gift's does.
#[test]
fn an_anonymous_gift_does_not_name_the_pledge_it_pays() {
    let gift = |anonymous: bool| {
        events::EventBody::DonationReceived(events::DonationReceived {
            amount_minor: events::Amount::new(500_000).unwrap(),
            anonymous,
            channel: events::Channel::Bank,
            channel_txn_id: "bank-pledge-0001".into(),
            currency: events::Currency::CNY,
            donor_ref: events::Id::new("org-001").unwrap(),
            fee_minor: 0,
            pledge_seq: Some(12),
            project: events::Id::new("cp").unwrap(),
            public_name: (!anonymous).then(|| events::Text::new("某公司").unwrap()),
            receipt_code: "3F2A-91C0-5B7E-D4A8".into(),
        })
    };
    let state = projections::LedgerState::default();
    let hidden = ledger::http::public::public_data(&gift(true), &state);
    assert!(hidden.get("pledge_seq").is_none(), "{hidden}");
    let shown = ledger::http::public::public_data(&gift(false), &state);
    assert_eq!(shown["pledge_seq"], 12, "{shown}");
}
