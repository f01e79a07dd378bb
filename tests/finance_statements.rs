//! Statements: parsing every accepted format, rejecting malformed files with the line and
//! column of the first error, and the whole import → reconcile → resolve flow against a
//! real ledger in a temporary data directory.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use events::{
    Amount, Channel, Currency, Id, ProjectKind, StatementLineKind, StatementSource, Text,
};
use ledger::command::{Command, DonationInput};
use ledger::finance_cli::{
    import_statement, reconcile_statement, ImportStatementArgs, MatchArgs, StatementFormat,
};
use ledger::node::{Node, NodeConfig};
use ledger::statement::synth::{write_alipay_bill, write_wechat_bill, BillLine};
use ledger::statement::{parse_statement, ParsedLine, StatementError, StatementOptions};
use ledger::store::EventLog;
use ledger::writer::Submission;
use projections::reconcile::{MatchConfig, MatchRule, ReasonCode, StatementTotals};

fn parse(
    format: StatementSource,
    bytes: &[u8],
) -> Result<(Vec<ParsedLine>, ledger::statement::StatementSummary), StatementError> {
    let mut lines = Vec::new();
    let summary = parse_statement(format, bytes, &StatementOptions::default(), &mut |l| {
        lines.push(l);
        Ok(())
    })?;
    Ok((lines, summary))
}

fn malformed(format: StatementSource, bytes: &[u8]) -> (u64, u64, String) {
    match parse(format, bytes) {
        Err(StatementError::Malformed {
            line,
            column,
            field,
            ..
        }) => (line, column, field),
        other => panic!("expected a malformed statement, got {other:?}"),
    }
}

/// 2018-10-09 10:00:00 China time.
const DAY_10AM: u64 = 1_539_050_400_000;

fn bill_line(n: u64, amount: u64, fee: i64) -> BillLine {
    BillLine {
        ts_ms: DAY_10AM + n * 1000,
        order_id: format!("wechat-{n:010}"),
        channel_order_id: format!("42000000{n:012}"),
        amount_minor: amount,
        fee_milli_minor: fee * 1000,
        refund_id: None,
    }
}

#[test]
fn wechat_bill_parses_with_totals_and_digest() {
    let mut bytes = Vec::new();
    let mut refund = bill_line(1, 100, 0);
    refund.refund_id = Some("R1".into());
    write_wechat_bill(
        &mut bytes,
        "1900000109",
        vec![bill_line(1, 100, 1), bill_line(2, 2_550, 15), refund],
    )
    .unwrap();
    let (lines, summary) = parse(StatementSource::Wechat, &bytes).unwrap();
    assert_eq!(summary.line_count, 3);
    assert_eq!(summary.account, "1900000109");
    assert_eq!(summary.sha256, events::sha256(&bytes));
    assert_eq!(summary.bytes, bytes.len() as u64);
    // The whole China day of the bill.
    assert_eq!(summary.period_start_ms, 1_539_014_400_000);
    assert_eq!(summary.period_end_ms, 1_539_014_400_000 + 86_400_000);
    assert_eq!(lines[0].reference, "wechat-0000000001");
    assert_eq!(
        lines[0].original_reference.as_deref(),
        Some("42000000000000000001")
    );
    assert_eq!(lines[1].amount_minor.minor(), 2_550);
    assert_eq!(lines[1].fee_minor, 15);
    assert_eq!(lines[1].file_line, 3);
    assert_eq!(lines[2].kind, StatementLineKind::Refund);
    assert_eq!(lines[2].reference, "R1");
    assert_eq!(
        lines[2].original_reference.as_deref(),
        Some("wechat-0000000001")
    );
}

#[test]
fn wechat_bill_errors_name_line_and_column() {
    let mut bytes = Vec::new();
    write_wechat_bill(
        &mut bytes,
        "1900000109",
        vec![bill_line(1, 100, 1), bill_line(2, 200, 1)],
    )
    .unwrap();
    let text = String::from_utf8(bytes).unwrap();
    // Three decimals in the second data row's 应结订单金额 (column 13, file line 3).
    let bad = text.replacen("`2.00,`0.00,`0,`0", "`2.001,`0.00,`0,`0", 1);
    let (line, column, field) = malformed(StatementSource::Wechat, bad.as_bytes());
    assert_eq!((line, column, field.as_str()), (3, 13, "应结订单金额"));
    // A negative fee on a payment names the fee's column, not the amount's.
    let bad = text.replacen("`0.01", "`-0.01", 1);
    let (line, _, field) = malformed(StatementSource::Wechat, bad.as_bytes());
    assert_eq!((line, field.as_str()), (2, "手续费"), "{bad}");
    // A float-looking exponent is refused too.
    let bad = text.replacen("`2.00,`0.00,`0,`0", "`2e2,`0.00,`0,`0", 1);
    assert_eq!(malformed(StatementSource::Wechat, bad.as_bytes()).0, 3);
    // The totals row disagreeing with the lines.
    let bad = text.replacen("`2,`3.00", "`2,`3.01", 1);
    let (line, _, field) = malformed(StatementSource::Wechat, bad.as_bytes());
    assert_eq!((line, field.as_str()), (5, "应结订单总金额"));
    // A missing column is named.
    let bad = text.replacen("手续费,", "fee,", 1);
    let (line, _, field) = malformed(StatementSource::Wechat, bad.as_bytes());
    assert_eq!((line, field.as_str()), (1, "header"));
    // An unknown status.
    let bad = text.replacen("`SUCCESS", "`REVOKED", 1);
    assert_eq!(malformed(StatementSource::Wechat, bad.as_bytes()).1, 10);
    // Not UTF-8 (a GBK bill): named as an encoding problem on its line.
    let mut gbk = text.clone().into_bytes();
    let at = gbk.iter().position(|b| *b == b'\n').unwrap() + 2;
    gbk[at] = 0xB2;
    assert_eq!(malformed(StatementSource::Wechat, &gbk).2, "encoding");
}

