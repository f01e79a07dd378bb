//! End to end: a small demo ledger with a key, the tlog router served on 127.0.0.1:0, and
//! the real `ledger` binary verifying it by URL with saved older checkpoints, a receipt
//! bundle offline, and the export; forged checkpoints and a tampered export fail.

mod common;

use std::path::Path;
use std::process::Command;

use events::{Checkpoint, Hash, Id, ProjectKind, Text};
use ledger::command::Command as LedgerCommand;
use ledger::node::Node;
use ledger::tlog::{routes, TlogState};
use ledger::writer::Submission;

fn ledger_bin(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs the binary (which waits for a data directory's lock that a closed database's
/// threads still hold, `SledLog::open_db`).
async fn run(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ledger_bin(&args)
    })
    .await
    .unwrap()
}

async fn open_projects(node: &Node, from: usize, n: usize) {
    let commands = (from..from + n)
        .map(|i| LedgerCommand::OpenProject {
            project: Id::new(&format!("extra-{i}")).unwrap(),
            kind: ProjectKind::GeneralFund,
            name: Text::new(&format!("Extra fund {i}")).unwrap(),
            currency: events::Currency::CNY,
            goal_minor: None,
        })
        .collect();
    node.writer
        .submit(Submission {
            actor: Id::new("admin-zhao").unwrap(),
            token_issuer: None,
            idempotency_key: None,
            commands,
        })
        .await
        .unwrap();
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_a_served_ledger_by_url_with_saved_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let node = common::demo_node(dir.path(), 40, true).await;
    let note1 = common::sign_now(&node, dir.path());
    open_projects(&node, 0, 20).await;
    let note2 = common::sign_now(&node, dir.path());
    open_projects(&node, 20, 300).await;
    let latest = common::sign_now(&node, dir.path());
    common::caught_up(&node).await;
    let key = node.checkpoints.key().unwrap().clone();
    let key_file = work.path().join("ledger.pub");
    std::fs::write(&key_file, key.to_text()).unwrap();
    let saved = work.path().join("saved.txt");
    std::fs::write(&saved, format!("{note1}\n{note2}")).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = routes(TlogState::from_node(&node));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The whole log by URL, with two saved checkpoints.
    let (ok, out) = run(vec![
        "verify".into(),
        "--url".into(),
        url.clone(),
        "--key".into(),
        s(&key_file),
        "--checkpoints".into(),
        s(&saved),
    ])
    .await;
    assert!(ok, "{out}");
    let size = node.tree.size();
    assert!(out.contains(&format!("size {size}")), "{out}");
    assert!(out.contains("2 older checkpoint(s) consistent"), "{out}");

    // A saved checkpoint the log cannot be consistent with (same key, other root), and one
    // from a future the log has gone back from: both refused.
    let signer = ledger::tlog::checkpoints::load_signer(dir.path())
        .unwrap()
        .unwrap();
    let c1 = ledger::tlog::checkpoints::parse_unverified(&note1).unwrap();
    let forged = Checkpoint::new(signer.name(), c1.size, Hash([9; 32]))
        .sign(&signer)
        .unwrap();
    let future = Checkpoint::new(signer.name(), size + 5, Hash([9; 32]))
        .sign(&signer)
        .unwrap();
    for (name, note, expect) in [
        ("forged.txt", &forged, "not consistent"),
        ("future.txt", &future, "gone back"),
    ] {
        let file = work.path().join(name);
        std::fs::write(&file, note).unwrap();
        let (ok, out) = run(vec![
            "verify".into(),
            "--url".into(),
            url.clone(),
            "--key".into(),
            key.to_text(),
            "--checkpoints".into(),
            s(&file),
        ])
        .await;
        assert!(!ok && out.contains(expect), "{name}: {out}");
    }
    // Another ledger's key does not open the checkpoint.
    let other = events::SignerKey::from_seed(signer.name(), [3; 32])
        .unwrap()
        .verifier_key();
    let (ok, out) = run(vec![
        "verify".into(),
        "--url".into(),
        url.clone(),
        "--key".into(),
        other.to_text(),
    ])
    .await;
    assert!(!ok, "{out}");

    // A receipt bundle, saved and checked offline; a changed bundle fails.
    let code = node.state().donations.values().next().unwrap().receipt_code;
    let client = ledger::tlog::verify::LogClient::new(&url).unwrap();
    let bundle = tokio::task::spawn_blocking(move || {
        client
            .get(&format!("/api/v1/public/receipts/{code}/proof"), 1 << 20)
            .unwrap()
    })
    .await
    .unwrap();
    let receipt = work.path().join("receipt.json");
    std::fs::write(&receipt, &bundle).unwrap();
    let verify_receipt = || {
        run(vec![
            "verify-receipt".into(),
            "--receipt".into(),
            s(&receipt),
            "--key".into(),
            s(&key_file),
        ])
    };
    let (ok, out) = verify_receipt().await;
    assert!(ok && out.contains("verify-receipt: ok"), "{out}");
    assert!(out.contains("the bundle carries no refund"), "{out}");
    let text = String::from_utf8(bundle).unwrap();
    let changed = text.replacen("\\\"fee_minor\\\":", "\\\"fee_minor\\\":9", 1);
    assert_ne!(changed, text);
    std::fs::write(&receipt, changed).unwrap();
    let (ok, out) = verify_receipt().await;
    assert!(!ok && out.contains("FAILED"), "{out}");

    server.abort();
    let _ = server.await; // drops the router and its handles on the database
    node.shutdown().await.unwrap();

    // The export, against every checkpoint (recomputed roots), then tampered.
    let export = work.path().join("export.jsonl");
    let (ok, out) = run(vec![
        "export".into(),
        "--data".into(),
        s(dir.path()),
        "--out".into(),
        s(&export),
    ])
    .await;
    assert!(ok, "{out}");
    let all = work.path().join("all.txt");
    std::fs::write(&all, format!("{note1}{note2}{latest}")).unwrap();
    let (ok, out) = run(vec![
        "verify".into(),
        "--export".into(),
        s(&export),
        "--key".into(),
        s(&key_file),
        "--checkpoints".into(),
        s(&all),
    ])
    .await;
    assert!(
        ok && out.contains("2 older checkpoint(s) consistent"),
        "{out}"
    );
    let lines = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = lines.lines().map(str::to_owned).collect();
    lines[9] = lines[9].replacen("\"admin-zhao\"", "\"admin-zhou\"", 1);
    std::fs::write(&export, lines.join("\n") + "\n").unwrap();
    let (ok, out) = run(vec!["verify".into(), "--export".into(), s(&export)]).await;
    assert!(!ok && out.contains("FAILED at seq 9"), "{out}");

    // The data directory: chain, stored tree and every published checkpoint.
    let (ok, out) = run(vec!["verify".into(), "--data".into(), s(dir.path())]).await;
    assert!(ok && out.contains("checkpoint(s) verified"), "{out}");
}
