//! The bottom of the console: the [`Console`] (store, agent registry, CA, in-memory mirrors of
//! the VM, host and network records and of the cleanup markers' VM names, settings), its reads
//! and its writes, the store's key
//! layout and records, what is in flight, and the event history. Every resource module stands
//! on it; it imports none of them.
//!
//! - `console.rs`: the [`Console`] and the reads of its mirrors;
//! - `writes.rs`: writes of mirrored records, one store transaction each ([`Writes`]);
//! - [`records`]: the key layout and the JSON records;
//! - [`inflight`]: busy guards, the placement lock (with what placement keeps between its
//!   decisions, and the names changed since) and the networks lock, migrations in flight,
//!   switch push locks, the balancer's wake-up and results;
//! - [`events`]: the event history, and the actor each event names;
//! - [`tokens`]: the named API tokens and their mirror by the hash of their secret;
//! - [`flows`]: the hosts' flows in one-minute buckets (the last hour), grouped on demand;
//! - [`ha`]: what the HA controller last concluded about each host;
//! - `underlay.rs`: every host's underlay address ([`UnderlayIndex`]), for switch configurations;
//! - [`tasks`]: the tasks (long operations the API answered with one) and what their
//!   operations tell them;
//! - [`slots`]: the VMs' slots, from which hosts derive the users their QEMUs run as.

mod console;
pub mod events;
pub mod flows;
pub mod ha;
pub mod inflight;
mod locks;
pub mod records;
pub mod refusals;
pub mod slots;
pub mod tasks;
mod token_mirror;
pub mod tokens;
mod underlay;
mod vm_mirror;
mod writes;

pub use console::{
    Allocation, Console, VmBrief, ANSWER_WITHIN, CREATE_TIMEOUT, FENCE_TIMEOUT, SHORT_TIMEOUT,
    SOURCE_LOST_AFTER,
};
pub use inflight::{
    ActiveMigration, BusyGuard, FenceGuard, LastPush, PlacementChanges, PlacementMemo,
};
pub use locks::lock;
pub use tokens::{TokenHolder, TokenRefusal};
pub use underlay::UnderlayIndex;
pub use writes::Writes;
