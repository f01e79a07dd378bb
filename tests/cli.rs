//! The CLI end to end on a fresh data directory: `demo`, then `verify`, `rebuild`, `export`,
//! `balances`; the export re-verified by the binary and by an independent Python checker.

use std::path::Path;

use ledger::store::EventLog as _;
use std::process::Command;

fn ledger(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run ledger")
}

/// `ledger verify --export FILE`.
fn verify_export_with_binary(export: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["verify", "--export"])
        .arg(export)
        .output()
        .expect("run ledger")
}

/// The independent checker (Python's json + hashlib) on an export: its output and stdout.
fn verify_export_with_python(export: &Path) -> (std::process::Output, String) {
    let py = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/verify_export.py"
        ))
        .arg(export)
        .output()
        .expect("python3 is on every machine of this project (see README)");
    let out = String::from_utf8_lossy(&py.stdout).into_owned();
    (py, out)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn demo_verify_rebuild_export_balances() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = ledger(&["demo", "--donations", "3000"], &data);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(stdout(&demo).starts_with("demo: "), "{}", stdout(&demo));

    // The demo refuses a data directory that already holds a ledger.
    let again = ledger(&["demo", "--donations", "10"], &data);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let verify = ledger(&["verify"], &data);
    assert!(verify.status.success());
    let verify_out = stdout(&verify);
    assert!(verify_out.starts_with("verify: ok: "), "{verify_out}");

    let rebuild = ledger(&["rebuild"], &data);
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    assert!(
        stdout(&rebuild).contains("byte-identical"),
        "{}",
        stdout(&rebuild)
    );

    let export = dir.path().join("export.jsonl");
    let out = ledger(&["export", "--out", export.to_str().unwrap()], &data);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&export).unwrap();
    let lines = text.lines().count();
    assert!(lines > 3000, "{lines} events");
    // The head printed by verify is the last line's hash.
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(verify_out.contains(last["hash"].as_str().unwrap()));

    // Exported to standard output: the same bytes.
    let to_stdout = ledger(&["export"], &data);
    assert_eq!(to_stdout.stdout, text.as_bytes());

    // The export verifies with the binary ...
    let v = verify_export_with_binary(&export);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // ... and with an independent implementation (Python's json + hashlib).
    let (py, py_out) = verify_export_with_python(&export);
    assert!(py.status.success(), "{py_out}");
    assert_eq!(
        py_out.trim(),
        format!("ok {lines} {}", last["hash"].as_str().unwrap())
    );

    // A changed byte in the export is caught by both, at the right seq.
    let tampered = dir.path().join("tampered.jsonl");
    let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
    rows[100] = rows[100].replacen("\"ts_ms\":1", "\"ts_ms\":2", 1);
    std::fs::write(&tampered, rows.join("\n") + "\n").unwrap();
    let v = verify_export_with_binary(&tampered);
    assert!(!v.status.success());
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("event 100"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let (py, py_out) = verify_export_with_python(&tampered);
    assert!(!py.status.success());
    assert!(py_out.starts_with("FAILED at seq 100: hash "), "{py_out}");

    // A line showing a reader more than its hash covers (a duplicate member: parsers keep
    // the last, a person or grep may read the first) is refused by both.
    let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
    rows[200] = rows[200].replacen("{\"actor\":", "{\"actor\":\"someone-else\",\"actor\":", 1);
    std::fs::write(&tampered, rows.join("\n") + "\n").unwrap();
    let v = verify_export_with_binary(&tampered);
    let err = String::from_utf8_lossy(&v.stderr).into_owned();
    assert!(!v.status.success());
    assert!(err.contains("not in RFC 8785 canonical form"), "{err}");
    let (py, py_out) = verify_export_with_python(&tampered);
    assert!(!py.status.success());
    assert!(
        py_out.starts_with("FAILED at seq 200: not an event: a duplicate member"),
        "{py_out}"
    );

    let balances = ledger(&["balances", "--json"], &data);
    assert!(balances.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&balances.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 100, "dozens of projects of each kind");
    for row in rows {
        let n = |k: &str| row[k].as_u64().unwrap() as i128;
        assert_eq!(
            n("raised_minor") + n("matched_minor")
                - n("refunded_minor")
                - n("paid_out_minor")
                - n("moved_out_minor")
                + n("moved_in_minor")
                + n("fees_returned_minor"),
            n("balance_minor"),
            "money is conserved for {}",
            row["project"]
        );
    }
    let returned: i128 = rows
        .iter()
        .map(|r| r["fees_returned_minor"].as_u64().unwrap() as i128)
        .sum();
    assert!(
        returned > 0,
        "the demo's online refunds give back their fees"
    );
    // The text form's columns add up to what is available too.
    let text = ledger(&["balances"], &data);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let n = |k: &str| -> i128 {
            cells[header.iter().position(|h| *h == k).unwrap()]
                .parse()
                .unwrap()
        };
        assert_eq!(
            n("raised") + n("matched") - n("refunded") + n("fees_back") - n("paid_out")
                + n("moved_net")
                - n("committed")
                - n("requested")
                - n("frozen"),
            n("available"),
            "{line}"
        );
    }

    // Every fund statement adds up to its net assets and balance, fees given back included
    // (the column was missing, so the printed figures did not).
    let fs = ledger(&["fund-statement", "--json"], &data);
    assert!(
        fs.status.success(),
        "{}",
        String::from_utf8_lossy(&fs.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&fs.stdout).unwrap();
    let minor = |row: &serde_json::Value, k: &str| -> i128 {
        let text = row[k].as_str().unwrap_or_else(|| panic!("{k} in {row}"));
        let (sign, digits) = text.strip_prefix('-').map_or((1, text), |t| (-1, t));
        sign * digits.replace('.', "").parse::<i128>().unwrap()
    };
    let mut fees_back = 0;
    for row in rows.as_array().unwrap() {
        let net = minor(row, "donations_gross") - minor(row, "refunded") - minor(row, "fees")
            + minor(row, "fees_returned")
            + minor(row, "matched")
            - minor(row, "programme_cost")
            + minor(row, "moved_in")
            - minor(row, "moved_out");
        assert_eq!(net, minor(row, "net_assets"), "{row}");
        assert_eq!(net + minor(row, "payable"), minor(row, "balance"), "{row}");
        fees_back += minor(row, "fees_returned");
    }
    assert_eq!(fees_back, returned);
}

