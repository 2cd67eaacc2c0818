//! The datapath thread: one poll loop over every port, the core [`Switch`], and the
//! configuration commands from the control thread, applied between batches.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use vinfra_switch::datapath::{ConfigCommand, ConfigError, PortId};
use vinfra_switch::datapath::{Switch, SwitchSettings, TxBatch};
use vinfra_switch::wire::Offload;
use vinfra_switch_control::{
    Attachment, CountersView, DhcpSpec, LocationSpec, Mac, NetworkSpec, PortPolicySpec, PortSpec,
    Request, Response,
};
use vinfra_types::error::chain;

use crate::convert::{self, BadValue, PortIoCounters};
use crate::ports::{PortError, PortIo};

/// Most frames read from one port before they go through the core together.
pub const BATCH: usize = 32;
/// Receive buffer per frame: the largest datagram or frame any port can hand over, plus headroom.
const BUF_LEN: usize = 65_536 + 64;
/// Most frames kept per port while its peer cannot take more (a VM's datagram queue holds only
/// `net.unix.max_dgram_qlen` frames, 10 by default, and a large TCP segment cut in software is
/// tens of frames); beyond, frames are dropped and counted as transmit errors.
const BACKLOG_MAX: usize = 512;
/// How soon a port with a backlog is tried again when nothing else is ready.
const BACKLOG_RETRY: Duration = Duration::from_micros(100);
/// A backlog whose peer took nothing for this long (a paused VM) is dropped, so the datapath
/// does not keep retrying it.
const BACKLOG_GIVE_UP: Duration = Duration::from_millis(50);
/// How often aged MAC entries are freed.
const EXPIRE_EVERY: Duration = Duration::from_secs(2);
/// The poller token of the control channel's wakeup.
pub(crate) const WAKER: Token = Token(0);

/// A request from the control thread and where to send its answer.
pub(crate) type ControlMessage = (Request, Sender<Response>);

/// Why the datapath refused a control request. A refused request changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ControlRequestError {
    /// A number or address the core cannot represent.
    #[error(transparent)]
    BadValue(#[from] BadValue),
    /// The core refused the configuration command.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The port's socket or device could not be opened or polled.
    #[error("port {port}")]
    Open {
        /// The port number.
        port: u32,
        /// Why.
        #[source]
        source: PortError,
    },
}

struct OpenPort {
    spec: PortSpec,
    io: PortIo,
    /// Added by the daemon itself (the `--underlay-ip` uplink): not part of the agent's config.
    builtin: bool,
    rx_errors: u64,
    tx_errors: u64,
    /// Frames the port's peer refused for now (`EAGAIN`), in order, sent before any newer one.
    backlog: VecDeque<Pending>,
    /// When the backlog last made progress (or started).
    backlog_moved: Option<Instant>,
}

/// A frame waiting in a port's backlog.
struct Pending {
    bytes: Vec<u8>,
    vtep: Option<Ipv4Addr>,
    offload: Offload,
}

impl OpenPort {
    /// Sends a frame, or queues it behind the backlog when the peer is full.
    fn send(&mut self, bytes: &[u8], vtep: Option<Ipv4Addr>, offload: &Offload) {
        if self.backlog.is_empty() {
            match self.io.send(bytes, vtep, offload) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.tx_errors += 1;
                    return;
                }
            }
        }
        if self.backlog.len() >= BACKLOG_MAX {
            self.tx_errors += 1;
            return;
        }
        if self.backlog.is_empty() {
            self.backlog_moved = Some(Instant::now());
        }
        self.backlog.push_back(Pending {
            bytes: bytes.to_vec(),
            vtep,
            offload: *offload,
        });
    }

    /// Sends what the backlog holds until the peer is full again; drops it when the peer has
    /// taken nothing for [`BACKLOG_GIVE_UP`].
    fn flush(&mut self, now: Instant) {
        let before = self.backlog.len();
        while let Some(p) = self.backlog.front() {
            match self.io.send(&p.bytes, p.vtep, &p.offload) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.tx_errors += 1,
            }
            self.backlog.pop_front();
        }
        if self.backlog.len() < before {
            self.backlog_moved = Some(now);
        } else if self
            .backlog_moved
            .is_some_and(|t| now.saturating_duration_since(t) > BACKLOG_GIVE_UP)
        {
            self.tx_errors += self.backlog.len() as u64;
            self.backlog.clear();
        }
    }
}

