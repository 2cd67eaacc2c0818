//! Join tokens (one-time, for new hosts) and the API token.

use vinfra_proto::pki::JoinToken;
use vinfra_types::api::{JoinTokenResponse, TokenResponse};

use crate::error::Error;
use crate::state::records::{self as keys, now_s, JoinTokenRecord};
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

/// Replaces the API token; the old one stops working at once.
pub fn rotate(console: &Console) -> Result<TokenResponse, Error> {
    let token = vinfra_proto::pki::generate_api_token();
    console.put_api_token_hash(vinfra_proto::pki::token_hash(&token))?;
    console.event("token", "api", "API token rotated");
    Ok(TokenResponse { token })
}
