//! Validated value types. Each one checks its invariant once, on construction or
//! deserialization, so the rest of the code can trust it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::ValueError;

/// The largest amount in minor units: 2^53 − 1, the largest integer every JSON
/// implementation represents exactly.
pub const AMOUNT_MINOR_MAX: u64 = (1 << 53) - 1;

/// Thousandths of a minor unit in one minor unit. WeChat Pay prints its fee (手续费) to
/// 0.00001 yuan, a thousandth of a fen; a statement line keeps such a fee exactly
/// ([`crate::StatementLineRecorded::fee_milli_minor`]).
pub const MILLI_PER_MINOR: i64 = 1000;

/// A fee in thousandths of a minor unit rounded to whole minor units, half away from zero
/// (四舍五入 on the magnitude): `5_940` → `6`, `-500` → `-1`, `-499` → `0`.
/// Takes a sum's width (`i128`) so a statement's total fee rounds the same way as a line's.
pub fn milli_minor_rounded(milli_minor: i128) -> i128 {
    let per = MILLI_PER_MINOR.unsigned_abs() as u128;
    let whole = (milli_minor.unsigned_abs() + per / 2) / per;
    let whole = i128::try_from(whole).expect("a thousandth of an i128 fits an i128");
    if milli_minor < 0 {
        -whole
    } else {
        whole
    }
}

/// A fee in thousandths of a minor unit as a statement line records it: its whole minor
/// units (rounded as [`milli_minor_rounded`]) and, only when it is not a whole number of
/// them, the exact thousandths. One representation for each fee.
pub fn fee_parts(milli_minor: i64) -> (i64, Option<i64>) {
    if milli_minor % MILLI_PER_MINOR == 0 {
        (milli_minor / MILLI_PER_MINOR, None)
    } else {
        let rounded = milli_minor_rounded(i128::from(milli_minor));
        let rounded = i64::try_from(rounded).expect("a thousandth of an i64 fits an i64");
        (rounded, Some(milli_minor))
    }
}

/// An amount of money in minor units (fen, cents): 1 ..= 2^53 − 1. Never zero, never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Amount(u64);

