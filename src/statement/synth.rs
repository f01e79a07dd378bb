//! Writing statements in the accepted formats, for tests, the benchmark and demos: a
//! channel's bill of the gifts it carried, the way the channel would print it.

use std::io::Write;

use super::{format_milli_minor, format_minor};

/// One payment or refund to print on a synthetic bill.
#[derive(Debug, Clone)]
pub struct BillLine {
    pub ts_ms: u64,
    /// The merchant order number (the ledger's channel transaction id).
    pub order_id: String,
    /// The channel's own order number.
    pub channel_order_id: String,
    pub amount_minor: u64,
    /// The channel's fee in thousandths of a minor unit, signed as the ledger records it:
    /// positive when charged, negative when given back (a WeChat Pay refund returns its
    /// share of the payment's fee). WeChat Pay prints it to 0.00001 yuan as it is; Alipay,
    /// which prints fees to the fen, rounds it (half away from zero).
    pub fee_milli_minor: i64,
    /// `Some(refund id)` for a refund of `order_id`.
    pub refund_id: Option<String>,
}

fn local_datetime(ts_ms: u64, utc_offset_minutes: i32) -> String {
    let ms = ts_ms as i64 + i64::from(utc_offset_minutes) * 60_000;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The header row of the WeChat Pay style bill, as WeChat Pay prints it.
pub const WECHAT_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";

/// Writes a WeChat Pay style daily bill (with its totals rows) for `merchant`. A refund row
/// carries its amount in 退款金额 (应结订单金额 is 0.00) and its fee as signed.
pub fn write_wechat_bill(
    out: &mut dyn Write,
    merchant: &str,
    lines: impl IntoIterator<Item = BillLine>,
) -> std::io::Result<u64> {
    writeln!(out, "{WECHAT_HEADER}")?;
    let (mut count, mut amount, mut refund, mut fee) = (0u64, 0u64, 0u64, 0i128);
    for l in lines {
        let time = local_datetime(l.ts_ms, 480);
        match &l.refund_id {
            None => {
                amount += l.amount_minor;
                fee += i128::from(l.fee_milli_minor);
                let a = format_minor(i128::from(l.amount_minor));
                writeln!(
                    out,
                    "`{time},`wx0000000000000001,`{merchant},`0,`,`{},`{},`o_anon,`NATIVE,`SUCCESS,`OTHERS,`CNY,`{a},`0.00,`0,`0,`0.00,`0.00,`,`,`捐赠,`,`{},`0.60%,`{a},`0.00,`",
                    l.channel_order_id,
                    l.order_id,
                    format_milli_minor(i128::from(l.fee_milli_minor)),
                )?;
            }
            Some(refund_id) => {
                refund += l.amount_minor;
                fee += i128::from(l.fee_milli_minor);
                let a = format_minor(i128::from(l.amount_minor));
                writeln!(
                    out,
                    "`{time},`wx0000000000000001,`{merchant},`0,`,`{},`{},`o_anon,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50{refund_id},`{refund_id},`{a},`0.00,`ORIGINAL,`SUCCESS,`捐赠,`,`{},`0.60%,`{a},`{a},`",
                    l.channel_order_id,
                    l.order_id,
                    format_milli_minor(i128::from(l.fee_milli_minor)),
                )?;
            }
        }
        count += 1;
    }
    writeln!(
        out,
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    )?;
    writeln!(
        out,
        "`{count},`{},`{},`0.00,`{},`{},`{}",
        format_minor(i128::from(amount)),
        format_minor(i128::from(refund)),
        format_milli_minor(fee),
        format_minor(i128::from(amount)),
        format_minor(i128::from(refund)),
    )?;
    Ok(count)
}

/// Writes an Alipay style business detail bill for `account`. Money is printed as the
/// merchant's account sees it: a refund's amount negative, a fee charged negative and a fee
/// given back positive.
pub fn write_alipay_bill(
    out: &mut dyn Write,
    account: &str,
    lines: impl IntoIterator<Item = BillLine>,
) -> std::io::Result<u64> {
    writeln!(out, "#支付宝业务明细查询")?;
    writeln!(out, "#账号：[{account}]")?;
    writeln!(out, "#-----------------------------------------业务明细列表----------------------------------------")?;
    writeln!(out, "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")?;
    let mut count = 0;
    for l in lines {
        let time = local_datetime(l.ts_ms, 480);
        let a = format_minor(i128::from(l.amount_minor));
        let fee = format_minor(-events::milli_minor_rounded(i128::from(l.fee_milli_minor)));
        match &l.refund_id {
            None => writeln!(
                out,
                "{},{},交易,捐赠,{time},{time},,,,,匿名,{a},{a},0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,{fee},0.00,",
                l.channel_order_id, l.order_id
            )?,
            Some(refund_id) => writeln!(
                out,
                "{},{},退款,捐赠,{time},{time},,,,,匿名,-{a},-{a},0.00,0.00,0.00,0.00,0.00,,0.00,0.00,{refund_id},{fee},0.00,",
                l.channel_order_id, l.order_id
            )?,
        }
        count += 1;
    }
    writeln!(out, "#-----------------------------------------业务明细列表结束------------------------------------")?;
    Ok(count)
}
