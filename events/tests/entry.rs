//! `check_entry`: a log entry (canonical bytes, as in entry bundles and receipt bundles).

use events::*;

fn sealed() -> SealedEvent {
    EventRecord {
        seq: 3,
        prev: Hash([7; 32]),
        ledger: Id::new("erqi").unwrap(),
        ts_ms: 1_539_050_400_000,
        actor: Id::new("admin").unwrap(),
        idempotency: None,
        token_issuer: None,
        body: EventBody::ProjectOpened(ProjectOpened {
            project: Id::new("library").unwrap(),
            kind: ProjectKind::CommunityProject,
            name: Text::new("图书角").unwrap(),
            currency: Currency::CNY,
            goal_minor: None,
        }),
    }
    .seal()
    .unwrap()
}

#[test]
fn a_canonical_entry_checks_out() {
    let e = sealed();
    let checked = check_entry(e.canonical_bytes()).unwrap();
    assert_eq!(
        (checked.seq, checked.prev, checked.hash),
        (3, Hash([7; 32]), e.hash())
    );
    assert_eq!(checked.canonical, e.canonical_bytes());
}

#[test]
fn other_bytes_are_refused_naming_the_seq() {
    let e = sealed();
    let text = String::from_utf8(e.canonical_bytes().to_vec()).unwrap();
    let spaced = text.replacen(',', ", ", 1);
    let err = check_entry(spaced.as_bytes()).unwrap_err();
    assert_eq!(err.seq(), Some(3));
    assert!(err.to_string().contains("canonical"), "{err}");
    let err = check_entry(&e.export_line()).unwrap_err();
    assert!(err.to_string().contains("hash"), "{err}");
    assert!(check_entry(b"[1,2]").is_err());
    assert!(check_entry(b"{\"seq\":1}").is_err());
    assert!(check_entry(b"not json").is_err());
}
