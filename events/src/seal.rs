//! Sealing: an event's canonical bytes (RFC 8785), its SHA-256 hash, and the chain that links
//! each event to the one before it.
//!
//! The canonical bytes of an event are the RFC 8785 serialization of the sealed JSON object
//! *without* its `hash` member. They are the bytes the hash is computed over and the Merkle
//! leaf input. The exported form of an event is the RFC 8785 serialization of the object
//! *with* its `hash` member.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::EventBody;
use crate::values::{Hash, Id};
use crate::{ChainError, ValueError};

/// The largest canonical event in bytes. Larger commands are refused before sealing.
pub const EVENT_BYTES_MAX: usize = 8 * 1024;

/// What [`EventRecord::sealed_len_bound`] allows for everything in a gift's or a match's
/// canonical bytes but the characters of its strings (about 530 bytes at most: every member
/// present, every integer at 16 digits; `events/tests/jcs.rs` checks it stays under three
/// quarters of this).
pub const FIXED_BYTES_BOUND: usize = 768;

/// At least the bytes RFC 8785 writes for `s`'s characters: a control character takes at
/// most six (`\u0000`), a quote or a backslash two, any other byte one.
fn escaped_len_bound(s: &str) -> usize {
    s.len()
        + s.bytes()
            .map(|b| match b {
                0x00..=0x1f => 5,
                b'"' | b'\\' => 1,
                _ => 0,
            })
            .sum::<usize>()
}

/// The idempotency key a command carried and a digest of that command, so a retry with the
/// same key can be told apart from a different command reusing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    pub command_sha256: Hash,
    pub key: String,
}

/// The longest idempotency key in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 128;

impl Idempotency {
    pub fn check_key(key: &str) -> Result<(), ValueError> {
        if key.is_empty()
            || key.len() > IDEMPOTENCY_KEY_LEN_MAX
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ValueError::Invalid {
                field: "idempotency_key",
                reason: format!(
                    "must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters (got {} bytes)",
                    key.len()
                ),
            });
        }
        Ok(())
    }
}

/// An event as hashed: the envelope (position, link, ledger, time, actor) and the body.
///
/// Serialized (by hand, below) as one object: the envelope's members with the body's
/// `type` and `data` among them, in RFC 8785 order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventRecord {
    /// 0-based position in the ledger's log.
    pub seq: u64,
    /// The previous event's hash; all zeros for seq 0.
    pub prev: Hash,
    /// The ledger this event belongs to, so an event cannot be replayed into another ledger.
    pub ledger: Id,
    /// Server time in milliseconds since the Unix epoch; never less than the previous event's.
    pub ts_ms: u64,
    /// The staff member (or system actor) who caused the event.
    pub actor: Id,
    #[serde(default)]
    pub idempotency: Option<Idempotency>,
    /// The admin who issued the API token the actor acted with; absent for a token made on
    /// the server (the `token` command) and for the system's own events. The four-eyes rule
    /// counts the issuer as the actor: an admin cannot approve a request with, or made with,
    /// a token they issued.
    #[serde(default)]
    pub token_issuer: Option<Id>,
    #[serde(flatten)]
    pub body: EventBody,
}

// The members in RFC 8785 order (names sorted), so that the canonicalizer finds every object
// in order and copies nothing; the bytes are those of the flattened derive, sorted.
impl Serialize for EventRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let members =
            7 + usize::from(self.idempotency.is_some()) + usize::from(self.token_issuer.is_some());
        let mut record = serializer.serialize_struct("EventRecord", members)?;
        record.serialize_field("actor", &self.actor)?;
        record.serialize_field("data", &self.body.data())?;
        match &self.idempotency {
            Some(idempotency) => record.serialize_field("idempotency", idempotency)?,
            None => record.skip_field("idempotency")?,
        }
        record.serialize_field("ledger", &self.ledger)?;
        record.serialize_field("prev", &self.prev)?;
        record.serialize_field("seq", &self.seq)?;
        match &self.token_issuer {
            Some(issuer) => record.serialize_field("token_issuer", issuer)?,
            None => record.skip_field("token_issuer")?,
        }
        record.serialize_field("ts_ms", &self.ts_ms)?;
        record.serialize_field("type", self.body.type_name())?;
        record.end()
    }
}

