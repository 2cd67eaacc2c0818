//! The vinfra guard: the per-host fence holder, a daemon of its own next to the agent.
//!
//! - It keeps the host's lease on the shared datastore ([`renew`]): acquired at start (refused
//!   while another guard renews it), rewritten every renewal period by a thread of its own.
//! - It is the parent of every QEMU on the host ([`spawn`]): the agent asks it to start them
//!   (without `-daemonize`), each child gets `PR_SET_PDEATHSIG = SIGKILL` ([`sys`]), so the
//!   guard's death kills them all while the agent's kills none.
//! - It decides alone ([`fence`]): a watchdog thread that does no datastore I/O kills every
//!   child when neither the lease nor the console contact (from the agent's pets) was renewed
//!   for `self_fence_after`, and applies the cluster's isolation response to the HA VMs.
//!
//! The agent talks to it over a Unix socket ([`protocol`], one JSON object per line, the framing
//! of `vinfra-switch-control`) with [`GuardClient`]; [`daemon::run`] is the daemon, run by
//! `vinfra guard` (and the `vinfra-guard` binary of this crate, for its tests).

pub mod client;
pub mod control;
pub mod daemon;
pub mod fence;
pub mod protocol;
pub mod renew;
pub mod spawn;
mod sys;

pub use client::{GuardClient, GuardClientError};
pub use daemon::{run, GuardConfig, GuardError, DEFAULT_CONTROL};
pub use protocol::{
    ChildExit, ChildView, Confinement, ExitView, GuardRefusal, GuardRequest, GuardResponse,
    GuardStatus, IsolationResponse, IsolationView, Pet, SpawnSpec,
};
pub use renew::lease_path;
pub use sys::start_child;
