//! Bearer tokens for the staff API, stored hashed in a sled tree of the ledger's database.
//!
//! A token is `ldg_` followed by 64 hex digits (256 random bits from the OS). Only its
//! SHA-256 is stored: a slow password hash buys nothing for a secret of 256 random bits, and
//! the lookup stays one sled read per request. A token's public id is the first 16 hex
//! digits of that hash; `token list` and the admin API show ids, never tokens.
//!
//! A token's creation and revocation are durable before they are answered: the store syncs
//! through the log's durability barrier ([`SledLog::sync`]: sled's flush, then fdatasync),
//! not sled's own flush, which on Linux survives a crash of the process but not a power
//! loss, so a revoked token could come back.
//!
//! The log records every token's grant and revocation (`staff_token_issued`,
//! `staff_token_revoked`, with the token's id, holder and role, never the token), so who could
//! act in which role is auditable with the rest of the ledger. A token issued through the API
//! is in the log before it exists in the store ([`TokenStore::issue`]); a revocation is in the
//! store first, so the token stops working at once, then in the log. Tokens made or revoked
//! with the `token` command, while the server is stopped, reach the log when `serve` starts
//! ([`TokenStore::record_in_log`]), before it answers any request.

use events::{Id, StaffTokenIssued, StaffTokenRevoked};
use projections::LedgerState;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Role;
use crate::command::{Command, CommandError};
use crate::store::{BarrierHandle, SledLog, StoreError};
use crate::writer::{Submission, WriteError, WriterHandle};

/// The actor of token events that record what was done on the server's command line (the
/// `token` command), where no staff member is named.
pub const OPERATOR: &str = "operator";

/// Why a token could not be issued, revoked or recorded in the log.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The prefix of every token, so a leaked one is easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "ldg_";
/// The length of a token: the prefix and 64 hex digits.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 64;
/// The sled tree holding the token hashes.
pub const TOKENS_TREE: &str = "http_tokens";

/// What is known about a token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The token's public id: the first 16 hex digits of its SHA-256.
    pub id: String,
    /// The staff member the token acts as; the four-eyes rule compares these.
    #[schema(value_type = String)]
    pub actor: Id,
    #[schema(value_type = super::auth::RoleSchema)]
    pub role: Role,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
    /// The admin who created the token through the API; absent for one created with the
    /// `token` command on the server. The four-eyes rule counts a token's issuer as its
    /// holder, so an admin cannot approve their own request with a token they made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub issued_by: Option<Id>,
    /// The admin who revoked the token through the API; absent when it is live or was
    /// revoked with the `token` command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub revoked_by: Option<Id>,
}

/// The token store. Cheap to clone.
#[derive(Clone)]
pub struct TokenStore {
    /// The barrier of the ledger's log, whose database holds the tree: it makes a change
    /// durable (one barrier for the whole database, so a failed fdatasync stops the log
    /// too, whoever saw it). Weak: the store does not keep the log open.
    barrier: BarrierHandle,
    tree: sled::Tree,
}

