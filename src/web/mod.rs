//! The public web site: server-rendered HTML pages over the same read models as the public
//! API, in Chinese (the default) and English (`?lang=en`). Everything but the in-browser
//! verification and audit works without JavaScript; the small scripts and the stylesheet are
//! built into the binary. `docs/WEB.md` is the guide.
//!
//! Privacy (invariant 6): pages are built field by field from public data only; a donor is
//! shown by the public name they chose, or as anonymous. Never `donor_ref`, never a channel
//! transaction id. Every value put into HTML goes through [`esc`].

use std::fmt::Write as _;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use events::{is_receipt_code, Id, ProjectKind};
use projections::{Donation, LedgerState, Project, RequestStatus};

use crate::http::public::public_event;
use crate::http::AppState;
use crate::views::project_figures;

pub mod trace;

use trace::{Source, Use};

/// How many events the feed page shows.
pub const FEED_EVENTS_MAX: u64 = 50;
/// The disclosure window of the "last 3 months" summary, in days.
pub const DISCLOSURE_DAYS: u64 = 91;
/// How many points the chart keeps at most (older points are merged by the step line).
pub const CHART_POINTS_MAX: usize = 2000;
/// The longest verifier key the audit page takes in its query (`?key=`) to fill in.
pub const PINNED_KEY_BYTES_MAX: usize = 512;

const STYLE_CSS: &str = include_str!("assets/style.css");
const TLOG_JS: &str = include_str!("assets/tlog.js");
const VERIFY_JS: &str = include_str!("assets/verify.js");
const AUDIT_JS: &str = include_str!("assets/audit.js");
const FEED_JS: &str = include_str!("assets/feed.js");

/// The site's routes, to be merged into the app router.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(projects_page))
        .route("/projects/{id}", get(project_page))
        .route("/receipt", get(receipt_page))
        .route("/verify", get(verify_page))
        .route("/audit", get(audit_page))
        .route("/feed", get(feed_page))
        .route("/assets/style.css", get(|| asset("text/css", STYLE_CSS)))
        .route("/assets/tlog.js", get(|| asset(JS, TLOG_JS)))
        .route("/assets/verify.js", get(|| asset(JS, VERIFY_JS)))
        .route("/assets/audit.js", get(|| asset(JS, AUDIT_JS)))
        .route("/assets/feed.js", get(|| asset(JS, FEED_JS)))
        .with_state(state)
}

const JS: &str = "text/javascript; charset=utf-8";

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Language, escaping, formatting

/// The page language: Chinese unless `lang=en`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    fn t(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
    fn code(self) -> &'static str {
        self.t("zh-CN", "en")
    }
}

