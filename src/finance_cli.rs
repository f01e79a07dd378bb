//! The finance subcommands: `import-statement`, `reconcile`, `resolve-exception`,
//! `trial-balance`, `account-ledger`, `fund-statement`, `report`, `export-csv`,
//! `export-iati` and `export-360giving`. Thin: parse arguments, stream events from the log
//! into the pure builders of [`crate::reports`] and the projections, print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use events::{
    Amount, Channel, ExceptionResolved, Id, Resolution, SealedEvent, StatementSource, Text,
};
use projections::journal::{Account, AccountLedger, Books, Cutoff};
use projections::reconcile::{MatchConfig, Reconciler, Reconciliation};
use projections::LedgerState;

use crate::cli::{progress_bar, DataArgs};
use crate::command::Command;
use crate::node::{open_existing_sled, Node};
use crate::reports::{
    china_date, DisclosureBuilder, GrantsCsv, IatiBuilder, JournalCsv, Publisher,
};
use crate::statement::{
    format_milli_minor, format_minor, parse_decimal_minor, parse_statement, ParsedLine,
    StatementError, StatementOptions, StatementSummary,
};
use crate::store::{EventLog, READ_EVENTS_MAX};
use crate::writer::{Submission, SUBMISSION_COMMANDS_MAX};

/// The statement formats `import-statement` reads.
#[derive(
    clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StatementFormat {
    Wechat,
    Alipay,
    BankCsv,
    Camt053,
}

impl StatementFormat {
    pub fn source(self) -> StatementSource {
        match self {
            StatementFormat::Wechat => StatementSource::Wechat,
            StatementFormat::Alipay => StatementSource::Alipay,
            StatementFormat::BankCsv => StatementSource::BankCsv,
            StatementFormat::Camt053 => StatementSource::Camt053,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct MatchArgs {
    /// Match by amount when booked within this many hours of the ledger entry (at most 720).
    #[arg(long, default_value_t = 48,
          value_parser = clap::value_parser!(u64).range(..=projections::reconcile::DATE_WINDOW_HOURS_MAX))]
    pub date_window_hours: u64,
    /// Entries this many minutes before the period's end that the statement lacks are
    /// timing differences, not missing (at most 10080).
    #[arg(long, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(..=projections::reconcile::TIMING_WINDOW_MINUTES_MAX))]
    pub timing_window_minutes: u64,
}

impl MatchArgs {
    fn config(&self) -> MatchConfig {
        MatchConfig::from_windows(self.date_window_hours, self.timing_window_minutes)
            .expect("clap keeps the windows within their limits")
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportStatementArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The statement's format.
    #[arg(long, value_enum)]
    pub format: StatementFormat,
    /// The statement file (UTF-8).
    pub file: PathBuf,
    /// Who imports it.
    #[arg(long, default_value = "recorder")]
    pub actor: String,
    /// Minutes east of UTC of times without a zone in the file.
    #[arg(long, default_value_t = 480, allow_hyphen_values = true)]
    pub utc_offset_minutes: i32,
    /// Write the exceptions as CSV here.
    #[arg(long)]
    pub exceptions: Option<PathBuf>,
    #[command(flatten)]
    pub matching: MatchArgs,
}

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The statement's seq (as `import-statement` printed it).
    #[arg(long)]
    pub statement: u64,
    /// Write the exceptions as CSV here.
    #[arg(long)]
    pub exceptions: Option<PathBuf>,
    /// Write the matched pairs as CSV here.
    #[arg(long)]
    pub matched: Option<PathBuf>,
    #[command(flatten)]
    pub matching: MatchArgs,
}

#[derive(
    clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionAction {
    Explained,
    Linked,
    Settlement,
    MatchingReceived,
}

#[derive(clap::Args, Debug)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long)]
    pub statement: u64,
    /// The statement line the exception is about.
    #[arg(long, conflicts_with = "entry")]
    pub line: Option<u64>,
    /// The ledger entry (donation or payout seq) the exception is about.
    #[arg(long)]
    pub entry: Option<u64>,
    #[arg(long, value_enum)]
    pub action: ResolutionAction,
    /// For `linked`: the donation or payout seq the line belongs to.
    #[arg(long)]
    pub link_to: Option<u64>,
    /// For `settlement`: the channel that paid out (wechat, alipay, cash, charity_mall).
    #[arg(long)]
    pub channel: Option<String>,
    /// For `matching-received`: the pool whose sponsor paid.
    #[arg(long)]
    pub pool: Option<String>,
    /// For `settlement` and `matching-received`: the amount, in yuan (e.g. 1234.50).
    #[arg(long)]
    pub amount: Option<String>,
    /// Why: shown in the history.
    #[arg(long)]
    pub note: String,
    #[arg(long, default_value = "finance")]
    pub actor: String,
}