#[test]
fn alipay_bill_parses_account_refunds_and_negative_fees() {
    let mut bytes = Vec::new();
    let mut refund = bill_line(1, 100, 0);
    refund.refund_id = Some("2018100921001004RF".into());
    write_alipay_bill(
        &mut bytes,
        "20880000000000001",
        vec![bill_line(1, 100, 1), refund],
    )
    .unwrap();
    let (lines, summary) = parse(StatementSource::Alipay, &bytes).unwrap();
    assert_eq!(summary.account, "20880000000000001");
    assert_eq!(summary.line_count, 2);
    assert_eq!(lines[0].fee_minor, 1);
    assert_eq!(lines[1].kind, StatementLineKind::Refund);
    assert_eq!(lines[1].amount_minor.minor(), 100);
    assert_eq!(lines[1].file_line, 6);
    let text = String::from_utf8(bytes).unwrap();
    let bad = text.replacen(",交易,", ",转账,", 1);
    let (line, column, _) = malformed(StatementSource::Alipay, bad.as_bytes());
    assert_eq!((line, column), (5, 3));
}

/// A WeChat Pay daily bill as WeChat Pay prints it: three payments, then refunds of the
/// third and the first, each giving back its share of the fee (a negative 手续费), and the
/// summary rows. 手续费总金额 is the signed sum: 0.01 + 0.15 + 0.06 − 0.06 − 0.01.
const WECHAT_BILL_WITH_REFUNDS: &str = "\
交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注
`2018-10-09 10:00:01,`wx0000000000000001,`1900000109,`0,`,`4200000000000000000001,`wechat-0000000001,`o_anon,`NATIVE,`SUCCESS,`OTHERS,`CNY,`1.00,`0.00,`0,`0,`0.00,`0.00,`,`,`捐赠,`,`0.01,`0.60%,`1.00,`0.00,`
`2018-10-09 10:00:02,`wx0000000000000001,`1900000109,`0,`,`4200000000000000000002,`wechat-0000000002,`o_anon,`NATIVE,`SUCCESS,`OTHERS,`CNY,`25.50,`0.00,`0,`0,`0.00,`0.00,`,`,`捐赠,`,`0.15,`0.60%,`25.50,`0.00,`
`2018-10-09 10:00:03,`wx0000000000000001,`1900000109,`0,`,`4200000000000000000003,`wechat-0000000003,`o_anon,`NATIVE,`SUCCESS,`OTHERS,`CNY,`10.00,`0.00,`0,`0,`0.00,`0.00,`,`,`捐赠,`,`0.06,`0.60%,`10.00,`0.00,`
`2018-10-09 15:00:00,`wx0000000000000001,`1900000109,`0,`,`4200000000000000000003,`wechat-0000000003,`o_anon,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50000000000000000003,`RF3,`10.00,`0.00,`ORIGINAL,`SUCCESS,`捐赠,`,`-0.06,`0.60%,`0.00,`10.00,`
`2018-10-09 16:00:00,`wx0000000000000001,`1900000109,`0,`,`4200000000000000000001,`wechat-0000000001,`o_anon,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50000000000000000001,`RF1,`1.00,`0.00,`ORIGINAL,`SUCCESS,`捐赠,`,`-0.01,`0.60%,`0.00,`1.00,`
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
`5,`36.50,`11.00,`0.00,`0.15,`36.50,`11.00
";

/// The totals a bill states in its summary rows (the last two rows): column name →
/// thousandths of a fen (WeChat Pay prints 手续费总金额 to 0.00001 yuan), parsed exactly.
fn stated_totals(bill: &str) -> std::collections::HashMap<String, i128> {
    let rows: Vec<&str> = bill.lines().filter(|l| !l.trim().is_empty()).collect();
    let names = rows[rows.len() - 2].split(',');
    let values = rows[rows.len() - 1].split(',');
    names
        .zip(values)
        .map(|(n, v)| {
            let (negative, milli) = ledger::statement::parse_decimal_units(v, 5).unwrap();
            let milli = i128::from(milli);
            (n.to_owned(), if negative { -milli } else { milli })
        })
        .collect()
}

fn totals_of(lines: &[ParsedLine]) -> StatementTotals {
    let mut t = StatementTotals::default();
    for l in lines {
        t.add(&l.clone().recorded(1));
    }
    t
}

/// A refund row's negative fee is a fee given back: it keeps its sign (it was stored as its
/// magnitude, a fee charged), and the lines add up, direction by direction, to the bill's
/// own summary to the fen.
#[test]
fn wechat_refund_fees_keep_their_sign_and_totals_equal_the_bill_summary() {
    let (lines, summary) = parse(StatementSource::Wechat, WECHAT_BILL_WITH_REFUNDS.as_bytes())
        .expect("the bill parses");
    assert_eq!(summary.line_count, 5);
    let fees: Vec<i64> = lines.iter().map(|l| l.fee_minor).collect();
    assert_eq!(fees, vec![1, 15, 6, -6, -1]);
    assert_eq!(lines[3].kind, StatementLineKind::Refund);
    assert_eq!(lines[3].amount_minor.minor(), 1_000);
    assert_eq!(lines[3].reference, "RF3");
    assert_eq!(
        lines[3].original_reference.as_deref(),
        Some("wechat-0000000003")
    );

    let t = totals_of(&lines);
    let stated = stated_totals(WECHAT_BILL_WITH_REFUNDS);
    assert_eq!(
        i128::from(t.lines_in + t.lines_out),
        stated["总交易单数"] / 100_000
    );
    assert_eq!(t.money_in_minor as i128 * 1000, stated["应结订单总金额"]);
    assert_eq!(t.money_out_minor as i128 * 1000, stated["退款总金额"]);
    assert_eq!(t.net_fees_milli_minor(), stated["手续费总金额"]);
    assert_eq!(t.fee_rounding_minor(), 0, "every fee is whole fen");
    assert_eq!((t.money_in_minor, t.money_out_minor), (3_650, 1_100));
    assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (22, 7));
    assert_eq!(t.net_fees_minor(), 15);
    assert_eq!(t.net_minor(), 3_650 - 1_100 - 15);

    // Had the refunds' fees been counted as charged, the bill's 手续费总金额 would not
    // agree: the parser checks the signed sum against it.
    let unsigned = WECHAT_BILL_WITH_REFUNDS
        .replacen("`-0.06,", "`0.06,", 1)
        .replacen("`-0.01,", "`0.01,", 1);
    let (line, _, field) = malformed(StatementSource::Wechat, unsigned.as_bytes());
    assert_eq!((line, field.as_str()), (8, "手续费总金额"));
}

