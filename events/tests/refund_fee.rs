//! `donation_refunded`: the part of the gift's fee the channel gave back is an optional
//! member, so a refund without it (every refund of an older log) keeps its bytes and hash.
//! `refund_fee_returned`: a fee given back that a refund did not record, added later.

use events::*;

fn record(fee_returned_minor: Option<u64>) -> EventRecord {
    EventRecord {
        seq: 9,
        prev: Hash([9; 32]),
        ledger: Id::new("erqi").unwrap(),
        ts_ms: 1_539_100_000_000,
        actor: Id::new("admin").unwrap(),
        idempotency: None,
        token_issuer: None,
        body: EventBody::DonationRefunded(DonationRefunded {
            donation_seq: 3,
            fee_returned_minor,
            reason: Text::new("donor asked").unwrap(),
        }),
    }
}

/// The bytes of a refund as the ledger sealed it before the member existed read back to the
/// same record, canonical bytes and hash.
#[test]
fn a_refund_of_an_older_log_reads_back_unchanged() {
    let old = r#"{"actor":"admin","data":{"donation_seq":3,"reason":"donor asked"},"ledger":"erqi","prev":"0909090909090909090909090909090909090909090909090909090909090909","seq":9,"ts_ms":1539100000000,"type":"donation_refunded"}"#;
    let read = SealedEvent::from_canonical(old.as_bytes().to_vec()).unwrap();
    let resealed = record(None).seal().unwrap();
    assert_eq!(resealed.canonical_bytes(), old.as_bytes());
    assert_eq!(resealed.hash(), read.hash());
}

#[test]
fn a_returned_fee_is_sealed_in_canonical_order_and_read_back() {
    let sealed = record(Some(6)).seal().unwrap();
    let text = std::str::from_utf8(sealed.canonical_bytes()).unwrap();
    assert!(
        text.contains(r#""data":{"donation_seq":3,"fee_returned_minor":6,"reason":"#),
        "{text}"
    );
    let back = SealedEvent::from_canonical(sealed.canonical_bytes().to_vec()).unwrap();
    let EventBody::DonationRefunded(r) = back.body() else {
        panic!("not a refund");
    };
    assert_eq!(r.fee_returned_minor, Some(6));
    assert_eq!(back.hash(), sealed.hash());
}

/// On the event alone, a fee given back is 1 to 2^53 − 1: zero is spelt by leaving the
/// member out (one spelling per refund). The bound by the gift's own fee is the writer's.
#[test]
fn a_returned_fee_of_zero_or_beyond_the_limit_is_refused_naming_the_field() {
    for fee in [1, AMOUNT_MINOR_MAX] {
        assert!(record(Some(fee)).body.validate().is_ok(), "{fee}");
    }
    for fee in [0, AMOUNT_MINOR_MAX + 1, u64::MAX] {
        match record(Some(fee)).body.validate() {
            Err(ValueError::Invalid { field, reason }) => {
                assert_eq!(field, "fee_returned_minor");
                assert!(
                    reason.contains(&format!("1 to {AMOUNT_MINOR_MAX}")),
                    "{reason}"
                );
            }
            other => panic!("{fee}: {other:?}"),
        }
    }
}

fn correction(fee_returned_minor: u64) -> EventRecord {
    EventRecord {
        seq: 12,
        body: EventBody::RefundFeeReturned(RefundFeeReturned {
            fee_returned_minor,
            reason: Text::new("微信退款账单退回手续费").unwrap(),
            refund_seq: 9,
        }),
        ..record(None)
    }
}

/// The correction's canonical bytes, spelt out: its members in RFC 8785 order, its type
/// `refund_fee_returned`, the reason as raw UTF-8. They read back to the same record and
/// hash.
#[test]
fn a_correction_of_a_refunds_fee_has_these_canonical_bytes() {
    let sealed = correction(1).seal().unwrap();
    let expected = r#"{"actor":"admin","data":{"fee_returned_minor":1,"reason":"微信退款账单退回手续费","refund_seq":9},"ledger":"erqi","prev":"0909090909090909090909090909090909090909090909090909090909090909","seq":12,"ts_ms":1539100000000,"type":"refund_fee_returned"}"#;
    assert_eq!(
        std::str::from_utf8(sealed.canonical_bytes()).unwrap(),
        expected
    );
    assert_eq!(sealed.hash(), sha256(expected.as_bytes()));
    let back = SealedEvent::from_canonical(expected.as_bytes().to_vec()).unwrap();
    assert_eq!(back.record(), sealed.record());
    assert_eq!(back.hash(), sealed.hash());
    assert_eq!(back.body().type_name(), "refund_fee_returned");
}

/// A correction names the refund and the fee, each required; no other member is taken.
#[test]
fn a_correction_without_its_members_or_with_another_is_not_read() {
    let good = r#"{"actor":"admin","data":{"fee_returned_minor":1,"reason":"x","refund_seq":9},"ledger":"erqi","prev":"0909090909090909090909090909090909090909090909090909090909090909","seq":12,"ts_ms":1539100000000,"type":"refund_fee_returned"}"#;
    assert!(SealedEvent::from_canonical(good.as_bytes().to_vec()).is_ok());
    for bad in [
        good.replace(r#""fee_returned_minor":1,"#, ""),
        good.replace(r#","refund_seq":9"#, ""),
        good.replace(r#""reason":"x","#, ""),
        good.replace(r#""refund_seq":9"#, r#""refund_seq":9,"x":1"#),
    ] {
        assert!(
            SealedEvent::from_canonical(bad.into_bytes()).is_err(),
            "read a malformed correction"
        );
    }
}

/// On the event alone, the fee a correction adds is 1 to 2^53 − 1, named with its field
/// and the limit; the bound by the gift's fee (less what was given back before) is the
/// writer's.
#[test]
fn a_corrections_fee_of_zero_or_beyond_the_limit_is_refused_naming_the_field() {
    for fee in [1, AMOUNT_MINOR_MAX] {
        assert!(correction(fee).body.validate().is_ok(), "{fee}");
    }
    for fee in [0, AMOUNT_MINOR_MAX + 1, u64::MAX] {
        match correction(fee).body.validate() {
            Err(ValueError::Invalid { field, reason }) => {
                assert_eq!(field, "fee_returned_minor");
                assert!(
                    reason.contains(&format!("1 to {AMOUNT_MINOR_MAX} minor units (got {fee})")),
                    "{reason}"
                );
            }
            other => panic!("{fee}: {other:?}"),
        }
    }
}
