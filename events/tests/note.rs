//! Signed notes against Go's sumdb/note vectors, and checkpoints.

use events::note::*;
use events::Hash;
use proptest::prelude::*;

const VECTORS: &str = include_str!("vectors/signed-note.json");

struct Case {
    verifier_key: String,
    private_key: Option<String>,
    text: String,
    signature_line: String,
}

fn cases() -> Vec<Case> {
    let v: serde_json::Value = serde_json::from_str(VECTORS).expect("the vectors are JSON");
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            verifier_key: c["verifier_key"].as_str().unwrap().to_owned(),
            private_key: c["private_key"].as_str().map(str::to_owned),
            text: c["text"].as_str().unwrap().to_owned(),
            signature_line: c["signature_line"].as_str().unwrap().to_owned(),
        })
        .collect()
}

fn note(case: &Case) -> String {
    format!("{}\n{}\n", case.text, case.signature_line)
}

#[test]
fn go_vectors_verify() {
    let cases = cases();
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let key = VerifierKey::parse(&case.verifier_key).unwrap();
        assert_eq!(key.to_text(), case.verifier_key);
        assert_eq!(key.to_string(), case.verifier_key);
        assert_eq!(key.key_id(), key_id(key.name(), &key.public_key()));
        let opened = open_note(&note(case), std::slice::from_ref(&key)).unwrap();
        assert_eq!(opened.text, case.text);
        assert_eq!(opened.verified.len(), 1);
        assert_eq!(opened.verified[0].name, key.name());
        assert_eq!(opened.verified[0].key_id, key.key_id());
        assert_eq!(
            opened.verified[0].to_line(),
            format!("{}\n", case.signature_line)
        );
        assert!(opened.unverified.is_empty());
    }
}

#[test]
fn go_vector_signing_is_reproduced() {
    let cases = cases();
    let case = cases.iter().find(|c| c.private_key.is_some()).unwrap();
    let signer = SignerKey::parse(case.private_key.as_deref().unwrap()).unwrap();
    assert_eq!(signer.to_text(), case.private_key.as_deref().unwrap());
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.verifier_key().to_text(), case.verifier_key);
    // Ed25519 is deterministic: the signature is the published one, byte for byte.
    assert_eq!(sign_note(&case.text, &[&signer]).unwrap(), note(case));
    // The secret does not show in debug output.
    let debug = format!("{signer:?}");
    assert!(debug.contains("c74f20a3") && !debug.contains("AYEKFALV"));
}

#[test]
fn doubly_signed_note_opens_with_either_key() {
    let cases = cases();
    let (peter, enoch) = (&cases[0], &cases[1]);
    assert_eq!(peter.text, enoch.text);
    let msg = format!(
        "{}\n{}\n{}\n",
        peter.text, peter.signature_line, enoch.signature_line
    );
    let pk = VerifierKey::parse(&peter.verifier_key).unwrap();
    let ek = VerifierKey::parse(&enoch.verifier_key).unwrap();
    let opened = open_note(&msg, std::slice::from_ref(&pk)).unwrap();
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.unverified.len(), 1);
    assert_eq!(opened.unverified[0].name, "EnochRoot");
    let opened = open_note(&msg, &[pk.clone(), ek.clone()]).unwrap();
    assert_eq!(opened.verified.len(), 2);
    // Repeated lines are dropped.
    let repeated = format!(
        "{}\n{}\n{}\n{}\n",
        peter.text, peter.signature_line, enoch.signature_line, enoch.signature_line
    );
    let opened = open_note(&repeated, std::slice::from_ref(&pk)).unwrap();
    assert_eq!(opened.unverified.len(), 1);
    let opened = open_note(&repeated, &[pk, ek]).unwrap();
    assert_eq!(opened.verified.len(), 2);
}