fn hash_token(token: &str) -> [u8; 32] {
    events::sha256(token.as_bytes()).0
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl TokenStore {
    /// Opens the token tree of a ledger's sled database.
    pub fn open(log: &SledLog) -> Result<TokenStore, StoreError> {
        Ok(TokenStore {
            barrier: log.barrier_handle(),
            tree: log.db().open_tree(TOKENS_TREE).map_err(StoreError::io)?,
        })
    }

    /// Creates a token on the server (no issuer) and returns it (the only time it is ever
    /// shown) with its record.
    pub fn create(&self, actor: Id, role: Role) -> Result<(String, TokenInfo), StoreError> {
        self.create_by(actor, role, None)
    }

    /// [`Self::create`], recording the admin who issued it.
    pub fn create_by(
        &self,
        actor: Id,
        role: Role,
        issued_by: Option<Id>,
    ) -> Result<(String, TokenInfo), StoreError> {
        let (token, hash, info) = mint(actor, role, issued_by);
        self.put(&hash, &info)?;
        Ok((token, info))
    }

    /// Issues a token through the API: records its grant in the log, made durable by the
    /// writer, then keeps its hash, so no token works that the log does not show.
    pub async fn issue(
        &self,
        writer: &WriterHandle,
        issuer: Id,
        holder: Id,
        role: Role,
    ) -> Result<(String, TokenInfo), TokenError> {
        let (token, hash, info) = mint(holder, role, Some(issuer.clone()));
        submit(writer, issuer, issue_command(&info)).await?;
        self.put(&hash, &info)?;
        Ok((token, info))
    }

    /// Revokes a token through the API, on behalf of `by`: in the store first (it stops
    /// working at once), then in the log. `None` when there is no such token.
    pub async fn withdraw(
        &self,
        writer: &WriterHandle,
        state: &LedgerState,
        by: Id,
        id: &str,
    ) -> Result<Option<TokenInfo>, TokenError> {
        let Some(info) = self.revoke_by(id, Some(by))? else {
            return Ok(None);
        };
        self.record_token(writer, state, &info).await?;
        Ok(Some(info))
    }

    /// Records in the log what the store knows and the log does not: tokens made or revoked
    /// with the `token` command (or before tokens were events), and a revocation whose event
    /// failed. Run by `serve` before it answers requests. Answers how many events it added.
    pub async fn record_in_log(
        &self,
        writer: &WriterHandle,
        state: &LedgerState,
    ) -> Result<usize, TokenError> {
        let mut added = 0;
        for info in self.list()? {
            added += self.record_token(writer, state, &info).await?;
        }
        Ok(added)
    }

    /// Revokes in the log every token it shows live that the store does not hold: a grant
    /// recorded by [`Self::issue`] whose token was then never kept (the process stopped in
    /// between), so it never worked. Only while nothing is issuing tokens: `serve` runs it at
    /// start. Answers how many events it added.
    pub async fn void_unstored(
        &self,
        writer: &WriterHandle,
        state: &LedgerState,
    ) -> Result<usize, TokenError> {
        let stored: std::collections::BTreeSet<String> =
            self.list()?.into_iter().map(|t| t.id).collect();
        let mut added = 0;
        for (id, grant) in &state.staff_tokens {
            if grant.revoked_seq.is_none() && !stored.contains(id) {
                added += submit(writer, operator(), revoke_command(id)).await?;
            }
        }
        Ok(added)
    }

    /// Records one stored token's grant, and its revocation if revoked, where `state` (or the
    /// writer, whose rules refuse a second record) does not have them yet.
    async fn record_token(
        &self,
        writer: &WriterHandle,
        state: &LedgerState,
        info: &TokenInfo,
    ) -> Result<usize, TokenError> {
        let logged = state.staff_tokens.get(&info.id);
        let mut added = 0;
        if logged.is_none() {
            let by = info.issued_by.clone().unwrap_or_else(operator);
            added += submit(writer, by, issue_command(info)).await?;
        }
        if info.revoked_ms.is_some() && logged.is_none_or(|l| l.revoked_seq.is_none()) {
            let by = info.revoked_by.clone().unwrap_or_else(operator);
            added += submit(writer, by, revoke_command(&info.id)).await?;
        }
        Ok(added)
    }

    fn put(&self, hash: &[u8; 32], info: &TokenInfo) -> Result<(), StoreError> {
        let value = serde_json::to_vec(info).map_err(StoreError::io)?;
        self.tree.insert(hash, value).map_err(StoreError::io)?;
        self.barrier.sync()
    }

    /// The record of a live (not revoked) token; `None` for an unknown or revoked one.
    pub fn lookup(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        if token.len() != TOKEN_LEN || !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let Some(bytes) = self.tree.get(hash_token(token)).map_err(StoreError::io)? else {
            return Ok(None);
        };
        let info: TokenInfo = serde_json::from_slice(&bytes).map_err(StoreError::io)?;
        Ok(info.revoked_ms.is_none().then_some(info))
    }

    /// Revokes the token with this id; `None` when there is none. Revoking twice keeps the
    /// first revocation time.
    pub fn revoke(&self, id: &str) -> Result<Option<TokenInfo>, StoreError> {
        self.revoke_by(id, None)
    }

    /// [`Self::revoke`], recording the admin who revoked it.
    fn revoke_by(&self, id: &str, by: Option<Id>) -> Result<Option<TokenInfo>, StoreError> {
        for item in self.tree.iter() {
            let (key, bytes) = item.map_err(StoreError::io)?;
            let mut info: TokenInfo = serde_json::from_slice(&bytes).map_err(StoreError::io)?;
            if info.id != id {
                continue;
            }
            if info.revoked_ms.is_none() {
                info.revoked_ms = Some(now_ms());
                info.revoked_by = by;
                let value = serde_json::to_vec(&info).map_err(StoreError::io)?;
                // Only over the record read: of two revocations at once, the first written
                // stays (its time and admin), and the other answers with it.
                let swapped = self
                    .tree
                    .compare_and_swap(&key, Some(&bytes), Some(value))
                    .map_err(StoreError::io)?;
                if swapped.is_err() {
                    let now = self.tree.get(&key).map_err(StoreError::io)?;
                    let now = now.ok_or_else(|| StoreError::io("a token record vanished"))?;
                    // Answered once durable, as the other revocation is.
                    self.barrier.sync()?;
                    return serde_json::from_slice(&now)
                        .map(Some)
                        .map_err(StoreError::io);
                }
                self.barrier.sync()?;
            }
            return Ok(Some(info));
        }
        Ok(None)
    }

    /// Every token's record, oldest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (_, bytes) = item.map_err(StoreError::io)?;
            out.push(serde_json::from_slice::<TokenInfo>(&bytes).map_err(StoreError::io)?);
        }
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }
}

