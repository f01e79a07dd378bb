//! The verifier: re-checks a ledger from its export or from a running ledger's public URL,
//! against the ledger's verifier key, and checks one receipt bundle offline.
//!
//! For a whole log it checks, in order: every event's hash and link (naming the first broken
//! `seq`), the RFC 9162 root recomputed from the events, the signature of the latest
//! checkpoint and that its root is the recomputed one, and that every older checkpoint the
//! caller saved is consistent with the latest: from an export by recomputing the root at
//! each saved size; from a URL by fetching the RFC 9162 consistency proofs and verifying
//! them (and comparing the recomputed roots as well).
//!
//! Memory stays O(log n): the root at each wanted size is taken from a [`MerkleFrontier`]
//! as the events stream past.
//!
//! Over HTTP it only ever requests paths under the base URL it is given, and follows no
//! redirects.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use events::merkle::{leaf_hash, verify_consistency, verify_inclusion, MerkleFrontier};
use events::{
    check_entry, check_export_line, parse_entry_bundle, ChainError, ChainVerifier, CheckedLine,
    Checkpoint, Hash, Tile, TileKind, VerifierKey,
};
use indicatif::ProgressBar;

use super::wire::{hashes_from_hex, ConsistencyProof, InclusionProof, ReceiptProof};

/// The longest exported line read (an event is at most 8 KiB in canonical form).
pub const EXPORT_LINE_BYTES_MAX: u64 = 64 * 1024;
/// The largest entry bundle fetched (256 entries of at most 65,535 bytes and their lengths).
pub const BUNDLE_BYTES_MAX: u64 = 256 * (65_535 + 2);
/// The largest checkpoint, proof or receipt bundle read.
pub const SMALL_BODY_BYTES_MAX: u64 = 1024 * 1024;
/// How long one HTTP request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a ledger or a receipt does not verify. Chain errors name the first broken `seq`.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Chain(ChainError),
    #[error("line {line}: {error}")]
    ExportLine { line: u64, error: ChainError },
    #[error("line {line} is longer than {max} bytes")]
    LineTooLong { line: u64, max: u64 },
    #[error("{which}: {error}")]
    Checkpoint {
        which: String,
        error: events::CheckpointError,
    },
    #[error("checkpoints were given but no verifier key (--key) to check their signatures")]
    NoKey,
    #[error(
        "the checkpoint at size {size} has root {signed}, but the events give root {computed}"
    )]
    RootMismatch {
        size: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error("the checkpoint at size {size} is beyond the {events} events given")]
    CheckpointBeyond { size: u64, events: u64 },
    #[error("a saved checkpoint has size {saved}, larger than the log's latest checkpoint (size {latest}): the log has gone back")]
    Rollback { saved: u64, latest: u64 },
    #[error("the saved checkpoint at size {size} is not consistent with the latest checkpoint (size {latest}): {error}")]
    Inconsistent {
        size: u64,
        latest: u64,
        error: String,
    },
    #[error("{url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the receipt bundle: {0}")]
    Receipt(String),
    #[error("{0}")]
    Io(String),
}

impl VerifyError {
    /// The first broken `seq`, when the failure is in the events themselves.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Chain(e) | VerifyError::ExportLine { error: e, .. } => e.seq(),
            _ => None,
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Events checked (seq 0 to `events - 1`).
    pub events: u64,
    /// The last event's hash (zeros when empty).
    pub head: Hash,
    /// The RFC 9162 root of all events checked.
    pub root: Hash,
    /// The latest checkpoint, verified and matching the events.
    pub latest: Option<Checkpoint>,
    /// Older checkpoints found consistent with the latest.
    pub older_checked: usize,
}

/// Streams events: checks the chain, grows the tree, records the root at wanted sizes.
struct Replay {
    chain: ChainVerifier,
    frontier: MerkleFrontier,
    wanted: BTreeSet<u64>,
    roots: BTreeMap<u64, Hash>,
}

impl Replay {
    fn new(wanted: BTreeSet<u64>) -> Replay {
        let mut replay = Replay {
            chain: ChainVerifier::new(),
            frontier: MerkleFrontier::new(),
            wanted,
            roots: BTreeMap::new(),
        };
        replay.record();
        replay
    }

    fn record(&mut self) {
        let size = self.frontier.size();
        if self.wanted.contains(&size) {
            self.roots.insert(size, self.frontier.root());
        }
    }

    fn push(&mut self, line: &CheckedLine) -> Result<(), ChainError> {
        self.chain.push(line.seq, line.prev, line.hash)?;
        self.frontier.push(leaf_hash(&line.canonical));
        self.record();
        Ok(())
    }

