//! Reading statements from payment channels and banks: a WeChat Pay style daily bill, an
//! Alipay style business detail bill, a bank statement CSV and ISO 20022 camt.053 XML.
//!
//! Parsing streams: lines are handed to a callback one at a time while the file's SHA-256
//! is computed on the way, so a million-line bill needs no more memory than one line. The
//! first malformed value stops the parse with its line and column; callers validate a whole
//! file (a first pass that records nothing) before they record anything. The exact columns
//! and rules are in docs/FINANCE.md.

use std::io::{BufRead, Read};

use events::{
    Amount, Currency, Hash, StatementImported, StatementLineKind, StatementLineRecorded,
    StatementSource, AMOUNT_MINOR_MAX,
};
use sha2::{Digest, Sha256};

mod camt053;
mod csv_bills;
pub mod synth;

/// The longest line or value read from a statement, in bytes.
pub const FIELD_BYTES_MAX: usize = 4096;

/// One statement line, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    /// 1-based number of the entry within the statement (what the ledger records).
    pub line_no: u64,
    /// The line of the file where the entry starts, for messages.
    pub file_line: u64,
    pub kind: StatementLineKind,
    pub reference: String,
    pub original_reference: Option<String>,
    pub booked_ms: u64,
    /// The gross amount; `kind` gives its direction.
    pub amount_minor: Amount,
    /// The channel's fee: positive when charged, negative when given back (the sign of
    /// [`StatementLineRecorded::fee_minor`], whatever sign the channel prints it with),
    /// rounded to whole minor units when `fee_milli_minor` holds it exactly.
    pub fee_minor: i64,
    /// The fee in thousandths of a minor unit when the channel printed it finer than the
    /// minor unit ([`StatementLineRecorded::fee_milli_minor`]).
    pub fee_milli_minor: Option<i64>,
    pub currency: Currency,
}

impl ParsedLine {
    /// The line as the ledger records it, in statement `statement_seq`.
    pub fn recorded(self, statement_seq: u64) -> StatementLineRecorded {
        StatementLineRecorded {
            statement_seq,
            line_no: self.line_no,
            kind: self.kind,
            reference: self.reference,
            original_reference: self.original_reference,
            booked_ms: self.booked_ms,
            amount_minor: self.amount_minor,
            fee_minor: self.fee_minor,
            fee_milli_minor: self.fee_milli_minor,
            currency: self.currency,
        }
    }
}

/// What the whole file said: known once it has been read to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSummary {
    pub source: StatementSource,
    pub sha256: Hash,
    pub bytes: u64,
    pub account: String,
    pub currency: Currency,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub line_count: u64,
}

impl StatementSummary {
    /// The statement's header event, as `import-statement` records it.
    pub fn imported(&self) -> StatementImported {
        StatementImported {
            statement_sha256: self.sha256,
            source: self.source,
            account: self.account.clone(),
            currency: self.currency,
            period_start_ms: self.period_start_ms,
            period_end_ms: self.period_end_ms,
            line_count: self.line_count,
        }
    }
}

/// How to read times that carry no zone.
#[derive(Debug, Clone, Copy)]
pub struct StatementOptions {
    /// Minutes east of UTC of the statement's local time; 480 (China) by default.
    pub utc_offset_minutes: i32,
}

impl Default for StatementOptions {
    fn default() -> Self {
        StatementOptions {
            utc_offset_minutes: 480,
        }
    }
}

/// A statement that cannot be taken in. Nothing has been recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("line {line}, column {column}: {field}: {reason}")]
    Malformed {
        line: u64,
        column: u64,
        field: String,
        reason: String,
    },
    #[error("reading the statement: {0}")]
    Io(String),
    /// The consumer of the lines stopped the parse.
    #[error("{0}")]
    Stopped(String),
}