/// The query string as ordered pairs; a malformed one counts as empty.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Query {
        Query(serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default())
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn lang(&self) -> Lang {
        if self.get("lang") == Some("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }
    /// The same query in the other language.
    fn switched(&self) -> String {
        let mut pairs: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(k, _)| k != "lang")
            .cloned()
            .collect();
        if self.lang() == Lang::Zh {
            pairs.push(("lang".into(), "en".into()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to `path` in `lang` (`path` may carry a query already). Escaped.
fn href(lang: Lang, path: &str) -> String {
    let url = match (lang, path.contains('?')) {
        (Lang::Zh, _) => path.to_owned(),
        (Lang::En, false) => format!("{path}?lang=en"),
        (Lang::En, true) => format!("{path}&lang=en"),
    };
    esc(&url)
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|q| q.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// Minor units (fen) as `¥1,234.56` for CNY, `1,234.56 XXX` otherwise. Two decimals.
pub fn money(minor: u64, currency: &str) -> String {
    let whole = (minor / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let amount = format!("{grouped}.{:02}", minor % 100);
    if currency == "CNY" {
        format!("¥{amount}")
    } else {
        format!("{amount} {}", esc(currency))
    }
}

/// A timestamp as a date in China Standard Time (UTC+8), the platform's zone.
pub fn date(ts_ms: u64) -> String {
    datetime_fmt(ts_ms, "%Y-%m-%d")
}

fn datetime(ts_ms: u64) -> String {
    datetime_fmt(ts_ms, "%Y-%m-%d %H:%M")
}

fn datetime_fmt(ts_ms: u64, fmt: &str) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    chrono::DateTime::from_timestamp_millis(ts_ms as i64)
        .map(|t| t.with_timezone(&tz).format(fmt).to_string())
        .unwrap_or_default()
}

fn kind_name(lang: Lang, kind: ProjectKind) -> &'static str {
    match kind {
        ProjectKind::CommunityProject => lang.t("社区项目", "Community project"),
        ProjectKind::HelpRequest => lang.t("求助", "Help request"),
        ProjectKind::MicroWish => lang.t("微心愿", "Micro-wish"),
        ProjectKind::GeneralFund => lang.t("综合基金", "General fund"),
    }
}

const KINDS: [ProjectKind; 4] = [
    ProjectKind::CommunityProject,
    ProjectKind::HelpRequest,
    ProjectKind::MicroWish,
    ProjectKind::GeneralFund,
];

fn status_name(lang: Lang, s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::Requested => lang.t("待审批", "requested"),
        RequestStatus::Approved => lang.t("已批准", "approved"),
        RequestStatus::Rejected => lang.t("已驳回", "rejected"),
        RequestStatus::Disbursed => lang.t("已拨付", "disbursed"),
    }
}

/// How a donor appears in public: their chosen public name, or anonymous.
fn donor_shown(lang: Lang, d: &Donation) -> String {
    match (&d.public_name, d.anonymous) {
        (Some(name), false) => esc(name.as_str()),
        _ => lang.t("匿名", "Anonymous").to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Page frame

struct Page {
    lang: Lang,
    status: StatusCode,
    title: String,
    /// The path of this page, for the language switch.
    path: String,
    query: String,
    body: String,
    scripts: Vec<&'static str>,
}

impl Page {
    fn new(q: &Query, path: &str, title: String) -> Page {
        Page {
            lang: q.lang(),
            status: StatusCode::OK,
            title,
            path: path.to_owned(),
            query: q.switched(),
            body: String::new(),
            scripts: Vec::new(),
        }
    }

    /// Answers `status`, with `message` (HTML, escaped already) as the page's alert.
    fn alert(&mut self, status: StatusCode, message: &str) {
        self.status = status;
        let _ = write!(self.body, r#"<p class="error" role="alert">{message}</p>"#);
    }

    fn render(self) -> Response {
        let l = self.lang;
        let switch = if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        };
        let mut html = String::with_capacity(self.body.len() + 2048);
        let _ = write!(
            html,
            r##"<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {site}</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<a class="skip" href="#main">{skip}</a>
<header>
<span class="site">{site}</span>
<nav aria-label="{navlabel}"><ul>
<li><a href="{home}">{projects}</a></li>
<li><a href="{receipt}">{where}</a></li>
<li><a href="{feed}">{feedname}</a></li>
<li><a href="{audit}">{auditname}</a></li>
<li><a href="{switch}" lang="{other_code}" hreflang="{other_code}">{other}</a></li>
</ul></nav>
</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
<footer class="muted">{footer}</footer>
"##,
            lang = l.code(),
            title = esc(&self.title),
            site = l.t("温暖二七 · 公开账本", "Warm Erqi · public ledger"),
            skip = l.t("跳到正文", "Skip to content"),
            navlabel = l.t("主导航", "Main"),
            home = href(l, "/"),
            projects = l.t("项目", "Projects"),
            receipt = href(l, "/receipt"),
            where = l.t("我的善款去向", "Where my money went"),
            feed = href(l, "/feed"),
            feedname = l.t("账本动态", "Ledger feed"),
            audit = href(l, "/audit"),
            auditname = l.t("审计整个账本", "Audit the ledger"),
            switch = esc(&switch),
            other_code = l.t("en", "zh-CN"),
            other = l.t("English", "中文"),
            body = self.body,
            footer = l.t(
                "每一笔记录都在签名的透明日志中，可独立验证。页面不显示捐赠人的个人信息。",
                "Every record is in a signed transparency log that anyone can verify. No donor's personal data is shown."
            ),
        );
        for s in self.scripts {
            let _ = writeln!(html, r#"<script src="{s}" defer></script>"#);
        }
        html.push_str("</body>\n</html>\n");
        (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response()
    }
}

fn not_found(q: &Query, path: &str, message: String) -> Response {
    let l = q.lang();
    let mut page = Page::new(q, path, l.t("未找到", "Not found").to_owned());
    page.alert(StatusCode::NOT_FOUND, &esc(&message));
    let _ = write!(
        page.body,
        r#"<p><a href="{}">{}</a></p>"#,
        href(l, "/"),
        l.t("返回项目列表", "Back to the projects")
    );
    page.render()
}

// ---------------------------------------------------------------------------------------------
// Projects

fn progress(l: Lang, p: &Project) -> String {
    // What counts towards the goal, as the goal cap of a help request counts it.
    let got = p.balances.received();
    match p.goal_minor.map(|g| g.minor()).filter(|g| *g > 0) {
        Some(goal) => {
            let pct = (u128::from(got) * 100 / u128::from(goal)).min(100) as u64;
            format!(
                r#"<progress max="100" value="{pct}" aria-label="{label}">{pct}%</progress><span class="muted">{pct}% {of} {goal}</span>"#,
                label = l.t("筹款进度", "Fundraising progress"),
                of = l.t("，目标", "of"),
                goal = money(goal, p.currency.as_str()),
            )
        }
        None => format!(
            r#"<span class="muted">{}</span>"#,
            l.t("无目标金额", "No goal")
        ),
    }
}

/// A project's money, as terms that add up: raised + matched − refunded + fees returned +
/// moved in − moved out − paid out − reserved = available (each optional term shown when it
/// is not zero).
fn figures(l: Lang, p: &Project) -> String {
    let f = project_figures(p);
    let c = f.currency.as_str();
    let goal = f
        .goal_minor
        .map(|g| money(g, c))
        .unwrap_or_else(|| l.t("无", "none").to_owned());
    let row = |label: &str, figure: &str, minor: u64| {
        format!(
            r#"<dt>{label}</dt><dd data-figure="{figure}">{}</dd>"#,
            money(minor, c)
        )
    };
    let optional = |label: &str, figure: &str, minor: u64| {
        if minor == 0 {
            String::new()
        } else {
            row(label, figure, minor) + "\n"
        }
    };
    format!(
        r#"<dl class="figures">
{raised}
{matched}
{refunded}{fees_returned}{moved_in}{moved_out}{paid}
{reserved}{frozen}{avail}
<dt>{goal_l}</dt><dd data-figure="goal">{goal}</dd>
<dt>{donors_l}</dt><dd>{donations} / {donors}</dd>
</dl>"#,
        raised = row(
            l.t("已筹（扣除手续费）", "Raised (net of fees)"),
            "raised",
            f.raised_minor
        ),
        matched = row(l.t("配捐", "Matched"), "matched", f.matched_minor),
        refunded = optional(
            l.t("已退还捐赠人", "Refunded to donors"),
            "refunded",
            f.refunded_minor
        ),
        fees_returned = optional(
            l.t("渠道退还的手续费", "Fees returned by channels"),
            "fees_returned",
            f.fees_returned_minor
        ),
        moved_in = optional(l.t("调入", "Moved in"), "moved_in", f.moved_in_minor),
        moved_out = optional(l.t("调出", "Moved out"), "moved_out", f.moved_out_minor),
        paid = row(l.t("已拨付", "Paid out"), "paid_out", f.paid_out_minor),
        reserved = optional(
            l.t(
                "已批准或待审批的拨付与调拨",
                "Reserved for approved or pending payouts and moves"
            ),
            "reserved",
            f.committed_minor + f.requested_minor
        ),
        frozen = optional(
            l.t("审核中冻结的配捐", "Matches frozen under review"),
            "frozen",
            f.frozen_minor
        ),
        avail = row(l.t("可用余额", "Available"), "available", f.available_minor),
        goal_l = l.t("目标", "Goal"),
        donors_l = l.t(
            "捐赠笔数 / 捐赠人数（含已退款）",
            "Gifts / donors (refunded included)"
        ),
        donations = f.donation_count,
        donors = f.donor_count,
    )
}

async fn projects_page(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw);
    let l = q.lang();
    let state = s.node.state();
    let asked = q.get("kind").filter(|k| !k.is_empty());
    let kind = asked.and_then(|k| KINDS.iter().copied().find(|x| x.as_str() == k));
    let mut page = Page::new(&q, "/", l.t("公益项目", "Projects").to_owned());
    if let (Some(asked), None) = (asked, kind) {
        // An unknown kind is said, not quietly read as "all".
        let kinds: Vec<&str> = KINDS.iter().map(|k| k.as_str()).collect();
        let message = format!(
            "{} {}",
            l.t("kind：没有这种项目类型", "kind: no such kind of project"),
            esc(&format!("{asked:?}; one of {}", kinds.join(", ")))
        );
        page.alert(StatusCode::BAD_REQUEST, &message);
    }
    // A page of projects: `limit` (1 to PROJECTS_PAGE_MAX) after the project `after`, in id
    // order, so a platform with tens of thousands of help requests is read page by page.
    let limit = match q.get("limit").filter(|v| !v.is_empty()) {
        None => PROJECTS_PAGE_MAX,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=PROJECTS_PAGE_MAX).contains(&n) => n,
            _ => {
                let message = format!(
                    "{} {}",
                    l.t("limit：每页项目数为 1 到", "limit: projects per page, 1 to"),
                    esc(&format!("{PROJECTS_PAGE_MAX} (got {v:?})"))
                );
                page.alert(StatusCode::BAD_REQUEST, &message);
                PROJECTS_PAGE_MAX
            }
        },
    };
    let after = match q.get("after").filter(|v| !v.is_empty()).map(Id::new) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            let message = format!(
                "{} {}",
                l.t("after：不是项目编号", "after: not a project id"),
                esc(&e.to_string())
            );
            page.alert(StatusCode::BAD_REQUEST, &message);
            None
        }
    };
    let b = &mut page.body;
    // The filter: a plain GET form (works without JavaScript) and links.
    let _ = write!(
        b,
        r#"<form class="inline" method="get" action="/">
<label for="kind">{label}</label>
<select id="kind" name="kind"><option value="">{all}</option>"#,
        label = l.t("项目类型", "Kind"),
        all = l.t("全部", "All"),
    );
    for k in KINDS {
        let _ = write!(
            b,
            r#"<option value="{v}"{sel}>{name}</option>"#,
            v = k.as_str(),
            sel = if Some(k) == kind { " selected" } else { "" },
            name = kind_name(l, k)
        );
    }
    if l == Lang::En {
        b.push_str(r#"<input type="hidden" name="lang" value="en">"#);
    }
    let _ = write!(
        b,
        r#"</select><button type="submit">{}</button></form>"#,
        l.t("筛选", "Filter")
    );
    let (listed, next) = crate::views::project_page(&state, after.as_ref(), limit, |p| {
        p.open && kind.is_none_or(|k| k == p.kind)
    });
    b.push_str(r#"<ul class="cards">"#);
    for p in &listed {
        let _ = write!(
            b,
            r#"<li><h2><a href="{link}">{name}</a></h2><p class="muted">{kind} · <code>{id}</code></p>{figures}{progress}</li>"#,
            link = href(l, &format!("/projects/{}", enc(p.id.as_str()))),
            name = esc(p.name.as_str()),
            kind = kind_name(l, p.kind),
            id = esc(p.id.as_str()),
            figures = figures(l, p),
            progress = progress(l, p),
        );
    }
    b.push_str("</ul>");
    if listed.is_empty() {
        let _ = write!(
            b,
            "<p>{}</p>",
            l.t("没有符合条件的项目。", "No projects match.")
        );
    }
    if let Some(last) = next {
        let mut next = format!("/?after={}", enc(last.as_str()));
        if let Some(k) = kind {
            next.push_str(&format!("&kind={}", k.as_str()));
        }
        if limit != PROJECTS_PAGE_MAX {
            next.push_str(&format!("&limit={limit}"));
        }
        let _ = write!(
            b,
            r#"<p><a rel="next" href="{}">{}</a></p>"#,
            href(l, &next),
            l.t("下一页 →", "Next page →")
        );
    }
    page.render()
}

/// The most projects the projects page lists at once (`limit`, its default too).
const PROJECTS_PAGE_MAX: usize = 100;

// ---------------------------------------------------------------------------------------------
// One project

/// A point where money came in or went out, for the chart and the disclosure summary.
#[derive(Debug, Clone, Copy)]
struct Flow {
    ts_ms: u64,
    in_minor: u64,
    out_minor: u64,
}

fn project_flows(state: &LedgerState, id: &Id) -> Vec<Flow> {
    let mut flows = Vec::new();
    let mut push = |ts_ms, in_minor, out_minor| {
        flows.push(Flow {
            ts_ms,
            in_minor,
            out_minor,
        })
    };
    for d in state.project_donations(id) {
        let matched = d.matched.as_ref().map(|(_, m)| *m).unwrap_or(0);
        push(
            d.ts_ms,
            d.amount_minor.saturating_sub(d.fee_minor) + matched,
            0,
        );
        // A match a review released went back to its pool then, not with a later refund.
        let reviewed = state.match_released_after_review(d.seq);
        if let Some(ts) = reviewed.and_then(|h| h.released_ts_ms) {
            push(ts, 0, matched);
        }
        let matched_at_refund = if reviewed.is_some() { 0 } else { matched };
        if let (Some(ts), Some(refund_seq)) = (d.refunded_ts_ms, d.refunded_seq) {
            // The fee the channel gave back with the refund came back to the project at
            // once; a fee given back later came in when it was recorded.
            push(
                ts,
                0,
                d.amount_minor + matched_at_refund - state.fee_returned_at_refund(d),
            );
            for (_, late) in state.fee_returns_after(refund_seq) {
                push(late.ts_ms, late.fee_returned_minor, 0);
            }
        }
    }
    let payouts = state.projects.get(id).into_iter().flat_map(|p| &p.payouts);
    for r in payouts.filter_map(|seq| state.payouts.get(seq)) {
        if let Some(ts) = r.disbursed_ts_ms {
            push(ts, 0, r.amount_minor);
        }
    }
    for m in state.moves.values() {
        if m.status != RequestStatus::Approved {
            continue;
        }
        let ts = m.decided_ts_ms.unwrap_or(m.ts_ms);
        if &m.project == id {
            push(ts, 0, m.amount_minor);
        }
        if m.to_project.as_ref() == Some(id) {
            push(ts, m.amount_minor, 0);
        }
    }
    flows.sort_by_key(|f| f.ts_ms);
    flows
}

/// An SVG step chart of cumulative money in and out, rendered here so it needs no script.
fn chart(l: Lang, flows: &[Flow], currency: &str) -> String {
    let (w, h, pad) = (600.0f64, 240.0f64, 40.0f64);
    if flows.is_empty() {
        return format!(
            "<p class=\"muted\">{}</p>",
            l.t("暂无资金流动。", "No money has moved yet.")
        );
    }
    let t0 = flows[0].ts_ms;
    let t1 = flows[flows.len() - 1].ts_ms.max(t0 + 1);
    let total_in: u64 = flows.iter().map(|f| f.in_minor).sum();
    let total_out: u64 = flows.iter().map(|f| f.out_minor).sum();
    let top = total_in.max(total_out).max(1) as f64;
    let x = |ts: u64| pad + (ts - t0) as f64 / (t1 - t0) as f64 * (w - 2.0 * pad);
    let y = |v: u64| h - pad - v as f64 / top * (h - 2.0 * pad);
    let step = flows.len().div_ceil(CHART_POINTS_MAX).max(1);
    let (mut cin, mut cout) = (0u64, 0u64);
    let (mut pin, mut pout) = (
        format!("{:.1},{:.1}", x(t0), y(0)),
        format!("{:.1},{:.1}", x(t0), y(0)),
    );
    for (i, f) in flows.iter().enumerate() {
        cin += f.in_minor;
        cout += f.out_minor;
        if i % step == 0 || i == flows.len() - 1 {
            let _ = write!(pin, " {:.1},{:.1}", x(f.ts_ms), y(cin));
            let _ = write!(pout, " {:.1},{:.1}", x(f.ts_ms), y(cout));
        }
    }
    let title = l.t("资金流入与流出（累计）", "Money in and out (cumulative)");
    format!(
        r##"<figure><svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-title chart-desc">
<title id="chart-title">{title}</title>
<desc id="chart-desc">{desc}</desc>
<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#444"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{base}" stroke="#444"/>
<polyline fill="none" stroke="#1e7d32" stroke-width="2.5" points="{pin}"/>
<polyline fill="none" stroke="#a40000" stroke-width="2.5" stroke-dasharray="6 3" points="{pout}"/>
<text x="{pad}" y="{below}" font-size="12">{d0}</text>
<text x="{right}" y="{below}" font-size="12" text-anchor="end">{d1}</text>
<text x="{pad}" y="{above}" font-size="12">{topv}</text>
</svg>
<figcaption><span class="ok">━ {inl} {tin}</span> · <span class="bad">┅ {outl} {tout}</span></figcaption></figure>"##,
        desc = esc(&format!(
            "{} {} – {}: {} {}, {} {}",
            title,
            date(t0),
            date(t1),
            l.t("流入", "in"),
            money(total_in, currency),
            l.t("流出", "out"),
            money(total_out, currency)
        )),
        base = h - pad,
        right = w - pad,
        below = h - pad + 18.0,
        above = pad - 8.0,
        d0 = date(t0),
        d1 = date(t1),
        topv = money(top as u64, currency),
        inl = l.t("流入", "In"),
        outl = l.t("流出", "Out"),
        tin = money(total_in, currency),
        tout = money(total_out, currency),
    )
}

async fn project_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = Query::parse(raw);
    let l = q.lang();
    let path = format!("/projects/{}", enc(&id));
    let state = s.node.state();
    let Some(p) = Id::new(&id).ok().and_then(|id| state.projects.get(&id)) else {
        return not_found(
            &q,
            &path,
            format!("{}{id}", l.t("没有这个项目：", "No such project: ")),
        );
    };
    let c = p.currency.as_str();
    let mut page = Page::new(&q, &path, p.name.to_string());
    let b = &mut page.body;
    let _ = write!(
        b,
        r#"<p class="muted">{kind} · <code>{id}</code>{closed}</p>{figures}{progress}"#,
        kind = kind_name(l, p.kind),
        id = esc(p.id.as_str()),
        closed = if p.open {
            ""
        } else {
            l.t(" · 已结束", " · closed")
        },
        figures = figures(l, p),
        progress = progress(l, p),
    );
    let flows = project_flows(&state, &p.id);
    let _ = write!(
        b,
        "<h2>{}</h2>{}",
        l.t("资金走势", "Money over time"),
        chart(l, &flows, c)
    );

    // Last 3 months, counted back from the ledger's latest event, as an identity built from
    // the chart's flows: the balance at the start, plus what came in, less what went out, is
    // the balance at the end; less what is set aside, what is available. Then the period's
    // gifts, matches, refunds and payouts as details.
    let now = state.last_ts_ms;
    let since = now.saturating_sub(DISCLOSURE_DAYS * 86_400_000);
    let (mut opening, mut came_in, mut went_out) = (0i128, 0u64, 0u64);
    for f in &flows {
        if f.ts_ms < since {
            opening += i128::from(f.in_minor) - i128::from(f.out_minor);
        } else {
            came_in += f.in_minor;
            went_out += f.out_minor;
        }
    }
    let closing = opening + i128::from(came_in) - i128::from(went_out);
    let available = p.balances.available().unwrap_or(0);
    let set_aside = p.balances.balance().unwrap_or(0).saturating_sub(available);
    let signed = |minor: i128| {
        let shown = money(u64::try_from(minor.unsigned_abs()).unwrap_or(u64::MAX), c);
        if minor < 0 {
            format!("−{shown}")
        } else {
            shown
        }
    };
    let (mut gifts, mut gifts_minor, mut matched_minor, mut refunds_minor) = (0u64, 0, 0, 0);
    for d in state.project_donations(&p.id) {
        if d.ts_ms >= since {
            gifts += 1;
            gifts_minor += d.amount_minor;
            // A refund or a review releases the gift's match: only matches still held
            // count.
            matched_minor += state.match_held(d).map_or(0, |(_, m)| m);
        }
        if d.refunded_ts_ms.is_some_and(|t| t >= since) {
            refunds_minor += d.amount_minor;
        }
    }
    let (mut payouts, mut payouts_minor) = (0u64, 0u64);
    for r in p.payouts.iter().filter_map(|seq| state.payouts.get(seq)) {
        if r.disbursed_ts_ms.is_some_and(|t| t >= since) {
            payouts += 1;
            payouts_minor += r.amount_minor;
        }
    }
    let _ = write!(
        b,
        r#"<section aria-labelledby="disclosure"><h2 id="disclosure">{title}</h2>
<p class="muted">{from} {since} {to} {now}</p>
<dl class="figures">
<dt>{open_l}</dt><dd data-figure="period_opening">{open}</dd>
<dt>{in_l}</dt><dd data-figure="period_in">+ {came_in}</dd>
<dt>{out_l}</dt><dd data-figure="period_out">− {went_out}</dd>
<dt>{close_l}</dt><dd data-figure="period_closing">{close}</dd>
<dt>{aside_l}</dt><dd data-figure="period_set_aside">− {aside}</dd>
<dt>{al}</dt><dd data-figure="period_available">{avail}</dd>
</dl>
<h3>{details}</h3>
<dl class="figures">
<dt>{gl}</dt><dd>{gifts} · {gm}</dd>
<dt>{ml}</dt><dd>{mm}</dd>
<dt>{rl}</dt><dd>{rm}</dd>
<dt>{pl}</dt><dd>{payouts} · {pm}</dd>
</dl></section>"#,
        title = l.t("近三个月信息公开", "Last 3 months disclosure"),
        from = l.t("统计期间：", "Period:"),
        since = date(since),
        to = l.t("至", "to"),
        now = date(now),
        open_l = l.t("期初余额", "Balance at the start"),
        open = signed(opening),
        in_l = l.t(
            "收入（捐赠扣除渠道手续费、配捐、退回的手续费、转入）",
            "Money in (gifts less channel fees, matches, fees given back, moves in)"
        ),
        came_in = money(came_in, c),
        out_l = l.t(
            "支出（退款、拨付、转出、退回资金池的配捐）",
            "Money out (refunds, payouts, moves out, matches given back to their pools)"
        ),
        went_out = money(went_out, c),
        close_l = l.t("期末余额", "Balance at the end"),
        close = signed(closing),
        aside_l = l.t(
            "已预留（已批准或待审批的拨付与转出、审核中冻结的配捐）",
            "Set aside (payouts and moves approved or requested, matches frozen under review)"
        ),
        aside = money(set_aside, c),
        details = l.t("其中", "Of which"),
        gl = l.t("收到捐赠（笔数 · 金额）", "Gifts received (count · amount)"),
        gm = money(gifts_minor, c),
        ml = l.t("配捐", "Matched"),
        mm = money(matched_minor, c),
        rl = l.t("退款", "Refunded"),
        rm = money(refunds_minor, c),
        pl = l.t("拨付（笔数 · 金额）", "Payouts disbursed (count · amount)"),
        pm = money(payouts_minor, c),
        al = l.t("期末可用余额", "Available at the end"),
        avail = money(available, c),
    );

    // Payouts.
    let _ = write!(b, "<h2>{}</h2>", l.t("拨付记录", "Payouts"));
    if p.payouts.is_empty() {
        let _ = write!(b, "<p>{}</p>", l.t("暂无拨付。", "No payouts yet."));
    } else {
        let _ = write!(
            b,
            r#"<div class="scroll"><table><caption class="muted">{cap}</caption><thead><tr><th scope="col">{date}</th><th scope="col">{purpose}</th><th scope="col">{payee}</th><th scope="col" class="num">{amount}</th><th scope="col">{status}</th><th scope="col">{doc}</th></tr></thead><tbody>"#,
            cap = l.t(
                "凭证哈希为支撑文件的 SHA-256。",
                "The document hash is the SHA-256 of the supporting document."
            ),
            date = l.t("日期", "Date"),
            purpose = l.t("用途", "Purpose"),
            payee = l.t("收款方", "Payee"),
            amount = l.t("金额", "Amount"),
            status = l.t("状态", "Status"),
            doc = l.t("凭证哈希", "Document hash"),
        );
        for r in p.payouts.iter().filter_map(|seq| state.payouts.get(seq)) {
            let _ = write!(
                b,
                r#"<tr><td>{date}</td><td>{purpose}</td><td>{payee}</td><td class="num">{amount}</td><td>{status}</td><td class="hash">{doc}</td></tr>"#,
                date = date(r.disbursed_ts_ms.unwrap_or(r.ts_ms)),
                purpose = esc(r.purpose.as_ref().map(|t| t.as_str()).unwrap_or("")),
                payee = esc(&payee_of(&state, r)),
                amount = money(r.amount_minor, c),
                status = status_name(l, r.status),
                doc = r.document_sha256.map(|h| h.to_hex()).unwrap_or_default(),
            );
        }
        b.push_str("</tbody></table></div>");
    }

    // Matching sponsors and pools.
    let pools: Vec<_> = state
        .pools
        .values()
        .filter(|pool| pool.projects.contains(&p.id))
        .collect();
    let _ = write!(b, "<h2>{}</h2>", l.t("配捐企业", "Matching sponsors"));
    if pools.is_empty() {
        let _ = write!(
            b,
            "<p>{}</p>",
            l.t("本项目没有配捐。", "No matching for this project.")
        );
    } else {
        let _ = write!(
            b,
            r#"<div class="scroll"><table><thead><tr><th scope="col">{sponsor}</th><th scope="col">{ratio}</th><th scope="col" class="num">{used}</th><th scope="col" class="num">{cap}</th><th scope="col">{usage}</th></tr></thead><tbody>"#,
            sponsor = l.t("配捐方", "Sponsor"),
            ratio = l.t("配比", "Ratio"),
            used = l.t("已使用", "Used"),
            cap = l.t("总额", "Total"),
            usage = l.t("使用率", "Usage"),
        );
        for pool in pools {
            let pct = (u128::from(pool.used()) * 100 / u128::from(pool.total_cap_minor.max(1)))
                .min(100) as u64;
            let _ = write!(
                b,
                r#"<tr><td>{sponsor}</td><td>{n}:{d}</td><td class="num">{used}</td><td class="num">{cap}</td><td><progress max="100" value="{pct}" aria-label="{label}">{pct}%</progress> {pct}%</td></tr>"#,
                sponsor = esc(pool.sponsor.as_str()),
                n = pool.ratio_numerator,
                d = pool.ratio_denominator,
                used = money(pool.used(), pool.currency.as_str()),
                cap = money(pool.total_cap_minor, pool.currency.as_str()),
                label = l.t("配捐池使用率", "Pool usage"),
            );
        }
        b.push_str("</tbody></table></div>");
    }

    // Recent donations.
    let _ = write!(b, "<h2>{}</h2>", l.t("最近的捐赠", "Recent donations"));
    if p.donations.is_empty() {
        let _ = write!(b, "<p>{}</p>", l.t("暂无捐赠。", "No donations yet."));
    } else {
        let _ = write!(
            b,
            r#"<div class="scroll"><table><thead><tr><th scope="col">{date}</th><th scope="col">{donor}</th><th scope="col" class="num">{amount}</th><th scope="col" class="num">{matched}</th></tr></thead><tbody>"#,
            date = l.t("时间", "Time"),
            donor = l.t("捐赠人", "Donor"),
            amount = l.t("金额", "Amount"),
            matched = l.t("配捐", "Matched"),
        );
        for d in p
            .recent_donations()
            .filter_map(|seq| state.donations.get(&seq))
        {
            let _ = write!(
                b,
                r#"<tr><td>{time}</td><td>{donor}{refunded}</td><td class="num">{amount}</td><td class="num">{matched}</td></tr>"#,
                time = datetime(d.ts_ms),
                donor = donor_shown(l, d),
                refunded = if d.refunded_seq.is_some() {
                    l.t("（已退款）", " (refunded)")
                } else {
                    ""
                },
                amount = money(d.amount_minor, c),
                matched = money(d.matched.as_ref().map(|(_, m)| *m).unwrap_or(0), c),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    page.render()
}

// ---------------------------------------------------------------------------------------------
// Where my money went

fn receipt_form(l: Lang, code: &str) -> String {
    format!(
        r#"<form class="inline" method="get" action="/receipt">
<label for="code">{label}</label>
<input id="code" name="code" value="{code}" inputmode="latin" autocomplete="off" spellcheck="false" pattern="[0-9A-Fa-f]{{4}}(-[0-9A-Fa-f]{{4}}){{3}}" placeholder="3F2A-91C0-5B7E-D4A8" aria-describedby="code-help">{lang}
<button type="submit">{go}</button>
</form>
<p id="code-help" class="muted">{help}</p>"#,
        label = l.t("收据码", "Receipt code"),
        code = esc(code),
        lang = if l == Lang::En {
            r#"<input type="hidden" name="lang" value="en">"#
        } else {
            ""
        },
        go = l.t("查询", "Look up"),
        help = l.t(
            "收据码是 16 位十六进制数字，每 4 位一组，例如 3F2A-91C0-5B7E-D4A8。",
            "A receipt code is 16 hex digits in groups of four, such as 3F2A-91C0-5B7E-D4A8."
        ),
    )
}

/// A payout's payee as the public sees it ([`crate::reports::masked_payee`]).
fn payee_of(state: &LedgerState, r: &projections::Request) -> String {
    let payee = r.payee.as_ref().map_or("", |t| t.as_str());
    crate::reports::public_payee(state, &r.project, payee)
}

/// One use of (part of) a lot of the receipt's gift `own`. A refund or a released match of
/// another gift can take from this lot (the refund of a gift whose own lot is spent, or
/// the fee the channel kept on it, comes from the project's oldest money): it is named as
/// that gift's, never as this donor's refund.
fn use_row(l: Lang, state: &LedgerState, own: u64, used: Use, amount: u64, c: &str) -> String {
    let what = match used {
        Use::Payout { payout_seq } => match state.payouts.get(&payout_seq) {
            Some(r) => format!(
                r#"{label} {date}: {purpose} → {payee} <span class="muted">({doc} <span class="hash">{hash}</span>)</span>"#,
                label = l.t("拨付", "Payout"),
                date = date(r.disbursed_ts_ms.unwrap_or(r.ts_ms)),
                purpose = esc(r.purpose.as_ref().map(|t| t.as_str()).unwrap_or("")),
                payee = esc(&payee_of(state, r)),
                doc = l.t("凭证", "document"),
                hash = r.document_sha256.map(|h| h.to_hex()).unwrap_or_default(),
            ),
            None => format!("{} #{payout_seq}", l.t("拨付", "Payout")),
        },
        Use::MoveOut { move_seq } => {
            let to = state
                .moves
                .get(&move_seq)
                .and_then(|m| m.to_project.clone());
            match to {
                Some(to) => format!(
                    r#"{} <a href="{}">{}</a>"#,
                    l.t("转入项目", "Moved to project"),
                    href(l, &format!("/projects/{}", enc(to.as_str()))),
                    esc(to.as_str())
                ),
                None => format!("{} #{move_seq}", l.t("转出", "Moved out")),
            }
        }
        Use::Refund { donation_seq } if donation_seq == own => {
            l.t("退还给捐赠人", "Refunded to the donor").to_owned()
        }
        Use::Refund { donation_seq } => match l {
            Lang::Zh => {
                format!("用于捐款 #{donation_seq} 的退款（其自身余额不足的部分由项目承担）")
            }
            Lang::En => format!(
                "Used for the refund of gift #{donation_seq} (the project covers what that \
                 gift's own money did not)"
            ),
        },
        Use::MatchReleased { donation_seq } if donation_seq == own => {
            l.t("退回配捐池", "Released back to the pool").to_owned()
        }
        Use::MatchReleased { donation_seq } => match l {
            Lang::Zh => format!("随捐款 #{donation_seq} 的退款退回配捐池"),
            Lang::En => format!("Released to the pool with the refund of gift #{donation_seq}"),
        },
    };
    format!(
        r#"<tr><td>{what}</td><td class="num">{}</td></tr>"#,
        money(amount, c)
    )
}

async fn receipt_page(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw);
    let l = q.lang();
    let code = q.get("code").unwrap_or("").trim().to_ascii_uppercase();
    let mut page = Page::new(
        &q,
        "/receipt",
        l.t("我的善款去向", "Where my money went").to_owned(),
    );
    page.body.push_str(&receipt_form(l, &code));
    if code.is_empty() {
        return page.render();
    }
    if !is_receipt_code(&code) {
        page.alert(
            StatusCode::BAD_REQUEST,
            l.t("收据码格式不正确。", "That is not a receipt code."),
        );
        return page.render();
    }
    let state = s.node.state();
    let Some(d) = state.donation_by_receipt(&code) else {
        page.alert(
            StatusCode::NOT_FOUND,
            l.t(
                "没有找到这个收据码的捐赠。刚捐赠的话请稍候再试。",
                "No donation has this receipt code. If you just gave, try again in a moment.",
            ),
        );
        return page.render();
    };
    let Some(p) = state.projects.get(&d.project) else {
        return not_found(&q, "/receipt", "project".into());
    };
    let c = d.currency.as_str();
    let trace = trace::trace_project(&state, &d.project);
    let b = &mut page.body;
    let matched = d.matched.as_ref();
    let _ = write!(
        b,
        r#"<h2>{title}</h2><dl class="figures">
<dt>{code_l}</dt><dd><code>{code}</code></dd>
<dt>{proj_l}</dt><dd><a href="{plink}">{pname}</a></dd>
<dt>{time_l}</dt><dd>{time}</dd>
<dt>{gross_l}</dt><dd data-figure="gross">{gross}</dd>
<dt>{fee_l}</dt><dd>{fee}</dd>
<dt>{net_l}</dt><dd data-figure="net">{net}</dd>
<dt>{match_l}</dt><dd data-figure="match">{matched}</dd>
<dt>{seq_l}</dt><dd>#{seq}</dd>
<dt>{status_l}</dt><dd data-figure="status">{status}</dd>
</dl>
<p><a href="{verify}">{verify_l}</a></p>"#,
        title = l.t("您的捐赠", "Your donation"),
        code_l = l.t("收据码", "Receipt code"),
        code = esc(&code),
        proj_l = l.t("项目", "Project"),
        plink = href(l, &format!("/projects/{}", enc(p.id.as_str()))),
        pname = esc(p.name.as_str()),
        time_l = l.t("时间", "Time"),
        time = datetime(d.ts_ms),
        gross_l = l.t("捐赠金额", "Amount given"),
        gross = money(d.amount_minor, c),
        fee_l = l.t("支付渠道手续费", "Channel fee"),
        fee = money(d.fee_minor, c),
        net_l = l.t("到账金额", "Received net"),
        net = money(d.amount_minor.saturating_sub(d.fee_minor), c),
        match_l = l.t("触发的配捐", "Match it triggered"),
        matched = match matched {
            Some((pool, m)) =>
                format!(
                    "{} ({})",
                    money(*m, c),
                    esc(&state
                        .pools
                        .get(pool)
                        .map(|p| p.sponsor.to_string())
                        .unwrap_or_else(|| pool.to_string()))
                ) + &match_review_note(l, &state, d),
            None => l.t("无", "none").to_owned(),
        },
        status_l = l.t("状态", "Status"),
        status = match (d.refunded_seq, d.refunded_ts_ms) {
            (Some(r), Some(ts)) => format!(
                "{} {} ({} #{r})",
                l.t("已于", "Refunded to the donor on"),
                datetime(ts),
                l.t("账本序号", "ledger entry"),
            ),
            _ => l.t("已到账", "Received").to_owned(),
        },
        seq_l = l.t("账本序号", "Ledger entry"),
        seq = d.seq,
        verify = href(l, &format!("/verify?code={}", enc(&code))),
        verify_l = l.t(
            "在浏览器中独立验证这笔捐赠 →",
            "Verify this donation yourself, in your browser →"
        ),
    );
    let _ = write!(
        b,
        r#"<h2>{}</h2><p class="muted">{}</p>"#,
        l.t("钱去了哪里", "Where it went"),
        l.t(
            "规则：每个项目的支出先使用该项目最早未用完的钱（先进先出），捐款与配捐一视同仁；退款先退回该笔捐款本身剩余的部分。",
            "Rule: each project's payouts use its oldest unspent money first (first in, first out), gifts and matches alike; a refund first takes back what is left of that gift itself."
        )
    );
    let lots = [
        (
            l.t("您的捐款（到账金额）", "Your gift (net)"),
            trace.lot(Source::Gift {
                donation_seq: d.seq,
            }),
        ),
        (
            l.t("配捐", "The match"),
            trace.lot(Source::Match {
                donation_seq: d.seq,
            }),
        ),
    ];
    for (label, lot) in lots {
        let Some(lot) = lot else { continue };
        let _ = write!(
            b,
            r#"<div class="scroll"><table><caption>{label}: {amount}</caption><thead><tr><th scope="col">{to}</th><th scope="col" class="num">{amt}</th></tr></thead><tbody>"#,
            amount = money(lot.amount_minor, c),
            to = l.t("去向", "Went to"),
            amt = l.t("金额", "Amount"),
        );
        for (used, amount) in &lot.uses {
            b.push_str(&use_row(l, &state, d.seq, *used, *amount, c));
        }
        if lot.held_minor > 0 || lot.uses.is_empty() {
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td class="num" data-figure="held">{}</td></tr>"#,
                l.t("仍由项目持有", "Still held by the project"),
                money(lot.held_minor, c)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    page.render()
}

// ---------------------------------------------------------------------------------------------
// Verify

/// A verifier key given in the query (a link published elsewhere can carry it), for the
/// pages that verify in the browser: the script parses and checks it, this only bounds its
/// length (an alert, and no key, beyond [`PINNED_KEY_BYTES_MAX`]).
fn pinned_key<'q>(q: &'q Query, page: &mut Page) -> &'q str {
    let l = q.lang();
    let key = q.get("key").unwrap_or("").trim();
    if key.len() <= PINNED_KEY_BYTES_MAX {
        return key;
    }
    let message = l.t(
        "验证公钥过长，上限为",
        "That verifier key is too long; the limit is",
    );
    page.alert(
        StatusCode::BAD_REQUEST,
        &format!("{message} {PINNED_KEY_BYTES_MAX}."),
    );
    // Nor is it carried into the language switch.
    let rest = q.0.iter().filter(|(k, _)| k != "key").cloned().collect();
    page.query = Query(rest).switched();
    ""
}

async fn verify_page(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw);
    let l = q.lang();
    let code = q.get("code").unwrap_or("").trim().to_ascii_uppercase();
    let mut page = Page::new(&q, "/verify", l.t("独立验证", "Verify").to_owned());
    if !is_receipt_code(&code) {
        page.body.push_str(
            &receipt_form(l, &code).replace(r#"action="/receipt""#, r#"action="/verify""#),
        );
        if !code.is_empty() {
            page.alert(
                StatusCode::BAD_REQUEST,
                l.t("收据码格式不正确。", "That is not a receipt code."),
            );
        }
        return page.render();
    }
    let key = pinned_key(&q, &mut page);
    let _ = write!(
        page.body,
        r#"<div id="verify" data-code="{code}" data-key="{key}"{hooks}>
<p>{intro}</p>
<p class="muted">{trust}</p>
<p>{code_l}: <code>{code}</code></p>
<noscript><p class="error">{nojs}</p></noscript>
<ol id="steps" class="steps" aria-live="polite"></ol>
<p>{result_l}: <output id="result" aria-live="polite">{waiting}</output></p>
<p id="verdict" role="status"></p>
</div>"#,
        code = esc(&code),
        key = esc(key),
        // Only a server started for tests lets the page's query tamper with a proof.
        hooks = if s.test_hooks {
            r#" data-test-hooks="1""#
        } else {
            ""
        },
        trust = l.t(
            "信任的起点是验证公钥：请与平台在别处公布的公钥核对，或在本页地址后加上 &key=<那个公钥> 再打开。",
            "The trust anchor is the verifier key: compare it with the one the platform publishes elsewhere, or open this page with &key=<that key> added to its address."
        ),
        intro = l.t(
            "本页在您的浏览器中取得最新的签名检查点、验证公钥和这笔捐赠的包含证明，并用 WebCrypto（SHA-256、Ed25519）逐步检查，不依赖服务器的结论。",
            "This page fetches the latest signed checkpoint, the verifier key and this donation's inclusion proof, and checks them in your browser with WebCrypto (SHA-256, Ed25519), step by step. It does not take the server's word for it."
        ),
        code_l = l.t("收据码", "Receipt code"),
        nojs = l.t(
            "验证需要启用 JavaScript。也可以用命令行：ledger verify。",
            "Verification needs JavaScript. You can also use the command line: ledger verify."
        ),
        result_l = l.t("结果", "Result"),
        waiting = l.t("等待脚本", "waiting for the script"),
    );
    page.scripts.push("/assets/tlog.js");
    page.scripts.push("/assets/verify.js");
    page.render()
}

// ---------------------------------------------------------------------------------------------
// Audit the whole ledger

async fn audit_page(RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw);
    let l = q.lang();
    let mut page = Page::new(
        &q,
        "/audit",
        l.t("审计整个账本", "Audit the whole ledger").to_owned(),
    );
    let key = pinned_key(&q, &mut page);
    // The status line changes with every bundle, so it is not a live region (a screen reader
    // would read it hundreds of times); the steps and the result are.
    let _ = write!(
        page.body,
        r#"<div id="audit">
<p>{intro}</p>
<p class="muted">{trust}</p>
<noscript><p class="error">{nojs}</p></noscript>
<p><label for="pinned-key">{key_l}</label>
<input id="pinned-key" name="key" value="{key}" maxlength="{key_max}" autocomplete="off" spellcheck="false" aria-describedby="pinned-key-help">
<span id="pinned-key-help" class="muted">{key_help}</span></p>
<p><button id="start" type="button" disabled>{start}</button></p>
<p><label for="audit-progress">{progress_l}</label>
<progress id="audit-progress" max="1" value="0"></progress></p>
<p id="audit-status">{not_started}</p>
<ol id="steps" class="steps" aria-live="polite"></ol>
<p>{result_l}: <output id="result" aria-live="polite">{waiting}</output></p>
<p id="verdict" role="status"></p>
</div>"#,
        intro = l.t(
            "本页把整个账本逐条下载到您的浏览器，并在浏览器中检查：每个事件的序号、它与前一事件的哈希链接、它的 SHA-256 哈希（按 RFC 8785 规范字节计算），以及由全部事件算出的默克尔根是否等于已签名检查点中的根。不依赖服务器的结论。",
            "This page streams the whole ledger into your browser and checks it there: every event's position, its hash link to the event before it, its SHA-256 hash over its RFC 8785 canonical bytes, and that the Merkle root of all the events is the root of the signed checkpoint. It does not take the server's word for any of it."
        ),
        trust = l.t(
            "信任的起点是验证公钥：请与平台在别处公布的公钥核对，或把那个公钥填在下面。",
            "The trust anchor is the verifier key: compare it with the one the platform publishes elsewhere, or enter that one below."
        ),
        key_l = l.t("验证公钥（可选）", "Verifier key (optional)"),
        key = esc(key),
        key_max = PINNED_KEY_BYTES_MAX,
        key_help = l.t(
            "留空则使用本站 /log/key 提供的公钥。",
            "Left empty, the page uses the key this site serves at /log/key."
        ),
        nojs = esc(l.t(
            "审计在浏览器中进行，需要启用 JavaScript。也可以用命令行：ledger verify --url 本站地址 --key 验证公钥。",
            "The audit runs in your browser and needs JavaScript. You can also use the command line: ledger verify --url <this site> --key <verifier key>."
        )),
        start = l.t("开始审计", "Start the audit"),
        progress_l = l.t("进度", "Progress"),
        not_started = l.t("尚未开始。", "Not started."),
        result_l = l.t("结果", "Result"),
        waiting = l.t("等待开始", "waiting to start"),
    );
    page.scripts.push("/assets/tlog.js");
    page.scripts.push("/assets/audit.js");
    page.render()
}

// ---------------------------------------------------------------------------------------------
// Feed

/// Every event type with its label, Chinese and English: the feed page's names, also handed
/// to its script (which listens for these types on the live stream).
/// What became of a gift's match, for its receipt: under review, released after review,
/// released with the refund, or nothing (it stands).
fn match_review_note(l: Lang, state: &LedgerState, d: &projections::Donation) -> String {
    if let Some(hold) = state.match_frozen(d.seq) {
        format!(
            "{} (#{})",
            l.t(
                "，审核中：配捐暂时冻结，项目暂不能使用",
                "; under review: the match is frozen and the project cannot spend it yet"
            ),
            hold.frozen_seq
        )
    } else if let Some(hold) = state.match_released_after_review(d.seq) {
        format!(
            "{} {} (#{})",
            l.t(
                "，经审核已退回配捐池：",
                "; released back to the pool after review on"
            ),
            hold.released_ts_ms.map(datetime).unwrap_or_default(),
            hold.released_seq.unwrap_or_default()
        )
    } else if d.refunded_seq.is_some() {
        l.t("，已退回配捐池", "; released back to the pool")
            .to_owned()
    } else {
        String::new()
    }
}

const EVENT_TYPE_LABELS: [(&str, &str, &str); 26] = [
    ("project_opened", "项目开启", "Project opened"),
    ("project_closed", "项目结束", "Project closed"),
    ("donation_received", "收到捐赠", "Donation received"),
    ("donation_refunded", "捐赠退款", "Donation refunded"),
    (
        "refund_fee_returned",
        "退款手续费退回",
        "Fee returned on a refund",
    ),
    ("pledge_made", "认捐", "Pledge made"),
    ("pledge_cancelled", "认捐取消", "Pledge cancelled"),
    (
        "matching_pool_committed",
        "配捐池设立",
        "Matching pool committed",
    ),
    ("matching_pool_closed", "配捐池关闭", "Matching pool closed"),
    ("match_allocated", "配捐", "Match allocated"),
    ("match_released", "配捐退回", "Match released"),
    ("match_frozen", "配捐冻结审核", "Match frozen for review"),
    ("match_unfrozen", "配捐审核通过", "Match cleared by review"),
    (
        "match_revoked",
        "配捐经审核退回",
        "Match released after review",
    ),
    ("payout_requested", "申请拨付", "Payout requested"),
    ("payout_approved", "批准拨付", "Payout approved"),
    ("payout_rejected", "驳回拨付", "Payout rejected"),
    ("payout_disbursed", "完成拨付", "Payout disbursed"),
    ("move_requested", "申请调拨", "Move requested"),
    ("move_approved", "批准调拨", "Move approved"),
    ("move_rejected", "驳回调拨", "Move rejected"),
    ("statement_imported", "导入对账单", "Statement imported"),
    (
        "statement_line_recorded",
        "对账单明细",
        "Statement line recorded",
    ),
    ("exception_resolved", "对账差异处理", "Exception resolved"),
    (
        "staff_token_issued",
        "授予工作人员权限",
        "Staff token issued",
    ),
    (
        "staff_token_revoked",
        "撤销工作人员权限",
        "Staff token revoked",
    ),
];

fn event_type_name(l: Lang, t: &str) -> &str {
    EVENT_TYPE_LABELS
        .iter()
        .find(|(name, _, _)| *name == t)
        .map(|&(_, zh, en)| l.t(zh, en))
        .unwrap_or(t)
}

/// The labels of every event type in `l`, as the JSON object the feed's script reads.
fn event_type_labels_json(l: Lang) -> String {
    let labels: serde_json::Map<String, serde_json::Value> = EVENT_TYPE_LABELS
        .iter()
        .map(|&(name, zh, en)| (name.to_owned(), l.t(zh, en).into()))
        .collect();
    serde_json::Value::Object(labels).to_string()
}

async fn feed_page(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = Query::parse(raw);
    let l = q.lang();
    let mut page = Page::new(&q, "/feed", l.t("账本动态", "Ledger feed").to_owned());
    // The live stream continues from the first seq after the rows written here, so an
    // event appended between this read and the script's connection is not missed.
    let mut next = None;
    let events = match s.node.log.head().await {
        Ok(head) => {
            let from = head.len.saturating_sub(FEED_EVENTS_MAX);
            let events = s
                .node
                .log
                .read(from, FEED_EVENTS_MAX as usize)
                .await
                .unwrap_or_default();
            next = Some(events.last().map_or(from, |e| e.seq() + 1));
            events
        }
        Err(e) => {
            tracing::error!(error = %e, "the feed page cannot read the log head");
            Vec::new()
        }
    };
    let _ = write!(
        page.body,
        r#"<p class="muted">{intro} <span id="live" aria-live="polite"></span></p><ol id="feed" reversed data-types="{types}"{from}>"#,
        intro = l.t(
            "最新的账本事件，新的在上。启用 JavaScript 时自动更新。",
            "The latest ledger events, newest first. Updates live when JavaScript is on."
        ),
        types = esc(&event_type_labels_json(l)),
        from = next
            .map(|n| format!(r#" data-from="{n}""#))
            .unwrap_or_default(),
    );
    let state = s.node.state();
    for e in events.iter().rev() {
        let v = public_event(e, &state);
        let d = &v.data;
        let _ = write!(
            page.body,
            r#"<li>#{seq} {time} <strong>{ty}</strong>"#,
            seq = v.seq,
            time = datetime(v.ts_ms),
            ty = esc(event_type_name(l, &v.event_type)),
        );
        if let Some(project) = d.get("project").and_then(|p| p.as_str()) {
            let _ = write!(
                page.body,
                r#" · <a href="{}">{}</a>"#,
                href(l, &format!("/projects/{}", enc(project))),
                esc(project)
            );
        }
        if let Some(amount) = d.get("amount_minor").and_then(|a| a.as_u64()) {
            let cur = d.get("currency").and_then(|c| c.as_str()).unwrap_or("");
            let _ = write!(page.body, " · {}", money(amount, cur));
        }
        let _ = write!(
            page.body,
            r#" <span class="hash muted">{}</span></li>"#,
            esc(&v.hash[..v.hash.len().min(12)])
        );
    }
    page.body.push_str("</ol>");
    page.scripts.push("/assets/feed.js");
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn money_groups_thousands_with_two_decimals() {
        assert_eq!(money(0, "CNY"), "¥0.00");
        assert_eq!(money(5, "CNY"), "¥0.05");
        assert_eq!(money(123_456_789, "CNY"), "¥1,234,567.89");
        assert_eq!(money(100_000, "USD"), "1,000.00 USD");
    }

    #[test]
    fn the_language_switch_keeps_the_rest_of_the_query() {
        let q = Query::parse(Some("kind=micro_wish&lang=en".into()));
        assert_eq!(q.lang(), Lang::En);
        assert_eq!(q.switched(), "kind=micro_wish");
        let q = Query::parse(Some("code=A%26B".into()));
        assert_eq!(q.switched(), "code=A%26B&lang=en");
    }
}
