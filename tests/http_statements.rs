//! Statement routes of the staff API, driven with `tower::ServiceExt::oneshot`: upload a
//! WeChat Pay bill, upload it again, a malformed and an oversized file, roles, the
//! reconciliation listing, and resolving an exception (with an idempotent replay).

#[path = "http_common/mod.rs"]
mod common;

use axum::http::{Method, StatusCode};
use common::*;
use ledger::http::limits::{PAGE_EXCEPTIONS_MAX, STATEMENT_BODY_BYTES_MAX};
use ledger::statement::synth::{write_wechat_bill, BillLine};
use serde_json::{json, Value};

const UPLOAD: &str = "/api/v1/staff/statements?format=wechat";
const MERCHANT: &str = "1900000109";

fn bill_line(txn: &str, amount: u64, n: u64) -> BillLine {
    BillLine {
        ts_ms: T0_MS + n * 1000,
        order_id: txn.to_owned(),
        channel_order_id: format!("42000000{n:012}"),
        amount_minor: amount,
        fee_milli_minor: 0,
        refund_id: None,
    }
}

/// A bill of wx-1 and wx-2 (in the ledger) and wx-9 (not in the ledger), as WeChat Pay
/// prints it.
fn bill() -> String {
    let mut bytes = Vec::new();
    write_wechat_bill(
        &mut bytes,
        MERCHANT,
        vec![
            bill_line("wx-1", 1_000, 1),
            bill_line("wx-2", 2_000, 2),
            bill_line("wx-9", 700, 3),
        ],
    )
    .expect("writing to a Vec");
    String::from_utf8(bytes).expect("the bill is UTF-8")
}

/// The app, with a project with donations wx-1, wx-2 (on the bill) and wx-3 (missing from
/// it).
async fn setup_with_donations() -> TestApp {
    let t = setup().await;
    t.created(
        "/api/v1/staff/projects",
        "admin",
        json!({"project": "p1", "kind": "general_fund", "name": "基金", "currency": "CNY"}),
    )
    .await;
    for (txn, amount) in [("wx-1", 1_000), ("wx-2", 2_000), ("wx-3", 500)] {
        t.created(
            "/api/v1/staff/donations",
            "recorder",
            donation("p1", amount, txn, "donor-000001"),
        )
        .await;
    }
    t
}

async fn upload(t: &TestApp, uri: &str, who: &str, body: &str) -> Reply {
    t.call_with(
        Method::POST,
        uri,
        Some(who),
        Some(body.to_owned()),
        &[("content-type", "text/csv; charset=utf-8")],
    )
    .await
}

async fn head(t: &TestApp) -> u64 {
    t.node.log.head().await.expect("head").len
}