impl StatementError {
    pub(crate) fn at(line: u64, column: u64, field: &str, reason: impl Into<String>) -> Self {
        StatementError::Malformed {
            line,
            column,
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads a statement in `format`, handing each line to `on_line` in order, and returns the
/// summary once the whole file has been read and checked.
pub fn parse_statement<R: Read>(
    format: StatementSource,
    reader: R,
    options: &StatementOptions,
    on_line: &mut dyn FnMut(ParsedLine) -> Result<(), StatementError>,
) -> Result<StatementSummary, StatementError> {
    let mut input = TrackedReader::new(std::io::BufReader::with_capacity(1 << 16, reader));
    let partial = match format {
        StatementSource::Wechat => csv_bills::parse_wechat(&mut input, options, on_line)?,
        StatementSource::Alipay => csv_bills::parse_alipay(&mut input, options, on_line)?,
        StatementSource::BankCsv => csv_bills::parse_bank(&mut input, options, on_line)?,
        StatementSource::Camt053 => camt053::parse(&mut input, options, on_line)?,
    };
    // Whatever follows the last line still belongs to the file's digest.
    std::io::copy(&mut input, &mut std::io::sink())
        .map_err(|e| StatementError::Io(e.to_string()))?;
    let (sha256, bytes) = input.finish();
    Ok(StatementSummary {
        source: format,
        sha256,
        bytes,
        account: partial.account,
        currency: partial.currency,
        period_start_ms: partial.period_start_ms,
        period_end_ms: partial.period_end_ms,
        line_count: partial.line_count,
    })
}

/// What a format parser knows at the end; the digest is added by [`parse_statement`].
pub(crate) struct Partial {
    pub account: String,
    pub currency: Currency,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub line_count: u64,
}

impl Partial {
    /// The summary of `line_count` lines over `period` (start and end, ms); a statement
    /// that names no account is "unknown", one that names no currency CNY.
    pub(crate) fn new(
        account: Option<String>,
        currency: Option<Currency>,
        (period_start_ms, period_end_ms): (u64, u64),
        line_count: u64,
    ) -> Partial {
        Partial {
            account: account.unwrap_or_else(|| "unknown".into()),
            currency: currency.unwrap_or(Currency::CNY),
            period_start_ms,
            period_end_ms,
            line_count,
        }
    }
}

/// A reader that hashes every byte consumed and knows the line and column it is at.
pub(crate) struct TrackedReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    line: u64,
    column: u64,
}

impl<R: BufRead> TrackedReader<R> {
    fn new(inner: R) -> Self {
        TrackedReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            line: 1,
            column: 1,
        }
    }
    /// The 1-based line and column (in bytes) of the next byte to be read.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.line, self.column)
    }
    fn finish(self) -> (Hash, u64) {
        (Hash(self.hasher.finalize().into()), self.bytes)
    }
}

impl<R: BufRead> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for TrackedReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let taken = &buf[..amt.min(buf.len())];
            self.hasher.update(taken);
            self.bytes += taken.len() as u64;
            for &b in taken {
                if b == b'\n' {
                    self.line += 1;
                    self.column = 1;
                } else if b & 0xC0 != 0x80 {
                    // Count characters, not UTF-8 continuation bytes.
                    self.column += 1;
                }
            }
        }
        self.inner.consume(amt);
    }
}

/// Parses a decimal yuan (or other major unit) string such as `1.00`, `12.5` or `-0.01`
/// into a sign and integer minor units, exactly: no floats; at most two decimals; an
/// optional leading `` ` `` (WeChat bills) and surrounding spaces are ignored.
pub fn parse_decimal_minor(s: &str) -> Result<(bool, u64), String> {
    parse_decimal_units(s, 2)
}

