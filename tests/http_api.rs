//! Router tests: every endpoint and every rejection, driven with `tower::ServiceExt::oneshot`.

#[path = "http_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};

const BATCH: &str = "/api/v1/staff/donations/batch";
const DOC: &str = "0000000000000000000000000000000000000000000000000000000000000abc";

fn pool(id: &str, projects: &[&str]) -> Value {
    json!({
        "pool": id, "sponsor": "二七商贸集团", "projects": projects, "currency": "CNY",
        "ratio_numerator": 1, "ratio_denominator": 1,
        "cap_per_donation_minor": 10_000, "cap_per_donor_per_day_minor": 20_000,
        "total_cap_minor": 1_000_000,
        "valid_from_ms": T0_MS - 1000, "valid_until_ms": T0_MS + 86_400_000,
        "day_utc_offset_minutes": 480
    })
}

/// `n` donations of `amount` to fund-1 from `donor`, with transaction ids `{txn}-0`,
/// `{txn}-1`, ….
fn fund_donations(n: usize, amount: u64, txn: &str, donor: &str) -> Vec<Value> {
    (0..n)
        .map(|i| donation("fund-1", amount, &format!("{txn}-{i}"), donor))
        .collect()
}

/// `GET /api/v1/staff/whoami` with this `Authorization` header.
async fn whoami(t: &TestApp, authorization: &str) -> Reply {
    t.call_with(
        Method::GET,
        "/api/v1/staff/whoami",
        None,
        None,
        &[("authorization", authorization)],
    )
    .await
}

fn payout(project: &str, amount: u64) -> Value {
    json!({"project": project, "amount_minor": amount, "currency": "CNY",
           "payee": "二七区金桥社区服务中心", "purpose": "购买助听器", "document_sha256": DOC})
}

