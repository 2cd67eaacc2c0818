//! Named API tokens, their roles, and who made a change (the actor an event names).
//!
//! A token is a bearer secret with a name and a [`Role`]; only its SHA-256 is stored. The
//! console checks every request's role against the route it asks for (docs/design.md, "Roles").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest expiry a token can be given: ten years, in seconds.
pub const MAX_TOKEN_LIFETIME_S: u64 = 10 * 366 * 24 * 3600;

/// What a token may do. Each role may do everything the one before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything but tokens and VM consoles.
    Viewer,
    /// Also runs the workloads: VMs (power, migration, NICs, consoles), networks, security
    /// groups, routers, floating IPs, the balancer's recommendations.
    Operator,
    /// Everything: also hosts, cluster settings, placement rules, balancing passes, tokens.
    Admin,
}

impl Role {
    /// The role's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `viewer`, `operator`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}' (viewer, operator or admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The token's name (a valid name: lowercase letters, digits, `-`); it is what events
    /// name as the actor of the changes made with it. A name once used is never reused.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// Seconds from now after which the token is refused (401); absent: it never expires.
    /// 1 to [`MAX_TOKEN_LIFETIME_S`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// `POST /api/v1/tokens` response: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewToken {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The bearer secret. Shown once: only its SHA-256 is stored.
    pub token: String,
    /// Seconds since the Unix epoch after which it is refused; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// Whether a token is accepted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Accepted.
    Active,
    /// Past its expiry: refused (401).
    Expired,
    /// Revoked: refused (401) for good.
    Revoked,
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        })
    }
}

/// One token as `GET /api/v1/tokens` lists it: never its secret nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenSummary {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Accepted now, expired or revoked.
    pub state: TokenState,
    /// Seconds since the Unix epoch when it was created (0: before tokens had names, the
    /// cluster's first token).
    pub created_at: u64,
    /// Seconds since the Unix epoch after which it is refused; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Seconds since the Unix epoch when it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// What kind of actor made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A request made with an API token: `name` is the token's.
    Token,
    /// The console on its own: `name` is the controller's (`ha`, `balancer`, `vm-controller`,
    /// `switch-controller`, `edge`, `agents`, `console`).
    Controller,
}

/// Who made a change: the API token of the request, or the console's controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// A token or a controller.
    pub kind: ActorKind,
    /// The token's or the controller's name.
    pub name: String,
}

impl Actor {
    /// A request made with token `name`.
    pub fn token(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Token,
            name: name.into(),
        }
    }

    /// The console's controller `name`.
    pub fn controller(name: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Controller,
            name: name.into(),
        }
    }
}

impl fmt::Display for Actor {
    /// `token:<name>` or `controller:<name>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ActorKind::Token => "token",
            ActorKind::Controller => "controller",
        };
        write!(f, "{kind}:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse_back() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn create_request_refuses_unknown_fields_and_roles() {
        let ok: CreateTokenRequest =
            serde_json::from_str(r#"{"name":"ci","role":"viewer","expires_in_s":60}"#).unwrap();
        assert_eq!(ok.role, Role::Viewer);
        assert!(
            serde_json::from_str::<CreateTokenRequest>(r#"{"name":"ci","role":"root"}"#).is_err()
        );
        assert!(serde_json::from_str::<CreateTokenRequest>(
            r#"{"name":"ci","role":"viewer","secret":"x"}"#
        )
        .is_err());
    }

    #[test]
    fn actors_print_with_their_kind() {
        assert_eq!(Actor::token("alice").to_string(), "token:alice");
        assert_eq!(Actor::controller("ha").to_string(), "controller:ha");
    }
}
