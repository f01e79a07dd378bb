//! RFC 8785 (JCS) canonical JSON for values without floating-point numbers, written straight
//! from `Serialize` in one pass.
//!
//! A [`serde_json::ser::Formatter`] that writes serde_json's compact output into one buffer and
//! puts each object's members in RFC 8785 order when the object ends: members are recorded
//! as byte ranges of that buffer, and only an object whose members arrived out of order is
//! rewritten (one copy of that object). Strings are escaped by serde_json's compact
//! formatter, which escapes exactly as RFC 8785 (ECMAScript `JSON.stringify`) does:
//! `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx` in lowercase hex,
//! everything else (including `/` and non-ASCII) as is. Integers are written in decimal.
//! Floating-point numbers are refused: the ledger has none, and RFC 8785's number
//! formatting is not needed without them.
//!
//! Member names are sorted by their UTF-16 code units, as RFC 8785 §3.2.3 asks. Names made of
//! ASCII without escapes (every name the ledger's own types use) compare as bytes, which is
//! the same order; any other name is decoded and compared as UTF-16.
//!
//! `tests/jcs.rs` checks this against the RFC 8785 vectors (those without floats) and, with
//! proptest, against `serde_json_canonicalizer` on random events and random JSON values.

use std::cmp::Ordering;
use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// An error from [`to_vec`]: the value holds a float (or does not serialize).
#[derive(Debug, thiserror::Error)]
#[error("not canonicalizable: {0}")]
pub struct JcsError(String);

/// The largest integer magnitude RFC 8785 writes exactly: its numbers are IEEE 754 doubles
/// (I-JSON), so a standard canonicalizer reads `2^53 + 1` as `2^53` and writes different
/// bytes. 2^53 − 1, JavaScript's `Number.MAX_SAFE_INTEGER`.
pub const SAFE_INTEGER_MAX: u64 = (1 << 53) - 1;

/// The RFC 8785 canonical bytes of `value`, which must hold no floating-point number.
/// Integers of any size are written in decimal; see [`to_vec_i_json`] for what other
/// implementations reproduce.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(512);
    write(value, &mut out, false)?;
    Ok(out)
}

/// [`to_vec`], refusing any integer beyond ±[`SAFE_INTEGER_MAX`]: the bytes every RFC 8785
/// implementation (which reads numbers as doubles) reproduces. Events are sealed with it.
pub fn to_vec_i_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(512);
    write(value, &mut out, true)?;
    Ok(out)
}

/// Appends the RFC 8785 canonical bytes of `value` to `out`; with `safe_integers`, refuses
/// integers beyond ±[`SAFE_INTEGER_MAX`].
pub fn write<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    safe_integers: bool,
) -> Result<(), JcsError> {
    let start = out.len();
    let formatter = JcsFormatter {
        safe_integers,
        out: &mut *out,
        // Room for an event (an envelope and its `data`) without growing.
        objects: Vec::with_capacity(4),
        members: Vec::with_capacity(32),
        scratch: Vec::new(),
        key_start: 0,
        key_plain: true,
    };
    let result = value.serialize(&mut serde_json::Serializer::with_formatter(
        io::sink(),
        formatter,
    ));
    result.map_err(|e| {
        out.truncate(start);
        JcsError(e.to_string())
    })
}

struct JcsFormatter<'a> {
    /// Refuse integers beyond ±[`SAFE_INTEGER_MAX`].
    safe_integers: bool,
    /// Everything written so far; objects in progress hold their members unsorted.
    out: &'a mut Vec<u8>,
    /// Open objects, innermost last.
    objects: Vec<OpenObject>,
    /// The members of every open object, each object's after those of the objects around it.
    members: Vec<Member>,
    /// Where an out-of-order object is put in order before it is copied back.
    scratch: Vec<u8>,
    /// Where the member being written starts (after its comma).
    key_start: usize,
    /// Whether the name being written is ASCII without escapes so far.
    key_plain: bool,
}

struct OpenObject {
    /// Where the object's `{` is in `out`.
    start: usize,
    /// Where its members start in `members`.
    first_member: usize,
}

/// One member of an open object: `out[key_start..key_end]` is its name as a JSON string,
/// then `:` and the value up to `end`. `plain`: the name is ASCII without escapes.
#[derive(Clone, Copy)]
struct Member {
    key_start: usize,
    key_end: usize,
    end: usize,
    plain: bool,
}

