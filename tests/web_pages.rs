//! The web site's pages, driven through the router with `tower::ServiceExt::oneshot` over a
//! small demo ledger: status codes, key figures, the language switch, 404s, escaping of a
//! hostile project name, no donor data on any page; and the FIFO tracing rule on a ledger
//! small enough to work out by hand.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use events::{Amount, Channel, Currency, Id, PayoutRequested, ProjectKind, Text};
use http_body_util::BodyExt;
use ledger::command::{Command, DonationInput};
use ledger::demo::DemoSize;
use ledger::http::{app, AppState, TokenStore};
use ledger::node::Node;
use ledger::web::money;
use ledger::web::trace::{trace_project, Source, Use};
use ledger::writer::Submission;
use tower::ServiceExt;

fn small_demo() -> DemoSize {
    DemoSize {
        community_projects: 4,
        help_requests: 3,
        micro_wishes: 3,
        general_funds: 1,
        sponsors: 3,
        donations: 600,
        seed: 11,
    }
}

async fn submit(node: &Node, actor: &str, commands: Vec<Command>) -> Vec<u64> {
    let o = node
        .writer
        .submit(Submission {
            actor: Id::new(actor).unwrap(),
            token_issuer: None,
            idempotency_key: None,
            commands,
        })
        .await
        .unwrap();
    o.events.iter().map(|e| e.seq()).collect()
}

