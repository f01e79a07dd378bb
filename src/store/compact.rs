//! The compact stored form of gifts and matches in the sled log's chunks.
//!
//! Gifts and the matches they trigger are nearly every event of a busy ledger, and sled
//! writes every byte of a log leaf about three times (splits, then its segment cleaner:
//! docs/BENCHMARKS.md, eleventh session). So a gift or a match sealed here is stored as its
//! record's fields in a binary form of about two fifths of its canonical bytes: `prev` as 32
//! bytes rather than 64 hex digits, integers as 8 bytes, strings verbatim behind a 2-byte
//! length, no member names. Reading one seals the record again and checks the result
//! against the stored hash, so a stored form that did not give back the very bytes that were
//! hashed would be reported as a corrupt log, never served. Only events whose bytes were
//! made from their record ([`SealedEvent::is_sealed_from_record`]) are stored this way;
//! any other event keeps its canonical bytes.
//!
//! Layout (all integers big-endian): `prev` (32) ‖ `ts_ms` (8) ‖ `ledger` ‖ `actor` ‖
//! `token_issuer`? ‖ `idempotency`? (`key` ‖ `command_sha256` (32)) ‖ kind (1), then for a
//! gift (kind 0) `amount_minor` (8) ‖ `anonymous` (1) ‖ `channel` (1, its index in
//! [`Channel::ALL`]) ‖ `channel_txn_id` ‖ `currency` (3) ‖ `donor_ref` ‖ `fee_minor` (8) ‖
//! `pledge_seq`? (8) ‖ `project` ‖ `public_name`? ‖ `receipt_code`, and for a match (kind 1)
//! `amount_minor` (8) ‖ `donation_seq` (8) ‖ `pool` ‖ `project`. A string is a 2-byte length
//! and its UTF-8 bytes; `x?` is a byte 0 (absent) or 1 followed by `x`. The event's `seq` is
//! its position in the chunk, as for every stored event.

use events::{
    Amount, Channel, Currency, DonationReceived, EventBody, EventRecord, Hash, Id, Idempotency,
    MatchAllocated, SealedEvent, Text,
};

const GIFT: u8 = 0;
const MATCH: u8 = 1;

/// Appends the compact form of `e` to `out` and returns `true`, or leaves `out` as it was
/// and returns `false` for an event that has none (not a gift or a match, not sealed from
/// its record, or a string longer than a 2-byte length).
pub fn encode(out: &mut Vec<u8>, e: &SealedEvent) -> bool {
    let start = out.len();
    let written = e.is_sealed_from_record() && write(out, e.record()).is_some();
    if !written {
        out.truncate(start);
    }
    written
}

fn write(out: &mut Vec<u8>, r: &EventRecord) -> Option<()> {
    out.extend_from_slice(r.prev.as_bytes());
    out.extend_from_slice(&r.ts_ms.to_be_bytes());
    put_str(out, r.ledger.as_str())?;
    put_str(out, r.actor.as_str())?;
    put_opt(out, r.token_issuer.as_ref(), |out, issuer| {
        put_str(out, issuer.as_str())
    })?;
    put_opt(out, r.idempotency.as_ref(), |out, i| {
        put_str(out, &i.key)?;
        out.extend_from_slice(i.command_sha256.as_bytes());
        Some(())
    })?;
    match &r.body {
        EventBody::DonationReceived(d) => {
            out.push(GIFT);
            out.extend_from_slice(&d.amount_minor.minor().to_be_bytes());
            out.push(u8::from(d.anonymous));
            let channel = Channel::ALL.iter().position(|c| *c == d.channel)?;
            out.push(u8::try_from(channel).ok()?);
            put_str(out, &d.channel_txn_id)?;
            out.extend_from_slice(d.currency.as_str().as_bytes());
            put_str(out, d.donor_ref.as_str())?;
            out.extend_from_slice(&d.fee_minor.to_be_bytes());
            put_opt(out, d.pledge_seq, |out, seq| {
                out.extend_from_slice(&seq.to_be_bytes());
                Some(())
            })?;
            put_str(out, d.project.as_str())?;
            put_opt(out, d.public_name.as_ref(), |out, name| {
                put_str(out, name.as_str())
            })?;
            put_str(out, &d.receipt_code)
        }
        EventBody::MatchAllocated(m) => {
            out.push(MATCH);
            out.extend_from_slice(&m.amount_minor.minor().to_be_bytes());
            out.extend_from_slice(&m.donation_seq.to_be_bytes());
            put_str(out, m.pool.as_str())?;
            put_str(out, m.project.as_str())
        }
        _ => None,
    }
}