/// Orders two members by their names (JSON strings with their quotes in `out`), by UTF-16
/// code units.
fn compare_names(out: &[u8], a: &Member, b: &Member) -> Ordering {
    let (name_a, name_b) = (&out[a.key_start..a.key_end], &out[b.key_start..b.key_end]);
    if a.plain && b.plain {
        // Without their quotes, so that a name sorts after its prefixes. Names are short and
        // mostly differ in their first bytes: a loop beats a call to memcmp.
        let (name_a, name_b) = (unquote(name_a), unquote(name_b));
        let first_difference = name_a.iter().zip(name_b).find(|(x, y)| x != y);
        return match first_difference {
            Some((x, y)) => x.cmp(y),
            None => name_a.len().cmp(&name_b.len()),
        };
    }
    let decode = |s: &[u8]| serde_json::from_slice::<String>(s).unwrap_or_default();
    decode(name_a)
        .encode_utf16()
        .cmp(decode(name_b).encode_utf16())
}

fn unquote(name: &[u8]) -> &[u8] {
    name.strip_prefix(b"\"")
        .and_then(|n| n.strip_suffix(b"\""))
        .unwrap_or(name)
}

impl JcsFormatter<'_> {
    /// With `safe_integers`, refuses an integer no double holds exactly.
    fn check_integer(&self, value: i128) -> io::Result<()> {
        if self.safe_integers && value.unsigned_abs() > u128::from(SAFE_INTEGER_MAX) {
            return Err(io::Error::other(format!(
                "the integer {value} is beyond 2^53 - 1, the largest RFC 8785 (I-JSON) writes exactly"
            )));
        }
        Ok(())
    }

    fn end_object_in_order(&mut self) -> io::Result<()> {
        let object = self
            .objects
            .pop()
            .ok_or_else(|| io::Error::other("an object ended that was not begun"))?;
        let members = &mut self.members[object.first_member..];
        let out = &*self.out;
        let sorted = members
            .windows(2)
            .all(|w| compare_names(out, &w[0], &w[1]) != Ordering::Greater);
        if !sorted {
            members.sort_unstable_by(|a, b| compare_names(out, a, b));
            self.scratch.clear();
            self.scratch.push(b'{');
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    self.scratch.push(b',');
                }
                self.scratch.extend_from_slice(&out[m.key_start..m.end]);
            }
            self.out.truncate(object.start);
            self.out.extend_from_slice(&self.scratch);
        }
        self.members.truncate(object.first_member);
        self.out.push(b'}');
        Ok(())
    }
}

/// Every write goes to `self.out`; the serializer's own writer is a sink.
macro_rules! to_out {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<W: ?Sized + io::Write>(&mut self, _: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            CompactFormatter.$name(&mut *self.out $(, $arg)*)
        })*
    };
}

impl Formatter for JcsFormatter<'_> {
    to_out! {
        write_null();
        write_bool(value: bool);
        write_i8(value: i8);
        write_i16(value: i16);
        write_i32(value: i32);
        write_u8(value: u8);
        write_u16(value: u16);
        write_u32(value: u32);
        begin_string();
        end_string();
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        _: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        self.key_plain &= fragment.is_ascii();
        CompactFormatter.write_string_fragment(&mut *self.out, fragment)
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        _: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        self.key_plain = false;
        CompactFormatter.write_char_escape(&mut *self.out, char_escape)
    }

    fn write_i64<W: ?Sized + io::Write>(&mut self, _: &mut W, value: i64) -> io::Result<()> {
        self.check_integer(i128::from(value))?;
        CompactFormatter.write_i64(&mut *self.out, value)
    }

    fn write_u64<W: ?Sized + io::Write>(&mut self, _: &mut W, value: u64) -> io::Result<()> {
        self.check_integer(i128::from(value))?;
        CompactFormatter.write_u64(&mut *self.out, value)
    }

    fn write_i128<W: ?Sized + io::Write>(&mut self, _: &mut W, value: i128) -> io::Result<()> {
        self.check_integer(value)?;
        CompactFormatter.write_i128(&mut *self.out, value)
    }

    fn write_u128<W: ?Sized + io::Write>(&mut self, _: &mut W, value: u128) -> io::Result<()> {
        self.check_integer(i128::try_from(value).unwrap_or(i128::MAX))?;
        CompactFormatter.write_u128(&mut *self.out, value)
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, _: &mut W, _: f32) -> io::Result<()> {
        Err(io::Error::other("floating-point numbers are not allowed"))
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, _: &mut W, _: f64) -> io::Result<()> {
        Err(io::Error::other("floating-point numbers are not allowed"))
    }

    fn write_number_str<W: ?Sized + io::Write>(&mut self, _: &mut W, _: &str) -> io::Result<()> {
        Err(io::Error::other(
            "arbitrary-precision numbers are not allowed",
        ))
    }

    fn write_raw_fragment<W: ?Sized + io::Write>(&mut self, _: &mut W, _: &str) -> io::Result<()> {
        Err(io::Error::other("raw JSON fragments are not allowed"))
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.objects.push(OpenObject {
            start: self.out.len(),
            first_member: self.members.len(),
        });
        self.out.push(b'{');
        Ok(())
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.end_object_in_order()
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        _: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if !first {
            self.out.push(b',');
        }
        self.key_start = self.out.len();
        self.key_plain = true;
        Ok(())
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        // The name's end is recorded now; the member's end when its value is written.
        // Whether the name compares as bytes was found as it was written (ASCII fragments,
        // no escapes), not at every comparison.
        self.members.push(Member {
            key_start: self.key_start,
            key_end: self.out.len(),
            end: 0,
            plain: self.key_plain,
        });
        Ok(())
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.out.push(b':');
        Ok(())
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        let end = self.out.len();
        let member = self
            .members
            .last_mut()
            .ok_or_else(|| io::Error::other("a member value without a name"))?;
        member.end = end;
        Ok(())
    }
}