impl EventRecord {
    /// The RFC 8785 canonical bytes of this record (the object without `hash`).
    ///
    /// Written in one pass by [`crate::jcs`] (a record holds no floats). Debug builds (all
    /// tests) check every record against the general canonicalizer
    /// `serde_json_canonicalizer`, and `tests/jcs.rs` checks random records with proptest.
    ///
    /// Refused when the record holds an integer beyond 2^53 − 1 ([`crate::jcs::to_vec_i_json`]):
    /// every other RFC 8785 implementation reads numbers as doubles and would write other
    /// bytes, so no one could verify its hash.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ValueError> {
        // A record holds only integers, strings, booleans, arrays and objects.
        let bytes = match self.gift_or_match_canonical_bytes() {
            Some(bytes) => bytes,
            None => crate::jcs::to_vec_i_json(self).map_err(|e| ValueError::Invalid {
                field: "event",
                reason: e.to_string(),
            })?,
        };
        debug_assert_eq!(
            bytes,
            serde_json_canonicalizer::to_vec(self).expect("event records serialize"),
            "the fast canonical form must equal RFC 8785"
        );
        Ok(bytes)
    }

    /// The canonical bytes of a gift or a match, written member by member in RFC 8785 order
    /// ([`crate::jcs::Members`]): these are sealed by the thousand, and serde's calls per
    /// member were about two thirds of sealing one. The same bytes as the general path
    /// ([`Serialize`] above through [`crate::jcs`]); `tests/jcs.rs` checks both against
    /// `serde_json_canonicalizer` on random records, as debug builds do on every record.
    /// `None` for any other record, or when an integer is beyond 2^53 − 1 (the general path
    /// then refuses it, saying why).
    fn gift_or_match_canonical_bytes(&self) -> Option<Vec<u8>> {
        use crate::jcs::Members;
        if !matches!(
            self.body,
            EventBody::DonationReceived(_) | EventBody::MatchAllocated(_)
        ) {
            return None;
        }
        let mut out = Vec::with_capacity(512);
        let mut record = Members::begin(&mut out);
        record.str("actor", self.actor.as_str());
        let mut data = record.object("data");
        match &self.body {
            EventBody::DonationReceived(d) => {
                data.uint("amount_minor", d.amount_minor.minor())?;
                data.bool("anonymous", d.anonymous);
                data.str("channel", d.channel.as_str());
                data.str("channel_txn_id", &d.channel_txn_id);
                data.str("currency", d.currency.as_str());
                data.str("donor_ref", d.donor_ref.as_str());
                data.uint("fee_minor", d.fee_minor)?;
                if let Some(pledge) = d.pledge_seq {
                    data.uint("pledge_seq", pledge)?;
                }
                data.str("project", d.project.as_str());
                if let Some(name) = &d.public_name {
                    data.str("public_name", name.as_str());
                }
                data.str("receipt_code", &d.receipt_code);
            }
            EventBody::MatchAllocated(m) => {
                data.uint("amount_minor", m.amount_minor.minor())?;
                data.uint("donation_seq", m.donation_seq)?;
                data.str("pool", m.pool.as_str());
                data.str("project", m.project.as_str());
            }
            _ => return None,
        }
        data.end();
        if let Some(idempotency) = &self.idempotency {
            let mut members = record.object("idempotency");
            let digest = idempotency.command_sha256.hex_digits();
            members.str(
                "command_sha256",
                std::str::from_utf8(&digest).expect("hex digits are ASCII"),
            );
            members.str("key", &idempotency.key);
            members.end();
        }
        record.str("ledger", self.ledger.as_str());
        let prev = self.prev.hex_digits();
        record.str(
            "prev",
            std::str::from_utf8(&prev).expect("hex digits are ASCII"),
        );
        record.uint("seq", self.seq)?;
        if let Some(issuer) = &self.token_issuer {
            record.str("token_issuer", issuer.as_str());
        }
        record.uint("ts_ms", self.ts_ms)?;
        record.str("type", self.body.type_name());
        record.end();
        Some(out)
    }

    /// An upper bound on the length of this record's canonical bytes, for the records the
    /// writer may apply first and seal afterwards, beside it on another thread: a gift or a
    /// match whose integers are all within 2^53 − 1. For such a record sealing cannot fail
    /// when the bound is within [`EVENT_BYTES_MAX`]. `None` for every other record, which is
    /// sealed before it is applied, so that a refusal leaves the state untouched.
    ///
    /// The bound: [`FIXED_BYTES_BOUND`] for member names, punctuation, integers, booleans,
    /// the hex of `prev` and of an idempotency digest and the `type` name, plus every other
    /// string's bytes with room for their escapes (six bytes for a control character, two
    /// for a quote or a backslash). So it stays near the real length (a typical gift's
    /// bound is about twice it), which matters where a store limits an append's bytes.
    pub fn sealed_len_bound(&self) -> Option<usize> {
        let (integers, strings): ([u64; 3], [&str; 7]) = match &self.body {
            EventBody::DonationReceived(d) => (
                [
                    d.amount_minor.minor(),
                    d.fee_minor,
                    d.pledge_seq.unwrap_or(0),
                ],
                [
                    d.channel.as_str(),
                    &d.channel_txn_id,
                    d.currency.as_str(),
                    d.donor_ref.as_str(),
                    d.project.as_str(),
                    d.public_name.as_ref().map_or("", |n| n.as_str()),
                    &d.receipt_code,
                ],
            ),
            EventBody::MatchAllocated(m) => (
                [m.amount_minor.minor(), m.donation_seq, 0],
                [m.pool.as_str(), m.project.as_str(), "", "", "", "", ""],
            ),
            _ => return None,
        };
        let safe = |n: u64| n <= crate::jcs::SAFE_INTEGER_MAX;
        if !(safe(self.seq) && safe(self.ts_ms) && integers.into_iter().all(safe)) {
            return None;
        }
        let envelope = [
            self.ledger.as_str(),
            self.actor.as_str(),
            self.token_issuer.as_ref().map_or("", Id::as_str),
            self.idempotency.as_ref().map_or("", |i| i.key.as_str()),
        ];
        let string_bytes: usize = strings
            .iter()
            .chain(&envelope)
            .map(|s| escaped_len_bound(s))
            .sum();
        Some(FIXED_BYTES_BOUND + string_bytes)
    }

    /// Seals the record: computes its canonical bytes and hash.
    pub fn seal(self) -> Result<SealedEvent, ValueError> {
        let canonical = self.canonical_bytes()?;
        if canonical.len() > EVENT_BYTES_MAX {
            return Err(ValueError::EventTooLarge {
                bytes: canonical.len(),
                max: EVENT_BYTES_MAX,
            });
        }
        let hash = sha256(&canonical);
        Ok(SealedEvent::new(self, hash, canonical, true))
    }
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// A sealed event: its record, its canonical bytes and their hash. The fields are private so
/// the three always agree, and shared, so a clone (into a batch, a cache, a subscriber's
/// page, a caller's reply) is a reference count, not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEvent {
    inner: std::sync::Arc<Sealed>,
}