/// [`parse_decimal_minor`] for a value printed with up to `decimals` places (2 to 9): the
/// result counts units of 10^−`decimals` of the major unit, at most 2^53 − 1 of them.
/// WeChat Pay's 手续费 has five places: `0.05940` is 5,940 thousandths of a fen.
pub fn parse_decimal_units(s: &str, decimals: usize) -> Result<(bool, u64), String> {
    assert!((2..=9).contains(&decimals), "2 to 9 decimals");
    let t = s.trim().trim_start_matches('`').trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a decimal amount such as 1.00 (got {:?})",
            short(s)
        ));
    }
    if digits.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "expected digits after the decimal point (got {:?})",
            short(s)
        ));
    }
    if frac.len() > decimals {
        return Err(format!(
            "at most {decimals} decimals (got {} in {:?})",
            frac.len(),
            short(s)
        ));
    }
    let too_big = || {
        let unit = if decimals == 2 {
            "minor units".to_string()
        } else {
            format!("units of 10^-{decimals}")
        };
        format!("at most {AMOUNT_MINOR_MAX} {unit} (got {:?})", short(s))
    };
    if whole.len() > 16 {
        return Err(too_big());
    }
    // At most 16 + 9 digits: within u128 many times over.
    let scale = 10u128.pow(decimals as u32);
    let whole: u128 = whole.parse().map_err(|_| too_big())?;
    let frac_units: u128 = if frac.is_empty() {
        0
    } else {
        let f: u128 = frac.parse().map_err(|_| too_big())?;
        f * 10u128.pow((decimals - frac.len()) as u32)
    };
    let units = whole * scale + frac_units;
    let units = u64::try_from(units)
        .ok()
        .filter(|u| *u <= AMOUNT_MINOR_MAX)
        .ok_or_else(too_big)?;
    Ok((negative, units))
}

/// Formats minor units as a decimal with two places: `123` → `1.23`, `-5` → `-0.05`.
pub fn format_minor(minor: i128) -> String {
    format_units(minor, 2)
}

/// Formats thousandths of a minor unit with five places, as WeChat Pay prints 手续费:
/// `5_940` → `0.05940`, `-6_000` → `-0.06000`.
pub fn format_milli_minor(milli_minor: i128) -> String {
    format_units(milli_minor, 5)
}

/// `units` of 10^−`decimals` of the major unit as a decimal with that many places.
pub(crate) fn format_units(units: i128, decimals: u32) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let scale = 10u128.pow(decimals);
    let m = units.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        m / scale,
        m % scale,
        width = decimals as usize
    )
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses a local date-time `YYYY-MM-DD HH:MM:SS` (or with `/` or `T`) into milliseconds
/// since the Unix epoch.
pub fn parse_local_datetime(s: &str, utc_offset_minutes: i32) -> Result<u64, String> {
    let t = s.trim().trim_start_matches('`');
    let normalized = t.replace('/', "-").replace('T', " ");
    let naive = chrono::NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| format!("expected YYYY-MM-DD HH:MM:SS (got {:?})", short(s)))?;
    local_ms(naive, utc_offset_minutes, s)
}

/// Parses a date `YYYY-MM-DD` (or `YYYYMMDD`) into the milliseconds of its local midnight.
pub fn parse_local_date(s: &str, utc_offset_minutes: i32) -> Result<u64, String> {
    let t = s.trim();
    let date = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(t, "%Y%m%d"))
        .or_else(|_| chrono::NaiveDate::parse_from_str(t, "%Y/%m/%d"))
        .map_err(|_| format!("expected a date YYYY-MM-DD (got {:?})", short(s)))?;
    local_ms(date.and_time(chrono::NaiveTime::MIN), utc_offset_minutes, s)
}

fn local_ms(naive: chrono::NaiveDateTime, utc_offset_minutes: i32, s: &str) -> Result<u64, String> {
    let ms = naive.and_utc().timestamp_millis() - i64::from(utc_offset_minutes) * 60_000;
    u64::try_from(ms).map_err(|_| format!("a time before 1970 (got {:?})", short(s)))
}

/// The local day `[start, end)` that contains `ms`.
pub(crate) fn local_day(ms: u64, utc_offset_minutes: i32) -> (u64, u64) {
    const DAY_MS: i64 = 86_400_000;
    let offset = i64::from(utc_offset_minutes) * 60_000;
    let local = ms as i64 + offset;
    let start = local.div_euclid(DAY_MS) * DAY_MS - offset;
    (start.max(0) as u64, (start + DAY_MS).max(0) as u64)
}

/// Tracks the earliest and latest booking times, for statements that state no period.
#[derive(Default)]
pub(crate) struct PeriodTracker {
    first_ms: Option<u64>,
    last_ms: Option<u64>,
}

