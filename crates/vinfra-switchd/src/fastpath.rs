//! The kernel fast path: flows the core offered ([`vinfra_switch::datapath::FastFlow`]) go into
//! an eBPF hash map, and a tc program on each fast port's device forwards their frames from
//! one local port to another in the kernel, without the daemon: no copy through a packet
//! socket or a tap, no wake-up of the datapath thread (the program is in `bpf/`, this module
//! keeps the map).
//!
//! - **Ports**: VM taps and interface ports (read through AF_PACKET): the program on the
//!   device's tc ingress, and a socket filter on the switch's packet socket that hides the
//!   frames the program takes, since a packet socket sees a frame before tc does. Not host
//!   taps (one may be moved into another namespace, where interface indexes name other
//!   devices). A port with QoS is not fast (its limits and classes are the daemon's).
//! - **Flows** are installed after each batch from the core's offers that still hold (their
//!   generation is the core's), at most [`MAX_FLOWS`]. Frames of the flow still queued for the
//!   daemon (in the ingress port's socket) go after the first ones the kernel forwarded: a
//!   reordering of a few frames at each install, which TCP takes; offers towards a port with
//!   frames waiting in its output queue are not installed (those would go after the kernel's).
//! - **Every second** (and before counters are read) each flow's counters go to the core
//!   ([`vinfra_switch::datapath::Switch::fast_traffic`]: ports, networks, routers, flow
//!   accounting, MAC ageing); a flow without frames for [`IDLE_SYNCS`] seconds leaves the map.
//! - **Taken back**: every flow, as soon as the core's generation moves (configuration, a MAC
//!   learned or moved, a neighbour, a MAC entry or neighbour expired), and all of them every
//!   [`REVALIDATE_EVERY`] whatever happened, so that nothing the core would decide otherwise
//!   (an aged entry, a neighbour to confirm) lasts longer than that.
//!
//! Without the object (built without clang), without BPF (an old kernel, no privileges) or
//! with `--no-fast-path`, the daemon forwards everything itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::{SchedClassifier, SocketFilter};
use aya::Ebpf;
use vinfra_switch::datapath::{FastFlow, FastKey, FastTraffic, PortId, Switch};
use vinfra_types::error::chain;

use crate::sys::fast_map::{MapKey, MapValue, FLOW_ROUTED};
use crate::sys::PacketSocket;

/// Flows in the map at most (the program's `max_entries`).
pub const MAX_FLOWS: usize = 65_536;

/// Seconds without a frame after which a flow leaves the map.
pub const IDLE_SYNCS: u32 = 10;

/// Every flow leaves the map this often, to be offered again by its next frame.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(30);

/// Why the fast path could not start or take a port.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// The daemon was built without the eBPF object (no clang on the build host).
    #[error("built without the eBPF object (no clang on the build host)")]
    NotBuilt,
    /// Loading the object, its programs or its map failed.
    #[error("loading the eBPF program: {0}")]
    Load(String),
    /// Attaching the program to a device or a socket failed.
    #[error("attaching the fast path to {device}: {reason}")]
    Attach {
        /// The device.
        device: String,
        /// Why.
        reason: String,
    },
}

struct FastPort {
    ifindex: u32,
    device: String,
    link: Option<SchedClassifierLinkId>,
}

struct Installed {
    flow: FastFlow,
    key: MapKey,
    /// The map's counters when last read.
    seen: MapValue,
    /// Syncs in a row without a frame.
    idle: u32,
}

/// The fast path's counters, as `get_counters` answers them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPathStats {
    /// Flows in the map now.
    pub flows: u64,
    /// Flows put in the map so far.
    pub installed: u64,
    /// Times every flow was taken back (the core's state changed, or revalidation).
    pub flushes: u64,
    /// Offers not installed: the map full or refusing.
    pub refused: u64,
    /// Frames the kernel forwarded.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The fast path of one daemon.
pub struct KernelFastPath {
    ebpf: Ebpf,
    map: BpfHashMap<MapData, MapKey, MapValue>,
    ports: HashMap<u32, FastPort>,
    installed: HashMap<FastKey, Installed>,
    generation: u64,
    next_revalidation: Instant,
    stats: FastPathStats,
}

#[cfg(fast_path_object)]
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fastpath.bpf.o"));
#[cfg(not(fast_path_object))]
static OBJECT: &[u8] = &[];

fn load_error(e: impl std::fmt::Display) -> FastPathError {
    FastPathError::Load(e.to_string())
}

impl KernelFastPath {
    /// [`KernelFastPath::open`], saying in the log whether it could.
    pub fn start() -> Option<KernelFastPath> {
        match KernelFastPath::open() {
            Ok(fast) => {
                tracing::info!("kernel fast path ready");
                Some(fast)
            }
            Err(e) => {
                tracing::warn!("no kernel fast path: {}", chain(&e));
                None
            }
        }
    }

