//! The command line: `demo`, `verify`, `export`, `rebuild`, `balances`, `serve`, `token`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use events::{check_export_line, ChainVerifier};
use indicatif::{ProgressBar, ProgressStyle};

use crate::demo::{run_demo, DemoClock, DemoSize, Progress};
use crate::node::{open_sled, Node, NodeConfig};
use crate::projector::{encode_state, SnapshotStore};
use crate::store::{EventLog, READ_EVENTS_MAX};

#[derive(Parser, Debug)]
#[command(
    name = "ledger",
    version,
    about = "An event-sourced, verifiable donation ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The data directory.
    #[arg(long, default_value = "./data", env = "LEDGER_DATA")]
    pub data: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Write a realistic demo data set (the seed's world, fictional people) into an empty data directory.
    Demo {
        #[command(flatten)]
        data: DataArgs,
        /// How many gifts to record.
        #[arg(long, default_value_t = 50_000)]
        donations: usize,
        /// The random seed; the same seed gives the same ledger.
        #[arg(long, default_value_t = 2018)]
        seed: u64,
    },
    /// Check the whole chain of a data directory (or of an export) and print the head.
    Verify {
        #[command(flatten)]
        data: DataArgs,
        /// Verify this export (JSON Lines) instead of a data directory.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Write the log as JSON Lines, one sealed event per line in seq order.
    Export {
        #[command(flatten)]
        data: DataArgs,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rebuild the projections from event 0 and report whether they equal the live ones.
    Rebuild {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print every project's balances.
    Balances {
        #[command(flatten)]
        data: DataArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve the staff and public HTTP API (see docs/HTTP.md) until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080", env = "LEDGER_LISTEN")]
        listen: std::net::SocketAddr,
        /// When the data directory is empty, write the demo data set into it first.
        #[arg(long)]
        demo: bool,
        /// How many gifts the demo data set records (with --demo).
        #[arg(long, default_value_t = 20_000)]
        demo_donations: usize,
    },
    /// Manage the staff API's bearer tokens (while `serve` is stopped; a running server
    /// manages them through its admin API).
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// The staff member the token acts as (the four-eyes rule compares these).
        #[arg(long, value_parser = parse_id)]
        actor: events::Id,
        #[arg(long, value_enum)]
        role: crate::http::Role,
    },
    /// Revoke a token by its id (from `token list`).
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        id: String,
    },
    /// List tokens: ids, actors, roles, creation and revocation times (never the tokens).
    List {
        #[command(flatten)]
        data: DataArgs,
    },
}

fn parse_id(s: &str) -> Result<events::Id, String> {
    events::Id::new(s).map_err(|e| e.to_string())
}

impl Cmd {
    /// The log level when `RUST_LOG` is not set: a server logs its requests, tools stay quiet.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Cmd::Serve { .. } => "info",
            _ => "warn",
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Cmd::Demo {
                data,
                donations,
                seed,
            } => demo(&data.data, donations, seed).await,
            Cmd::Verify { data, export } => match export {
                Some(file) => verify_export(&file),
                None => verify_data(&data.data).await,
            },
            Cmd::Export { data, out } => export(&data.data, out.as_deref()).await,
            Cmd::Rebuild { data } => rebuild(&data.data).await,
            Cmd::Balances { data, json } => balances(&data.data, json).await,
            Cmd::Serve {
                data,
                listen,
                demo,
                demo_donations,
            } => serve(&data.data, listen, demo.then_some(demo_donations)).await,
            Cmd::Token { command } => token(command),
        }
    })
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
        ))
        .expect("static template"),
    );
    bar
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, by: u64) {
        self.0.inc(by);
    }
}

async fn demo(dir: &Path, donations: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let clock = DemoClock::new();
    let node = Node::open(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(events::Id::new("erqi").expect("valid id")),
        clock: clock.clock(),
    })
    .await?;
    let head = node.log.head().await?;
    anyhow::ensure!(
        head.len == 0,
        "{} already holds {} events; the demo writes into an empty data directory",
        dir.display(),
        head.len
    );
    let size = DemoSize {
        donations,
        seed,
        ..DemoSize::default()
    };
    let bar = BarProgress(progress_bar(donations as u64, "gifts"));
    let submissions = run_demo(&node.writer, &clock, &size, &bar).await?;
    bar.0.finish();
    let head = node.log.head().await?;
    node.shutdown().await?;
    println!(
        "demo: {} events from {submissions} submissions in {}; head {}",
        head.len,
        dir.display(),
        head.hash
    );
    Ok(ExitCode::SUCCESS)
}

