//! Signed checkpoints: the signing key on disk, the store of every checkpoint the ledger has
//! published, and the task that signs a new one when the log grows.
//!
//! Cadence: the signer wakes when the tree grows and signs the tree's current durable size,
//! at most once per [`CHECKPOINT_INTERVAL`] (1 s); an idle log signs nothing. On start it
//! signs at once when the log grew since the last checkpoint (or when none exists), and on
//! shutdown it signs the final size. So a gift is covered by a checkpoint about a second after
//! it is recorded, and a busy log publishes at most 86,400 checkpoints a day (about 250 bytes
//! each, 21 MB a day at the limit; nothing when idle).
//!
//! Storage: sled tree `checkpoints` maps the tree size (8 bytes, big-endian) to the signed
//! note, written and made durable before the checkpoint is served. Checkpoints are never
//! deleted: each is a commitment the log must stay consistent with, and a donor may hold any
//! of them.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use events::merkle::{consistency_proof, root, verify_consistency};
use events::{Checkpoint, Id, Note, SignerKey, VerifierKey};
use tokio::sync::watch;

use crate::store::{PersistedTree, StoreError};

/// The shortest time between two signed checkpoints.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Where `keygen` writes the signer key (the secret), relative to the data directory.
pub const SIGNER_KEY_PATH: &str = "keys/checkpoint-signer.key";
/// Where `keygen` writes the verifier key (public), relative to the data directory.
pub const VERIFIER_KEY_PATH: &str = "keys/checkpoint-verifier.key";
/// The name of the sled tree holding published checkpoints.
pub const CHECKPOINTS_TREE_NAME: &str = "checkpoints";
/// The longest key or checkpoint file this code reads.
pub const KEY_FILE_BYTES_MAX: u64 = 4096;

/// The key name (and checkpoint origin) a ledger gets when `keygen` is given no `--name`:
/// `example.org/ledger/<ledger id>`, the placeholder domain of the format's examples. An
/// operator with a domain should pass `--name <domain>/<path>` instead: the name is the log's
/// public identity and cannot change without a new key.
pub fn default_origin(ledger: &Id) -> String {
    format!("example.org/ledger/{}", ledger.as_str())
}

/// A key file that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path} exists already; a ledger keeps its signing key (remove the file yourself to replace it, which changes the log's identity)")]
    Exists { path: PathBuf },
    // Not a `source`: the message says it once (an error chain would print it twice).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{arg:?} is neither a verifier key (`<name>+<key id>+<base64>`: {reason}) nor a file holding one")]
    NotAKey { arg: String, reason: String },
    #[error("{path}: not a key: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("the key name {name:?} is invalid: {reason}")]
    Name { name: String, reason: String },
    #[error("{path} is {len} bytes; a key file is at most {max}")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |error| KeyError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Makes a new Ed25519 signer key named `name` under `data_dir` (file mode 0600, directory
/// 0700) and its verifier key beside it (0644), and returns the verifier key. Refuses to
/// replace an existing key.
pub fn keygen(data_dir: &Path, name: &str) -> Result<VerifierKey, KeyError> {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let signer = SignerKey::from_seed(name, seed).map_err(|e| KeyError::Name {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let signer_path = data_dir.join(SIGNER_KEY_PATH);
    let verifier_path = data_dir.join(VERIFIER_KEY_PATH);
    if signer_path.exists() {
        return Err(KeyError::Exists { path: signer_path });
    }
    let dir = signer_path.parent().expect("the key path has a directory");
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    set_mode(dir, 0o700)?;
    write_new(&signer_path, &signer.to_text(), 0o600)?;
    let verifier = signer.verifier_key();
    // The public half may be replaced (it is derived from the secret).
    let _ = fs::remove_file(&verifier_path);
    write_new(&verifier_path, &verifier.to_text(), 0o644)?;
    Ok(verifier)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists {
            path: path.to_owned(),
        },
        _ => KeyError::Io {
            path: path.to_owned(),
            error: e,
        },
    })?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(io_error(path))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error(path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Reads a small text file (a key, a note), refusing anything over [`KEY_FILE_BYTES_MAX`].
pub fn read_small_text(path: &Path, max: u64) -> Result<String, KeyError> {
    let len = fs::metadata(path).map_err(io_error(path))?.len();
    if len > max {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            len,
            max,
        });
    }
    let bytes = fs::read(path).map_err(io_error(path))?;
    String::from_utf8(bytes).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        reason: "not UTF-8".into(),
    })
}

