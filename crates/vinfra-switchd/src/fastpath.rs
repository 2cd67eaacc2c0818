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
//!   devices). A port with QoS is not fast (its limits and classes are the daemon's). The
//!   VXLAN uplink: the underlay program on the ingress of the device holding its address
//!   (decapsulation of flows to local ports); flows out to another host are encapsulated by
//!   the port's program and sent from that device, only while the route to the remote VTEP
//!   leaves through it.
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
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::{SchedClassifier, SocketFilter};
use aya::Ebpf;
use vinfra_switch::datapath::{FastFlow, FastKey, FastTraffic, PortId, Switch};
use vinfra_switch::wire::encap::VXLAN_PORT;
use vinfra_switch_control::FastPathView;
use vinfra_types::error::chain;

use crate::sys::fast_map::{MapKey, MapValue, FLOW_ENCAP, FLOW_NO_LARGE, FLOW_ROUTED};
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
    /// The program on the device's ingress: [`PORT_PROGRAM`] or [`UNDERLAY_PROGRAM`].
    program: &'static str,
    /// The VXLAN uplink's address, on its underlay device.
    local: Option<Ipv4Addr>,
    /// A tap or a veth (no device behind it in `/sys`): it takes large segments the program
    /// decapsulated, tunnel offsets and all, which a NIC's driver might misread.
    virtual_device: bool,
    link: Option<SchedClassifierLinkId>,
}

/// The program on a fast access port's device.
const PORT_PROGRAM: &str = "vinfra_fast";

/// The program on the underlay device of the VXLAN uplink.
const UNDERLAY_PROGRAM: &str = "vinfra_underlay";

struct Installed {
    flow: FastFlow,
    key: MapKey,
    /// The map's counters when last read.
    seen: MapValue,
    /// Syncs in a row without a frame.
    idle: u32,
}

/// The fast path of one daemon.
pub struct KernelFastPath {
    ebpf: Ebpf,
    map: BpfHashMap<MapData, MapKey, MapValue>,
    ports: HashMap<u32, FastPort>,
    installed: HashMap<FastKey, Installed>,
    /// Whether the route to a remote VTEP goes out of the uplink's underlay device (the
    /// program sends encapsulated frames there), as last looked up; forgotten on every flush.
    vtep_routes: HashMap<Ipv4Addr, bool>,
    generation: u64,
    next_revalidation: Instant,
    stats: FastPathView,
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
        let underlay: &mut SchedClassifier = ebpf
            .program_mut(UNDERLAY_PROGRAM)
            .ok_or_else(|| load_error("no program vinfra_underlay"))?
            .try_into()
            .map_err(load_error)?;
        underlay.load().map_err(load_error)?;
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
            vtep_routes: HashMap::new(),
            generation: 0,
            next_revalidation: Instant::now() + REVALIDATE_EVERY,
            stats: FastPathView::default(),
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
        self.free(device)?;
        let skip: &mut SocketFilter = self
            .ebpf
            .program_mut("vinfra_skip")
            .ok_or_else(|| failed("no program vinfra_skip".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| failed(e.to_string()))?;
        skip.attach(socket).map_err(|e| failed(e.to_string()))?;
        self.attach_tc(id, device, PORT_PROGRAM)
    }

    /// Puts the underlay program on the ingress of the device that holds the VXLAN uplink's
    /// address `local_ip` (its UDP socket receives there), for uplink port `id`.
    fn attach_underlay(&mut self, id: u32, local_ip: Ipv4Addr) -> Result<(), FastPathError> {
        let device = underlay_device(local_ip).ok_or_else(|| FastPathError::Attach {
            device: local_ip.to_string(),
            reason: "no device holds the uplink's address".into(),
        })?;
        self.free(&device)?;
        self.attach_tc(id, &device, UNDERLAY_PROGRAM)?;
        if let Some(port) = self.ports.get_mut(&id) {
            port.local = Some(local_ip);
        }
        Ok(())
    }

    /// Refuses a device another port already has.
    fn free(&self, device: &str) -> Result<(), FastPathError> {
        match self.ports.iter().find(|(_, p)| p.device == device) {
            Some((other, _)) => Err(FastPathError::Attach {
                device: device.to_string(),
                reason: format!("already port {other}'s"),
            }),
            None => Ok(()),
        }
    }

