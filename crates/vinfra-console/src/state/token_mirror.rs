//! The mirror of the named API tokens: by name, and their names by the hash of their secret
//! (the writes are in `tokens.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use vinfra_store::Store;
use vinfra_types::auth::{Role, TokenState, TokenSummary};

use super::records::{self as keys, ApiTokenRecord};
use crate::error::RecordError;

/// Who a valid bearer token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    /// The token's name.
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
}

/// Why a bearer token is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token has this secret.
    Unknown,
    /// The token is past its expiry.
    Expired,
    /// The token was revoked.
    Revoked,
}

/// The tokens by name, and their names by the hash of their secret.
#[derive(Default)]
pub struct TokenMirror {
    pub(super) by_name: BTreeMap<String, ApiTokenRecord>,
    pub(super) by_hash: HashMap<String, Arc<str>>,
}

impl TokenMirror {
    /// Loads every stored token.
    pub(super) fn load(store: &dyn Store) -> Result<Self, RecordError> {
        let mut m = TokenMirror::default();
        for (name, rec) in keys::range::<ApiTokenRecord>(store, keys::API_TOKENS)? {
            m.insert(name, rec.value);
        }
        Ok(m)
    }

    /// Puts (or replaces) token `name`.
    pub(super) fn insert(&mut self, name: String, rec: ApiTokenRecord) {
        if let Some(old) = self.by_name.get(&name) {
            self.by_hash.remove(&old.hash);
        }
        self.by_hash
            .insert(rec.hash.clone(), Arc::from(name.as_str()));
        self.by_name.insert(name, rec);
    }
}

/// A token's state at `now`.
pub(super) fn state_of(rec: &ApiTokenRecord, now: u64) -> TokenState {
    if rec.revoked_at.is_some() {
        TokenState::Revoked
    } else if rec.expires_at.is_some_and(|at| now >= at) {
        TokenState::Expired
    } else {
        TokenState::Active
    }
}

/// How `GET /api/v1/tokens` shows a token at `now`.
pub(super) fn summary(name: &str, rec: &ApiTokenRecord, now: u64) -> TokenSummary {
    TokenSummary {
        name: name.to_string(),
        role: rec.role,
        state: state_of(rec, now),
        created_at: rec.created_at,
        expires_at: rec.expires_at,
        revoked_at: rec.revoked_at,
    }
}