/// The data directory's signer key, if `keygen` made one.
pub fn load_signer(data_dir: &Path) -> Result<Option<SignerKey>, KeyError> {
    let path = data_dir.join(SIGNER_KEY_PATH);
    if !path.exists() {
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&path)
            .map_err(io_error(&path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the checkpoint signer key is readable by others; chmod 600 it");
        }
    }
    let text = read_small_text(&path, KEY_FILE_BYTES_MAX)?;
    SignerKey::parse(text.trim())
        .map(Some)
        .map_err(|e| KeyError::Malformed {
            path,
            reason: e.to_string(),
        })
}

/// A verifier key given as its text, or as the path of a file holding it.
pub fn parse_verifier_key(arg: &str) -> Result<VerifierKey, KeyError> {
    let reason = match VerifierKey::parse(arg.trim()) {
        Ok(key) => return Ok(key),
        Err(e) => e.to_string(),
    };
    let path = PathBuf::from(arg);
    if !path.exists() {
        return Err(KeyError::NotAKey {
            arg: arg.to_owned(),
            reason,
        });
    }
    let text = read_small_text(&path, KEY_FILE_BYTES_MAX)?;
    VerifierKey::parse(text.trim()).map_err(|e| KeyError::Malformed {
        path,
        reason: e.to_string(),
    })
}

/// Makes written data durable (for sled: flush and fdatasync).
pub type SyncFn = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// Every checkpoint the ledger has published, by tree size.
#[derive(Clone)]
pub struct CheckpointStore {
    tree: sled::Tree,
    sync: SyncFn,
    key: Option<VerifierKey>,
}

impl CheckpointStore {
    /// The store in `db`, made durable by `sync` after each write; `key` is the verifier key
    /// of the checkpoints (served at `/log/key`), when the ledger has one.
    pub fn open(
        db: &sled::Db,
        sync: SyncFn,
        key: Option<VerifierKey>,
    ) -> Result<CheckpointStore, StoreError> {
        Ok(CheckpointStore {
            tree: db
                .open_tree(CHECKPOINTS_TREE_NAME)
                .map_err(StoreError::io)?,
            sync,
            key,
        })
    }

    /// A store that lives in memory only (for backends without a local database, and tests).
    pub fn temporary(key: Option<VerifierKey>) -> Result<CheckpointStore, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(StoreError::io)?;
        let flush_db = db.clone();
        let sync: SyncFn = Arc::new(move || flush_db.flush().map(|_| ()).map_err(StoreError::io));
        CheckpointStore::open(&db, sync, key)
    }

    /// The verifier key of the checkpoints, when the ledger signs them.
    pub fn key(&self) -> Option<&VerifierKey> {
        self.key.as_ref()
    }

    /// The latest published checkpoint: its size and signed note.
    pub fn latest(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self.tree.last().map_err(StoreError::io)? {
            Some((k, v)) => Ok(Some((key_size(&k)?, note_text(&v)?))),
            None => Ok(None),
        }
    }

    /// The checkpoint published at exactly `size`, if any.
    pub fn at(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.tree
            .get(size.to_be_bytes())
            .map_err(StoreError::io)?
            .map(|v| note_text(&v))
            .transpose()
    }

    /// Every published checkpoint, smallest size first.
    pub fn all(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.tree
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(StoreError::io)?;
                Ok((key_size(&k)?, note_text(&v)?))
            })
            .collect()
    }

    /// Stores a signed checkpoint durably. Publishing twice at one size keeps the first. A
    /// checkpoint whose barrier fails is taken back out, so it is never served (and the next
    /// signing tries again).
    pub fn publish(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let inserted = self
            .tree
            .compare_and_swap(
                size.to_be_bytes(),
                None as Option<&[u8]>,
                Some(note.as_bytes()),
            )
            .map_err(StoreError::io)?
            .is_ok();
        (self.sync)().inspect_err(|_| {
            if inserted {
                let _ = self.tree.remove(size.to_be_bytes());
            }
        })
    }
}