#[derive(clap::Args, Debug)]
pub struct CutoffArgs {
    /// Include events up to and including this seq.
    #[arg(long)]
    pub seq: Option<u64>,
    /// Include events before this date or date-time (China time), e.g. 2018-11-01.
    #[arg(long)]
    pub before: Option<String>,
}

impl CutoffArgs {
    fn cutoff(&self) -> anyhow::Result<Cutoff> {
        let before_ms = self
            .before
            .as_deref()
            .map(|s| {
                crate::statement::parse_local_date(s, 480)
                    .or_else(|_| crate::statement::parse_local_datetime(s, 480))
                    .map_err(|e| anyhow::anyhow!("--before: {e}"))
            })
            .transpose()?;
        Ok(Cutoff {
            through_seq: self.seq,
            before_ms,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct TrialBalanceArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub cutoff: CutoffArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct AccountLedgerArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The account key, e.g. 1001, 1101:wechat, 4101:cp-001, 5101:alipay:cp-001.
    #[arg(long)]
    pub account: String,
    #[arg(long, default_value = "CNY")]
    pub currency: String,
    #[command(flatten)]
    pub cutoff: CutoffArgs,
}

#[derive(clap::Args, Debug)]
pub struct FundStatementArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// One project (default: all).
    #[arg(long)]
    pub project: Option<String>,
    #[command(flatten)]
    pub cutoff: CutoffArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ReportFormat {
    Html,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long)]
    pub project: String,
    /// First day of the period (China time), e.g. 2018-10-01.
    #[arg(long)]
    pub from: String,
    /// Last day of the period, inclusive, e.g. 2018-12-31.
    #[arg(long)]
    pub to: String,
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The publisher's organisation identifier (IATI org id, or a 360Giving prefix): its
    /// registration agency's prefix, `-`, its number; 3 to 128 letters, digits, `-`, `_`, `.`.
    #[arg(long, default_value = "CN-USCC-ERQI-CHARITY", value_parser = parse_org_id)]
    pub org_id: String,
    #[arg(
        long,
        default_value = "二七区慈善总会 (Erqi District Charity Federation)",
        value_parser = parse_org_name
    )]
    pub org_name: String,
    /// The publisher's IATI OrganisationType code: 22 (national NGO) for a district
    /// charity federation; 10, 11, 15, 21, 23, 24, 30, 40, 60, 70–73, 80 or 90 otherwise.
    #[arg(long, default_value = "22", value_parser = parse_org_type)]
    pub org_type: String,
    /// ISO 3166-1 alpha-2 country of the activities.
    #[arg(long, default_value = "CN", value_parser = parse_country)]
    pub country: String,
    /// The activities' sector for IATI: an OECD DAC 5-digit purpose code, such as 16010
    /// (social protection), 11220 (primary education) or 12220 (basic health care).
    #[arg(long, default_value = "16010", value_parser = parse_sector)]
    pub sector: String,
    /// The 360Giving publisher prefix (`export-360giving`): `360G-` and 1 to 64 letters,
    /// digits or `-`; grant identifiers and recipients' identifiers start with it.
    #[arg(long, default_value = "360G-erqi", value_parser = parse_prefix_360g)]
    pub prefix: String,
}

/// `--prefix`: a 360Giving publisher prefix.
fn parse_prefix_360g(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("360G-").unwrap_or("");
    if (1..=64).contains(&rest.len())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(s.to_owned())
    } else {
        Err(
            "must be a 360Giving publisher prefix: `360G-` and 1 to 64 letters, digits or `-`, \
             such as 360G-erqi"
                .into(),
        )
    }
}

/// The most characters of an organisation identifier or name in the published files.
pub const ORG_ID_LEN_MAX: usize = 128;
pub const ORG_NAME_LEN_MAX: usize = 256;

/// `--org-id`: an IATI organisation identifier (or 360Giving prefix), as the IATI rules
/// write one: `<agency prefix>-<number>`, with none of the characters they rule out
/// (spaces, `/`, `?`, `#`, `&`, ...).
fn parse_org_id(s: &str) -> Result<String, String> {
    let ok = (3..=ORG_ID_LEN_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.trim_matches('-').contains('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "must be an organisation identifier: a registration agency's prefix, `-`, a number \
             (such as CN-USCC-…), 3 to {ORG_ID_LEN_MAX} letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// `--org-name`: 1 to [`ORG_NAME_LEN_MAX`] characters, no control characters.
fn parse_org_name(s: &str) -> Result<String, String> {
    let n = s.chars().count();
    if s.trim().is_empty() || n > ORG_NAME_LEN_MAX || s.chars().any(char::is_control) {
        return Err(format!(
            "must be 1 to {ORG_NAME_LEN_MAX} characters without control characters (got {n})"
        ));
    }
    Ok(s.to_owned())
}

/// `--org-type`: a code of the IATI OrganisationType codelist.
fn parse_org_type(s: &str) -> Result<String, String> {
    if crate::reports::IATI_ORGANISATION_TYPES
        .iter()
        .any(|(code, _)| *code == s)
    {
        return Ok(s.to_owned());
    }
    let codes: Vec<String> = crate::reports::IATI_ORGANISATION_TYPES
        .iter()
        .map(|(code, name)| format!("{code} ({name})"))
        .collect();
    Err(format!(
        "must be an IATI OrganisationType code: {}",
        codes.join(", ")
    ))
}

/// `--country`: an ISO 3166-1 alpha-2 code, two capital letters.
fn parse_country(s: &str) -> Result<String, String> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_owned())
    } else {
        Err("must be an ISO 3166-1 alpha-2 code: two capital letters, such as CN".into())
    }
}

