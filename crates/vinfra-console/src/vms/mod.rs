//! VMs: create, power (start, stop, reboot), delete, views (summaries, console log), the HA
//! policy (ha), a NIC's settings (nics: security groups, port security), and the removal of a VM's record with what it holds (cleanups).
//!
//! Nothing is left behind unknown to the console. A VM whose creation failed is removed again;
//! when the host gave a clear refusal (and confirms the VM is gone) its addresses and MACs are
//! released at once. When the outcome is uncertain (no answer in time, connection lost, or the
//! removal after a refusal failed) and when a VM is deleted with `force` while its host is
//! disconnected, the host may still run it: the record goes, but a cleanup marker
//! ([`crate::state::records::CleanupRecord`]) takes its place in the same transaction, its
//! addresses and MACs stay claimed and its name stays taken, until the VM controller has
//! removed the VM from the host (or the host, connected, confirms it has no such VM).

pub mod cleanups;
pub mod create;
pub mod delete;
pub mod ha;
pub mod nics;
pub mod power;
pub mod views;
