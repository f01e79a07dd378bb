//! HTTP load generator: donations per second over HTTP with 64 concurrent connections, as
//! single-donation requests and as batch requests, with p50/p99 latency, and public
//! project-detail reads per second.
//!
//! Runs the real service (`ledger::http::serve`, sled store in a temporary directory, fsync on
//! every group commit) on 127.0.0.1 in this process, on its own runtime, and drives it with
//! reqwest from another runtime. Every phase is bounded in time and in requests, and only
//! ever talks to 127.0.0.1.
//!
//! ```text
//! cargo bench --bench http_load                       # 10 s per phase
//! LOAD_SECONDS=5 LOAD_CONNECTIONS=64 cargo bench --bench http_load
//! ```

#[path = "../tests/common/server.rs"]
mod server;

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The same allocator as the `ledger` binary (see src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROJECTS: usize = 100;
const BATCH_DONATIONS: usize = 1000;

struct Phase {
    name: &'static str,
    requests: u64,
    donations: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
    fn report(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {} | {:.0} | {:.1} | {:.1} | {} |",
            self.name,
            self.requests,
            self.requests as f64 / secs,
            self.donations,
            self.donations as f64 / secs,
            self.percentile(0.50).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
            self.errors
        );
    }
}

fn donation(project: usize, txn: u64) -> String {
    format!(
        r#"{{"project":"load-{project:03}","amount_minor":100,"currency":"CNY","channel":"wechat","channel_txn_id":"load-{txn}","fee_minor":0,"anonymous":true,"donor_ref":"donor-{:06}"}}"#,
        txn % 100_000
    )
}

/// POSTs the JSON `body` to `url` with `token`; any answer but 201 Created is an error.
async fn post_created(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: String,
) -> Result<(), String> {
    let r = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    r.bytes().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs `connections` tasks that each call `request` until `seconds` pass or `max_requests`
/// have been sent in all. `request` returns how many donations the request recorded.
async fn run_phase<F, Fut>(
    name: &'static str,
    connections: usize,
    seconds: u64,
    max_requests: u64,
    request: F,
) -> Phase
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + Send,
{
    let request = Arc::new(request);
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let request = request.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut donations, mut errors) = (0u64, 0u64);
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match request(n).await {
                    Ok(d) => donations += d,
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("{name}: {e}");
                        }
                    }
                }
                latencies.push(t.elapsed());
            }
            (latencies, donations, errors)
        }));
    }
    let mut phase = Phase {
        name,
        requests: 0,
        donations: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (l, d, e) = t.await.expect("load task");
        phase.requests += l.len() as u64;
        phase.latencies.extend(l);
        phase.donations += d;
        phase.errors += e;
    }
    phase.elapsed = started.elapsed();
    phase.latencies.sort();
    phase
}

