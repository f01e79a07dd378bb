//! The CSV statements: WeChat Pay style daily bill, Alipay style business detail bill and a
//! bank statement. Columns are found by their header names (extra columns are ignored), so
//! a channel adding a column breaks nothing.

use std::collections::HashMap;
use std::io::Read;

use events::{
    fee_parts, milli_minor_rounded, Amount, Currency, StatementLineKind, MILLI_PER_MINOR,
};

use super::{
    clean_reference, format_minor, format_units, parse_decimal_units, parse_local_date,
    parse_local_datetime, ParsedLine, Partial, PeriodTracker, StatementError, StatementOptions,
    FIELD_BYTES_MAX,
};

/// The decimal places of money on the bills: to the fen.
const MINOR_DECIMALS: usize = 2;
/// The decimal places of WeChat Pay's 手续费 and 手续费总金额: to 0.00001 yuan, a thousandth
/// of a fen.
const WECHAT_FEE_DECIMALS: usize = 5;

type Result<T> = std::result::Result<T, StatementError>;

type OnLine<'a> = &'a mut dyn FnMut(ParsedLine) -> Result<()>;

fn reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input)
}

fn csv_error(e: csv::Error) -> StatementError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => StatementError::at(
            pos.as_ref().map(|p| p.line()).unwrap_or(line),
            err.field() as u64 + 1,
            "encoding",
            "not UTF-8 (convert GBK bills with `iconv -f GBK -t UTF-8`)",
        ),
        csv::ErrorKind::Io(io) => StatementError::Io(io.to_string()),
        _ => StatementError::at(line, 1, "csv", e.to_string()),
    }
}

/// Header names to column indexes. Names are compared after dropping a BOM, a leading
/// `` ` ``, spaces, and with full-width parentheses read as ASCII ones.
struct Columns {
    index: HashMap<String, usize>,
    line: u64,
}

fn normalize_header(s: &str) -> String {
    s.trim_start_matches('\u{feff}')
        .trim()
        .trim_start_matches('`')
        .replace('（', "(")
        .replace('）', ")")
        .to_lowercase()
}

impl Columns {
    fn new(record: &csv::StringRecord, line: u64) -> Columns {
        let index = record
            .iter()
            .enumerate()
            .map(|(i, name)| (normalize_header(name), i))
            .collect();
        Columns { index, line }
    }

    /// The index of the first of `names` present.
    fn find(&self, names: &[&str]) -> Option<usize> {
        names
            .iter()
            .find_map(|n| self.index.get(&normalize_header(n)).copied())
    }

    fn require(&self, names: &[&str]) -> Result<usize> {
        self.find(names).ok_or_else(|| {
            StatementError::at(
                self.line,
                1,
                "header",
                format!("the column {:?} is missing", names[0]),
            )
        })
    }
}

/// One data row, with what is needed to name a bad field.
struct Row<'a> {
    record: &'a csv::StringRecord,
    line: u64,
}