    fn report(&self) -> VerifyReport {
        VerifyReport {
            events: self.chain.len(),
            head: self.chain.head(),
            root: self.frontier.root(),
            latest: None,
            older_checked: 0,
        }
    }
}

/// Opens saved checkpoint notes with the key.
fn open_all(notes: &[String], key: Option<&VerifierKey>) -> Result<Vec<Checkpoint>, VerifyError> {
    if notes.is_empty() {
        return Ok(Vec::new());
    }
    let key = key.ok_or(VerifyError::NoKey)?;
    notes
        .iter()
        .enumerate()
        .map(|(i, note)| {
            Checkpoint::open(note, key).map_err(|error| VerifyError::Checkpoint {
                which: format!("saved checkpoint {}", i + 1),
                error,
            })
        })
        .collect()
}

fn check_root(c: &Checkpoint, roots: &BTreeMap<u64, Hash>, events: u64) -> Result<(), VerifyError> {
    let computed = roots
        .get(&c.size)
        .copied()
        .ok_or(VerifyError::CheckpointBeyond {
            size: c.size,
            events,
        })?;
    if computed != c.root {
        return Err(VerifyError::RootMismatch {
            size: c.size,
            signed: c.root,
            computed,
        });
    }
    Ok(())
}

/// Verifies an export (JSON Lines, one sealed event per line). The saved checkpoints (signed
/// notes) are opened with `key`; the largest is the latest; each one's root must be the root
/// recomputed at its size, which also proves them consistent with each other.
pub fn verify_export(
    file: &Path,
    key: Option<&VerifierKey>,
    saved: &[String],
    bar: &ProgressBar,
) -> Result<VerifyReport, VerifyError> {
    let checkpoints = open_all(saved, key)?;
    let f = std::fs::File::open(file)
        .map_err(|e| VerifyError::Io(format!("opening {}: {e}", file.display())))?;
    bar.set_length(f.metadata().map(|m| m.len()).unwrap_or(0));
    let mut replay = Replay::new(checkpoints.iter().map(|c| c.size).collect());
    let mut reader = BufReader::new(f);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(EXPORT_LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| VerifyError::Io(format!("reading {}: {e}", file.display())))?;
        if n == 0 {
            break;
        }
        line += 1;
        bar.inc(n as u64);
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if n as u64 > EXPORT_LINE_BYTES_MAX {
            return Err(VerifyError::LineTooLong {
                line,
                max: EXPORT_LINE_BYTES_MAX,
            });
        }
        let checked = check_export_line(&buf)
            .and_then(|c| replay.push(&c))
            .map_err(|error| VerifyError::ExportLine { line, error });
        checked?;
    }
    let mut report = replay.report();
    for c in &checkpoints {
        check_root(c, &replay.roots, report.events)?;
    }
    report.latest = checkpoints.iter().max_by_key(|c| c.size).cloned();
    report.older_checked = checkpoints.len().saturating_sub(1);
    Ok(report)
}

/// A small blocking HTTP client bound to one base URL.
pub struct LogClient {
    base: String,
    agent: ureq::Agent,
}

impl LogClient {
    /// A client for the ledger at `base` (`http://` or `https://`, without a query).
    pub fn new(base: &str) -> Result<LogClient, VerifyError> {
        let base = base.trim_end_matches('/').to_owned();
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        if !scheme_ok || base.contains('?') || base.contains('#') {
            return Err(VerifyError::Io(format!(
                "--url must be an http:// or https:// base URL without query or fragment (got {base:?})"
            )));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!(
                "donation-ledger-verify/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .into();
        Ok(LogClient { base, agent })
    }

    /// GETs `base + path`, which must answer 200 with at most `limit` bytes.
    pub fn get(&self, path: &str, limit: u64) -> Result<Vec<u8>, VerifyError> {
        let url = format!("{}{path}", self.base);
        let fetch = |message: String| VerifyError::Fetch {
            url: url.clone(),
            message,
        };
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| fetch(e.to_string()))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| fetch(e.to_string()))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(fetch(format!("HTTP {}: {text}", status.as_u16())));
        }
        Ok(body)
    }

    fn get_text(&self, path: &str) -> Result<String, VerifyError> {
        let body = self.get(path, SMALL_BODY_BYTES_MAX)?;
        String::from_utf8(body).map_err(|_| VerifyError::Fetch {
            url: format!("{}{path}", self.base),
            message: "the answer is not UTF-8".into(),
        })
    }
}

