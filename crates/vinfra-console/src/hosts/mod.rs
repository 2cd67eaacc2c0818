//! Hosts and what comes with them: the host records (list, show, update, delete), the cluster
//! settings, the API and join tokens, and joins and Hellos (the agent endpoint's side).
//!
//! - [`crud`]: list, show, update (ratio override, maintenance), delete;
//! - [`settings`]: the cluster settings;
//! - [`tokens`]: join tokens and the API token;
//! - [`joins`]: a host's join and its Hello ([`crate::agents::Membership`] for the console).

pub mod crud;
pub mod joins;
pub mod settings;
pub mod tokens;