/// Bill lines of 1-yuan gifts `1..=n` whose 0.6% fee WeChat Pay prints as `0.00600`.
fn sub_fen_fee_lines(n: u64) -> Vec<BillLine> {
    (1..=n)
        .map(|i| BillLine {
            fee_milli_minor: 600,
            ..bill_line(i, 100, 0)
        })
        .collect()
}

/// WeChat Pay prints 手续费 and 手续费总金额 to 0.00001 yuan (0.6% of 1 yuan is `0.00600`).
/// Each line keeps its fee exactly and in fen rounded half away from zero; the bill's
/// 手续费总金额 is checked exactly; the statement's net fee is rounded once, and what the
/// lines' fen add up to beyond it is reported as the rounding difference.
#[test]
fn wechat_fees_below_the_fen_are_kept_exactly_and_rounded_once() {
    let mut lines = sub_fen_fee_lines(3);
    lines.push(BillLine {
        fee_milli_minor: 5_940,
        ..bill_line(4, 990, 0)
    });
    lines.push(BillLine {
        fee_milli_minor: -600,
        refund_id: Some("RF1".into()),
        ts_ms: DAY_10AM + 3_600_000,
        ..bill_line(1, 100, 0)
    });
    let mut bill = Vec::new();
    write_wechat_bill(&mut bill, "1900000109", lines).unwrap();
    let text = String::from_utf8(bill).unwrap();
    assert!(text.contains("`0.00600,`0.60%"), "{text}");
    assert!(text.contains("`-0.00600,`0.60%"), "{text}");

    let (parsed, _) = parse(StatementSource::Wechat, text.as_bytes()).expect("the bill parses");
    let fees: Vec<(i64, Option<i64>)> = parsed
        .iter()
        .map(|l| (l.fee_minor, l.fee_milli_minor))
        .collect();
    assert_eq!(
        fees,
        vec![
            (1, Some(600)),
            (1, Some(600)),
            (1, Some(600)),
            (6, Some(5_940)),
            (-1, Some(-600))
        ]
    );
    let t = totals_of(&parsed);
    let stated = stated_totals(&text);
    assert_eq!(t.net_fees_milli_minor(), stated["手续费总金额"]);
    assert_eq!(t.net_fees_milli_minor(), 3 * 600 + 5_940 - 600);
    assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (8, 1));
    // The channel keeps 0.07140, 0.07 to the fen; the lines' own fen add up to 0.08.
    assert_eq!((t.net_fees_minor(), t.line_fees_minor), (7, 8));
    assert_eq!(t.fee_rounding_minor(), -1);
    assert_eq!(t.net_minor(), 300 + 990 - 100 - 7);

    // 手续费总金额 with five places must be the exact sum: refused, naming it.
    let inexact_total = text.replacen("`0.07140,", "`0.07000,", 1);
    assert_ne!(inexact_total, text);
    let (_, _, field) = malformed(StatementSource::Wechat, inexact_total.as_bytes());
    assert_eq!(field, "手续费总金额");
    // Printed to the fen, it is the exact sum rounded once: 0.07 is taken, 0.08 refused.
    let to_the_fen = text.replacen("`0.07140,", "`0.07,", 1);
    assert_ne!(to_the_fen, text);
    parse(StatementSource::Wechat, to_the_fen.as_bytes()).expect("0.07140 is 0.07 to the fen");
    match parse(
        StatementSource::Wechat,
        text.replacen("`0.07140,", "`0.08,", 1).as_bytes(),
    ) {
        Err(StatementError::Malformed { field, reason, .. }) => {
            assert_eq!(field, "手续费总金额");
            assert!(
                reason.contains("add up to 0.07140, 0.07 to the fen"),
                "{reason}"
            );
        }
        other => panic!("expected a malformed statement, got {other:?}"),
    }
    // A sixth decimal is finer than WeChat Pay prints: refused, naming 手续费.
    let finer = text.replacen("`0.05940,", "`0.059400,", 1);
    assert_ne!(finer, text);
    match parse(StatementSource::Wechat, finer.as_bytes()) {
        Err(StatementError::Malformed { field, reason, .. }) => {
            assert_eq!(field, "手续费");
            assert!(reason.contains("at most 5 decimals"), "{reason}");
        }
        other => panic!("expected a malformed statement, got {other:?}"),
    }
}

/// A refund amount with a sign is refused, naming 退款金额 and its column; so is a fee that
/// passes the limit. Nothing is handed on.
#[test]
fn wechat_refund_rows_refuse_a_signed_amount_and_an_oversized_fee() {
    let bad = WECHAT_BILL_WITH_REFUNDS.replacen("`RF3,`10.00,", "`RF3,`-10.00,", 1);
    let (line, column, field) = malformed(StatementSource::Wechat, bad.as_bytes());
    assert_eq!((line, column, field.as_str()), (5, 17, "退款金额"));
    let bad = WECHAT_BILL_WITH_REFUNDS.replacen("`-0.06,", "`-90071992547409.92,", 1);
    let err = parse(StatementSource::Wechat, bad.as_bytes()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("line 5, column 23: 手续费") && text.contains("9007199254740991"),
        "{text}"
    );
}