/// Verifies the ledger served at `base`: fetches and opens its latest checkpoint with `key`,
/// fetches every entry bundle up to the checkpoint's size, checks the chain and the root, and
/// checks each saved checkpoint against the latest with a fetched consistency proof.
pub fn verify_url(
    base: &str,
    key: &VerifierKey,
    saved: &[String],
    bar: &ProgressBar,
) -> Result<VerifyReport, VerifyError> {
    let client = LogClient::new(base)?;
    let saved = open_all(saved, Some(key))?;
    let note = client.get_text("/log/checkpoint")?;
    let latest = Checkpoint::open(&note, key).map_err(|error| VerifyError::Checkpoint {
        which: "the log's latest checkpoint".into(),
        error,
    })?;
    if let Some(c) = saved.iter().find(|c| c.size > latest.size) {
        return Err(VerifyError::Rollback {
            saved: c.size,
            latest: latest.size,
        });
    }
    let wanted = saved.iter().map(|c| c.size).chain([latest.size]).collect();
    let mut replay = Replay::new(wanted);
    bar.set_length(latest.size);
    let mut index = 0u64;
    while let Some(tile) = Tile::in_tree(TileKind::Entries, index, latest.size) {
        let path = format!("/log/{}", tile.path());
        let bundle = client.get(&path, BUNDLE_BYTES_MAX)?;
        let entries = parse_entry_bundle(&bundle).map_err(|e| VerifyError::Fetch {
            url: format!("{base}{path}"),
            message: e.to_string(),
        })?;
        if entries.len() != usize::from(tile.width()) {
            return Err(VerifyError::Fetch {
                url: format!("{base}{path}"),
                message: format!(
                    "the bundle holds {} entries, the tile is {} wide",
                    entries.len(),
                    tile.width()
                ),
            });
        }
        for entry in entries {
            let expected_seq = replay.chain.len();
            let checked = check_entry(entry).map_err(|e| match e {
                ChainError::Malformed { seq: None, reason } => {
                    VerifyError::Chain(ChainError::Malformed {
                        seq: Some(expected_seq),
                        reason,
                    })
                }
                other => VerifyError::Chain(other),
            })?;
            replay.push(&checked).map_err(VerifyError::Chain)?;
        }
        bar.inc(u64::from(tile.width()));
        index += 1;
    }
    let mut report = replay.report();
    check_root(&latest, &replay.roots, report.events)?;
    for c in &saved {
        let path = format!(
            "/api/v1/public/proofs/consistency?from={}&to={}",
            c.size, latest.size
        );
        let body = client.get(&path, SMALL_BODY_BYTES_MAX)?;
        let proof: ConsistencyProof =
            serde_json::from_slice(&body).map_err(|e| VerifyError::Fetch {
                url: format!("{base}{path}"),
                message: format!("not a consistency proof: {e}"),
            })?;
        if proof.from != c.size || proof.to != latest.size {
            return Err(VerifyError::Fetch {
                url: format!("{base}{path}"),
                message: format!(
                    "asked for a proof from {} to {}, got one from {} to {}",
                    c.size, latest.size, proof.from, proof.to
                ),
            });
        }
        let hashes = hashes_from_hex(&proof.hashes).map_err(|message| VerifyError::Fetch {
            url: format!("{base}{path}"),
            message,
        })?;
        verify_consistency(c.size, latest.size, &c.root, &latest.root, &hashes).map_err(|e| {
            VerifyError::Inconsistent {
                size: c.size,
                latest: latest.size,
                error: e.to_string(),
            }
        })?;
        check_root(c, &replay.roots, report.events)?;
    }
    report.older_checked = saved.len();
    report.latest = Some(latest);
    Ok(report)
}

/// What a verified receipt bundle says.
#[derive(Debug, Clone)]
pub struct ReceiptReport {
    pub receipt_code: String,
    pub seq: u64,
    pub event_hash: Hash,
    pub checkpoint: Checkpoint,
    /// The event's `data` members that describe the gift (project, amount_minor, currency).
    pub summary: String,
    /// The gift's refund, when the bundle carries one: its event checked, and proven in the
    /// same checkpoint unless it is newer.
    pub refund: Option<RefundReport>,
}

/// A receipt's refund, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundReport {
    pub seq: u64,
    pub event_hash: Hash,
    /// Whether its inclusion proof led to the checkpoint's root; `false` when the refund is
    /// newer than the checkpoint (its event then checks against its own hash only).
    pub included: bool,
}

