//! Join tokens (one-time, for new hosts) and the named API tokens: create (the secret shown
//! once, its hash stored), list (never a secret nor a hash), revoke, rotate.

use vinfra_proto::pki::JoinToken;
use vinfra_types::api::{JoinTokenResponse, TokenResponse};
use vinfra_types::auth::{
    Actor, ActorKind, CreateTokenRequest, NewToken, TokenSummary, MAX_TOKEN_LIFETIME_S,
};
use vinfra_types::filter::{ListFilter, TokenFilter};

use crate::error::{Error, Object};
use crate::state::events::event;
use crate::state::records::{self as keys, now_s, ApiTokenRecord, JoinTokenRecord};
use crate::state::Console;

/// How long a join token stays valid.
pub const JOIN_TOKEN_TTL_S: u64 = 24 * 3600;

/// Issues a one-time join token, valid [`JOIN_TOKEN_TTL_S`]; only its secret's hash is stored.
pub fn create_join_token(console: &Console) -> Result<JoinTokenResponse, Error> {
    let token = JoinToken::generate(&console.ca().fingerprint())?;
    let rec = JoinTokenRecord {
        expires_at: now_s() + JOIN_TOKEN_TTL_S,
    };
    keys::put(
        console.store().as_ref(),
        &keys::join_token_key(&token.secret_hash()),
        &rec,
    )?;
    console.event("token", "join", "join token issued");
    Ok(JoinTokenResponse {
        token: token.to_string(),
        expires_in_s: JOIN_TOKEN_TTL_S,
    })
}

/// Creates API token `request.name` with its role and expiry; returns its secret (shown this
/// once: only its hash is stored). A name once used, even revoked, is refused (409): events
/// name tokens, and a name means one token for good.
pub fn create(console: &Console, request: CreateTokenRequest) -> Result<NewToken, Error> {
    let CreateTokenRequest {
        name,
        role,
        expires_in_s,
    } = request;
    vinfra_types::validate_name(&name).map_err(|source| Error::BadName {
        field: "token name",
        source,
    })?;
    if let Some(s) = expires_in_s {
        if !(1..=MAX_TOKEN_LIFETIME_S).contains(&s) {
            return Err(Error::OutOfRange {
                field: "expires_in_s",
                min: 1,
                max: MAX_TOKEN_LIFETIME_S,
                got: s,
            });
        }
    }
    let now = now_s();
    let expires_at = expires_in_s.map(|s| now + s);
    let secret = vinfra_proto::pki::generate_api_token();
    let rec = ApiTokenRecord {
        hash: vinfra_proto::pki::token_hash(&secret),
        role,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    let until = expires_in_s.map_or("never expires".to_string(), |s| format!("expires in {s} s"));
    let told = event("token", &name, format!("created, role {role}, {until}"));
    console.insert_token(&name, rec, told)?;
    Ok(NewToken {
        name,
        role,
        token: secret,
        expires_at,
    })
}

/// Every API token, in name order: name, role, state and times; never a secret nor a hash. Or
/// those `filter` lets through.
pub fn list(console: &Console, filter: &TokenFilter) -> Vec<TokenSummary> {
    let mut all = console.token_summaries();
    all.retain(|t| filter.lets(t));
    all
}

/// Revokes API token `name`: refused (401) from now on, for good; its record stays (listed as
/// revoked, its name never reused). A revoked token keeps its first revocation time. The last active
/// admin token cannot be revoked (409): the cluster would have no way left to manage tokens.
pub fn revoke(console: &Console, name: &str) -> Result<(), Error> {
    let now = now_s();
    let told = event("token", name, "revoked");
    console.change_token(
        name,
        |rec, last_admin| {
            if rec.revoked_at.is_some() {
                return Ok(());
            }
            if last_admin && rec.role == vinfra_types::auth::Role::Admin {
                return Err(Error::LastAdminToken {
                    name: name.to_string(),
                });
            }
            rec.revoked_at = Some(now);
            Ok(())
        },
        told,
    )?;
    Ok(())
}

/// Gives the token that asks (`actor`) a new secret, keeping its name, role and expiry; the
/// old secret stops working at once.
pub fn rotate(console: &Console, actor: &Actor) -> Result<TokenResponse, Error> {
    if actor.kind != ActorKind::Token {
        return Err(Error::not_found(Object::Token, actor.name.clone()));
    }
    let token = vinfra_proto::pki::generate_api_token();
    let hash = vinfra_proto::pki::token_hash(&token);
    let told = event("token", &actor.name, "secret rotated");
    console.change_token(
        &actor.name,
        |rec, _| {
            rec.hash = hash;
            Ok(())
        },
        told,
    )?;
    Ok(TokenResponse { token })
}
