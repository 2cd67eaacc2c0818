//! Pure high-availability decisions, no I/O and no clock read (time comes in as arguments).
//!
//! Modules, from the bottom up (a module only imports modules above it in this list):
//!
//! - [`timing`]: the timings HA runs on ([`HaTimings`]) and the inequalities that make a
//!   restart elsewhere safe.
//! - [`lease`]: the host lease a host's guard keeps on the shared datastore ([`Lease`]) and how
//!   a reader tells a live lease from an expired one ([`LeaseObserver`]).
//! - [`detect`]: a host's HA state from its connection, its lease and out-of-band fencing
//!   ([`HostHa`], [`assess`]), and which of its VMs may run elsewhere now ([`Restartable`]).
//! - [`guard`]: the guard's decision every tick: self-fence, the isolation response, or
//!   nothing ([`guard::decide`], [`GuardAction`]), and why that is safe.
//! - [`restart`]: the restart plan: where the HA VMs of failed hosts run again, by priority and
//!   in start-after waves, placed by `vinfra-placement` ([`restart::plan`], [`RestartPlan`]).
//! - [`admission`]: admission control, "tolerate N host failures": every failure scenario's
//!   restart plan kept, a power-on checked by replanning only the scenarios it touches
//!   ([`Admission`], [`ReserveReport`]).
//!
//! The safety argument in one place (docs/design.md, "High availability", has the whole of it):
//! the console restarts a VM of a host it lost only when the host's lease has provably expired,
//! when the host's guard wrote that it stopped the VM, or when an out-of-band fence of the host
//! succeeded. A host's guard kills its QEMUs before its lease can be seen expired whenever it can
//! renew neither the lease nor its contact with the console.
#![deny(unsafe_code)]

pub mod admission;
pub mod detect;
pub mod guard;
pub mod lease;
pub mod restart;
pub mod timing;

pub use admission::{
    Admission, AdmissionError, Admitted, Amount, HaVm, PowerOn, Refusal, ReserveReport,
    ScenarioReport,
};
pub use detect::{
    assess, fence_due, host_ha, restartable, Assessment, Fence, HostHa, HostSignals, Link,
    Restartable,
};
pub use guard::{GuardAction, GuardInputs, IsolationCause, IsolationResponse};
pub use lease::{Lease, LeaseError, LeaseObserver, LeaseState, LeaseVerdict};
pub use restart::{HaPolicy, Priority, Restart, RestartError, RestartPlan, RestartVm, Unplaced};
pub use timing::{HaTimings, TimingError};
