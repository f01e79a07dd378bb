//! End to end against real servers on 127.0.0.1:0: the library's `serve` driven by reqwest,
//! with a graceful shutdown in the middle of concurrent writes; and the `ledger` binary
//! itself (`token create`, `serve`, SIGTERM).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server::{self, LiveServer};
use ledger::node::{Node, NodeConfig};
use serde_json::{json, Value};

fn donation(txn: &str) -> Value {
    json!({"project": "fund-1", "amount_minor": 100, "currency": "CNY", "channel": "alipay",
           "channel_txn_id": txn, "donor_ref": "donor-e2e"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_with_graceful_shutdown_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let LiveServer {
        addr,
        admin,
        recorder,
        node,
        db,
        stop: stop_tx,
        server,
    } = server::start(dir.path(), "e2e", "admin-zhao", "recorder-liu").await;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{base}/api/v1/staff/projects"))
        .bearer_auth(&admin)
        .json(&json!({"project": "fund-1", "kind": "general_fund", "name": "基金", "currency": "CNY"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // A live page's stream sees a donation as it is recorded.
    let mut stream = client
        .get(format!("{base}/api/v1/public/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let r = client
        .post(format!("{base}/api/v1/staff/donations"))
        .bearer_auth(&recorder)
        .json(&donation("live-0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: donation_received"), "{text}");
    assert!(
        text.contains(first["receipt_code"].as_str().unwrap()),
        "{text}"
    );
    let seq = first["seq"].as_u64().unwrap();
    let r: Value = client
        .get(format!(
            "{base}/api/v1/public/receipts/{}?min_seq={seq}",
            first["receipt_code"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["seq"], seq);

    // 64 writers; shutdown starts while they are in flight. Every write that was answered
    // 201 must be durable; the rest fail cleanly (connection refused or closed, or 503).
    let acks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..64 {
        let acks = acks.clone();
        let client = client.clone();
        let base = base.clone();
        let recorder = recorder.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..20 {
                let sent = client
                    .post(format!("{base}/api/v1/staff/donations"))
                    .bearer_auth(&recorder)
                    .json(&donation(&format!("w{w}-{i}")))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.json().await.unwrap();
                        acknowledged.push((
                            v["seq"].as_u64().unwrap(),
                            v["receipt_code"].as_str().unwrap().to_owned(),
                        ));
                        acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => assert_eq!(r.status(), 503, "only shutting_down is acceptable"),
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    // Stop once writes are flowing (and well before all 1280 are done).
    let flowing = tokio::time::timeout(Duration::from_secs(30), async {
        while acks.load(std::sync::atomic::Ordering::Relaxed) < 64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(flowing.is_ok(), "writes are acknowledged");
    stop_tx.send(()).unwrap();
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    // The open SSE stream does not hold the shutdown up.
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    drop(stream);
    ledger::cli::shutdown_node(node).await.unwrap();
    drop(db);
    assert!(
        !acknowledged.is_empty(),
        "some writes were acknowledged before shutdown"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );

    // Reopen: every acknowledged write is there. (Subscription tasks let go of the sled
    // database a moment after their readers are gone; sled allows one open at a time.)
    let mut reopened = None;
    for _ in 0..100 {
        match Node::open(NodeConfig {
            data_dir: dir.path().to_owned(),
            ledger: None,
            clock: ledger::writer::system_clock(),
        })
        .await
        {
            Ok(node) => {
                reopened = Some(node);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let node = reopened.expect("the data directory reopens");
    let state = node.state();
    for (seq, code) in &acknowledged {
        assert_eq!(
            state.donation_by_receipt(code).map(|d| d.seq),
            Some(*seq),
            "acknowledged donation {seq} is durable"
        );
    }
    node.shutdown().await.unwrap();
}

#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_ledger");
    let out = Command::new(exe)
        .args([
            "token",
            "create",
            "--actor",
            "admin-zhao",
            "--role",
            "admin",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ldg_"), "{token}");
    let mut child = Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let r = client
            .get(format!("http://{addr}/api/v1/staff/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client
            .post(format!("http://{addr}/api/v1/staff/projects"))
            .bearer_auth(&token)
            .json(
                &json!({"project": "p", "kind": "general_fund", "name": "基金", "currency": "CNY"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    // SAFETY: sending a signal to our own child process.
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The write survived, and the directory is free again for the CLI.
    let out = Command::new(exe)
        .args(["verify", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Two events: the token made with `token create` was logged when `serve` started,
    // before the request it served, then the project.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 events"),
        "{out:?}"
    );
    let out = Command::new(exe)
        .args(["export", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let export = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "staff_token_issued", "{first}");
    assert_eq!(first["actor"], "operator");
    assert_eq!(first["data"]["holder"], "admin-zhao");
    assert_eq!(first["data"]["role"], "admin");
    assert!(
        !export.contains(&token[4..]),
        "the token itself is never in the log"
    );
}
