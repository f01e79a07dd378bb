//! ISO 20022 camt.053 (BankToCustomerStatement) XML, read as a stream with quick-xml so a
//! large statement never sits in memory. Only booked entries (`Sts` `BOOK`) become lines;
//! pending and information entries are skipped. Namespaces and versions (camt.053.001.02
//! to .001.13) are read alike: elements are matched by local name.

use std::io::BufRead;

use events::{Amount, Currency, StatementLineKind};
use quick_xml::events::Event;

use super::{
    clean_reference, parse_decimal_minor, parse_local_date, ParsedLine, Partial, PeriodTracker,
    StatementError, StatementOptions, TrackedReader, FIELD_BYTES_MAX,
};

/// The deepest element nesting a statement may have (camt.053 needs about 12): deeper
/// documents are refused before they cost anything.
pub const XML_DEPTH_MAX: usize = 64;

type OnLine<'a> = &'a mut dyn FnMut(ParsedLine) -> Result<(), StatementError>;

#[derive(Default)]
struct Entry {
    line: u64,
    column: u64,
    amount: Option<(Amount, Currency)>,
    credit: Option<bool>,
    booked: Option<bool>,
    booked_ms: Option<u64>,
    end_to_end: Option<String>,
    tx_svc_ref: Option<String>,
    svc_ref: Option<String>,
    ntry_ref: Option<String>,
}

fn parse_datetime(s: &str, offset: i32) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return u64::try_from(dt.timestamp_millis()).map_err(|_| "a time before 1970".into());
    }
    if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        let ms = naive.and_utc().timestamp_millis() - i64::from(offset) * 60_000;
        return u64::try_from(ms).map_err(|_| "a time before 1970".into());
    }
    Err(format!(
        "expected an ISO 8601 date-time (got {:?})",
        t.chars().take(40).collect::<String>()
    ))
}