impl Row<'_> {
    fn get(&self, index: usize, name: &str) -> Result<&str> {
        let value = self.record.get(index).ok_or_else(|| {
            StatementError::at(
                self.line,
                index as u64 + 1,
                name,
                format!(
                    "the row has {} columns; this one is column {}",
                    self.record.len(),
                    index + 1
                ),
            )
        })?;
        if value.len() > FIELD_BYTES_MAX {
            return Err(self.bad(
                index,
                name,
                format!("{} bytes; the limit is {FIELD_BYTES_MAX}", value.len()),
            ));
        }
        Ok(value.trim().trim_start_matches('`').trim())
    }
    fn bad(&self, index: usize, name: &str, reason: impl Into<String>) -> StatementError {
        StatementError::at(self.line, index as u64 + 1, name, reason)
    }
    /// A decimal with at most `decimals` places, as a sign and units of 10^−`decimals`.
    fn decimal(&self, index: usize, name: &str, decimals: usize) -> Result<(bool, u64)> {
        let v = self.get(index, name)?;
        parse_decimal_units(v, decimals).map_err(|r| self.bad(index, name, r))
    }
    /// A signed decimal with at most `decimals` places as signed units of 10^−`decimals`
    /// (within ±(2^53 − 1), so it fits).
    fn signed(&self, index: usize, name: &str, decimals: usize) -> Result<i64> {
        let (negative, units) = self.decimal(index, name, decimals)?;
        let units = i64::try_from(units).expect("parse_decimal_units stays within 2^53 - 1");
        Ok(if negative { -units } else { units })
    }
    fn amount(&self, index: usize, name: &str) -> Result<(bool, Amount)> {
        let (negative, minor) = self.decimal(index, name, MINOR_DECIMALS)?;
        let amount = Amount::new(minor)
            .map_err(|_| self.bad(index, name, "the amount must be more than 0"))?;
        Ok((negative, amount))
    }
    fn reference(&self, index: usize, name: &str) -> Result<String> {
        let v = self.get(index, name)?;
        clean_reference(v).map_err(|r| self.bad(index, name, r))
    }
    fn datetime(&self, index: usize, name: &str, offset: i32) -> Result<u64> {
        let v = self.get(index, name)?;
        parse_local_datetime(v, offset).map_err(|r| self.bad(index, name, r))
    }
    fn date(&self, index: usize, name: &str, offset: i32) -> Result<u64> {
        let v = self.get(index, name)?;
        parse_local_date(v, offset).map_err(|r| self.bad(index, name, r))
    }
    fn currency(&self, index: usize, name: &str) -> Result<Currency> {
        let v = self.get(index, name)?;
        Currency::new(v).map_err(|e| self.bad(index, name, e.to_string()))
    }
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

/// What a payment channel's row (WeChat Pay, Alipay) is: a payment or a refund, its amount
/// (its direction is the kind's), and the columns (index and name) of its own reference and
/// of the one it answers to (the channel's order number, or the payment refunded).
struct ChannelRow<'n> {
    kind: StatementLineKind,
    amount: Amount,
    reference: (usize, &'n str),
    original: (usize, &'n str),
}

impl ChannelRow<'_> {
    fn line(
        self,
        row: &Row<'_>,
        line_no: u64,
        booked_ms: u64,
        (fee_minor, fee_milli_minor): (i64, Option<i64>),
        currency: Currency,
    ) -> Result<ParsedLine> {
        Ok(ParsedLine {
            line_no,
            file_line: row.line,
            kind: self.kind,
            reference: row.reference(self.reference.0, self.reference.1)?,
            original_reference: Some(row.reference(self.original.0, self.original.1)?),
            booked_ms,
            amount_minor: self.amount,
            fee_minor,
            fee_milli_minor,
            currency,
        })
    }
}

/// Keeps the values every line of a statement must agree on (merchant, currency).
struct Same<T> {
    value: Option<T>,
}

impl<T: PartialEq + std::fmt::Debug + Clone> Same<T> {
    fn new() -> Self {
        Same { value: None }
    }
    fn check(&mut self, v: T, row: &Row<'_>, index: usize, name: &str) -> Result<()> {
        match &self.value {
            None => {
                self.value = Some(v);
                Ok(())
            }
            Some(first) if *first == v => Ok(()),
            Some(first) => Err(row.bad(
                index,
                name,
                format!("every line must have the same value ({first:?}, got {v:?})"),
            )),
        }
    }
}

