//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, compatible with Go's
//! `golang.org/x/mod/sumdb/note`, and C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! A signed note is a text ending in a newline, a blank line, then one or more signature
//! lines `— <key name> <base64(key id (4 bytes, big-endian) || signature)>\n` (U+2014 em
//! dash). An Ed25519 signature is computed over the text including its final newline.
//!
//! Keys are text:
//! - verifier key: `<name>+<key id as 8 hex digits>+<base64(0x01 || 32-byte public key)>`;
//! - signer key: `PRIVATE+KEY+<name>+<key id as 8 hex digits>+<base64(0x01 || 32-byte seed)>`;
//! - key id: the first 4 bytes (big-endian) of `SHA-256(name || 0x0A || 0x01 || public key)`.
//!
//! Key generation takes a 32-byte seed from the caller, so this crate needs no randomness.
//!
//! ```
//! use events::merkle::MemoryTree;
//! use events::note::*;
//!
//! let key = SignerKey::from_seed("example.org/ledger/demo", [7; 32]).unwrap();
//! let tree = MemoryTree::from_leaves([b"a", b"b", b"c"]);
//! let checkpoint = Checkpoint::new("example.org/ledger/demo", tree.size(), tree.root());
//! let signed = checkpoint.sign(&key).unwrap();
//! // A verifier holding only the public key text:
//! let verifier = VerifierKey::parse(&key.verifier_key().to_text()).unwrap();
//! assert_eq!(Checkpoint::open(&signed, &verifier).unwrap(), checkpoint);
//! ```

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::seal::sha256;
use crate::values::Hash;

/// The signature type byte of Ed25519 keys.
pub const ALG_ED25519: u8 = 0x01;

/// The most signature lines a note may carry (Go's limit; the spec asks for at least 16).
pub const NOTE_SIGNATURES_MAX: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

/// A malformed key or note, or a note whose signatures do not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("a key name must be non-empty and contain no spaces or '+' (got {name:?})")]
    InvalidKeyName { name: String },
    #[error("malformed key: {reason}")]
    MalformedKey { reason: &'static str },
    #[error("key algorithm {alg} is not supported (only 1, Ed25519)")]
    UnsupportedAlgorithm { alg: u8 },
    #[error("the key id {declared:08x} does not match the key (its id is {computed:08x})")]
    KeyIdMismatch { declared: u32, computed: u32 },
    #[error("the Ed25519 public key is not valid")]
    InvalidPublicKey,
    #[error("more than one verifier key has name {name:?} and id {key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("a note text must end in a newline")]
    TextWithoutFinalNewline,
    #[error("a note must not contain control characters other than newline (U+{code:04X} at byte {offset})")]
    ControlCharacter { offset: usize, code: u32 },
    #[error("a signed note needs a blank line and then signature lines after its text")]
    NoSignatureBlock,
    #[error("signature line {line}: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error("a note may carry at most {max} signatures")]
    TooManySignatures { max: usize },
    #[error("the signature by key {name}+{key_id:08x} does not verify")]
    BadSignature { name: String, key_id: u32 },
    #[error("the note has no signature by a known key")]
    NoKnownSignature,
    #[error("signing a note needs at least one key")]
    NoSigner,
}

/// Whether `name` can name a key: non-empty, without Unicode white space or `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName {
            name: name.to_owned(),
        })
    }
}

/// The key id of an Ed25519 key: the first 4 bytes, big-endian, of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut input = Vec::with_capacity(name.len() + 34);
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ALG_ED25519);
    input.extend_from_slice(public_key);
    let digest = sha256(&input);
    u32::from_be_bytes([digest.0[0], digest.0[1], digest.0[2], digest.0[3]])
}

/// Splits the text of a key after the name: `<name>+<8 hex digits>+<base64 key data>`, and
/// checks the name, the id's form and the algorithm byte. Returns the name, the declared id
/// and the 32 key bytes.
fn parse_key_body(text: &str) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey {
            reason: "expected <name>+<key id>+<key data>",
        });
    };
    check_key_name(name)?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey {
            reason: "the key id must be 8 hex digits",
        });
    }
    let declared = u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedKey {
        reason: "the key id must be 8 hex digits",
    })?;
    let data = BASE64.decode(data).map_err(|_| NoteError::MalformedKey {
        reason: "the key data must be standard padded base64",
    })?;
    let Some((&alg, key)) = data.split_first() else {
        return Err(NoteError::MalformedKey {
            reason: "the key data is empty",
        });
    };
    if alg != ALG_ED25519 {
        return Err(NoteError::UnsupportedAlgorithm { alg });
    }
    let key: [u8; 32] = key.try_into().map_err(|_| NoteError::MalformedKey {
        reason: "an Ed25519 key is 32 bytes",
    })?;
    Ok((name, declared, key))
}

fn format_key_body(name: &str, key_id: u32, key: &[u8; 32]) -> String {
    let mut data = Vec::with_capacity(33);
    data.push(ALG_ED25519);
    data.extend_from_slice(key);
    format!("{name}+{key_id:08x}+{}", BASE64.encode(data))
}