    /// Loads the programs and creates the map.
    pub fn open() -> Result<KernelFastPath, FastPathError> {
        if OBJECT.is_empty() {
            return Err(FastPathError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(OBJECT).map_err(load_error)?;
        let fast: &mut SchedClassifier = ebpf
            .program_mut("vinfra_fast")
            .ok_or_else(|| load_error("no program vinfra_fast"))?
            .try_into()
            .map_err(load_error)?;
        fast.load().map_err(load_error)?;
        let skip: &mut SocketFilter = ebpf
            .program_mut("vinfra_skip")
            .ok_or_else(|| load_error("no program vinfra_skip"))?
            .try_into()
            .map_err(load_error)?;
        skip.load().map_err(load_error)?;
        let map = ebpf
            .take_map("flows")
            .ok_or_else(|| load_error("no map flows"))?;
        let map = BpfHashMap::try_from(map).map_err(load_error)?;
        sweep_stale_filters();
        Ok(KernelFastPath {
            ebpf,
            map,
            ports: HashMap::new(),
            installed: HashMap::new(),
            generation: 0,
            next_revalidation: Instant::now() + REVALIDATE_EVERY,
            stats: FastPathStats::default(),
        })
    }

    /// Puts the program on port `id`'s device `device` (its ingress) and the socket filter
    /// on the switch's packet socket of it. The core is told by the caller.
    fn attach(
        &mut self,
        id: u32,
        device: &str,
        socket: &PacketSocket,
    ) -> Result<(), FastPathError> {
        let failed = |reason: String| FastPathError::Attach {
            device: device.to_string(),
            reason,
        };
        if let Some((other, _)) = self.ports.iter().find(|(_, p)| p.device == device) {
            return Err(failed(format!("already port {other}'s")));
        }
        let ifindex = nix::net::if_::if_nametoindex(device).map_err(|e| failed(e.to_string()))?;
        let skip: &mut SocketFilter = self
            .ebpf
            .program_mut("vinfra_skip")
            .ok_or_else(|| failed("no program vinfra_skip".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| failed(e.to_string()))?;
        skip.attach(socket).map_err(|e| failed(e.to_string()))?;
        // Kernels before 6.6 attach through the clsact qdisc (TCX needs none), where a filter
        // outlives its process: one left by a switch that crashed (with its old map) goes.
        match tc::qdisc_add_clsact(device) {
            Ok(()) | Err(tc::TcError::AlreadyAttached) => {}
            Err(e) => tracing::debug!(device, "no clsact qdisc added: {e}"),
        }
        let _ = tc::qdisc_detach_program(device, TcAttachType::Ingress, "vinfra_fast");
        let fast: &mut SchedClassifier = self
            .ebpf
            .program_mut("vinfra_fast")
            .ok_or_else(|| failed("no program vinfra_fast".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| failed(e.to_string()))?;
        let link = fast
            .attach(device, TcAttachType::Ingress)
            .map_err(|e| failed(e.to_string()))?;
        self.ports.insert(
            id,
            FastPort {
                ifindex,
                device: device.to_string(),
                link: Some(link),
            },
        );
        Ok(())
    }

    /// Makes port `id` fast on `device` (its name and packet socket), or not with `None`;
    /// tells the core. A port that cannot take the program stays on the daemon (logged).
    pub(crate) fn set_port(
        &mut self,
        switch: &mut Switch,
        now: Duration,
        id: u32,
        device: Option<(&str, &PacketSocket)>,
    ) {
        match device {
            Some((name, socket)) if !self.has_port(id) => match self.attach(id, name, socket) {
                Ok(()) => switch.set_port_fast(PortId(id), true),
                Err(e) => tracing::warn!(port = id, "no fast path: {}", chain(&e)),
            },
            Some(_) => {}
            None => {
                switch.set_port_fast(PortId(id), false);
                self.detach(switch, now, id);
            }
        }
    }

    /// Takes the program off port `id` (its socket's filter goes with the socket) and the
    /// flows from or to it out of the map, their last counters to the core first.
    pub fn detach(&mut self, switch: &mut Switch, now: Duration, id: u32) {
        let Some(mut port) = self.ports.remove(&id) else {
            return;
        };
        if let Some(link) = port.link.take() {
            let program = self.ebpf.program_mut("vinfra_fast");
            if let Some(Ok(fast)) = program.map(<&mut SchedClassifier>::try_from) {
                if let Err(e) = fast.detach(link) {
                    tracing::debug!(port = id, "fast path not detached: {e}");
                }
            }
        }
        let gone: Vec<FastKey> = self
            .installed
            .iter()
            .filter(|(_, i)| i.flow.key.in_port.0 == id || i.flow.out_port.0 == id)
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(mut i) = self.installed.remove(&key) {
                report(&self.map, switch, now, &mut i, &mut self.stats);
                let _ = self.map.remove(&i.key);
            }
        }
        self.stats.flows = self.installed.len() as u64;
    }

    /// Whether port `id` has the program.
    pub fn has_port(&self, id: u32) -> bool {
        self.ports.contains_key(&id)
    }

    /// Installs the offers that still hold; first takes every flow back if the core's state
    /// moved since they were installed.
    pub fn install(&mut self, switch: &mut Switch, now: Duration, offers: &[FastFlow]) {
        self.catch_up(switch, now);
        let generation = self.generation;
        for flow in offers.iter().filter(|f| f.generation == generation) {
            if self.installed.contains_key(&flow.key) {
                continue;
            }
            if self.installed.len() >= MAX_FLOWS {
                self.stats.refused += 1;
                continue;
            }
            let (Some(from), Some(to)) = (
                self.ports.get(&flow.key.in_port.0),
                self.ports.get(&flow.out_port.0),
            ) else {
                continue;
            };
            let k = &flow.key;
            let key = MapKey::new(
                from.ifindex,
                k.dst_mac,
                k.src_mac,
                k.src,
                k.dst,
                k.protocol,
                k.src_port,
                k.dst_port,
            );
            let mut value = MapValue {
                out_ifindex: to.ifindex,
                max_ip_len: flow.max_ip_len,
                ..MapValue::default()
            };
            if let Some(r) = flow.rewrite {
                value.flags |= FLOW_ROUTED;
                value.new_dst = r.dst_mac.0;
                value.new_src = r.src_mac.0;
            }
            match self.map.insert(key, value, 0) {
                Ok(()) => {
                    self.installed.insert(
                        flow.key,
                        Installed {
                            flow: *flow,
                            key,
                            seen: MapValue::default(),
                            idle: 0,
                        },
                    );
                    self.stats.installed += 1;
                }
                Err(e) => {
                    self.stats.refused += 1;
                    tracing::debug!("fast path flow refused: {e}");
                }
            }
        }
        self.stats.flows = self.installed.len() as u64;
    }

    /// Takes every flow back if the core's state moved since they were installed: call it
    /// after anything that may change the core (a control request, expiry), so that no flow
    /// outlives what it was decided on even while none of its frames reach the daemon.
    pub fn catch_up(&mut self, switch: &mut Switch, now: Duration) {
        let generation = switch.fast_generation();
        if generation != self.generation {
            self.flush(switch, now);
            self.generation = generation;
        }
    }

    /// Hands every flow's counters since the last read to the core and takes idle flows out;
    /// every [`REVALIDATE_EVERY`], all of them (and all of them at once if the core's state
    /// moved).
    pub fn sync(&mut self, switch: &mut Switch, now: Duration) {
        self.catch_up(switch, now);
        let mut idle = Vec::new();
        for (key, i) in &mut self.installed {
            if report(&self.map, switch, now, i, &mut self.stats) {
                i.idle = 0;
            } else {
                i.idle += 1;
                if i.idle >= IDLE_SYNCS {
                    idle.push(*key);
                }
            }
        }
        for key in idle {
            if let Some(i) = self.installed.remove(&key) {
                let _ = self.map.remove(&i.key);
            }
        }
        if Instant::now() >= self.next_revalidation {
            self.flush(switch, now);
            self.next_revalidation = Instant::now() + REVALIDATE_EVERY;
        }
        self.stats.flows = self.installed.len() as u64;
    }

    /// Takes every flow out of the map, its last counters to the core.
    fn flush(&mut self, switch: &mut Switch, now: Duration) {
        if self.installed.is_empty() {
            return;
        }
        for (_, mut i) in self.installed.drain() {
            report(&self.map, switch, now, &mut i, &mut self.stats);
            let _ = self.map.remove(&i.key);
        }
        self.stats.flushes += 1;
        self.stats.flows = 0;
    }

    /// The counters.
    pub fn stats(&self) -> FastPathStats {
        self.stats
    }
}

/// Takes away the `vinfra_fast` filters a switch that crashed left on the devices of this
/// namespace (kernels before 6.6 attach through the `clsact` qdisc, where a filter outlives
/// its process, with its map: it would go on forwarding what it was told before). With TCX
/// nothing is left and nothing is found.
fn sweep_stale_filters() {
    let Ok(devices) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for device in devices.flatten() {
        let name = device.file_name();
        if let Some(name) = name.to_str() {
            if tc::qdisc_detach_program(name, TcAttachType::Ingress, "vinfra_fast").is_ok() {
                tracing::info!(device = name, "stale fast path filter taken away");
            }
        }
    }
}

/// Reads one flow's counters and hands what is new to the core; whether there was any.
fn report(
    map: &BpfHashMap<MapData, MapKey, MapValue>,
    switch: &mut Switch,
    now: Duration,
    i: &mut Installed,
    stats: &mut FastPathStats,
) -> bool {
    let Ok(v) = map.get(&i.key, 0) else {
        return false;
    };
    let traffic = FastTraffic {
        frames: v.frames.saturating_sub(i.seen.frames),
        bytes: v.bytes.saturating_sub(i.seen.bytes),
        packets: v.packets.saturating_sub(i.seen.packets),
        ip_bytes: v.ip_bytes.saturating_sub(i.seen.ip_bytes),
    };
    i.seen = v;
    if traffic.frames == 0 {
        return false;
    }
    stats.frames += traffic.frames;
    stats.bytes += traffic.bytes;
    switch.fast_traffic(now, &i.flow, traffic);
    true
}