/// An Alipay business detail bill prints money as the merchant's account sees it: a
/// refund's amount negative, the service fee charged negative and the fee given back on a
/// refund positive. The lines keep both directions, and add up to Alipay's own figures.
#[test]
fn alipay_refund_fees_keep_their_direction_and_totals_add_up() {
    let bill = "\
#支付宝业务明细查询
#账号：[20880000000000001]
#起始日期：[2018年10月09日 00:00:00]   终止日期：[2018年10月10日 00:00:00]
#-----------------------------------------业务明细列表----------------------------------------
支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
2018100921001004000000000001,alipay-1,交易,捐赠,2018-10-09 10:00:00,2018-10-09 10:00:01,,,,,匿名,100.00,100.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.60,0.00,
2018100921001004000000000002,alipay-2,交易,捐赠,2018-10-09 11:00:00,2018-10-09 11:00:01,,,,,匿名,20.00,20.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.12,0.00,
2018100921001004000000000002,alipay-2,退款,捐赠,2018-10-09 12:00:00,2018-10-09 12:00:01,,,,,匿名,-20.00,-20.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,2018100921001004RF2,0.12,0.00,
#-----------------------------------------业务明细列表结束------------------------------------
#交易合计：2笔，退款合计：1笔
";
    let (lines, summary) = parse(StatementSource::Alipay, bill.as_bytes()).expect("parses");
    assert_eq!(summary.line_count, 3);
    let fees: Vec<i64> = lines.iter().map(|l| l.fee_minor).collect();
    assert_eq!(
        fees,
        vec![60, 12, -12],
        "charged positive, given back negative"
    );
    assert_eq!(lines[2].kind, StatementLineKind::Refund);
    assert_eq!(lines[2].amount_minor.minor(), 2_000);
    let t = totals_of(&lines);
    // 交易合计 and 退款合计; 订单金额 summed with Alipay's signs (100.00 + 20.00 − 20.00)
    // is money in less money out; 服务费 summed (−0.60 − 0.12 + 0.12) is the net fee,
    // with Alipay's sign.
    assert_eq!((t.lines_in, t.lines_out), (2, 1));
    assert_eq!((t.money_in_minor, t.money_out_minor), (12_000, 2_000));
    assert_eq!(t.money_in_minor as i128 - t.money_out_minor as i128, 10_000);
    assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (72, 12));
    let service_fee_column_sum: i128 = -60 - 12 + 12;
    assert_eq!(t.net_fees_minor(), -service_fee_column_sum);
    // 商家实收 summed (100.00 + 20.00 − 20.00) less the net fee: what Alipay owes.
    assert_eq!(t.net_minor(), 10_000 - 60);

    // A payment's service fee printed positive (given back on a payment) is refused,
    // naming 服务费(元) and its column.
    let bad = bill.replacen(",-0.60,", ",0.60,", 1);
    let (line, column, field) = malformed(StatementSource::Alipay, bad.as_bytes());
    assert_eq!((line, column, field.as_str()), (6, 23, "服务费(元)"));
}

#[test]
fn bank_csv_parses_with_chinese_headers() {
    let csv = "账号,交易日期,流水号,对方户名,摘要,借方发生额,贷方发生额,余额,币种\n\
               6222020200000000,2018-10-09,B001,财付通支付科技有限公司,结算,,9940.00,9940.00,CNY\n\
               6222020200000000,2018-10-09,ICBC-ZZ-1,二七区服务中心,付款,1000.00,,8940.00,CNY\n";
    let (lines, summary) = parse(StatementSource::BankCsv, csv.as_bytes()).unwrap();
    assert_eq!(summary.account, "6222020200000000");
    assert_eq!(lines[0].kind, StatementLineKind::Credit);
    assert_eq!(lines[0].amount_minor.minor(), 994_000);
    assert_eq!(lines[1].kind, StatementLineKind::Debit);
    // Credits are money in and debits money out, as the two columns say; a bank charges
    // no fee on these lines. The balance column moves by the net.
    let t = totals_of(&lines);
    assert_eq!((t.money_in_minor, t.money_out_minor), (994_000, 100_000));
    assert_eq!((t.lines_in, t.lines_out), (1, 1));
    assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (0, 0));
    assert_eq!(
        t.net_minor(),
        894_000,
        "the closing 余额 8940.00, from 0.00"
    );
    let both = csv.replacen(",,9940.00,9940.00", ",1.00,9940.00,9940.00", 1);
    let (line, column, field) = malformed(StatementSource::BankCsv, both.as_bytes());
    assert_eq!((line, column, field.as_str()), (2, 6, "debit"));
    let english = "account,booking_date,reference,debit,credit,currency\n1,2018-10-09,X,,0.5,CNY\n";
    let (lines, _) = parse(StatementSource::BankCsv, english.as_bytes()).unwrap();
    assert_eq!(lines[0].amount_minor.minor(), 50);
}

const CAMT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>STMT-20181009</MsgId><CreDtTm>2018-10-10T06:00:00+08:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-20181009-1</Id>
      <CreDtTm>2018-10-10T06:00:00+08:00</CreDtTm>
      <FrToDt><FrDtTm>2018-10-09T00:00:00+08:00</FrDtTm><ToDtTm>2018-10-10T00:00:00+08:00</ToDtTm></FrToDt>
      <Acct><Id><Othr><Id>6222020200000000</Id></Othr></Id><Ccy>CNY</Ccy></Acct>
      <Ntry>
        <Amt Ccy="CNY">5000.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2018-10-09</Dt></BookgDt>
        <AcctSvcrRef>ICBC20181009001</AcctSvcrRef>
        <NtryDtls><TxDtls><Refs><EndToEndId>bank-pledge-0001</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="CNY">10.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts><Cd>PDNG</Cd></Sts>
        <BookgDt><Dt>2018-10-09</Dt></BookgDt>
        <AcctSvcrRef>PENDING1</AcctSvcrRef>
      </Ntry>
      <Ntry>
        <Amt Ccy="CNY">200.00</Amt>
        <CdtDbtInd>DBIT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><DtTm>2018-10-09T15:30:00+08:00</DtTm></BookgDt>
        <AcctSvcrRef>ICBC20181009002</AcctSvcrRef>
        <NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"#;

