use crate::seal::sha256;
use crate::values::{Channel, Id};

/// The receipt code a donor is given: derived from the ledger, the channel and the channel's
/// transaction id, so a retried webhook yields the same code and anyone holding the
/// donation's public fields can check it. 16 uppercase hex digits in groups of four, such as
/// `3F2A-91C0-5B7E-D4A8`. It is a lookup handle, not a secret.
pub fn receipt_code(ledger: &Id, channel: Channel, channel_txn_id: &str) -> String {
    let mut input = Vec::with_capacity(64 + channel_txn_id.len());
    input.extend_from_slice(b"donation-ledger receipt v1\n");
    input.extend_from_slice(ledger.as_str().as_bytes());
    input.push(b'\n');
    input.extend_from_slice(channel.as_str().as_bytes());
    input.push(b'\n');
    input.extend_from_slice(channel_txn_id.as_bytes());
    let digest = sha256(&input);
    let hex = hex::encode_upper(&digest.0[..8]);
    format!(
        "{}-{}-{}-{}",
        &hex[0..4],
        &hex[4..8],
        &hex[8..12],
        &hex[12..16]
    )
}

/// The 64-bit number a receipt code spells (its 16 hex digits), for compact indexes.
pub fn receipt_number(code: &str) -> Option<u64> {
    if !is_receipt_code(code) {
        return None;
    }
    let digits: String = code.chars().filter(|c| *c != '-').collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// Whether a string has the shape of a receipt code.
pub fn is_receipt_code(s: &str) -> bool {
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| {
            if i % 5 == 4 {
                b == b'-'
            } else {
                b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_code_is_stable_and_shaped() {
        let ledger = Id::new("erqi").unwrap();
        let a = receipt_code(&ledger, Channel::Wechat, "wx-1");
        assert_eq!(a, receipt_code(&ledger, Channel::Wechat, "wx-1"));
        assert_ne!(a, receipt_code(&ledger, Channel::Alipay, "wx-1"));
        assert!(is_receipt_code(&a), "{a}");
        assert!(!is_receipt_code("3F2A91C05B7ED4A8"));
        assert_eq!(receipt_number("0000-0000-0000-00FF"), Some(255));
        assert_eq!(
            receipt_number(&a).map(|n| format!("{n:016X}")),
            Some(a.replace('-', ""))
        );
        assert_eq!(receipt_number("nope"), None);
    }
}