fn key_size(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Io("a checkpoint key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn note_text(value: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(value.to_vec())
        .map_err(|_| StoreError::Io("a stored checkpoint is not UTF-8".into()))
}

/// A checkpoint that cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the latest published checkpoint is at size {published}, but the log holds only {size} events: acknowledged events are missing")]
    LogShrank { published: u64, size: u64 },
    #[error("the checkpoint published at size {size} has root {published}, the log's tree at that size has root {computed}: this is not the log those checkpoints were signed for")]
    RootDiffers {
        size: u64,
        published: events::Hash,
        computed: events::Hash,
    },
    #[error("reading the tree: {0}")]
    Tree(String),
    #[error("signing: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs and publishes checkpoints of one tree with one key.
#[derive(Clone)]
pub struct CheckpointSigner {
    tree: Arc<PersistedTree>,
    store: CheckpointStore,
    key: Arc<SignerKey>,
}

impl CheckpointSigner {
    /// Checks that the published checkpoints belong to this tree (the latest one's size is
    /// within the tree and its root is the tree's root at that size) and returns a signer.
    pub fn new(
        tree: Arc<PersistedTree>,
        store: CheckpointStore,
        key: SignerKey,
    ) -> Result<CheckpointSigner, SignError> {
        let signer = CheckpointSigner {
            tree,
            store,
            key: Arc::new(key),
        };
        if let Some((size, note)) = signer.store.latest()? {
            let published = parse_unverified(&note)
                .map_err(|e| SignError::Sign(format!("the stored checkpoint at {size}: {e}")))?;
            let tree_size = signer.tree.size();
            if size > tree_size {
                return Err(SignError::LogShrank {
                    published: size,
                    size: tree_size,
                });
            }
            let computed = signer.root_at(size)?;
            if computed != published.root {
                return Err(SignError::RootDiffers {
                    size,
                    published: published.root,
                    computed,
                });
            }
        }
        Ok(signer)
    }

    fn root_at(&self, size: u64) -> Result<events::Hash, SignError> {
        let at = self
            .tree
            .at(size)
            .map_err(|e| SignError::Tree(e.to_string()))?;
        root(size, &at).map_err(|e| SignError::Tree(e.to_string()))
    }

    /// Signs the tree at its current durable size and publishes the checkpoint, unless one
    /// is published at that size already. Returns the size signed. Before publishing, checks
    /// (an invariant, not an input check) that the new checkpoint is consistent with the
    /// previous one.
    pub fn sign_current(&self) -> Result<u64, SignError> {
        let size = self.tree.size();
        if self.store.at(size)?.is_some() {
            return Ok(size);
        }
        let new_root = self.root_at(size)?;
        if let Some((old_size, old_note)) = self.store.latest()? {
            let old = parse_unverified(&old_note).map_err(|e| SignError::Sign(e.to_string()))?;
            let at = self
                .tree
                .at(size)
                .map_err(|e| SignError::Tree(e.to_string()))?;
            let proof = consistency_proof(old_size, size, &at)
                .map_err(|e| SignError::Tree(e.to_string()))?;
            verify_consistency(old_size, size, &old.root, &new_root, &proof).map_err(|e| {
                SignError::Sign(format!(
                    "refusing to sign size {size}: not consistent with the checkpoint at {old_size}: {e}"
                ))
            })?;
        }
        let note = Checkpoint::new(self.key.name(), size, new_root)
            .sign(&self.key)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        self.store.publish(size, &note)?;
        tracing::debug!(size, root = %new_root, "checkpoint published");
        Ok(size)
    }

    /// Starts the signing task: it signs when the tree grows, at most once per `interval`,
    /// and once more when `shutdown` turns true.
    pub fn spawn(
        self,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut sizes = self.tree.watch_size();
            loop {
                sizes.borrow_and_update();
                let signer = self.clone();
                match tokio::task::spawn_blocking(move || signer.sign_current()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "could not sign a checkpoint"),
                    Err(e) => tracing::error!(error = %e, "the checkpoint signer panicked"),
                }
                // The rate limit: nothing new is signed before the interval is over.
                let stop = tokio::select! {
                    _ = tokio::time::sleep(interval) => false,
                    _ = shutdown.changed() => true,
                };
                let stop = stop
                    || tokio::select! {
                        changed = sizes.changed() => changed.is_err(),
                        _ = shutdown.changed() => true,
                    };
                if stop {
                    let signer = self.clone();
                    match tokio::task::spawn_blocking(move || signer.sign_current()).await {
                        Ok(Ok(size)) => tracing::info!(size, "final checkpoint signed"),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "could not sign the final checkpoint")
                        }
                        Err(e) => tracing::error!(error = %e, "the checkpoint signer panicked"),
                    }
                    return;
                }
            }
        })
    }
}