#[derive(Debug)]
struct Sealed {
    record: EventRecord,
    hash: Hash,
    canonical: Vec<u8>,
    /// Its RFC 6962 leaf hash, once asked for: the writer's sealing thread asks at once,
    /// while the bytes are in its cache, so the append finds it computed.
    leaf: std::sync::OnceLock<Hash>,
    /// Whether `canonical` was made from `record` (sealed here), rather than read and
    /// parsed ([`SealedEvent::from_canonical`]): only then is re-sealing the record certain
    /// to give the same bytes.
    from_record: bool,
}

// The leaf hash is derived from the bytes, computed or not.
impl PartialEq for Sealed {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.canonical == other.canonical && self.record == other.record
    }
}

impl Eq for Sealed {}

impl SealedEvent {
    fn new(record: EventRecord, hash: Hash, canonical: Vec<u8>, from_record: bool) -> SealedEvent {
        SealedEvent {
            inner: std::sync::Arc::new(Sealed {
                record,
                hash,
                canonical,
                leaf: std::sync::OnceLock::new(),
                from_record,
            }),
        }
    }
    /// Whether its bytes were made from its record ([`EventRecord::seal`]), so that sealing
    /// the record again gives them back exactly; `false` for an event parsed from bytes.
    pub fn is_sealed_from_record(&self) -> bool {
        self.inner.from_record
    }
    pub fn record(&self) -> &EventRecord {
        &self.inner.record
    }
    pub fn seq(&self) -> u64 {
        self.inner.record.seq
    }
    pub fn hash(&self) -> Hash {
        self.inner.hash
    }
    pub fn body(&self) -> &EventBody {
        &self.inner.record.body
    }
    /// The RFC 8785 bytes the hash is computed over; also the Merkle leaf input.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.inner.canonical
    }
    /// The Merkle tree's leaf hash of this event ([`crate::merkle::leaf_hash`] of its
    /// canonical bytes), computed once.
    pub fn leaf_hash(&self) -> Hash {
        *self
            .inner
            .leaf
            .get_or_init(|| crate::merkle::leaf_hash(&self.inner.canonical))
    }

    /// Re-reads an event from its canonical bytes, recomputing the hash. Used when reading
    /// storage: what comes back is checked, not trusted.
    pub fn from_canonical(canonical: Vec<u8>) -> Result<SealedEvent, ChainError> {
        let record: EventRecord =
            serde_json::from_slice(&canonical).map_err(|e| ChainError::Malformed {
                seq: None,
                reason: e.to_string(),
            })?;
        let hash = sha256(&canonical);
        Ok(SealedEvent::new(record, hash, canonical, false))
    }

    /// The exported form: RFC 8785 bytes of the record with its `hash` member added.
    pub fn export_line(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Exported<'a> {
            #[serde(flatten)]
            record: &'a EventRecord,
            hash: Hash,
        }
        crate::jcs::to_vec(&Exported {
            record: self.record(),
            hash: self.hash(),
        })
        .expect("event records canonicalize")
    }
}