#[tokio::test]
async fn authentication_and_roles() {
    let t = setup().await;
    let body = json!({"project": "p1", "kind": "general_fund", "name": "基金", "currency": "CNY"});
    // No token.
    let r = t
        .call(
            Method::POST,
            "/api/v1/staff/projects",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.code(), "unauthorized");
    // Wrong scheme, unknown token.
    for auth in ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer ldg_nope"] {
        let r = whoami(&t, auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth}: {r:?}");
    }
    // Wrong role: 403 naming the role needed, and nothing written.
    for who in ["recorder", "approver", "auditor"] {
        let r = t.post("/api/v1/staff/projects", who, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {r:?}");
        assert_eq!(r.code(), "forbidden");
        assert!(r.message().contains("admin role"), "{r:?}");
    }
    let r = t
        .post(
            "/api/v1/staff/donations",
            "admin",
            donation("p1", 100, "t1", "donor-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(t.node.log.head().await.unwrap().len, 0);
    // The generic endpoint checks the command's role too.
    let mut cmd = body.clone();
    cmd["command"] = json!("open_project");
    let r = t
        .post("/api/v1/staff/commands", "recorder", cmd.clone())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // A bad field inside a command is named by its field, before anything is written.
    let mut bad = cmd.clone();
    bad["goal_minor"] = json!(0);
    let r = t.post("/api/v1/staff/commands", "admin", bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_field");
    assert!(r.message().starts_with("goal_minor: "), "{r:?}");
    assert_eq!(t.node.log.head().await.unwrap().len, 0);
    let w = t.created("/api/v1/staff/commands", "admin", cmd).await;
    assert_eq!(w["seq"], 0);
    assert_eq!(w["events"][0]["type"], "project_opened");
    // whoami
    let r = t.get("/api/v1/staff/whoami", Some("auditor")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["actor"], "auditor-chen");
    assert_eq!(r.body["role"], "auditor");
    t.finish().await;
}

#[tokio::test]
async fn tokens_api() {
    let t = setup().await;
    let r = t
        .post(
            "/api/v1/staff/tokens",
            "admin",
            json!({"actor": "cashier-sun", "role": "recorder"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let token = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["info"]["id"].as_str().unwrap().to_owned();
    // The new token works.
    let who = whoami(&t, &format!("Bearer {token}")).await;
    assert_eq!(who.body["actor"], "cashier-sun", "{who:?}");
    // The log records the grant, by the admin who issued it, before the token worked.
    let issued = last_token_event(&t).await;
    assert_eq!(issued.record().actor.as_str(), "admin-zhao");
    assert_eq!(
        issued.body(),
        &events::EventBody::StaffTokenIssued(events::StaffTokenIssued {
            holder: events::Id::new("cashier-sun").unwrap(),
            role: events::StaffRole::Recorder,
            token_id: id.clone(),
        })
    );
    assert!(!String::from_utf8_lossy(issued.canonical_bytes()).contains(&token[4..]));
    // Listing shows ids, never tokens.
    let list = t.get("/api/v1/staff/tokens", Some("admin")).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text.contains(&token[4..]));
    assert!(list.text.contains(&id));
    // Only admins manage tokens.
    let r = t.get("/api/v1/staff/tokens", Some("auditor")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .post(
            "/api/v1/staff/tokens",
            "recorder",
            json!({"actor": "x", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .post(
            "/api/v1/staff/tokens",
            "admin",
            json!({"actor": "x", "role": "superuser"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_field");
    // Revoke: the token stops working at once.
    let r = t
        .call(
            Method::DELETE,
            &format!("/api/v1/staff/tokens/{id}"),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.body["revoked_ms"].is_u64());
    assert_eq!(r.body["revoked_by"], "admin-zhao");
    let who = whoami(&t, &format!("Bearer {token}")).await;
    assert_eq!(who.status, StatusCode::UNAUTHORIZED);
    let revoked = last_token_event(&t).await;
    assert_eq!(revoked.record().actor.as_str(), "admin-zhao");
    assert_eq!(
        revoked.body(),
        &events::EventBody::StaffTokenRevoked(events::StaffTokenRevoked {
            token_id: id.clone(),
        })
    );
    // Revoking again is harmless and records nothing more.
    let head = t.node.log.head().await.unwrap().len;
    let r = t
        .call(
            Method::DELETE,
            &format!("/api/v1/staff/tokens/{id}"),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(t.node.log.head().await.unwrap().len, head);
    let r = t
        .call(
            Method::DELETE,
            "/api/v1/staff/tokens/0000000000000000",
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    t.finish().await;
}

/// The last staff token event in the log.
async fn last_token_event(t: &TestApp) -> events::SealedEvent {
    let head = t.node.log.head().await.unwrap().len;
    t.node
        .log
        .read(0, head as usize)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.body().type_name().starts_with("staff_token_"))
        .expect("a staff token event")
}

/// Tokens made (or revoked) with the `token` command, with the server stopped, reach the
/// log when `serve` starts (`record_in_log`), by the operator; a second run adds nothing.
/// A grant the log shows whose token the store never kept is revoked (`void_unstored`).
#[tokio::test]
async fn tokens_made_on_the_server_reach_the_log() {
    let t = setup().await;
    let store = &t.state.tokens;
    let (_, gone) = store
        .create(
            events::Id::new("cashier-wu").unwrap(),
            ledger::http::Role::Recorder,
        )
        .unwrap();
    store.revoke(&gone.id).unwrap().unwrap();
    let state = t.node.state();
    let added = store.record_in_log(&t.node.writer, &state).await.unwrap();
    // One grant per setup token (five) and cashier-wu's, and cashier-wu's revocation.
    assert_eq!(added, TOKENS.len() + 2);
    let head = t.node.log.head().await.unwrap().len;
    let state = t
        .node
        .state_at(head, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(state.staff_tokens.len(), TOKENS.len() + 1);
    for info in store.list().unwrap() {
        let grant = &state.staff_tokens[&info.id];
        assert_eq!((&grant.holder, grant.role), (&info.actor, info.role));
        assert_eq!(grant.issued_by.as_str(), ledger::http::tokens::OPERATOR);
        assert_eq!(grant.revoked_seq.is_some(), info.revoked_ms.is_some());
    }
    assert_eq!(
        store.record_in_log(&t.node.writer, &state).await.unwrap(),
        0
    );
    assert_eq!(
        store.void_unstored(&t.node.writer, &state).await.unwrap(),
        0
    );
    // A grant in the log alone (its token never stored) is revoked at the next start.
    let orphan = "0123456789abcdef";
    t.node
        .writer
        .submit(ledger::writer::Submission::one(
            events::Id::new("admin-zhao").unwrap(),
            ledger::command::Command::IssueStaffToken(events::StaffTokenIssued {
                holder: events::Id::new("ghost").unwrap(),
                role: events::StaffRole::Approver,
                token_id: orphan.into(),
            }),
        ))
        .await
        .unwrap();
    let head = t.node.log.head().await.unwrap().len;
    let state = t
        .node
        .state_at(head, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        store.void_unstored(&t.node.writer, &state).await.unwrap(),
        1
    );
    assert_eq!(
        last_token_event(&t).await.body().type_name(),
        "staff_token_revoked"
    );
    t.finish().await;
}

/// An admin cannot get around the four-eyes rule by issuing a token: a token's issuer counts
/// as its holder, so the admin's own request cannot be decided with it, under a made-up
/// actor or another staff member's name. A token made on the server (no issuer) can.
#[tokio::test]
async fn a_token_issued_by_the_requester_cannot_decide_the_request() {
    let t = setup().await;
    t.funded_project("fund-1", 10_000).await;
    let w = t
        .created("/api/v1/staff/payouts", "admin", payout("fund-1", 5_000))
        .await;
    let payout_seq = w["payout_seq"].as_u64().unwrap();
    let admin = whoami(&t, &format!("Bearer {}", t.token("admin")))
        .await
        .body["actor"]
        .as_str()
        .unwrap()
        .to_owned();
    let approve = format!("/api/v1/staff/payouts/{payout_seq}/approve");
    for actor in ["ghost", "director-wang"] {
        let r = t
            .post(
                "/api/v1/staff/tokens",
                "admin",
                json!({"actor": actor, "role": "approver"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        assert_eq!(r.body["info"]["issued_by"], admin.as_str());
        let token = r.body["token"].as_str().unwrap().to_owned();
        let r = t
            .call_with(
                Method::POST,
                &approve,
                None,
                None,
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
        assert_eq!(r.code(), "four_eyes");
        assert!(
            r.text.contains(&format!("{admin} requested the payout")),
            "{r:?}"
        );
    }
    // The approver whose token was made on the server decides it.
    let r = t.call(Method::POST, &approve, Some("approver"), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    t.finish().await;
}

/// A token issued through the API cannot issue tokens: otherwise an admin could issue a
/// made-up admin, through it an approver, and approve their own request (the approver's
/// recorded issuer would be the made-up admin, not them).
#[tokio::test]
async fn a_token_issued_through_the_api_cannot_issue_tokens() {
    let t = setup().await;
    let r = t
        .post(
            "/api/v1/staff/tokens",
            "admin",
            json!({"actor": "made-up-admin", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let issued = r.body["token"].as_str().unwrap().to_owned();
    let r = t
        .call_with(
            Method::POST,
            "/api/v1/staff/tokens",
            None,
            Some(json!({"actor": "made-up-approver", "role": "approver"}).to_string()),
            &[("authorization", &format!("Bearer {issued}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(
        r.text
            .contains("creating a token needs an admin token made on the server"),
        "{r:?}"
    );
    let list = t
        .call(Method::GET, "/api/v1/staff/tokens", Some("admin"), None)
        .await;
    assert!(
        !list.text.contains("made-up-approver"),
        "nothing was created"
    );
    t.finish().await;
}

#[tokio::test]
async fn every_command_through_its_resource_endpoint() {
    let t = setup().await;
    // Projects and a matching pool (admin).
    for p in ["cp-1", "fund-1"] {
        t.created(
            "/api/v1/staff/projects",
            "admin",
            json!({"project": p, "kind": "community_project", "name": "星星课堂", "currency": "CNY", "goal_minor": 5_000_000}),
        )
        .await;
    }
    let r = t
        .post(
            "/api/v1/staff/projects",
            "admin",
            json!({"project": "cp-1", "kind": "general_fund", "name": "again", "currency": "CNY"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.code(), "project_exists");
    t.created(
        "/api/v1/staff/matching-pools",
        "admin",
        pool("pool-1", &["cp-1"]),
    )
    .await;
    // A pledge (recorder) and a donation that fulfils part of it and is matched.
    let pledge = t
        .created(
            "/api/v1/staff/pledges",
            "recorder",
            json!({"project": "cp-1", "sponsor": "嵩岳科技", "amount_minor": 50_000, "currency": "CNY"}),
        )
        .await;
    let pledge_seq = pledge["pledge_seq"].as_u64().unwrap();
    let mut d = donation("cp-1", 30_000, "wx-1", "donor-000042");
    d["pledge_seq"] = json!(pledge_seq);
    d["public_name"] = json!("嵩岳科技");
    d["fee_minor"] = json!(180);
    let w = t.created("/api/v1/staff/donations", "recorder", d).await;
    let donation_seq = w["donation_seq"].as_u64().unwrap();
    assert_eq!(w["matched"]["pool"], "pool-1");
    assert_eq!(w["matched"]["amount_minor"], 10_000);
    assert!(w["receipt_code"].as_str().unwrap().len() == 19);
    assert_eq!(w["seq"], donation_seq + 1, "the match is the last event");
    assert_eq!(w["hash"], w["events"][1]["hash"]);
    // Staff see the donor reference (read-your-writes with min_seq).
    let seq = w["seq"].as_u64().unwrap();
    let r = t
        .get(
            &format!("/api/v1/staff/donations/{donation_seq}?min_seq={seq}"),
            Some("auditor"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["donor_ref"], "donor-000042");
    assert_eq!(r.body["matched_minor"], 10_000);
    let r = t
        .get("/api/v1/staff/donations/999999", Some("auditor"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Rule violations are 422 and name the field.
    let r = t
        .post(
            "/api/v1/staff/donations",
            "recorder",
            donation("nope", 100, "wx-2", "donor-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "unknown_project");
    let r = t
        .post(
            "/api/v1/staff/donations",
            "recorder",
            donation("cp-1", 100, "wx-1", "donor-1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.code(), "duplicate_channel_txn");
    let mut d = donation("cp-1", 100, "wx-3", "donor-1");
    d["fee_minor"] = json!(100);
    let r = t.post("/api/v1/staff/donations", "recorder", d).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(r.message().contains("fee_minor"), "{r:?}");
    // Cancel the pledge; cancelling twice is refused.
    t.created(
        &format!("/api/v1/staff/pledges/{pledge_seq}/cancel"),
        "recorder",
        json!({"reason": "企业改为直接捐赠"}),
    )
    .await;
    let r = t
        .post(
            &format!("/api/v1/staff/pledges/{pledge_seq}/cancel"),
            "recorder",
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "pledge_cancelled");
    // Payout: requested by an admin, refused to an approver with the same actor (four eyes),
    // approved by another, disbursed by an admin.
    let r = t
        .post("/api/v1/staff/payouts", "admin", payout("cp-1", 10_000_000))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "insufficient_funds");
    let w = t
        .created("/api/v1/staff/payouts", "admin", payout("cp-1", 5_000))
        .await;
    let payout_seq = w["payout_seq"].as_u64().unwrap();
    let requested_at = w["seq"].as_u64().unwrap();
    let r = t
        .call(
            Method::POST,
            &format!("/api/v1/staff/payouts/{payout_seq}/approve"),
            Some("approver_as_admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "four_eyes");
    let r = t
        .call(
            Method::POST,
            &format!("/api/v1/staff/payouts/{payout_seq}/approve"),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let inbox = t
        .get(
            &format!("/api/v1/staff/payouts?status=requested&min_seq={requested_at}"),
            Some("approver"),
        )
        .await;
    assert_eq!(inbox.body["items"][0]["seq"], payout_seq, "{inbox:?}");
    assert_eq!(inbox.body["items"][0]["requested_by"], "admin-zhao");
    // An empty body and `{}` both approve; here the empty body.
    let r = t
        .call(
            Method::POST,
            &format!("/api/v1/staff/payouts/{payout_seq}/approve"),
            Some("approver"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    t.created(
        &format!("/api/v1/staff/payouts/{payout_seq}/disburse"),
        "admin",
        json!({"bank_reference": "ICBC-ZZ-20240601"}),
    )
    .await;
    let r = t
        .post(
            &format!("/api/v1/staff/payouts/{payout_seq}/reject"),
            "approver",
            json!({"reason": "too late"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.code(), "request_state");
    // A second payout, rejected.
    let w = t
        .created("/api/v1/staff/payouts", "admin", payout("cp-1", 1_000))
        .await;
    let second = w["payout_seq"].as_u64().unwrap();
    let rej = t
        .created(
            &format!("/api/v1/staff/payouts/{second}/reject"),
            "approver",
            json!({"reason": "发票不全"}),
        )
        .await;
    let all = t
        .get(
            &format!("/api/v1/staff/payouts?limit=1&min_seq={}", rej["seq"]),
            Some("auditor"),
        )
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(all.body["next_after"], payout_seq);
    // Moves: one rejected, one approved with `{}`.
    let mv = json!({"from_project": "cp-1", "to_project": "fund-1", "amount_minor": 100, "currency": "CNY", "reason": "结余转入"});
    let w = t.created("/api/v1/staff/moves", "admin", mv.clone()).await;
    let m1 = w["move_seq"].as_u64().unwrap();
    t.created(
        &format!("/api/v1/staff/moves/{m1}/reject"),
        "approver",
        json!({"reason": "no"}),
    )
    .await;
    let w = t.created("/api/v1/staff/moves", "admin", mv).await;
    let m2 = w["move_seq"].as_u64().unwrap();
    let r = t
        .post(
            &format!("/api/v1/staff/moves/{m2}/approve"),
            "approver_as_admin",
            json!({}),
        )
        .await;
    assert_eq!(r.code(), "four_eyes", "{r:?}");
    let ok = t
        .created(
            &format!("/api/v1/staff/moves/{m2}/approve"),
            "approver",
            json!({}),
        )
        .await;
    let moves = t
        .get(
            &format!("/api/v1/staff/moves?min_seq={}", ok["seq"]),
            Some("auditor"),
        )
        .await;
    assert_eq!(
        moves.body["items"].as_array().unwrap().len(),
        2,
        "{moves:?}"
    );
    // Refund: the match is released with it; refunding twice conflicts. (Another gift first,
    // so the project holds enough for the refund and its match.)
    t.created(
        "/api/v1/staff/donations",
        "recorder",
        donation("cp-1", 100_000, "wx-extra", "donor-000099"),
    )
    .await;
    // A fee given back is at most the gift's fee (180). Nothing is written.
    let r = t
        .post(
            &format!("/api/v1/staff/donations/{donation_seq}/refund"),
            "recorder",
            json!({"reason": "重复支付", "fee_returned_minor": 181}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "fee_returned_over_fee", "{r:?}");
    // WeChat Pay gives the whole fee back with the refund: the project has it again.
    let w = t
        .created(
            &format!("/api/v1/staff/donations/{donation_seq}/refund"),
            "recorder",
            json!({"reason": "重复支付", "fee_returned_minor": 180}),
        )
        .await;
    assert_eq!(w["events"][1]["type"], "match_released");
    let r = t
        .post(
            &format!("/api/v1/staff/donations/{donation_seq}/refund"),
            "recorder",
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    // Close the pool and a project.
    t.created(
        "/api/v1/staff/matching-pools/pool-1/close",
        "admin",
        json!({"reason": "活动结束"}),
    )
    .await;
    let w = t
        .created(
            "/api/v1/staff/projects/fund-1/close",
            "admin",
            json!({"reason": "项目结束"}),
        )
        .await;
    let last = w["seq"].as_u64().unwrap();
    let r = t
        .post(
            "/api/v1/staff/donations",
            "recorder",
            donation("fund-1", 100, "wx-9", "donor-1"),
        )
        .await;
    assert_eq!(r.code(), "project_closed", "{r:?}");
    // The public detail reflects all of it (read-your-writes).
    let r = t
        .get(
            &format!("/api/v1/public/projects/cp-1?min_seq={last}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let f = &r.body["figures"];
    assert_eq!(f["raised_gross_minor"], 130_000);
    assert_eq!(f["refunded_minor"], 30_000);
    assert_eq!(f["fees_returned_minor"], 180);
    assert_eq!(f["matched_minor"], 10_000);
    assert_eq!(f["paid_out_minor"], 5_000);
    assert_eq!(f["moved_out_minor"], 100);
    assert_eq!(r.body["payouts"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["payouts"][0]["status"], "disbursed");
    assert_eq!(r.body["payouts"][0]["purpose"], "购买助听器");
    assert_eq!(r.body["payouts"][0]["document_sha256"], DOC);
    assert_eq!(r.body["payouts"][1]["status"], "rejected");
    assert_eq!(r.body["matching"][0]["sponsor"], "二七商贸集团");
    assert_eq!(r.body["matching"][0]["used_minor"], 10_000);
    assert_eq!(r.body["pledges"][0]["cancelled"], true);
    assert_eq!(r.body["moves"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["recent_donations"][0]["anonymous"], true);
    let rd = &r.body["recent_donations"][1];
    assert_eq!(rd["public_name"], "嵩岳科技");
    assert_eq!(rd["refunded"], true);
    // The staff log shows every field; the auditor can read it.
    let r = t
        .get("/api/v1/staff/events?limit=1000", Some("auditor"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("donor-000042"));
    assert_eq!(r.body["events"].as_array().unwrap().len() as u64, last + 1);
    t.finish().await;
}

/// A refund recorded without the fee its channel gave back gets it later, as a recorder:
/// through its resource route and through the generic command endpoint. The refund's seq
/// must name a refund, the fee must fit what is left of the gift's fee, the body takes no
/// other field; each refusal writes nothing. After it the gift and the project show the
/// fee back.
#[tokio::test]
async fn a_fee_returned_after_a_refund_is_recorded_by_a_recorder() {
    let t = setup().await;
    t.funded_project("fund-1", 10_000).await;
    let mut gift = donation("fund-1", 1_000, "wx-fee-later", "donor-000002");
    gift["fee_minor"] = json!(6);
    let gift_seq = t.created("/api/v1/staff/donations", "recorder", gift).await["donation_seq"]
        .as_u64()
        .unwrap();
    let refund_seq = t
        .created(
            &format!("/api/v1/staff/donations/{gift_seq}/refund"),
            "recorder",
            json!({"reason": "重复支付"}),
        )
        .await["seq"]
        .as_u64()
        .unwrap();
    let route = format!("/api/v1/staff/refunds/{refund_seq}/fee-returned");
    let body = json!({"fee_returned_minor": 2, "reason": "微信退款账单退回手续费"});
    let head = t.node.log.head().await.unwrap().len;
    let refusals = [
        // The role is the refund's: a recorder's.
        (
            route.clone(),
            "approver",
            body.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
            "recorder role",
        ),
        // The gift's seq is not the refund's.
        (
            format!("/api/v1/staff/refunds/{gift_seq}/fee-returned"),
            "recorder",
            body.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_refund",
            "refund_seq",
        ),
        (
            route.clone(),
            "recorder",
            json!({"fee_returned_minor": 7, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "fee_returned_over_fee",
            "(1 to 6)",
        ),
        (
            route.clone(),
            "recorder",
            json!({"fee_returned_minor": 0, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "fee_returned_minor",
        ),
        (
            route.clone(),
            "recorder",
            json!({"fee_returned_minor": 2, "reason": "x", "refund_seq": refund_seq}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            "refund_seq",
        ),
        (
            route.clone(),
            "recorder",
            json!({"reason": "x"}),
            StatusCode::BAD_REQUEST,
            "missing_field",
            "fee_returned_minor",
        ),
        (
            "/api/v1/staff/commands".to_owned(),
            "recorder",
            json!({"command": "record_refund_fee_returned", "refund_seq": refund_seq, "fee_returned_minor": 2, "reason": "x", "note": "y"}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            "note",
        ),
    ];
    for (uri, who, body, status, code, names) in refusals {
        let r = t.post(&uri, who, body.clone()).await;
        assert_eq!(r.status, status, "{uri} {body}: {r:?}");
        assert_eq!(r.code(), code, "{uri} {body}: {r:?}");
        assert!(r.message().contains(names), "{uri} {body}: {r:?}");
        assert_eq!(t.node.log.head().await.unwrap().len, head, "{body}");
    }
    let w = t.created(&route, "recorder", body).await;
    assert_eq!(w["events"][0]["type"], "refund_fee_returned");
    // The rest of the fee through the generic endpoint.
    let w = t
        .created(
            "/api/v1/staff/commands",
            "recorder",
            json!({"command": "record_refund_fee_returned", "refund_seq": refund_seq, "fee_returned_minor": 4, "reason": "支付宝账单退回手续费"}),
        )
        .await;
    assert_eq!(w["events"][0]["type"], "refund_fee_returned");
    let seq = w["seq"].as_u64().unwrap();
    let d = t
        .get(
            &format!("/api/v1/staff/donations/{gift_seq}?min_seq={seq}"),
            Some("auditor"),
        )
        .await;
    assert_eq!(d.body["fee_returned_minor"], 6, "{d:?}");
    let p = t
        .get(
            &format!("/api/v1/public/projects/fund-1?min_seq={seq}"),
            None,
        )
        .await;
    assert_eq!(p.body["figures"]["fees_returned_minor"], 6, "{p:?}");
    // All of the fee is back: nothing more.
    let r = t
        .post(
            &route,
            "recorder",
            json!({"fee_returned_minor": 1, "reason": "x"}),
        )
        .await;
    assert_eq!(r.code(), "fee_returned_over_fee", "{r:?}");
    t.finish().await;
}

/// A match under review, as approvers: frozen (the project's available money falls by it,
/// its figures show it), cleared, frozen again and released after review by another
/// approver (four eyes), through the resource routes and the generic command endpoint.
/// Each refusal writes nothing.
#[tokio::test]
async fn a_match_is_frozen_cleared_and_released_after_review_by_approvers() {
    let t = setup().await;
    t.created(
        "/api/v1/staff/projects",
        "admin",
        json!({"project": "cp-1", "kind": "community_project", "name": "星星课堂", "currency": "CNY"}),
    )
    .await;
    t.created(
        "/api/v1/staff/matching-pools",
        "admin",
        pool("pool-1", &["cp-1"]),
    )
    .await;
    let w = t
        .created(
            "/api/v1/staff/donations",
            "recorder",
            donation("cp-1", 3_000, "wx-farm-1", "donor-000007"),
        )
        .await;
    let gift = w["donation_seq"].as_u64().unwrap();
    let figures = |seq: u64| format!("/api/v1/public/projects/cp-1?min_seq={seq}");
    let freeze = format!("/api/v1/staff/donations/{gift}/match/freeze");
    let unfreeze = format!("/api/v1/staff/donations/{gift}/match/unfreeze");
    let release = format!("/api/v1/staff/donations/{gift}/match/release");
    let reason = json!({"reason": "同一账户拆分为多个新捐赠人"});
    let head = t.node.log.head().await.unwrap().len;
    let refusals = [
        // Risk control decides about a sponsor's money: an approver's role.
        (
            freeze.clone(),
            "recorder",
            reason.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
            "approver role",
        ),
        (
            "/api/v1/staff/donations/999/match/freeze".to_owned(),
            "approver",
            reason.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_donation",
            "donation_seq",
        ),
        (
            unfreeze.clone(),
            "approver",
            reason.clone(),
            StatusCode::CONFLICT,
            "match_state",
            "not frozen",
        ),
        (
            release.clone(),
            "approver",
            reason.clone(),
            StatusCode::CONFLICT,
            "match_state",
            "freeze it first",
        ),
        (
            freeze.clone(),
            "approver",
            json!({"reason": "x", "amount_minor": 1}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            "amount_minor",
        ),
        (
            freeze.clone(),
            "approver",
            json!({}),
            StatusCode::BAD_REQUEST,
            "missing_field",
            "reason",
        ),
        (
            "/api/v1/staff/commands".to_owned(),
            "approver",
            json!({"command": "freeze_match", "donation_seq": gift, "reason": "x", "pool": "pool-1"}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            "pool",
        ),
    ];
    for (uri, who, body, status, code, names) in refusals {
        let r = t.post(&uri, who, body.clone()).await;
        assert_eq!(r.status, status, "{uri} {body}: {r:?}");
        assert_eq!(r.code(), code, "{uri} {body}: {r:?}");
        assert!(r.message().contains(names), "{uri} {body}: {r:?}");
        assert_eq!(t.node.log.head().await.unwrap().len, head, "{body}");
    }
    // Frozen: still matched, not available.
    let w = t.created(&freeze, "approver", reason.clone()).await;
    assert_eq!(w["events"][0]["type"], "match_frozen");
    let p = t.get(&figures(w["seq"].as_u64().unwrap()), None).await;
    let f = &p.body["figures"];
    assert_eq!(
        (
            &f["matched_minor"],
            &f["frozen_minor"],
            &f["available_minor"]
        ),
        (&json!(3_000), &json!(3_000), &json!(3_000)),
        "{p:?}"
    );
    let d = t
        .get(&format!("/api/v1/staff/donations/{gift}"), Some("auditor"))
        .await;
    assert_eq!(d.body["match_frozen_seq"], w["seq"], "{d:?}");
    let r = t.post(&freeze, "approver", reason.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.code(), "match_state", "{r:?}");
    // Cleared, then frozen again through the generic endpoint.
    let w = t.created(&unfreeze, "approver", reason.clone()).await;
    assert_eq!(w["events"][0]["type"], "match_unfrozen");
    let w = t
        .created(
            "/api/v1/staff/commands",
            "approver",
            json!({"command": "freeze_match", "donation_seq": gift, "reason": "再次审核"}),
        )
        .await;
    assert_eq!(w["events"][0]["type"], "match_frozen");
    // Four eyes: not the approver who froze it.
    let r = t.post(&release, "approver", reason.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "four_eyes", "{r:?}");
    assert!(r.message().contains("director-wang froze"), "{r:?}");
    let w = t
        .created(
            "/api/v1/staff/commands",
            "approver_as_admin",
            json!({"command": "release_match", "donation_seq": gift, "reason": "核实为刷配捐"}),
        )
        .await;
    assert_eq!(w["events"][0]["type"], "match_revoked");
    let seq = w["seq"].as_u64().unwrap();
    let p = t.get(&figures(seq), None).await;
    let f = &p.body["figures"];
    assert_eq!(
        (
            &f["raised_minor"],
            &f["matched_minor"],
            &f["frozen_minor"],
            &f["available_minor"]
        ),
        (&json!(3_000), &json!(0), &json!(0), &json!(3_000)),
        "{p:?}"
    );
    let code = t
        .get(&format!("/api/v1/staff/donations/{gift}"), Some("auditor"))
        .await
        .body["receipt_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t
        .get(
            &format!("/api/v1/public/receipts/{code}?min_seq={seq}"),
            None,
        )
        .await;
    let m = &r.body["matched"];
    assert_eq!(
        (
            &m["released"],
            &m["released_after_review"],
            &m["under_review"]
        ),
        (&json!(true), &json!(true), &json!(false)),
        "{r:?}"
    );
    let r = t.post(&release, "approver_as_admin", reason).await;
    assert_eq!(r.code(), "match_state", "{r:?}");
    assert!(r.message().contains("released after review"), "{r:?}");
    t.finish().await;
}

#[tokio::test]
async fn idempotency_replay_and_conflict() {
    let t = setup().await;
    t.funded_project("fund-1", 1_000).await;
    let key = "wechat-webhook-4200001";
    let body = donation("fund-1", 100, "wx-100", "donor-7");
    let first = t
        .post_keyed("/api/v1/staff/donations", "recorder", &body, key)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert!(first.headers.get("idempotent-replayed").is_none());
    // A webhook retried ten times records one donation.
    for _ in 0..10 {
        let again = t
            .post_keyed("/api/v1/staff/donations", "recorder", &body, key)
            .await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body["seq"], first.body["seq"]);
        assert_eq!(again.body["receipt_code"], first.body["receipt_code"]);
        assert_eq!(again.body["replayed"], true);
    }
    let head = t.node.log.head().await.unwrap().len;
    assert_eq!(head, first.body["seq"].as_u64().unwrap() + 1);
    // Same key, different body: 409 that says so, nothing written.
    let other = donation("fund-1", 200, "wx-101", "donor-7");
    let r = t
        .post_keyed("/api/v1/staff/donations", "recorder", &other, key)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.code(), "idempotency_conflict");
    assert!(r.message().contains("idempotency_key"));
    assert_eq!(t.node.log.head().await.unwrap().len, head);
    // A bad key is a 400 naming the header and the limit.
    let long = "k".repeat(129);
    let r = t
        .post_keyed(
            "/api/v1/staff/donations",
            "recorder",
            &donation("fund-1", 100, "wx-102", "d"),
            &long,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_header");
    assert!(r.message().contains("128"), "{r:?}");
    // Batches replay too.
    let batch = json!({"donations": [donation("fund-1", 1, "b-1", "d1"), donation("fund-1", 2, "b-2", "d2")]});
    let key = "settlement-2024-06-01";
    let a = t.post_keyed(BATCH, "recorder", &batch, key).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let b = t.post_keyed(BATCH, "recorder", &batch, key).await;
    assert_eq!(b.status, StatusCode::OK, "{b:?}");
    assert_eq!(a.body["donations"], b.body["donations"]);
    // The same key on another endpoint with another body conflicts.
    let r = t
        .post_keyed(
            "/api/v1/staff/pledges",
            "recorder",
            &json!({"project": "fund-1", "sponsor": "x", "amount_minor": 1, "currency": "CNY"}),
            key,
        )
        .await;
    assert_eq!(r.code(), "idempotency_conflict", "{r:?}");
    t.finish().await;
}

#[tokio::test]
async fn malformed_requests_are_4xx_and_change_nothing() {
    let t = setup().await;
    t.funded_project("fund-1", 1_000).await;
    let head = t.node.log.head().await.unwrap().len;
    // A donation whose amount_minor is written as `raw`.
    let amount_as = |raw: &str| {
        let body = donation("fund-1", 1, "m1", "d").to_string();
        body.replace("\"amount_minor\":1", &format!("\"amount_minor\":{raw}"))
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("syntax", "{\"project\": ".into(), "malformed_json", "body"),
        ("trailing", format!("{} x", donation("fund-1", 1, "m1", "d")), "malformed_json", "body"),
        ("not an object", "[1,2]".into(), "invalid_field", "[0]"),
        ("wrong type", amount_as("\"1\""), "invalid_field", "amount_minor"),
        ("float money", amount_as("1.5"), "invalid_field", "amount_minor"),
        ("zero amount", amount_as("0"), "invalid_field", "amount_minor"),
        ("over 2^53", amount_as("9007199254740992"), "invalid_field", "9007199254740991"),
        (
            "unknown field",
            donation("fund-1", 1, "m1", "d").to_string().replace('}', ",\"donor_name\":\"x\"}"),
            "unknown_field",
            "donor_name",
        ),
        (
            "missing field",
            json!({"project": "fund-1", "amount_minor": 1, "currency": "CNY", "channel": "wechat", "channel_txn_id": "m1"}).to_string(),
            "missing_field",
            "donor_ref",
        ),
        (
            "bad id",
            donation("fund-1", 1, "m1", "Donor With Spaces").to_string(),
            "invalid_field",
            "donor_ref",
        ),
        (
            "bad channel",
            donation("fund-1", 1, "m1", "d").to_string().replace("wechat", "paypal"),
            "invalid_field",
            "channel",
        ),
        (
            "long text",
            {
                let mut d = donation("fund-1", 1, "m1", "d");
                d["public_name"] = json!("名".repeat(501));
                d.to_string()
            },
            "invalid_field",
            "500",
        ),
    ];
    for (what, body, code, names) in cases {
        let r = t
            .call_with(
                Method::POST,
                "/api/v1/staff/donations",
                Some("recorder"),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {r:?}");
        assert_eq!(r.code(), code, "{what}: {r:?}");
        assert!(
            r.message().contains(names),
            "{what}: message should name {names}: {r:?}"
        );
    }
    // Not JSON.
    let r = t
        .call_with(
            Method::POST,
            "/api/v1/staff/donations",
            Some("recorder"),
            Some(donation("fund-1", 1, "m1", "d").to_string()),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r:?}");
    // Over the body limit: 413 naming the limit.
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = t
        .call_with(
            Method::POST,
            "/api/v1/staff/projects/fund-1/close",
            Some("admin"),
            Some(big),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.code(), "payload_too_large");
    assert!(r.message().contains("65536"), "{r:?}");
    let huge = "x".repeat(3 * 1024 * 1024);
    let r = t
        .call_with(Method::POST, BATCH, Some("recorder"), Some(huge), &[])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    // Bad path and query parameters.
    let r = t
        .post(
            "/api/v1/staff/donations/abc/refund",
            "recorder",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_path");
    assert_eq!(
        r.message(),
        r#"seq: must be a whole number from 0 to 18446744073709551615 (got "abc")"#,
        "names the parameter and what it must be"
    );
    let r = t
        .post(
            "/api/v1/staff/projects/Not%20An%20Id/close",
            "admin",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(r.code(), "invalid_path", "{r:?}");
    for q in ["limit=0", "limit=1001", "from=-1", "colour=red"] {
        let r = t.get(&format!("/api/v1/public/events?{q}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {r:?}");
        assert_eq!(r.code(), "invalid_query", "{q}: {r:?}");
    }
    let r = t.get("/api/v1/public/projects?limit=501", None).await;
    assert!(r.message().contains("500"), "{r:?}");
    let r = t.get("/api/v1/public/receipts/not-a-code", None).await;
    assert_eq!(r.code(), "invalid_path", "{r:?}");
    // Unknown route and wrong method answer the same JSON shape.
    let r = t.get("/api/v1/nowhere", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let r = t
        .call(Method::DELETE, "/api/v1/public/projects", None, None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
    // Nothing was written by any of it.
    assert_eq!(t.node.log.head().await.unwrap().len, head);
    t.finish().await;
}

#[tokio::test]
async fn batch_all_or_nothing_with_per_item_errors() {
    let t = setup().await;
    t.funded_project("fund-1", 1_000).await;
    let head = t.node.log.head().await.unwrap().len;
    let items: Vec<Value> = (0..3)
        .map(|i| donation("fund-1", 100 + i, &format!("b-{i}"), &format!("donor-{i}")))
        .collect();
    let w = t
        .created(BATCH, "recorder", json!({"donations": items}))
        .await;
    assert_eq!(w["count"], 3);
    assert_eq!(w["donations"][2]["index"], 2);
    assert_eq!(w["first_seq"], head);
    assert_eq!(w["seq"], head + 2);
    assert_eq!(
        w["donations"][0]["receipt_code"].as_str().unwrap().len(),
        19
    );
    let head = head + 3;
    // Malformed items: every one is reported, with its index, and nothing is written.
    let mut items = fund_donations(5, 100, "c", "donor-1");
    items[1]["amount_minor"] = json!(-5);
    items[3]["surprise"] = json!(true);
    let r = t.post(BATCH, "recorder", json!({"donations": items})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "batch_rejected");
    let errs = r.body["error"]["items"].as_array().unwrap();
    assert_eq!(errs.len(), 2, "{r:?}");
    assert_eq!(errs[0]["index"], 1);
    assert_eq!(errs[0]["code"], "invalid_field");
    assert!(
        errs[0]["message"]
            .as_str()
            .unwrap()
            .contains("donations[1].amount_minor"),
        "{r:?}"
    );
    assert_eq!(errs[1]["index"], 3);
    assert_eq!(errs[1]["code"], "unknown_field");
    // Refused by the ledger's rules: an unknown project, a duplicate inside the batch and a
    // transaction already recorded. All listed; nothing written.
    let mut items = fund_donations(6, 100, "d", "donor-1");
    items[2]["project"] = json!("no-such-project");
    items[4]["channel_txn_id"] = json!("d-0");
    items[5]["channel_txn_id"] = json!("b-0");
    let r = t.post(BATCH, "recorder", json!({"donations": items})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "batch_rejected");
    let errs: Vec<(u64, String)> = r.body["error"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errs,
        vec![
            (2, "unknown_project".into()),
            (4, "duplicate_channel_txn".into()),
            (5, "duplicate_channel_txn".into())
        ],
        "{r:?}"
    );
    assert_eq!(t.node.log.head().await.unwrap().len, head);
    // Limits: empty, over 1000 items, the wrong role.
    let r = t.post(BATCH, "recorder", json!({"donations": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let many = fund_donations(1001, 1, "e", "d");
    let r = t.post(BATCH, "recorder", json!({"donations": many})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.code(), "too_many_items");
    assert!(r.message().contains("1000"), "{r:?}");
    let r = t
        .post(
            BATCH,
            "admin",
            json!({"donations": [donation("fund-1", 1, "f", "d")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = t.post(BATCH, "recorder", json!({"items": []})).await;
    assert_eq!(r.code(), "unknown_field", "{r:?}");
    // 1000 items is fine.
    let full = fund_donations(1000, 1, "g", "d");
    let w = t
        .created(BATCH, "recorder", json!({"donations": full}))
        .await;
    assert_eq!(w["count"], 1000);
    t.finish().await;
}

#[tokio::test]
async fn public_reads_receipts_log_and_read_your_writes() {
    let t = setup().await;
    let w = t.funded_project("fund-1", 1_000).await;
    t.funded_project("fund-2", 500).await;
    let code = w["receipt_code"].as_str().unwrap().to_owned();
    let seq = w["seq"].as_u64().unwrap();
    // Projects, paged (min_seq: read-your-writes; the read models fold asynchronously).
    let r = t
        .get("/api/v1/public/projects?limit=1&min_seq=3", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["items"][0]["project"], "fund-1");
    assert_eq!(r.body["next_after"], "fund-1");
    let r = t.get("/api/v1/public/projects?after=fund-1", None).await;
    assert_eq!(r.body["items"][0]["project"], "fund-2");
    assert!(r.body["next_after"].is_null());
    assert_eq!(r.body["items"][0]["donor_count"], 1);
    let r = t.get("/api/v1/public/projects/none", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Receipts.
    let r = t
        .get(
            &format!("/api/v1/public/receipts/{code}?min_seq={seq}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["seq"], seq);
    assert_eq!(r.body["donation"]["amount_minor"], 1_000);
    assert_eq!(r.body["donation"]["anonymous"], true);
    assert_eq!(r.body["project"]["project"], "fund-1");
    assert_eq!(r.body["hash"], w["hash"]);
    assert_eq!(r.body["event"]["type"], "donation_received");
    assert!(
        !r.text.contains("donor_ref") && !r.text.contains("donor-000001"),
        "{r:?}"
    );
    let r = t
        .get("/api/v1/public/receipts/0000-0000-0000-0000", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The log: pages, public fields only, and the head.
    let r = t.get("/api/v1/public/events?limit=2", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["next_from"], 2);
    assert_eq!(r.body["head"]["len"], 4);
    assert_eq!(r.body["events"][1]["prev"], r.body["events"][0]["hash"]);
    let d = &r.body["events"][1];
    assert_eq!(d["type"], "donation_received");
    assert!(d["data"].get("donor_ref").is_none());
    assert!(d["data"].get("channel_txn_id").is_none());
    assert_eq!(d["data"]["receipt_code"], code);
    let r = t.get("/api/v1/public/events?from=2", None).await;
    assert!(r.body["next_from"].is_null());
    let r = t.get("/api/v1/public/events?from=99", None).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 0);
    let h = t.get("/api/v1/public/head", None).await;
    assert_eq!(h.body["len"], 4);
    assert_eq!(h.body["seq"], 3);
    // A read waiting for a seq that never comes answers 503 after the documented 5 s.
    let started = std::time::Instant::now();
    let r = t.get("/api/v1/public/projects?min_seq=1000", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(r.code(), "not_caught_up");
    assert!(r.headers.contains_key("retry-after"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    let r = t
        .get(
            &format!("/api/v1/public/projects?min_seq={}", u64::MAX),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    t.finish().await;
}

#[tokio::test]
async fn sse_stream_sends_public_events() {
    use http_body_util::BodyExt;
    let t = setup().await;
    t.funded_project("fund-1", 1_000).await;
    let req = axum::http::Request::builder()
        .uri("/api/v1/public/stream?from=0")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(t.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // A donation written after the stream opened arrives too.
    t.created(
        "/api/v1/staff/donations",
        "recorder",
        donation("fund-1", 7, "live-1", "donor-live"),
    )
    .await;
    let mut text = String::new();
    while text.matches("\n\n").count() < 3 {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("id: 0\nevent: project_opened\n"), "{text}");
    assert!(text.contains("id: 2\nevent: donation_received\n"), "{text}");
    assert!(!text.contains("donor"), "{text}");
    // Resuming with Last-Event-ID starts after it; a bad one is a 400.
    let r = t
        .call_with(
            Method::GET,
            "/api/v1/public/stream",
            None,
            None,
            &[("last-event-id", "x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Shutdown ends open streams.
    t.state.begin_shutdown();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(f) = body.frame().await {
            f.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends on shutdown");
    t.finish().await;
}

#[tokio::test]
async fn openapi_health_and_metrics() {
    let t = setup().await;
    let r = t.get("/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = r.body["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let expected = [
        "/api/v1/staff/commands",
        "/api/v1/staff/projects",
        "/api/v1/staff/projects/{project}/close",
        "/api/v1/staff/donations",
        "/api/v1/staff/donations/batch",
        "/api/v1/staff/donations/{seq}",
        "/api/v1/staff/donations/{seq}/refund",
        "/api/v1/staff/donations/{seq}/match/freeze",
        "/api/v1/staff/donations/{seq}/match/unfreeze",
        "/api/v1/staff/donations/{seq}/match/release",
        "/api/v1/staff/refunds/{refund_seq}/fee-returned",
        "/api/v1/staff/pledges",
        "/api/v1/staff/pledges/{seq}/cancel",
        "/api/v1/staff/matching-pools",
        "/api/v1/staff/matching-pools/{pool}/close",
        "/api/v1/staff/payouts",
        "/api/v1/staff/payouts/{seq}/approve",
        "/api/v1/staff/payouts/{seq}/reject",
        "/api/v1/staff/payouts/{seq}/disburse",
        "/api/v1/staff/moves",
        "/api/v1/staff/moves/{seq}/approve",
        "/api/v1/staff/moves/{seq}/reject",
        "/api/v1/staff/tokens",
        "/api/v1/staff/tokens/{id}",
        "/api/v1/staff/whoami",
        "/api/v1/staff/events",
        "/api/v1/staff/statements",
        "/api/v1/staff/statements/{seq}/reconciliation",
        "/api/v1/staff/statements/{seq}/exceptions/resolve",
        "/api/v1/public/projects",
        "/api/v1/public/projects/{project}",
        "/api/v1/public/receipts/{code}",
        "/api/v1/public/events",
        "/api/v1/public/head",
        "/api/v1/public/stream",
        "/healthz",
        "/metrics",
    ];
    let mut want: Vec<&str> = expected.to_vec();
    want.sort();
    let mut got = paths.clone();
    got.sort();
    assert_eq!(got, want);
    // Every staff operation declares the bearer scheme; the batch limit is documented.
    assert_eq!(
        r.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let batch = &r.body["components"]["schemas"]["BatchBody"]["properties"]["donations"];
    assert_eq!(batch["maxItems"], 1000, "{batch}");
    assert!(r.body["components"]["schemas"]["CommandBody"].is_object());
    let refund = &r.body["components"]["schemas"]["RefundBody"]["properties"];
    assert_eq!(refund["fee_returned_minor"]["minimum"], 1, "{refund}");
    for body in ["RefundFeeReturnedBody", "RefundFeeReturnedCommandBody"] {
        let schema = &r.body["components"]["schemas"][body];
        assert_eq!(
            schema["properties"]["fee_returned_minor"]["minimum"], 1,
            "{body}: {schema}"
        );
        assert!(
            schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == "fee_returned_minor")),
            "{body}: {schema}"
        );
    }
    let r = t.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    t.funded_project("fund-1", 10).await;
    let r = t.get("/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    for name in [
        "ledger_events_appended_total",
        "ledger_append_batch_events_bucket",
        "ledger_projection_lag_events",
    ] {
        assert!(r.text.contains(name), "{name} missing: {}", r.text);
    }
    t.finish().await;
}
