//! Browser tests: a real server on 127.0.0.1:0 with demo data and a signed checkpoint, driven
//! by headless Chromium (Debian's `chromium` package). Each page is loaded with `--dump-dom`
//! (after its scripts ran, `--virtual-time-budget`) and captured with `--screenshot` into
//! `target/browser-artifacts/`. The verification page must say `verified` for a real receipt
//! and `failed` when its test hook tampers with one byte of the fetched proof.
//!
//! Without a `chromium` binary (or `CHROMIUM=/path/to/chrome`) the test prints one line and
//! passes; `.ci/run` installs the package.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::Id;
use ledger::demo::{run_demo, DemoClock, DemoSize, Progress};
use ledger::http::{AppState, TokenStore};
use ledger::node::{Node, NodeConfig};

struct Quiet;
impl Progress for Quiet {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs Chromium headless with a fresh profile and returns its stdout.
fn run_chromium(bin: &Path, extra: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Process::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            panic!("chromium did not finish {url} within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DOM after scripts ran (up to 10 s of virtual time), and a phone-sized screenshot.
///
/// Pages are loaded with JavaScript on: Chromium's `--blink-settings=scriptEnabled=false`
/// makes `--dump-dom` and `--screenshot` produce nothing. That the pages need no script is
/// shown by `tests/web_pages.rs`, which reads the server's HTML without running any.
///
/// `settle` gives scripts virtual time to finish their requests; the feed page keeps an
/// event stream open, under which virtual time never runs out, so it is read at `load`.
async fn visit(bin: &Path, url: String, shot: &str, settle: bool) -> String {
    let bin = bin.to_owned();
    let shot = artifacts_dir().join(format!("{shot}.png"));
    tokio::task::spawn_blocking(move || {
        let common: Vec<String> = if settle {
            vec!["--virtual-time-budget=10000".to_owned()]
        } else {
            Vec::new()
        };
        let mut dom_args = common.clone();
        dom_args.push("--dump-dom".into());
        let dom = run_chromium(&bin, &dom_args, &url);
        let mut shot_args = common;
        shot_args.push(format!("--screenshot={}", shot.display()));
        shot_args.push("--window-size=412,1400".into());
        run_chromium(&bin, &shot_args, &url);
        assert!(shot.is_file(), "a screenshot of {url}");
        dom
    })
    .await
    .unwrap()
}

fn result_of(dom: &str) -> &str {
    let start = dom
        .find(r#"<output id="result""#)
        .expect("the result element");
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</output>").unwrap();
    &rest[open..close]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_in_browser_verification_in_headless_chromium() {
    let Some(bin) = chromium() else {
        println!(
            "browser tests skipped: no chromium binary (apt-get install chromium, or set CHROMIUM)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    ledger::tlog::checkpoints::keygen(dir.path(), "example.org/ledger/erqi").unwrap();
    let clock = DemoClock::new();
    let (node, db) = Node::open_with_db(NodeConfig {
        data_dir: dir.path().to_owned(),
        ledger: Some(Id::new("erqi").unwrap()),
        clock: clock.clock(),
    })
    .await
    .unwrap();
    let size = DemoSize {
        community_projects: 3,
        help_requests: 2,
        micro_wishes: 2,
        general_funds: 1,
        sponsors: 2,
        donations: 300,
        seed: 5,
    };
    run_demo(&node.writer, &clock, &size, &Quiet).await.unwrap();
    let head = node.log.head().await.unwrap().len;
    let state = node.state_at(head, Duration::from_secs(30)).await.unwrap();
    // A checkpoint covering the whole demo, now (the background signer is rate limited).
    let signer = ledger::tlog::checkpoints::load_signer(dir.path())
        .unwrap()
        .unwrap();
    let size =
        ledger::tlog::CheckpointSigner::new(node.tree.clone(), node.checkpoints.clone(), signer)
            .unwrap()
            .sign_current()
            .unwrap();
    assert_eq!(size, head);

    let node = Arc::new(node);
    let app_state = AppState::new(node.clone(), TokenStore::open(&db).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ledger::http::serve(listener, app_state.clone(), async {
        let _ = stop_rx.await;
    }));

    // The projects page.
    let dom = visit(&bin, format!("{base}/"), "projects", true).await;
    let project = state
        .projects
        .values()
        .find(|p| !p.payouts.is_empty())
        .expect("a project with payouts");
    assert!(
        dom.contains(project.name.as_str()),
        "projects page lists the project"
    );
    let dom = visit(&bin, format!("{base}/?lang=en"), "projects-en", true).await;
    assert!(dom.contains("Raised (net of fees)"));

    // One project, with its chart.
    let dom = visit(
        &bin,
        format!("{base}/projects/{}?lang=en", project.id),
        "project",
        true,
    )
    .await;
    assert!(dom.contains("<svg") && dom.contains("Payouts"));

    // Where my money went, for a gift to that project.
    let gift = state
        .donations
        .values()
        .find(|d| d.project == project.id && d.refunded_seq.is_none())
        .unwrap();
    let code = gift.receipt_code.to_string();
    let dom = visit(
        &bin,
        format!("{base}/receipt?code={code}&lang=en"),
        "receipt",
        true,
    )
    .await;
    assert!(dom.contains(&code) && dom.contains("Where it went"));

    // The feed.
    let dom = visit(&bin, format!("{base}/feed"), "feed", false).await;
    assert!(dom.contains(&format!("#{} ", head - 1)));

    // In-browser verification succeeds.
    let dom = visit(
        &bin,
        format!("{base}/verify?code={code}&lang=en"),
        "verify",
        true,
    )
    .await;
    assert_eq!(result_of(&dom), "verified", "{dom}");
    assert!(dom.contains("Checkpoint signature valid"));
    assert!(dom.contains("Inclusion proof valid"));

    // A proof with one byte changed fails.
    let dom = visit(
        &bin,
        format!("{base}/verify?code={code}&lang=en&tamper=1"),
        "verify-tampered",
        true,
    )
    .await;
    assert_eq!(result_of(&dom), "failed", "{dom}");
    assert!(dom.contains("root mismatch"), "{dom}");

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    drop(app_state);
    ledger::cli::shutdown_node(node).await.unwrap();
}