/// One CSV bill format: what the header-and-record loop in [`parse_bill`] asks of it.
trait Bill<const N: usize> {
    /// The `N` columns the format needs, each by its names: the first is the one an error
    /// names, the others are aliases.
    const COLUMNS: [&'static [&'static str]; N];
    /// A non-blank row that is neither the header nor a data row (a comment, a totals
    /// row): `Ok(true)` when `record` was one. `line_count` is the number of data rows so
    /// far.
    fn other_row(
        &mut self,
        _record: &csv::StringRecord,
        _line: u64,
        _line_count: u64,
    ) -> Result<bool> {
        Ok(false)
    }
    /// One data row as the statement line numbered `line_no`; `columns` are the indexes of
    /// [`Bill::COLUMNS`] in the header row.
    fn line(&mut self, columns: &[usize; N], row: &Row<'_>, line_no: u64) -> Result<ParsedLine>;
    /// The checks after the last row, once a header was found; then the statement's
    /// account and currency.
    fn end(self, last_line: u64) -> Result<(Option<String>, Option<Currency>)>;
}

/// The loop every CSV bill shares: blank rows skipped, the format's other rows handed to
/// it, the first remaining row read as the header, each row after it as one line.
fn parse_bill<R: Read, B: Bill<N>, const N: usize>(
    input: R,
    options: &StatementOptions,
    mut bill: B,
    on_line: OnLine<'_>,
) -> Result<Partial> {
    let mut rdr = reader(input);
    let mut record = csv::StringRecord::new();
    let mut columns: Option<[usize; N]> = None;
    let mut line_count = 0u64;
    let mut period = PeriodTracker::default();
    let mut last_line = 1;
    while rdr.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        last_line = line;
        if is_blank(&record) {
            continue;
        }
        if bill.other_row(&record, line, line_count)? {
            continue;
        }
        let Some(c) = &columns else {
            let header = Columns::new(&record, line);
            let mut c = [0; N];
            for (index, names) in c.iter_mut().zip(B::COLUMNS) {
                *index = header.require(names)?;
            }
            columns = Some(c);
            continue;
        };
        let row = Row {
            record: &record,
            line,
        };
        let parsed = bill.line(c, &row, line_count + 1)?;
        period.see(parsed.booked_ms);
        line_count += 1;
        on_line(parsed)?;
    }
    if columns.is_none() {
        return Err(StatementError::at(1, 1, "header", "no header row"));
    }
    let (account, currency) = bill.end(last_line)?;
    let period = period.days(options.utc_offset_minutes).ok_or_else(|| {
        StatementError::at(last_line, 1, "statement", "the statement has no lines")
    })?;
    Ok(Partial::new(account, currency, period, line_count))
}

/// A WeChat Pay style daily bill (交易账单, type ALL). See docs/FINANCE.md for the columns.
pub(super) fn parse_wechat<R: Read>(
    input: R,
    options: &StatementOptions,
    on_line: OnLine<'_>,
) -> Result<Partial> {
    parse_bill(input, options, Wechat::new(options), on_line)
}

struct Wechat {
    offset: i32,
    merchant: Same<String>,
    currency: Same<Currency>,
    sum_amount: u128,
    sum_refund: u128,
    /// In thousandths of a fen, as the bill prints 手续费.
    sum_fee_milli: i128,
    /// The totals header (its first column 总交易单数), once seen.
    totals: Option<Columns>,
    totals_checked: bool,
}

impl Wechat {
    fn new(options: &StatementOptions) -> Wechat {
        Wechat {
            offset: options.utc_offset_minutes,
            merchant: Same::new(),
            currency: Same::new(),
            sum_amount: 0,
            sum_refund: 0,
            sum_fee_milli: 0,
            totals: None,
            totals_checked: false,
        }
    }
}