/// `--sector`: an OECD DAC 5-digit purpose code (the first digit is never 0).
fn parse_sector(s: &str) -> Result<String, String> {
    if s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0') {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "must be an OECD DAC 5-digit purpose code (IATI Sector vocabulary 1), such as \
             16010 for social protection (got {:?})",
            s.chars().take(16).collect::<String>()
        ))
    }
}

impl PublishArgs {
    fn publisher(&self) -> Publisher {
        Publisher {
            org_id: self.org_id.clone(),
            org_name: self.org_name.clone(),
            org_type: self.org_type.clone(),
            country: self.country.clone(),
            sector: self.sector.clone(),
            prefix_360g: self.prefix.clone(),
        }
    }
}

/// Opens the sled log of a data directory that holds a ledger ([`open_existing_sled`]),
/// waiting up to 10 s for another handle in this process (a node just shut down) to let go
/// of its lock.
pub async fn open_log(dir: &Path) -> anyhow::Result<crate::store::SledLog> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open_existing_sled(dir) {
            Ok(log) => return Ok(log),
            Err(e) if std::time::Instant::now() < deadline && format!("{e:#}").contains("lock") => {
                tracing::debug!(error = %e, "waiting for the data directory's lock");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens a data directory's ledger for writing (waiting for its lock like [`open_log`]).
pub async fn open_node(dir: &Path) -> anyhow::Result<Node> {
    let sled = open_log(dir).await?;
    let ledger = crate::node::ledger_id(sled.db(), None)?;
    let snapshots = crate::projector::SnapshotStore::open(sled.db())?;
    Node::open_with(
        std::sync::Arc::new(sled),
        Some(snapshots),
        ledger,
        crate::writer::system_clock(),
    )
    .await
}

/// `out`, or standard output when there is none, buffered.
pub(crate) fn sink(out: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

/// Feeds every event from `from` on to `f`, in order, until `f` returns `false`. Returns the
/// log's length when the walk began (the events it covers).
pub async fn for_each_event(
    log: &dyn EventLog,
    from: u64,
    what: &str,
    mut f: impl FnMut(&SealedEvent) -> anyhow::Result<bool>,
) -> anyhow::Result<u64> {
    let head = log.head().await?;
    let bar = progress_bar(head.len.saturating_sub(from), what);
    let mut next = from;
    while next < head.len {
        let page = log.read(next, READ_EVENTS_MAX).await?;
        anyhow::ensure!(
            !page.is_empty(),
            "the log ended at {next}, before its head {}",
            head.len
        );
        for e in &page {
            if !f(e)? {
                bar.finish_and_clear();
                return Ok(head.len);
            }
        }
        next += page.len() as u64;
        bar.inc(page.len() as u64);
    }
    bar.finish_and_clear();
    Ok(head.len)
}

/// Reads and checks a whole statement file without recording anything.
pub fn check_statement_file(
    path: &Path,
    format: StatementSource,
    options: &StatementOptions,
    on_line: &mut dyn FnMut(ParsedLine) -> Result<(), StatementError>,
) -> anyhow::Result<Result<StatementSummary, StatementError>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, "read (bytes)");
    let result = parse_statement(format, bar.wrap_read(file), options, on_line);
    bar.finish_and_clear();
    Ok(result)
}

pub async fn import_statement(args: ImportStatementArgs) -> anyhow::Result<ExitCode> {
    let source = args.format.source();
    let options = StatementOptions {
        utc_offset_minutes: args.utc_offset_minutes,
    };
    let actor = Id::new(&args.actor).context("--actor")?;
    // Pass 1: the whole file is checked before anything is recorded.
    let summary = match check_statement_file(&args.file, source, &options, &mut |_| Ok(()))? {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "import-statement: REJECTED {}: {e}; nothing was recorded",
                args.file.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let node = open_node(&args.data.data).await?;
    let input = StatementInput::File(args.file.clone());
    let result = record_statement(&node, &input, &summary, (&actor, None), &options).await;
    let reconciled = match &result {
        Ok(r) => Some(reconcile_recorded(&node, r.statement_seq, args.matching.config()).await),
        Err(_) => None,
    };
    node.shutdown().await?;
    let recorded = result?;
    let statement_seq = recorded.statement_seq;
    if recorded.changed() {
        println!(
        "import-statement: statement {statement_seq} ({}, account {}, {} to {}): {} lines, {} recorded now",
        summary.source.as_str(),
        summary.account,
        china_date(summary.period_start_ms),
        china_date(summary.period_end_ms.saturating_sub(1)),
        summary.line_count,
        recorded.lines_recorded_now
    );
    }
    let rec = reconciled.context("no reconciliation")??;
    print_reconciliation(&rec);
    if let Some(path) = &args.exceptions {
        crate::reports::write_exceptions_csv(&rec, &mut sink(Some(path))?)?;
    }
    if !recorded.changed() {
        println!(
            "import-statement: statement {statement_seq} was imported already; nothing changed"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a statement's bytes are: a file (the CLI) or an uploaded body (the HTTP API).
/// [`record_statement`] reads it twice: once to check it, once to record its lines.
#[derive(Debug, Clone)]
pub enum StatementInput {
    File(PathBuf),
    Bytes(axum::body::Bytes),
}

impl StatementInput {
    /// A fresh reader from the start.
    pub fn open(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(match self {
            StatementInput::File(path) => Box::new(std::fs::File::open(path)?),
            StatementInput::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
        })
    }

    /// For messages: the file's path, or "the uploaded statement".
    pub fn name(&self) -> String {
        match self {
            StatementInput::File(path) => path.display().to_string(),
            StatementInput::Bytes(_) => "the uploaded statement".to_owned(),
        }
    }
}

/// What [`record_statement`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedStatement {
    /// The seq of the statement's `StatementImported` event: its id.
    pub statement_seq: u64,
    /// True when this call recorded the `StatementImported` event.
    pub announced: bool,
    /// Lines recorded by this call (the rest of an interrupted import, or all of them).
    pub lines_recorded_now: u64,
}

impl RecordedStatement {
    /// False when the same file had been imported completely before: nothing changed.
    pub fn changed(&self) -> bool {
        self.announced || self.lines_recorded_now > 0
    }
}

/// Records a statement file that [`check_statement_file`] (or [`parse_statement`]) accepted
/// with `summary`: the `StatementImported` event unless the same file was imported before,
/// then every line not yet recorded (the rest of it, after an interrupted import), streamed
/// from the file in submissions of [`SUBMISSION_COMMANDS_MAX`] lines. Returns the
/// statement's seq and what changed. Used by the CLI's `import-statement` and the HTTP API's
/// `POST /api/v1/staff/statements`.
pub async fn record_statement(
    node: &Node,
    input: &StatementInput,
    summary: &StatementSummary,
    (actor, token_issuer): (&Id, Option<&Id>),
    options: &StatementOptions,
) -> anyhow::Result<RecordedStatement> {
    let state = node.state();
    let mut announced = false;
    let statement_seq = match state.statement_digests.get(&summary.sha256) {
        Some(seq) => *seq,
        None => {
            let header = summary.imported();
            let outcome = node
                .writer
                .submit(Submission {
                    actor: actor.clone(),
                    token_issuer: token_issuer.cloned(),
                    idempotency_key: Some(format!("statement:{}", summary.sha256)),
                    commands: vec![Command::ImportStatement(header)],
                })
                .await?;
            // A replay (the same upload racing another) announced nothing new.
            announced = !outcome.replayed;
            outcome
                .events
                .first()
                .map(|e| e.seq())
                .context("the import recorded no event")?
        }
    };
    let state = node
        .state_at(statement_seq + 1, std::time::Duration::from_secs(30))
        .await;
    let recorded = state
        .as_ref()
        .and_then(|s| s.statements.get(&statement_seq))
        .map(|s| s.lines_recorded)
        .context("the statement is not in the projections")?;
    if recorded == summary.line_count {
        return Ok(RecordedStatement {
            statement_seq,
            announced,
            lines_recorded_now: 0,
        });
    }
    tracing::info!(
        statement_seq,
        recorded,
        lines = summary.line_count,
        "recording statement lines"
    );
    // Pass 2: stream the file again, recording the lines not yet recorded.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ParsedLine>>(4);
    let reopen = input.clone();
    let source = summary.source;
    let options = *options;
    let parser = tokio::task::spawn_blocking(move || {
        let file = reopen.open()?;
        let mut chunk = Vec::with_capacity(SUBMISSION_COMMANDS_MAX);
        let result = parse_statement(source, file, &options, &mut |line| {
            if line.line_no > recorded {
                chunk.push(line);
                if chunk.len() == SUBMISSION_COMMANDS_MAX {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(SUBMISSION_COMMANDS_MAX));
                    tx.blocking_send(full)
                        .map_err(|_| StatementError::Stopped("the import stopped".into()))?;
                }
            }
            Ok(())
        });
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        anyhow::Ok(result?)
    });
    let bar = progress_bar(summary.line_count - recorded, "record lines");
    let mut now = 0u64;
    while let Some(chunk) = rx.recv().await {
        let commands = chunk
            .into_iter()
            .map(|l| Command::RecordStatementLine(l.recorded(statement_seq)))
            .collect::<Vec<_>>();
        let n = commands.len() as u64;
        node.writer
            .submit(Submission {
                actor: actor.clone(),
                token_issuer: token_issuer.cloned(),
                idempotency_key: None,
                commands,
            })
            .await?;
        now += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    let second = parser.await.context("the statement reader")??;
    anyhow::ensure!(
        second.sha256 == summary.sha256,
        "{} changed while it was imported; {now} lines were recorded; import the new file again to finish",
        input.name()
    );
    Ok(RecordedStatement {
        statement_seq,
        announced,
        lines_recorded_now: now,
    })
}

/// Waits until the read models include everything in the log, then reconciles the statement
/// at `statement_seq`: what `import-statement` (CLI and HTTP) reports after recording.
pub async fn reconcile_recorded(
    node: &Node,
    statement_seq: u64,
    config: MatchConfig,
) -> anyhow::Result<Reconciliation> {
    let head = node.log.head().await?;
    let state = node
        .state_at(head.len, std::time::Duration::from_secs(120))
        .await
        .context("the projections did not catch up with the log")?;
    reconcile_statement(node.log.as_ref(), &state, statement_seq, config).await
}

/// Reconciles a recorded statement, streaming its lines from the log.
pub async fn reconcile_statement(
    log: &dyn EventLog,
    state: &LedgerState,
    statement_seq: u64,
    config: MatchConfig,
) -> anyhow::Result<Reconciliation> {
    let statement = state
        .statements
        .get(&statement_seq)
        .with_context(|| format!("no statement at seq {statement_seq}"))?;
    let mut r = Reconciler::new(state, statement, config);
    let mut seen = 0u64;
    let wanted = statement.lines_recorded;
    if wanted > 0 {
        for_each_event(log, statement_seq + 1, "reconcile", |e| {
            if let events::EventBody::StatementLineRecorded(l) = e.body() {
                if l.statement_seq == statement_seq {
                    r.push(l);
                    seen += 1;
                }
            }
            Ok(seen < wanted)
        })
        .await?;
    }
    Ok(r.finish())
}

fn print_reconciliation(rec: &Reconciliation) {
    let t = &rec.totals;
    let money = |sum: u128| format_minor(i128::try_from(sum).unwrap_or(i128::MAX));
    println!(
        "reconcile: statement {} ({}) {} to {}: {} lines, {}",
        rec.statement_seq,
        rec.source,
        china_date(rec.period_start_ms),
        china_date(rec.period_end_ms.saturating_sub(1)),
        rec.lines,
        rec.currency
    );
    println!(
        "  money in {} (lines: {}), money out {} (lines: {})",
        money(t.money_in_minor),
        t.lines_in,
        money(t.money_out_minor),
        t.lines_out
    );
    let milli = |sum: u128| format_milli_minor(i128::try_from(sum).unwrap_or(i128::MAX));
    let per = events::MILLI_PER_MINOR.unsigned_abs() as u128;
    if (
        t.fees_charged_milli_minor % per,
        t.fees_returned_milli_minor % per,
    ) == (0, 0)
    {
        println!(
            "  fees charged {}, fees returned {}, net fees {}; net {}",
            money(t.fees_charged_minor()),
            money(t.fees_returned_minor()),
            format_minor(t.net_fees_minor()),
            format_minor(t.net_minor())
        );
    } else {
        // Fees below the fen (WeChat Pay's 手续费): exactly, then as the channel keeps them.
        println!(
            "  fees charged {}, fees returned {}, net fees {} ({} to the fen); net {}",
            milli(t.fees_charged_milli_minor),
            milli(t.fees_returned_milli_minor),
            format_milli_minor(t.net_fees_milli_minor()),
            format_minor(t.net_fees_minor()),
            format_minor(t.net_minor())
        );
    }
    if t.fee_rounding_minor() != 0 {
        println!(
            "  the lines' fees, each to the fen, add up to {}: a rounding difference of {}",
            format_minor(t.line_fees_minor),
            format_minor(t.fee_rounding_minor())
        );
    }
    for (rule, n) in rec.matched_counts() {
        println!("  matched by {rule}: {n}");
    }
    for (reason, n) in rec.counts() {
        println!("  exception {reason}: {n}");
    }
    let open = rec.open_exceptions().count();
    println!(
        "  {} exceptions, {open} open, {} resolved",
        rec.exceptions.len(),
        rec.exceptions.len() - open
    );
}

pub async fn reconcile(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let log = open_log(&args.data.data).await?;
    let state = load_state(&log).await?;
    let rec = reconcile_statement(&log, &state, args.statement, args.matching.config()).await?;
    print_reconciliation(&rec);
    if let Some(path) = &args.exceptions {
        crate::reports::write_exceptions_csv(&rec, &mut sink(Some(path))?)?;
    }
    if let Some(path) = &args.matched {
        crate::reports::write_matched_csv(&rec, &mut sink(Some(path))?)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn load_state(log: &crate::store::SledLog) -> anyhow::Result<LedgerState> {
    let snapshots = crate::projector::SnapshotStore::open(log.db())?;
    Ok(crate::projector::load_state(log, Some(&snapshots)).await?)
}

/// The fields of `resolve-exception` (CLI flags, or the HTTP body of
/// `POST /api/v1/staff/statements/{seq}/exceptions/resolve`), before they are checked.
#[derive(Debug, Clone)]
pub struct ResolveFields {
    pub statement: u64,
    pub line: Option<u64>,
    pub entry: Option<u64>,
    pub action: ResolutionAction,
    pub link_to: Option<u64>,
    pub channel: Option<String>,
    pub pool: Option<String>,
    /// In yuan, e.g. `1234.50`.
    pub amount: Option<String>,
    pub note: String,
}

/// A field of [`ResolveFields`] that is missing or wrong. `field` is the HTTP name
/// (`link_to`); the CLI shows it as a flag (`--link-to`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ResolveFieldError {
    pub field: &'static str,
    pub reason: String,
}

impl ResolveFieldError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ResolveFieldError {
            field,
            reason: reason.into(),
        }
    }

    /// The message with the field written as the CLI flag.
    pub fn as_flag(&self) -> String {
        format!("--{}: {}", self.field.replace('_', "-"), self.reason)
    }
}

fn amount_field(s: Option<&str>) -> Result<Amount, ResolveFieldError> {
    let s = s.ok_or_else(|| ResolveFieldError::new("amount", "required for this action"))?;
    let (negative, minor) =
        parse_decimal_minor(s).map_err(|e| ResolveFieldError::new("amount", e))?;
    if negative {
        return Err(ResolveFieldError::new("amount", "must not be negative"));
    }
    Amount::new(minor).map_err(|e| ResolveFieldError::new("amount", e.to_string()))
}

/// Checks the fields of `resolve-exception` and makes the command: the one path of the CLI
/// and the HTTP API. The ledger then checks it against the statement and its exceptions.
pub fn resolve_command(f: &ResolveFields) -> Result<Command, ResolveFieldError> {
    match (f.line, f.entry) {
        (Some(_), Some(_)) => {
            return Err(ResolveFieldError::new(
                "entry",
                "give the line or the entry, not both",
            ))
        }
        (None, None) => {
            return Err(ResolveFieldError::new(
                "line",
                "give the statement line or the ledger entry the exception is about",
            ))
        }
        _ => {}
    }
    let resolution =
        match f.action {
            ResolutionAction::Explained => Resolution::Explained,
            ResolutionAction::Linked => Resolution::Linked {
                entry_seq: f
                    .link_to
                    .ok_or_else(|| ResolveFieldError::new("link_to", "required for linked"))?,
            },
            ResolutionAction::Settlement => {
                let name = f
                    .channel
                    .as_deref()
                    .ok_or_else(|| ResolveFieldError::new("channel", "required for settlement"))?;
                let channel = Channel::ALL
                    .into_iter()
                    .find(|c| c.as_str() == name)
                    .ok_or_else(|| {
                        ResolveFieldError::new("channel", format!("unknown channel {name:?}"))
                    })?;
                Resolution::Settlement {
                    channel,
                    amount_minor: amount_field(f.amount.as_deref())?,
                }
            }
            ResolutionAction::MatchingReceived => Resolution::MatchingReceived {
                pool: Id::new(f.pool.as_deref().ok_or_else(|| {
                    ResolveFieldError::new("pool", "required for matching-received")
                })?)
                .map_err(|e| ResolveFieldError::new("pool", e.to_string()))?,
                amount_minor: amount_field(f.amount.as_deref())?,
            },
        };
    Ok(Command::ResolveException(ExceptionResolved {
        statement_seq: f.statement,
        line_no: f.line,
        entry_seq: f.entry,
        resolution,
        note: Text::new(&f.note).map_err(|e| ResolveFieldError::new("note", e.to_string()))?,
    }))
}

pub async fn resolve_exception(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let fields = ResolveFields {
        statement: args.statement,
        line: args.line,
        entry: args.entry,
        action: args.action,
        link_to: args.link_to,
        channel: args.channel.clone(),
        pool: args.pool.clone(),
        amount: args.amount.clone(),
        note: args.note.clone(),
    };
    let command = resolve_command(&fields).map_err(|e| anyhow::anyhow!(e.as_flag()))?;
    let node = open_node(&args.data.data).await?;
    let actor = Id::new(&args.actor).context("--actor")?;
    let outcome = node.writer.submit(Submission::one(actor, command)).await;
    node.shutdown().await?;
    match outcome {
        Ok(o) => {
            println!(
                "resolve-exception: recorded at seq {}",
                o.last_seq().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("resolve-exception: REFUSED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Folds the log into the books up to a cutoff, calling `f` with each journal entry.
async fn books_until(
    dir: &Path,
    cutoff: Cutoff,
    mut f: impl FnMut(&projections::JournalEntry),
) -> anyhow::Result<Books> {
    let log = open_log(dir).await?;
    let mut books = Books::default();
    for_each_event(&log, 0, "journal", |e| {
        if !cutoff.includes(e.seq(), e.record().ts_ms) {
            return Ok(false);
        }
        let entry = books.apply(e)?;
        f(&entry);
        Ok(true)
    })
    .await?;
    Ok(books)
}

pub async fn trial_balance(args: TrialBalanceArgs) -> anyhow::Result<ExitCode> {
    let books = books_until(&args.data.data, args.cutoff.cutoff()?, |_| {}).await?;
    let tb = &books.trial;
    let mut out = sink(None)?;
    if args.json {
        #[derive(serde::Serialize)]
        struct Row {
            currency: String,
            account: String,
            code: &'static str,
            title: &'static str,
            class: &'static str,
            debit: String,
            credit: String,
            balance: String,
        }
        let rows: Vec<Row> = tb
            .rows()
            .into_iter()
            .map(|r| Row {
                currency: r.currency.to_string(),
                account: r.account.key(),
                code: r.account.code(),
                title: r.account.title(),
                class: r.account.class().as_str(),
                debit: format_minor(i128::from(r.debit_minor)),
                credit: format_minor(i128::from(r.credit_minor)),
                balance: format_minor(r.balance_minor),
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "through_seq": tb.position.checked_sub(1),
                "balanced": tb.is_balanced(),
                "rows": rows,
            }),
        )?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "trial balance through seq {} ({})",
            tb.position
                .checked_sub(1)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none".into()),
            china_date(tb.last_ts_ms)
        )?;
        writeln!(
            out,
            "{:<4} {:<40} {:<28} {:>16} {:>16} {:>16}",
            "cur", "account", "title", "debit", "credit", "balance"
        )?;
        for r in tb.rows() {
            writeln!(
                out,
                "{:<4} {:<40} {:<28} {:>16} {:>16} {:>16}",
                r.currency.as_str(),
                r.account.key(),
                r.account.title(),
                format_minor(i128::from(r.debit_minor)),
                format_minor(i128::from(r.credit_minor)),
                format_minor(r.balance_minor)
            )?;
        }
        for (currency, (d, c)) in tb.totals() {
            writeln!(
                out,
                "{:<4} {:<40} {:<28} {:>16} {:>16} {}",
                currency.as_str(),
                "TOTAL",
                "",
                format_minor(d as i128),
                format_minor(c as i128),
                if d == c { "balanced" } else { "NOT BALANCED" }
            )?;
        }
    }
    out.flush()?;
    Ok(if tb.is_balanced() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn account_ledger(args: AccountLedgerArgs) -> anyhow::Result<ExitCode> {
    let account = Account::parse(&args.account)?;
    let currency = events::Currency::new(&args.currency).context("--currency")?;
    let mut ledger = AccountLedger::new(account.clone(), currency);
    let mut out = sink(None)?;
    writeln!(
        out,
        "account {} {} ({}) in {}",
        account.key(),
        account.title(),
        account.class().as_str(),
        currency
    )?;
    writeln!(
        out,
        "{:>10} {:<10} {:<24} {:>14} {:>14} {:>16}  memo",
        "seq", "date", "event", "debit", "credit", "balance"
    )?;
    let mut failed = None;
    books_until(&args.data.data, args.cutoff.cutoff()?, |entry| {
        for line in ledger.push(entry) {
            let r = writeln!(
                out,
                "{:>10} {:<10} {:<24} {:>14} {:>14} {:>16}  {}",
                line.seq,
                china_date(line.ts_ms),
                line.event_type,
                format_minor(i128::from(line.debit_minor)),
                format_minor(i128::from(line.credit_minor)),
                format_minor(line.running_balance_minor),
                line.memo
            );
            if let Err(e) = r {
                failed.get_or_insert(e);
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    writeln!(
        out,
        "closing balance (debit − credit): {}",
        format_minor(ledger.balance_minor())
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn fund_statement(args: FundStatementArgs) -> anyhow::Result<ExitCode> {
    let books = books_until(&args.data.data, args.cutoff.cutoff()?, |_| {}).await?;
    let only = args
        .project
        .as_deref()
        .map(Id::new)
        .transpose()
        .context("--project")?;
    let mut rows = Vec::new();
    for p in books.ledger.projects.values() {
        if only.as_ref().is_some_and(|o| o != &p.id) {
            continue;
        }
        if let Some(fs) = books.fund_statement(&p.id) {
            rows.push(fs);
        }
    }
    anyhow::ensure!(only.is_none() || !rows.is_empty(), "no such project");
    let mut out = sink(None)?;
    if args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|f| {
                serde_json::json!({
                    "project": f.project,
                    "currency": f.currency,
                    "donations_gross": format_minor(f.donations_gross_minor),
                    "refunded": format_minor(f.refunded_minor),
                    "fees": format_minor(f.fees_minor),
                    "fees_returned": format_minor(f.fees_returned_minor),
                    "matched": format_minor(f.matched_minor),
                    "programme_cost": format_minor(f.programme_cost_minor),
                    "paid_out": format_minor(f.paid_out_minor),
                    "payable": format_minor(f.payable_minor),
                    "moved_in": format_minor(f.moved_in_minor),
                    "moved_out": format_minor(f.moved_out_minor),
                    "net_assets": format_minor(f.net_assets_minor()),
                    "balance": format_minor(f.balance_minor()),
                    "pledges_outstanding_memo": format_minor(f.pledges_outstanding_minor),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{:<12} {:>4} {:>14} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>14} {:>14}", "project", "cur", "donations", "refunded", "fees", "fees_back", "matched", "prog_cost", "paid_out", "payable", "moved_in", "moved_out", "net_assets", "balance")?;
        for f in &rows {
            writeln!(
                out,
                "{:<12} {:>4} {:>14} {:>10} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>14} {:>14}",
                f.project.as_str(),
                f.currency.as_str(),
                format_minor(f.donations_gross_minor),
                format_minor(f.refunded_minor),
                format_minor(f.fees_minor),
                format_minor(f.fees_returned_minor),
                format_minor(f.matched_minor),
                format_minor(f.programme_cost_minor),
                format_minor(f.paid_out_minor),
                format_minor(f.payable_minor),
                format_minor(f.moved_in_minor),
                format_minor(f.moved_out_minor),
                format_minor(f.net_assets_minor()),
                format_minor(f.balance_minor()),
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let project = Id::new(&args.project).context("--project")?;
    let start = crate::statement::parse_local_date(&args.from, 480)
        .map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let end = crate::statement::parse_local_date(&args.to, 480)
        .map_err(|e| anyhow::anyhow!("--to: {e}"))?
        + 86_400_000;
    let mut builder = DisclosureBuilder::new(project, start, end)?;
    let log = open_log(&args.data.data).await?;
    for_each_event(&log, 0, "report", |e| {
        builder.push(e)?;
        Ok(!builder.is_done())
    })
    .await?;
    let disclosure = builder.finish()?;
    let mut out = sink(args.out.as_deref())?;
    match args.format {
        ReportFormat::Html => disclosure.write_html(&mut out)?,
        ReportFormat::Csv => disclosure.write_csv(&mut out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn export_csv(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let log = open_log(&args.data.data).await?;
    let mut csv = JournalCsv::new(sink(args.out.as_deref())?)?;
    for_each_event(&log, 0, "export-csv", |e| {
        csv.push(e)?;
        Ok(true)
    })
    .await?;
    let rows = csv.finish()?;
    if let Some(path) = &args.out {
        eprintln!("export-csv: {rows} postings to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export_iati(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let log = open_log(&args.data.data).await?;
    let mut iati = IatiBuilder::new();
    for_each_event(&log, 0, "export-iati", |e| {
        iati.push(e)?;
        Ok(true)
    })
    .await?;
    let mut out = sink(args.out.as_deref())?;
    iati.write_xml(&args.publisher(), &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn export_360giving(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let log = open_log(&args.data.data).await?;
    let mut grants = GrantsCsv::new();
    for_each_event(&log, 0, "export-360giving", |e| {
        grants.push(e)?;
        Ok(true)
    })
    .await?;
    let mut out = sink(args.out.as_deref())?;
    let rows = grants.write(&args.publisher(), &mut out)?;
    out.flush()?;
    if let Some(path) = &args.out {
        eprintln!("export-360giving: {rows} grants to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
