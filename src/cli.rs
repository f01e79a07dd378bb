//! The command line: `demo`, `verify`, `export`, `rebuild`, `balances` (and `serve`); the
//! finance subcommands live in [`crate::finance_cli`].

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
    /// Import a WeChat Pay / Alipay bill or a bank statement (CSV, camt.053) and reconcile it.
    ImportStatement(crate::finance_cli::ImportStatementArgs),
    /// Reconcile an imported statement against the ledger and list the exceptions.
    Reconcile(crate::finance_cli::ReconcileArgs),
    /// Record how a reconciliation exception was resolved.
    ResolveException(crate::finance_cli::ResolveArgs),
    /// The double-entry trial balance at a seq or date.
    TrialBalance(crate::finance_cli::TrialBalanceArgs),
    /// One account's ledger with its running balance.
    AccountLedger(crate::finance_cli::AccountLedgerArgs),
    /// Each project's fund statement, from the journal.
    FundStatement(crate::finance_cli::FundStatementArgs),
    /// The Charity Law disclosure report of a project for a period (HTML or CSV).
    Report(crate::finance_cli::ReportArgs),
    /// The journal as CSV for accountants (one row per posting).
    ExportCsv(crate::finance_cli::ExportArgs),
    /// IATI 2.03 activity XML for publication (donors anonymous).
    ExportIati(crate::finance_cli::PublishArgs),
    /// 360Giving-style grants CSV of payouts for publication.
    #[command(name = "export-360giving")]
    Export360giving(crate::finance_cli::PublishArgs),
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
            Cmd::ImportStatement(a) => crate::finance_cli::import_statement(a).await,
            Cmd::Reconcile(a) => crate::finance_cli::reconcile(a).await,
            Cmd::ResolveException(a) => crate::finance_cli::resolve_exception(a).await,
            Cmd::TrialBalance(a) => crate::finance_cli::trial_balance(a).await,
            Cmd::AccountLedger(a) => crate::finance_cli::account_ledger(a).await,
            Cmd::FundStatement(a) => crate::finance_cli::fund_statement(a).await,
            Cmd::Report(a) => crate::finance_cli::report(a).await,
            Cmd::ExportCsv(a) => crate::finance_cli::export_csv(a).await,
            Cmd::ExportIati(a) => crate::finance_cli::export_iati(a).await,
            Cmd::Export360giving(a) => crate::finance_cli::export_360giving(a).await,
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