impl Bill<10> for Wechat {
    const COLUMNS: [&'static [&'static str]; 10] = [
        &["交易时间"],
        &["商户号"],
        &["微信订单号"],
        &["商户订单号"],
        &["交易状态"],
        &["货币种类"],
        &["应结订单金额"],
        &["退款金额"],
        &["商户退款单号"],
        &["手续费"],
    ];

    fn other_row(
        &mut self,
        record: &csv::StringRecord,
        line: u64,
        line_count: u64,
    ) -> Result<bool> {
        if self.totals_checked {
            return Err(StatementError::at(
                line,
                1,
                "statement",
                "nothing may follow the totals row",
            ));
        }
        if let Some(t) = &self.totals {
            check_wechat_totals(
                t,
                record,
                line,
                line_count,
                self.sum_amount,
                self.sum_refund,
                self.sum_fee_milli,
            )?;
            self.totals_checked = true;
            return Ok(true);
        }
        if normalize_header(record.get(0).unwrap_or("")) == "总交易单数" {
            self.totals = Some(Columns::new(record, line));
            return Ok(true);
        }
        Ok(false)
    }

    fn line(&mut self, c: &[usize; 10], row: &Row<'_>, line_no: u64) -> Result<ParsedLine> {
        let [t_time, t_mch, t_wx, t_order, t_status, t_ccy, t_amount, t_refund, t_refund_no, t_fee] =
            *c;
        let booked_ms = row.datetime(t_time, "交易时间", self.offset)?;
        self.merchant
            .check(row.reference(t_mch, "商户号")?, row, t_mch, "商户号")?;
        let ccy = row.currency(t_ccy, "货币种类")?;
        self.currency.check(ccy, row, t_ccy, "货币种类")?;
        // WeChat Pay signs the fee as the ledger does: charged positive, given back negative
        // (a refund returns its share of the payment's fee). It prints the fee to 0.00001
        // yuan (`0.05940`): the line keeps it exactly, and in fen rounded (fee_parts).
        let fee = row.signed(t_fee, "手续费", WECHAT_FEE_DECIMALS)?;
        self.sum_fee_milli += i128::from(fee);
        let status = row.get(t_status, "交易状态")?;
        let channel_row = match status {
            "SUCCESS" => {
                let (negative, amount) = row.amount(t_amount, "应结订单金额")?;
                if negative {
                    return Err(row.bad(t_amount, "应结订单金额", "a payment is not negative"));
                }
                if fee < 0 {
                    return Err(row.bad(
                        t_fee,
                        "手续费",
                        "a payment's fee is charged, not given back: it is not negative",
                    ));
                }
                self.sum_amount += u128::from(amount.minor());
                ChannelRow {
                    kind: StatementLineKind::Payment,
                    amount,
                    reference: (t_order, "商户订单号"),
                    original: (t_wx, "微信订单号"),
                }
            }
            "REFUND" => {
                let (negative, amount) = row.amount(t_refund, "退款金额")?;
                if negative {
                    return Err(row.bad(
                        t_refund,
                        "退款金额",
                        "a refund amount has no sign (REFUND already says the money went out)",
                    ));
                }
                self.sum_refund += u128::from(amount.minor());
                ChannelRow {
                    kind: StatementLineKind::Refund,
                    amount,
                    reference: (t_refund_no, "商户退款单号"),
                    original: (t_order, "商户订单号"),
                }
            }
            other => {
                return Err(row.bad(
                    t_status,
                    "交易状态",
                    format!("expected SUCCESS or REFUND (got {other:?})"),
                ))
            }
        };
        channel_row.line(row, line_no, booked_ms, fee_parts(fee), ccy)
    }

    fn end(self, last_line: u64) -> Result<(Option<String>, Option<Currency>)> {
        if self.totals.is_some() && !self.totals_checked {
            return Err(StatementError::at(
                last_line,
                1,
                "总交易单数",
                "the totals header has no totals row after it",
            ));
        }
        Ok((self.merchant.value, self.currency.value))
    }
}

