//! High availability, the console's side: each host's HA state from its connection and its
//! lease on the shared datastore, and the restart elsewhere of the HA VMs of a host that failed
//! (or was fenced, or whose guard stopped them).
//!
//! - [`leases`]: reading the hosts' lease files ([`LeaseSource`]);
//! - [`controller`]: the loop that assesses every host with `vinfra_ha::assess` and restarts
//!   what may be restarted, planned by `vinfra_ha::restart::plan` through [`crate::fit`];
//! - [`status`]: `GET /api/v1/ha`: settings, each host's HA state, the admission reserve.
//!
//! The decisions themselves live in the pure library `vinfra-ha` (docs/design.md, "High
//! availability", has the safety argument).

pub mod controller;
pub mod leases;
pub mod status;

pub use controller::HaController;
pub use leases::{DatastoreLeases, LeaseSource, NoLeases};