/// `x?`: a byte 0 for `None`, or 1 and what `put` writes of the value.
fn put_opt<T>(
    out: &mut Vec<u8>,
    value: Option<T>,
    put: impl FnOnce(&mut Vec<u8>, T) -> Option<()>,
) -> Option<()> {
    match value {
        None => {
            out.push(0);
            Some(())
        }
        Some(v) => {
            out.push(1);
            put(out, v)
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
}

/// The record stored in compact form `bytes` at `seq`; why not, for a malformed one.
pub fn decode(seq: u64, bytes: &[u8]) -> Result<EventRecord, String> {
    let mut r = Reader { bytes };
    let record = read(seq, &mut r)?;
    if !r.bytes.is_empty() {
        return Err("bytes left over after a compact event".into());
    }
    Ok(record)
}

fn read(seq: u64, r: &mut Reader<'_>) -> Result<EventRecord, String> {
    let prev = Hash(r.array()?);
    let ts_ms = r.u64()?;
    let ledger = r.id()?;
    let actor = r.id()?;
    let token_issuer = r.opt(Reader::id)?;
    let idempotency = r.opt(|r| {
        Ok(Idempotency {
            key: r.str()?.to_owned(),
            command_sha256: Hash(r.array()?),
        })
    })?;
    let body = match r.u8()? {
        GIFT => EventBody::DonationReceived(DonationReceived {
            amount_minor: r.amount()?,
            anonymous: r.flag()?,
            channel: *Channel::ALL
                .get(usize::from(r.u8()?))
                .ok_or("an unknown channel")?,
            channel_txn_id: r.str()?.to_owned(),
            currency: {
                let code: [u8; 3] = r.array()?;
                let code = std::str::from_utf8(&code).map_err(|e| e.to_string())?;
                Currency::new(code).map_err(|e| e.to_string())?
            },
            donor_ref: r.id()?,
            fee_minor: r.u64()?,
            pledge_seq: r.opt(Reader::u64)?,
            project: r.id()?,
            public_name: r.opt(|r| Text::new(r.str()?).map_err(|e| e.to_string()))?,
            receipt_code: r.str()?.to_owned(),
        }),
        MATCH => EventBody::MatchAllocated(MatchAllocated {
            amount_minor: r.amount()?,
            donation_seq: r.u64()?,
            pool: r.id()?,
            project: r.id()?,
        }),
        kind => return Err(format!("an unknown compact event kind {kind}")),
    };
    Ok(EventRecord {
        seq,
        prev,
        ledger,
        ts_ms,
        actor,
        idempotency,
        token_issuer,
        body,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("a truncated compact event".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("a flag byte of {other}")),
        }
    }

    /// `x?`: `None` after a byte 0, what `read` reads after a byte 1.
    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.flag()? {
            false => Ok(None),
            true => read(self).map(Some),
        }
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn amount(&mut self) -> Result<Amount, String> {
        Amount::new(self.u64()?).map_err(|e| e.to_string())
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = u16::from_be_bytes(self.array()?);
        std::str::from_utf8(self.take(usize::from(len))?).map_err(|e| e.to_string())
    }

    fn id(&mut self) -> Result<Id, String> {
        Id::new(self.str()?).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = Id> {
        "[a-z][a-z0-9_.-]{0,30}".prop_map(|s| Id::new(&s).unwrap())
    }

    fn hash() -> impl Strategy<Value = Hash> {
        any::<[u8; 32]>().prop_map(Hash)
    }

    fn amount() -> impl Strategy<Value = Amount> {
        (1u64..=events::AMOUNT_MINOR_MAX).prop_map(|v| Amount::new(v).unwrap())
    }

    fn gift() -> impl Strategy<Value = EventBody> {
        (
            (amount(), any::<bool>(), 0..Channel::ALL.len(), "\\PC{0,40}"),
            (
                prop::sample::select(vec!["CNY", "USD", "HKD"]),
                id(),
                0u64..1_000_000,
            ),
            (proptest::option::of(0u64..1 << 40), id()),
            (proptest::option::of("[\\PC&&[^0-9]]{1,30}"), "\\PC{0,24}"),
        )
            .prop_map(
                |((a, anon, ch, txn), (cur, donor, fee), (pledge, project), (name, code))| {
                    EventBody::DonationReceived(DonationReceived {
                        amount_minor: a,
                        anonymous: anon,
                        channel: Channel::ALL[ch],
                        channel_txn_id: txn,
                        currency: Currency::new(cur).unwrap(),
                        donor_ref: donor,
                        fee_minor: fee,
                        pledge_seq: pledge,
                        project,
                        public_name: name.and_then(|n| Text::new(&n).ok()),
                        receipt_code: code,
                    })
                },
            )
    }

    fn a_match() -> impl Strategy<Value = EventBody> {
        (amount(), 0u64..1 << 50, id(), id()).prop_map(|(a, donation_seq, pool, project)| {
            EventBody::MatchAllocated(MatchAllocated {
                amount_minor: a,
                donation_seq,
                pool,
                project,
            })
        })
    }

    fn record() -> impl Strategy<Value = EventRecord> {
        (
            (0u64..1 << 40, hash(), id(), 0u64..1 << 50, id()),
            proptest::option::of(("[ -~]{1,64}", hash())),
            proptest::option::of(id()),
            prop_oneof![gift(), a_match()],
        )
            .prop_map(
                |((seq, prev, ledger, ts_ms, actor), idem, token_issuer, body)| EventRecord {
                    seq,
                    prev,
                    ledger,
                    ts_ms,
                    actor,
                    idempotency: idem.map(|(key, command_sha256)| Idempotency {
                        key,
                        command_sha256,
                    }),
                    token_issuer,
                    body,
                },
            )
    }

    proptest! {
        /// Any gift or match sealed here comes back from its compact form as the same
        /// record, and so seals to the same bytes and hash; the form is far smaller.
        #[test]
        fn a_compact_gift_or_match_seals_back_to_the_same_event(r in record()) {
            let sealed = r.clone().seal().unwrap();
            let mut out = Vec::new();
            prop_assert!(encode(&mut out, &sealed));
            prop_assert!(out.len() < sealed.canonical_bytes().len());
            let back = decode(r.seq, &out).unwrap();
            prop_assert_eq!(&back, &r);
            prop_assert_eq!(back.seal().unwrap(), sealed);
        }

        /// A truncated form is refused, never misread.
        #[test]
        fn a_truncated_compact_event_is_refused(r in record(), cut in 1usize..64) {
            let mut out = Vec::new();
            prop_assert!(encode(&mut out, &r.clone().seal().unwrap()));
            let cut = cut.min(out.len());
            prop_assert!(decode(r.seq, &out[..out.len() - cut]).is_err());
        }
    }

    /// Events of other kinds, and events parsed from bytes rather than sealed here, keep
    /// their canonical bytes.
    #[test]
    fn other_events_have_no_compact_form() {
        let open = EventRecord {
            seq: 0,
            prev: Hash::ZERO,
            ledger: Id::new("test").unwrap(),
            ts_ms: 1,
            actor: Id::new("admin").unwrap(),
            idempotency: None,
            token_issuer: None,
            body: EventBody::ProjectClosed(events::ProjectClosed {
                project: Id::new("cp").unwrap(),
                reason: Text::new("done").unwrap(),
            }),
        }
        .seal()
        .unwrap();
        let mut out = vec![7];
        assert!(!encode(&mut out, &open));
        assert_eq!(out, [7]);
        let gift = EventRecord {
            body: EventBody::MatchAllocated(MatchAllocated {
                amount_minor: Amount::new(100).unwrap(),
                donation_seq: 0,
                pool: Id::new("pool").unwrap(),
                project: Id::new("cp").unwrap(),
            }),
            ..open.record().clone()
        }
        .seal()
        .unwrap();
        assert!(encode(&mut out, &gift));
        let parsed = SealedEvent::from_canonical(gift.canonical_bytes().to_vec()).unwrap();
        let mut again = Vec::new();
        assert!(!encode(&mut again, &parsed));
        assert!(again.is_empty());
    }
}
