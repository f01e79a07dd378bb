//! Canonical bytes against RFC 8785 input/output pairs published with the reference
//! implementation (cyberphone/json-canonicalization, testdata/{input,output}), and against
//! the event format itself.

use events::*;

fn canonical(input: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(input).expect("vector input is JSON");
    String::from_utf8(serde_json_canonicalizer::to_vec(&value).expect("canonicalizes")).unwrap()
}

/// The same through the ledger's one-pass canonicalizer, which refuses floats.
fn fast(input: &str) -> Result<String, events::jcs::JcsError> {
    let value: serde_json::Value = serde_json::from_str(input).expect("vector input is JSON");
    events::jcs::to_vec(&value).map(|bytes| String::from_utf8(bytes).unwrap())
}

#[test]
fn rfc8785_structures() {
    let input = r#"{
  "1": {"f": {"f": "hi","F": 5} ,"\n": 56.0},
  "10": { },
  "": "empty",
  "a": { },
  "111": [ { } ],
  "A": { }
}"#;
    let output =
        r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}"#;
    assert_eq!(canonical(input), output);
}

#[test]
fn rfc8785_values() {
    let input = r#"{
  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    let output = r#"{"escaping":"€$\u000f\nA'B\"\\\\\"/","literals":[null,true,false],"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}"#;
    assert_eq!(canonical(input), output);
    // The ledger has no floats: its canonicalizer refuses them rather than guess.
    assert!(fast(input).is_err());
    // Without the numbers, the same escaping and literals.
    let no_numbers = input.replace(
        "\"numbers\": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],",
        "",
    );
    assert_eq!(
        fast(&no_numbers).unwrap(),
        output.replace(",\"numbers\":[1e+30,4.5,333333333.3333333,0.002,1e-27]", "")
    );
}

#[test]
fn rfc8785_french_sorting_ignores_locale() {
    let input = "{\n  \"peach\": \"This sorting order\",\n  \"péché\": \"is wrong according to French\",\n  \"pêche\": \"but canonicalization MUST\",\n  \"sin\":   \"ingnore locale\"\n}\n";
    let output = r#"{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}"#;
    assert_eq!(canonical(input), output);
    assert_eq!(fast(input).unwrap(), output);
}

#[test]
fn rfc8785_weird_keys_sort_by_utf16_code_units() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}
"#;
    let output = "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canonical(input), output);
    assert_eq!(fast(input).unwrap(), output);
}

fn sample_record() -> EventRecord {
    EventRecord {
        seq: 7,
        prev: Hash([0x11; 32]),
        ledger: Id::new("erqi").unwrap(),
        ts_ms: 1_539_050_400_000,
        actor: Id::new("recorder-liu").unwrap(),
        idempotency: Some(Idempotency {
            key: "wx-notify-0001".into(),
            command_sha256: Hash([0x22; 32]),
        }),
        token_issuer: Some(Id::new("admin-zhao").unwrap()),
        body: EventBody::DonationReceived(DonationReceived {
            project: Id::new("cp-001").unwrap(),
            amount_minor: Amount::new(100).unwrap(),
            currency: Currency::CNY,
            channel: Channel::Wechat,
            channel_txn_id: "wx-4200000001".into(),
            fee_minor: 0,
            pledge_seq: None,
            anonymous: false,
            public_name: Some(Text::new("热心市民\"小王\"").unwrap()),
            donor_ref: Id::new("donor-000042").unwrap(),
            receipt_code: "3F2A-91C0-5B7E-D4A8".into(),
        }),
    }
}