/// `verify --data` checks every checkpoint against roots recomputed from the events, not
/// against the stored Merkle tree: here an interior tile is altered (node (3, 124), over
/// events 992..999) and a checkpoint at size 1000 is signed with the ledger's own key over
/// the root the altered tree gives. The stored tree still agrees with the events at the
/// full size, so only the recomputed roots catch it.
#[tokio::test]
async fn verify_recomputes_checkpoint_roots_from_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let demo = ledger(&["demo", "--donations", "5000"], &data);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    ledger::tlog::checkpoints::keygen(&data, "example.org/ledger/erqi").unwrap();
    {
        let log = ledger::store::SledLog::open(&data).unwrap();
        assert!(log.head().await.unwrap().len > 2048, "tile (3, 0) is full");
        let tiles = log.db().open_tree("log").unwrap();
        let key = ledger::store::merkle::tile_key(3, 0);
        let mut tile = tiles.get(key).unwrap().unwrap().to_vec();
        tile[124 * 32] ^= 1;
        tiles.insert(key, tile).unwrap();
        log.sync().unwrap();
    }
    {
        let log = ledger::store::SledLog::open(&data).unwrap();
        let tree = log.tree().unwrap();
        let at = tree.at(1000).unwrap();
        let forged = events::merkle::root(1000, &at).unwrap();
        let signer =
            std::fs::read_to_string(data.join(ledger::tlog::checkpoints::SIGNER_KEY_PATH)).unwrap();
        let signer = events::SignerKey::parse(signer.trim()).unwrap();
        let note = events::Checkpoint::new(signer.name(), 1000, forged)
            .sign(&signer)
            .unwrap();
        let checkpoints =
            ledger::tlog::CheckpointStore::open(log.db(), std::sync::Arc::new(|| Ok(())), None)
                .unwrap();
        checkpoints.publish(1000, &note).unwrap();
        log.sync().unwrap();
    }
    let verify = ledger(&["verify"], &data);
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success(), "{}", stdout(&verify));
    assert!(
        err.contains("published checkpoint at size 1000: signed root")
            && err.contains("but the events give"),
        "{err}"
    );
}

/// A command that reads a ledger, given a data directory that holds none (a mistyped
/// `--data`), fails naming the path, and creates nothing there: it used to print an empty,
/// valid ledger and exit 0.
#[test]
fn reading_commands_refuse_a_data_directory_without_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("no-such-ledger");
    for args in [
        &["verify"][..],
        &["export"],
        &["rebuild"],
        &["balances"],
        &["trial-balance"],
        &["export-csv"],
        &["reconcile", "--statement", "1"],
    ] {
        let out = ledger(args, &data);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(&format!("--data {}: no ledger there", data.display())),
            "{args:?}: {err}"
        );
        assert!(!data.exists(), "{args:?} created the data directory");
    }
}

/// The publication exports refuse a country, organisation id, name or type the published
/// files could not carry, and `reconcile` a matching window beyond its limit, naming the
/// option, before reading anything.
#[test]
fn publication_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, expected) in [
        (
            &["export-iati", "--country", "china<>"][..],
            "--country <COUNTRY>': must be an ISO 3166-1 alpha-2 code",
        ),
        (
            &["export-iati", "--org-id", "a b/c"],
            "--org-id <ORG_ID>': must be an organisation identifier",
        ),
        (
            &["export-360giving", "--org-id", "nodash"],
            "--org-id <ORG_ID>': must be an organisation identifier",
        ),
        (
            &["export-iati", "--org-name", " "],
            "--org-name <ORG_NAME>': must be 1 to 256 characters",
        ),
        (
            &[
                "reconcile",
                "--statement",
                "1",
                "--date-window-hours",
                "721",
            ],
            "--date-window-hours <DATE_WINDOW_HOURS>': 721 is not in 0..=720",
        ),
        (
            &[
                "reconcile",
                "--statement",
                "1",
                "--timing-window-minutes",
                "10081",
            ],
            "--timing-window-minutes <TIMING_WINDOW_MINUTES>': 10081 is not in 0..=10080",
        ),
        (
            &["export-iati", "--org-type", "99"],
            "--org-type <ORG_TYPE>': must be an IATI OrganisationType code: 10 (Government)",
        ),
        (
            &["export-iati", "--sector", "1601"],
            "--sector <SECTOR>': must be an OECD DAC 5-digit purpose code",
        ),
    ] {
        let out = ledger(args, &data);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!data.exists());
    }
}

/// `serve` says it runs on the embedded store only, rather than ignoring `--store` and
/// serving a local ledger to an operator who asked for a cluster; and on a port already in
/// use it exits with the error, shutting its ledger down (it does not hang on the way out).
#[test]
fn serve_refuses_other_stores_and_exits_on_a_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--store", "eventstoredb", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`serve` runs on the embedded sled store only"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was created");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--listen", &port, "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve did not exit on a port in use");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains(&format!("listening on {port}")), "{err}");
    drop(taken);
}