#[test]
fn camt053_parses_booked_entries() {
    let (lines, summary) = parse(StatementSource::Camt053, CAMT.as_bytes()).unwrap();
    assert_eq!(summary.account, "6222020200000000");
    assert_eq!(summary.line_count, 2, "the pending entry is skipped");
    assert_eq!(summary.period_start_ms, 1_539_014_400_000);
    assert_eq!(summary.period_end_ms, 1_539_100_800_000);
    assert_eq!(lines[0].reference, "bank-pledge-0001");
    assert_eq!(lines[0].amount_minor.minor(), 500_000);
    assert_eq!(lines[0].kind, StatementLineKind::Credit);
    assert_eq!(
        lines[1].reference, "ICBC20181009002",
        "NOTPROVIDED falls back"
    );
    assert_eq!(lines[1].kind, StatementLineKind::Debit);
    assert_eq!(lines[1].booked_ms, DAY_10AM + 5 * 3_600_000 + 30 * 60_000);
    assert_eq!(lines[0].file_line, 10);
}

#[test]
fn camt053_errors_name_line_and_column() {
    let bad = CAMT.replacen("200.00", "200.005", 1);
    let (line, column, field) = malformed(StatementSource::Camt053, bad.as_bytes());
    assert_eq!((line, column, field.as_str()), (26, 24, "Amt"));
    let bad = CAMT.replacen(
        "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts><Cd>BOOK",
        "<Sts><Cd>BOOK",
        1,
    );
    let (line, _, field) = malformed(StatementSource::Camt053, bad.as_bytes());
    assert_eq!((line, field.as_str()), (10, "CdtDbtInd"));
    let bad = CAMT.replacen("</Ntry>", "</Ntryy>", 1);
    assert_eq!(malformed(StatementSource::Camt053, bad.as_bytes()).2, "xml");
    let (_, _, field) = malformed(StatementSource::Camt053, b"<html/>");
    assert!(field == "Document" || field == "Stmt");
}