    /// Attaches `program` to `device`'s ingress for port `id`.
    fn attach_tc(
        &mut self,
        id: u32,
        device: &str,
        program: &'static str,
    ) -> Result<(), FastPathError> {
        let failed = |reason: String| FastPathError::Attach {
            device: device.to_string(),
            reason,
        };
        let ifindex = nix::net::if_::if_nametoindex(device).map_err(|e| failed(e.to_string()))?;
        // Kernels before 6.6 attach through the clsact qdisc (TCX needs none), where a filter
        // outlives its process: one left by a switch that crashed (with its old map) goes.
        match tc::qdisc_add_clsact(device) {
            Ok(()) | Err(tc::TcError::AlreadyAttached) => {}
            Err(e) => tracing::debug!(device, "no clsact qdisc added: {e}"),
        }
        let _ = tc::qdisc_detach_program(device, TcAttachType::Ingress, program);
        let fast: &mut SchedClassifier = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| failed(format!("no program {program}")))?
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
                program,
                local: None,
                virtual_device: !std::path::Path::new("/sys/class/net")
                    .join(device)
                    .join("device")
                    .exists(),
                link: Some(link),
            },
        );
        Ok(())
    }

    /// Makes the VXLAN uplink `id` fast (its address `local_ip`), or not with `None`; tells
    /// the core. Without a device holding the address the uplink stays on the daemon.
    pub(crate) fn set_uplink(
        &mut self,
        switch: &mut Switch,
        now: Duration,
        id: u32,
        local_ip: Option<Ipv4Addr>,
    ) {
        match local_ip {
            Some(ip) if !self.has_port(id) => match self.attach_underlay(id, ip) {
                Ok(()) => switch.set_port_fast(PortId(id), true),
                Err(e) => tracing::warn!(port = id, "no fast path for the uplink: {}", chain(&e)),
            },
            Some(_) => {}
            None => {
                switch.set_port_fast(PortId(id), false);
                self.detach(switch, now, id);
            }
        }
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
            let program = self.ebpf.program_mut(port.program);
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
            let key = MapKey::new(from.ifindex, &flow.key);
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
            // Through the tunnel: only between the addresses the uplink has.
            if let Some(t) = flow.key.tunnel {
                if from.local != Some(t.local) {
                    continue;
                }
                value.local = t.local.octets();
                if !to.virtual_device {
                    value.flags |= FLOW_NO_LARGE;
                }
            }
            if let Some(e) = flow.encap {
                let remote = e.tunnel.remote;
                let through = *self
                    .vtep_routes
                    .entry(remote)
                    .or_insert_with(|| route_device(remote).as_deref() == Some(&to.device));
                if to.local != Some(e.tunnel.local) || !through {
                    continue;
                }
                value.flags |= FLOW_ENCAP;
                value.local = e.tunnel.local.octets();
                value.remote = e.tunnel.remote.octets();
                let [_, a, b, c] = e.tunnel.vni.to_be_bytes();
                value.vni = [a, b, c, 0];
                // The source port the switch's own packets of the flow leave with (its
                // socket's), so that all of them take one path through the underlay.
                value.sport = VXLAN_PORT.to_be_bytes();
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
        self.vtep_routes.clear();
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
    pub fn stats(&self) -> FastPathView {
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
            for program in [PORT_PROGRAM, UNDERLAY_PROGRAM] {
                if tc::qdisc_detach_program(name, TcAttachType::Ingress, program).is_ok() {
                    tracing::info!(device = name, "stale fast path filter taken away");
                }
            }
        }
    }
}

/// The device that holds `ip`, as the kernel lists its addresses.
fn underlay_device(ip: Ipv4Addr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    addrs
        .filter(|a| {
            a.address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .is_some_and(|sin| IpAddr::V4(sin.ip()) == IpAddr::V4(ip))
        })
        .map(|a| a.interface_name)
        .next()
}

/// The device of the main routing table's route to `ip` (the longest prefix, then the lowest
/// metric), as `/proc/net/route` lists them.
fn route_device(ip: Ipv4Addr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    route_device_in(&table, ip)
}

/// [`route_device`] in `table`, the text of `/proc/net/route`: a header line, then per route
/// the device, destination, gateway, flags, refcount, use, metric and mask, addresses as the
/// hexadecimal of their bytes read as a little-endian number.
fn route_device_in(table: &str, ip: Ipv4Addr) -> Option<String> {
    const RTF_UP: u32 = 1;
    let ip = u32::from_le_bytes(ip.octets());
    let hex = |f: &str| u32::from_str_radix(f, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (device, dst, flags) = (*f.first()?, hex(f.get(1)?)?, hex(f.get(3)?)?);
            let (metric, mask) = (f.get(6)?.parse::<u32>().ok()?, hex(f.get(7)?)?);
            (flags & RTF_UP != 0 && ip & mask == dst).then_some((
                mask.count_ones(),
                core::cmp::Reverse(metric),
                device,
            ))
        })
        .max_by_key(|(len, metric, _)| (*len, *metric))
        .map(|(_, _, device)| device.to_string())
}

/// Reads one flow's counters and hands what is new to the core; whether there was any.
fn report(
    map: &BpfHashMap<MapData, MapKey, MapValue>,
    switch: &mut Switch,
    now: Duration,
    i: &mut Installed,
    stats: &mut FastPathView,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_a_vtep_is_the_longest_prefix_then_the_lowest_metric() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth1\t0000000A\t00000000\t0001\t0\t0\t100\t0000FFFF\t0\t0\t0\n\
            eth2\t0000000A\t00000000\t0001\t0\t0\t50\t0000FFFF\t0\t0\t0\n\
            eth3\t0002000A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let at = |ip: [u8; 4]| route_device_in(table, Ipv4Addr::from(ip));
        assert_eq!(at([192, 0, 2, 7]).as_deref(), Some("eth0"));
        assert_eq!(
            at([198, 51, 100, 1]).as_deref(),
            Some("eth0"),
            "the default route"
        );
        assert_eq!(
            at([10, 0, 1, 1]).as_deref(),
            Some("eth2"),
            "the lower metric"
        );
        assert_eq!(
            at([10, 0, 2, 1]).as_deref(),
            Some("eth2"),
            "a route that is down"
        );
        assert_eq!(
            route_device_in("header\n", Ipv4Addr::new(10, 0, 0, 1)),
            None
        );
    }
}
