//! Pure high-availability decisions, no I/O: the timings HA runs on and the inequalities that make
//! them safe ([`timing`]), the host lease a host's guard keeps on the shared datastore and how a
//! reader tells a live lease from an expired one ([`lease`]).
//!
//! The safety argument in one place (docs/design.md, "High availability", has the whole of it):
//! the console restarts a VM of a host it lost only when the host's lease has provably expired,
//! when the host's guard wrote that it stopped the VM, or when an out-of-band fence of the host
//! succeeded. A host's guard kills its QEMUs before its lease can be seen expired whenever it can
//! renew neither the lease nor its contact with the console.
#![deny(unsafe_code)]

pub mod lease;
pub mod timing;

pub use lease::{Lease, LeaseError, LeaseObserver, LeaseState, LeaseVerdict};
pub use timing::{HaTimings, TimingError};