/// The exception of line `line_no` in statement `seq`'s reconciliation, as an auditor reads it.
async fn line_exception(t: &TestApp, seq: u64, line_no: u64) -> Value {
    let page = t
        .get(
            &format!("/api/v1/staff/statements/{seq}/reconciliation"),
            Some("auditor"),
        )
        .await;
    page.body["exceptions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["line_no"] == line_no))
        .unwrap_or_else(|| panic!("line {line_no}'s exception in {page:?}"))
        .clone()
}

fn reasons(page: &Value) -> Vec<(String, Option<u64>, Option<u64>)> {
    page["exceptions"]
        .as_array()
        .expect("exceptions")
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_owned(),
                e["line_no"].as_u64(),
                e["entry_seq"].as_u64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn upload_reupload_and_reconciliation_listing() {
    let t = setup_with_donations().await;
    let text = bill();

    let r = upload(&t, UPLOAD, "recorder", &text).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let seq = r.body["statement_seq"].as_u64().expect("statement_seq");
    assert_eq!(r.body["already_imported"], false);
    assert_eq!(r.body["line_count"], 3);
    assert_eq!(r.body["lines_recorded_now"], 3);
    assert_eq!(r.body["account"], MERCHANT);
    assert_eq!(r.body["source"], "wechat");
    let summary = &r.body["reconciliation"];
    assert_eq!(summary["matched"], 2, "{r:?}");
    assert_eq!(summary["matched_by_rule"]["reference"], 2);
    assert_eq!(summary["exceptions"], 2);
    assert_eq!(summary["open_exceptions"], 2);
    assert_eq!(summary["exceptions_by_reason"]["line_not_in_ledger"], 1);
    assert_eq!(summary["exceptions_by_reason"]["missing_from_statement"], 1);
    // The bill's figures by direction: three payments in, nothing out, no fees.
    assert_eq!(summary["lines_in"], 3);
    assert_eq!(summary["lines_out"], 0);
    assert_eq!(summary["money_in_minor"], 3_700);
    assert_eq!(summary["money_out_minor"], 0);
    assert_eq!(summary["fees_charged_minor"], 0);
    assert_eq!(summary["fees_returned_minor"], 0);
    assert_eq!(summary["net_fees_minor"], 0);
    assert_eq!(summary["net_minor"], 3_700);
    assert!(summary.get("statement_gross_minor").is_none());

    // The same file again changes nothing and says so.
    let before = head(&t).await;
    let again = upload(&t, UPLOAD, "recorder", &text).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["statement_seq"], seq);
    assert_eq!(again.body["already_imported"], true);
    assert_eq!(again.body["lines_recorded_now"], 0);
    assert_eq!(again.body["reconciliation"]["matched"], 2);
    assert_eq!(head(&t).await, before, "a re-upload wrote events");

    // Every staff role reads the reconciliation.
    let uri = format!("/api/v1/staff/statements/{seq}/reconciliation");
    for who in ["auditor", "approver", "recorder", "admin"] {
        let r = t.get(&uri, Some(who)).await;
        assert_eq!(r.status, StatusCode::OK, "{who}: {r:?}");
        assert_eq!(r.body["summary"]["matched"], 2);
        assert_eq!(r.body["line_count"], 3);
        assert_eq!(r.body["lines_recorded"], 3);
        let mut got = reasons(&r.body);
        got.sort();
        assert_eq!(got.len(), 2, "{r:?}");
        assert_eq!(got[0].0, "line_not_in_ledger");
        assert_eq!(got[0].1, Some(3));
        assert_eq!(got[1].0, "missing_from_statement");
        assert!(got[1].2.is_some());
        assert!(r.body["next_after"].is_null());
    }
    let line = line_exception(&t, seq, 3).await;
    assert_eq!(line["statement_amount_minor"], 700);
    assert_eq!(line["reference"], "wx-9");
    // No token: 401.
    assert_eq!(t.get(&uri, None).await.status, StatusCode::UNAUTHORIZED);
    // A timing window of u64::MAX minutes: 400 naming it (it overflowed before).
    let r = t
        .get(
            &format!("{uri}?timing_window_minutes=18446744073709551615"),
            Some("auditor"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.message().contains("timing_window_minutes: at most 10080"),
        "{r:?}"
    );

    // Paged.
    let p1 = t.get(&format!("{uri}?limit=1"), Some("auditor")).await;
    assert_eq!(p1.status, StatusCode::OK, "{p1:?}");
    assert_eq!(reasons(&p1.body).len(), 1);
    assert_eq!(p1.body["next_after"], "line-3");
    let p2 = t
        .get(&format!("{uri}?limit=1&after=line-3"), Some("auditor"))
        .await;
    assert_eq!(reasons(&p2.body).len(), 1);
    assert!(p2.body["next_after"].is_null());
    assert_ne!(reasons(&p1.body), reasons(&p2.body));
    // Resolving the first page's exception does not make the next page skip one: the
    // cursor names the exception, not a position in the open list.
    let w = t
        .post(
            &format!("/api/v1/staff/statements/{seq}/exceptions/resolve"),
            "approver",
            json!({"line": 3, "action": "explained", "note": "对账"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::CREATED, "{w:?}");
    let p2 = t
        .get(
            &format!("{uri}?limit=1&after=line-3&min_seq={}", w.body["seq"]),
            Some("auditor"),
        )
        .await;
    assert_eq!(reasons(&p2.body).len(), 1, "{p2:?}");
    assert_eq!(reasons(&p2.body)[0].0, "missing_from_statement");
    for bad in ["3", "line-x", "page-3", ""] {
        let r = t.get(&format!("{uri}?after={bad}"), Some("auditor")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
        assert!(r.message().starts_with("after: "), "{r:?}");
    }
    // Over the page limit: 400 naming it.
    let r = t
        .get(
            &format!("{uri}?limit={}", PAGE_EXCEPTIONS_MAX + 1),
            Some("auditor"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.message().contains(&PAGE_EXCEPTIONS_MAX.to_string()),
        "{r:?}"
    );
    // No such statement.
    let r = t
        .get(
            "/api/v1/staff/statements/999999/reconciliation",
            Some("auditor"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    t.finish().await;
}

/// WeChat Pay's fees below the fen (`0.00600` on each of two lines): the summary gives the
/// net fees exactly (1,200 thousandths of a fen), as the channel keeps them (0.01, rounded
/// once) and the rounding difference from the lines' own fen (0.01 each).
#[tokio::test]
async fn fees_below_the_fen_are_summed_exactly_and_rounded_once() {
    let t = setup_with_donations().await;
    let lines = ["wx-1", "wx-2"].into_iter().zip([1_000, 2_000]).zip(1..);
    let lines = lines.map(|((txn, amount), n)| BillLine {
        fee_milli_minor: 600,
        ..bill_line(txn, amount, n)
    });
    let mut bytes = Vec::new();
    write_wechat_bill(&mut bytes, MERCHANT, lines).expect("writing to a Vec");
    let text = String::from_utf8(bytes).expect("the bill is UTF-8");
    assert!(text.contains("`0.00600,"), "{text}");

    let r = upload(&t, UPLOAD, "recorder", &text).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let summary = &r.body["reconciliation"];
    assert_eq!(summary["net_fees_milli_minor"], 1_200, "{r:?}");
    assert_eq!(summary["fees_charged_milli_minor"], 1_200);
    assert_eq!(summary["fees_returned_milli_minor"], 0);
    assert_eq!(summary["net_fees_minor"], 1);
    assert_eq!(summary["fee_rounding_minor"], -1);
    assert_eq!(summary["net_minor"], 3_000 - 1);
    // The gifts were booked without a fee: each line is a fee_difference, showing the
    // bill's exact fee beside its fen.
    let seq = r.body["statement_seq"].as_u64().expect("statement_seq");
    let line = line_exception(&t, seq, 1).await;
    assert_eq!(line["reason"], "fee_difference", "{line}");
    assert_eq!(line["statement_fee_minor"], 1);
    assert_eq!(line["statement_fee_milli_minor"], 600);
    assert_eq!(line["ledger_fee_minor"], 0);
    t.finish().await;
}

/// A refund on the bill that gives back its fee: the summary counts it as money out and
/// the fee as returned (negative net fees here), and the exception shows the line's fee
/// with its sign.
#[tokio::test]
async fn a_refund_giving_back_its_fee_is_money_out_and_a_returned_fee() {
    let t = setup_with_donations().await;
    let mut refund = bill_line("wx-2", 2_000, 2);
    refund.refund_id = Some("RF2".into());
    refund.fee_milli_minor = -12_000;
    let mut bytes = Vec::new();
    write_wechat_bill(
        &mut bytes,
        MERCHANT,
        vec![bill_line("wx-1", 1_000, 1), refund],
    )
    .expect("writing to a Vec");
    let text = String::from_utf8(bytes).expect("the bill is UTF-8");
    assert!(text.contains("`-0.12000,"), "{text}");

    let r = upload(&t, UPLOAD, "recorder", &text).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let summary = &r.body["reconciliation"];
    assert_eq!(summary["lines_in"], 1, "{r:?}");
    assert_eq!(summary["lines_out"], 1);
    assert_eq!(summary["money_in_minor"], 1_000);
    assert_eq!(summary["money_out_minor"], 2_000);
    assert_eq!(summary["fees_charged_minor"], 0);
    assert_eq!(summary["fees_returned_minor"], 12);
    assert_eq!(summary["net_fees_minor"], -12);
    assert_eq!(summary["net_fees_milli_minor"], -12_000);
    assert_eq!(summary["fee_rounding_minor"], 0);
    assert_eq!(summary["net_minor"], 1_000 - 2_000 + 12);
    // The ledger has not refunded wx-2: the refund line is an exception, fee and all.
    let seq = r.body["statement_seq"].as_u64().expect("statement_seq");
    let line = line_exception(&t, seq, 2).await;
    assert_eq!(line["reason"], "refund_not_in_ledger", "{line}");
    assert_eq!(line["statement_amount_minor"], 2_000);
    assert_eq!(line["statement_fee_minor"], -12);
    assert!(line["statement_fee_milli_minor"].is_null(), "{line}");
    t.finish().await;
}

/// A statement uploaded with a token issued through the API records the issuer in its
/// events, as every other write does.
#[tokio::test]
async fn an_upload_records_the_issuer_of_its_token() {
    let t = setup_with_donations().await;
    let r = t
        .post(
            "/api/v1/staff/tokens",
            "admin",
            json!({"actor": "cashier-wu", "role": "recorder"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let admin = r.body["info"]["issued_by"].as_str().unwrap().to_owned();
    let token = r.body["token"].as_str().unwrap().to_owned();
    let before = head(&t).await;
    let r = t
        .call_with(
            Method::POST,
            UPLOAD,
            None,
            Some(bill()),
            &[
                ("content-type", "text/csv; charset=utf-8"),
                ("authorization", &format!("Bearer {token}")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let written = t.node.log.read(before, 100).await.unwrap();
    assert!(written.len() >= 2, "the statement and its lines");
    for e in &written {
        assert_eq!(e.record().actor.as_str(), "cashier-wu");
        assert_eq!(
            e.record().token_issuer.as_ref().map(|i| i.as_str()),
            Some(admin.as_str())
        );
    }
    t.finish().await;
}

#[tokio::test]
async fn refused_uploads_record_nothing() {
    let t = setup_with_donations().await;
    let text = bill();
    let before = head(&t).await;

    // Three decimals in the first data row's 应结订单金额: file line 2, column 13.
    let bad = text.replacen("`10.00,`0.00,`0,`0", "`10.001,`0.00,`0,`0", 1);
    assert_ne!(bad, text);
    let r = upload(&t, UPLOAD, "recorder", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "malformed_statement");
    assert_eq!(r.body["error"]["line"], 2, "{r:?}");
    assert_eq!(r.body["error"]["column"], 13, "{r:?}");
    assert!(r.message().contains("line 2, column 13"), "{r:?}");
    assert!(r.message().contains("nothing was recorded"), "{r:?}");
    // A later line's error: every line before it was checked but none recorded.
    let bad = text.replacen("`20.00,`0.00,`0,`0", "`abc,`0.00,`0,`0", 1);
    let r = upload(&t, UPLOAD, "recorder", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.body["error"]["line"], 3, "{r:?}");

    // Another account than the one asked for.
    let r = upload(
        &t,
        &format!("{UPLOAD}&account=1900000999"),
        "recorder",
        &text,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.code(), "account_mismatch");

    // Wrong roles.
    for who in ["approver", "auditor", "admin"] {
        let r = upload(&t, UPLOAD, who, &text).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {r:?}");
        assert!(r.message().contains("recorder"), "{r:?}");
    }

    // Bad queries, media type, empty body.
    for uri in [
        "/api/v1/staff/statements",
        "/api/v1/staff/statements?format=paypal",
        "/api/v1/staff/statements?format=wechat&colour=red",
        "/api/v1/staff/statements?format=wechat&utc_offset_minutes=900",
    ] {
        let r = upload(&t, uri, "recorder", &text).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {r:?}");
    }
    // Matching windows beyond their limits, named, before anything is recorded (a window
    // of u64::MAX minutes used to overflow in the reconciliation after the recording).
    for (query, expected) in [
        (
            "date_window_hours=721",
            "date_window_hours: at most 720 (got 721)",
        ),
        (
            "timing_window_minutes=18446744073709551615",
            "timing_window_minutes: at most 10080",
        ),
    ] {
        let r = upload(&t, &format!("{UPLOAD}&{query}"), "recorder", &text).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {r:?}");
        assert_eq!(r.code(), "invalid_query");
        assert!(r.message().contains(expected), "{r:?}");
    }
    let r = t
        .call_with(
            Method::POST,
            UPLOAD,
            Some("recorder"),
            Some(text.clone()),
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r:?}");
    let r = upload(&t, UPLOAD, "recorder", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "empty_body");

    // Too large, declared or not: 413 naming the limit.
    let limit = STATEMENT_BODY_BYTES_MAX.to_string();
    let r = t
        .call_with(
            Method::POST,
            UPLOAD,
            Some("recorder"),
            Some(text.clone()),
            &[
                ("content-type", "text/csv"),
                (
                    "content-length",
                    &(STATEMENT_BODY_BYTES_MAX + 1).to_string(),
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert!(r.message().contains(&limit), "{r:?}");
    let huge = format!("{text}{}", "#".repeat(STATEMENT_BODY_BYTES_MAX));
    let r = upload(&t, UPLOAD, "recorder", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.code(), "payload_too_large");
    assert!(r.message().contains(&limit), "{r:?}");
    // Another role's upload is refused before its body is read: 403, not 413.
    let r = upload(&t, UPLOAD, "auditor", &huge).await;
    drop(huge);
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // Other routes keep their own, smaller limit.
    let r = t
        .call_with(
            Method::POST,
            "/api/v1/staff/donations",
            Some("recorder"),
            Some("x".repeat(3 * 1024 * 1024)),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");

    assert_eq!(head(&t).await, before, "a refused upload wrote events");
    // The good file is still taken afterwards.
    let r = upload(&t, UPLOAD, "recorder", &text).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    t.finish().await;
}

#[tokio::test]
async fn resolving_an_exception_removes_it_and_replays() {
    let t = setup_with_donations().await;
    let r = upload(&t, UPLOAD, "recorder", &bill()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let seq = r.body["statement_seq"].as_u64().expect("statement_seq");
    let list = format!("/api/v1/staff/statements/{seq}/reconciliation");
    let resolve = format!("/api/v1/staff/statements/{seq}/exceptions/resolve");
    let body = json!({"line": 3, "action": "explained", "note": "测试付款，已退回"});
    let start = head(&t).await;

    // Only the approver resolves.
    for who in ["recorder", "auditor", "admin"] {
        let r = t.post(&resolve, who, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {r:?}");
        assert!(r.message().contains("approver"), "{r:?}");
    }
    // Fields checked like the CLI's.
    for (bad, field) in [
        (json!({"action": "explained", "note": "x"}), "line"),
        (
            json!({"line": 3, "entry": 4, "action": "explained", "note": "x"}),
            "entry",
        ),
        (
            json!({"line": 3, "action": "linked", "note": "x"}),
            "link_to",
        ),
        (
            json!({"line": 3, "action": "settlement", "channel": "paypal", "amount": "7.00", "note": "x"}),
            "channel",
        ),
        (
            json!({"line": 3, "action": "settlement", "channel": "wechat", "amount": "-7", "note": "x"}),
            "amount",
        ),
        (
            json!({"line": 3, "action": "explained", "note": ""}),
            "note",
        ),
    ] {
        let r = t.post(&resolve, "approver", bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
        assert!(r.message().starts_with(field), "{bad}: {r:?}");
    }
    let r = t
        .post(
            &resolve,
            "approver",
            json!({"line": 3, "action": "shrug", "note": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(head(&t).await, start, "a refused resolution wrote events");

    // Resolve line 3 with an Idempotency-Key.
    let key = "resolve-line-3";
    let first = t.post_keyed(&resolve, "approver", &body, key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(
        first.body["events"][0]["type"], "exception_resolved",
        "{first:?}"
    );
    let resolved_seq = first.body["seq"].as_u64().expect("seq");
    // The retry replays it and writes nothing.
    let before = head(&t).await;
    let replay = t.post_keyed(&resolve, "approver", &body, key).await;
    assert_eq!(replay.status, StatusCode::OK, "{replay:?}");
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body["seq"], resolved_seq);
    assert_eq!(replay.body["replayed"], true);
    assert_eq!(head(&t).await, before);
    // The same key with another body is a conflict.
    let other = json!({"line": 3, "action": "explained", "note": "另一个理由"});
    let r = t.post_keyed(&resolve, "approver", &other, key).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    // Resolving it again without the key is refused by the ledger.
    let r = t.post(&resolve, "approver", body.clone()).await;
    assert!(r.status.is_client_error(), "{r:?}");
    assert_eq!(r.code(), "already_resolved", "{r:?}");

    // Gone from the open list, shown among the resolved ones.
    let min_seq = format!("min_seq={resolved_seq}");
    let open = t.get(&format!("{list}?{min_seq}"), Some("auditor")).await;
    assert_eq!(open.status, StatusCode::OK, "{open:?}");
    let got = reasons(&open.body);
    assert_eq!(got.len(), 1, "{open:?}");
    assert_eq!(got[0].0, "missing_from_statement");
    assert_eq!(open.body["summary"]["open_exceptions"], 1);
    assert_eq!(open.body["summary"]["exceptions"], 2);
    let done = t
        .get(
            &format!("{list}?status=resolved&{min_seq}"),
            Some("auditor"),
        )
        .await;
    let e = &done.body["exceptions"][0];
    assert_eq!(e["line_no"], 3, "{done:?}");
    assert_eq!(e["resolved_seq"], resolved_seq);
    assert_eq!(e["resolution"], "explained");
    let all = t
        .get(&format!("{list}?status=all&{min_seq}"), Some("auditor"))
        .await;
    assert_eq!(reasons(&all.body).len(), 2);

    // The entry exception too, by its entry.
    let entry = got[0].2.expect("entry seq");
    let r = t
        .post(
            &resolve,
            "approver",
            json!({"entry": entry, "action": "explained", "note": "次日账单"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let seq2 = r.body["seq"].as_u64().expect("seq");
    let open = t
        .get(&format!("{list}?min_seq={seq2}"), Some("auditor"))
        .await;
    assert!(reasons(&open.body).is_empty(), "{open:?}");
    assert_eq!(open.body["summary"]["open_exceptions"], 0);
    t.finish().await;
}

/// The ledger checks a resolution against the exception it resolves, whichever path sends
/// it: a matched line or entry is refused with 409, a link of another amount with 422, and
/// nothing is written.
#[tokio::test]
async fn a_resolution_that_does_not_fit_its_exception_is_refused() {
    let t = setup_with_donations().await;
    let r = upload(&t, UPLOAD, "recorder", &bill()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let seq = r.body["statement_seq"].as_u64().expect("statement_seq");
    let list = format!("/api/v1/staff/statements/{seq}/reconciliation");
    let resolve = format!("/api/v1/staff/statements/{seq}/exceptions/resolve");
    let open = t.get(&list, Some("auditor")).await;
    // wx-3 (5.00) is missing from the bill; wx-1 was recorded two events before it.
    let (reason, _, wx3) = reasons(&open.body)
        .into_iter()
        .find(|(reason, ..)| reason == "missing_from_statement")
        .expect("wx-3 is missing");
    assert_eq!(reason, "missing_from_statement");
    let wx3 = wx3.expect("entry seq");
    let wx1 = wx3 - 2;
    let start = head(&t).await;
    for (body, status, code, field) in [
        // Line 1 is wx-1, matched by reference.
        (
            json!({"line": 1, "action": "explained", "note": "x"}),
            StatusCode::CONFLICT,
            "line_matched",
            "line_no",
        ),
        (
            json!({"entry": wx1, "action": "explained", "note": "x"}),
            StatusCode::CONFLICT,
            "entry_matched",
            "entry_seq",
        ),
        // Line 3 (wx-9, 7.00) is not wx-3 (5.00).
        (
            json!({"line": 3, "action": "linked", "link_to": wx3, "note": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_mismatch",
            "resolution.entry_seq",
        ),
    ] {
        let r = t.post(&resolve, "approver", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {r:?}");
        assert_eq!(r.code(), code, "{body}: {r:?}");
        assert!(r.message().starts_with(field), "{body}: {r:?}");
    }
    assert_eq!(head(&t).await, start, "a refused resolution wrote events");
    t.finish().await;
}

#[tokio::test]
async fn openapi_documents_the_statement_routes() {
    let t = setup().await;
    let r = t.get("/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = &r.body["paths"];
    let upload = &paths["/api/v1/staff/statements"]["post"];
    assert!(upload.is_object(), "{}", r.text);
    assert!(upload["requestBody"]["content"]["text/csv"].is_object());
    assert!(upload["requestBody"]["content"]["application/xml"].is_object());
    assert!(upload["responses"]["413"].is_object());
    assert!(upload["responses"]["422"].is_object());
    assert!(paths["/api/v1/staff/statements/{seq}/reconciliation"]["get"].is_object());
    assert!(paths["/api/v1/staff/statements/{seq}/exceptions/resolve"]["post"].is_object());
    t.finish().await;
}