/// The checkpoint in a note, without checking its signature (for the log's own records).
pub fn parse_unverified(note: &str) -> Result<Checkpoint, events::CheckpointError> {
    let note = Note::parse(note)?;
    Checkpoint::parse(&note.text)
}

/// Splits a file of saved checkpoint notes (as fetched from `/log/checkpoint`, one after
/// another, blank lines between them allowed) into the notes.
///
/// A note is its text lines, one blank line, then its signature lines (starting with `— `).
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if in_signatures {
            if bare.starts_with("\u{2014} ") {
                current.push_str(line);
                continue;
            }
            notes.push(std::mem::take(&mut current));
            in_signatures = false;
        }
        if bare.is_empty() {
            if current.is_empty() {
                continue; // blank lines between notes
            }
            current.push_str(line);
            in_signatures = true;
            continue;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        notes.push(current);
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_split_at_their_signatures() {
        let key = SignerKey::from_seed("example.org/ledger/t", [7; 32]).unwrap();
        let a = Checkpoint::new("example.org/ledger/t", 1, events::Hash([1; 32]))
            .sign(&key)
            .unwrap();
        let b = Checkpoint::new("example.org/ledger/t", 2, events::Hash([2; 32]))
            .sign(&key)
            .unwrap();
        let file = format!("{a}{b}\n\n{a}");
        assert_eq!(split_notes(&file), vec![a.clone(), b, a]);
    }

    /// `--key garbage` says it is neither a key nor a file, once, with the key's form.
    #[test]
    fn a_verifier_key_argument_that_is_neither_key_nor_file_is_named() {
        let e = parse_verifier_key("garbage").unwrap_err();
        let message = format!("{:#}", anyhow::Error::from(e));
        assert!(
            message
                .starts_with("\"garbage\" is neither a verifier key (`<name>+<key id>+<base64>`"),
            "{message}"
        );
        assert!(message.ends_with("nor a file holding one"), "{message}");
        // A file that cannot be read names the file and the reason, once.
        let dir = tempfile::tempdir().unwrap();
        let e = read_small_text(&dir.path().join("missing"), 10).unwrap_err();
        let message = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(message.matches("No such file").count(), 1, "{message}");
    }

    #[test]
    fn keygen_writes_a_private_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = keygen(dir.path(), "example.org/ledger/t").unwrap();
        let signer = load_signer(dir.path()).unwrap().unwrap();
        assert_eq!(signer.verifier_key(), verifier);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(SIGNER_KEY_PATH))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            keygen(dir.path(), "example.org/ledger/t"),
            Err(KeyError::Exists { .. })
        ));
        let from_file =
            parse_verifier_key(dir.path().join(VERIFIER_KEY_PATH).to_str().unwrap()).unwrap();
        assert_eq!(from_file, verifier);
        assert_eq!(parse_verifier_key(&verifier.to_text()).unwrap(), verifier);
        assert!(matches!(
            keygen(dir.path(), "bad name"),
            Err(KeyError::Name { .. })
        ));
    }
}
