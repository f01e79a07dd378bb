//! Browser tests: a real server on 127.0.0.1:0 with demo data and a signed checkpoint, driven
//! by headless Chromium (Debian's `chromium` package). The pages without checking scripts are
//! loaded with `--dump-dom` and captured with `--screenshot` into `target/browser-artifacts/`.
//!
//! The pages that check the log with WebCrypto need real time (and the audit page a click),
//! so they are driven over the DevTools protocol ([`Browser`]). The verification page must
//! say `verified` for a real receipt and `failed` when its test hook tampers with one byte of
//! the fetched proof. The audit page must verify the whole ledger, and fail at the right seq
//! with one entry bundle altered on its way to the page (`Fetch` interception); the page's
//! RFC 8785 function is also compared with the Rust canonicalization there.
//!
//! Without a `chromium` binary (or `CHROMIUM=/path/to/chrome`) the test prints one line and
//! passes; `.ci/run` installs the package.

mod common;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine;
use events::{Currency, Id, ProjectKind, Text};
use ledger::command::Command;
use ledger::http::{AppState, TokenStore};
use ledger::node::Node;
use ledger::writer::Submission;
use serde_json::{json, Value};

/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one DevTools command may take to be answered.
const CDP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest DevTools message read (a phone-sized screenshot is well under this).
const CDP_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A project name with what RFC 8785 escapes or sorts specially: quotes, a backslash,
/// U+2028, a character outside the BMP (a surrogate pair in JavaScript) and markup.
const AWKWARD_NAME: &str = "\"引号\" \\ 反斜杠 \u{2028} 😀 </script>";

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

/// Headless, quiet, no network of its own: the flags of every Chromium the tests start.
const CHROMIUM_FLAGS: [&str; 10] = [
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
];