/// A statement has one currency: an entry in another is refused when the file is read,
/// naming its line (before, it passed the check and stopped the import half-way, for good).
/// Deeply nested elements are refused too (a nesting bomb cost time quadratic in its depth).
#[test]
fn camt053_refuses_an_entry_in_another_currency_and_deep_nesting() {
    let bad = CAMT.replacen(r#"<Amt Ccy="CNY">200.00"#, r#"<Amt Ccy="USD">200.00"#, 1);
    let (line, column, field) = malformed(StatementSource::Camt053, bad.as_bytes());
    assert_eq!((line, column, field.as_str()), (26, 24, "Amt/@Ccy"));
    // Without the account's currency, the first entry's is the statement's.
    let no_ccy = bad.replacen("<Ccy>CNY</Ccy>", "", 1);
    let (line, _, field) = malformed(StatementSource::Camt053, no_ccy.as_bytes());
    assert_eq!((line, field.as_str()), (26, "Amt/@Ccy"));
    let deep = format!(
        "<Document>{}{}</Document>",
        "<x>".repeat(10_000),
        "</x>".repeat(10_000)
    );
    let (_, _, field) = malformed(StatementSource::Camt053, deep.as_bytes());
    assert_eq!(field, "xml");
}

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

/// Records `n` WeChat gifts of 1 yuan (fee 0.01) a minute apart from 10:00, and returns the
/// node and the clock.
async fn ledger_with_gifts(dir: &std::path::Path, n: u64) -> Arc<AtomicU64> {
    let clock = Arc::new(AtomicU64::new(DAY_10AM));
    let c = clock.clone();
    let node = Node::open(NodeConfig {
        data_dir: dir.to_owned(),
        ledger: Some(id("erqi")),
        clock: Arc::new(move || c.load(Ordering::Relaxed)),
    })
    .await
    .unwrap();
    node.writer
        .submit(Submission::one(
            id("admin"),
            Command::OpenProject {
                project: id("cp-001"),
                kind: ProjectKind::CommunityProject,
                name: Text::new("星星课堂").unwrap(),
                currency: Currency::CNY,
                goal_minor: None,
            },
        ))
        .await
        .unwrap();
    for i in 1..=n {
        clock.store(DAY_10AM + i * 60_000, Ordering::Relaxed);
        node.writer
            .submit(Submission::one(
                id("recorder"),
                Command::RecordDonation(DonationInput {
                    project: id("cp-001"),
                    amount_minor: Amount::new(100).unwrap(),
                    currency: Currency::CNY,
                    channel: Channel::Wechat,
                    channel_txn_id: format!("wechat-{i:010}"),
                    fee_minor: 1,
                    pledge_seq: None,
                    anonymous: true,
                    public_name: None,
                    donor_ref: id(&format!("donor-{i}")),
                }),
            ))
            .await
            .unwrap();
    }
    // The last gift at 23:50, near the end of the day.
    clock.store(DAY_10AM + 13 * 3_600_000 + 50 * 60_000, Ordering::Relaxed);
    node.writer
        .submit(Submission::one(
            id("recorder"),
            Command::RecordDonation(DonationInput {
                project: id("cp-001"),
                amount_minor: Amount::new(500).unwrap(),
                currency: Currency::CNY,
                channel: Channel::Wechat,
                channel_txn_id: "wechat-late".into(),
                fee_minor: 3,
                pledge_seq: None,
                anonymous: true,
                public_name: None,
                donor_ref: id("donor-late"),
            }),
        ))
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    clock
}

fn import_args(dir: &std::path::Path, file: &std::path::Path) -> ImportStatementArgs {
    ImportStatementArgs {
        data: ledger::cli::DataArgs {
            data: dir.to_owned(),
        },
        format: StatementFormat::Wechat,
        file: file.to_owned(),
        actor: "recorder".into(),
        utc_offset_minutes: 480,
        exceptions: None,
        matching: MatchArgs {
            date_window_hours: 48,
            timing_window_minutes: 60,
        },
    }
}

async fn head(dir: &std::path::Path) -> u64 {
    let log = ledger::finance_cli::open_log(dir).await.unwrap();
    log.head().await.unwrap().len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reconcile_resolve_and_reimport() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ledger_with_gifts(&dir, 10).await;
    // The bill: gifts 1..=10 with these differences:
    //  - gift 3 is missing (missing_from_statement); the 23:50 gift too (timing_difference);
    //  - gift 4 says 1.50 (amount_difference); gift 5 says fee 0.02 (fee_difference);
    //  - gift 6 appears twice (duplicate_line);
    //  - gift 7 carries an unknown order id but its amount and time (amount_and_date);
    //  - a stranger's payment (line_not_in_ledger);
    //  - a refund of gift 8, which the ledger has not refunded (refund_not_in_ledger).
    let mut lines = Vec::new();
    for i in 1..=10u64 {
        let mut l = bill_line(i, 100, 1);
        l.ts_ms = DAY_10AM + i * 60_000 + 2_000;
        match i {
            3 => continue,
            4 => l.amount_minor = 150,
            5 => l.fee_milli_minor = 2_000,
            7 => {
                l.order_id = "unknown-order".into();
                l.channel_order_id = "4200000099".into();
            }
            _ => {}
        }
        lines.push(l.clone());
        if i == 6 {
            lines.push(l);
        }
    }
    let mut stranger = bill_line(99, 777, 4);
    stranger.order_id = "stranger-1".into();
    stranger.channel_order_id = "4200000098".into();
    lines.push(stranger);
    let mut refund = bill_line(8, 100, 0);
    refund.ts_ms = DAY_10AM + 3_600_000;
    refund.refund_id = Some("RF8".into());
    lines.push(refund);
    let file = tmp.path().join("bill.csv");
    let mut f = std::fs::File::create(&file).unwrap();
    write_wechat_bill(&mut f, "1900000109", lines).unwrap();
    f.flush().unwrap();

    // A malformed copy is refused and records nothing.
    let before = head(&dir).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let bad_file = tmp.path().join("bad.csv");
    std::fs::write(&bad_file, text.replacen("`1.00,", "`1.000,", 1)).unwrap();
    let code = import_statement(import_args(&dir, &bad_file))
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::FAILURE);
    assert_eq!(head(&dir).await, before);

    // The real one: a statement event and one event per line.
    import_statement(import_args(&dir, &file)).await.unwrap();
    let after = head(&dir).await;
    assert_eq!(after, before + 1 + 12);
    // Importing it again changes nothing.
    import_statement(import_args(&dir, &file)).await.unwrap();
    assert_eq!(head(&dir).await, after);

    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    let statement_seq = *state.statements.keys().next().unwrap();
    let rec = reconcile_statement(&log, &state, statement_seq, MatchConfig::default())
        .await
        .unwrap();
    let reasons: Vec<(ReasonCode, Option<u64>)> = rec
        .exceptions
        .iter()
        .map(|e| (e.reason, e.line_no))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (ReasonCode::AmountDifference, Some(3)),
            (ReasonCode::FeeDifference, Some(4)),
            (ReasonCode::DuplicateLine, Some(6)),
            (ReasonCode::LineNotInLedger, Some(11)),
            (ReasonCode::RefundNotInLedger, Some(12)),
            (ReasonCode::MissingFromStatement, None),
            (ReasonCode::TimingDifference, None),
        ]
    );
    let by_amount: Vec<_> = rec
        .matched
        .iter()
        .filter(|m| m.rule == MatchRule::AmountAndDate)
        .collect();
    assert_eq!(by_amount.len(), 1);
    assert_eq!(by_amount[0].line_no, 7);
    assert_eq!(
        rec.matched.len(),
        7,
        "gifts 1, 2, 6, 7 (by amount), 8, 9 and 10"
    );
    drop(log);

    // Staff explain the stranger's payment; the exception shows as resolved.
    let resolve = ledger::finance_cli::ResolveArgs {
        data: ledger::cli::DataArgs { data: dir.clone() },
        statement: statement_seq,
        line: Some(11),
        entry: None,
        action: ledger::finance_cli::ResolutionAction::Explained,
        link_to: None,
        channel: None,
        pool: None,
        amount: None,
        note: "测试支付,非捐赠".into(),
        actor: "finance-li".into(),
    };
    let code = ledger::finance_cli::resolve_exception(resolve)
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    let rec = reconcile_statement(&log, &state, statement_seq, MatchConfig::default())
        .await
        .unwrap();
    let stranger = rec
        .exceptions
        .iter()
        .find(|e| e.line_no == Some(11))
        .unwrap();
    assert!(stranger.resolved_seq.is_some());
    assert_eq!(stranger.resolution, Some("explained"));
    assert_eq!(rec.open_exceptions().count(), 6);
}