fn main() {
    // The server's errors and warnings (RUST_LOG overrides) go to standard error.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let seconds: u64 = common::env_or("LOAD_SECONDS", if common::full_run() { 10 } else { 1 });
    // Which phases to run: any of "single", "batch", "read" (default all).
    let phases_wanted = std::env::var("LOAD_PHASES").unwrap_or_else(|_| "single,batch,read".into());
    let connections: usize = common::env_or("LOAD_CONNECTIONS", 64);
    let dir = tempfile::tempdir().expect("temporary directory");

    // The server: its own runtime, like a separate process sharing the machine.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()
        .expect("server runtime");
    let server::LiveServer {
        addr,
        admin,
        recorder,
        node,
        stop: stop_tx,
        server,
        ..
    } = server_rt.block_on(server::start(dir.path(), "load", "admin", "recorder"));

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("client")
        .build()
        .expect("client runtime");
    let base = format!("http://{addr}");
    let phases = client_rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .build()
            .unwrap();
        // Set-up: projects, and a matching pool on ten of them (so donations also produce
        // match events, as on a giving day).
        let mut projects = String::from("[");
        for p in 0..PROJECTS {
            if p > 0 {
                projects.push(',');
            }
            projects.push_str(&format!(
                r#"{{"command":"open_project","project":"load-{p:03}","kind":"general_fund","name":"负载 {p}","currency":"CNY"}}"#
            ));
        }
        projects.push(']');
        let commands: Vec<serde_json::Value> = serde_json::from_str(&projects).unwrap();
        for c in commands {
            let r = client
                .post(format!("{base}/api/v1/staff/commands"))
                .bearer_auth(&admin)
                .json(&c)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{:?}", r.text().await);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let covered: Vec<String> = (0..10).map(|p| format!("load-{p:03}")).collect();
        let r = client
            .post(format!("{base}/api/v1/staff/matching-pools"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({
                "pool": "load-pool", "sponsor": "郑州暖阳实业有限公司", "projects": covered,
                "currency": "CNY", "ratio_numerator": 1, "ratio_denominator": 1,
                "cap_per_donation_minor": 10_000, "cap_per_donor_per_day_minor": 1_000_000,
                "total_cap_minor": 9_000_000_000_000u64, "valid_from_ms": now - 1000,
                "valid_until_ms": now + 86_400_000, "day_utc_offset_minutes": 480
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);

        let mut phases = Vec::new();
        // 1. One donation per request.
        let wanted = |p: &str| phases_wanted.split(',').any(|w| w.trim() == p);
        let c = client.clone();
        let (b, tok) = (base.clone(), recorder.clone());
        if wanted("single") { phases.push(
            run_phase("single donation", connections, seconds, 2_000_000, move |n| {
                let (c, b, tok) = (c.clone(), b.clone(), tok.clone());
                async move {
                    let body = donation(n as usize % PROJECTS, n);
                    post_created(&c, format!("{b}/api/v1/staff/donations"), &tok, body).await?;
                    Ok(1)
                }
            })
            .await,
        ); }
        // 2. Batches of 1000 donations per request.
        let c = client.clone();
        let (b, tok) = (base.clone(), recorder.clone());
        if wanted("batch") { phases.push(
            run_phase("batch of 1000", connections, seconds, 100_000, move |n| {
                let (c, b, tok) = (c.clone(), b.clone(), tok.clone());
                async move {
                    let mut body = String::with_capacity(BATCH_DONATIONS * 220);
                    body.push_str(r#"{"donations":["#);
                    for i in 0..BATCH_DONATIONS {
                        if i > 0 {
                            body.push(',');
                        }
                        let txn = 1_000_000_000 + n * BATCH_DONATIONS as u64 + i as u64;
                        body.push_str(&donation(i % PROJECTS, txn));
                    }
                    body.push_str("]}");
                    post_created(&c, format!("{b}/api/v1/staff/donations/batch"), &tok, body).await?;
                    Ok(BATCH_DONATIONS as u64)
                }
            })
            .await,
        ); }
        // 3. Public project-detail reads.
        let c = client.clone();
        let b = base.clone();
        if wanted("read") { phases.push(
            run_phase("project detail read", connections, seconds, 5_000_000, move |n| {
                let (c, b) = (c.clone(), b.clone());
                async move {
                    let r = c
                        .get(format!("{b}/api/v1/public/projects/load-{:03}", n as usize % PROJECTS))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status() != 200 {
                        return Err(r.status().to_string());
                    }
                    r.bytes().await.map_err(|e| e.to_string())?;
                    Ok(0)
                }
            })
            .await,
        ); }
        phases
    });

    println!(
        "\nhttp_load: {connections} connections, {seconds} s per phase, {} cores, server and client in one process",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| phase | requests | requests/s | donations | donations/s | p50 ms | p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for p in &phases {
        p.report();
    }
    println!("\n{}", ledger::metrics::render());

    server_rt.block_on(async {
        let _ = stop_tx.send(());
        let _ = server.await;
        let _ = ledger::cli::shutdown_node(node).await;
    });
}