/// Runs Chromium headless with a fresh profile and returns its stdout.
fn run_chromium(bin: &Path, extra: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Process::new(bin)
        .args(CHROMIUM_FLAGS)
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

/// Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// it reads commands on fd 3 and writes answers and events on fd 4, each message a JSON
/// object ended by a NUL byte). Enough of the protocol to open a page, run script in it,
/// intercept responses and take a screenshot; no WebSocket needed.
struct Browser {
    child: Child,
    commands: File,
    messages: mpsc::Receiver<Value>,
    /// Events that arrived while waiting for an answer.
    events: VecDeque<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// One page, attached with a flat session.
struct Tab {
    session: String,
}

/// A pipe whose ends are closed on exec (the child gets copies at fixed numbers).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    fn launch(bin: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        let profile = tempfile::tempdir().unwrap();
        let (child_reads, commands) = pipe();
        let (messages, child_writes) = pipe();
        let (r, w) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
        let mut cmd = Process::new(bin);
        cmd.args(CHROMIUM_FLAGS)
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The ends
        // are first copied above 10 so that moving one to 3 cannot clobber the other.
        unsafe {
            cmd.pre_exec(move || {
                let r_high = libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10);
                let w_high = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10);
                if r_high < 0
                    || w_high < 0
                    || libc::dup2(r_high, 3) < 0
                    || libc::dup2(w_high, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((child_reads, child_writes));
        let (tx, rx) = mpsc::channel();
        let mut reader = BufReader::new(File::from(messages));
        std::thread::spawn(move || loop {
            let mut buf = Vec::new();
            let read = (&mut reader)
                .take(CDP_MESSAGE_BYTES_MAX as u64)
                .read_until(0, &mut buf);
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) if buf.last() != Some(&0) => panic!("a DevTools message over the limit"),
                Ok(_) => {
                    buf.pop();
                    let message: Value = serde_json::from_slice(&buf).expect("DevTools JSON");
                    if tx.send(message).is_err() {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            commands: File::from(commands),
            messages: rx,
            events: VecDeque::new(),
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends a command (to a page when `session` is given) and waits for its answer; events
    /// that arrive meanwhile are kept for [`Browser::take_events`].
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + CDP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{method}: no answer from chromium ({e})"));
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push_back(message);
            }
        }
    }

    /// The events received so far with this method, removed from the queue.
    fn take_events(&mut self, method: &str) -> Vec<Value> {
        while let Ok(message) = self.messages.try_recv() {
            if message.get("method").is_some() {
                self.events.push_back(message);
            }
        }
        let (taken, kept): (Vec<Value>, Vec<Value>) =
            self.events.drain(..).partition(|e| e["method"] == method);
        self.events = kept.into();
        taken
    }

    /// A new blank page at phone size (412 × 1400), attached.
    fn open(&mut self) -> Tab {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let tab = Tab {
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        let metrics =
            json!({ "width": 412, "height": 1400, "deviceScaleFactor": 1, "mobile": true });
        self.call(
            Some(&tab.session),
            "Emulation.setDeviceMetricsOverride",
            metrics,
        );
        tab
    }

    fn navigate(&mut self, tab: &Tab, url: &str) {
        self.call(Some(&tab.session), "Page.navigate", json!({ "url": url }));
        self.wait_for(tab, "document.readyState === 'complete'", |_| ());
    }

    /// Runs `expression` in the page (awaiting a promise) and returns its value as JSON.
    fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
        let answer = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = answer.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy, calling `between` after each poll (to answer
    /// intercepted requests, which the page waits for).
    fn wait_for(&mut self, tab: &Tab, expression: &str, mut between: impl FnMut(&mut Browser)) {
        let deadline = Instant::now() + CHROMIUM_TIMEOUT;
        loop {
            let value = self.eval(tab, &format!("Boolean({expression})"));
            if value == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expression} still false after {CHROMIUM_TIMEOUT:?}"
            );
            between(self);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A PNG of the page's viewport into the artifacts directory.
    fn screenshot(&mut self, tab: &Tab, name: &str) {
        let shot = self.call(
            Some(&tab.session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(artifacts_dir().join(format!("{name}.png")), png).unwrap();
    }

    fn close(mut self) {
        // Chromium may exit before it answers, so the answer is not waited for.
        let message = json!({ "id": self.next_id, "method": "Browser.close", "params": {} });
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        let _ = self.commands.write_all(&bytes);
        let deadline = Instant::now() + CDP_TIMEOUT;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After close() this finds the child gone; after a failed assertion it stops it.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the audit page reported: its result, the first bad seq on failure, the number of
/// events and the time it took on success, and the verdict text.
#[derive(Debug)]
struct AuditOutcome {
    result: String,
    seq: Option<u64>,
    events: Option<u64>,
    ms: Option<u64>,
    verdict: String,
}

/// Opens `url` and waits until its `<output id="result">` says `verified` or `failed`;
/// returns the DOM then.
fn finished_page(browser: &mut Browser, tab: &Tab, url: &str) -> String {
    browser.navigate(tab, url);
    browser.wait_for(tab, RESULT_IS_FINAL, |_| ());
    let dom = browser.eval(tab, "document.documentElement.outerHTML");
    dom.as_str().unwrap().to_owned()
}

const RESULT_IS_FINAL: &str =
    "['verified', 'failed'].includes(document.getElementById('result').textContent)";

/// Alters the body of an intercepted response, given its URL.
type AlterBody<'a> = dyn Fn(&str, &mut Vec<u8>) + 'a;

/// Opens the audit page, clicks Start and waits for the result. `intercept` may alter the
/// body of each entry bundle the page fetches (given its URL); requests are intercepted only
/// when it is given.
fn run_audit(
    browser: &mut Browser,
    tab: &Tab,
    url: &str,
    intercept: Option<&AlterBody<'_>>,
) -> AuditOutcome {
    if intercept.is_some() {
        let patterns = json!({ "patterns": [
            { "urlPattern": "*/log/tile/entries/*", "requestStage": "Response" }
        ] });
        browser.call(Some(&tab.session), "Fetch.enable", patterns);
    }
    browser.navigate(tab, url);
    browser.wait_for(tab, "!document.getElementById('start').disabled", |_| ());
    browser.eval(tab, "document.getElementById('start').click()");
    let session = tab.session.clone();
    browser.wait_for(tab, RESULT_IS_FINAL, |b| {
        let Some(alter) = intercept else { return };
        for paused in b.take_events("Fetch.requestPaused") {
            let p = &paused["params"];
            let id = p["requestId"].clone();
            let body = b.call(
                Some(&session),
                "Fetch.getResponseBody",
                json!({ "requestId": id }),
            );
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut bytes = if body["base64Encoded"] == json!(true) {
                b64.decode(body["body"].as_str().unwrap()).unwrap()
            } else {
                body["body"].as_str().unwrap().as_bytes().to_vec()
            };
            alter(p["request"]["url"].as_str().unwrap(), &mut bytes);
            let fulfil = json!({
                "requestId": id,
                "responseCode": p["responseStatusCode"],
                "responseHeaders": p["responseHeaders"],
                "body": b64.encode(&bytes),
            });
            b.call(Some(&session), "Fetch.fulfillRequest", fulfil);
        }
    });
    let r = browser.eval(
        tab,
        "(() => { const r = document.getElementById('result'); return { result: r.textContent, \
         seq: r.dataset.seq || null, events: r.dataset.events || null, ms: r.dataset.ms || null, \
         verdict: document.getElementById('verdict').textContent }; })()",
    );
    let number = |v: &Value| v.as_str().map(|s| s.parse::<u64>().unwrap());
    AuditOutcome {
        result: r["result"].as_str().unwrap().to_owned(),
        seq: number(&r["seq"]),
        events: number(&r["events"]),
        ms: number(&r["ms"]),
        verdict: r["verdict"].as_str().unwrap().to_owned(),
    }
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
    let verifier_key = ledger::tlog::checkpoints::keygen(dir.path(), "example.org/ledger/erqi")
        .unwrap()
        .to_text();
    let (node, log) = common::demo_with_log(dir.path(), &common::demo_size(300, 5)).await;
    node.writer
        .submit(Submission {
            actor: Id::new("admin-zhao").unwrap(),
            token_issuer: None,
            idempotency_key: None,
            commands: vec![Command::OpenProject {
                project: Id::new("awkward").unwrap(),
                kind: ProjectKind::GeneralFund,
                name: Text::new(AWKWARD_NAME).unwrap(),
                currency: Currency::CNY,
                goal_minor: None,
            }],
        })
        .await
        .unwrap();
    let head = node.log.head().await.unwrap().len;
    let state = node.state_at(head, Duration::from_secs(30)).await.unwrap();
    // A checkpoint covering the whole demo, now (the background signer is rate limited).
    let size = common::sign_current(&node, dir.path());
    assert_eq!(size, head);

    let node = Arc::new(node);
    let app_state = AppState::new(node.clone(), TokenStore::open(&log).unwrap()).with_test_hooks();
    let (addr, stop_tx, server) = common::server::serve_local(app_state.clone()).await;
    let base = format!("http://{addr}");

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

    // The pages that check the log with WebCrypto: one donation, then the whole ledger.
    let refunded = state
        .donations
        .values()
        .find(|d| d.refunded_seq.is_some())
        .expect("the demo refunds some gifts");
    let refunded = (
        refunded.receipt_code.to_string(),
        refunded.refunded_seq.unwrap(),
    );
    checks_in_the_browser(&bin, &base, &code, &refunded, &verifier_key, &node, head).await;

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    drop(app_state);
    ledger::cli::shutdown_node(node).await.unwrap();
}

/// The pages whose scripts check the log, driven over DevTools in real time (under
/// `--virtual-time-budget`, Chromium may dump the page while WebCrypto is still working).
///
/// The verification page says `verified` for a real receipt, and `failed` with a root
/// mismatch when its test hook changes one byte of the proof. The audit page verifies every
/// event and the root of the whole demo ledger; with one digit of one event's amount changed
/// in the entry bundle the page receives, it fails at the first broken link, naming the seq.
/// Given the right key it verifies; given another key, the checkpoint does not verify. Its
/// RFC 8785 function agrees with the Rust one.
async fn checks_in_the_browser(
    bin: &Path,
    base: &str,
    code: &str,
    (refunded_code, refund_seq): &(String, u64),
    verifier_key: &str,
    node: &Node,
    head: u64,
) {
    let events = node.log.read(0, head as usize).await.unwrap();
    assert_eq!(events.len() as u64, head);
    // A donation in the second bundle, not the last event: altering it breaks the next link.
    let altered = events
        .iter()
        .find(|e| {
            (256..512).contains(&e.seq())
                && e.seq() + 1 < head
                && e.body().type_name() == "donation_received"
        })
        .expect("a donation in the second entry bundle");
    let altered_seq = altered.seq();
    let original = altered.canonical_bytes().to_vec();
    // Some JSON values against serde_json_canonicalizer: escapes, U+2028, a surrogate pair,
    // keys that sort differently by UTF-16 code unit than by code point, integers, nesting.
    let samples = [
        json!({ "b": "\"quote\" \\ \u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f} 中文 \u{2028}\u{2029} 😀", "a": [] }),
        json!({ "\u{e000}": 1, "\u{1f600}": 2, "\u{7f}": 3, "a": {}, "A": [true, false, null] }),
        json!({ "n": [0, -5, 9_007_199_254_740_991_u64], "deep": { "z": { "y": [[{ "x": "" }]] } } }),
    ];
    // A key of the same name that did not sign the checkpoints.
    let other_key = events::SignerKey::from_seed("example.org/ledger/erqi", [7; 32])
        .unwrap()
        .verifier_key()
        .to_text();
    assert_ne!(other_key, verifier_key);
    let pin = |key: &str| serde_urlencoded::to_string([("key", key)]).unwrap();
    let (right_key, wrong_key) = (pin(verifier_key), pin(&other_key));
    let bin = bin.to_owned();
    let base = base.to_owned();
    let code = code.to_owned();
    let (refunded_code, refund_seq) = (refunded_code.clone(), *refund_seq);
    let (outcome, tampered, pinned, wrong) = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch(&bin);

        // One donation, verified; then with the test hook's tampered proof.
        let tab = browser.open();
        let dom = finished_page(
            &mut browser,
            &tab,
            &format!("{base}/verify?code={code}&lang=en"),
        );
        browser.screenshot(&tab, "verify");
        assert_eq!(result_of(&dom), "verified", "{dom}");
        assert!(dom.contains("Checkpoint signature valid"));
        assert!(dom.contains("Inclusion proof valid"));
        // A fresh page each time, so the last page's result is never read as the next one's.
        let tab = browser.open();
        let url = format!("{base}/verify?code={code}&lang=en&tamper=1");
        let dom = finished_page(&mut browser, &tab, &url);
        browser.screenshot(&tab, "verify-tampered");
        assert_eq!(result_of(&dom), "failed", "{dom}");
        assert!(dom.contains("root mismatch"), "{dom}");
        // With the verifier key pinned in the address: the right one verifies, another key
        // of the same name fails at the checkpoint's signature.
        let tab = browser.open();
        let url = format!("{base}/verify?code={code}&lang=en&{right_key}");
        let dom = finished_page(&mut browser, &tab, &url);
        assert_eq!(result_of(&dom), "verified", "{dom}");
        assert!(dom.contains("Your verifier key"), "{dom}");
        let tab = browser.open();
        let url = format!("{base}/verify?code={code}&lang=en&{wrong_key}");
        let dom = finished_page(&mut browser, &tab, &url);
        assert_eq!(result_of(&dom), "failed", "{dom}");
        assert!(!dom.contains("Refund event"), "{dom}");

        // A refunded gift: its refund is proven too; with the refund's proof tampered with,
        // the page fails at the refund.
        let tab = browser.open();
        let url = format!("{base}/verify?code={refunded_code}&lang=en");
        let dom = finished_page(&mut browser, &tab, &url);
        browser.screenshot(&tab, "verify-refunded");
        assert_eq!(result_of(&dom), "verified", "{dom}");
        assert!(
            dom.contains(&format!("Refund event #{refund_seq}")),
            "{dom}"
        );
        assert!(
            dom.contains(&format!("So is its refund (event #{refund_seq})")),
            "{dom}"
        );
        let tab = browser.open();
        let url = format!("{base}/verify?code={refunded_code}&lang=en&tamper=refund");
        let dom = finished_page(&mut browser, &tab, &url);
        assert_eq!(result_of(&dom), "failed", "{dom}");
        assert!(
            dom.contains("Inclusion proof valid"),
            "the gift's proof held: {dom}"
        );
        assert!(dom.contains("root mismatch"), "{dom}");

        // The whole ledger.
        let tab = browser.open();
        let outcome = run_audit(&mut browser, &tab, &format!("{base}/audit"), None);
        browser.screenshot(&tab, "audit");

        // The page's canonicalizer, over the samples and over some real events (the last is
        // the project with the awkward name).
        let mut agree = 0;
        let real = events
            .iter()
            .step_by(97)
            .chain(events.last())
            .map(|e| e.canonical_bytes().to_vec());
        let expected = samples
            .iter()
            .map(|v| serde_json_canonicalizer::to_vec(v).unwrap())
            .chain(real);
        for bytes in expected {
            let text = String::from_utf8(bytes).unwrap();
            let js = format!(
                "Tlog.canonicalize(JSON.parse({}))",
                serde_json::to_string(&text).unwrap()
            );
            assert_eq!(browser.eval(&tab, &js), json!(text), "RFC 8785 of {text}");
            agree += 1;
        }

        // One digit of the amount of one donation changed on its way to the page.
        let tab = browser.open();
        let altered_bundles = std::cell::Cell::new(0);
        let alter = |url: &str, body: &mut Vec<u8>| {
            let Some(at) = body.windows(original.len()).position(|w| w == original) else {
                return;
            };
            let key = b"\"amount_minor\":";
            let amount = original.windows(key.len()).position(|w| w == key).unwrap() + key.len();
            let digit = &mut body[at + amount];
            *digit = if *digit == b'9' { b'8' } else { *digit + 1 };
            println!("altered the amount of seq {altered_seq} in {url}");
            altered_bundles.set(altered_bundles.get() + 1);
        };
        let tampered = run_audit(
            &mut browser,
            &tab,
            &format!("{base}/audit?lang=en"),
            Some(&alter),
        );
        browser.screenshot(&tab, "audit-tampered");
        assert_eq!(altered_bundles.get(), 1, "the bundle was altered once");

        // The key given by the auditor instead of the site's: the right one, another one.
        let tab = browser.open();
        let url = format!("{base}/audit?{right_key}&lang=en");
        let pinned = run_audit(&mut browser, &tab, &url, None);
        let tab = browser.open();
        let url = format!("{base}/audit?{wrong_key}&lang=en");
        let wrong = run_audit(&mut browser, &tab, &url, None);
        browser.screenshot(&tab, "audit-wrong-key");
        browser.close();
        assert_eq!(agree, samples.len() + events.len().div_ceil(97) + 1);
        println!("the page's RFC 8785 agrees with Rust on {agree} values");
        (outcome, tampered, pinned, wrong)
    })
    .await
    .unwrap();

    assert_eq!(outcome.result, "verified", "{outcome:?}");
    assert_eq!(
        outcome.events,
        Some(head),
        "every event up to the checkpoint"
    );
    assert!(
        outcome.verdict.contains(&format!("{head} 个事件")),
        "{outcome:?}"
    );
    let ms = outcome.ms.unwrap();
    println!(
        "in-browser audit: {head} events in {ms} ms ({:.0} events/s)",
        head as f64 / (ms.max(1) as f64 / 1000.0)
    );

    assert_eq!(tampered.result, "failed", "{tampered:?}");
    assert_eq!(tampered.seq, Some(altered_seq + 1), "{tampered:?}");
    assert!(
        tampered
            .verdict
            .starts_with(&format!("failed: seq {}: `prev`", altered_seq + 1))
            && tampered
                .verdict
                .contains(&format!("is not the hash of seq {altered_seq}")),
        "{tampered:?}"
    );

    assert_eq!(pinned.result, "verified", "{pinned:?}");
    assert!(pinned.verdict.contains(&format!("verified: {head} events")));
    assert_eq!(wrong.result, "failed", "{wrong:?}");
    assert_eq!(wrong.seq, None);
    assert!(
        wrong
            .verdict
            .contains("the checkpoint carries no signature by the key"),
        "{wrong:?}"
    );
}
