//! The CSV statements: WeChat Pay style daily bill, Alipay style business detail bill and a
//! bank statement. Columns are found by their header names (extra columns are ignored), so
//! a channel adding a column breaks nothing.

use std::collections::HashMap;
use std::io::Read;

use events::{Amount, Currency, StatementLineKind};

use super::{
    clean_reference, parse_decimal_minor, parse_local_date, parse_local_datetime, ParsedLine,
    Partial, PeriodTracker, StatementError, StatementOptions, FIELD_BYTES_MAX,
};

type OnLine<'a> = &'a mut dyn FnMut(ParsedLine) -> Result<(), StatementError>;

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

    fn require(&self, names: &[&str]) -> Result<usize, StatementError> {
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
    fn get(&self, index: usize, name: &str) -> Result<&str, StatementError> {
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
    fn decimal(&self, index: usize, name: &str) -> Result<(bool, u64), StatementError> {
        let v = self.get(index, name)?;
        parse_decimal_minor(v).map_err(|r| self.bad(index, name, r))
    }
    fn amount(&self, index: usize, name: &str) -> Result<(bool, Amount), StatementError> {
        let (negative, minor) = self.decimal(index, name)?;
        let amount = Amount::new(minor)
            .map_err(|_| self.bad(index, name, "the amount must be more than 0"))?;
        Ok((negative, amount))
    }
    fn reference(&self, index: usize, name: &str) -> Result<String, StatementError> {
        let v = self.get(index, name)?;
        clean_reference(v).map_err(|r| self.bad(index, name, r))
    }
    fn datetime(&self, index: usize, name: &str, offset: i32) -> Result<u64, StatementError> {
        let v = self.get(index, name)?;
        parse_local_datetime(v, offset).map_err(|r| self.bad(index, name, r))
    }
    fn date(&self, index: usize, name: &str, offset: i32) -> Result<u64, StatementError> {
        let v = self.get(index, name)?;
        parse_local_date(v, offset).map_err(|r| self.bad(index, name, r))
    }
    fn currency(&self, index: usize, name: &str) -> Result<Currency, StatementError> {
        let v = self.get(index, name)?;
        Currency::new(v).map_err(|e| self.bad(index, name, e.to_string()))
    }
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

/// Keeps the values every line of a statement must agree on (merchant, currency).
struct Same<T> {
    value: Option<T>,
}

impl<T: PartialEq + std::fmt::Debug + Clone> Same<T> {
    fn new() -> Self {
        Same { value: None }
    }
    fn check(
        &mut self,
        v: T,
        row: &Row<'_>,
        index: usize,
        name: &str,
    ) -> Result<(), StatementError> {
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

fn finish(
    line_count: u64,
    period: &PeriodTracker,
    account: Option<String>,
    currency: Option<Currency>,
    options: &StatementOptions,
    last_line: u64,
) -> Result<Partial, StatementError> {
    let (period_start_ms, period_end_ms) =
        period.days(options.utc_offset_minutes).ok_or_else(|| {
            StatementError::at(last_line, 1, "statement", "the statement has no lines")
        })?;
    Ok(Partial {
        account: account.unwrap_or_else(|| "unknown".into()),
        currency: currency.unwrap_or(Currency::CNY),
        period_start_ms,
        period_end_ms,
        line_count,
    })
}

/// A WeChat Pay style daily bill (交易账单, type ALL). See docs/FINANCE.md for the columns.
pub(super) fn parse_wechat<R: Read>(
    input: R,
    options: &StatementOptions,
    on_line: OnLine<'_>,
) -> Result<Partial, StatementError> {
    let offset = options.utc_offset_minutes;
    let mut rdr = reader(input);
    let mut record = csv::StringRecord::new();
    let mut columns: Option<(Columns, [usize; 10])> = None;
    let mut line_count = 0u64;
    let mut period = PeriodTracker::default();
    let mut merchant = Same::new();
    let mut currency = Same::new();
    let (mut sum_amount, mut sum_refund, mut sum_fee) = (0u128, 0u128, 0i128);
    let mut totals: Option<Columns> = None;
    let mut totals_checked = false;
    let mut last_line = 1;
    while rdr.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        last_line = line;
        if is_blank(&record) {
            continue;
        }
        let first = normalize_header(record.get(0).unwrap_or(""));
        if totals_checked {
            return Err(StatementError::at(
                line,
                1,
                "statement",
                "nothing may follow the totals row",
            ));
        }
        if let Some(t) = &totals {
            check_wechat_totals(
                t, &record, line, line_count, sum_amount, sum_refund, sum_fee,
            )?;
            totals_checked = true;
            continue;
        }
        if first == "总交易单数" {
            totals = Some(Columns::new(&record, line));
            continue;
        }
        let Some((_, c)) = &columns else {
            let cols = Columns::new(&record, line);
            let c = [
                cols.require(&["交易时间"])?,
                cols.require(&["商户号"])?,
                cols.require(&["微信订单号"])?,
                cols.require(&["商户订单号"])?,
                cols.require(&["交易状态"])?,
                cols.require(&["货币种类"])?,
                cols.require(&["应结订单金额"])?,
                cols.require(&["退款金额"])?,
                cols.require(&["商户退款单号"])?,
                cols.require(&["手续费"])?,
            ];
            columns = Some((cols, c));
            continue;
        };
        let [t_time, t_mch, t_wx, t_order, t_status, t_ccy, t_amount, t_refund, t_refund_no, t_fee] =
            *c;
        let row = Row {
            record: &record,
            line,
        };
        let booked_ms = row.datetime(t_time, "交易时间", offset)?;
        merchant.check(row.reference(t_mch, "商户号")?, &row, t_mch, "商户号")?;
        let ccy = row.currency(t_ccy, "货币种类")?;
        currency.check(ccy, &row, t_ccy, "货币种类")?;
        let (fee_negative, fee) = row.decimal(t_fee, "手续费")?;
        sum_fee += if fee_negative {
            -(fee as i128)
        } else {
            fee as i128
        };
        let status = row.get(t_status, "交易状态")?;
        let parsed = match status {
            "SUCCESS" => {
                let (negative, amount) = row.amount(t_amount, "应结订单金额")?;
                if negative || fee_negative {
                    return Err(row.bad(t_amount, "应结订单金额", "a payment is not negative"));
                }
                sum_amount += u128::from(amount.minor());
                ParsedLine {
                    line_no: line_count + 1,
                    file_line: line,
                    kind: StatementLineKind::Payment,
                    reference: row.reference(t_order, "商户订单号")?,
                    original_reference: Some(row.reference(t_wx, "微信订单号")?),
                    booked_ms,
                    amount_minor: amount,
                    fee_minor: fee,
                    currency: ccy,
                }
            }
            "REFUND" => {
                let (_, amount) = row.amount(t_refund, "退款金额")?;
                sum_refund += u128::from(amount.minor());
                ParsedLine {
                    line_no: line_count + 1,
                    file_line: line,
                    kind: StatementLineKind::Refund,
                    reference: row.reference(t_refund_no, "商户退款单号")?,
                    original_reference: Some(row.reference(t_order, "商户订单号")?),
                    booked_ms,
                    amount_minor: amount,
                    fee_minor: fee,
                    currency: ccy,
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
        period.see(booked_ms);
        line_count += 1;
        on_line(parsed)?;
    }
    if columns.is_none() {
        return Err(StatementError::at(1, 1, "header", "no header row"));
    }
    if totals.is_some() && !totals_checked {
        return Err(StatementError::at(
            last_line,
            1,
            "总交易单数",
            "the totals header has no totals row after it",
        ));
    }
    finish(
        line_count,
        &period,
        merchant.value,
        currency.value,
        options,
        last_line,
    )
}

fn check_wechat_totals(
    t: &Columns,
    record: &csv::StringRecord,
    line: u64,
    line_count: u64,
    sum_amount: u128,
    sum_refund: u128,
    sum_fee: i128,
) -> Result<(), StatementError> {
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
    let checks: [(&str, i128); 3] = [
        ("应结订单总金额", sum_amount as i128),
        ("退款总金额", sum_refund as i128),
        ("手续费总金额", sum_fee),
    ];
    for (name, sum) in checks {
        let Some(ix) = t.find(&[name]) else { continue };
        let (negative, minor) = row.decimal(ix, name)?;
        let stated = if negative {
            -(minor as i128)
        } else {
            minor as i128
        };
        if stated != sum {
            return Err(row.bad(
                ix,
                name,
                format!(
                    "says {}; the lines add up to {}",
                    super::format_minor(stated),
                    super::format_minor(sum)
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
) -> Result<Partial, StatementError> {
    let offset = options.utc_offset_minutes;
    let mut rdr = reader(input);
    let mut record = csv::StringRecord::new();
    let mut columns: Option<[usize; 7]> = None;
    let mut account: Option<String> = None;
    let mut line_count = 0u64;
    let mut period = PeriodTracker::default();
    let mut last_line = 1;
    while rdr.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        last_line = line;
        if is_blank(&record) {
            continue;
        }
        let first = record
            .get(0)
            .unwrap_or("")
            .trim_start_matches('\u{feff}')
            .trim();
        if first.starts_with('#') {
            // "#账号：[20880xxxxxxxxxxx]" names the account; other comments are ignored.
            let whole = record.iter().collect::<Vec<_>>().join(",");
            if let Some(rest) = whole
                .split_once("账号：[")
                .or_else(|| whole.split_once("账号:["))
            {
                if let Some((acct, _)) = rest.1.split_once(']') {
                    account = Some(
                        clean_reference(acct)
                            .map_err(|r| StatementError::at(line, 1, "账号", r))?,
                    );
                }
            }
            continue;
        }
        let Some(c) = &columns else {
            let cols = Columns::new(&record, line);
            columns = Some([
                cols.require(&["支付宝交易号"])?,
                cols.require(&["商户订单号"])?,
                cols.require(&["业务类型"])?,
                cols.require(&["完成时间"])?,
                cols.require(&["订单金额(元)", "订单金额"])?,
                cols.require(&["服务费(元)", "服务费"])?,
                cols.require(&["退款批次号/请求号", "退款批次号"])?,
            ]);
            continue;
        };
        let [t_trade, t_order, t_type, t_time, t_amount, t_fee, t_refund_no] = *c;
        let row = Row {
            record: &record,
            line,
        };
        let booked_ms = row.datetime(t_time, "完成时间", offset)?;
        let (negative, amount) = row.amount(t_amount, "订单金额(元)")?;
        let (_, fee) = row.decimal(t_fee, "服务费(元)")?;
        let parsed = match row.get(t_type, "业务类型")? {
            "交易" => {
                if negative {
                    return Err(row.bad(t_amount, "订单金额(元)", "a payment is not negative"));
                }
                ParsedLine {
                    line_no: line_count + 1,
                    file_line: line,
                    kind: StatementLineKind::Payment,
                    reference: row.reference(t_order, "商户订单号")?,
                    original_reference: Some(row.reference(t_trade, "支付宝交易号")?),
                    booked_ms,
                    amount_minor: amount,
                    fee_minor: fee,
                    currency: Currency::CNY,
                }
            }
            "退款" => ParsedLine {
                line_no: line_count + 1,
                file_line: line,
                kind: StatementLineKind::Refund,
                reference: row.reference(t_refund_no, "退款批次号/请求号")?,
                original_reference: Some(row.reference(t_order, "商户订单号")?),
                booked_ms,
                amount_minor: amount,
                fee_minor: fee,
                currency: Currency::CNY,
            },
            other => {
                return Err(row.bad(
                    t_type,
                    "业务类型",
                    format!("expected 交易 or 退款 (got {other:?})"),
                ))
            }
        };
        period.see(booked_ms);
        line_count += 1;
        on_line(parsed)?;
    }
    if columns.is_none() {
        return Err(StatementError::at(1, 1, "header", "no header row"));
    }
    finish(
        line_count,
        &period,
        account,
        Some(Currency::CNY),
        options,
        last_line,
    )
}

/// A bank statement CSV. See docs/FINANCE.md for the columns and their Chinese aliases.
pub(super) fn parse_bank<R: Read>(
    input: R,
    options: &StatementOptions,
    on_line: OnLine<'_>,
) -> Result<Partial, StatementError> {
    let offset = options.utc_offset_minutes;
    let mut rdr = reader(input);
    let mut record = csv::StringRecord::new();
    let mut columns: Option<[usize; 6]> = None;
    let mut line_count = 0u64;
    let mut period = PeriodTracker::default();
    let mut account = Same::new();
    let mut currency = Same::new();
    let mut last_line = 1;
    while rdr.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        last_line = line;
        if is_blank(&record) {
            continue;
        }
        let Some(c) = &columns else {
            let cols = Columns::new(&record, line);
            columns = Some([
                cols.require(&["account", "账号"])?,
                cols.require(&["booking_date", "交易日期"])?,
                cols.require(&["reference", "流水号"])?,
                cols.require(&["debit", "借方发生额"])?,
                cols.require(&["credit", "贷方发生额"])?,
                cols.require(&["currency", "币种"])?,
            ]);
            continue;
        };
        let [t_account, t_date, t_ref, t_debit, t_credit, t_ccy] = *c;
        let row = Row {
            record: &record,
            line,
        };
        account.check(
            row.reference(t_account, "account")?,
            &row,
            t_account,
            "account",
        )?;
        let ccy = row.currency(t_ccy, "currency")?;
        currency.check(ccy, &row, t_ccy, "currency")?;
        let booked_ms = row.date(t_date, "booking_date", offset)?;
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
        period.see(booked_ms);
        line_count += 1;
        on_line(ParsedLine {
            line_no: line_count,
            file_line: line,
            kind,
            reference: row.reference(t_ref, "reference")?,
            original_reference: None,
            booked_ms,
            amount_minor: amount,
            fee_minor: 0,
            currency: ccy,
        })?;
    }
    if columns.is_none() {
        return Err(StatementError::at(1, 1, "header", "no header row"));
    }
    finish(
        line_count,
        &period,
        account.value,
        currency.value,
        options,
        last_line,
    )
}
