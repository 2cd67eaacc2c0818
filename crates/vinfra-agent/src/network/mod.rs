//! The host's virtual switch as the agent sees it: the desired configuration (the console's
//! [`HostSwitchConfig`](vinfra_proto::HostSwitchConfig) plus the ports of this host's VM NICs)
//! and [`SwitchLink`], which makes the switch match it over the control socket
//! ([`vinfra_switch_control`]).
//!
//! The switch is never trusted to remember anything: every reconcile reads the switch's
//! configuration (`get_config`), computes the requests that turn it into the desired one
//! ([`plan()`]) and applies them. A restarted switch starts empty, so the first reconcile after a
//! restart replays everything. A background task reconciles every [`RECONCILE_INTERVAL`];
//! changes (a new configuration, a VM's ports) reconcile at once.
//!
//! Routers (VRFs) of the console's configuration are applied the same way: each router, its
//! interfaces (the distributed gateways of its networks), its uplink (with the edge here or at
//! another host's VTEP) and floating IPs, and its static routes are requests of the desired
//! configuration, replayed after a restart like the rest.
//!
//! Files, each using only those listed after it:
//! - [`flows`] — [`SwitchLink::take_flows`]: the switch's flows named by network and router;
//! - [`connections`] — a migrating VM's tracked connections out of the switch and into it;
//! - [`reconcile`] — [`SwitchLink::reconcile`], [`SwitchLink::plug`] (a VM's ports added and
//!   applied at once, or taken back), counters, the background task;
//! - [`link`] — [`SwitchLink`]: the desired configuration in memory and in
//!   `<data_dir>/switch.json`, the connection;
//! - [`error`] — [`SwitchLinkError`];
//! - [`ports`] — a port number and sockets per NIC ([`NicError`]);
//! - [`counters`] — the switch's counters named by network, VM and NIC;
//! - [`desired`] — [`DesiredSwitch`] and the requests that build it, [`VmNic`];
//! - [`mod@validate`] — checks of the console's configuration ([`InvalidConfig`]);
//! - [`mod@plan`] — the difference between two configurations, as requests;
//! - [`mac`] — unicast MAC addresses from text;
//! - [`uplink`] — router uplinks and floating IPs: their checks ([`uplink::BadUplink`]), the
//!   edge as this host's switch sees it, their requests;
//! - [`route`] — route destinations from text, router interface subnets;
//! - [`attachment`] — [`SwitchAttachment`], how the agent reaches its switch.

pub mod attachment;
pub mod connections;
pub mod counters;
pub mod desired;
pub mod error;
pub mod flows;
pub mod link;
pub mod mac;
pub mod plan;
pub mod ports;
pub mod reconcile;
pub mod route;
pub mod uplink;
pub mod validate;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_counters;
#[cfg(test)]
mod tests_migration;
#[cfg(test)]
mod tests_plug;
#[cfg(test)]
mod tests_port_policy;
#[cfg(test)]
mod tests_router_model;
#[cfg(test)]
mod tests_routers;
#[cfg(test)]
mod tests_sub_interfaces;
#[cfg(test)]
mod tests_uplinks;

pub use attachment::{SwitchAttachment, VmNicPorts, TRUNK_MTU, TRUNK_PORT};
pub use desired::{DesiredSwitch, VmNic};
pub use error::{RefusedRequest, SwitchLinkError};
pub use flows::{host_flows, TakenFlows};
pub use link::SwitchLink;
pub use plan::plan;
pub use ports::{tap_name, NicError, NicProblem};
pub use reconcile::{spawn_reconciler, MacMoves, ReconcileOutcome, RECONCILE_INTERVAL};
pub use validate::{validate, InvalidConfig};