async fn caught_up(node: &Node) -> Arc<projections::LedgerState> {
    let head = node.log.head().await.unwrap().len;
    node.state_at(head, std::time::Duration::from_secs(30))
        .await
        .unwrap()
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

const HOSTILE: &str = r#"<script>alert("x")</script> & 'quotes'"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_over_demo_data() {
    let dir = tempfile::tempdir().unwrap();
    let (node, log) = common::demo_with_log(dir.path(), &small_demo()).await;
    submit(
        &node,
        "admin-zhao",
        vec![Command::OpenProject {
            project: Id::new("evil").unwrap(),
            kind: ProjectKind::GeneralFund,
            name: Text::new(HOSTILE).unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        }],
    )
    .await;
    // Two matches under review: one stays frozen, the other is released after review.
    let state = caught_up(&node).await;
    let reviewed: Vec<u64> = state
        .donations
        .values()
        .filter(|d| {
            d.matched.is_some()
                && d.refunded_seq.is_none()
                && state.projects[&d.project].balances.available().unwrap()
                    >= 2 * d.matched.as_ref().unwrap().1
        })
        .map(|d| d.seq)
        .take(2)
        .collect();
    assert_eq!(reviewed.len(), 2, "the demo has matched gifts to review");
    let (frozen_gift, released_gift) = (reviewed[0], reviewed[1]);
    let review = |donation_seq: u64| Text::new(&format!("review {donation_seq}")).unwrap();
    submit(
        &node,
        "risk-a",
        vec![
            Command::FreezeMatch {
                donation_seq: frozen_gift,
                reason: review(frozen_gift),
            },
            Command::FreezeMatch {
                donation_seq: released_gift,
                reason: review(released_gift),
            },
        ],
    )
    .await;
    submit(
        &node,
        "risk-b",
        vec![Command::ReleaseMatch {
            donation_seq: released_gift,
            reason: review(released_gift),
        }],
    )
    .await;
    let state = caught_up(&node).await;
    let mut personal = HashSet::new();
    for d in state.donations.values() {
        personal.insert(d.donor_ref.to_string());
        personal.insert(d.channel_txn_id.to_string());
    }
    let node = Arc::new(node);
    let app_state = AppState::new(node.clone(), TokenStore::open(&log).unwrap());
    let router = app(app_state.clone());
    let mut pages: Vec<(String, String)> = Vec::new();
    let mut ok = |uri: String, body: String| pages.push((uri, body));

    // Projects, both languages, and the language switch.
    let (status, zh) = get(&router, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(zh.contains(r#"<html lang="zh-CN">"#));
    assert!(zh.contains("公益项目"));
    assert!(zh.contains(r#"href="/?lang=en""#), "a switch to English");
    let (status, en) = get(&router, "/?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(en.contains(r#"<html lang="en">"#));
    assert!(en.contains("Projects") && en.contains("Raised (net of fees)"));
    assert!(
        en.contains(r#"<a href="/" lang="zh-CN" hreflang="zh-CN">中文</a>"#),
        "a switch back to Chinese"
    );
    let open: Vec<_> = state.projects.values().filter(|p| p.open).collect();
    for p in &open {
        if p.id.as_str() == "evil" {
            continue;
        }
        assert!(zh.contains(p.name.as_str()), "{} listed", p.id);
        assert!(zh.contains(&money(p.balances.raised, "CNY")));
    }
    // The hostile name is escaped, never markup.
    assert!(!zh.contains("<script>alert"));
    assert!(zh.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;"));
    ok("/".into(), zh);
    ok("/?lang=en".into(), en);

    // Page by page: following "next" with a small limit lists every open project once.
    let mut listed = Vec::new();
    let mut uri = "/?limit=5&lang=en".to_owned();
    loop {
        let (status, body) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let ids: Vec<String> = body
            .split("<code>")
            .skip(1)
            .map(|rest| rest[..rest.find("</code>").unwrap()].to_owned())
            .collect();
        assert!(ids.len() <= 5, "{uri}: {ids:?}");
        listed.extend(ids);
        match body.split(r#"<a rel="next" href=""#).nth(1) {
            Some(rest) => uri = rest[..rest.find('"').unwrap()].replace("&amp;", "&"),
            None => break,
        }
    }
    let expected: Vec<String> = open
        .iter()
        .map(|p| p.id.as_str().replace('&', "&amp;"))
        .collect();
    assert_eq!(listed, expected, "every open project once, in id order");
    for bad in ["/?limit=0", "/?limit=101", "/?limit=x", "/?after=A%20B"] {
        let (status, body) = get(&router, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body.contains(r#"role="alert""#), "{bad}");
    }

    // The kind filter.
    let (status, wishes) = get(&router, "/?kind=micro_wish&lang=en").await;
    assert_eq!(status, StatusCode::OK);
    for p in &open {
        let shown = wishes.contains(&format!("<code>{}</code>", p.id));
        assert_eq!(shown, p.kind == ProjectKind::MicroWish, "{}", p.id);
    }
    assert!(wishes.contains(r#"<a href="/?kind=micro_wish" lang="zh-CN""#));
    ok("/?kind=micro_wish".into(), wishes);

    // Every project's page.
    let mut refunds_shown = 0;
    let mut frozen_shown = 0;
    for p in state.projects.values() {
        let uri = format!("/projects/{}?lang=en", p.id);
        let (status, body) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(body.contains(&money(p.balances.paid_out, "CNY")));
        assert!(body.contains("Last 3 months disclosure"));
        for seq in &p.payouts {
            let r = &state.payouts[seq];
            assert!(body.contains(&r.document_sha256.unwrap().to_hex()), "{uri}");
        }
        if p.donation_count > 0 {
            assert!(body.contains("<svg"), "{uri}: a chart");
        }
        // The figures add up to what is available, refunds and moves included.
        let f = |name: &str| figure(&body, name);
        assert_eq!(
            f("raised") + f("matched") - f("refunded") + f("fees_returned") + f("moved_in")
                - f("moved_out")
                - f("paid_out")
                - f("reserved")
                - f("frozen"),
            f("available"),
            "{uri}"
        );
        // The 3-month box is an identity too, and ends at the project's balance.
        assert_eq!(
            f("period_opening") + f("period_in") - f("period_out"),
            f("period_closing"),
            "{uri}"
        );
        assert_eq!(
            f("period_closing"),
            p.balances.balance().unwrap() as i128,
            "{uri}"
        );
        assert_eq!(
            f("period_closing") - f("period_set_aside"),
            f("period_available"),
            "{uri}"
        );
        assert_eq!(f("period_available"), f("available"), "{uri}");
        if p.balances.frozen > 0 {
            frozen_shown += 1;
            assert_eq!(f("frozen"), p.balances.frozen as i128, "{uri}");
            assert!(body.contains("Matches frozen under review"), "{uri}");
        }
        if p.balances.refunded > 0 {
            refunds_shown += 1;
            assert_eq!(f("refunded"), p.balances.refunded as i128, "{uri}");
        }
        ok(uri, body);
    }
    assert!(refunds_shown > 0, "some project page shows refunds");

    assert!(
        frozen_shown > 0,
        "some project page shows a match under review"
    );
    // The receipts say what became of the match.
    let code = |seq: u64| state.donations[&seq].receipt_code;
    let (_, body) = get(
        &router,
        &format!("/receipt?code={}&lang=en", code(frozen_gift)),
    )
    .await;
    assert!(
        body.contains("under review: the match is frozen and the project cannot spend it yet"),
        "{body}"
    );
    let (_, body) = get(
        &router,
        &format!("/receipt?code={}&lang=en", code(released_gift)),
    )
    .await;
    assert!(
        body.contains("released back to the pool after review on"),
        "{body}"
    );
    let (_, evil) = get(&router, "/projects/evil").await;
    assert!(!evil.contains("<script>alert") && evil.contains("&lt;script&gt;"));

    // 404s are HTML pages.
    let (status, body) = get(&router, "/projects/no-such-project").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("<!DOCTYPE html>") && body.contains("no-such-project"));
    let (status, body) = get(&router, "/projects/%3Cb%3E").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("<b>"));
    // The JSON API still answers JSON errors.
    let (status, body) = get(&router, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.starts_with('{'));

    // Receipts: the donation, its match, where it went; every fen traced or held.
    let (status, form) = get(&router, "/receipt").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(r#"<label for="code">"#));
    let (status, _) = get(&router, "/receipt?code=0000-0000-0000-0000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&router, "/receipt?code=%3Cscript%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut traced_to_payout = 0;
    for d in state.donations.values().step_by(7) {
        let uri = format!("/receipt?code={}&lang=en", d.receipt_code);
        let (status, body) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(body.contains(d.receipt_code.as_str()));
        assert!(body.contains(&money(d.amount_minor, "CNY")));
        if let Some((_, m)) = &d.matched {
            assert!(body.contains(&money(*m, "CNY")), "{uri}: the match");
        }
        if body.contains("Payout 20") {
            traced_to_payout += 1;
        }
        ok(uri, body);
    }
    assert!(traced_to_payout > 0, "some gifts are traced to payouts");
    // A refunded gift says so, with its refund's entry, and its match as released; another
    // says it was received.
    let refunded = state
        .donations
        .values()
        .find(|d| d.refunded_seq.is_some())
        .expect("the demo refunds gifts");
    let (_, body) = get(
        &router,
        &format!("/receipt?code={}&lang=en", refunded.receipt_code),
    )
    .await;
    let r = refunded.refunded_seq.unwrap();
    assert!(
        body.contains(r#"<dd data-figure="status">Refunded to the donor on "#)
            && body.contains(&format!("(ledger entry #{r})</dd>")),
        "{body}"
    );
    if refunded.matched.is_some() {
        assert!(body.contains("; released back to the pool"));
    }
    let kept = state
        .donations
        .values()
        .find(|d| d.refunded_seq.is_none())
        .unwrap();
    let (_, body) = get(
        &router,
        &format!("/receipt?code={}&lang=en", kept.receipt_code),
    )
    .await;
    assert!(body.contains(r#"<dd data-figure="status">Received</dd>"#));

    // Verify and feed.
    let code = state.donations.values().next().unwrap().receipt_code;
    let (status, body) = get(&router, &format!("/verify?code={code}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<output id="result""#));
    assert!(body.contains(r#"<script src="/assets/verify.js" defer>"#));
    assert!(body.contains(r#"data-key="""#), "no key pinned");
    // The test hook is off in service: a link with `&tamper=1` cannot make a donor's page
    // fail a good receipt (the script honours it only with `data-test-hooks`).
    assert!(!body.contains("data-test-hooks"));
    let (_, tampered) = get(&router, &format!("/verify?code={code}&tamper=1")).await;
    assert!(!tampered.contains("data-test-hooks"));
    let for_tests = app(app_state.clone().with_test_hooks());
    let (_, hooked) = get(&for_tests, &format!("/verify?code={code}&tamper=1")).await;
    assert!(hooked.contains(r#"data-test-hooks="1""#));
    drop(for_tests);
    ok("/verify".into(), body);
    // A pinned key goes to the script (escaped); one beyond the limit is refused.
    let (_, body) = get(&router, &format!("/verify?code={code}&key=a%22b")).await;
    assert!(body.contains(r#"data-key="a&quot;b""#), "{body}");
    let long = "k".repeat(1000);
    let (status, body) = get(&router, &format!("/verify?code={code}&key={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#"data-key="""#) && !body.contains(&long));
    // An unknown project kind is refused, naming the field and the kinds there are.
    let (status, body) = get(&router, "/?kind=bogus&lang=en").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("kind: no such kind of project &quot;bogus&quot;; one of community_project"),
        "{body}"
    );
    let (status, _) = get(&router, "/?kind=&lang=en").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an empty kind is every kind (the form's \"All\")"
    );
    let (status, body) = get(&router, "/verify?code=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.contains("verify.js"));
    let (status, body) = get(&router, "/feed?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    let head = node.log.head().await.unwrap().len;
    assert!(
        body.contains(&format!("#{} ", head - 1)),
        "the newest event"
    );
    // The live stream goes on from the event after the newest row, so nothing appended
    // before the script connects is missed.
    assert!(
        body.contains(&format!(r#"data-from="{head}""#)),
        "the stream's start"
    );
    // The live script gets a label for every event type, in the page's language; matches
    // are shown with their project's currency.
    let types = body
        .split(r#"data-types=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the feed's labels");
    let types: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&types.replace("&quot;", "\"")).unwrap();
    assert_eq!(types.len(), 26);
    assert_eq!(types["match_frozen"], "Match frozen for review");
    assert_eq!(types["match_unfrozen"], "Match cleared by review");
    assert_eq!(types["match_revoked"], "Match released after review");
    assert_eq!(types["match_allocated"], "Match allocated");
    assert_eq!(types["staff_token_issued"], "Staff token issued");
    assert_eq!(types["refund_fee_returned"], "Fee returned on a refund");
    assert_eq!(types["exception_resolved"], "Exception resolved");
    for row in body
        .split("<li>")
        .filter(|r| r.contains("<strong>Match allocated</strong>"))
    {
        assert!(row.contains(" · ¥"), "{row}");
    }
    ok("/feed".into(), body);
    // Audit the whole ledger: the page, its controls and its scripts, in both languages.
    let (status, zh) = get(&router, "/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(zh.contains(r#"<html lang="zh-CN">"#) && zh.contains("审计整个账本"));
    assert!(zh.contains(r#"<a href="/audit?lang=en" lang="en" hreflang="en">English</a>"#));
    let (status, en) = get(&router, "/audit?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(en.contains(r#"<html lang="en">"#) && en.contains("Audit the whole ledger"));
    assert!(en.contains(r#"<a href="/audit" lang="zh-CN" hreflang="zh-CN">中文</a>"#));
    // In the nav of every page, in the page's language.
    assert!(zh.contains(r#"<li><a href="/audit">审计整个账本</a></li>"#));
    assert!(en.contains(r#"<li><a href="/audit?lang=en">Audit the ledger</a></li>"#));
    for body in [&zh, &en] {
        // The shared checks load first; `defer` keeps the order.
        let tlog = body.find(r#"<script src="/assets/tlog.js" defer></script>"#);
        let audit = body.find(r#"<script src="/assets/audit.js" defer></script>"#);
        assert!(tlog.is_some() && audit.is_some() && tlog < audit);
        assert!(body.contains("<noscript>"));
        // Disabled until the script enables it.
        assert!(body.contains(r#"<button id="start" type="button" disabled>"#));
        assert!(body.contains(r#"<label for="audit-progress">"#));
        assert!(body.contains(r#"<label for="pinned-key">"#));
        assert!(body.contains(r#"<input id="pinned-key" name="key" value="""#));
        assert!(body.contains(r#"<progress id="audit-progress""#));
        assert!(body.contains(r#"<p id="audit-status">"#));
        assert!(body.contains(r#"<output id="result" aria-live="polite">"#));
        assert!(body.contains(r#"<p id="verdict" role="status">"#));
    }
    assert!(en.contains("needs JavaScript"));
    assert!(
        en.contains("&lt;this site&gt;"),
        "the noscript text is escaped"
    );
    assert!(zh.contains("需要启用 JavaScript"));
    ok("/audit".into(), zh);
    ok("/audit?lang=en".into(), en);
    // A key in the query fills in the field, escaped, and is kept by the language switch; one
    // over the limit is refused.
    let (status, body) = get(&router, "/audit?key=%3Cb%3E%22x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"value="&lt;b&gt;&quot;x""#) && !body.contains("<b>"));
    assert!(body.contains(r#"href="/audit?key=%3Cb%3E%22x&amp;lang=en""#));
    let long = "k".repeat(ledger::web::PINNED_KEY_BYTES_MAX + 1);
    let (status, body) = get(&router, &format!("/audit?key={long}&lang=en")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("the limit is 512") && !body.contains(&long));
    let (_, verify) = get(&router, &format!("/verify?code={code}")).await;
    assert!(verify.contains(r#"<script src="/assets/tlog.js" defer></script>"#));

    for (asset, content_type) in [
        ("/assets/style.css", "text/css"),
        ("/assets/tlog.js", "text/javascript; charset=utf-8"),
        ("/assets/verify.js", "text/javascript; charset=utf-8"),
        ("/assets/audit.js", "text/javascript; charset=utf-8"),
        ("/assets/feed.js", "text/javascript; charset=utf-8"),
    ] {
        let req = Request::builder().uri(asset).body(Body::empty()).unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert_eq!(resp.headers()["content-type"], content_type, "{asset}");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.starts_with(b"/"), "{asset} starts with its comment");
    }

    // No donor data on any page.
    for (uri, body) in &pages {
        assert!(body.contains("<meta name=\"viewport\""), "{uri}");
        assert!(
            !body.contains("donor_ref") && !body.contains("donor-"),
            "{uri}"
        );
        for value in &personal {
            assert!(!body.contains(value.as_str()), "{uri} shows {value}");
        }
    }
    assert!(pages.len() > 20);

    drop(router);
    app_state.begin_shutdown();
    drop(app_state);
    ledger::cli::shutdown_node(node).await.unwrap();
}

/// The FIFO rule on the demo: every lot is fully accounted for, nothing is uncovered, and
/// what the lots still hold is each project's balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_trace_accounts_for_every_fen_of_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _log) = common::demo_with_log(dir.path(), &small_demo()).await;
    let state = caught_up(&node).await;
    let mut refunds = 0;
    for p in state.projects.values() {
        let t = trace_project(&state, &p.id);
        assert_eq!(t.uncovered_minor, 0, "{}", p.id);
        assert_eq!(Some(t.held_minor()), p.balances.balance(), "{}", p.id);
        for lot in &t.lots {
            let used: u64 = lot.uses.iter().map(|(_, a)| a).sum();
            assert_eq!(used + lot.held_minor, lot.amount_minor);
            if lot
                .uses
                .iter()
                .any(|(u, _)| matches!(u, Use::Refund { .. }))
            {
                refunds += 1;
            }
        }
        let paid: u64 = t
            .lots
            .iter()
            .flat_map(|l| &l.uses)
            .filter(|(u, _)| matches!(u, Use::Payout { .. }))
            .map(|(_, a)| a)
            .sum();
        assert_eq!(paid, p.balances.paid_out, "{}", p.id);
    }
    assert!(refunds > 0, "the demo has refunds");
    node.shutdown().await.unwrap();
}

/// A ledger of one general fund, `fifo`, for the traces worked by hand.
async fn fifo_ledger(dir: &std::path::Path) -> (Node, ledger::store::SledLog, Id) {
    let (node, log, project, _clock) = fifo_ledger_with_clock(dir).await;
    (node, log, project)
}

/// [`fifo_ledger`] with the clock its events are stamped by.
async fn fifo_ledger_with_clock(
    dir: &std::path::Path,
) -> (Node, ledger::store::SledLog, Id, ledger::demo::DemoClock) {
    let (node, log, clock) = common::open_erqi(dir).await;
    let project = Id::new("fifo").unwrap();
    submit(
        &node,
        "admin-zhao",
        vec![Command::OpenProject {
            project: project.clone(),
            kind: ProjectKind::GeneralFund,
            name: Text::new("FIFO").unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        }],
    )
    .await;
    (node, log, project, clock)
}

/// An anonymous WeChat Pay gift to `project`.
fn wechat_gift(project: &Id, txn: &str, minor: u64, fee_minor: u64) -> Command {
    Command::RecordDonation(DonationInput {
        project: project.clone(),
        amount_minor: Amount::new(minor).unwrap(),
        currency: Currency::CNY,
        channel: Channel::Wechat,
        channel_txn_id: txn.into(),
        fee_minor,
        pledge_seq: None,
        anonymous: true,
        public_name: None,
        donor_ref: Id::new("donor-x").unwrap(),
    })
}

/// A payout of `minor` from `project` to a clinic, requested by finance; its seq.
async fn request_payout(node: &Node, project: &Id, minor: u64) -> u64 {
    let request = Command::RequestPayout(PayoutRequested {
        project: project.clone(),
        amount_minor: Amount::new(minor).unwrap(),
        currency: Currency::CNY,
        payee: Text::new("Clinic").unwrap(),
        purpose: Text::new("Treatment").unwrap(),
        document_sha256: events::sha256(b"invoice"),
    });
    submit(node, "finance-li", vec![request]).await[0]
}

/// Approves a requested payout (the director) and records its bank transfer (finance).
async fn approve_and_disburse(node: &Node, payout: u64) {
    let approve = Command::ApprovePayout { payout_seq: payout };
    submit(node, "director-wang", vec![approve]).await;
    let disburse = Command::DisbursePayout {
        payout_seq: payout,
        bank_reference: "REF-1".into(),
    };
    submit(node, "finance-li", vec![disburse]).await;
}

/// A ledger small enough to trace by hand: gifts A (100.00, fee 1.00) and B (50.00), then a
/// payout of 120.00. A's net 99.00 goes wholly to the payout, then 21.00 of B; B keeps 29.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_trace_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _log, project) = fifo_ledger(dir.path()).await;
    let gift = |txn: &str, minor: u64, fee_minor: u64| wechat_gift(&project, txn, minor, fee_minor);
    let a = submit(&node, "recorder-liu", vec![gift("t-a", 10_000, 100)]).await[0];
    let b = submit(&node, "recorder-liu", vec![gift("t-b", 5_000, 0)]).await[0];
    let payout = request_payout(&node, &project, 12_000).await;
    // Before the money leaves, everything is held.
    let state = caught_up(&node).await;
    let t = trace_project(&state, &project);
    assert_eq!(t.held_minor(), 14_900);
    assert!(t.lots.iter().all(|l| l.uses.is_empty()));
    approve_and_disburse(&node, payout).await;
    let state = caught_up(&node).await;
    let t = trace_project(&state, &project);
    let lot_a = t.lot(Source::Gift { donation_seq: a }).unwrap();
    assert_eq!(lot_a.amount_minor, 9_900);
    assert_eq!(
        lot_a.uses,
        vec![(Use::Payout { payout_seq: payout }, 9_900)]
    );
    assert_eq!(lot_a.held_minor, 0);
    let lot_b = t.lot(Source::Gift { donation_seq: b }).unwrap();
    assert_eq!(
        lot_b.uses,
        vec![(Use::Payout { payout_seq: payout }, 2_100)]
    );
    assert_eq!(lot_b.held_minor, 2_900);
    assert_eq!(t.uncovered_minor, 0);
    node.shutdown().await.unwrap();
}

/// A money figure of a page (`<dd data-figure="NAME">¥1,234.56</dd>`) in minor units; 0 when
/// the page does not show it.
fn figure(body: &str, name: &str) -> i128 {
    let open = format!(r#"<dd data-figure="{name}">"#);
    let Some(start) = body.find(&open) else {
        return 0;
    };
    let rest = &body[start + open.len()..];
    let text = &rest[..rest.find("</dd>").unwrap()];
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap()
}

/// A fee the channel gave back after the refund was recorded is a lot of its own, at the
/// correction: the refund took the whole amount less what it gave back itself (nothing),
/// so 100 of it came from the oldest other lot; the 60 given back later is held until a
/// payout takes it. Every fen is still traced or held, and what is held is the balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_trace_counts_a_fee_returned_after_the_refund_when_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _log, project) = fifo_ledger(dir.path()).await;
    let gift = |txn: &str, minor: u64, fee_minor: u64| wechat_gift(&project, txn, minor, fee_minor);
    let a = submit(&node, "recorder-liu", vec![gift("t-a", 10_000, 100)]).await[0];
    let b = submit(&node, "recorder-liu", vec![gift("t-b", 5_000, 0)]).await[0];
    let refund = submit(
        &node,
        "recorder-liu",
        vec![Command::RefundDonation {
            donation_seq: a,
            reason: Text::new("捐赠人申请退款").unwrap(),
            fee_returned_minor: None,
        }],
    )
    .await[0];
    let correction = submit(
        &node,
        "recorder-liu",
        vec![Command::RecordRefundFeeReturned {
            refund_seq: refund,
            fee_returned_minor: 60,
            reason: Text::new("微信退款账单退回手续费").unwrap(),
        }],
    )
    .await[0];
    let payout = request_payout(&node, &project, 4_950).await;
    approve_and_disburse(&node, payout).await;
    let state = caught_up(&node).await;
    let t = trace_project(&state, &project);
    let refunded = Use::Refund { donation_seq: a };
    let lot_a = t.lot(Source::Gift { donation_seq: a }).unwrap();
    assert_eq!(lot_a.uses, vec![(refunded, 9_900)]);
    let lot_b = t.lot(Source::Gift { donation_seq: b }).unwrap();
    let paid = Use::Payout { payout_seq: payout };
    assert_eq!(lot_b.uses, vec![(refunded, 100), (paid, 4_900)]);
    assert_eq!(lot_b.held_minor, 0);
    let fee_back = t.lot(Source::FeeReturned { donation_seq: a }).unwrap();
    assert_eq!((fee_back.seq, fee_back.amount_minor), (correction, 60));
    assert_eq!(fee_back.uses, vec![(paid, 50)]);
    assert_eq!(fee_back.held_minor, 10);
    assert_eq!(t.uncovered_minor, 0);
    let balance = state.projects[&project].balances.balance().unwrap();
    assert_eq!((t.held_minor(), balance), (10, 10));
    node.shutdown().await.unwrap();
}

/// Another gift's refund that takes from this gift's money (the fee the channel kept on it
/// is covered by the project's oldest money) is named as that gift's refund on this
/// receipt, never as this donor's: gift A stays "Received" and nothing of it is said to be
/// refunded to its donor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_names_another_gifts_refund_as_that_gifts() {
    let dir = tempfile::tempdir().unwrap();
    let (node, log, project) = fifo_ledger(dir.path()).await;
    let gift = |txn: &str| wechat_gift(&project, txn, 10_000, 60);
    let a = submit(&node, "recorder-liu", vec![gift("t-a")]).await[0];
    let b = submit(&node, "recorder-liu", vec![gift("t-b")]).await[0];
    submit(
        &node,
        "recorder-liu",
        vec![Command::RefundDonation {
            donation_seq: b,
            reason: Text::new("捐赠人重复支付").unwrap(),
            fee_returned_minor: None,
        }],
    )
    .await;
    let state = caught_up(&node).await;
    let code_a = state.donations[&a].receipt_code;
    let code_b = state.donations[&b].receipt_code;
    let node = Arc::new(node);
    let router = app(AppState::new(node.clone(), TokenStore::open(&log).unwrap()));
    let (status, body) = get(&router, &format!("/receipt?code={code_a}&lang=en")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"<dd data-figure="status">Received</dd>"#),
        "{body}"
    );
    assert!(!body.contains("Refunded to the donor"), "{body}");
    assert!(
        body.contains(&format!(
            "Used for the refund of gift #{b} (the project covers what that gift's own money did not)"
        )),
        "{body}"
    );
    // Gift B's own receipt says its money went back to its donor.
    let (_, body) = get(&router, &format!("/receipt?code={code_b}&lang=en")).await;
    assert!(body.contains("Refunded to the donor"), "{body}");
    drop(router);
    ledger::cli::shutdown_node(node).await.unwrap();
}

/// The 3-month box starts from the balance held before the period and counts only the
/// period's flows: a gift (100.00, fee 0.60) and a payout of 30.00 two hundred days ago,
/// then a gift (5.00, fee 0.03) and a payout of 10.00 in the period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_month_box_starts_from_the_balance_before_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let (node, log, project, clock) = fifo_ledger_with_clock(dir.path()).await;
    submit(
        &node,
        "recorder-liu",
        vec![wechat_gift(&project, "t-old", 10_000, 60)],
    )
    .await;
    let old_payout = request_payout(&node, &project, 3_000).await;
    approve_and_disburse(&node, old_payout).await;
    clock.advance(200 * 86_400_000);
    submit(
        &node,
        "recorder-liu",
        vec![wechat_gift(&project, "t-new", 500, 3)],
    )
    .await;
    let new_payout = request_payout(&node, &project, 1_000).await;
    approve_and_disburse(&node, new_payout).await;
    let state = caught_up(&node).await;
    let balance = state.projects[&project].balances.balance().unwrap();
    let node = Arc::new(node);
    let router = app(AppState::new(node.clone(), TokenStore::open(&log).unwrap()));
    let (status, body) = get(&router, &format!("/projects/{project}?lang=en")).await;
    assert_eq!(status, StatusCode::OK);
    let f = |name: &str| figure(&body, name);
    assert_eq!(f("period_opening"), 9_940 - 3_000, "{body}");
    assert_eq!(f("period_in"), 497);
    assert_eq!(f("period_out"), 1_000);
    assert_eq!(f("period_closing"), 6_437);
    assert_eq!(f("period_closing"), balance as i128);
    assert_eq!(f("period_set_aside"), 0);
    assert_eq!(f("period_available"), 6_437);
    drop(router);
    ledger::cli::shutdown_node(node).await.unwrap();
}
