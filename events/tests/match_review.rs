//! `match_frozen`, `match_unfrozen`, `match_revoked`: the steps of a match's review, one
//! shape, every member required, sealed in canonical order.

use events::*;

fn review() -> MatchReview {
    MatchReview {
        amount_minor: Amount::new(50).unwrap(),
        donation_seq: 7,
        pool: Id::new("pool-a").unwrap(),
        project: Id::new("cp-001").unwrap(),
        reason: Text::new("split across new donors").unwrap(),
    }
}

fn record(body: EventBody) -> EventRecord {
    EventRecord {
        seq: 9,
        prev: Hash([9; 32]),
        ledger: Id::new("erqi").unwrap(),
        ts_ms: 1_539_100_000_000,
        actor: Id::new("risk-wang").unwrap(),
        idempotency: None,
        token_issuer: None,
        body,
    }
}

#[test]
fn each_step_is_sealed_with_its_type_and_members_in_canonical_order() {
    for (body, name) in [
        (EventBody::MatchFrozen(review()), "match_frozen"),
        (EventBody::MatchUnfrozen(review()), "match_unfrozen"),
        (EventBody::MatchRevoked(review()), "match_revoked"),
    ] {
        assert_eq!(body.type_name(), name);
        assert!(body.validate().is_ok());
        let sealed = record(body.clone()).seal().unwrap();
        let text = std::str::from_utf8(sealed.canonical_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"actor":"risk-wang","data":{{"amount_minor":50,"donation_seq":7,"pool":"pool-a","project":"cp-001","reason":"split across new donors"}},"ledger":"erqi","prev":"{}","seq":9,"ts_ms":1539100000000,"type":"{name}"}}"#,
                "09".repeat(32)
            )
        );
        let back = SealedEvent::from_canonical(sealed.canonical_bytes().to_vec()).unwrap();
        assert_eq!(back.body(), &body);
        assert_eq!(back.hash(), sealed.hash());
    }
}

#[test]
fn a_step_without_a_member_or_with_a_bad_one_does_not_read() {
    let full = r#"{"actor":"risk-wang","data":{"amount_minor":50,"donation_seq":7,"pool":"pool-a","project":"cp-001","reason":"split"},"ledger":"erqi","prev":"0909090909090909090909090909090909090909090909090909090909090909","seq":9,"ts_ms":1539100000000,"type":"match_frozen"}"#;
    assert!(SealedEvent::from_canonical(full.as_bytes().to_vec()).is_ok());
    for member in [
        r#""amount_minor":50,"#,
        r#""donation_seq":7,"#,
        r#""pool":"pool-a","#,
        r#""project":"cp-001","#,
        r#","reason":"split""#,
    ] {
        let without = full.replacen(member, "", 1);
        assert!(
            SealedEvent::from_canonical(without.into_bytes()).is_err(),
            "read without {member}"
        );
    }
    let zero = full.replacen(r#""amount_minor":50"#, r#""amount_minor":0"#, 1);
    assert!(SealedEvent::from_canonical(zero.into_bytes()).is_err());
    let empty = full.replacen(r#""reason":"split""#, r#""reason":"""#, 1);
    assert!(SealedEvent::from_canonical(empty.into_bytes()).is_err());
}