fn check_wechat_totals(
    t: &Columns,
    record: &csv::StringRecord,
    line: u64,
    line_count: u64,
    sum_amount: u128,
    sum_refund: u128,
    sum_fee_milli: i128,
) -> Result<()> {
    let row = Row { record, line };
    let count_ix = t.require(&["总交易单数"])?;
    let count = row.get(count_ix, "总交易单数")?;
    if count.parse::<u64>().ok() != Some(line_count) {
        return Err(row.bad(
            count_ix,
            "总交易单数",
            format!("says {count:?}; the bill has {line_count} lines"),
        ));
    }
    // Each total with the places the bill prints it with.
    let checks: [(&str, i128, usize); 3] = [
        ("应结订单总金额", sum_amount as i128, MINOR_DECIMALS),
        ("退款总金额", sum_refund as i128, MINOR_DECIMALS),
        ("手续费总金额", sum_fee_milli, WECHAT_FEE_DECIMALS),
    ];
    for (name, sum, decimals) in checks {
        let Some(ix) = t.find(&[name]) else { continue };
        let stated = i128::from(row.signed(ix, name, decimals)?);
        let places = row
            .get(ix, name)?
            .split_once('.')
            .map_or(0, |(_, f)| f.len());
        let shown = format_units(sum, decimals as u32);
        // Fees printed to 0.00001 yuan with their total printed to the fen: the total is
        // their exact sum rounded once (half away from zero), as the channel keeps it.
        let (expected, shown) = if decimals > MINOR_DECIMALS && places <= MINOR_DECIMALS {
            let fen = milli_minor_rounded(sum);
            let rounded = format!("{shown}, {} to the fen", format_minor(fen));
            (fen * i128::from(MILLI_PER_MINOR), rounded)
        } else {
            (sum, shown)
        };
        if stated != expected {
            return Err(row.bad(
                ix,
                name,
                format!(
                    "says {}; the lines add up to {shown}",
                    format_units(stated, decimals as u32),
                ),
            ));
        }
    }
    Ok(())
}

/// An Alipay style business detail bill (业务明细). See docs/FINANCE.md for the columns.
pub(super) fn parse_alipay<R: Read>(
    input: R,
    options: &StatementOptions,
    on_line: OnLine<'_>,
) -> Result<Partial> {
    let alipay = Alipay {
        offset: options.utc_offset_minutes,
        account: None,
    };
    parse_bill(input, options, alipay, on_line)
}

struct Alipay {
    offset: i32,
    /// From the comment row "#账号：[…]".
    account: Option<String>,
}

impl Bill<7> for Alipay {
    const COLUMNS: [&'static [&'static str]; 7] = [
        &["支付宝交易号"],
        &["商户订单号"],
        &["业务类型"],
        &["完成时间"],
        &["订单金额(元)", "订单金额"],
        &["服务费(元)", "服务费"],
        &["退款批次号/请求号", "退款批次号"],
    ];

    fn other_row(
        &mut self,
        record: &csv::StringRecord,
        line: u64,
        _line_count: u64,
    ) -> Result<bool> {
        let first = record
            .get(0)
            .unwrap_or("")
            .trim_start_matches('\u{feff}')
            .trim();
        if !first.starts_with('#') {
            return Ok(false);
        }
        // "#账号：[20880xxxxxxxxxxx]" names the account; other comments are ignored.
        let whole = record.iter().collect::<Vec<_>>().join(",");
        if let Some(rest) = whole
            .split_once("账号：[")
            .or_else(|| whole.split_once("账号:["))
        {
            if let Some((acct, _)) = rest.1.split_once(']') {
                self.account = Some(
                    clean_reference(acct).map_err(|r| StatementError::at(line, 1, "账号", r))?,
                );
            }
        }
        Ok(true)
    }

    fn line(&mut self, c: &[usize; 7], row: &Row<'_>, line_no: u64) -> Result<ParsedLine> {
        let [t_trade, t_order, t_type, t_time, t_amount, t_fee, t_refund_no] = *c;
        let booked_ms = row.datetime(t_time, "完成时间", self.offset)?;
        let (negative, amount) = row.amount(t_amount, "订单金额(元)")?;
        // Alipay prints money as the merchant's account sees it: the service fee it charges
        // is negative, a fee it gives back positive. The ledger signs a fee the other way
        // (charged positive, given back negative).
        let fee = -row.signed(t_fee, "服务费(元)", MINOR_DECIMALS)?;
        let channel_row = match row.get(t_type, "业务类型")? {
            "交易" => {
                if negative {
                    return Err(row.bad(t_amount, "订单金额(元)", "a payment is not negative"));
                }
                if fee < 0 {
                    return Err(row.bad(
                        t_fee,
                        "服务费(元)",
                        "a payment's service fee is charged: Alipay prints it negative or 0.00",
                    ));
                }
                ChannelRow {
                    kind: StatementLineKind::Payment,
                    amount,
                    reference: (t_order, "商户订单号"),
                    original: (t_trade, "支付宝交易号"),
                }
            }
            "退款" => ChannelRow {
                kind: StatementLineKind::Refund,
                amount,
                reference: (t_refund_no, "退款批次号/请求号"),
                original: (t_order, "商户订单号"),
            },
            other => {
                return Err(row.bad(
                    t_type,
                    "业务类型",
                    format!("expected 交易 or 退款 (got {other:?})"),
                ))
            }
        };
        channel_row.line(row, line_no, booked_ms, (fee, None), Currency::CNY)
    }

    fn end(self, _last_line: u64) -> Result<(Option<String>, Option<Currency>)> {
        Ok((self.account, Some(Currency::CNY)))
    }
}