impl Amount {
    pub fn new(minor: u64) -> Result<Amount, ValueError> {
        if (1..=AMOUNT_MINOR_MAX).contains(&minor) {
            Ok(Amount(minor))
        } else {
            Err(ValueError::AmountOutOfRange { value: minor })
        }
    }
    pub fn minor(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for Amount {
    type Error = ValueError;
    fn try_from(minor: u64) -> Result<Self, Self::Error> {
        Amount::new(minor)
    }
}

impl From<Amount> for u64 {
    fn from(a: Amount) -> u64 {
        a.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An ISO 4217 alphabetic currency code: three ASCII capital letters, such as `CNY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const CNY: Currency = Currency(*b"CNY");

    pub fn new(code: &str) -> Result<Currency, ValueError> {
        let bytes = code.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(ValueError::Currency {
                value: truncate_for_message(code),
            })
        }
    }
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII capitals.
        std::str::from_utf8(&self.0).expect("currency is ASCII")
    }

    /// How many decimal places the currency's minor unit has (ISO 4217's exponent): 2 for
    /// most (fen, cents), 0 for the yen or the won, 3 for the Bahraini or Kuwaiti dinar.
    pub fn minor_unit_digits(&self) -> u8 {
        const NO_DECIMALS: [&[u8; 3]; 17] = [
            b"BIF", b"CLP", b"DJF", b"GNF", b"ISK", b"JPY", b"KMF", b"KRW", b"PYG", b"RWF", b"UGX",
            b"UYI", b"VND", b"VUV", b"XAF", b"XOF", b"XPF",
        ];
        const THREE_DECIMALS: [&[u8; 3]; 7] =
            [b"BHD", b"IQD", b"JOD", b"KWD", b"LYD", b"OMR", b"TND"];
        const FOUR_DECIMALS: [&[u8; 3]; 2] = [b"CLF", b"UYW"];
        if NO_DECIMALS.contains(&&self.0) {
            0
        } else if THREE_DECIMALS.contains(&&self.0) {
            3
        } else if FOUR_DECIMALS.contains(&&self.0) {
            4
        } else {
            2
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::new(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

// Serialized as its code, written from the bytes it holds (no `String` in between).
impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest identifier: project, pool, ledger, actor, donor reference.
pub const ID_LEN_MAX: usize = 64;

/// An identifier chosen by staff: 1 ..= 64 characters of `a-z 0-9 - _ .`, starting with a
/// letter or digit. Used for ledgers, projects, matching pools, actors and donor references.
///
/// Shared (`Arc<str>`): cloning an id, which the folds do constantly, is a reference count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Id(Arc<str>);

impl Id {
    pub fn new(s: &str) -> Result<Id, ValueError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        let starts_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !s.is_empty() && s.len() <= ID_LEN_MAX && starts_ok && s.chars().all(ok_char) {
            Ok(Id(Arc::from(s)))
        } else {
            Err(ValueError::Id {
                value: truncate_for_message(s),
                max: ID_LEN_MAX,
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Id::new(&s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0.to_string()
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest free text (names, purposes, reasons) in characters.
pub const TEXT_CHARS_MAX: usize = 500;

/// Free text shown to people: 1 ..= 500 characters (Unicode scalar values), no control
/// characters, not only white space.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Text(Arc<str>);

impl Text {
    pub fn new(s: &str) -> Result<Text, ValueError> {
        let chars = s.chars().count();
        if chars == 0 || chars > TEXT_CHARS_MAX || s.trim().is_empty() {
            return Err(ValueError::TextLength {
                chars,
                max: TEXT_CHARS_MAX,
            });
        }
        if s.chars().any(char::is_control) {
            return Err(ValueError::TextControl);
        }
        Ok(Text(Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Text {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Text::new(&s)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0.to_string()
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest; serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Default)]
#[serde(try_from = "String")]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn from_hex(s: &str) -> Result<Hash, ValueError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ValueError::Hash {
                value: truncate_for_message(s),
            });
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| ValueError::Hash {
            value: truncate_for_message(s),
        })?;
        Ok(Hash(out))
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The 64 lowercase hex digits, written into a buffer on the stack.
    pub(crate) fn hex_digits(&self) -> [u8; 64] {
        let mut digits = [0u8; 64];
        hex::encode_to_slice(self.0, &mut digits).expect("64 digits for 32 bytes");
        digits
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<String> for Hash {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Hash::from_hex(&s)
    }
}

impl From<Hash> for String {
    fn from(h: Hash) -> String {
        h.to_hex()
    }
}

// Serialized as its hex digits, with no `String` in between: every event carries one (`prev`).
impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let digits = self.hex_digits();
        serializer.serialize_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.hex_digits();
        f.write_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// The kind of a project or fund. Help requests are kept apart from public fundraising:
/// they and micro-wishes cannot raise more than their goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectKind {
    CommunityProject,
    HelpRequest,
    MicroWish,
    GeneralFund,
}

impl ProjectKind {
    pub const ALL: [ProjectKind; 4] = [
        ProjectKind::CommunityProject,
        ProjectKind::HelpRequest,
        ProjectKind::MicroWish,
        ProjectKind::GeneralFund,
    ];
    /// Kinds whose raised money may not exceed the goal, which they must have.
    pub fn goal_is_cap(self) -> bool {
        matches!(self, ProjectKind::HelpRequest | ProjectKind::MicroWish)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectKind::CommunityProject => "community_project",
            ProjectKind::HelpRequest => "help_request",
            ProjectKind::MicroWish => "micro_wish",
            ProjectKind::GeneralFund => "general_fund",
        }
    }
}

/// The payment channel a gift came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Wechat,
    Alipay,
    Bank,
    Cash,
    CharityMall,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Wechat,
        Channel::Alipay,
        Channel::Bank,
        Channel::Cash,
        Channel::CharityMall,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Wechat => "wechat",
            Channel::Alipay => "alipay",
            Channel::Bank => "bank",
            Channel::Cash => "cash",
            Channel::CharityMall => "charity_mall",
        }
    }
}

/// Keep error messages short: an over-long input is cut, never echoed whole.
pub(crate) fn truncate_for_message(s: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 80;
    if s.chars().count() <= SHOWN_CHARS_MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(SHOWN_CHARS_MAX).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_in_thousandths_round_half_away_from_zero() {
        let cases = [
            (5_940, 6),
            (500, 1),
            (499, 0),
            (1_500, 2),
            (-500, -1),
            (-499, 0),
            (-6_000, -6),
            (0, 0),
            (i128::MAX, i128::MAX / 1000 + 1),
            (i128::MIN, i128::MIN / 1000 - 1),
        ];
        for (milli, minor) in cases {
            assert_eq!(milli_minor_rounded(milli), minor, "{milli}");
        }
        assert_eq!(fee_parts(6_000), (6, None));
        assert_eq!(fee_parts(-12_000), (-12, None));
        assert_eq!(fee_parts(5_940), (6, Some(5_940)));
        assert_eq!(fee_parts(-20), (0, Some(-20)));
        assert_eq!(
            fee_parts(i64::MIN + 1),
            (i64::MIN / 1000 - 1, Some(i64::MIN + 1))
        );
    }

    #[test]
    fn amount_bounds() {
        assert!(Amount::new(0).is_err());
        assert_eq!(Amount::new(1).unwrap().minor(), 1);
        assert_eq!(
            Amount::new(AMOUNT_MINOR_MAX).unwrap().minor(),
            AMOUNT_MINOR_MAX
        );
        assert!(Amount::new(AMOUNT_MINOR_MAX + 1).is_err());
        assert!(serde_json::from_str::<Amount>("1.5").is_err());
        assert!(serde_json::from_str::<Amount>("-1").is_err());
    }

    #[test]
    fn currency_is_three_capitals() {
        assert!(Currency::new("CNY").is_ok());
        assert!(Currency::new("cny").is_err());
        assert!(Currency::new("CNYY").is_err());
        assert!(Currency::new("").is_err());
    }

    #[test]
    fn ids_and_text() {
        assert!(Id::new("p-xingxing_classroom.2018").is_ok());
        assert!(Id::new("-leading-dash").is_err());
        assert!(Id::new("UPPER").is_err());
        assert!(Id::new(&"a".repeat(65)).is_err());
        assert!(Text::new("星星课堂").is_ok());
        assert!(Text::new("   ").is_err());
        assert!(Text::new("bell\u{7}").is_err());
        assert!(Text::new(&"字".repeat(501)).is_err());
        assert!(Text::new(&"字".repeat(500)).is_ok());
    }

    #[test]
    fn hash_hex_is_lowercase_64() {
        let h = Hash([0xab; 32]);
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash::from_hex(&h.to_hex().to_uppercase()).is_err());
        assert!(Hash::from_hex("abcd").is_err());
    }
}
