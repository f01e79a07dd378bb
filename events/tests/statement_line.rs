//! `statement_line_recorded`: a line's fee is signed (charged positive, returned negative),
//! a fee finer than the fen is kept exactly beside its rounded fen, and a line recorded
//! before fees were signed reads back byte for byte.

use events::*;

fn record(fee_minor: i64) -> EventRecord {
    record_exact(fee_minor, None)
}

fn record_exact(fee_minor: i64, fee_milli_minor: Option<i64>) -> EventRecord {
    EventRecord {
        seq: 7,
        prev: Hash([7; 32]),
        ledger: Id::new("erqi").unwrap(),
        ts_ms: 1_539_100_000_000,
        actor: Id::new("recorder").unwrap(),
        idempotency: None,
        token_issuer: None,
        body: EventBody::StatementLineRecorded(StatementLineRecorded {
            statement_seq: 6,
            line_no: 1,
            kind: StatementLineKind::Refund,
            reference: "RF-1".into(),
            original_reference: Some("wechat-0000000001".into()),
            booked_ms: 1_539_050_400_000,
            amount_minor: Amount::new(1_000).unwrap(),
            fee_minor,
            fee_milli_minor,
            currency: Currency::CNY,
        }),
    }
}

fn fee_of(e: &SealedEvent) -> i64 {
    match e.body() {
        EventBody::StatementLineRecorded(l) => l.fee_minor,
        other => panic!("not a statement line: {other:?}"),
    }
}

/// A WeChat refund's `-0.06` fee is sealed as `-6`, and reads back as `-6` (it was 6).
#[test]
fn a_returned_fee_keeps_its_sign_through_sealing_and_reading() {
    let sealed = record(-6).seal().unwrap();
    let text = std::str::from_utf8(sealed.canonical_bytes()).unwrap();
    assert!(text.contains(r#""fee_minor":-6,"#), "{text}");
    let back = SealedEvent::from_canonical(sealed.canonical_bytes().to_vec()).unwrap();
    assert_eq!(fee_of(&back), -6);
    assert_eq!(back.hash(), sealed.hash());
    let checked = check_export_line(&sealed.export_line()).unwrap();
    assert_eq!(checked.hash, sealed.hash());
}

/// The bytes of a line as the ledger sealed it before fees were signed (an unsigned
/// integer): they read back to the same record, canonical bytes and hash.
#[test]
fn a_line_of_an_older_log_reads_back_unchanged() {
    let old = r#"{"actor":"recorder","data":{"amount_minor":1000,"booked_ms":1539050400000,"currency":"CNY","fee_minor":6,"kind":"refund","line_no":1,"original_reference":"wechat-0000000001","reference":"RF-1","statement_seq":6},"ledger":"erqi","prev":"0707070707070707070707070707070707070707070707070707070707070707","seq":7,"ts_ms":1539100000000,"type":"statement_line_recorded"}"#;
    let read = SealedEvent::from_canonical(old.as_bytes().to_vec()).unwrap();
    assert_eq!(fee_of(&read), 6);
    let resealed = record(6).seal().unwrap();
    assert_eq!(resealed.canonical_bytes(), old.as_bytes());
    assert_eq!(resealed.hash(), read.hash());
}

#[test]
fn a_fee_beyond_the_limit_is_refused_naming_the_field_and_limit() {
    let max = AMOUNT_MINOR_MAX as i64;
    for fee in [max, -max, 0] {
        assert!(record(fee).body.validate().is_ok(), "{fee}");
    }
    for fee in [max + 1, -max - 1, i64::MIN] {
        let err = record(fee).body.validate().unwrap_err().to_string();
        assert!(err.contains("fee_minor"), "{err}");
        assert!(err.contains(&format!("-{max} to {max}")), "{err}");
    }
}

/// WeChat Pay's `-0.05940` (a refund giving back its share of a fee) is kept exactly, in
/// thousandths of a fen, beside the fen it rounds to; both are hashed and read back.
#[test]
fn a_fee_below_the_fen_is_kept_exactly_beside_its_rounded_fen() {
    let sealed = record_exact(-6, Some(-5_940)).seal().unwrap();
    let text = std::str::from_utf8(sealed.canonical_bytes()).unwrap();
    assert!(
        text.contains(r#""fee_milli_minor":-5940,"fee_minor":-6,"#),
        "{text}"
    );
    let back = SealedEvent::from_canonical(sealed.canonical_bytes().to_vec()).unwrap();
    let EventBody::StatementLineRecorded(line) = back.body() else {
        panic!("not a statement line");
    };
    assert_eq!((line.fee_minor, line.fee_milli_minor), (-6, Some(-5_940)));
    assert_eq!(line.fee_exact_milli_minor(), -5_940);
    assert_eq!(back.hash(), sealed.hash());
    assert!(back.body().validate().is_ok());
    // A whole fee is recorded as before, without the member.
    let whole = record(-6).seal().unwrap();
    let text = std::str::from_utf8(whole.canonical_bytes()).unwrap();
    assert!(!text.contains("fee_milli_minor"), "{text}");
}

/// Each fee has one spelling: the thousandths only when they are not whole fen, the fen
/// their rounding (half away from zero), within ±(2^53 − 1). Each refusal names its field.
#[test]
fn an_exact_fee_must_agree_with_its_fen() {
    let refused = |fee_minor: i64, milli: i64| -> (&'static str, String) {
        match record_exact(fee_minor, Some(milli)).body.validate() {
            Err(ValueError::Invalid { field, reason }) => (field, reason),
            other => panic!("{fee_minor} / {milli}: {other:?}"),
        }
    };
    let (field, reason) = refused(6, 6_000);
    assert_eq!(field, "fee_milli_minor");
    assert!(reason.contains("not a whole number"), "{reason}");
    let (field, reason) = refused(5, 5_940);
    assert_eq!(field, "fee_minor");
    assert!(
        reason.contains("rounded half away from zero: 6 (got 5)"),
        "{reason}"
    );
    assert_eq!(refused(0, -500).0, "fee_minor", "-0.5 fen rounds to -1");
    let (field, _) = refused(9_007_199_254_741, 9_007_199_254_740_993);
    assert_eq!(field, "fee_milli_minor");
    for (fee_minor, milli) in [(0, 499), (1, 500), (-1, -500), (6, 5_940)] {
        assert!(record_exact(fee_minor, Some(milli)).body.validate().is_ok());
    }
}