/// An event as a generic JSON object with its `seq`, for the type-agnostic checks below.
fn parse_event_object(
    bytes: &[u8],
) -> Result<(serde_json::Map<String, serde_json::Value>, u64), ChainError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ChainError::Malformed {
            seq: None,
            reason: format!("not JSON: {e}"),
        })?;
    let serde_json::Value::Object(object) = value else {
        return Err(ChainError::Malformed {
            seq: None,
            reason: "an event is a JSON object".into(),
        });
    };
    let seq = object
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .ok_or(ChainError::Malformed {
            seq: None,
            reason: "`seq` is missing or not a non-negative integer".into(),
        })?;
    Ok((object, seq))
}

/// A member of an event object that holds a hash in lowercase hex.
fn hash_member(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    seq: u64,
) -> Result<Hash, ChainError> {
    let malformed = |reason: String| ChainError::Malformed {
        seq: Some(seq),
        reason,
    };
    match object.get(name) {
        Some(serde_json::Value::String(s)) => {
            Hash::from_hex(s).map_err(|e| malformed(format!("`{name}`: {e}")))
        }
        _ => Err(malformed(format!("`{name}` is missing or not a string"))),
    }
}

fn canonicalize(
    object: &serde_json::Map<String, serde_json::Value>,
    seq: u64,
) -> Result<Vec<u8>, ChainError> {
    crate::jcs::to_vec(object).map_err(|e| ChainError::Malformed {
        seq: Some(seq),
        reason: e.to_string(),
    })
}

