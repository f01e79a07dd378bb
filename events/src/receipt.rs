use std::fmt;

use serde::{Deserialize, Serialize};

use crate::values::{truncate_for_message, Channel, Id};
use crate::ValueError;
use sha2::{Digest, Sha256};

/// The receipt code a donor is given: derived from the ledger, the channel and the channel's
/// transaction id, so a retried webhook yields the same code and anyone holding the
/// donation's public fields can check it. 16 uppercase hex digits in groups of four, such as
/// `3F2A-91C0-5B7E-D4A8`. It is a lookup handle, not a secret.
pub fn receipt_code(ledger: &Id, channel: Channel, channel_txn_id: &str) -> String {
    let code = ReceiptCode::of_number(receipt_number_of(ledger, channel, channel_txn_id));
    code.as_str().to_owned()
}

/// The receipt number of a channel transaction: the 64 bits its [`receipt_code`] spells,
/// the first 8 bytes of
/// `SHA-256("donation-ledger receipt v1\n" || ledger || "\n" || channel || "\n" || channel_txn_id)`
/// read big-endian.
pub fn receipt_number_of(ledger: &Id, channel: Channel, channel_txn_id: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"donation-ledger receipt v1\n")
        .chain_update(ledger.as_str())
        .chain_update(b"\n")
        .chain_update(channel.as_str())
        .chain_update(b"\n")
        .chain_update(channel_txn_id)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The 64-bit number a receipt code spells (its 16 hex digits), for compact indexes.
pub fn receipt_number(code: &str) -> Option<u64> {
    ReceiptCode::parse(code).map(ReceiptCode::number)
}

/// A receipt code held inline: the 19 ASCII bytes of 16 uppercase hex digits in groups of
/// four joined by `-`. Copied, never allocated: the ledger state keeps one per donation.
/// Serialized as the string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ReceiptCode([u8; 19]);

impl ReceiptCode {
    /// The code that spells a receipt number.
    pub fn of_number(number: u64) -> ReceiptCode {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut code = [b'-'; 19];
        for i in 0..16 {
            let nibble = (number >> (60 - 4 * i)) & 0xf;
            code[i + i / 4] = DIGITS[nibble as usize];
        }
        ReceiptCode(code)
    }

    /// A code in its one spelling (see [`is_receipt_code`]), or `None`.
    pub fn parse(code: &str) -> Option<ReceiptCode> {
        if !is_receipt_code(code) {
            return None;
        }
        let mut bytes = [0u8; 19];
        bytes.copy_from_slice(code.as_bytes());
        Some(ReceiptCode(bytes))
    }

    /// The 64-bit number the code spells.
    pub fn number(self) -> u64 {
        let digits = self.0.into_iter().filter(|&b| b != b'-');
        // Only hex digits are left: a code is checked when it is made.
        digits.fold(0, |number, b| {
            let digit = char::from(b).to_digit(16).expect("a hex digit");
            number << 4 | u64::from(digit)
        })
    }

    pub fn as_str(&self) -> &str {
        // Hex digits and dashes only.
        std::str::from_utf8(&self.0).expect("a receipt code is ASCII")
    }
}

impl TryFrom<String> for ReceiptCode {
    type Error = ValueError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        ReceiptCode::parse(&code).ok_or_else(|| ValueError::Invalid {
            field: "receipt_code",
            reason: format!(
                "must be 16 uppercase hex digits in groups of four joined by '-' (got {:?})",
                truncate_for_message(&code)
            ),
        })
    }
}

impl Serialize for ReceiptCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for ReceiptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ReceiptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceiptCode({self})")
    }
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
        let code = ReceiptCode::of_number(0x0123_4567_89AB_CDEF);
        assert_eq!(code.as_str(), "0123-4567-89AB-CDEF");
        assert_eq!(code.number(), 0x0123_4567_89AB_CDEF);
        assert_eq!(ReceiptCode::parse(code.as_str()), Some(code));
        assert_eq!(ReceiptCode::parse("0123-4567-89ab-cdef"), None);
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            "\"0123-4567-89AB-CDEF\""
        );
        assert!(serde_json::from_str::<ReceiptCode>("\"0123-4567\"").is_err());
        assert_eq!(
            receipt_number(&a),
            Some(receipt_number_of(&ledger, Channel::Wechat, "wx-1"))
        );
    }
}