#[test]
fn malformed_notes_are_rejected_with_reasons() {
    let cases = cases();
    let case = &cases[0];
    let key = VerifierKey::parse(&case.verifier_key).unwrap();
    let keys = std::slice::from_ref(&key);
    let good = note(case);
    assert!(open_note(&good, keys).is_ok());

    // No blank line between text and signatures.
    let no_blank = format!("{}{}\n", case.text, case.signature_line);
    assert_eq!(open_note(&no_blank, keys), Err(NoteError::NoSignatureBlock));
    // Nothing after the blank line.
    assert_eq!(
        open_note(&format!("{}\n", case.text), keys),
        Err(NoteError::NoSignatureBlock)
    );
    // No final newline.
    assert_eq!(
        open_note(good.trim_end_matches('\n'), keys),
        Err(NoteError::TextWithoutFinalNewline)
    );
    // A control character.
    let tab = good.replacen("cryptography", "crypto\tgraphy", 1);
    assert!(matches!(
        open_note(&tab, keys),
        Err(NoteError::ControlCharacter { code: 9, .. })
    ));
    // A signature line without the em dash, or with a bad name or bad base64.
    for bad_line in [
        case.signature_line.replacen('\u{2014}', "-", 1),
        case.signature_line
            .replacen(" PeterNeumann ", " Peter+Neumann ", 1),
        case.signature_line.replacen("x08go", "x08g*", 1),
        "\u{2014} PeterNeumann AAAA".to_owned(),
        "\u{2014} PeterNeumann".to_owned(),
    ] {
        let msg = format!("{}\n{}\n", case.text, bad_line);
        assert!(
            matches!(
                open_note(&msg, keys),
                Err(NoteError::MalformedSignatureLine { line: 1, .. })
            ),
            "{bad_line}"
        );
    }
    // Only an unknown key.
    let other = VerifierKey::parse(&cases[2].verifier_key).unwrap();
    assert_eq!(
        open_note(&good, std::slice::from_ref(&other)),
        Err(NoteError::NoKnownSignature)
    );
    assert_eq!(open_note(&good, &[]), Err(NoteError::NoKnownSignature));
    // A bad signature by a known key, in the text or in the signature.
    let altered_text = good.replacen("answer", "Answer", 1);
    assert_eq!(
        open_note(&altered_text, keys),
        Err(NoteError::BadSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
    let mut parsed = Note::parse(&good).unwrap();
    parsed.signatures[0].signature[10] ^= 1;
    assert!(matches!(
        open_note(&parsed.to_text(), keys),
        Err(NoteError::BadSignature { .. })
    ));
    // Too many signatures.
    let many = format!(
        "{}\n{}",
        case.text,
        format!("{}\n", case.signature_line).repeat(NOTE_SIGNATURES_MAX + 1)
    );
    assert_eq!(
        open_note(&many, keys),
        Err(NoteError::TooManySignatures {
            max: NOTE_SIGNATURES_MAX
        })
    );
    // Signing refuses texts that could not be opened.
    let signer = SignerKey::parse(cases[0].private_key.as_deref().unwrap()).unwrap();
    assert_eq!(
        sign_note("no newline", &[&signer]),
        Err(NoteError::TextWithoutFinalNewline)
    );
    assert!(matches!(
        sign_note("a\rb\n", &[&signer]),
        Err(NoteError::ControlCharacter { offset: 1, .. })
    ));
    assert_eq!(sign_note("a\n", &[]), Err(NoteError::NoSigner));
}

#[test]
fn malformed_keys_are_rejected_with_reasons() {
    let cases = cases();
    let vk = &cases[0].verifier_key;
    let sk = cases[0].private_key.as_deref().unwrap();
    assert_eq!(
        VerifierKey::parse(&vk.replacen("c74f20a3", "c74f20a4", 1)),
        Err(NoteError::KeyIdMismatch {
            declared: 0xc74f20a4,
            computed: 0xc74f20a3
        })
    );
    assert_eq!(
        SignerKey::parse(&sk.replacen("c74f20a3", "c74f20a4", 1)).map(|k| k.key_id()),
        Err(NoteError::KeyIdMismatch {
            declared: 0xc74f20a4,
            computed: 0xc74f20a3
        })
    );
    assert!(matches!(
        VerifierKey::parse(&vk.replacen("PeterNeumann", "Peter Neumann", 1)),
        Err(NoteError::InvalidKeyName { .. })
    ));
    assert!(matches!(
        VerifierKey::parse("PeterNeumann+c74f20a3"),
        Err(NoteError::MalformedKey { .. })
    ));
    assert!(matches!(
        VerifierKey::parse("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::MalformedKey { .. })
    ));
    // Algorithm byte 2 instead of 1.
    assert_eq!(
        VerifierKey::parse("PeterNeumann+c74f20a3+Alpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::UnsupportedAlgorithm { alg: 2 })
    );
    assert!(matches!(
        VerifierKey::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10"),
        Err(NoteError::MalformedKey { .. })
    ));
    assert!(matches!(
        SignerKey::parse(vk),
        Err(NoteError::MalformedKey { .. })
    ));
    assert!(matches!(
        SignerKey::from_seed("", [0; 32]),
        Err(NoteError::InvalidKeyName { .. })
    ));
    // The same key listed twice is not ambiguous.
    let key = VerifierKey::parse(vk).unwrap();
    let msg = note(&cases[0]);
    assert!(open_note(&msg, &[key.clone(), key.clone()]).is_ok());
}

#[test]
fn generated_keys_round_trip() {
    let signer = SignerKey::from_seed("example.org/ledger/demo", [7; 32]).unwrap();
    let text = signer.to_text();
    assert!(text.starts_with("PRIVATE+KEY+example.org/ledger/demo+"));
    let back: SignerKey = text.parse().unwrap();
    assert_eq!(back.to_text(), text);
    let vk = signer.verifier_key();
    assert_eq!(VerifierKey::parse(&vk.to_text()), Ok(vk.clone()));
    assert_eq!(
        VerifierKey::from_public_key(vk.name(), vk.public_key()),
        Ok(vk.clone())
    );
    let note = sign_note("hello\n", &[&signer]).unwrap();
    assert!(open_note(&note, &[vk]).is_ok());
}

fn demo_key() -> SignerKey {
    SignerKey::from_seed("example.org/ledger/demo", [42; 32]).unwrap()
}

#[test]
fn checkpoints_sign_and_open() {
    let key = demo_key();
    let vk = key.verifier_key();
    let cp = Checkpoint::new("example.org/ledger/demo", 3, Hash([0xab; 32]));
    let signed = cp.sign(&key).unwrap();
    assert!(signed.starts_with("example.org/ledger/demo\n3\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n\u{2014} example.org/ledger/demo "));
    assert_eq!(Checkpoint::open(&signed, &vk), Ok(cp.clone()));

    // With extension lines.
    let mut ext = cp.clone();
    ext.extensions = vec!["timestamp 1700000000".into(), "x".into()];
    let signed_ext = ext.sign(&key).unwrap();
    assert_eq!(Checkpoint::open(&signed_ext, &vk), Ok(ext));

    // A witness's cosignature from an unknown key is ignored.
    let witness = SignerKey::from_seed("witness.example", [9; 32]).unwrap();
    let cosigned = sign_note(&cp.to_text(), &[&key, &witness]).unwrap();
    assert_eq!(Checkpoint::open(&cosigned, &vk), Ok(cp.clone()));

    // Tampering with any line fails.
    for (from, to) in [
        (
            "example.org/ledger/demo\n3\n",
            "example.org/ledger/demo\n4\n",
        ),
        ("q6urq6ur", "q6urq6uq"),
        ("example.org/ledger/demo\n3", "example.org/ledger/dem0\n3"),
    ] {
        let tampered = signed.replacen(from, to, 1);
        assert_ne!(tampered, signed);
        assert!(
            matches!(
                Checkpoint::open(&tampered, &vk),
                Err(CheckpointError::Note(NoteError::BadSignature { .. }))
            ),
            "{from:?}"
        );
    }
    // An added extension line is caught too.
    let tampered = signed.replacen("=\n\n", "=\nextra\n\n", 1);
    assert!(Checkpoint::open(&tampered, &vk).is_err());
    // Another log's key does not open it.
    let other = SignerKey::from_seed("example.org/ledger/other", [42; 32]).unwrap();
    assert!(matches!(
        Checkpoint::open(&signed, &other.verifier_key()),
        Err(CheckpointError::Note(NoteError::NoKnownSignature))
    ));
    // Origin and key name must agree.
    assert!(matches!(
        cp.sign(&other),
        Err(CheckpointError::OriginMismatch { .. })
    ));
    let mismatched = sign_note(&cp.to_text(), &[&other]).unwrap();
    assert!(matches!(
        Checkpoint::open(&mismatched, &other.verifier_key()),
        Err(CheckpointError::OriginMismatch { .. })
    ));
}

#[test]
fn checkpoint_text_rules() {
    // The example of the C2SP tlog-checkpoint specification.
    let spec =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse(spec).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20_852_163);
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.to_text(), spec);

    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let malformed = |text: &str| Checkpoint::parse(text).unwrap_err();
    assert_eq!(
        malformed("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
        CheckpointError::NoFinalNewline
    );
    assert_eq!(malformed("o\n1\n"), CheckpointError::TooFewLines { got: 2 });
    for (text, line) in [
        (format!("\n1\n{root}\n"), 1),
        (format!("o\n01\n{root}\n"), 2),
        (format!("o\n-1\n{root}\n"), 2),
        (format!("o\n\n{root}\n"), 2),
        (format!("o\n18446744073709551616\n{root}\n"), 2),
        (
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_owned(),
            3,
        ),
        (
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n".to_owned(),
            3,
        ),
        (format!("o\n1\n{root}\n\n"), 4),
        (format!("o\n1\n{root}\next\n\n"), 5),
        (format!("o\t\n1\n{root}\n"), 1),
    ] {
        assert!(
            matches!(malformed(&text), CheckpointError::Malformed { line: l, .. } if l == line),
            "{text:?}: {:?}",
            malformed(&text)
        );
    }
    assert_eq!(
        Checkpoint::parse(&format!("o\n0\n{root}\n")).map(|c| c.size),
        Ok(0)
    );
    // A checkpoint that cannot be written as a note is refused when signing.
    let key = SignerKey::from_seed("o", [1; 32]).unwrap();
    let mut bad = Checkpoint::new("o", 1, Hash::ZERO);
    bad.extensions.push("two\nlines".into());
    assert!(matches!(
        bad.sign(&key),
        Err(CheckpointError::Malformed { line: 4, .. })
    ));
}

proptest! {
    #[test]
    fn checkpoint_text_round_trips(
        origin in "[a-z0-9./-]{1,40}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in prop::collection::vec("[ -~]{1,30}", 0..3),
    ) {
        let cp = Checkpoint { origin, size, root: Hash(root), extensions };
        prop_assert_eq!(Checkpoint::parse(&cp.to_text()), Ok(cp));
    }

    #[test]
    fn signed_notes_round_trip(text in "([^\\x00-\\x1f]{0,20}\n){1,4}", seed in any::<[u8; 32]>()) {
        let key = SignerKey::from_seed("k.example", seed).unwrap();
        let signed = sign_note(&text, &[&key]).unwrap();
        let opened = open_note(&signed, &[key.verifier_key()]).unwrap();
        prop_assert_eq!(opened.text, text);
    }
}
