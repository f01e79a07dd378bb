//! The tlog router, driven with `tower::ServiceExt::oneshot`: every route, and every way a
//! caller can get a parameter wrong (always a 4xx naming the parameter, never a 5xx).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use events::merkle::{leaf_hash, root, verify_consistency, verify_inclusion};
use events::{parse_entry_bundle, parse_hash_tile, Checkpoint, Hash, VerifierKey};
use ledger::node::Node;
use ledger::tlog::wire::{
    hashes_from_hex, ConsistencyProof, InclusionProof, ReceiptProof, RefundProof,
};
use ledger::tlog::{routes, TlogState};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    node: Node,
    app: Router,
    key: VerifierKey,
    size: u64,
    note: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let node = common::demo_node(dir.path(), 300, true).await;
    common::caught_up(&node).await;
    let note = common::sign_now(&node, dir.path());
    let head = node.log.head().await.unwrap();
    // The hash index follows the log off the append path; wait for it.
    for _ in 0..300 {
        if node.event_hashes.position() >= head.len {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let key = node.checkpoints.key().unwrap().clone();
    let app = routes(TlogState::from_node(&node));
    Fixture {
        _dir: dir,
        node,
        app,
        key,
        size: head.len,
        note,
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    cache: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, content_type, cache) = (
        response.status(),
        header("content-type"),
        header("cache-control"),
    );
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        content_type,
        cache,
        body,
    }
}

/// A 4xx with `{"error": {"code", "message"}}` whose message names `param`.
async fn rejected(app: &Router, uri: &str, status: StatusCode, param: &str) {
    let answer = get(app, uri).await;
    assert_eq!(answer.status, status, "{uri}: {}", answer.text());
    let body = answer.json();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(body["error"]["code"].is_string(), "{uri}: {body}");
    assert!(
        message.contains(param),
        "{uri}: the message {message:?} does not name {param:?}"
    );
}

fn hashes(v: &[String]) -> Vec<Hash> {
    hashes_from_hex(v).unwrap()
}