pub(super) fn parse<R: BufRead>(
    input: &mut TrackedReader<R>,
    options: &StatementOptions,
    on_line: OnLine<'_>,
) -> Result<Partial, StatementError> {
    let offset = options.utc_offset_minutes;
    let mut xml = quick_xml::Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    // Where the element whose text is being read started.
    let mut text_at = (1, 1);
    let mut amount_ccy: Option<String> = None;
    let mut entry: Option<Entry> = None;
    let mut account: Option<String> = None;
    let mut currency: Option<Currency> = None;
    let mut from_ms: Option<u64> = None;
    let mut to_ms: Option<u64> = None;
    let mut statements = 0u32;
    let mut line_count = 0u64;
    let mut period = PeriodTracker::default();
    let mut saw_root = false;
    loop {
        let before = xml.get_ref().position();
        let event = xml.read_event_into(&mut buf).map_err(|e| {
            let (line, column) = xml.get_ref().position();
            StatementError::at(line, column, "xml", e.to_string())
        })?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if !saw_root {
                    if name != "Document" {
                        return Err(StatementError::at(
                            before.0,
                            before.1,
                            "Document",
                            format!("not a camt.053 document (the root is <{name}>)"),
                        ));
                    }
                    saw_root = true;
                }
                if name == "Stmt" {
                    statements += 1;
                    if statements > 1 {
                        return Err(StatementError::at(
                            before.0,
                            before.1,
                            "Stmt",
                            "import one statement per file",
                        ));
                    }
                }
                if name == "Ntry" && path.last().map(String::as_str) == Some("Stmt") {
                    entry = Some(Entry {
                        line: before.0,
                        column: before.1,
                        ..Entry::default()
                    });
                }
                if path.len() >= XML_DEPTH_MAX {
                    return Err(StatementError::at(
                        before.0,
                        before.1,
                        "xml",
                        format!("elements nested deeper than {XML_DEPTH_MAX}"),
                    ));
                }
                if name == "Amt" {
                    amount_ccy = e
                        .try_get_attribute("Ccy")
                        .ok()
                        .flatten()
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                }
                path.push(name);
                text.clear();
                text_at = xml.get_ref().position();
            }
            Event::Empty(_) => {}
            Event::Text(t) => {
                let s = t
                    .decode()
                    .map_err(|e| StatementError::at(text_at.0, text_at.1, "xml", e.to_string()))?;
                text.push_str(&s);
                if text.len() > FIELD_BYTES_MAX {
                    return Err(StatementError::at(
                        text_at.0,
                        text_at.1,
                        path.last().map(String::as_str).unwrap_or("xml"),
                        format!("longer than {FIELD_BYTES_MAX} bytes"),
                    ));
                }
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match r.decode().as_deref() {
                        Ok("amp") => Some('&'),
                        Ok("lt") => Some('<'),
                        Ok("gt") => Some('>'),
                        Ok("quot") => Some('"'),
                        Ok("apos") => Some('\''),
                        _ => None,
                    },
                };
                let c = resolved.ok_or_else(|| {
                    StatementError::at(before.0, before.1, "xml", "an unknown entity reference")
                })?;
                text.push(c);
            }
            Event::End(_) => {
                let at = |field: &str, reason: String| {
                    StatementError::at(text_at.0, text_at.1, field, reason)
                };
                let value = text.trim().to_owned();
                let n = path.len();
                let ends = |suffix: &[&str]| {
                    n >= suffix.len()
                        && path[n - suffix.len()..]
                            .iter()
                            .zip(suffix)
                            .all(|(a, b)| a == b)
                };
                if entry.is_none() && path.iter().any(|p| p == "Stmt") {
                    if account.is_none()
                        && (ends(&["Acct", "Id", "IBAN"]) || ends(&["Acct", "Id", "Othr", "Id"]))
                    {
                        account = Some(clean_reference(&value).map_err(|r| at("Acct/Id", r))?);
                    } else if ends(&["Acct", "Ccy"]) {
                        currency =
                            Some(Currency::new(&value).map_err(|e| at("Acct/Ccy", e.to_string()))?);
                    } else if ends(&["FrToDt", "FrDtTm"]) {
                        from_ms =
                            Some(parse_datetime(&value, offset).map_err(|r| at("FrDtTm", r))?);
                    } else if ends(&["FrToDt", "ToDtTm"]) {
                        to_ms = Some(parse_datetime(&value, offset).map_err(|r| at("ToDtTm", r))?);
                    }
                }
                if let Some(en) = entry.as_mut() {
                    let last = path.last().map(String::as_str).unwrap_or("");
                    let parent = if n >= 2 { path[n - 2].as_str() } else { "" };
                    match (parent, last) {
                        ("Ntry", "Amt") => {
                            let (negative, minor) =
                                parse_decimal_minor(&value).map_err(|r| at("Amt", r))?;
                            if negative {
                                return Err(at("Amt", "an entry amount is not negative; CdtDbtInd gives the direction".into()));
                            }
                            let amount = Amount::new(minor)
                                .map_err(|_| at("Amt", "the amount must be more than 0".into()))?;
                            let ccy = amount_ccy
                                .as_deref()
                                .ok_or_else(|| at("Amt", "the Ccy attribute is missing".into()))
                                .and_then(|c| {
                                    Currency::new(c).map_err(|e| at("Amt/@Ccy", e.to_string()))
                                })?;
                            // One currency per statement: the account's, or the first entry's.
                            let expected = *currency.get_or_insert(ccy);
                            if ccy != expected {
                                return Err(at(
                                    "Amt/@Ccy",
                                    format!("the entry is in {ccy}, the statement in {expected}"),
                                ));
                            }
                            en.amount = Some((amount, ccy));
                        }
                        ("Ntry", "CdtDbtInd") => {
                            en.credit = Some(match value.as_str() {
                                "CRDT" => true,
                                "DBIT" => false,
                                other => {
                                    return Err(at(
                                        "CdtDbtInd",
                                        format!("expected CRDT or DBIT (got {other:?})"),
                                    ))
                                }
                            });
                        }
                        ("Ntry", "Sts") | ("Sts", "Cd") if !value.is_empty() => {
                            en.booked = Some(value == "BOOK");
                        }
                        ("BookgDt", "Dt") => {
                            en.booked_ms = Some(
                                parse_local_date(&value, offset)
                                    .map_err(|r| at("BookgDt/Dt", r))?,
                            );
                        }
                        ("BookgDt", "DtTm") => {
                            en.booked_ms = Some(
                                parse_datetime(&value, offset)
                                    .map_err(|r| at("BookgDt/DtTm", r))?,
                            );
                        }
                        ("Ntry", "AcctSvcrRef") => en.svc_ref = Some(value.clone()),
                        ("Ntry", "NtryRef") => en.ntry_ref = Some(value.clone()),
                        ("Refs", "EndToEndId") if en.end_to_end.is_none() => {
                            en.end_to_end = Some(value.clone())
                        }
                        ("Refs", "AcctSvcrRef") if en.tx_svc_ref.is_none() => {
                            en.tx_svc_ref = Some(value.clone())
                        }
                        _ => {}
                    }
                }
                let closed = path.pop();
                if closed.as_deref() == Some("Ntry")
                    && path.last().map(String::as_str) == Some("Stmt")
                {
                    if let Some(en) = entry.take() {
                        if let Some(line) = finish_entry(en, line_count + 1)? {
                            period.see(line.booked_ms);
                            line_count += 1;
                            on_line(line)?;
                        }
                    }
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root || statements == 0 {
        let (line, column) = xml.get_ref().position();
        return Err(StatementError::at(
            line,
            column,
            "Stmt",
            "no BkToCstmrStmt/Stmt element",
        ));
    }
    let period = match (from_ms, to_ms) {
        (Some(f), Some(t)) if f < t => (f, t),
        _ => period.days(offset).ok_or_else(|| {
            StatementError::at(
                1,
                1,
                "FrToDt",
                "the statement has no period and no booked entries",
            )
        })?,
    };
    Ok(Partial::new(account, currency, period, line_count))
}

fn finish_entry(en: Entry, line_no: u64) -> Result<Option<ParsedLine>, StatementError> {
    let missing =
        |field: &str| StatementError::at(en.line, en.column, field, "missing from this Ntry");
    if en.booked == Some(false) {
        return Ok(None);
    }
    let (amount, currency) = en.amount.ok_or_else(|| missing("Amt"))?;
    let credit = en.credit.ok_or_else(|| missing("CdtDbtInd"))?;
    let booked_ms = en.booked_ms.ok_or_else(|| missing("BookgDt"))?;
    let reference = [en.end_to_end, en.tx_svc_ref, en.svc_ref, en.ntry_ref]
        .into_iter()
        .flatten()
        .find(|r| !r.is_empty() && r != "NOTPROVIDED")
        .ok_or_else(|| missing("EndToEndId or AcctSvcrRef"))?;
    let reference = clean_reference(&reference)
        .map_err(|r| StatementError::at(en.line, en.column, "EndToEndId", r))?;
    Ok(Some(ParsedLine {
        line_no,
        file_line: en.line,
        kind: if credit {
            StatementLineKind::Credit
        } else {
            StatementLineKind::Debit
        },
        reference,
        original_reference: None,
        booked_ms,
        amount_minor: amount,
        fee_minor: 0,
        fee_milli_minor: None,
        currency,
    }))
}
