//! Logical networks (docs/design.md, "Networks").
//!
//! - [`crud`]: create, list, show and delete networks;
//! - [`ipam`]: the addresses and MACs of VM NICs, claimed and released in the same store
//!   transaction as the VM record they serve;
//! - [`config`]: what one host's virtual switch needs to know (pure, over the records), with
//!   [`firewall`]: its VM NICs' firewalls from their security groups, and [`routing`]: the
//!   routers on the host and the networks they bring;
//! - [`push`]: sending it to the host's agent;
//! - [`counters`]: traffic counters read from the hosts' switches.
//!
//! Every change of a network or of its addresses happens under the networks lock
//! ([`crate::state::inflight::Inflight::networks_lock`]), from the decision to the write, and
//! the write compares the revisions it read: the in-memory mirror and the store never disagree
//! about who holds an address, a MAC, a VNI or a VLAN ID.

pub mod config;
pub mod counters;
pub mod crud;
pub mod firewall;
pub mod ipam;
pub mod push;
pub mod routing;