/// A bank statement CSV. See docs/FINANCE.md for the columns and their Chinese aliases.
pub(super) fn parse_bank<R: Read>(
    input: R,
    options: &StatementOptions,
    on_line: OnLine<'_>,
) -> Result<Partial> {
    let bank = Bank {
        offset: options.utc_offset_minutes,
        account: Same::new(),
        currency: Same::new(),
    };
    parse_bill(input, options, bank, on_line)
}

struct Bank {
    offset: i32,
    account: Same<String>,
    currency: Same<Currency>,
}

impl Bill<6> for Bank {
    const COLUMNS: [&'static [&'static str]; 6] = [
        &["account", "账号"],
        &["booking_date", "交易日期"],
        &["reference", "流水号"],
        &["debit", "借方发生额"],
        &["credit", "贷方发生额"],
        &["currency", "币种"],
    ];

    fn line(&mut self, c: &[usize; 6], row: &Row<'_>, line_no: u64) -> Result<ParsedLine> {
        let [t_account, t_date, t_ref, t_debit, t_credit, t_ccy] = *c;
        self.account.check(
            row.reference(t_account, "account")?,
            row,
            t_account,
            "account",
        )?;
        let ccy = row.currency(t_ccy, "currency")?;
        self.currency.check(ccy, row, t_ccy, "currency")?;
        let booked_ms = row.date(t_date, "booking_date", self.offset)?;
        let debit = row.get(t_debit, "debit")?;
        let credit = row.get(t_credit, "credit")?;
        let (kind, index, name) = match (debit.is_empty(), credit.is_empty()) {
            (false, true) => (StatementLineKind::Debit, t_debit, "debit"),
            (true, false) => (StatementLineKind::Credit, t_credit, "credit"),
            _ => {
                return Err(row.bad(
                    t_debit,
                    "debit",
                    "exactly one of debit and credit has an amount",
                ))
            }
        };
        let (negative, amount) = row.amount(index, name)?;
        if negative {
            return Err(row.bad(index, name, "write the amount without a sign in its column"));
        }
        Ok(ParsedLine {
            line_no,
            file_line: row.line,
            kind,
            reference: row.reference(t_ref, "reference")?,
            original_reference: None,
            booked_ms,
            amount_minor: amount,
            fee_minor: 0,
            fee_milli_minor: None,
            currency: ccy,
        })
    }

    fn end(self, _last_line: u64) -> Result<(Option<String>, Option<Currency>)> {
        Ok((self.account.value, self.currency.value))
    }
}