/// RFC 8785 numbers are IEEE doubles: an integer beyond 2^53 − 1 is written differently by
/// every other implementation, so an event holding one is refused when sealed (an error,
/// not a panic); plain `to_vec` still writes any integer (for digests and re-reading).
#[test]
fn an_event_with_an_integer_beyond_2_pow_53_is_not_sealed() {
    let mut record = sample_record();
    record.ts_ms = events::jcs::SAFE_INTEGER_MAX;
    assert!(record.clone().seal().is_ok());
    record.ts_ms = events::jcs::SAFE_INTEGER_MAX + 2;
    let e = record.clone().seal().unwrap_err();
    assert!(
        e.to_string().starts_with("event: ")
            && e.to_string()
                .contains("the integer 9007199254740993 is beyond 2^53 - 1"),
        "{e}"
    );
    assert!(events::jcs::to_vec(&record).is_ok());
    assert_eq!(
        events::jcs::to_vec_i_json(&serde_json::json!({"n": -9007199254740993i64}))
            .unwrap_err()
            .to_string(),
        "not canonicalizable: the integer -9007199254740993 is beyond 2^53 - 1, the largest RFC 8785 (I-JSON) writes exactly"
    );
}

#[test]
fn event_canonical_bytes_are_a_fixed_point() {
    let sealed = sample_record().seal().unwrap();
    let bytes = sealed.canonical_bytes();
    let text = std::str::from_utf8(bytes).unwrap();
    // Re-canonicalizing the canonical form changes nothing.
    assert_eq!(canonical(text), text);
    // Keys are sorted, there is no white space outside strings, and no `hash` member.
    assert!(
        text.starts_with(r#"{"actor":"recorder-liu","data":{"amount_minor":100,"#),
        "{text}"
    );
    assert!(!text.contains("\"hash\""));
    assert!(text.contains(r#""public_name":"热心市民\"小王\"""#));
    // Absent optionals are omitted, not null.
    assert!(!text.contains("pledge_seq"));
    // A record serializes in canonical order already: the canonicalizer has nothing to sort.
    assert_eq!(serde_json::to_vec(&sample_record()).unwrap(), bytes);
}

/// The names of a struct's fields in declaration order, as its derived `Deserialize` lists
/// them.
fn declared_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Fields {}
    impl serde::de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    impl<'de> serde::Deserializer<'de> for Probe {
        type Error = Fields;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Fields(fields)) => fields,
        Ok(_) => unreachable!("the probe deserializes nothing"),
    }
}

/// Every event struct declares its fields in RFC 8785 order (ASCII names, so byte order), so
/// events serialize in canonical order and the canonicalizer only checks it (fast path).
#[test]
fn event_structs_declare_their_fields_in_canonical_order() {
    let structs = [
        declared_fields::<ProjectOpened>(),
        declared_fields::<ProjectClosed>(),
        declared_fields::<DonationReceived>(),
        declared_fields::<DonationRefunded>(),
        declared_fields::<RefundFeeReturned>(),
        declared_fields::<PledgeMade>(),
        declared_fields::<PledgeCancelled>(),
        declared_fields::<MatchingPoolCommitted>(),
        declared_fields::<MatchingPoolClosed>(),
        declared_fields::<MatchAllocated>(),
        declared_fields::<MatchReleased>(),
        declared_fields::<MatchReview>(),
        declared_fields::<PayoutRequested>(),
        declared_fields::<Decision>(),
        declared_fields::<Rejection>(),
        declared_fields::<PayoutDisbursed>(),
        declared_fields::<MoveRequested>(),
        declared_fields::<StatementImported>(),
        declared_fields::<StatementLineRecorded>(),
        declared_fields::<ExceptionResolved>(),
        declared_fields::<Idempotency>(),
    ];
    for fields in structs {
        assert!(!fields.is_empty(), "{fields:?}");
        assert!(fields.is_sorted(), "not in canonical order: {fields:?}");
    }
}

#[test]
fn export_line_round_trips_through_the_generic_checker() {
    let sealed = sample_record().seal().unwrap();
    let line = sealed.export_line();
    let checked = check_export_line(&line).unwrap();
    assert_eq!(checked.seq, 7);
    assert_eq!(checked.prev, Hash([0x11; 32]));
    assert_eq!(checked.hash, sealed.hash());
    assert_eq!(checked.canonical, sealed.canonical_bytes());
    // The export line is itself canonical, with `hash` in its sorted place.
    let text = String::from_utf8(line.clone()).unwrap();
    assert_eq!(canonical(&text), text);
    assert!(text.contains(&format!("\"hash\":\"{}\"", sealed.hash())));
    // Any changed byte inside a value breaks the hash.
    let tampered = text.replace("\"amount_minor\":100", "\"amount_minor\":101");
    assert!(matches!(
        check_export_line(tampered.as_bytes()),
        Err(ChainError::HashMismatch { seq: 7, .. })
    ));
    // A line that parses to the same event but is not its canonical bytes is refused: a
    // duplicate member (JSON parsers keep one or the other, so a reader could be shown
    // 50,000 yuan where the hash covers 1), white space, a carriage return.
    let duplicate = text.replace(
        "\"amount_minor\":100",
        "\"amount_minor\":5000000,\"amount_minor\":100",
    );
    let spaced = text.replacen(",", ", ", 1);
    let crlf = format!("{text}\r");
    for line in [duplicate, spaced, crlf] {
        let e = check_export_line(line.as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("not in RFC 8785 canonical form"),
            "{e}"
        );
    }
}

#[test]
fn sealing_rejects_oversized_events() {
    let mut record = sample_record();
    if let EventBody::DonationReceived(d) = &mut record.body {
        d.channel_txn_id = "x".repeat(EVENT_BYTES_MAX);
    }
    assert!(matches!(
        record.seal(),
        Err(ValueError::EventTooLarge { .. })
    ));
}

#[test]
fn chain_verifier_names_the_first_bad_seq() {
    let mut prev = Hash::ZERO;
    let mut sealed = Vec::new();
    for seq in 0..4 {
        let mut r = sample_record();
        r.seq = seq;
        r.prev = prev;
        let s = r.seal().unwrap();
        prev = s.hash();
        sealed.push(s);
    }
    let mut chain = ChainVerifier::new();
    for s in &sealed {
        chain.push_sealed(s).unwrap();
    }
    assert_eq!(chain.len(), 4);
    assert_eq!(chain.head(), sealed[3].hash());

    // Skip event 2: the verifier names seq 2 as missing.
    let mut chain = ChainVerifier::new();
    chain.push_sealed(&sealed[0]).unwrap();
    chain.push_sealed(&sealed[1]).unwrap();
    let err = chain.push_sealed(&sealed[3]).unwrap_err();
    assert_eq!(err.seq(), Some(2));

    // A link to the wrong previous hash is named at the event that carries it.
    let mut r = sample_record();
    r.seq = 1;
    r.prev = Hash([9; 32]);
    let bad = r.seal().unwrap();
    let mut chain = ChainVerifier::new();
    chain.push_sealed(&sealed[0]).unwrap();
    let err = chain.push_sealed(&bad).unwrap_err();
    assert!(matches!(err, ChainError::BrokenLink { seq: 1, .. }));
}

mod random {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Text> {
        // Any characters but controls (refused by Text): quotes, backslashes, CJK, emoji, U+FFFF.
        "[\\PC\"\\\\/\u{7f}\u{80}\u{2028}\u{fb33}\u{1f602}]{1,40}"
            .prop_filter_map("text", |s| Text::new(&s).ok())
    }

    /// Any JSON value without floats: integers within ±(2^53 − 1) (I-JSON), any strings and
    /// member names (controls, quotes, backslashes, non-BMP characters), nesting up to 4 deep.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let any_text = "[\\PC\\pC\"\\\\/\u{7f}\u{80}\u{e000}\u{ffff}\u{1f602}]{0,8}";
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            (-(AMOUNT_MINOR_MAX as i64)..=AMOUNT_MINOR_MAX as i64)
                .prop_map(serde_json::Value::from),
            any_text.prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(any_text, inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The correction's reason, reused as a review's (any text the strategy made).
    fn name_reason(r: &EventRecord) -> Text {
        match &r.body {
            EventBody::RefundFeeReturned(c) => c.reason.clone(),
            _ => unreachable!("built above"),
        }
    }

    proptest! {
        /// The one-pass canonicalizer equals the reference on any float-free JSON value.
        #[test]
        fn one_pass_canonical_form_equals_rfc8785_on_any_value(value in json()) {
            let reference = serde_json_canonicalizer::to_vec(&value).unwrap();
            prop_assert_eq!(events::jcs::to_vec(&value).unwrap(), reference);
        }

        /// The fast canonical form equals the reference RFC 8785 canonicalizer on random events.
        #[test]
        fn fast_canonical_bytes_equal_rfc8785(
            name in text(),
            reason in text(),
            correction_reason in text(),
            txn in "[!-~]{1,40}",
            amount in 1u64..=AMOUNT_MINOR_MAX,
            seq in any::<u32>(),
            ts in 0u64..=AMOUNT_MINOR_MAX,
            issuer in proptest::option::of("[a-z][a-z0-9-]{0,20}"),
            key in proptest::option::of("[!-~]{1,40}"),
            pledge in proptest::option::of(0u64..=AMOUNT_MINOR_MAX),
            named in any::<bool>(),
        ) {
            let mut r = sample_record();
            r.seq = u64::from(seq);
            r.ts_ms = ts;
            r.token_issuer = issuer.map(|i| Id::new(&i).unwrap());
            r.idempotency = key.map(|key| Idempotency { key, command_sha256: Hash([0x5c; 32]) });
            if let EventBody::DonationReceived(d) = &mut r.body {
                d.amount_minor = Amount::new(amount).unwrap();
                d.fee_minor = amount / 3;
                d.channel_txn_id = txn;
                d.pledge_seq = pledge;
                d.public_name = named.then_some(name.clone());
                d.anonymous = !named;
            }
            let reference = serde_json_canonicalizer::to_vec(&r).unwrap();
            prop_assert_eq!(r.canonical_bytes().unwrap(), reference);
            // A match, written member by member as a gift is.
            let matched = EventRecord {
                body: EventBody::MatchAllocated(MatchAllocated {
                    amount_minor: Amount::new(amount).unwrap(),
                    donation_seq: u64::from(seq) / 2,
                    pool: Id::new("pool-1").unwrap(),
                    project: Id::new("cp-001").unwrap(),
                }),
                ..r.clone()
            };
            prop_assert_eq!(matched.canonical_bytes().unwrap(), serde_json_canonicalizer::to_vec(&matched).unwrap());
            if let EventBody::DonationReceived(d) = &mut r.body {
                d.public_name = Some(name);
                d.anonymous = false;
            }
            let refund = EventRecord {
                body: EventBody::DonationRefunded(DonationRefunded {
                    donation_seq: 3,
                    fee_returned_minor: (amount % 2 == 0).then_some(amount / 2 + 1),
                    reason,
                }),
                ..r
            };
            prop_assert_eq!(refund.canonical_bytes().unwrap(), serde_json_canonicalizer::to_vec(&refund).unwrap());
            let correction = EventRecord {
                body: EventBody::RefundFeeReturned(RefundFeeReturned {
                    fee_returned_minor: amount,
                    reason: correction_reason,
                    refund_seq: u64::from(seq) / 2,
                }),
                ..refund
            };
            prop_assert_eq!(correction.canonical_bytes().unwrap(), serde_json_canonicalizer::to_vec(&correction).unwrap());
            let review = MatchReview {
                amount_minor: Amount::new(amount).unwrap(),
                donation_seq: u64::from(seq),
                pool: Id::new("pool-1").unwrap(),
                project: Id::new("cp-001").unwrap(),
                reason: name_reason(&correction),
            };
            for body in [
                EventBody::MatchFrozen(review.clone()),
                EventBody::MatchUnfrozen(review.clone()),
                EventBody::MatchRevoked(review),
            ] {
                let step = EventRecord { body, ..correction.clone() };
                prop_assert_eq!(step.canonical_bytes().unwrap(), serde_json_canonicalizer::to_vec(&step).unwrap());
            }
        }
    }
}

/// The bound the writer relies on to seal a gift or a match after applying it: never below
/// the canonical length, whatever the strings hold (control characters, quotes, non-ASCII)
/// and however large the integers; and no bound for a record that might not seal.
mod sealed_len_bound {
    use super::*;
    use proptest::prelude::*;

    fn gift(txn: String, name: Option<String>, key: Option<String>, n: u64) -> EventRecord {
        let mut record = sample_record();
        record.seq = n;
        record.ts_ms = n;
        record.idempotency = key.map(|key| Idempotency {
            key,
            command_sha256: Hash([0x33; 32]),
        });
        let EventBody::DonationReceived(d) = &mut record.body else {
            unreachable!()
        };
        d.channel_txn_id = txn;
        d.public_name = name.map(|n| Text::new(&n).unwrap());
        d.fee_minor = n;
        d.pledge_seq = Some(n);
        d.amount_minor = Amount::new(n.max(1)).unwrap();
        record
    }

    /// The most the fixed part of a gift takes: every member present, every integer at its
    /// largest, every string empty but the fixed-width ones.
    #[test]
    fn the_fixed_part_of_a_gift_is_well_within_its_allowance() {
        let record = gift(
            String::new(),
            None,
            Some(String::new()),
            jcs::SAFE_INTEGER_MAX,
        );
        let bytes = record.canonical_bytes().unwrap().len();
        let strings: usize = ["erqi", "recorder-liu", "admin-zhao", "wechat", "CNY"]
            .iter()
            .chain(&["cp-001", "donor-000042", "3F2A-91C0-5B7E-D4A8"])
            .map(|s| s.len())
            .sum();
        assert!(bytes - strings < FIXED_BYTES_BOUND * 3 / 4, "{bytes}");
    }

    #[test]
    fn other_records_and_unsafe_integers_have_no_bound() {
        let mut record = sample_record();
        record.ts_ms = jcs::SAFE_INTEGER_MAX + 1;
        assert_eq!(record.sealed_len_bound(), None);
        let mut record = sample_record();
        record.body = EventBody::ProjectClosed(ProjectClosed {
            project: Id::new("cp-001").unwrap(),
            reason: Text::new("done").unwrap(),
        });
        assert_eq!(record.sealed_len_bound(), None);
        let m = |donation_seq| {
            let mut record = sample_record();
            record.body = EventBody::MatchAllocated(MatchAllocated {
                amount_minor: Amount::new(1).unwrap(),
                donation_seq,
                pool: Id::new("pool-1").unwrap(),
                project: Id::new("cp-001").unwrap(),
            });
            record
        };
        let matched = m(jcs::SAFE_INTEGER_MAX);
        assert!(matched.sealed_len_bound().unwrap() >= matched.canonical_bytes().unwrap().len());
        assert_eq!(m(jcs::SAFE_INTEGER_MAX + 1).sealed_len_bound(), None);
    }

    proptest! {
        #[test]
        fn never_below_the_canonical_length(
            txn in "[\\x00-\\x1f\"\\\\a-z0-9é中😀]{0,300}",
            name in proptest::option::of("[a-z\"\\\\é中😀]{1,500}"),
            key in proptest::option::of("[\\x00-\\x1f\"\\\\a-z]{0,128}"),
            n in 0..=jcs::SAFE_INTEGER_MAX,
        ) {
            let record = gift(txn, name, key, n);
            let bound = record.sealed_len_bound().expect("a gift with safe integers has one");
            prop_assert!(record.canonical_bytes().unwrap().len() <= bound);
        }
    }
}
