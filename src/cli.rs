//! The command line: `demo`, `verify`, `verify-receipt`, `keygen`, `export`, `rebuild`,
//! `balances`, `soak`, `serve`, `token`; the finance subcommands live in [`crate::finance_cli`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use events::ChainVerifier;
use indicatif::{ProgressBar, ProgressStyle};

use crate::demo::{run_demo, DemoClock, DemoSize, Progress};
use crate::node::{open_backend, open_log, open_sled, Node, NodeConfig, StoreArgs};
use crate::projector::encode_state;
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
    /// Where the log lives (`--store`, `--eventstore-url`, `--ledger`); sled by default.
    #[command(flatten)]
    pub store: StoreArgs,
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
    /// Check a whole ledger: every event's hash and link (naming the first broken seq), the
    /// Merkle root, the latest signed checkpoint and the consistency of saved checkpoints.
    /// Source: a data directory (default), an export (--export) or a running ledger (--url).
    Verify {
        #[command(flatten)]
        data: DataArgs,
        /// Verify this export (JSON Lines) instead of a data directory.
        #[arg(long, conflicts_with = "url")]
        export: Option<PathBuf>,
        /// Verify the ledger served at this base URL (its /log/tile/entries and checkpoint).
        #[arg(long)]
        url: Option<String>,
        /// The ledger's verifier key (name+id+base64), or a file holding it. Required with
        /// --url; for a data directory the one keygen wrote is used by default.
        #[arg(long)]
        key: Option<String>,
        /// A file of saved checkpoint notes (as fetched from /log/checkpoint, one after the
        /// other): each must verify and be consistent with the latest.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Check one saved receipt proof bundle (from /api/v1/public/receipts/{code}/proof)
    /// offline: the event, its checkpoint's signature and the inclusion proof.
    VerifyReceipt {
        /// The bundle (JSON).
        #[arg(long)]
        receipt: PathBuf,
        /// The ledger's verifier key (name+id+base64), or a file holding it.
        #[arg(long)]
        key: String,
    },
    /// Make the Ed25519 key that signs this ledger's checkpoints (written under the data
    /// directory, mode 0600) and print its verifier key.
    Keygen {
        #[command(flatten)]
        data: DataArgs,
        /// The key name, which is also the checkpoints' origin: a schema-less URL naming the
        /// log. Default: example.org/ledger/<ledger id>.
        #[arg(long)]
        name: Option<String>,
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
    /// Append gifts as fast as the ledger takes them, printing `acked <seq>` for each durable
    /// one: a soak and crash-test driver.
    Soak {
        #[command(flatten)]
        data: DataArgs,
        /// Stop after this many gifts.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Concurrent callers.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
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
    /// IATI 2.03 activity XML for publication (donors anonymous); each activity's
    /// transactions add up to the project's fund statement.
    ExportIati(crate::finance_cli::PublishArgs),
    /// 360Giving-style grants CSV of payouts for publication.
    #[command(name = "export-360giving")]
    Export360giving(crate::finance_cli::PublishArgs),
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
        /// recorder, approver, admin or auditor.
        #[arg(long, value_parser = parse_role)]
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

fn parse_role(s: &str) -> Result<crate::http::Role, String> {
    s.parse().map_err(|e: events::ValueError| e.to_string())
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
    let store = cli.store;
    runtime.block_on(async move {
        match cli.command {
            Cmd::Demo {
                data,
                donations,
                seed,
            } => demo(&store, &data.data, donations, seed).await,
            Cmd::Verify {
                data,
                export,
                url,
                key,
                checkpoints,
            } => {
                let args = VerifyArgs { key, checkpoints };
                match (export, url) {
                    (Some(file), _) => verify_export(&file, &args),
                    (None, Some(url)) => verify_url(&url, &args).await,
                    (None, None) => verify_data(&data.data, &args).await,
                }
            }
            Cmd::VerifyReceipt { receipt, key } => verify_receipt(&receipt, &key),
            Cmd::Keygen { data, name } => keygen(&data.data, name.as_deref()),
            Cmd::Export { data, out } => export(&store, &data.data, out.as_deref()).await,
            Cmd::Rebuild { data } => rebuild(&store, &data.data).await,
            Cmd::Balances { data, json } => balances(&store, &data.data, json).await,
            Cmd::Soak {
                data,
                count,
                concurrency,
            } => soak(&store, &data.data, count, concurrency).await,
            Cmd::Serve {
                data,
                listen,
                demo,
                demo_donations,
            } => serve(&store, &data.data, listen, demo.then_some(demo_donations)).await,
            Cmd::Token { command } => token(command),
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

async fn demo(
    store: &StoreArgs,
    dir: &Path,
    donations: usize,
    seed: u64,
) -> anyhow::Result<ExitCode> {
    let clock = DemoClock::new();
    let ledger = store
        .ledger
        .clone()
        .unwrap_or_else(|| events::Id::new("erqi").expect("valid id"));
    let node = open_backend(
        store,
        NodeConfig {
            data_dir: dir.to_owned(),
            ledger: Some(ledger),
            clock: clock.clock(),
        },
    )
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
/// Pages are read (parsed and re-hashed on the blocking pool) [`VERIFY_READS_AHEAD`] at a
/// time, so every core works; links are checked in order as the pages come in.
pub async fn verify_log(
    log: &dyn EventLog,
    bar: &ProgressBar,
) -> Result<ChainVerifier, anyhow::Error> {
    use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
    let mut chain = ChainVerifier::new();
    let head = log.head().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let page_len = READ_EVENTS_MAX as u64;
    let mut pages = stream::iter((0..head.len.div_ceil(page_len)).map(|i| i * page_len))
        .map(|from| log.read(from, READ_EVENTS_MAX))
        .buffered(VERIFY_READS_AHEAD);
    // Then whatever was appended after `head` was read, page by page.
    loop {
        let page = match pages.try_next().await {
            Ok(Some(page)) => page,
            Ok(None) => log
                .read(chain.len(), READ_EVENTS_MAX)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        };
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

/// How many pages `verify` reads at once.
pub const VERIFY_READS_AHEAD: usize = 4;

/// The options of `verify` shared by its sources.
pub struct VerifyArgs {
    pub key: Option<String>,
    pub checkpoints: Option<PathBuf>,
}

impl VerifyArgs {
    fn key(&self) -> anyhow::Result<Option<events::VerifierKey>> {
        self.key
            .as_deref()
            .map(crate::tlog::checkpoints::parse_verifier_key)
            .transpose()
            .context("--key")
    }

    fn saved(&self) -> anyhow::Result<Vec<String>> {
        let Some(path) = &self.checkpoints else {
            return Ok(Vec::new());
        };
        let text = crate::tlog::checkpoints::read_small_text(path, CHECKPOINTS_FILE_BYTES_MAX)
            .context("--checkpoints")?;
        Ok(crate::tlog::checkpoints::split_notes(&text))
    }
}

/// The largest file of saved checkpoints `verify` reads.
pub const CHECKPOINTS_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

fn print_report(report: &crate::tlog::verify::VerifyReport) {
    let head = if report.events == 0 {
        "none (empty log)".to_owned()
    } else {
        format!("seq {} hash {}", report.events - 1, report.head)
    };
    println!(
        "verify: ok: {} events, head {head}, root {}",
        report.events, report.root
    );
    match &report.latest {
        Some(c) => println!(
            "verify: checkpoint {} size {} root {}: signature verified, root matches; {} older checkpoint(s) consistent",
            c.origin, c.size, c.root, report.older_checked
        ),
        None => println!("verify: no checkpoint checked (give --key and --checkpoints, or --url)"),
    }
}

fn report_failure(bar: &ProgressBar, e: &crate::tlog::verify::VerifyError) -> ExitCode {
    bar.abandon();
    match e.seq() {
        Some(seq) => eprintln!("verify: FAILED at seq {seq}: {e}"),
        None => eprintln!("verify: FAILED: {e}"),
    }
    ExitCode::FAILURE
}

async fn verify_data(dir: &Path, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let log = match crate::node::open_existing_sled(dir) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("verify: FAILED: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let head = log.head().await?;
    let bar = progress_bar(head.len, "verify");
    let chain = match verify_log(&log, &bar).await {
        Ok(chain) => chain,
        Err(e) => {
            bar.abandon();
            eprintln!("verify: FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    bar.finish_and_clear();
    println!(
        "verify: ok: {} events, head {}",
        chain.len(),
        head_text(&chain)
    );
    // The stored tree and the latest stored checkpoint must agree with the events.
    let Some(tree) = log.tree() else {
        return Ok(ExitCode::SUCCESS);
    };
    let store = crate::tlog::CheckpointStore::open(log.db(), std::sync::Arc::new(|| Ok(())), None)?;
    let published = store.all()?;
    let saved = args.saved()?;
    // The roots every checkpoint must have are recomputed from the events in the same pass
    // as the root of the whole log, never taken from the stored tree.
    let sizes: std::collections::BTreeSet<u64> = published
        .iter()
        .map(|(size, _)| *size)
        .chain(
            saved
                .iter()
                .filter_map(|n| crate::tlog::checkpoints::parse_unverified(n).ok())
                .map(|c| c.size),
        )
        .collect();
    let (computed, roots) = recompute_roots(&log, chain.len(), &sizes).await?;
    if tree.root() != computed || tree.size() != chain.len() {
        eprintln!(
            "verify: FAILED: the stored Merkle tree (size {}, root {}) differs from the events (size {}, root {computed})",
            tree.size(),
            tree.root(),
            chain.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("verify: Merkle root {computed} (stored tree agrees)");
    let key = match args.key()? {
        Some(key) => Some(key),
        None => {
            let path = dir.join(crate::tlog::checkpoints::VERIFIER_KEY_PATH);
            path.exists()
                .then(|| crate::tlog::checkpoints::parse_verifier_key(&path.to_string_lossy()))
                .transpose()?
        }
    };
    if published.is_empty() && saved.is_empty() {
        println!("verify: no checkpoints to check");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(key) = key else {
        println!("verify: checkpoints not checked (no verifier key; give --key)");
        return Ok(ExitCode::SUCCESS);
    };
    let mut checked = 0usize;
    for (which, note) in published
        .iter()
        .map(|(size, note)| (format!("published checkpoint at size {size}"), note))
        .chain(
            saved
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("saved checkpoint {}", i + 1), n)),
        )
    {
        let result = events::Checkpoint::open(note, &key)
            .map_err(|e| format!("{which}: {e}"))
            .and_then(|c| {
                let root = roots.get(&c.size).ok_or_else(|| {
                    format!(
                        "{which}: size {} is beyond the log's {} events: acknowledged events are missing",
                        c.size,
                        chain.len()
                    )
                })?;
                if *root != c.root {
                    return Err(format!(
                        "{which}: signed root {} but the events give {root}",
                        c.root
                    ));
                }
                // The stored tree, which serves proofs and tiles, must agree at that size too.
                let at = tree.at(c.size).map_err(|e| format!("{which}: {e}"))?;
                let stored =
                    events::merkle::root(c.size, &at).map_err(|e| format!("{which}: {e}"))?;
                if stored != *root {
                    return Err(format!(
                        "{which}: the stored Merkle tree gives root {stored} at size {}, the events {root}",
                        c.size
                    ));
                }
                Ok(())
            });
        if let Err(e) = result {
            eprintln!("verify: FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
        checked += 1;
    }
    println!(
        "verify: {checked} checkpoint(s) verified: signatures by {} and roots match",
        key.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// The RFC 9162 root of the first `len` events, and the root at each of `sizes` up to
/// `len`, recomputed from the events themselves in one pass.
async fn recompute_roots(
    log: &dyn EventLog,
    len: u64,
    sizes: &std::collections::BTreeSet<u64>,
) -> anyhow::Result<(events::Hash, std::collections::BTreeMap<u64, events::Hash>)> {
    let mut frontier = events::MerkleFrontier::new();
    let mut roots = std::collections::BTreeMap::new();
    let mut wanted = sizes.range(..=len).copied().peekable();
    let mut take_roots = |frontier: &events::MerkleFrontier| {
        while wanted.next_if_eq(&frontier.size()).is_some() {
            roots.insert(frontier.size(), frontier.root());
        }
    };
    take_roots(&frontier);
    while frontier.size() < len {
        let page = log.read(frontier.size(), READ_EVENTS_MAX).await?;
        anyhow::ensure!(!page.is_empty(), "the log ended at {}", frontier.size());
        for e in page.iter().take((len - frontier.size()) as usize) {
            frontier.push(e.leaf_hash());
            take_roots(&frontier);
        }
    }
    Ok((frontier.root(), roots))
}

fn head_text(chain: &ChainVerifier) -> String {
    if chain.is_empty() {
        "none (empty log)".into()
    } else {
        format!("seq {} hash {}", chain.len() - 1, chain.head())
    }
}

fn verify_export(file: &Path, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = args.key()?;
    let saved = args.saved()?;
    let bar = progress_bar(0, "verify (bytes)");
    match crate::tlog::verify::verify_export(file, key.as_ref(), &saved, &bar) {
        Ok(report) => {
            bar.finish_and_clear();
            print_report(&report);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_failure(&bar, &e)),
    }
}

async fn verify_url(url: &str, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let key = args.key()?.context(
        "--key is required with --url: the ledger's verifier key, obtained from a source you trust",
    )?;
    let saved = args.saved()?;
    let url = url.to_owned();
    let bar = progress_bar(0, "verify");
    let worker = bar.clone();
    let result = tokio::task::spawn_blocking(move || {
        crate::tlog::verify::verify_url(&url, &key, &saved, &worker)
    })
    .await?;
    match result {
        Ok(report) => {
            bar.finish_and_clear();
            print_report(&report);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_failure(&bar, &e)),
    }
}

fn verify_receipt(file: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let key = crate::tlog::checkpoints::parse_verifier_key(key).context("--key")?;
    let text =
        crate::tlog::checkpoints::read_small_text(file, crate::tlog::verify::SMALL_BODY_BYTES_MAX)
            .context("--receipt")?;
    match crate::tlog::verify::verify_receipt(&text, &key) {
        Ok(r) => {
            println!(
                "verify-receipt: ok: receipt {} is event {} ({}), hash {}, included in checkpoint {} size {} root {} signed by {}",
                r.receipt_code,
                r.seq,
                r.summary,
                r.event_hash,
                r.checkpoint.origin,
                r.checkpoint.size,
                r.checkpoint.root,
                key.name()
            );
            match &r.refund {
                Some(f) if f.included => println!(
                    "verify-receipt: refunded: event {} (hash {}) refunds it, included in the same checkpoint",
                    f.seq, f.event_hash
                ),
                Some(f) => println!(
                    "verify-receipt: refunded: event {} (hash {}) refunds it; it is newer than the checkpoint, so only its hash is checked: fetch the bundle again in a few seconds to prove it",
                    f.seq, f.event_hash
                ),
                None => println!(
                    "verify-receipt: the bundle carries no refund (the server's word: only a refund it carries is proven)"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("verify-receipt: FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn keygen(dir: &Path, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => {
            let db = crate::store::SledLog::open_db(dir)?;
            let stored = db.open_tree("meta")?.get(b"ledger")?;
            let id = stored
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .context(
                    "this data directory has no ledger yet: record something first, or give --name",
                )?;
            crate::tlog::checkpoints::default_origin(&events::Id::new(&id)?)
        }
    };
    let key = crate::tlog::checkpoints::keygen(dir, &name)?;
    eprintln!(
        "keygen: signer key written to {} (keep it secret); verifier key also in {}",
        dir.join(crate::tlog::checkpoints::SIGNER_KEY_PATH)
            .display(),
        dir.join(crate::tlog::checkpoints::VERIFIER_KEY_PATH)
            .display()
    );
    println!("{}", key.to_text());
    Ok(ExitCode::SUCCESS)
}

async fn export(store: &StoreArgs, dir: &Path, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let log = open_log(store, dir, None).await?.log;
    let mut sink = crate::finance_cli::sink(out)?;
    let len = crate::finance_cli::for_each_event(log.as_ref(), 0, "export", |e| {
        sink.write_all(&e.export_line())?;
        sink.write_all(b"\n")?;
        Ok(true)
    })
    .await?;
    sink.flush()?;
    if let Some(path) = out {
        eprintln!("export: {len} events to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn rebuild(store: &StoreArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let opened = open_log(store, dir, None).await?;
    let log = opened.log;
    let snapshots = opened
        .snapshots
        .context("rebuild needs a projection snapshot store")?;
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

async fn balances(store: &StoreArgs, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let opened = open_log(store, dir, None).await?;
    let state =
        crate::projector::load_state(opened.log.as_ref(), opened.snapshots.as_ref()).await?;
    let state = Arc::new(state);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // One set of figures for both forms: the ones the JSON API and the web pages show.
    let rows: Vec<_> = state
        .projects
        .values()
        .map(crate::views::project_figures)
        .collect();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{:<12} {:<17} {:>4} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7} {:>9}",
            "project", "kind", "cur", "raised", "fees", "matched", "refunded", "fees_back", "paid_out", "moved_net", "committed", "requested", "frozen", "available", "donors", "donations"
        )?;
        // raised (net of fees) + matched − refunded + fees_back − paid_out + moved_net −
        // committed − requested − frozen = available.
        for f in &rows {
            writeln!(
                out,
                "{:<12} {:<17} {:>4} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>7} {:>9}",
                f.project,
                f.kind,
                f.currency,
                f.raised_minor,
                f.fees_minor,
                f.matched_minor,
                f.refunded_minor,
                f.fees_returned_minor,
                f.paid_out_minor,
                f.moved_in_minor as i128 - f.moved_out_minor as i128,
                f.committed_minor,
                f.requested_minor,
                f.frozen_minor,
                f.available_minor,
                f.donor_count,
                f.donation_count
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn soak(
    store: &StoreArgs,
    dir: &Path,
    count: u64,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    use crate::command::{Command, CommandError, DonationInput};
    use crate::writer::{Submission, WriteError};
    use events::{Amount, Channel, Currency, Id, ProjectKind, Text};
    use std::sync::atomic::{AtomicU64, Ordering};

    let node = open_backend(
        store,
        NodeConfig {
            data_dir: dir.to_owned(),
            ledger: store.ledger.clone(),
            clock: crate::writer::system_clock(),
        },
    )
    .await?;
    let project = Id::new("soak").expect("valid id");
    let open = Command::OpenProject {
        project: project.clone(),
        kind: ProjectKind::GeneralFund,
        name: Text::new("soak").expect("valid text"),
        currency: Currency::CNY,
        goal_minor: None,
    };
    match node
        .writer
        .submit(Submission::one(Id::new("soak").expect("valid id"), open))
        .await
    {
        Ok(_)
        | Err(WriteError::Rejected {
            error: CommandError::ProjectExists(_),
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    // Unique across runs on the same data directory: the log length at start plus a counter.
    let run = node.log.head().await?.len;
    let next = Arc::new(AtomicU64::new(0));
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (writer, next, stdout, project) = (
            node.writer.clone(),
            next.clone(),
            stdout.clone(),
            project.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let gift = Command::RecordDonation(DonationInput {
                    project: project.clone(),
                    amount_minor: Amount::new(100).expect("valid amount"),
                    currency: Currency::CNY,
                    channel: Channel::Wechat,
                    channel_txn_id: format!("soak-{run}-{n}"),
                    fee_minor: 0,
                    pledge_seq: None,
                    anonymous: true,
                    public_name: None,
                    donor_ref: Id::new(&format!("donor-{}", n % 1000)).expect("valid id"),
                });
                let outcome = writer
                    .submit(Submission::one(Id::new("soak").expect("valid id"), gift))
                    .await?;
                if let Some(seq) = outcome.last_seq() {
                    let mut out = stdout.lock().map_err(|_| anyhow::anyhow!("stdout lock"))?;
                    writeln!(out, "acked {seq}")?;
                    out.flush()?;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    node.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    store: &StoreArgs,
    dir: &Path,
    listen: std::net::SocketAddr,
    demo_donations: Option<usize>,
) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // The server keeps its staff tokens and checkpoints in the data directory's sled
    // database, beside the log: it serves the embedded store only. Said, not ignored, so an
    // operator who asked for a cluster is not served a local ledger instead.
    anyhow::ensure!(
        store.kind == crate::node::StoreKind::Sled,
        "--store eventstoredb (or LEDGER_STORE): `serve` runs on the embedded sled store \
         only for now (its tokens and checkpoints live in the data directory); the other \
         commands read and write EventStoreDB. Serve with --store sled"
    );
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
    let tokens = crate::http::TokenStore::open(&sled)?;
    // A demo goes into a new ledger named after the seed's district.
    let new_ledger = sled.head().await?.len == 0 && db.open_tree("meta")?.get(b"ledger")?.is_none();
    let wanted = (demo_donations.is_some() && new_ledger)
        .then(|| events::Id::new("erqi").expect("valid id"));
    let ledger = crate::node::ledger_id(&db, wanted.as_ref())?;
    // A demo should be verifiable end to end at once: give it a checkpoint signing key
    // if it has none (a real deployment makes its own with `keygen --name <its origin>`).
    if demo_donations.is_some() && crate::tlog::checkpoints::load_signer(dir)?.is_none() {
        let origin = crate::tlog::checkpoints::default_origin(&ledger);
        let key = crate::tlog::checkpoints::keygen(dir, &origin)?;
        eprintln!("demo: made a checkpoint signing key; verifier key {key}");
    }
    let node = Arc::new(Node::open_on_sled(sled, dir, ledger, clock).await?);
    // Whatever happens from here (a demo that fails, a port in use), the node is shut down
    // before returning: its tasks hold the log, and a log dropped by a task the runtime
    // cancels can hang in sled's flush-on-drop (ARCHITECTURE.md, "Who drops the log").
    let outcome: anyhow::Result<()> = async {
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
        // Tokens made or revoked with the `token` command (the server stopped) reach the
        // log now, before any request is answered (`TokenStore::record_in_log`).
        let head = node.log.head().await?.len;
        let state = node
            .state_at(head, std::time::Duration::from_secs(60))
            .await
            .unwrap_or_else(|| node.state());
        let recorded = tokens.void_unstored(&node.writer, &state).await?
            + tokens.record_in_log(&node.writer, &state).await?;
        if recorded > 0 {
            tracing::info!(events = recorded, "staff tokens recorded in the log");
        }
        if tokens.list()?.is_empty() {
            eprintln!(
                "no staff tokens yet: stop the server and run `ledger token create --data {} --actor NAME --role admin`",
                dir.display()
            );
        }
        let state = crate::http::AppState::new(node.clone(), tokens);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let local = listener.local_addr()?;
        println!("ledger {} serving on http://{local}", node.ledger);
        tracing::info!(address = %local, ledger = %node.ledger, "serving");
        crate::http::serve(listener, state, crate::http::shutdown_signal()).await?;
        Ok(())
    }
    .await;
    let stopped = shutdown_node(node).await;
    // Flush explicitly: sled also flushes when the last handle drops, and that drop can come
    // from a task cancelled as the runtime stops, where a flush has been seen to hang.
    db.flush_async().await?;
    drop(db);
    outcome?;
    stopped?;
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
    let log = crate::store::SledLog::open(&dir).with_context(|| {
        format!(
            "opening {} (is `ledger serve` running on it? then use the admin API)",
            dir.display()
        )
    })?;
    let tokens = crate::http::TokenStore::open(&log)?;
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
