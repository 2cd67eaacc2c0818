//! `vinfra join-token create` (a one-time token for a new host) and `vinfra token …`: the
//! console's named API tokens (create with a role and an expiry, list, revoke) and the
//! rotation of the secret of the token in use.

use clap::Subcommand;
use vinfra_types::auth::{
    CreateTokenRequest, NewToken, Role, TokenState, TokenSummary, UnknownRole,
};
use vinfra_types::filter::TokenFilter;

use crate::config::ConnectionOverrides;
use crate::output::{self, Output};
use crate::parse;
use crate::rest::{check_name, show, word_arg, RestCommandError};

/// `vinfra join-token …`.
#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Create a one-time join token for a new host.
    Create,
}

/// `vinfra token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token with a role; its secret is printed once (admin).
    Create {
        /// The token's name: events name it as the actor of what it changes. A name once used
        /// is never reused.
        name: String,
        /// viewer (reads), operator (also VMs, networks, security groups, routers, floating
        /// IPs) or admin (everything).
        #[arg(long, value_parser = role)]
        role: Role,
        /// Refused after this long: `30d`, `12h`, `90m`, or seconds (at most 10 years).
        /// Without it the token never expires.
        #[arg(long, value_parser = parse::token_lifetime)]
        expires: Option<u64>,
    },
    /// List the API tokens: name, role, state, creation and expiry; never their secrets
    /// (admin). All, or those of a role, in a state.
    List {
        /// Only the tokens of this role: viewer, operator or admin.
        #[arg(long, value_parser = role)]
        role: Option<Role>,
        /// Only the tokens in this state: active, expired or revoked.
        #[arg(long, value_parser = parse_state)]
        state: Option<TokenState>,
    },
    /// Revoke an API token: refused from now on, for good (admin).
    Revoke {
        /// The token.
        name: String,
    },
    /// Give the token in use a new secret, same name, role and expiry (the current secret stops
    /// working).
    Rotate,
}

fn role(s: &str) -> Result<Role, UnknownRole> {
    s.parse()
}

/// `--state`: a token's state as the API names it.
fn parse_state(s: &str) -> Result<TokenState, String> {
    word_arg(s, "active, expired or revoked")
}

/// `vinfra join-token create`.
pub fn run_join_token(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &JoinTokenCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        JoinTokenCommand::Create => show(out, &conn.client()?.create_join_token()?, |t| {
            format!(
                "{}\n\nOne-time token, valid {}: start the new host's agent with --join-token <token>.",
                t.token,
                output::duration_s(t.expires_in_s)
            )
        }),
    }
}

/// `vinfra token …`.
pub fn run_token(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &TokenCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            expires,
        } => {
            check_name("token", name)?;
            let request = CreateTokenRequest {
                name: name.clone(),
                role: *role,
                expires_in_s: *expires,
            };
            show(out, &conn.client()?.create_token(&request)?, created)
        }
        TokenCommand::List { role, state } => {
            let filter = TokenFilter {
                role: *role,
                state: *state,
            };
            show(out, &conn.client()?.tokens_where(&filter)?, |t| tokens(t))
        }
        TokenCommand::Revoke { name } => {
            check_name("token", name)?;
            conn.client()?.revoke_token(name)?;
            show(out, &(), |_| format!("token {name} revoked"))
        }
        TokenCommand::Rotate => show(out, &conn.client()?.rotate_token()?, |t| {
            format!(
                "{}\n\nThe previous secret no longer works: update VINFRA_TOKEN or the config file.",
                t.token
            )
        }),
    }
}

/// What `vinfra token create` prints.
fn created(t: &NewToken) -> String {
    let until = t.expires_at.map_or("never expires".to_string(), |at| {
        format!("expires {}", output::timestamp(at))
    });
    format!(
        "{}\n\nToken {} (role {}, {until}). Shown once: only its hash is kept.",
        t.token, t.name, t.role
    )
}

/// The table of `vinfra token list`.
fn tokens(list: &[TokenSummary]) -> String {
    let mut t = output::table(&["NAME", "ROLE", "STATE", "CREATED (UTC)", "EXPIRES (UTC)"]);
    for token in list {
        t.add_row(vec![
            token.name.clone(),
            token.role.to_string(),
            token.state.to_string(),
            match token.created_at {
                0 => "-".to_string(),
                at => output::timestamp(at),
            },
            token
                .expires_at
                .map_or("never".to_string(), output::timestamp),
        ]);
    }
    output::render(t)
}
