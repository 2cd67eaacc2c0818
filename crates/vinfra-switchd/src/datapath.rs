//! The datapath thread: one poll loop over every port, the core [`Switch`], and the
//! configuration commands from the control thread, applied between batches.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use vinfra_switch::datapath::firewall::rules::Direction;
use vinfra_switch::datapath::{ConfigCommand, ConfigError, FastFlow, PortId};
use vinfra_switch::datapath::{Switch, SwitchSettings, TxBatch, TxFrame};
use vinfra_switch::qos::Source;
use vinfra_switch::wire::ethernet::HEADER_LEN;
use vinfra_switch::wire::Offload;
use vinfra_switch_control::{Attachment, CountersView, PortSpec, QosSpec, Request, Response};
use vinfra_types::error::chain;

use crate::convert::{self, BadValue, PortIoCounters};
use crate::fastpath::KernelFastPath;
use crate::ports::{self, Outgoing, PortError, PortIo, RxFrame};
use crate::qos::{self, PortOutput, PortQos, QosError};
use crate::sys;

mod applied;
mod fast;
mod order;

use applied::AppliedConfig;

/// Most frames read from one port before they go through the core together.
pub const BATCH: usize = 32;
/// Receive buffer per frame: the largest datagram or frame any port can hand over, plus headroom.
const BUF_LEN: usize = 65_536 + 64;
/// How often aged MAC entries are freed.
const EXPIRE_EVERY: Duration = Duration::from_secs(2);
/// How often the firewall's drop log is taken and written to the daemon's log.
const FIREWALL_LOG_EVERY: Duration = Duration::from_secs(1);
/// How often the fast path's counters go to the core (and idle flows leave it).
const FAST_SYNC_EVERY: Duration = Duration::from_secs(1);
/// The poller token of the control channel's wakeup.
pub(crate) const WAKER: Token = Token(0);

/// What reading a port's batch found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Read {
    /// The port has nothing more (or is gone): it waits for its next readiness event.
    Done,
    /// The port may have more.
    More,
    /// The port's egress limit is in debt: read again when it is repaid.
    Throttled,
}

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
    /// A port's QoS has a value out of range, or the port takes none.
    #[error(transparent)]
    Qos(#[from] QosError),
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
    /// Frames waiting for the peer or the ingress limit, and the transmit counters.
    out: PortOutput,
    /// QoS from `set_port_qos`; `None`: normal class, default weight, no limits.
    qos: Option<PortQos>,
    /// Batches the port may still read in this round (weighted reading order).
    read_credit: u32,
}

impl OpenPort {
    /// Class and weight of the frames read from the port.
    #[inline]
    fn source(&self, id: u32) -> Source {
        self.qos
            .as_ref()
            .map_or_else(|| qos::default_source(id), |q| q.source)
    }

    /// Most frames to read now: all of a batch without an egress limit; else as many as the
    /// credit covers and one more (so the bucket's debt is at most one frame), none in debt.
    fn readable(&mut self, now: Duration) -> usize {
        let Some(bucket) = self.qos.as_mut().and_then(|q| q.egress.as_mut()) else {
            return BATCH;
        };
        if !bucket.ready(now) {
            return 0;
        }
        let largest = if self.io.offloads() {
            BUF_LEN
        } else {
            usize::from(self.spec.mtu) + 18
        };
        let covered = usize::try_from(bucket.available()).unwrap_or(usize::MAX) / largest;
        covered.saturating_add(1).min(BATCH)
    }
}