impl PeriodTracker {
    pub(crate) fn see(&mut self, ms: u64) {
        self.first_ms = Some(self.first_ms.map_or(ms, |f| f.min(ms)));
        self.last_ms = Some(self.last_ms.map_or(ms, |l| l.max(ms)));
    }
    /// Whole local days from the first booking to the last.
    pub(crate) fn days(&self, utc_offset_minutes: i32) -> Option<(u64, u64)> {
        let (first, last) = (self.first_ms?, self.last_ms?);
        Some((
            local_day(first, utc_offset_minutes).0,
            local_day(last, utc_offset_minutes).1,
        ))
    }
}

/// Checks a reference (order number, bank reference) as the ledger will: 1 to 128
/// printable ASCII characters without spaces. A leading `` ` `` (WeChat) is dropped.
pub(crate) fn clean_reference(s: &str) -> Result<String, String> {
    let t = s.trim().trim_start_matches('`').trim();
    if t.is_empty()
        || t.len() > events::REFERENCE_LEN_MAX
        || !t.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "must be 1 to {} printable ASCII characters without spaces (got {:?})",
            events::REFERENCE_LEN_MAX,
            short(s)
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal_minor("1.00"), Ok((false, 100)));
        assert_eq!(parse_decimal_minor("`0.01"), Ok((false, 1)));
        assert_eq!(parse_decimal_minor("12.5"), Ok((false, 1250)));
        assert_eq!(parse_decimal_minor("7"), Ok((false, 700)));
        assert_eq!(parse_decimal_minor("-0.06"), Ok((true, 6)));
        assert_eq!(parse_decimal_minor(" 0.00 "), Ok((false, 0)));
        assert_eq!(
            parse_decimal_minor("90071992547409.91"),
            Ok((false, AMOUNT_MINOR_MAX))
        );
        for bad in [
            "",
            "1.",
            ".5",
            "1.005",
            "1,000.00",
            "1e3",
            "abc",
            "--1",
            "1.0.0",
            "90071992547409.92",
            "99999999999999999999",
        ] {
            assert!(
                parse_decimal_minor(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(parse_decimal_minor("1.001")
            .unwrap_err()
            .contains("at most 2 decimals"));
    }

    #[test]
    fn fees_parse_to_five_places() {
        assert_eq!(parse_decimal_units("`0.05940", 5), Ok((false, 5_940)));
        assert_eq!(parse_decimal_units("-0.02000", 5), Ok((true, 2_000)));
        assert_eq!(parse_decimal_units("0.06", 5), Ok((false, 6_000)));
        assert_eq!(parse_decimal_units("3", 5), Ok((false, 300_000)));
        assert_eq!(
            parse_decimal_units("90071992547.40991", 5),
            Ok((false, AMOUNT_MINOR_MAX))
        );
        let too_fine = parse_decimal_units("0.000001", 5).unwrap_err();
        assert!(too_fine.contains("at most 5 decimals"), "{too_fine}");
        let too_big = parse_decimal_units("90071992547.40992", 5).unwrap_err();
        assert!(too_big.contains("units of 10^-5"), "{too_big}");
        assert_eq!(format_milli_minor(5_940), "0.05940");
        assert_eq!(format_milli_minor(-6_000), "-0.06000");
        assert_eq!(format_milli_minor(123_456_789), "1234.56789");
    }

    #[test]
    fn minor_formats_with_two_places() {
        assert_eq!(format_minor(0), "0.00");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(123_456), "1234.56");
        assert_eq!(format_minor(-5), "-0.05");
    }

    #[test]
    fn local_times_use_the_offset() {
        // 2018-10-09 00:00:00 in China is 2018-10-08 16:00:00 UTC.
        let ms = parse_local_datetime("2018-10-09 00:00:00", 480).unwrap();
        assert_eq!(ms, 1_539_014_400_000);
        assert_eq!(parse_local_date("2018-10-09", 480).unwrap(), ms);
        assert_eq!(local_day(ms + 1, 480), (ms, ms + 86_400_000));
        assert!(parse_local_datetime("2018-13-09 00:00:00", 480).is_err());
    }
}
