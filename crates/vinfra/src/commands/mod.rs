//! One file per resource, each with its clap arguments and its `run` function:
//!
//! - [`host`], [`vm`], [`net`], [`sg`], [`router`], [`rule`], [`drs`], [`ha`], [`settings`],
//!   [`token`] (`join-token` and `token`), [`events`], [`flows`], [`task`]: the REST commands, over
//!   `vinfra_client`;
//! - [`sim`]: the cluster simulator (no console);
//! - [`lab`]: a whole cluster on this machine;
//! - [`daemons`]: `vinfra console`, `vinfra agent` and `vinfra switch`.
//!
//! None imports another (but [`vm`], which reaches [`floating_ip`], `vinfra vm floating-ip`):
//! what they share is below them, in `follow`, `rest`, `output`, `parse` and `config`.

pub mod daemons;
pub mod drs;
pub mod events;
pub mod floating_ip;
pub mod flows;
pub mod ha;
pub mod host;
pub mod lab;
pub mod net;
pub mod router;
pub mod rule;
pub mod settings;
pub mod sg;
pub mod sim;
pub mod task;
pub mod token;
pub mod vm;