pub(crate) struct Datapath {
    switch: Switch,
    poll: Poll,
    ports: BTreeMap<u32, OpenPort>,
    /// VM ports' 802.1Q sub-interfaces: ports of the core without I/O of their own (their
    /// frames travel through the parent's socket).
    sub_ports: BTreeMap<u32, PortSpec>,
    applied: AppliedConfig,
    control: Receiver<ControlMessage>,
    bufs: Vec<Box<[u8]>>,
    frames: Vec<RxFrame>,
    rx_scratch: Vec<sys::Received>,
    /// Where a large segment from the uplink is cut (`ports::large`).
    large_scratch: Vec<u8>,
    tx: TxBatch,
    start: Instant,
    /// Ready ports whose egress limit holds them.
    throttled: Vec<u32>,
    /// Ports with QoS: when none, the reading order is plain round robin.
    qos_ports: usize,
    /// The drop log's `suppressed` counter when last written to the daemon's log.
    log_suppressed: u64,
    /// Poll without ever sleeping ([`crate::SwitchdConfig::busy_poll`]).
    busy_poll: bool,
    /// Reads of a port by the frames they brought (element `n`: `n` frames, 1..=[`BATCH`]):
    /// an add per read, no I/O; `get_counters` answers them.
    rx_batches: [u64; BATCH + 1],
    /// Taps of removed VM ports that their QEMU still held: deleted at a later housekeeping
    /// once it let go (unless a port takes the name again).
    stale_taps: Vec<String>,
    /// The kernel fast path, when it could start ([`crate::fastpath`]).
    fast: Option<KernelFastPath>,
    /// The core's offers of a batch, installed after it.
    offers: Vec<FastFlow>,
}

impl Datapath {
    pub(crate) fn new(poll: Poll, control: Receiver<ControlMessage>) -> Datapath {
        Datapath {
            switch: Switch::new(SwitchSettings::default()),
            poll,
            ports: BTreeMap::new(),
            sub_ports: BTreeMap::new(),
            applied: AppliedConfig::default(),
            control,
            bufs: (0..BATCH)
                .map(|_| vec![0u8; BUF_LEN].into_boxed_slice())
                .collect(),
            frames: Vec::with_capacity(BATCH),
            rx_scratch: Vec::with_capacity(BATCH),
            large_scratch: Vec::new(),
            tx: TxBatch::with_capacity(BATCH * 4, BATCH * 4 * 2048),
            start: Instant::now(),
            throttled: Vec::new(),
            qos_ports: 0,
            stale_taps: Vec::new(),
            rx_batches: [0; BATCH + 1],
            log_suppressed: 0,
            busy_poll: false,
            fast: None,
            offers: Vec::new(),
        }
    }