/// A ledger of three one-yuan WeChat gifts (fee 0.01 each) whose gift 3 is refunded with
/// `fee_returned_minor`, and a WeChat bill of the gifts, a late one and the refund of gift 3
/// giving back its 0.01, imported. Answers the reconciliation, the refund's seq, gift 3's
/// seq, the bill and the data directory (kept by the `TempDir`).
async fn a_bill_refunding_gift3(
    fee_returned_minor: Option<u64>,
) -> (
    projections::reconcile::Reconciliation,
    u64,
    u64,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ledger_with_gifts(&dir, 3).await;
    // The ledger refunds gift 3.
    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    let gift3 = state
        .donation_by_channel_txn(Channel::Wechat, "wechat-0000000003")
        .expect("gift 3")
        .seq;
    drop(log);
    let node = ledger::finance_cli::open_node(&dir).await.unwrap();
    let refund_seq = node
        .writer
        .submit(Submission::one(
            id("finance-li"),
            Command::RefundDonation {
                donation_seq: gift3,
                reason: Text::new("捐赠人申请退款").unwrap(),
                fee_returned_minor,
            },
        ))
        .await
        .unwrap()
        .events[0]
        .seq();
    node.shutdown().await.unwrap();

    // The bill: the three gifts and the late one (fee 0.01 each, 0.03), and the refund of
    // gift 3 giving back its 0.01.
    let mut lines: Vec<BillLine> = (1..=3).map(|i| bill_line(i, 100, 1)).collect();
    let mut late = bill_line(4, 500, 3);
    late.order_id = "wechat-late".into();
    lines.push(late);
    let mut refund = bill_line(3, 100, -1);
    refund.ts_ms = DAY_10AM + 3_600_000;
    refund.refund_id = Some("RF3".into());
    lines.push(refund);
    let file = tmp.path().join("bill.csv");
    let mut f = std::fs::File::create(&file).unwrap();
    write_wechat_bill(&mut f, "1900000109", lines).unwrap();
    drop(f);
    let code = import_statement(import_args(&dir, &file)).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);

    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    let statement_seq = *state.statements.keys().next().unwrap();
    // The refund line, as sealed in the log: its fee is -1, not 1.
    let recorded = log.read(statement_seq + 5, 1).await.unwrap();
    let events::EventBody::StatementLineRecorded(line) = recorded[0].body() else {
        panic!("not a statement line: {:?}", recorded[0].body());
    };
    assert_eq!(
        (line.kind, line.line_no, line.fee_minor),
        (StatementLineKind::Refund, 5, -1)
    );
    let rec = reconcile_statement(&log, &state, statement_seq, MatchConfig::default())
        .await
        .unwrap();
    (rec, refund_seq, gift3, file, tmp)
}

/// End to end: a WeChat bill with a refund that gives back its fee is imported; the line
/// is recorded with its negative fee, matches the ledger's refund (recorded with the fee
/// returned, 0.01), and the reconciliation's totals are the bill's money in, money out and
/// fees, each apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_refund_keeps_its_returned_fee_and_the_totals_by_direction() {
    let (rec, refund_seq, _, file, _tmp) = a_bill_refunding_gift3(Some(1)).await;
    assert!(rec.exceptions.is_empty(), "{:?}", rec.exceptions);
    assert!(rec
        .matched
        .iter()
        .any(|m| m.line_no == 5 && m.entry_seq == refund_seq && m.rule == MatchRule::Reference));
    let t = rec.totals;
    assert_eq!((t.lines_in, t.lines_out), (4, 1));
    assert_eq!((t.money_in_minor, t.money_out_minor), (800, 100));
    assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (6, 1));
    assert_eq!((t.net_fees_minor(), t.net_minor()), (5, 695));
    // The bill's own summary says the same: 应结订单总金额 8.00, 退款总金额 1.00,
    // 手续费总金额 0.05.
    let stated = stated_totals(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        (
            stated["应结订单总金额"],
            stated["退款总金额"],
            stated["手续费总金额"]
        ),
        (800_000, 100_000, 5_000)
    );
}

/// The same bill against a refund recorded as keeping the whole fee: the refund line's fee
/// given back (-0.01) differs from the ledger's (0), a `fee_difference` on that line, shown
/// with its donation; the line still accounts for the refund (it is not also missing), and
/// the statement's totals are the bill's as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_recorded_without_its_returned_fee_is_a_fee_difference() {
    let (rec, refund_seq, gift3, _, _tmp) = a_bill_refunding_gift3(None).await;
    assert_eq!(rec.exceptions.len(), 1, "{:?}", rec.exceptions);
    let e = &rec.exceptions[0];
    assert_eq!(e.reason, ReasonCode::FeeDifference);
    assert_eq!((e.line_no, e.entry_seq), (Some(5), Some(gift3)));
    assert_eq!(
        (e.statement_fee_minor, e.ledger_fee_minor),
        (Some(-1), Some(0))
    );
    assert_eq!(
        (e.statement_amount_minor, e.ledger_amount_minor),
        (Some(100), Some(100))
    );
    assert!(!rec.matched.iter().any(|m| m.entry_seq == refund_seq));
    let t = rec.totals;
    assert_eq!((t.fees_charged_minor(), t.fees_returned_minor()), (6, 1));
    assert_eq!((t.net_fees_minor(), t.net_minor()), (5, 695));
}

