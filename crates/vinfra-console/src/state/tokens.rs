//! The named API tokens (`/vinfra/auth/tokens/<name>`), read through their in-memory mirror
//! ([`TokenMirror`], indexed by the hash of their secret): checking a request's bearer token is
//! one SHA-256 and one map lookup, with no store read. Every write goes to the store first
//! (with its event, in the same transaction), then to the mirror, under the mirror's write lock.

use std::sync::Arc;

use vinfra_store::{Compare, Op, Txn};
use vinfra_types::api::Event;
use vinfra_types::auth::{Role, TokenState, TokenSummary};

use super::console::Console;
use super::locks::{read, write};
use super::records::{self as keys, now_s, ApiTokenRecord};
use super::token_mirror::{state_of, summary};
pub use super::token_mirror::{TokenHolder, TokenMirror, TokenRefusal};
use crate::error::{Error, Object, RecordError};

impl Console {
    /// Who `secret` is, or why it is refused: hashed once and looked up in the mirror.
    pub fn authenticate_token(&self, secret: &str) -> Result<TokenHolder, TokenRefusal> {
        let hash = vinfra_proto::pki::token_hash(secret);
        let tokens = read(&self.tokens);
        let name = tokens.by_hash.get(&hash).ok_or(TokenRefusal::Unknown)?;
        let rec = tokens.by_name.get(&**name).ok_or(TokenRefusal::Unknown)?;
        match state_of(rec, now_s()) {
            TokenState::Active => Ok(TokenHolder {
                name: Arc::clone(name),
                role: rec.role,
            }),
            TokenState::Expired => Err(TokenRefusal::Expired),
            TokenState::Revoked => Err(TokenRefusal::Revoked),
        }
    }

    /// Every token, in name order, without secrets or hashes.
    pub fn token_summaries(&self) -> Vec<TokenSummary> {
        let now = now_s();
        read(&self.tokens)
            .by_name
            .iter()
            .map(|(name, rec)| summary(name, rec, now))
            .collect()
    }

    /// Stores a new token `name` (refused when the name was ever used) with the hash of its
    /// secret, and the event `told`, in one transaction.
    pub fn insert_token(&self, name: &str, rec: ApiTokenRecord, told: Event) -> Result<(), Error> {
        let mut tokens = write(&self.tokens);
        if tokens.by_name.contains_key(name) {
            return Err(Error::NameTaken {
                kind: Object::Token,
                name: name.to_string(),
            });
        }
        let key = keys::api_token_key(name);
        self.token_txn(Compare::absent(&key), &key, &rec, told, name)?;
        tokens.insert(name.to_string(), rec);
        Ok(())
    }

    /// Changes token `name` with `change` (given its record and whether it is the last active
    /// admin token), stores it with the event `told` in one transaction, and returns its
    /// summary.
    pub fn change_token(
        &self,
        name: &str,
        change: impl FnOnce(&mut ApiTokenRecord, bool) -> Result<(), Error>,
        told: Event,
    ) -> Result<TokenSummary, Error> {
        let mut tokens = write(&self.tokens);
        let now = now_s();
        let mut rec = tokens
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(Object::Token, name))?;
        let last_admin = !tokens.by_name.iter().any(|(other, r)| {
            other != name && r.role == Role::Admin && state_of(r, now) == TokenState::Active
        });
        change(&mut rec, last_admin)?;
        let key = keys::api_token_key(name);
        let stored = keys::get::<ApiTokenRecord>(self.store.as_ref(), &key)?
            .ok_or_else(|| Error::not_found(Object::Token, name))?;
        self.token_txn(
            Compare::mod_revision(&key, stored.mod_revision),
            &key,
            &rec,
            told,
            name,
        )?;
        let out = summary(name, &rec, now);
        tokens.insert(name.to_string(), rec);
        Ok(out)
    }

    /// Writes one token record under `compare`, with its event.
    fn token_txn(
        &self,
        compare: Compare,
        key: &str,
        rec: &ApiTokenRecord,
        told: Event,
        name: &str,
    ) -> Result<(), Error> {
        let value = keys::encode(rec)?;
        let committed = self.events.appending(Some(told), |event_ops| {
            let mut ops = vec![Op::Put {
                key: key.to_string(),
                value,
                lease: 0,
            }];
            ops.extend(event_ops);
            let resp = self
                .store
                .txn(Txn {
                    compare: vec![compare],
                    success: ops,
                    failure: vec![],
                })
                .map_err(RecordError::from)?;
            Ok::<_, Error>((resp.succeeded, resp.succeeded))
        })?;
        if !committed {
            return Err(Error::Concurrent {
                kind: Object::Token,
                name: name.to_string(),
            });
        }
        Ok(())
    }
}