    /// Polls without ever sleeping (true) or sleeps until a port is readable (false).
    pub(crate) fn set_busy_poll(&mut self, on: bool) {
        self.busy_poll = on;
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
        let mut next_log = Instant::now() + FIREWALL_LOG_EVERY;
        let mut next_fast = Instant::now() + FAST_SYNC_EVERY;
        loop {
            let now = self.start.elapsed();
            // How soon a queue or a held port needs the loop again.
            let mut wake: Option<Duration> = None;
            for port in self.ports.values_mut().filter(|p| p.out.waiting()) {
                port.out.flush(&port.io, now);
                if let Some(w) = port.out.wake_in(now) {
                    wake = Some(wake.map_or(w, |x| x.min(w)));
                }
            }
            if !self.throttled.is_empty() {
                if let Some(w) = self.release_throttled(&mut ready, now) {
                    wake = Some(wake.map_or(w, |x| x.min(w)));
                }
            }
            let timeout = if !ready.is_empty() || self.busy_poll {
                Some(Duration::ZERO)
            } else {
                let housekeeping = next_expire
                    .min(next_log)
                    .min(next_fast)
                    .saturating_duration_since(Instant::now());
                Some(wake.map_or(housekeeping, |w| w.min(housekeeping)))
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
            if self.qos_ports > 0 {
                if !self.weighted_round(&mut ready) {
                    return Ok(());
                }
            } else {
                // Round robin: one batch per ready port; a port that had more goes to the back.
                let mut rounds = ready.len();
                while rounds > 0 {
                    rounds -= 1;
                    let Some(id) = ready.pop_front() else { break };
                    if self.batch(id) == Read::More {
                        ready.push_back(id);
                    }
                    if !ready.is_empty() && !self.drain_control() {
                        return Ok(());
                    }
                }
            }
            let now = Instant::now();
            if now >= next_expire {
                self.switch.expire(now.duration_since(self.start));
                self.catch_up_fast();
                self.remove_stale_taps();
                next_expire = now + EXPIRE_EVERY;
            }
            if now >= next_log {
                self.write_firewall_log();
                next_log = now + FIREWALL_LOG_EVERY;
            }
            if now >= next_fast {
                self.sync_fast();
                next_fast = now + FAST_SYNC_EVERY;
            }
        }
    }

    /// Writes the firewall's drop records to the daemon's log, one line each, and how many
    /// drops went unrecorded (over the log's rate) since the last time.
    fn write_firewall_log(&mut self) {
        for d in self.switch.take_firewall_log() {
            let direction = match d.direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            tracing::info!(
                port = d.port.0,
                direction,
                protocol = d.protocol,
                src = %d.src,
                dst = %d.dst,
                src_port = d.src_port,
                dst_port = d.dst_port,
                reason = d.reason.as_str(),
                rule = d.rule,
                "firewall drop"
            );
        }
        let suppressed = self.switch.firewall_log_counters().suppressed;
        if suppressed > self.log_suppressed {
            tracing::info!(
                drops = suppressed - self.log_suppressed,
                "firewall drops not logged: over the log's rate"
            );
        }
        self.log_suppressed = suppressed;
    }

    /// Reads up to [`BATCH`] frames from a port (fewer as its egress limit allows), forwards
    /// them and sends the result.
    fn batch(&mut self, id: u32) -> Read {
        let Some(port) = self.ports.get_mut(&id) else {
            return Read::Done;
        };
        let now = self.start.elapsed();
        let (n, source) = if port.qos.is_some() {
            (port.readable(now), port.source(id))
        } else {
            (BATCH, qos::default_source(id))
        };
        if n == 0 {
            return Read::Throttled;
        }
        self.frames.clear();
        let before = port.rx_errors;
        let more = port.io.recv_batch(
            self.bufs.get_mut(..n).unwrap_or_default(),
            &mut self.frames,
            &mut self.rx_scratch,
            &mut port.rx_errors,
        );
        let errors = port.rx_errors - before;
        let uplink_mtu = port.io.fast_uplink().map(|_| port.spec.mtu);
        if let Some(bucket) = port.qos.as_mut().and_then(|q| q.egress.as_mut()) {
            let bytes: usize = self.frames.iter().map(|f| f.range.len()).sum();
            bucket.take(bytes as u64);
        }
        if self.frames.is_empty() {
            // A port that only fails is not polled again until it signals.
            return if more && errors == 0 {
                Read::More
            } else {
                Read::Done
            };
        }
        if let Some(n) = self.rx_batches.get_mut(self.frames.len()) {
            *n += 1;
        }
        let more = if more { Read::More } else { Read::Done };
        let port_id = PortId(id);
        // On the uplink, a packet over its MTU: one large segment another host's kernel sent
        // whole (`ports::large`).
        let large =
            |f: &RxFrame| uplink_mtu.is_some_and(|m| f.range.len() > HEADER_LEN + usize::from(m));
        if self
            .frames
            .iter()
            .any(|f| f.coalesced.is_some() || large(f))
        {
            // Datagrams the kernel coalesced are cut apart in their buffer, one at a time.
            let (switch, tx) = (&mut self.switch, &mut self.tx);
            let scratch = &mut self.large_scratch;
            for (f, buf) in self.frames.iter().zip(self.bufs.iter_mut()) {
                let frame = buf.get(f.range.clone()).unwrap_or(&[]);
                let mut one = |frame: &[u8]| {
                    switch.process_offload(now, [(port_id, frame, Offload::NONE)], tx);
                };
                match (&f.coalesced, uplink_mtu) {
                    (Some(c), _) => {
                        c.for_each(buf, f.range.clone(), one);
                    }
                    (None, Some(mtu))
                        if large(f) && ports::large::cut(frame, mtu, scratch, &mut one) > 0 => {}
                    (None, _) => {
                        switch.process_offload(now, [(port_id, frame, f.offload)], tx);
                    }
                }
            }
        } else {
            // The received frames stay in their buffers until the batch is sent: segments cut
            // for a remote VTEP are sent from them (`send_tx`).
            let bufs = &self.bufs;
            self.switch.process_gathered(
                now,
                self.frames
                    .iter()
                    .zip(bufs.iter())
                    .map(|(f, buf)| (port_id, buf.get(f.range.clone()).unwrap_or(&[]), f.offload)),
                &mut self.tx,
            );
        }
        self.send_tx(source, now);
        self.tx.clear();
        if let Some(fast) = self.fast.as_mut() {
            self.switch.take_fast_offers(&mut self.offers);
            let ports = &self.ports;
            self.offers
                .retain(|f| !ports.get(&f.out_port.0).is_some_and(|p| p.out.waiting()));
            fast.install(&mut self.switch, now, &self.offers);
            self.offers.clear();
        }
        more
    }

    /// Sends the frames of `self.tx`, read from a port of class and weight `source`: port by
    /// port, in order within a port; in batches on ports that take them (VM ports, the uplink)
    /// unless frames are waiting there or an ingress limit holds them.
    fn send_tx(&mut self, source: Source, now: Duration) {
        // Each frame: what the batch holds, then what it left in a received frame.
        let (bufs, received) = (&self.bufs, &self.frames);
        // A tail not found where it was received (which the core never makes) would send the
        // headers alone with lengths that claim it: such a frame is dropped and counted.
        let mut lost: Vec<u32> = Vec::new();
        let frames: Vec<(&TxFrame, Outgoing<'_>)> = self
            .tx
            .iter()
            .filter_map(|(f, head)| {
                let tail = match f.tail() {
                    None => &[][..],
                    Some(t) => {
                        let found = received
                            .get(t.input)
                            .zip(bufs.get(t.input))
                            .and_then(|(r, buf)| buf.get(r.range.clone()))
                            .and_then(|input| input.get(t.range.clone()));
                        debug_assert!(found.is_some(), "a frame's tail outside its input");
                        let Some(tail) = found else {
                            lost.push(f.port.0);
                            return None;
                        };
                        tail
                    }
                };
                Some((
                    f,
                    Outgoing {
                        head,
                        tail,
                        vtep: f.vtep,
                    },
                ))
            })
            .collect();
        for port in lost {
            if let Some(out) = self.ports.get_mut(&port) {
                out.out.tx_errors += 1;
            }
        }
        let mut joined = Vec::new();
        let batched = frames.iter().any(|(f, _)| {
            self.ports
                .get(&f.port.0)
                .is_some_and(|p| p.io.batches() && p.out.direct())
        });
        if !batched {
            // Only taps and the trunk (or ports with a queue): one write per frame, in order.
            for (frame, bytes) in &frames {
                if let Some(out) = self.ports.get_mut(&frame.port.0) {
                    let bytes = bytes.contiguous(&mut joined);
                    out.out
                        .send(&out.io, bytes, frame.vtep, &frame.offload, source, now);
                }
            }
            return;
        }
        let mut order: Vec<(u32, usize)> = frames
            .iter()
            .enumerate()
            .map(|(i, (f, _))| (f.port.0, i))
            .collect();
        order.sort_by_key(|&(port, _)| port);
        let mut rest = order.as_slice();
        while let Some(&(id, _)) = rest.first() {
            let n = rest.iter().take_while(|(p, _)| *p == id).count();
            let (run, tail) = rest.split_at(n);
            rest = tail;
            let Some(out) = self.ports.get_mut(&id) else {
                continue;
            };
            let run: Vec<_> = run.iter().filter_map(|&(_, i)| frames.get(i)).collect();
            if !out.io.batches() || !out.out.direct() {
                for (frame, bytes) in run {
                    let bytes = bytes.contiguous(&mut joined);
                    out.out
                        .send(&out.io, bytes, frame.vtep, &frame.offload, source, now);
                }
                continue;
            }
            let batch: Vec<Outgoing<'_>> = run.iter().map(|(_, o)| *o).collect();
            let done = out.io.send_batch(&batch, &mut out.out.tx_errors);
            for frame in batch.iter().skip(done) {
                let bytes = frame.contiguous(&mut joined);
                out.out
                    .send(&out.io, bytes, frame.vtep, &Offload::NONE, source, now);
            }
        }
    }

    /// Applies every queued control request. False when the control side is gone.
    fn drain_control(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok((request, reply)) => {
                    let response = self.handle(request);
                    self.catch_up_fast();
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
            Request::GetCounters => {
                self.sync_fast();
                return Response::Counters(self.counters());
            }
            Request::TakeFlows => {
                self.sync_fast();
                let report = self.switch.take_flows(self.start.elapsed());
                return Response::Flows(convert::flows_view(&report));
            }
            Request::ExportConnections { port } => {
                if !self.ports.contains_key(&port) {
                    let error = ControlRequestError::from(ConfigError::NoSuchPort(PortId(port)));
                    return Response::Error {
                        message: chain(&error),
                    };
                }
                let entries = self
                    .switch
                    .export_connections(PortId(port), self.start.elapsed())
                    .iter()
                    .map(convert::connection_spec)
                    .collect();
                return Response::Connections { entries };
            }
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
        if let Request::SetPortQos { port, qos } = request {
            return self.set_port_qos(port, qos);
        }
        let Some(command) = convert::config_command(&request)? else {
            return Ok(());
        };
        self.switch.set_clock(self.start.elapsed());
        self.switch.apply(command)?;
        self.applied.record(request);
        // Gratuitous ARPs of an edge that came here (or got a floating IP) go out at once.
        if self.switch.announce(&mut self.tx) > 0 {
            let now = self.start.elapsed();
            self.send_tx(qos::default_source(0), now);
            self.tx.clear();
        }
        Ok(())
    }

    /// Applies a port's QoS (checked first: a refused request changes nothing).
    fn set_port_qos(&mut self, id: u32, spec: Option<QosSpec>) -> Result<(), ControlRequestError> {
        let port = self
            .ports
            .get_mut(&id)
            .ok_or(ConfigError::NoSuchPort(PortId(id)))?;
        let qos = spec
            .as_ref()
            .map(|s| PortQos::new(id, &port.spec.attach, s))
            .transpose()?;
        // The core marks the DSCP of what the port sends; checked above, so it cannot refuse.
        self.switch.apply(ConfigCommand::SetPortDscp {
            port: PortId(id),
            mark: spec.as_ref().and_then(|s| s.dscp_mark),
        })?;
        port.out.set_shaper(qos.as_ref().and_then(|q| q.ingress));
        port.qos = qos;
        port.read_credit = 0;
        self.qos_ports = self.ports.values().filter(|p| p.qos.is_some()).count();
        self.update_fast_port(id);
        tracing::info!(port = id, qos = ?spec, "port QoS set");
        self.applied.set_qos(id, spec);
        Ok(())
    }

    fn add_port(&mut self, spec: PortSpec, builtin: bool) -> Result<(), ControlRequestError> {
        if self.ports.contains_key(&spec.id) {
            return Err(ConfigError::PortExists(PortId(spec.id)).into());
        }
        let id = spec.id;
        let taken = |name: &str| {
            let mut others = self.ports.iter();
            others.find(|(_, p)| ports::packet_device(&p.spec.attach) == Some(name))
        };
        if let Some((other, name)) = ports::packet_device(&spec.attach)
            .and_then(|name| taken(name).map(|(other, _)| (*other, name.to_string())))
        {
            let source = io::Error::new(io::ErrorKind::AlreadyExists, format!("port {other}'s"));
            let source = PortError::Tap { name, source };
            return Err(ControlRequestError::Open { port: id, source });
        }
        let token = usize::try_from(spec.id)
            .ok()
            .and_then(|id| id.checked_add(1))
            .ok_or(ConfigError::PortIdTooLarge(PortId(spec.id)))?;
        // The core checks the configuration first (a refused command changes nothing); it is
        // undone if the port cannot be opened.
        self.switch
            .apply(ConfigCommand::AddPort(convert::port_config(&spec)?))?;
        if matches!(spec.attach, Attachment::VmVlan { .. }) {
            tracing::info!(port = spec.id, attach = ?spec.attach, "sub-interface added");
            self.sub_ports.insert(spec.id, spec);
            return Ok(());
        }
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
                out: PortOutput::new(),
                qos: None,
                read_credit: 0,
            },
        );
        self.update_fast_port(id);
        Ok(())
    }

    /// Deletes the taps of removed VM ports whose QEMU has let go of them since.
    fn remove_stale_taps(&mut self) {
        if self.stale_taps.is_empty() {
            return;
        }
        let in_use: Vec<&str> = self
            .ports
            .values()
            .filter_map(|p| match &p.spec.attach {
                Attachment::VmTap { tap, .. } => Some(tap.as_str()),
                _ => None,
            })
            .collect();
        self.stale_taps
            .retain(|tap| !in_use.contains(&tap.as_str()) && sys::vm_tap::remove(tap).is_err());
    }

    fn remove_port(&mut self, id: u32) -> Result<(), ControlRequestError> {
        if self.switch.port(PortId(id)).is_none() {
            return Err(ConfigError::NoSuchPort(PortId(id)).into());
        }
        if let Some(fast) = self.fast.as_mut() {
            // Its flows and their last counters first, while the core still has the port.
            fast.detach(&mut self.switch, self.start.elapsed(), id);
        }
        self.switch.set_port_fast(PortId(id), false);
        self.switch.apply(ConfigCommand::RemovePort(PortId(id)))?;
        if let Some(mut port) = self.ports.remove(&id) {
            let _ = port.io.deregister(self.poll.registry());
            let tap = match &port.spec.attach {
                Attachment::VmTap { tap, .. } => Some(tap.clone()),
                _ => None,
            };
            // Closes the port (a VM tap is deleted if its QEMU let go of it).
            drop(port);
            if let Some(tap) = tap.filter(|t| sys::vm_tap::exists(t)) {
                tracing::info!(tap, "VM tap kept while its QEMU holds it");
                self.stale_taps.push(tap);
            }
        }
        // The port itself if a sub-interface, or the sub-interfaces that went with it.
        let gone: Vec<u32> = self
            .sub_ports
            .keys()
            .copied()
            .filter(|&sub| self.switch.port(PortId(sub)).is_none())
            .collect();
        for sub in gone {
            self.sub_ports.remove(&sub);
            self.applied.remove_port(sub);
        }
        self.qos_ports = self.ports.values().filter(|p| p.qos.is_some()).count();
        self.applied.remove_port(id);
        Ok(())
    }

    fn counters(&self) -> CountersView {
        let io = self
            .ports
            .iter()
            .map(|(id, p)| {
                let counters = PortIoCounters {
                    rx_errors: p.rx_errors,
                    tx_errors: p.out.tx_errors,
                    mtu: p.spec.mtu,
                    qos_dropped: p.out.qos_dropped,
                    qos_delayed: p.out.qos_delayed,
                };
                (*id, counters)
            })
            .collect();
        let mut view = convert::counters_view(&self.switch.snapshot(), &io);
        for port in &mut view.ports {
            port.firewall_hits = self.switch.firewall_hits(PortId(port.id));
            port.connections = self.switch.port_connections(PortId(port.id)) as u64;
        }
        view.conntrack = Some(convert::conntrack_view(
            &self.switch.conntrack_counters(),
            &self.switch.firewall_log_counters(),
        ));
        view.rx_batches = self.rx_batches.to_vec();
        view.fast_path = self.fast.as_ref().map(|f| Box::new(f.stats()));
        view
    }

    /// Requests that rebuild the agent's configuration, in an order that applies.
    fn config(&self) -> Vec<Request> {
        // Uplink and trunk first: overlay MTU checks refer to the uplink.
        let mut ports: Vec<&OpenPort> = self.ports.values().filter(|p| !p.builtin).collect();
        ports.sort_by_key(|p| {
            let access = matches!(
                p.spec.attach,
                Attachment::Vm { .. }
                    | Attachment::VmTap { .. }
                    | Attachment::Interface { .. }
                    | Attachment::Host { .. }
            );
            (access, p.spec.id)
        });
        let mut specs: Vec<PortSpec> = ports.iter().map(|p| p.spec.clone()).collect();
        // Sub-interfaces after every VM port.
        specs.extend(self.sub_ports.values().cloned());
        self.applied.requests(&specs, |id| {
            self.ports.contains_key(&id) || self.sub_ports.contains_key(&id)
        })
    }
}