/// A new token (shown once), its hash (the store's key) and its record.
fn mint(holder: Id, role: Role, issued_by: Option<Id>) -> (String, [u8; 32], TokenInfo) {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let hash = hash_token(&token);
    let info = TokenInfo {
        id: hex::encode(&hash[..8]),
        actor: holder,
        role,
        created_ms: now_ms(),
        revoked_ms: None,
        issued_by,
        revoked_by: None,
    };
    (token, hash, info)
}

fn operator() -> Id {
    Id::new(OPERATOR).expect("a valid id")
}

fn issue_command(info: &TokenInfo) -> Command {
    Command::IssueStaffToken(StaffTokenIssued {
        holder: info.actor.clone(),
        role: info.role,
        token_id: info.id.clone(),
    })
}

fn revoke_command(token_id: &str) -> Command {
    Command::RevokeStaffToken(StaffTokenRevoked {
        token_id: token_id.to_owned(),
    })
}

/// Submits one token command as `actor`; answers 1 when it added an event, 0 when the log
/// had it already (the state the caller read was behind the writer's).
async fn submit(writer: &WriterHandle, actor: Id, command: Command) -> Result<usize, TokenError> {
    match writer.submit(Submission::one(actor, command)).await {
        Ok(_) => Ok(1),
        Err(WriteError::Rejected {
            error: CommandError::TokenExists { .. } | CommandError::TokenRevoked { .. },
            ..
        }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_revoke_list() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path()).unwrap();
        let db = log.db().clone();
        let store = TokenStore::open(&log).unwrap();
        let (token, info) = store
            .create(Id::new("finance-li").unwrap(), Role::Admin)
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(store.lookup(&token).unwrap(), Some(info.clone()));
        // The token itself is not stored anywhere.
        for item in db.open_tree(TOKENS_TREE).unwrap().iter() {
            let (k, v) = item.unwrap();
            assert!(!String::from_utf8_lossy(&v).contains(&token[4..]));
            assert!(!String::from_utf8_lossy(&k).contains(&token[4..]));
        }
        assert_eq!(store.lookup("ldg_nope").unwrap(), None);
        let revoked = store.revoke(&info.id).unwrap().unwrap();
        assert!(revoked.revoked_ms.is_some());
        assert_eq!(store.lookup(&token).unwrap(), None);
        assert_eq!(store.revoke("0000000000000000").unwrap(), None);
        assert_eq!(store.list().unwrap(), vec![revoked]);
    }

    /// Creating and revoking a token are answered only after the log's durability barrier:
    /// a failed fdatasync is an error, never a silent success (with sled's own flush a
    /// revocation could be lost to a power cut), and it stops the log as any failed
    /// barrier does.
    #[test]
    fn changes_go_through_the_logs_durability_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path()).unwrap();
        let store = TokenStore::open(&log).unwrap();
        let (_, info) = store
            .create(Id::new("finance-li").unwrap(), Role::Admin)
            .unwrap();
        log.fail_next_barrier();
        assert!(store.revoke(&info.id).is_err());
        assert!(log.sync().is_err(), "the failed barrier stopped the log");
        assert!(store
            .create(Id::new("cashier-wu").unwrap(), Role::Recorder)
            .is_err());
    }

    /// Of revocations of one token at the same moment, the first written stays: every
    /// caller is answered with it (its time and its admin), and it is what the store keeps.
    #[test]
    fn concurrent_revocations_agree_on_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path()).unwrap();
        let store = TokenStore::open(&log).unwrap();
        for round in 0..40 {
            let (_, info) = store
                .create(
                    Id::new(&format!("cashier-{round}")).unwrap(),
                    Role::Recorder,
                )
                .unwrap();
            let answers: Vec<TokenInfo> = std::thread::scope(|s| {
                let revocations: Vec<_> = (0..6)
                    .map(|i| {
                        let (store, id) = (&store, &info.id);
                        s.spawn(move || {
                            let by = Id::new(&format!("admin-{i}")).unwrap();
                            store.revoke_by(id, Some(by)).unwrap().unwrap()
                        })
                    })
                    .collect();
                revocations.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let kept = store
                .list()
                .unwrap()
                .into_iter()
                .find(|t| t.id == info.id)
                .unwrap();
            for answer in &answers {
                assert_eq!(answer, &kept, "round {round}: {answers:?}");
            }
        }
    }

    /// The store does not keep the log open (whoever drops the last handle on the log runs
    /// sled's flush-on-drop, which must not be a late, cancelled task holding the store);
    /// once the log is closed, a change is refused rather than left undurable.
    #[test]
    fn the_store_does_not_keep_the_log_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = SledLog::open(dir.path()).unwrap();
        let store = TokenStore::open(&log).unwrap();
        let weak = log.barrier_handle();
        drop(log);
        assert!(weak.sync().is_err(), "the log closed with its last handle");
        let err = store
            .create(Id::new("finance-li").unwrap(), Role::Admin)
            .unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }
}