/// The same bill and refund (recorded keeping the whole fee), then corrected: staff record
/// the 0.01 the refund line shows the channel gave back (`record_refund_fee_returned`,
/// naming the refund). The reconciliation compares the line with the refund's fee
/// including the correction, so the `fee_difference` is gone and the line pairs with the
/// refund by reference; the refund itself is unchanged in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_returned_recorded_after_the_refund_clears_its_fee_difference() {
    let (rec, refund_seq, gift3, _, tmp) = a_bill_refunding_gift3(None).await;
    let open: Vec<_> = rec
        .open_exceptions()
        .map(|e| (e.reason, e.line_no))
        .collect();
    assert_eq!(open, vec![(ReasonCode::FeeDifference, Some(5))]);
    let dir = tmp.path().join("data");
    let node = ledger::finance_cli::open_node(&dir).await.unwrap();
    let correction = node
        .writer
        .submit(Submission::one(
            id("finance-li"),
            Command::RecordRefundFeeReturned {
                refund_seq,
                fee_returned_minor: 1,
                reason: Text::new("微信退款账单退回手续费").unwrap(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(correction.events.len(), 1);
    node.shutdown().await.unwrap();

    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    assert_eq!(state.donations[&gift3].fee_returned_minor, 1);
    let refund = log.read(refund_seq, 1).await.unwrap();
    let events::EventBody::DonationRefunded(r) = refund[0].body() else {
        panic!("not a refund: {:?}", refund[0].body());
    };
    assert_eq!(r.fee_returned_minor, None, "the refund is never edited");
    let statement_seq = *state.statements.keys().next().unwrap();
    let rec = reconcile_statement(&log, &state, statement_seq, MatchConfig::default())
        .await
        .unwrap();
    assert!(rec.exceptions.is_empty(), "{:?}", rec.exceptions);
    assert!(rec
        .matched
        .iter()
        .any(|m| m.line_no == 5 && m.entry_seq == refund_seq && m.rule == MatchRule::Reference));
}

/// End to end: gifts booked with a fee of 0.01 (0.6% of 1 yuan, rounded half away from
/// zero) match a WeChat bill's `0.00600` fees line by line, and one whose line says
/// `0.01600` is a fee_difference showing that exact fee (also in the exceptions CSV); the
/// log keeps each line's exact fee, and the reconciliation reports the bill's fees
/// exactly, as the channel keeps them (rounded once) and the rounding difference from
/// booking each to the fen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_match_a_bill_with_fees_below_the_fen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ledger_with_gifts(&dir, 3).await;
    let file = tmp.path().join("bill.csv");
    let mut f = std::fs::File::create(&file).unwrap();
    // Gift 3's line says 0.01600: 0.02 to the fen, not the 0.01 the ledger booked.
    let mut lines = sub_fen_fee_lines(3);
    lines[2].fee_milli_minor = 1_600;
    write_wechat_bill(&mut f, "1900000109", lines).unwrap();
    drop(f);
    let csv = tmp.path().join("exceptions.csv");
    let code = import_statement(ImportStatementArgs {
        exceptions: Some(csv.clone()),
        ..import_args(&dir, &file)
    })
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    // The exceptions file shows the bill's fee as printed, beside the ledger's.
    let csv = std::fs::read_to_string(&csv).unwrap();
    let row = csv
        .lines()
        .find(|l| l.contains(",fee_difference,"))
        .unwrap_or_else(|| panic!("a fee_difference row in {csv}"));
    assert!(row.contains(",0.01600,0.01,"), "{row}");

    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    let statement_seq = *state.statements.keys().next().unwrap();
    let recorded = log.read(statement_seq + 1, 1).await.unwrap();
    let events::EventBody::StatementLineRecorded(line) = recorded[0].body() else {
        panic!("not a statement line: {:?}", recorded[0].body());
    };
    assert_eq!((line.fee_minor, line.fee_milli_minor), (1, Some(600)));
    let rec = reconcile_statement(&log, &state, statement_seq, MatchConfig::default())
        .await
        .unwrap();
    // Gifts 1 and 2 match with their 0.00600 fees; gift 3's fee differs, and the ledger's
    // late gift is not on this bill.
    let exceptions: Vec<_> = rec
        .exceptions
        .iter()
        .map(|e| (e.reason, e.reference.as_str(), e.statement_fee_milli_minor))
        .collect();
    assert_eq!(
        exceptions,
        vec![
            (ReasonCode::FeeDifference, "wechat-0000000003", Some(1_600)),
            (ReasonCode::TimingDifference, "wechat-late", None)
        ]
    );
    assert_eq!(rec.matched.len(), 2);
    let t = rec.totals;
    assert_eq!(t.net_fees_milli_minor(), 2_800);
    assert_eq!((t.net_fees_minor(), t.line_fees_minor), (3, 4));
    assert_eq!(t.fee_rounding_minor(), -1);
    assert_eq!(t.net_minor(), 300 - 3);
}

/// An import cut short (here: the statement and its first lines recorded by hand) is
/// finished by running the import again, which records only the lines still missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ledger_with_gifts(&dir, 3).await;
    let file = tmp.path().join("bill.csv");
    let mut f = std::fs::File::create(&file).unwrap();
    let lines: Vec<BillLine> = (1..=8).map(|i| bill_line(i, 100, 1)).collect();
    write_wechat_bill(&mut f, "1900000109", lines).unwrap();
    drop(f);
    let bytes = std::fs::read(&file).unwrap();
    let (parsed, summary) = parse(StatementSource::Wechat, &bytes).unwrap();
    let before = head(&dir).await;

    let node = ledger::finance_cli::open_node(&dir).await.unwrap();
    let o = node
        .writer
        .submit(Submission::one(
            id("recorder"),
            Command::ImportStatement(summary.imported()),
        ))
        .await
        .unwrap();
    let statement_seq = o.events[0].seq();
    let first: Vec<Command> = parsed[..3]
        .iter()
        .map(|l| Command::RecordStatementLine(l.clone().recorded(statement_seq)))
        .collect();
    node.writer
        .submit(Submission {
            actor: id("recorder"),
            token_issuer: None,
            idempotency_key: None,
            commands: first.clone(),
        })
        .await
        .unwrap();
    // The same lines again are refused: a line is recorded once.
    let again = node
        .writer
        .submit(Submission {
            actor: id("recorder"),
            token_issuer: None,
            idempotency_key: None,
            commands: first,
        })
        .await;
    assert!(matches!(
        again,
        Err(ledger::writer::WriteError::Rejected {
            error: ledger::command::CommandError::StatementLineOrder {
                expected: 4,
                got: 1,
                ..
            },
            ..
        })
    ));
    node.shutdown().await.unwrap();
    assert_eq!(head(&dir).await, before + 4);

    import_statement(import_args(&dir, &file)).await.unwrap();
    assert_eq!(head(&dir).await, before + 1 + 8);
    let log = ledger::finance_cli::open_log(&dir).await.unwrap();
    let mut state = projections::LedgerState::default();
    ledger::writer::catch_up(&log, &mut state).await.unwrap();
    assert!(state.statements[&statement_seq].is_complete());
    let rec = reconcile_statement(&log, &state, statement_seq, MatchConfig::default())
        .await
        .unwrap();
    assert_eq!(rec.lines, 8);
    // Gifts 1 to 3 match; 4 to 8 were never recorded; the 23:50 gift is a timing difference.
    assert_eq!(rec.matched.len(), 3);
    assert_eq!(rec.counts().get("line_not_in_ledger"), Some(&5));
    assert_eq!(rec.counts().get("timing_difference"), Some(&1));
}