fn check_key_id(declared: u32, computed: u32) -> Result<(), NoteError> {
    if declared == computed {
        Ok(())
    } else {
        Err(NoteError::KeyIdMismatch { declared, computed })
    }
}

/// A named Ed25519 signing key. Its `Debug` form hides the secret.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl SignerKey {
    /// The signing key with this name and 32-byte Ed25519 seed (RFC 8032 private key). The
    /// caller supplies the randomness (for example from the operating system's generator).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(SignerKey {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`, checking that the id
    /// matches the key.
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let body = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey {
                reason: "a signer key starts with PRIVATE+KEY+",
            })?;
        let (name, declared, seed) = parse_key_body(body)?;
        let key = SignerKey::from_seed(name, seed)?;
        check_key_id(declared, key.key_id)?;
        Ok(key)
    }

    /// The key as text: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`. This is the
    /// secret; store it as such.
    pub fn to_text(&self) -> String {
        format!(
            "PRIVATE+KEY+{}",
            format_key_body(&self.name, self.key_id, self.key.as_bytes())
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The signature line this key gives `text` (which must already be checked).
    fn signature_line(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl FromStr for SignerKey {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignerKey::parse(s)
    }
}

/// A named Ed25519 public key that checks signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key with this name and 32-byte Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: [u8; 32]) -> Result<VerifierKey, NoteError> {
        check_key_name(name)?;
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| NoteError::InvalidPublicKey)?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            key,
        })
    }

    /// Parses `<name>+<key id>+<base64(0x01 || public key)>`, checking that the id matches
    /// the key.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, declared, public_key) = parse_key_body(text)?;
        let key = VerifierKey::from_public_key(name, public_key)?;
        check_key_id(declared, key.key_id)?;
        Ok(key)
    }

    /// The key as text: `<name>+<key id>+<base64(0x01 || public key)>`.
    pub fn to_text(&self) -> String {
        format_key_body(&self.name, self.key_id, self.key.as_bytes())
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` (without the key id) is this key's signature of `text`.
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|sig| self.key.verify_strict(text.as_bytes(), &sig).is_ok())
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifierKey::parse(s)
    }
}

/// One signature line of a note: `— <name> <base64(key id || signature)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: u32,
    /// The signature bytes after the key id (64 for Ed25519).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut data = Vec::with_capacity(4 + self.signature.len());
        data.extend_from_slice(&self.key_id.to_be_bytes());
        data.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(data))
    }

    /// Parses one line (without its newline); `line` is its 1-based number for errors.
    fn parse(text: &str, line: usize) -> Result<NoteSignature, NoteError> {
        let malformed = |reason| NoteError::MalformedSignatureLine { line, reason };
        let rest = text.strip_prefix(SIG_PREFIX).ok_or(malformed(
            "a signature line starts with an em dash and a space",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(malformed("expected a key name, a space and a signature"))?;
        if !is_valid_key_name(name) {
            return Err(malformed("invalid key name"));
        }
        let data = BASE64
            .decode(b64)
            .map_err(|_| malformed("the signature must be standard padded base64"))?;
        if data.len() < 5 {
            return Err(malformed(
                "a signature is a 4-byte key id and at least one byte",
            ));
        }
        let (id, signature) = data.split_at(4);
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
            signature: signature.to_vec(),
        })
    }
}

/// Checks the rules every note text shares: no control characters but newline, and a final
/// newline.
fn check_note_text(text: &str) -> Result<(), NoteError> {
    if let Some((offset, c)) = text
        .char_indices()
        .find(|&(_, c)| c < '\u{20}' && c != '\n')
    {
        return Err(NoteError::ControlCharacter {
            offset,
            code: u32::from(c),
        });
    }
    if !text.ends_with('\n') {
        return Err(NoteError::TextWithoutFinalNewline);
    }
    Ok(())
}

/// A note split into its text and signature lines, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, including its final newline but not the blank line.
    pub text: String,
    /// The signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note's syntax: text, the last blank line, signature lines.
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        check_note_text(note)?;
        // The text is separated from the signatures by the last empty line.
        let split = note.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let (text, block) = (&note[..split + 1], &note[split + 2..]);
        if block.is_empty() {
            return Err(NoteError::NoSignatureBlock);
        }
        // `block` ends in a newline (checked above), so the last piece is empty.
        let lines: Vec<&str> = block[..block.len() - 1].split('\n').collect();
        if lines.len() > NOTE_SIGNATURES_MAX {
            return Err(NoteError::TooManySignatures {
                max: NOTE_SIGNATURES_MAX,
            });
        }
        let signatures = lines
            .iter()
            .enumerate()
            .map(|(i, line)| NoteSignature::parse(line, i + 1))
            .collect::<Result<_, _>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out
    }
}

/// A note whose signatures by known keys all verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The text, including its final newline.
    pub text: String,
    /// Signatures by known keys, each verified (at least one).
    pub verified: Vec<NoteSignature>,
    /// Signatures by unknown keys, not checked (for example a witness's cosignature).
    pub unverified: Vec<NoteSignature>,
}

