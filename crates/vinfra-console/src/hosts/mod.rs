//! Hosts and what comes with them: the host records (list, show, update, delete), their
//! out-of-band fence, the cluster settings, the API and join tokens, and joins and Hellos (the
//! agent endpoint's side).
//!
//! - [`crud`]: list, show, update (ratio override, maintenance, fence command), delete;
//! - [`evacuate`]: maintenance on, as a task that ends when the host's running VMs have left;
//! - [`fence`]: a host's fence command run ([`crate::state::Console::fence_host`]);
//! - [`settings`]: the cluster settings;
//! - [`tokens`]: join tokens and the API token;
//! - [`joins`]: a host's join and its Hello ([`crate::agents::Membership`] for the console);
//! - [`reports`]: what a host's Hello and reports may claim;
//! - [`certs`]: host certificates after the join: renewal, revocation, CA rotation.

pub mod certs;
pub mod crud;
pub mod evacuate;
pub mod fence;
pub mod joins;
pub mod reports;
pub mod settings;
pub mod tokens;