/// Verifies every event of a data directory: re-hashes each one and checks every link.
pub async fn verify_log(
    log: &dyn EventLog,
    bar: &ProgressBar,
) -> Result<ChainVerifier, anyhow::Error> {
    let mut chain = ChainVerifier::new();
    loop {
        let page = log
            .read(chain.len(), READ_EVENTS_MAX)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if page.is_empty() {
            return Ok(chain);
        }
        for event in &page {
            chain
                .push_sealed(event)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        bar.inc(page.len() as u64);
    }
}

async fn verify_data(dir: &Path) -> anyhow::Result<ExitCode> {
    let log = match open_sled(dir) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("verify: FAILED: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let head = log.head().await?;
    let bar = progress_bar(head.len, "verify");
    match verify_log(&log, &bar).await {
        Ok(chain) => {
            bar.finish_and_clear();
            println!(
                "verify: ok: {} events, head {}",
                chain.len(),
                head_text(&chain)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            bar.abandon();
            eprintln!("verify: FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn head_text(chain: &ChainVerifier) -> String {
    if chain.is_empty() {
        "none (empty log)".into()
    } else {
        format!("seq {} hash {}", chain.len() - 1, chain.head())
    }
}

fn verify_export(file: &Path) -> anyhow::Result<ExitCode> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, "verify (bytes)");
    let mut chain = ChainVerifier::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        bar.inc(line.len() as u64 + 1);
        let checked = check_export_line(line.as_bytes())
            .and_then(|c| chain.push(c.seq, c.prev, c.hash).map(|_| c));
        if let Err(e) = checked {
            bar.abandon();
            eprintln!("verify: FAILED at line {}: {e}", n + 1);
            return Ok(ExitCode::FAILURE);
        }
    }
    bar.finish_and_clear();
    println!(
        "verify: ok: {} events, head {}",
        chain.len(),
        head_text(&chain)
    );
    Ok(ExitCode::SUCCESS)
}

async fn export(dir: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let log = open_sled(dir)?;
    let head = log.head().await?;
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress_bar(head.len, "export");
    let mut next = 0;
    while next < head.len {
        let page = log.read(next, READ_EVENTS_MAX).await?;
        anyhow::ensure!(
            !page.is_empty(),
            "the log ended at {next}, before its head {}",
            head.len
        );
        for e in &page {
            sink.write_all(&e.export_line())?;
            sink.write_all(b"\n")?;
        }
        next += page.len() as u64;
        bar.inc(page.len() as u64);
    }
    sink.flush()?;
    bar.finish_and_clear();
    if let Some(path) = out {
        eprintln!("export: {} events to {}", head.len, path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn rebuild(dir: &Path) -> anyhow::Result<ExitCode> {
    let log = open_sled(dir)?;
    let snapshots = SnapshotStore::open(log.db())?;
    let live = snapshots.load()?;
    let head = log.head().await?;
    let bar = progress_bar(head.len, "rebuild");
    let mut state = projections::LedgerState::default();
    let mut compared = None;
    loop {
        // Stop at the live snapshot's position to compare like with like.
        let stop = match &live {
            Some(l) if compared.is_none() => l.position,
            _ => u64::MAX,
        };
        if state.position == stop {
            let l = live.as_ref().expect("stop comes from a live snapshot");
            compared = Some(encode_state(&state) == encode_state(l));
            continue;
        }
        let want = ((stop - state.position) as usize).min(READ_EVENTS_MAX);
        let page = log.read(state.position, want).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            state
                .apply(e)
                .with_context(|| format!("folding event {}", e.seq()))?;
        }
        bar.inc(page.len() as u64);
    }
    bar.finish_and_clear();
    snapshots.save(&state)?;
    match compared {
        Some(true) => {
            println!(
                "rebuild: {} events folded; the live projections (at {}) are byte-identical to the rebuilt ones",
                state.position,
                live.map(|l| l.position).unwrap_or(0)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(false) => {
            eprintln!("rebuild: the live projections DIFFER from the rebuilt ones; the rebuilt ones replace them");
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!(
                "rebuild: {} events folded; there were no live projections to compare (now saved)",
                state.position
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn balances(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let log = open_sled(dir)?;
    let snapshots = SnapshotStore::open(log.db())?;
    let state = crate::projector::load_state(&log, Some(&snapshots)).await?;
    let state = Arc::new(state);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let rows: Vec<_> = state
            .projects
            .values()
            .map(crate::views::project_figures)
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<12} {:<17} {:>4} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7} {:>9}",
            "project", "kind", "cur", "raised", "fees", "matched", "refunded", "paid_out", "moved_net", "committed", "available", "donors", "donations"
        )?;
        for p in state.projects.values() {
            let b = &p.balances;
            writeln!(
                out,
                "{:<12} {:<17} {:>4} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7} {:>9}",
                p.id.as_str(),
                p.kind.as_str(),
                p.currency.as_str(),
                b.raised,
                b.fees,
                b.matched,
                b.refunded,
                b.paid_out,
                b.moved_in as i128 - b.moved_out as i128,
                b.committed,
                b.available().unwrap_or(0),
                p.donors.len(),
                p.donation_count
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    dir: &Path,
    listen: std::net::SocketAddr,
    demo_donations: Option<usize>,
) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // While the demo is written the clock is the demo's (weeks of simulated time from 2018);
    // afterwards it is the system's. The writer never lets time go backwards.
    let demo_clock = DemoClock::new();
    let demo_running = Arc::new(AtomicBool::new(false));
    let system = crate::writer::system_clock();
    let clock: crate::writer::Clock = {
        let demo_clock = demo_clock.clone();
        let demo_running = demo_running.clone();
        Arc::new(move || {
            if demo_running.load(Ordering::Relaxed) {
                demo_clock.now()
            } else {
                system()
            }
        })
    };
    let sled = open_sled(dir)?;
    let db = sled.db().clone();
    // A demo goes into a new ledger named after the seed's district.
    let new_ledger = sled.head().await?.len == 0 && db.open_tree("meta")?.get(b"ledger")?.is_none();
    let wanted = (demo_donations.is_some() && new_ledger)
        .then(|| events::Id::new("erqi").expect("valid id"));
    let ledger = crate::node::ledger_id(&db, wanted.as_ref())?;
    let snapshots = SnapshotStore::open(&db)?;
    let node = Node::open_with(Arc::new(sled), Some(snapshots), ledger, clock).await?;
    if let Some(donations) = demo_donations {
        let head = node.log.head().await?;
        if head.len == 0 {
            demo_running.store(true, Ordering::Relaxed);
            let size = DemoSize {
                donations,
                ..DemoSize::default()
            };
            let bar = BarProgress(progress_bar(donations as u64, "demo gifts"));
            run_demo(&node.writer, &demo_clock, &size, &bar).await?;
            bar.0.finish_and_clear();
            demo_running.store(false, Ordering::Relaxed);
            eprintln!(
                "demo: {} events written into {}",
                node.log.head().await?.len,
                dir.display()
            );
        } else {
            eprintln!(
                "demo: {} already holds {} events; serving them as they are",
                dir.display(),
                head.len
            );
        }
    }
    let tokens = crate::http::TokenStore::open(&db)?;
    if tokens.list()?.is_empty() {
        eprintln!(
            "no staff tokens yet: stop the server and run `ledger token create --data {} --actor NAME --role admin`",
            dir.display()
        );
    }
    let node = Arc::new(node);
    let state = crate::http::AppState::new(node.clone(), tokens);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    println!("ledger {} serving on http://{local}", node.ledger);
    tracing::info!(address = %local, ledger = %node.ledger, "serving");
    crate::http::serve(listener, state, crate::http::shutdown_signal()).await?;
    shutdown_node(node).await?;
    // Flush explicitly: sled also flushes when the last handle drops, and that drop can come
    // from a task cancelled as the runtime stops, where a flush has been seen to hang.
    db.flush_async().await?;
    drop(db);
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Shuts a node down once the server has let go of it: finishes the writes in hand and lets
/// the projections persist.
pub async fn shutdown_node(node: Arc<Node>) -> anyhow::Result<()> {
    let mut node = node;
    // Connection tasks may take a moment to drop their clones of the state.
    for _ in 0..100 {
        match Arc::try_unwrap(node) {
            Ok(n) => return n.shutdown().await,
            Err(shared) => {
                node = shared;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    anyhow::bail!("the ledger is still in use after the server stopped; writes already acknowledged are durable")
}

fn token(command: TokenCmd) -> anyhow::Result<ExitCode> {
    let dir = match &command {
        TokenCmd::Create { data, .. } | TokenCmd::Revoke { data, .. } | TokenCmd::List { data } => {
            data.data.clone()
        }
    };
    let db = crate::store::SledLog::open_db(&dir).with_context(|| {
        format!(
            "opening {} (is `ledger serve` running on it? then use the admin API)",
            dir.display()
        )
    })?;
    let tokens = crate::http::TokenStore::open(&db)?;
    match command {
        TokenCmd::Create { actor, role, .. } => {
            let (token, info) = tokens.create(actor, role)?;
            eprintln!(
                "token {} for {} ({}); it is shown this once, keep it secret:",
                info.id,
                info.actor,
                info.role.as_str()
            );
            println!("{token}");
        }
        TokenCmd::Revoke { id, .. } => match tokens.revoke(&id)? {
            Some(info) => println!("revoked token {} of {}", info.id, info.actor),
            None => {
                eprintln!("no token with id {id}");
                return Ok(ExitCode::FAILURE);
            }
        },
        TokenCmd::List { .. } => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<16} {:<24} {:<9} {:>14} revoked_ms",
                "id", "actor", "role", "created_ms"
            )?;
            for t in tokens.list()? {
                writeln!(
                    out,
                    "{:<16} {:<24} {:<9} {:>14} {}",
                    t.id,
                    t.actor.as_str(),
                    t.role.as_str(),
                    t.created_ms,
                    t.revoked_ms
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into())
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