/// Checks one exported event line without knowing its event types: the line must be a JSON
/// object in RFC 8785 canonical form (re-canonicalizing it gives the same bytes, so no
/// duplicate member, white space or other spelling can show a reader something the hash
/// does not cover); take out `hash`, re-canonicalize, hash, compare. Returns the canonical
/// bytes (the Merkle leaf input), the declared `seq`, `prev` and the hash. This is all a
/// third-party verifier needs.
pub fn check_export_line(line: &[u8]) -> Result<CheckedLine, ChainError> {
    let (mut object, seq) = parse_event_object(line)?;
    let declared = hash_member(&object, "hash", seq)?;
    if canonicalize(&object, seq)? != line {
        return Err(ChainError::Malformed {
            seq: Some(seq),
            reason: "the line is not in RFC 8785 canonical form (a duplicate member, white \
                     space, or members out of order)"
                .into(),
        });
    }
    object.remove("hash");
    let prev = hash_member(&object, "prev", seq)?;
    let canonical = canonicalize(&object, seq)?;
    let computed = sha256(&canonical);
    if computed != declared {
        return Err(ChainError::HashMismatch {
            seq,
            declared,
            computed,
        });
    }
    Ok(CheckedLine {
        seq,
        prev,
        hash: computed,
        canonical,
    })
}

/// Checks one log entry: an event's canonical bytes as served in an entry bundle
/// (`tile/entries/...`) or a receipt bundle. The entry must be a JSON object in RFC 8785
/// canonical form (re-canonicalizing it gives the same bytes) with a `seq` and a `prev`;
/// its hash is SHA-256 of the bytes. Like [`check_export_line`], it needs no event types.
pub fn check_entry(entry: &[u8]) -> Result<CheckedLine, ChainError> {
    let (object, seq) = parse_event_object(entry)?;
    let malformed = |reason: &str| ChainError::Malformed {
        seq: Some(seq),
        reason: reason.into(),
    };
    if object.contains_key("hash") {
        return Err(malformed("an entry has no `hash` member"));
    }
    let prev = hash_member(&object, "prev", seq)?;
    let canonical = canonicalize(&object, seq)?;
    if canonical != entry {
        return Err(malformed("the entry is not in RFC 8785 canonical form"));
    }
    Ok(CheckedLine {
        seq,
        prev,
        hash: sha256(entry),
        canonical,
    })
}

/// An exported line whose hash has been recomputed and found right.
#[derive(Debug, Clone)]
pub struct CheckedLine {
    pub seq: u64,
    pub prev: Hash,
    pub hash: Hash,
    pub canonical: Vec<u8>,
}

/// Walks a chain in order and checks each link: positions count up from the start, each
/// `prev` is the hash before it. Feed it events one at a time.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev: Hash,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

impl ChainVerifier {
    /// A verifier for a chain that starts at seq 0.
    pub fn new() -> ChainVerifier {
        ChainVerifier {
            next_seq: 0,
            prev: Hash::ZERO,
        }
    }

    /// A verifier that resumes after a trusted event.
    pub fn resume(next_seq: u64, prev: Hash) -> ChainVerifier {
        ChainVerifier { next_seq, prev }
    }

    /// Checks the link of the next event.
    pub fn push(&mut self, seq: u64, prev: Hash, hash: Hash) -> Result<(), ChainError> {
        if seq != self.next_seq {
            return Err(ChainError::SeqGap {
                expected: self.next_seq,
                found: seq,
            });
        }
        if prev != self.prev {
            return Err(ChainError::BrokenLink {
                seq,
                expected_prev: self.prev,
                found_prev: prev,
            });
        }
        self.next_seq += 1;
        self.prev = hash;
        Ok(())
    }

    /// Checks a sealed event's link.
    pub fn push_sealed(&mut self, event: &SealedEvent) -> Result<(), ChainError> {
        self.push(event.seq(), event.record().prev, event.hash())
    }

    /// How many events have been checked (the next expected seq).
    pub fn len(&self) -> u64 {
        self.next_seq
    }
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
    /// The hash of the last checked event (zeros when none).
    pub fn head(&self) -> Hash {
        self.prev
    }
}
