//! `vinfra switch`: the per-host daemon around the [`vinfra_switch`] core.
//!
//! - **Datapath thread** (the caller of [`run`]): owns the core [`vinfra_switch::datapath::Switch`]
//!   and every port. One epoll loop (mio) over the ports' descriptors; for each ready port it
//!   reads up to [`datapath::BATCH`] frames, passes them to `Switch::process` in one call, sends
//!   the frames of the resulting `TxBatch`, and moves to the next ready port (round robin; with
//!   QoS set on some port, by class and weight, and rate limits on reading and on a port's
//!   output queue: [`qos`]).
//!   Between batches it applies control requests, every 2 s frees aged MAC entries and every
//!   second writes the firewall's drop log to the daemon's log (one `firewall drop` line per
//!   record).
//! - **Control thread**: serves the Unix stream control socket (newline-delimited JSON, the
//!   protocol of [`vinfra_switch_control`]); each request goes to the datapath thread over a
//!   channel, with a wakeup of its poll loop, and the thread waits for the answer. [`convert`]
//!   turns a request into the core's `ConfigCommand`.
//!
//! Ports: VM vNICs are Unix datagram sockets for QEMU `-netdev dgram`, host ports are taps, the
//! VXLAN uplink is a UDP socket on the underlay address, the VLAN trunk an AF_PACKET socket (see
//! [`ports`]). The agent (with [`vinfra_switch_control::SwitchClient`]) keeps the desired
//! configuration and replays it after a switch restart; QEMU keeps its socket, so a switch crash
//! never kills a VM. All unsafe calls are in [`sys`].
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod control;
pub mod convert;
pub mod datapath;
pub mod fastpath;
pub mod ports;
pub mod qos;
pub mod sys;

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use vinfra_switch_control::server;
use vinfra_switch_control::{Attachment, PortSpec, UPLINK_PORT};

/// The daemon's configuration (its command line).
#[derive(Clone, Debug)]
pub struct SwitchdConfig {
    /// Path of the control socket.
    pub control: PathBuf,
    /// This host's underlay (VTEP) address: when set, the daemon opens the VXLAN uplink itself
    /// as port [`UPLINK_PORT`].
    pub underlay_ip: Option<Ipv4Addr>,
    /// IP MTU of the underlay.
    pub underlay_mtu: u16,
    /// The datapath thread polls its ports without ever sleeping: a frame is read as soon as it
    /// arrives, without a wake-up of the thread (which costs a ping tens of microseconds on
    /// each hop), at the price of one core kept busy all the time.
    pub busy_poll: bool,
    /// Hands established flows between local VM taps and interface ports to the kernel
    /// ([`fastpath`]); on by default.
    pub fast_path: bool,
}

impl SwitchdConfig {
    /// A configuration with the control socket at `control`, no uplink, underlay MTU 1500.
    pub fn new(control: impl Into<PathBuf>) -> SwitchdConfig {
        SwitchdConfig {
            control: control.into(),
            underlay_ip: None,
            underlay_mtu: 1500,
            busy_poll: false,
            fast_path: true,
        }
    }
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SwitchdError {
    /// Creating the poller or its wakeup failed.
    #[error("creating the epoll instance")]
    Poll(#[source] io::Error),
    /// Binding the control socket failed.
    #[error("binding the control socket {path}")]
    Control {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Opening the VXLAN uplink failed.
    #[error("opening the VXLAN uplink")]
    Uplink(#[source] datapath::ControlRequestError),
    /// Starting the control thread failed.
    #[error("starting the control thread")]
    Thread(#[source] io::Error),
    /// The poll loop failed.
    #[error("the datapath poll loop failed")]
    Datapath(#[source] io::Error),
}

/// Runs the switch: opens the uplink (if configured) and the control socket, starts the control
/// thread and runs the datapath on the calling thread. Returns only on a fatal error.
pub fn run(config: SwitchdConfig) -> Result<(), SwitchdError> {
    let poll = mio::Poll::new().map_err(SwitchdError::Poll)?;
    let waker =
        Arc::new(mio::Waker::new(poll.registry(), datapath::WAKER).map_err(SwitchdError::Poll)?);
    let (tx, rx) = mpsc::channel();
    let mut dp = datapath::Datapath::new(poll, rx);
    dp.set_busy_poll(config.busy_poll);
    if config.fast_path {
        dp.enable_fast_path();
    }
    if let Some(local_ip) = config.underlay_ip {
        dp.add_builtin_port(PortSpec {
            id: UPLINK_PORT,
            mtu: config.underlay_mtu,
            attach: Attachment::VxlanUplink { local_ip },
        })
        .map_err(SwitchdError::Uplink)?;
    }
    let listener = server::bind(&config.control).map_err(|source| SwitchdError::Control {
        path: config.control.clone(),
        source,
    })?;
    tracing::info!(
        control = %config.control.display(),
        underlay = ?config.underlay_ip,
        busy_poll = config.busy_poll,
        fast_path = config.fast_path,
        "switch started"
    );
    std::thread::Builder::new()
        .name("switch-control".into())
        .spawn(move || {
            if let Err(e) = control::serve(listener, tx, waker) {
                tracing::error!(error = %vinfra_types::error::Chain(&e), "control socket failed");
            }
        })
        .map_err(SwitchdError::Thread)?;
    dp.run().map_err(SwitchdError::Datapath)
}
