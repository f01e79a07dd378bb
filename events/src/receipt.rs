use crate::seal::sha256;
use crate::values::{Channel, Id};

/// The receipt code a donor is given: derived from the ledger, the channel and the channel's
/// transaction id, so a retried webhook yields the same code and anyone holding the
/// donation's public fields can check it. 16 uppercase hex digits in groups of four, such as
/// `3F2A-91C0-5B7E-D4A8`. It is a lookup handle, not a secret.
pub fn receipt_code(ledger: &Id, channel: Channel, channel_txn_id: &str) -> String {
    receipt_code_of(receipt_number_of(ledger, channel, channel_txn_id))
}

/// The receipt number of a channel transaction: the 64 bits its [`receipt_code`] spells,
/// the first 8 bytes of
/// `SHA-256("donation-ledger receipt v1\n" || ledger || "\n" || channel || "\n" || channel_txn_id)`
/// read big-endian.
pub fn receipt_number_of(ledger: &Id, channel: Channel, channel_txn_id: &str) -> u64 {
    let mut input = Vec::with_capacity(64 + channel_txn_id.len());
    input.extend_from_slice(b"donation-ledger receipt v1\n");
    input.extend_from_slice(ledger.as_str().as_bytes());
    input.push(b'\n');
    input.extend_from_slice(channel.as_str().as_bytes());
    input.push(b'\n');
    input.extend_from_slice(channel_txn_id.as_bytes());
    let digest = sha256(&input);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.0[..8]);
    u64::from_be_bytes(first)
}

/// The receipt code that spells a receipt number: its 16 hex digits, uppercase, in groups
/// of four joined by `-`.
pub fn receipt_code_of(number: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut code = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        let nibble = (number >> (60 - 4 * i)) & 0xf;
        code.push(char::from(DIGITS[nibble as usize]));
    }
    code
}

/// The 64-bit number a receipt code spells (its 16 hex digits), for compact indexes.
pub fn receipt_number(code: &str) -> Option<u64> {
    if !is_receipt_code(code) {
        return None;
    }
    let digits = code.bytes().filter(|&b| b != b'-');
    // Only hex digits are left: is_receipt_code checked every byte.
    Some(digits.fold(0, |number, b| {
        let digit = char::from(b).to_digit(16).expect("a hex digit");
        number << 4 | u64::from(digit)
    }))
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
        assert_eq!(
            receipt_code_of(0x0123_4567_89AB_CDEF),
            "0123-4567-89AB-CDEF"
        );
        assert_eq!(
            receipt_number(&a),
            Some(receipt_number_of(&ledger, Channel::Wechat, "wx-1"))
        );
    }
}