/// The configuration applied through the control socket (the daemon's own uplink aside), kept
/// to answer `get_config`.
#[derive(Default)]
struct AppliedConfig {
    settings: Option<(u64, usize)>,
    networks: BTreeMap<u32, NetworkSpec>,
    flood: BTreeMap<u32, Vec<Ipv4Addr>>,
    macs: BTreeMap<(u32, Mac), LocationSpec>,
    arps: BTreeMap<(u32, Ipv4Addr), Mac>,
    vtep_macs: BTreeMap<Ipv4Addr, Mac>,
    dhcp: BTreeMap<u32, DhcpSpec>,
    policies: BTreeMap<u32, PortPolicySpec>,
    peers: Option<Vec<Ipv4Addr>>,
    moves: BTreeMap<(u32, Mac), Ipv4Addr>,
}

pub(crate) struct Datapath {
    switch: Switch,
    poll: Poll,
    ports: BTreeMap<u32, OpenPort>,
    applied: AppliedConfig,
    control: Receiver<ControlMessage>,
    bufs: Vec<Box<[u8]>>,
    frames: Vec<(Range<usize>, Offload)>,
    rx_scratch: Vec<(usize, Option<std::net::SocketAddrV4>)>,
    tx: TxBatch,
    start: Instant,
}

impl Datapath {
    pub(crate) fn new(poll: Poll, control: Receiver<ControlMessage>) -> Datapath {
        Datapath {
            switch: Switch::new(SwitchSettings::default()),
            poll,
            ports: BTreeMap::new(),
            applied: AppliedConfig::default(),
            control,
            bufs: (0..BATCH)
                .map(|_| vec![0u8; BUF_LEN].into_boxed_slice())
                .collect(),
            frames: Vec::with_capacity(BATCH),
            rx_scratch: Vec::with_capacity(BATCH),
            tx: TxBatch::with_capacity(BATCH * 4, BATCH * 4 * 2048),
            start: Instant::now(),
        }
    }

    /// Adds a port on the daemon's own behalf (not reported by `get_config`).
    pub(crate) fn add_builtin_port(&mut self, spec: PortSpec) -> Result<(), ControlRequestError> {
        self.add_port(spec, true)
    }