/// One JSON object written member by member by a caller that knows its members' names and
/// gives them in RFC 8785 order: no serializer, no member ranges, no sort. For the records
/// sealed by the thousand (gifts and matches, [`crate::EventRecord::canonical_bytes`]), where
/// serde's per-member calls cost about two thirds of sealing. Every name must be ASCII
/// without characters JSON escapes (debug builds check the order), and every integer within
/// ±[`SAFE_INTEGER_MAX`]: [`Members::uint`] says when one is not, and the caller then writes
/// the record the general way, which refuses it with its reason.
pub(crate) struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    #[cfg(debug_assertions)]
    last: &'static str,
}

impl<'a> Members<'a> {
    pub(crate) fn begin(out: &'a mut Vec<u8>) -> Members<'a> {
        out.push(b'{');
        Members {
            out,
            first: true,
            #[cfg(debug_assertions)]
            last: "",
        }
    }

    fn name(&mut self, name: &'static str) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                name.bytes()
                    .all(|b| b.is_ascii() && b >= 0x20 && b != b'"' && b != b'\\'),
                "{name} needs no escape"
            );
            debug_assert!(self.first || self.last < name, "{name} after {}", self.last);
            self.last = name;
        }
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub(crate) fn str(&mut self, name: &'static str, value: &str) {
        self.name(name);
        write_str(self.out, value);
    }

    pub(crate) fn bool(&mut self, name: &'static str, value: bool) {
        self.name(name);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// `None` (and the object is unfinished) when `value` is beyond [`SAFE_INTEGER_MAX`].
    #[must_use]
    pub(crate) fn uint(&mut self, name: &'static str, value: u64) -> Option<()> {
        if value > SAFE_INTEGER_MAX {
            return None;
        }
        self.name(name);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        Some(())
    }

    /// A member whose value is an object; end it before the next member of this one.
    pub(crate) fn object(&mut self, name: &'static str) -> Members<'_> {
        self.name(name);
        Members::begin(self.out)
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// `s` as a JSON string, escaped as RFC 8785 (and serde_json's compact formatter) escapes:
/// `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx` in lowercase hex,
/// every other character as is. Runs without escapes are copied whole; a string with none
/// (ids, codes, amounts' currencies: nearly every string an event holds) is checked in one
/// pass the compiler vectorizes and copied at once.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let needs_escape = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn jcs(json: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        String::from_utf8(to_vec(&value).unwrap()).unwrap()
    }

    #[test]
    fn sorts_members_at_every_depth() {
        #[derive(Serialize)]
        struct Inner {
            z: u8,
            a: Vec<u8>,
        }
        #[derive(Serialize)]
        struct Outer {
            b: Inner,
            a: &'static str,
        }
        let value = Outer {
            b: Inner {
                z: 1,
                a: vec![2, 3],
            },
            a: "x\n\"é",
        };
        assert_eq!(
            String::from_utf8(to_vec(&value).unwrap()).unwrap(),
            r#"{"a":"x\n\"é","b":{"a":[2,3],"z":1}}"#
        );
    }

    #[test]
    fn a_name_sorts_after_its_prefix() {
        assert_eq!(
            jcs(r#"{"ab":1,"a":2,"a b":3}"#),
            r#"{"a":2,"a b":3,"ab":1}"#
        );
    }

    #[test]
    fn refuses_floats_and_leaves_the_buffer_as_it_was() {
        let mut out = b"kept".to_vec();
        let err = write(&serde_json::json!({"a": [1, 2.5]}), &mut out, false).unwrap_err();
        assert!(err.to_string().contains("floating-point"), "{err}");
        assert_eq!(out, b"kept");
    }

    proptest! {
        /// Strings written member by member are escaped exactly as serde_json's compact
        /// formatter (RFC 8785's escaping) escapes them: controls, quotes, backslashes,
        /// DEL, non-ASCII and non-BMP characters.
        #[test]
        fn member_strings_escape_as_serde_json(s in "[\\PC\\pC\"\\\\/\u{7f}\u{80}\u{2028}\u{ffff}\u{1f602}]{0,40}") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }
}
