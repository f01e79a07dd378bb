//! The worked example of docs/FORMAT.md ("An event, its canonical bytes, its hash"):
//! if this test fails, the document is wrong.

use events::*;

/// The two events of the example, as the writer would seal them.
fn example() -> Vec<SealedEvent> {
    let first = EventRecord {
        seq: 0,
        prev: Hash::ZERO,
        ledger: Id::new("erqi").unwrap(),
        ts_ms: 1_539_046_800_000,
        actor: Id::new("admin-zhao").unwrap(),
        idempotency: None,
        token_issuer: None,
        body: EventBody::ProjectOpened(ProjectOpened {
            project: Id::new("cp-001").unwrap(),
            kind: ProjectKind::CommunityProject,
            name: Text::new("星星课堂").unwrap(),
            currency: Currency::CNY,
            goal_minor: Some(Amount::new(5_000_000).unwrap()),
        }),
    }
    .seal()
    .unwrap();
    let ledger = Id::new("erqi").unwrap();
    let second = EventRecord {
        seq: 1,
        prev: first.hash(),
        ledger: ledger.clone(),
        ts_ms: 1_539_046_861_000,
        actor: Id::new("recorder-liu").unwrap(),
        idempotency: Some(Idempotency {
            key: "wx-notify-4200000001".into(),
            command_sha256: sha256(b"example"),
        }),
        token_issuer: None,
        body: EventBody::DonationReceived(DonationReceived {
            project: Id::new("cp-001").unwrap(),
            amount_minor: Amount::new(100).unwrap(),
            currency: Currency::CNY,
            channel: Channel::Wechat,
            channel_txn_id: "4200000001".into(),
            fee_minor: 0,
            pledge_seq: None,
            anonymous: true,
            public_name: None,
            donor_ref: Id::new("donor-000042").unwrap(),
            receipt_code: receipt_code(&ledger, Channel::Wechat, "4200000001"),
        }),
    }
    .seal()
    .unwrap();
    vec![first, second]
}

#[test]
fn print_and_check_the_worked_example() {
    let events = example();
    for e in &events {
        println!(
            "canonical: {}",
            String::from_utf8_lossy(e.canonical_bytes())
        );
        println!("hash: {}", e.hash());
        println!("export: {}", String::from_utf8_lossy(&e.export_line()));
        println!("leaf hash: {}", leaf_hash(e.canonical_bytes()));
    }
    let root = MemoryTree::from_leaves(events.iter().map(|e| e.canonical_bytes().to_vec())).root();
    println!("root: {root}");
    assert_eq!(
        String::from_utf8_lossy(events[0].canonical_bytes()),
        EXPECTED_CANONICAL_0
    );
    assert_eq!(events[0].hash().to_hex(), EXPECTED_HASH_0);
    assert_eq!(events[1].hash().to_hex(), EXPECTED_HASH_1);
    assert_eq!(root.to_hex(), EXPECTED_ROOT_2);
}

const EXPECTED_CANONICAL_0: &str = r#"{"actor":"admin-zhao","data":{"currency":"CNY","goal_minor":5000000,"kind":"community_project","name":"星星课堂","project":"cp-001"},"ledger":"erqi","prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":0,"ts_ms":1539046800000,"type":"project_opened"}"#;
const EXPECTED_HASH_0: &str = "f2f276d56f7985807bab9680034cdd30a9aa59f142bccf4bf8e7aa9e536f11e0";
const EXPECTED_HASH_1: &str = "b7e187cddb7722e823ec5ab471ea5b3d1cecffe5df343c476e93c294b1af32b9";
const EXPECTED_ROOT_2: &str = "c1da3fa428c6f72715405a6c57ffede23554b2d6c380acae2389bc500784fa78";