    /// Runs until the control channel closes.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut ready: VecDeque<u32> = VecDeque::new();
        let mut next_expire = Instant::now() + EXPIRE_EVERY;
        loop {
            let mut backlog = false;
            let now = Instant::now();
            for port in self.ports.values_mut().filter(|p| !p.backlog.is_empty()) {
                port.flush(now);
                backlog |= !port.backlog.is_empty();
            }
            let timeout = if !ready.is_empty() {
                Some(Duration::ZERO)
            } else if backlog {
                Some(BACKLOG_RETRY)
            } else {
                Some(next_expire.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut wake = false;
            for event in events.iter() {
                match event.token() {
                    WAKER => wake = true,
                    Token(t) => {
                        let Some(id) = t.checked_sub(1).and_then(|p| u32::try_from(p).ok()) else {
                            continue;
                        };
                        if !ready.contains(&id) {
                            ready.push_back(id);
                        }
                    }
                }
            }
            if wake && !self.drain_control() {
                return Ok(());
            }
            // Round robin: one batch per ready port; a port that had more goes to the back.
            let mut rounds = ready.len();
            while rounds > 0 {
                rounds -= 1;
                let Some(id) = ready.pop_front() else { break };
                if self.batch(id) {
                    ready.push_back(id);
                }
                if !ready.is_empty() && !self.drain_control() {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= next_expire {
                self.switch.expire(now.duration_since(self.start));
                next_expire = now + EXPIRE_EVERY;
            }
        }
    }

    /// Reads up to [`BATCH`] frames from a port, forwards them and sends the result. True when
    /// the port may have more.
    fn batch(&mut self, id: u32) -> bool {
        let Some(port) = self.ports.get_mut(&id) else {
            return false;
        };
        self.frames.clear();
        let before = port.rx_errors;
        let more = port.io.recv_batch(
            &mut self.bufs,
            &mut self.frames,
            &mut self.rx_scratch,
            &mut port.rx_errors,
        );
        let errors = port.rx_errors - before;
        if self.frames.is_empty() {
            // A port that only fails is not polled again until it signals.
            return more && errors == 0;
        }
        let now = self.start.elapsed();
        let port_id = PortId(id);
        let bufs = &self.bufs;
        self.switch.process_offload(
            now,
            self.frames
                .iter()
                .zip(bufs.iter())
                .map(|((range, offload), buf)| {
                    (port_id, buf.get(range.clone()).unwrap_or(&[]), *offload)
                }),
            &mut self.tx,
        );
        self.send_tx();
        self.tx.clear();
        more
    }

    /// Sends the frames of `self.tx`: port by port, in order within a port; in batches on ports
    /// that take them (VM ports, the uplink) unless a backlog is waiting there.
    fn send_tx(&mut self) {
        let batched = self.tx.iter().any(|(f, _)| {
            self.ports
                .get(&f.port.0)
                .is_some_and(|p| p.io.batches() && p.backlog.is_empty())
        });
        if !batched {
            // Only taps and the trunk (or ports with a backlog): one write per frame, in order.
            for (frame, bytes) in self.tx.iter() {
                if let Some(out) = self.ports.get_mut(&frame.port.0) {
                    out.send(bytes, frame.vtep, &frame.offload);
                }
            }
            return;
        }
        let mut order: Vec<(u32, usize)> = self
            .tx
            .iter()
            .enumerate()
            .map(|(i, (f, _))| (f.port.0, i))
            .collect();
        order.sort_by_key(|&(port, _)| port);
        let frames: Vec<_> = self.tx.iter().collect();
        let mut rest = order.as_slice();
        while let Some(&(id, _)) = rest.first() {
            let n = rest.iter().take_while(|(p, _)| *p == id).count();
            let (run, tail) = rest.split_at(n);
            rest = tail;
            let Some(out) = self.ports.get_mut(&id) else {
                continue;
            };
            let run: Vec<_> = run.iter().filter_map(|&(_, i)| frames.get(i)).collect();
            if !out.io.batches() || !out.backlog.is_empty() {
                for (frame, bytes) in run {
                    out.send(bytes, frame.vtep, &frame.offload);
                }
                continue;
            }
            let batch: Vec<(&[u8], Option<Ipv4Addr>)> =
                run.iter().map(|(f, b)| (*b, f.vtep)).collect();
            let done = out.io.send_batch(&batch, &mut out.tx_errors);
            for (bytes, vtep) in batch.iter().skip(done) {
                out.send(bytes, *vtep, &Offload::NONE);
            }
        }
    }

    /// Applies every queued control request. False when the control side is gone.
    fn drain_control(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok((request, reply)) => {
                    let response = self.handle(request);
                    let _ = reply.send(response);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Ping => return Response::Pong,
            Request::GetConfig => {
                return Response::Config {
                    requests: self.config(),
                }
            }
            Request::GetCounters => return Response::Counters(self.counters()),
            Request::AddPort(spec) => self.add_port(spec, false),
            Request::RemovePort { id } => self.remove_port(id),
            other => self.apply(other),
        };
        match result {
            Ok(()) => Response::Ok,
            Err(e) => Response::Error { message: chain(&e) },
        }
    }

    fn apply(&mut self, request: Request) -> Result<(), ControlRequestError> {
        let Some(command) = convert::config_command(&request)? else {
            return Ok(());
        };
        self.switch.apply(command)?;
        let d = &mut self.applied;
        match request {
            Request::AddNetwork { id, kind } => {
                d.networks.insert(id, kind);
            }
            Request::RemoveNetwork { id } => {
                d.networks.remove(&id);
                d.flood.remove(&id);
                d.macs.retain(|(n, _), _| *n != id);
                d.moves.retain(|(n, _), _| *n != id);
                d.arps.retain(|(n, _), _| *n != id);
                d.dhcp.remove(&id);
            }
            Request::SetDhcp { network, config } => match config {
                Some(c) => {
                    d.dhcp.insert(network, c);
                }
                None => {
                    d.dhcp.remove(&network);
                }
            },
            Request::SetFloodList { network, vteps } => {
                d.flood.insert(network, vteps);
            }
            Request::AddMacEntry {
                network,
                mac,
                location,
            } => {
                d.macs.insert((network, mac), location);
                d.moves.remove(&(network, mac));
            }
            Request::RemoveMacEntry { network, mac } => {
                d.macs.remove(&(network, mac));
                d.moves.remove(&(network, mac));
            }
            Request::ExpectMacMove { network, mac, to } => match to {
                Some(to) => {
                    d.moves.insert((network, mac), to);
                }
                None => {
                    d.moves.remove(&(network, mac));
                }
            },
            Request::SetPortPolicy { port, policy } => {
                d.policies.insert(port, policy);
            }
            Request::SetUnderlayPeers { peers } => d.peers = peers,
            Request::AddArpEntry { network, ip, mac } => {
                d.arps.insert((network, ip), mac);
            }
            Request::RemoveArpEntry { network, ip } => {
                d.arps.remove(&(network, ip));
            }
            Request::SetVtepMac { vtep, mac } => {
                d.vtep_macs.insert(vtep, mac);
            }
            Request::SetSettings {
                mac_ageing_secs,
                mac_learn_limit,
            } => d.settings = Some((mac_ageing_secs, mac_learn_limit)),
            // Moves entries back to where `applied` already has them.
            Request::RevertMacMoves => {}
            Request::Ping
            | Request::GetConfig
            | Request::GetCounters
            | Request::AddPort(_)
            | Request::RemovePort { .. } => {}
        }
        Ok(())
    }

    fn add_port(&mut self, spec: PortSpec, builtin: bool) -> Result<(), ControlRequestError> {
        if self.ports.contains_key(&spec.id) {
            return Err(ConfigError::PortExists(PortId(spec.id)).into());
        }
        let token = usize::try_from(spec.id)
            .ok()
            .and_then(|id| id.checked_add(1))
            .ok_or(ConfigError::PortIdTooLarge(PortId(spec.id)))?;
        // The core checks the configuration first (a refused command changes nothing); it is
        // undone if the port cannot be opened.
        self.switch
            .apply(ConfigCommand::AddPort(convert::port_config(&spec)))?;
        let undo = |switch: &mut Switch| {
            let _ = switch.apply(ConfigCommand::RemovePort(PortId(spec.id)));
        };
        let opened = PortIo::open(&spec).and_then(|mut io| {
            io.register(self.poll.registry(), Token(token))
                .map_err(PortError::Register)?;
            Ok(io)
        });
        let io = match opened {
            Ok(io) => io,
            Err(source) => {
                undo(&mut self.switch);
                return Err(ControlRequestError::Open {
                    port: spec.id,
                    source,
                });
            }
        };
        if io.offloads() {
            // The port exists: this cannot fail.
            let _ = self.switch.set_port_offloads(PortId(spec.id), true);
        }
        tracing::info!(port = spec.id, attach = ?spec.attach, offloads = io.offloads(), "port added");
        self.ports.insert(
            spec.id,
            OpenPort {
                spec,
                io,
                builtin,
                rx_errors: 0,
                tx_errors: 0,
                backlog: VecDeque::new(),
                backlog_moved: None,
            },
        );
        Ok(())
    }

    fn remove_port(&mut self, id: u32) -> Result<(), ControlRequestError> {
        self.switch.apply(ConfigCommand::RemovePort(PortId(id)))?;
        if let Some(mut port) = self.ports.remove(&id) {
            let _ = port.io.deregister(self.poll.registry());
        }
        self.applied
            .macs
            .retain(|_, location| *location != LocationSpec::Port(id));
        self.applied.policies.remove(&id);
        Ok(())
    }

    fn counters(&self) -> CountersView {
        let io = self
            .ports
            .iter()
            .map(|(id, p)| {
                let counters = PortIoCounters {
                    rx_errors: p.rx_errors,
                    tx_errors: p.tx_errors,
                    mtu: p.spec.mtu,
                };
                (*id, counters)
            })
            .collect();
        convert::counters_view(&self.switch.snapshot(), &io)
    }

    /// Requests that rebuild the agent's configuration, in an order that applies.
    fn config(&self) -> Vec<Request> {
        let d = &self.applied;
        let mut out = Vec::new();
        if let Some((mac_ageing_secs, mac_learn_limit)) = d.settings {
            out.push(Request::SetSettings {
                mac_ageing_secs,
                mac_learn_limit,
            });
        }
        out.extend(
            d.networks
                .iter()
                .map(|(&id, &kind)| Request::AddNetwork { id, kind }),
        );
        // Uplink and trunk first: overlay MTU checks refer to the uplink.
        let mut ports: Vec<&OpenPort> = self.ports.values().filter(|p| !p.builtin).collect();
        ports.sort_by_key(|p| {
            let access = matches!(
                p.spec.attach,
                Attachment::Vm { .. } | Attachment::Host { .. }
            );
            (access, p.spec.id)
        });
        out.extend(ports.iter().map(|p| Request::AddPort(p.spec.clone())));
        out.extend(
            d.vtep_macs
                .iter()
                .map(|(&vtep, &mac)| Request::SetVtepMac { vtep, mac }),
        );
        out.extend(
            d.flood
                .iter()
                .map(|(&network, vteps)| Request::SetFloodList {
                    network,
                    vteps: vteps.clone(),
                }),
        );
        out.extend(
            d.macs
                .iter()
                .map(|(&(network, mac), &location)| Request::AddMacEntry {
                    network,
                    mac,
                    location,
                }),
        );
        out.extend(
            d.arps
                .iter()
                .map(|(&(network, ip), &mac)| Request::AddArpEntry { network, ip, mac }),
        );
        out.extend(d.dhcp.iter().map(|(&network, &c)| Request::SetDhcp {
            network,
            config: Some(c),
        }));
        out.extend(
            d.moves
                .iter()
                .map(|(&(network, mac), &to)| Request::ExpectMacMove {
                    network,
                    mac,
                    to: Some(to),
                }),
        );
        out.extend(
            d.policies
                .iter()
                .filter(|(id, _)| self.ports.contains_key(id))
                .map(|(&port, policy)| Request::SetPortPolicy {
                    port,
                    policy: policy.clone(),
                }),
        );
        if let Some(peers) = &d.peers {
            out.push(Request::SetUnderlayPeers {
                peers: Some(peers.clone()),
            });
        }
        out
    }
}