/// Checks a receipt bundle (as served by `/api/v1/public/receipts/{code}/proof`): the event
/// hashes to `event_hash` and sits at `seq` with that receipt code, the checkpoint carries a
/// valid signature by `key`, and the inclusion proof leads from the event to the
/// checkpoint's root at its size. A refund in the bundle is checked the same way, and must
/// be a `donation_refunded` event naming the gift's seq.
pub fn verify_receipt(bundle: &str, key: &VerifierKey) -> Result<ReceiptReport, VerifyError> {
    let bad = |m: String| VerifyError::Receipt(m);
    let bundle: ReceiptProof =
        serde_json::from_str(bundle).map_err(|e| bad(format!("not a receipt proof: {e}")))?;
    let checkpoint =
        Checkpoint::open(&bundle.checkpoint, key).map_err(|error| VerifyError::Checkpoint {
            which: "the receipt's checkpoint".into(),
            error,
        })?;
    let gift = ProvenEvent {
        what: "the event",
        seq: bundle.seq,
        event: &bundle.event,
        event_hash: &bundle.event_hash,
        inclusion: Some(&bundle.inclusion),
    };
    let (event_hash, value) = gift.check(&checkpoint)?;
    let data = &value["data"];
    if value["type"].as_str() != Some("donation_received")
        || data["receipt_code"].as_str() != Some(bundle.receipt_code.as_str())
    {
        return Err(bad(format!(
            "the event is a {} with receipt_code {}, the bundle is for the gift {:?}",
            value["type"], data["receipt_code"], bundle.receipt_code
        )));
    }
    let refund = match &bundle.refund {
        None => None,
        Some(r) => {
            let proven = ProvenEvent {
                what: "the refund",
                seq: r.seq,
                event: &r.event,
                event_hash: &r.event_hash,
                inclusion: r.inclusion.as_ref(),
            };
            let (event_hash, value) = proven.check(&checkpoint)?;
            if value["type"].as_str() != Some("donation_refunded")
                || value["data"]["donation_seq"].as_u64() != Some(bundle.seq)
            {
                return Err(bad(format!(
                    "the refund is a {} of donation {}, not a donation_refunded of {}",
                    value["type"], value["data"]["donation_seq"], bundle.seq
                )));
            }
            Some(RefundReport {
                seq: r.seq,
                event_hash,
                included: r.inclusion.is_some(),
            })
        }
    };
    let summary = format!(
        "{} {} {} to {}",
        value["type"].as_str().unwrap_or("?"),
        data["amount_minor"],
        data["currency"].as_str().unwrap_or("?"),
        data["project"].as_str().unwrap_or("?"),
    );
    Ok(ReceiptReport {
        receipt_code: bundle.receipt_code,
        seq: bundle.seq,
        event_hash,
        checkpoint,
        summary,
        refund,
    })
}

/// One event of a receipt bundle, with what the bundle says of it.
struct ProvenEvent<'a> {
    /// How errors name it.
    what: &'static str,
    seq: u64,
    event: &'a str,
    event_hash: &'a str,
    inclusion: Option<&'a InclusionProof>,
}

impl ProvenEvent<'_> {
    /// Checks that the event is well formed, hashes to `event_hash`, sits at `seq`, and that
    /// an inclusion proof leads from it to `checkpoint`'s root; without a proof only an
    /// event newer than the checkpoint passes (one it covers must be proven).
    /// Returns its hash and its JSON.
    fn check(&self, checkpoint: &Checkpoint) -> Result<(Hash, serde_json::Value), VerifyError> {
        let what = self.what;
        let bad = |m: String| VerifyError::Receipt(format!("{what}: {m}"));
        let entry = self.event.as_bytes();
        let checked = check_entry(entry).map_err(VerifyError::Chain)?;
        let declared =
            Hash::from_hex(self.event_hash).map_err(|e| bad(format!("event_hash: {e}")))?;
        if checked.hash != declared {
            return Err(bad(format!(
                "the event hashes to {}, the bundle says {declared}",
                checked.hash
            )));
        }
        if checked.seq != self.seq {
            return Err(bad(format!(
                "seq {} (event) and {} (bundle) must agree",
                checked.seq, self.seq
            )));
        }
        if self.inclusion.is_none() && self.seq < checkpoint.size {
            return Err(bad(format!(
                "event {} is covered by the checkpoint (tree size {}) but the bundle carries \
                 no inclusion proof of it",
                self.seq, checkpoint.size
            )));
        }
        if let Some(inclusion) = self.inclusion {
            if inclusion.leaf_index != self.seq || inclusion.tree_size != checkpoint.size {
                return Err(bad(format!(
                    "the proof is of leaf {} at tree size {}; the event is {} and the \
                     checkpoint is at {}",
                    inclusion.leaf_index, inclusion.tree_size, self.seq, checkpoint.size
                )));
            }
            let hashes = hashes_from_hex(&inclusion.hashes).map_err(bad)?;
            verify_inclusion(
                &leaf_hash(entry),
                self.seq,
                checkpoint.size,
                &hashes,
                &checkpoint.root,
            )
            .map_err(|e| bad(format!("the inclusion proof does not verify: {e}")))?;
        }
        let value = serde_json::from_slice(entry).map_err(|e| bad(format!("event: {e}")))?;
        Ok((declared, value))
    }
}