#[tokio::test]
async fn routes_answer_and_refuse() {
    let f = fixture().await;
    let app = &f.app;
    let tree = f.node.tree.clone();
    let at = tree.at(f.size).unwrap();
    let tree_root = root(f.size, &at).unwrap();
    assert!(
        f.size > 300 && f.size < 512,
        "the fixture spans two level-0 tiles: {}",
        f.size
    );

    // The latest checkpoint and the key.
    let a = get(app, "/log/checkpoint").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type.starts_with("text/plain"));
    assert_eq!(a.text(), f.note);
    let c = Checkpoint::open(&a.text(), &f.key).unwrap();
    assert_eq!((c.size, c.root), (f.size, tree_root));
    let a = get(app, "/log/key").await;
    assert_eq!(a.text().trim(), f.key.to_text());
    assert_eq!(VerifierKey::parse(a.text().trim()).unwrap(), f.key);

    // Checkpoints by size.
    let a = get(app, &format!("/api/v1/public/checkpoints/{}", f.size)).await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, f.note.clone()));
    rejected(
        app,
        "/api/v1/public/checkpoints/1",
        StatusCode::NOT_FOUND,
        "1",
    )
    .await;
    rejected(
        app,
        "/api/v1/public/checkpoints/abc",
        StatusCode::BAD_REQUEST,
        "size",
    )
    .await;
    rejected(
        app,
        "/api/v1/public/checkpoints/-1",
        StatusCode::BAD_REQUEST,
        "size",
    )
    .await;
    rejected(
        app,
        "/api/v1/public/checkpoints/99999999999999999999999",
        StatusCode::BAD_REQUEST,
        "size",
    )
    .await;
    rejected(
        app,
        &format!("/api/v1/public/checkpoints/{}", "9".repeat(200)),
        StatusCode::BAD_REQUEST,
        "size",
    )
    .await;

    // Tiles: a full level-0 tile, the partial one after it, the level-1 partial tile, and
    // the entry bundles; full tiles are immutable.
    let events = f.node.log.read(0, f.size as usize).await.unwrap();
    let leaves: Vec<Hash> = events
        .iter()
        .map(|e| leaf_hash(e.canonical_bytes()))
        .collect();
    let a = get(app, "/log/tile/0/000").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/octet-stream");
    assert!(a.cache.contains("immutable"), "{}", a.cache);
    assert_eq!(parse_hash_tile(&a.body).unwrap(), leaves[..256].to_vec());
    let width = f.size - 256;
    let a = get(app, &format!("/log/tile/0/001.p/{width}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.cache.contains("immutable"));
    assert_eq!(parse_hash_tile(&a.body).unwrap(), leaves[256..].to_vec());
    // A narrower partial tile is a prefix of the wider one.
    let a = get(app, "/log/tile/0/001.p/2").await;
    assert_eq!(parse_hash_tile(&a.body).unwrap(), leaves[256..258].to_vec());
    let a = get(app, "/log/tile/1/000.p/1").await;
    assert_eq!(
        parse_hash_tile(&a.body).unwrap(),
        vec![root(256, &at).unwrap()]
    );
    let a = get(app, "/log/tile/entries/000").await;
    assert!(a.cache.contains("immutable"));
    let entries = parse_entry_bundle(&a.body).unwrap();
    assert_eq!(entries.len(), 256);
    assert_eq!(entries[5], events[5].canonical_bytes());
    let a = get(app, &format!("/log/tile/entries/001.p/{width}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(parse_entry_bundle(&a.body).unwrap().len() as u64, width);
    for bad in [
        "/log/tile/0/1",
        "/log/tile/0/0001",
        "/log/tile/0/x000/001",
        "/log/tile/00/000",
        "/log/tile/64/000",
        "/log/tile/0/000.p/0",
        "/log/tile/0/000.p/256",
        "/log/tile/0/000.p/01",
        "/log/tile/entries/abc",
        "/log/tile/zero/000",
    ] {
        rejected(app, bad, StatusCode::BAD_REQUEST, "tile path").await;
    }
    for missing in [
        "/log/tile/0/001",
        "/log/tile/0/002.p/1",
        &format!("/log/tile/0/001.p/{}", width + 1),
        "/log/tile/1/000",
        "/log/tile/2/000.p/1",
        "/log/tile/9/000.p/1",
        "/log/tile/entries/001",
        "/log/tile/entries/x001/000",
    ] {
        rejected(app, missing, StatusCode::NOT_FOUND, "tile").await;
    }

    // Inclusion proofs, by seq and by hash.
    let inclusion = "/api/v1/public/proofs/inclusion";
    for (seq, size) in [(0, 1), (0, f.size), (255, 300), (f.size - 1, f.size)] {
        let a = get(app, &format!("{inclusion}?seq={seq}&tree_size={size}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let proof: InclusionProof = serde_json::from_slice(&a.body).unwrap();
        assert_eq!((proof.leaf_index, proof.tree_size), (seq, size));
        verify_inclusion(
            &leaves[seq as usize],
            seq,
            size,
            &hashes(&proof.hashes),
            &root(size, &at).unwrap(),
        )
        .unwrap();
    }
    let a = get(
        app,
        &format!(
            "{inclusion}?hash={}&tree_size={}",
            events[42].hash(),
            f.size
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let proof: InclusionProof = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(proof.leaf_index, 42);
    let size = f.size;
    for (query, status, param) in [
        ("seq=1".to_owned(), StatusCode::BAD_REQUEST, "tree_size"),
        (
            "seq=1&tree_size=0".to_owned(),
            StatusCode::BAD_REQUEST,
            "tree_size",
        ),
        (
            format!("seq=1&tree_size={}", size + 1),
            StatusCode::BAD_REQUEST,
            "tree_size",
        ),
        (
            "seq=5&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            "seq=abc&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            "seq=-1&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            "seq=1.5&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            "seq=18446744073709551616&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        ("tree_size=5".to_owned(), StatusCode::BAD_REQUEST, "seq"),
        (
            format!("seq=1&hash={}&tree_size=5", Hash::ZERO),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            "hash=xyz&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "hash",
        ),
        (
            format!("hash={}&tree_size=5", Hash::ZERO),
            StatusCode::NOT_FOUND,
            "hash",
        ),
        (
            "seq=1&tree_size=5&extra=1".to_owned(),
            StatusCode::BAD_REQUEST,
            "extra",
        ),
        (
            "seq=1&seq=2&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            format!("seq=1&tree_size=5&pad={}", "x".repeat(2000)),
            StatusCode::BAD_REQUEST,
            "query",
        ),
        (
            "seq=%FF&tree_size=5".to_owned(),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
    ] {
        rejected(app, &format!("{inclusion}?{query}"), status, param).await;
    }
    rejected(app, inclusion, StatusCode::BAD_REQUEST, "tree_size").await;

    // Consistency proofs.
    let consistency = "/api/v1/public/proofs/consistency";
    for (from, to) in [(0, 5), (1, f.size), (256, f.size), (f.size, f.size), (3, 7)] {
        let a = get(app, &format!("{consistency}?from={from}&to={to}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let proof: ConsistencyProof = serde_json::from_slice(&a.body).unwrap();
        assert_eq!((proof.from, proof.to), (from, to));
        verify_consistency(
            from,
            to,
            &root(from, &at).unwrap(),
            &root(to, &at).unwrap(),
            &hashes(&proof.hashes),
        )
        .unwrap();
    }
    for (query, param) in [
        ("from=5&to=3".to_owned(), "from"),
        (format!("from=1&to={}", size + 1), "to"),
        ("to=3".to_owned(), "from"),
        ("from=3".to_owned(), "to"),
        ("from=x&to=3".to_owned(), "from"),
        ("from=1&to=3&tree_size=4".to_owned(), "tree_size"),
    ] {
        rejected(
            app,
            &format!("{consistency}?{query}"),
            StatusCode::BAD_REQUEST,
            param,
        )
        .await;
    }

    // Receipt bundles.
    let state = f.node.state();
    let (code, seq) = state
        .donations
        .values()
        .next()
        .map(|d| (d.receipt_code, d.seq))
        .unwrap();
    let a = get(app, &format!("/api/v1/public/receipts/{code}/proof")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let bundle: ReceiptProof = serde_json::from_slice(&a.body).unwrap();
    assert_eq!((bundle.seq, bundle.inclusion.tree_size), (seq, f.size));
    assert_eq!(
        bundle.event.as_bytes(),
        events[seq as usize].canonical_bytes()
    );
    let report = ledger::tlog::verify::verify_receipt(&a.text(), &f.key).unwrap();
    assert_eq!(report.seq, seq);
    assert_eq!(
        bundle.refund, None,
        "the first gift of the demo is not refunded"
    );
    assert_eq!(report.refund, None);
    assert!(
        !a.text().contains("\"refund\""),
        "no refund member: {}",
        a.text()
    );

    // A refunded gift's bundle proves its refund too, in the same checkpoint.
    let (code, seq, refund_seq) = state
        .donations
        .values()
        .find_map(|d| Some((d.receipt_code, d.seq, d.refunded_seq?)))
        .expect("the demo refunds some gifts");
    let a = get(app, &format!("/api/v1/public/receipts/{code}/proof")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let bundle: ReceiptProof = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(bundle.seq, seq);
    let refund = bundle.refund.clone().expect("a refund member");
    assert_eq!(refund.seq, refund_seq);
    assert_eq!(
        refund.event.as_bytes(),
        events[refund_seq as usize].canonical_bytes()
    );
    assert_eq!(refund.inclusion.as_ref().unwrap().tree_size, f.size);
    let report = ledger::tlog::verify::verify_receipt(&a.text(), &f.key).unwrap();
    let checked = report.refund.expect("the refund is reported");
    assert_eq!((checked.seq, checked.included), (refund_seq, true));
    assert_eq!(checked.event_hash, events[refund_seq as usize].hash());
    // A refund that names another gift, or a changed refund event, or a changed proof of
    // it, does not verify.
    let with_refund = |refund: RefundProof| {
        serde_json::to_string(&ReceiptProof {
            refund: Some(refund),
            ..bundle.clone()
        })
        .unwrap()
    };
    let other = state
        .donations
        .values()
        .find_map(|d| d.refunded_seq.filter(|&r| r != refund_seq))
        .expect("the demo refunds more than one gift");
    let other = RefundProof {
        seq: other,
        event_hash: events[other as usize].hash().to_hex(),
        event: String::from_utf8(events[other as usize].canonical_bytes().to_vec()).unwrap(),
        inclusion: Some(InclusionProof {
            leaf_index: other,
            tree_size: f.size,
            hashes: events::merkle::inclusion_proof(other, f.size, &at)
                .unwrap()
                .iter()
                .map(Hash::to_hex)
                .collect(),
        }),
    };
    let e = ledger::tlog::verify::verify_receipt(&with_refund(other), &f.key).unwrap_err();
    assert!(e.to_string().contains("not a donation_refunded of"), "{e}");
    let changed = RefundProof {
        event: refund.event.replace("\"reason\":\"", "\"reason\":\"x"),
        ..refund.clone()
    };
    let e = ledger::tlog::verify::verify_receipt(&with_refund(changed), &f.key).unwrap_err();
    assert!(e.to_string().contains("the refund"), "{e}");
    let mut moved = refund.clone();
    moved.inclusion.as_mut().unwrap().hashes[0] = "00".repeat(32);
    let e = ledger::tlog::verify::verify_receipt(&with_refund(moved), &f.key).unwrap_err();
    assert!(
        e.to_string().contains("inclusion proof does not verify"),
        "{e}"
    );
    // A refund the checkpoint covers must come with its proof: without one it is refused,
    // so a made-up refund cannot pass as "newer than the checkpoint".
    let unproven = RefundProof {
        inclusion: None,
        ..refund.clone()
    };
    let e = ledger::tlog::verify::verify_receipt(&with_refund(unproven), &f.key).unwrap_err();
    assert!(e.to_string().contains("no inclusion proof"), "{e}");
    // One newer than the checkpoint is checked against its own hash only, and said so: a
    // bundle made when the latest checkpoint covered the gift but not yet its refund (signed
    // here at the refund's own seq as tree size, with the gift's proof at that size).
    let signer = ledger::tlog::checkpoints::load_signer(f._dir.path())
        .unwrap()
        .unwrap();
    let then = refund_seq;
    assert!(seq < then);
    let note = Checkpoint::new(signer.name(), then, root(then, &at).unwrap())
        .sign(&signer)
        .unwrap();
    let bundle_then = ReceiptProof {
        checkpoint: note,
        inclusion: InclusionProof {
            leaf_index: seq,
            tree_size: then,
            hashes: events::merkle::inclusion_proof(seq, then, &at)
                .unwrap()
                .iter()
                .map(Hash::to_hex)
                .collect(),
        },
        refund: Some(RefundProof {
            inclusion: None,
            ..refund.clone()
        }),
        ..bundle.clone()
    };
    let text = serde_json::to_string(&bundle_then).unwrap();
    let report = ledger::tlog::verify::verify_receipt(&text, &f.key).unwrap();
    let checked = report.refund.expect("the refund is reported");
    assert_eq!((checked.seq, checked.included), (refund_seq, false));
    // A bundle with its event changed does not verify.
    let forged = a
        .text()
        .replace("\"amount_minor\\\":", "\"amount_minor\\\":1");
    assert!(ledger::tlog::verify::verify_receipt(&forged, &f.key).is_err());
    rejected(
        app,
        "/api/v1/public/receipts/nope/proof",
        StatusCode::BAD_REQUEST,
        "code",
    )
    .await;
    rejected(
        app,
        "/api/v1/public/receipts/0000-0000-0000-0000/proof",
        StatusCode::NOT_FOUND,
        "0000-0000-0000-0000",
    )
    .await;
    rejected(
        app,
        "/api/v1/public/receipts/%FF%FE/proof",
        StatusCode::BAD_REQUEST,
        "code",
    )
    .await;

    f.node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_ledger_without_a_key_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::demo_node(dir.path(), 5, false).await;
    let app = routes(TlogState::from_node(&node));
    rejected(&app, "/log/checkpoint", StatusCode::NOT_FOUND, "checkpoint").await;
    rejected(&app, "/log/key", StatusCode::NOT_FOUND, "key").await;
    // Tiles and proofs need no key.
    let a = get(&app, "/api/v1/public/proofs/consistency?from=1&to=2").await;
    assert_eq!(a.status, StatusCode::OK);
    // A receipt not yet covered by any checkpoint.
    common::caught_up(&node).await;
    let code = node.state().donations.values().next().unwrap().receipt_code;
    rejected(
        &app,
        &format!("/api/v1/public/receipts/{code}/proof"),
        StatusCode::NOT_FOUND,
        "checkpoint",
    )
    .await;
    node.shutdown().await.unwrap();
}

/// The hash index lives in memory: a reopened node rebuilds it from the hashes the log
/// stores, and every event is found again by its hash (and a hash of no event is not).
#[tokio::test]
async fn the_hash_index_is_rebuilt_when_a_node_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::demo_node(dir.path(), 200, false).await;
    let head = node.log.head().await.unwrap();
    let events = ledger::writer::read_range(node.log.as_ref(), 0, head.len)
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    let node = Node::open(ledger::node::NodeConfig {
        data_dir: dir.path().to_owned(),
        ledger: Some(events::Id::new("erqi").unwrap()),
        clock: ledger::writer::system_clock(),
    })
    .await
    .unwrap();
    for _ in 0..500 {
        if node.event_hashes.position() >= head.len {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(node.event_hashes.position(), head.len);
    for e in &events {
        assert_eq!(
            node.event_hashes.seq(&e.hash()).await.unwrap(),
            Some(e.seq())
        );
    }
    assert_eq!(node.event_hashes.seq(&Hash([3; 32])).await.unwrap(), None);
    node.shutdown().await.unwrap();
}
