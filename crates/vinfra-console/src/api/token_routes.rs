//! The API tokens' endpoints (`/api/v1/tokens`, admin only): parse into
//! [`Command::ListTokens`], [`Command::CreateToken`], [`Command::RevokeToken`], like every
//! handler of [`super::routes`].

use axum::response::Response;
use vinfra_types::auth::{CreateTokenRequest, NewToken, TokenSummary};
use vinfra_types::Problem;

use super::extract::{ApiJson, ApiQuery, Caller, NamePath};
use super::list_queries::{split, TokenListQuery};
use super::problem::ApiError;
use super::routes::{list, run};
use crate::interface::{Command, ConsoleApi};

/// Every API token, in name order: name, role, state (active, expired, revoked) and times;
/// never a secret nor a hash. Or those a filter lets through (`role`, `state`: all that are
/// given).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(TokenListQuery),
    responses((status = 200, description = "the tokens", body = [TokenSummary],
        headers(("Link" = String, description = "with `limit` or `page_token`, when more items follow: `</api/v1/tokens?[FILTERS&]limit=N&page_token=T>; rel=\"next\"` (the filters given, kept)")))))]
pub async fn list_tokens<A: ConsoleApi>(
    c: Caller<A>,
    ApiQuery(q): ApiQuery<TokenListQuery>,
) -> Result<Response, ApiError> {
    let (page, filter, path) = split(q)?;
    list(&c, Command::ListTokens { filter }, &page, &path).await
}

/// Creates an API token with a role and an optional expiry. Its secret is in the answer, the
/// only time it is shown: the console keeps its SHA-256. A name once used (even by a revoked
/// token) is 409; a bad name or an expiry out of range is 400.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    responses((status = 201, description = "the token, with its secret", body = NewToken), (status = 409, body = Problem)))]
pub async fn create_token<A: ConsoleApi>(
    c: Caller<A>,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<Response, ApiError> {
    run(&c, Command::CreateToken { request }).await
}

/// Revokes an API token: refused (401) from now on, for good. It stays listed (revoked) and
/// its name is never reused. Revoking the last active admin token is 409.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", params(("name" = String, Path, description = "token name")),
    responses((status = 204, description = "revoked"), (status = 409, body = Problem)))]
pub async fn revoke_token<A: ConsoleApi>(
    c: Caller<A>,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    run(&c, Command::RevokeToken { name }).await
}
