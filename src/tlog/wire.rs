//! The JSON shapes of the proof endpoints, shared by the server and the `verify` client. They
//! are converted by hand from the `events` types, so the wire format can change without
//! touching the domain.

use events::Hash;
use serde::{Deserialize, Serialize};

/// `GET /api/v1/public/proofs/inclusion`: the RFC 9162 audit path of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The event's seq.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Lowercase hex, from the leaf's sibling up to the root's child.
    pub hashes: Vec<String>,
}

/// `GET /api/v1/public/proofs/consistency`: the RFC 9162 proof that the tree of `from`
/// leaves is a prefix of the tree of `to` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// `GET /api/v1/public/receipts/{code}/proof`: everything a donor needs to check one gift
/// offline with the ledger's verifier key: the event itself, the signed checkpoint, and the
/// inclusion proof of the event in that checkpoint's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptProof {
    pub receipt_code: String,
    pub seq: u64,
    /// SHA-256 of `event`, lowercase hex.
    pub event_hash: String,
    /// The event's canonical bytes (RFC 8785 JSON, without `hash`), as a string: the Merkle
    /// leaf input is exactly its UTF-8 bytes.
    pub event: String,
    /// The signed checkpoint (C2SP note text) the proof leads to.
    pub checkpoint: String,
    /// The inclusion proof of `seq` at the checkpoint's size.
    pub inclusion: InclusionProof,
    /// The refund of this gift, when it was refunded: its own event and inclusion proof in
    /// the same checkpoint. Absent for a gift not refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundProof>,
}

/// The `donation_refunded` event that refunds a receipt's gift, proven like the gift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundProof {
    pub seq: u64,
    /// SHA-256 of `event`, lowercase hex.
    pub event_hash: String,
    /// The refund event's canonical bytes, as a string (see [`ReceiptProof::event`]).
    pub event: String,
    /// The inclusion proof of `seq` at the checkpoint's size; `null` while the refund is
    /// newer than the latest signed checkpoint (ask again in a few seconds).
    pub inclusion: Option<InclusionProof>,
}

/// Hashes as lowercase hex.
pub fn hashes_to_hex(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_hex).collect()
}

/// Hex strings back to hashes, naming the first bad one.
pub fn hashes_from_hex(hashes: &[String]) -> Result<Vec<Hash>, String> {
    hashes
        .iter()
        .enumerate()
        .map(|(i, h)| Hash::from_hex(h).map_err(|e| format!("hashes[{i}]: {e}")))
        .collect()
}
