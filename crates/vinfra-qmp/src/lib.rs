//! A small async QMP (QEMU Machine Protocol) client.
//!
//! [`Qmp::connect`] opens QEMU's QMP unix socket, reads the greeting and leaves capabilities
//! negotiation mode. Commands are sent with an `id`; a background task reads every line QEMU writes
//! and hands each `{"return"|"error", "id"}` to the command that waits for it, so several commands
//! may be in flight at once. Asynchronous events (`{"event": …}`) arriving in between are kept in a
//! bounded buffer (the oldest are dropped first) and read with [`Qmp::next_event`].
//!
//! - [`client`]: the connection and [`Qmp::execute`].
//! - [`commands`]: typed helpers for the commands the agent uses (status, power, migration).
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod commands;

pub use client::{Qmp, QmpError, QmpEvent, DEFAULT_TIMEOUT};
pub use commands::{MigrateParameters, MigrationInfo, RamStats, StatusInfo, VersionInfo};