/// Signs `text` (which must end in a newline and contain no control characters other than
/// newline) with each key in turn and returns the signed note.
pub fn sign_note(text: &str, signers: &[&SignerKey]) -> Result<String, NoteError> {
    check_note_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSigner);
    }
    if signers.len() > NOTE_SIGNATURES_MAX {
        return Err(NoteError::TooManySignatures {
            max: NOTE_SIGNATURES_MAX,
        });
    }
    let note = Note {
        text: text.to_owned(),
        signatures: signers.iter().map(|s| s.signature_line(text)).collect(),
    };
    Ok(note.to_text())
}

/// Parses a signed note and checks its signatures against `keys`, as Go's `note.Open` does:
/// every signature by a known key (same name and id) must verify; signatures by unknown keys
/// are kept aside unchecked; repeated signatures are dropped; at least one signature by a
/// known key is required.
pub fn open_note(note: &str, keys: &[VerifierKey]) -> Result<OpenedNote, NoteError> {
    let Note { text, signatures } = Note::parse(note)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for sig in signatures {
        let mut matching = keys
            .iter()
            .filter(|k| k.name == sig.name && k.key_id == sig.key_id);
        let Some(key) = matching.next() else {
            if !unverified.contains(&sig) {
                unverified.push(sig);
            }
            continue;
        };
        if matching.any(|other| other != key) {
            return Err(NoteError::AmbiguousKey {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            continue;
        }
        if !key.verifies(&text, &sig.signature) {
            return Err(NoteError::BadSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        verified.push(sig);
    }
    if verified.is_empty() {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(OpenedNote {
        text,
        verified,
        unverified,
    })
}

/// A checkpoint that is malformed, unsigned or signed by another log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    #[error("a checkpoint text must end in a newline")]
    NoFinalNewline,
    #[error("a checkpoint has at least 3 lines: origin, tree size, root hash (got {got})")]
    TooFewLines { got: usize },
    #[error("checkpoint line {line} ({field}): {reason}")]
    Malformed {
        line: usize,
        field: &'static str,
        reason: &'static str,
    },
    #[error("the checkpoint's origin {origin:?} is not the name of its key {key_name:?}")]
    OriginMismatch { origin: String, key_name: String },
}

/// A log's signed statement of its tree: the C2SP tlog-checkpoint note text.
///
/// ```text
/// <origin>\n
/// <tree size in decimal>\n
/// <base64 of the 32-byte root hash>\n
/// [<extension line>\n ...]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, conventionally a schema-less URL such as `example.org/ledger/x`.
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The RFC 9162 root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Optional non-empty opaque lines after the root hash.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text. It parses back to `self` when [`Checkpoint::validate`] passes.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        );
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Checks that the origin and extension lines are non-empty single lines without
    /// control characters.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        let check_line = |line: usize, field, text: &str| {
            let reason = if text.is_empty() {
                Some("must not be empty")
            } else if text.chars().any(|c| c < '\u{20}') {
                Some("must not contain newlines or control characters")
            } else {
                None
            };
            match reason {
                Some(reason) => Err(CheckpointError::Malformed {
                    line,
                    field,
                    reason,
                }),
                None => Ok(()),
            }
        };
        check_line(1, "origin", &self.origin)?;
        for (i, ext) in self.extensions.iter().enumerate() {
            check_line(4 + i, "extension", ext)?;
        }
        Ok(())
    }

    /// Parses a checkpoint note text (without signatures).
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::NoFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { got: lines.len() });
        };
        let malformed = |line, field, reason| CheckpointError::Malformed {
            line,
            field,
            reason,
        };
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (*size == "0" || !size.starts_with('0'));
        if !size_ok {
            return Err(malformed(
                2,
                "tree size",
                "must be a decimal number without leading zeros",
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| malformed(2, "tree size", "must be at most 2^64 - 1"))?;
        let root: [u8; 32] = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(malformed(
                3,
                "root hash",
                "must be standard padded base64 of 32 bytes",
            ))?;
        let checkpoint = Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root: Hash(root),
            extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
        };
        checkpoint.validate()?;
        Ok(checkpoint)
    }

    /// Signs the checkpoint as a note with `key`, whose name must be the origin (the C2SP
    /// recommendation, which [`Checkpoint::open`] enforces).
    pub fn sign(&self, key: &SignerKey) -> Result<String, CheckpointError> {
        self.validate()?;
        self.check_origin(key.name())?;
        Ok(sign_note(&self.to_text(), &[key])?)
    }

    fn check_origin(&self, key_name: &str) -> Result<(), CheckpointError> {
        if self.origin == key_name {
            Ok(())
        } else {
            Err(CheckpointError::OriginMismatch {
                origin: self.origin.clone(),
                key_name: key_name.to_owned(),
            })
        }
    }

    /// Opens a signed checkpoint: the note must carry a valid signature by `key` (other
    /// signatures, such as witness cosignatures, are ignored), its text must be a well-formed
    /// checkpoint, and its origin must be the key's name.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
        let opened = open_note(note, std::slice::from_ref(key))?;
        let checkpoint = Checkpoint::parse(&opened.text)?;
        checkpoint.check_origin(key.name())?;
        Ok(checkpoint)
    }
}
