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

use events::Id;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Role;
use crate::store::{BarrierHandle, SledLog, StoreError};

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
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let hash = hash_token(&token);
        let info = TokenInfo {
            id: hex::encode(&hash[..8]),
            actor,
            role,
            created_ms: now_ms(),
            revoked_ms: None,
            issued_by,
        };
        let value = serde_json::to_vec(&info).map_err(StoreError::io)?;
        self.tree.insert(hash, value).map_err(StoreError::io)?;
        self.barrier.sync()?;
        Ok((token, info))
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
        for item in self.tree.iter() {
            let (key, bytes) = item.map_err(StoreError::io)?;
            let mut info: TokenInfo = serde_json::from_slice(&bytes).map_err(StoreError::io)?;
            if info.id != id {
                continue;
            }
            if info.revoked_ms.is_none() {
                info.revoked_ms = Some(now_ms());
                let value = serde_json::to_vec(&info).map_err(StoreError::io)?;
                self.tree.insert(key, value).map_err(StoreError::io)?;
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
