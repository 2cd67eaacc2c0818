//! Arbitrary virtio-net headers and frames: the header parser, software segmentation and
//! checksum completion, receive coalescing of the segments (alone, and two flows interleaved
//! through the switch in one batch), and the switch forwarding frames with offload metadata
//! from taps that take offloads to ports that do not. Nothing may panic; segments must carry
//! exactly the payload of the large segment with valid IPv4 header and TCP checksums; joined
//! frames each flow's payload in order; every frame sent to a port without offloads must fit
//! its MTU and carry no metadata. A router has gateways on both networks, so large segments
//! sent to a gateway are routed (whole to an offload tap, cut for a VM port, cut and
//! encapsulated for another host): every IPv4 frame from a gateway has a valid header. Router
//! 1 has an uplink whose edge this switch is: large segments to 198.51.100.0/24 are
//! source-NATed and cut for the trunk, each segment with a valid header from the uplink.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vinfra_switch::datapath::{
    AllowedAddress, ConfigCommand, Edge, Location, NetworkId, PortConfig, PortId, PortKind,
    PortPolicy, RouterId, Segment, StormControl, Switch, SwitchSettings, TxBatch,
};
use vinfra_switch::datapath::firewall::rules::Prefix;
use vinfra_switch::wire::gro;
use vinfra_switch::wire::gso::{self, Segmenter};
use vinfra_switch::wire::virtio_net::{self, Gso, GsoKind};
use vinfra_switch::wire::{self, ipv4, EtherType, MacAddr, Offload, VlanId, Vni};

const UPLINK: PortId = PortId(100);
/// A MAC at tap 1 (a static entry): segments to it from the VM port are joined.
const JOIN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
const TRUNK: PortId = PortId(101);
/// The gateway MACs of the overlay (10.0.0.254/24) and the VLAN network (10.0.1.254/24).
const GATEWAYS: [MacAddr; 2] = [
    MacAddr([0x02, 0x76, 0x72, 0, 0, 1]),
    MacAddr([0x02, 0x76, 0x72, 0, 0, 2]),
];
/// Router 1's uplink: its MAC and address.
const UPLINK_MAC: MacAddr = MacAddr([0x02, 0x76, 0x72, 0x01, 0, 1]);
const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Port, the largest frame it may send (without metadata), whether it takes offloads.
const PORTS: [(PortId, usize, bool); 6] = [
    (PortId(1), 1500 + 14, true),
    (PortId(2), 1500 + 14, true),
    (PortId(3), 1400 + 14, false),
    (PortId(4), 1500 + 14, true),
    (UPLINK, 1600 + 14, false),
    (TRUNK, 1500 + 18, false),
];

fn configured() -> Switch {
    let port = |id, kind, mtu| ConfigCommand::AddPort(PortConfig { id, kind, mtu });
    let overlay = NetworkId(1);
    let vlan = NetworkId(2);
    let mut switch = Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: overlay,
                segment: Segment::Overlay {
                    vni: Vni::new(5001).unwrap(),
                },
            },
            ConfigCommand::AddNetwork {
                id: vlan,
                segment: Segment::Vlan {
                    vid: VlanId::new(100).unwrap(),
                },
            },
            port(
                UPLINK,
                PortKind::VxlanUplink {
                    local_ip: Ipv4Addr::new(192, 0, 2, 1),
                    local_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
                },
                1600,
            ),
            port(TRUNK, PortKind::VlanTrunk, 1500),
            port(PortId(1), PortKind::Host { network: overlay }, 1500),
            port(PortId(2), PortKind::Host { network: overlay }, 1500),
            port(PortId(3), PortKind::Vm { network: overlay }, 1400),
            port(PortId(4), PortKind::Host { network: vlan }, 1500),
            ConfigCommand::SetFloodList {
                network: overlay,
                vteps: vec![Ipv4Addr::new(192, 0, 2, 2)],
            },
            ConfigCommand::AddMacEntry {
                network: overlay,
                mac: JOIN_MAC,
                location: Location::Port(PortId(1)),
            },
            // Tap 2 sends large segments from one MAC, any IPv4 source, and floods little.
            ConfigCommand::SetPortPolicy {
                port: PortId(2),
                policy: PortPolicy {
                    allowed: Some(vec![AllowedAddress {
                        mac: MacAddr([2, 0, 0, 0, 0, 0x11]),
                        ip: Ipv4Addr::UNSPECIFIED,
                        prefix_len: 0,
                    }]),
                    mac_limit: Some(2),
                    storm: Some(StormControl {
                        frames_per_sec: 100,
                        burst: 4,
                    }),
                },
            },
            ConfigCommand::SetUnderlayPeers(Some(vec![Ipv4Addr::new(192, 0, 2, 2)])),
            // Router 1 on both networks. Registered: 10.0.0.9 at tap 1 (offloads), 10.0.0.3
            // at the VM port, 10.0.0.8 on another host, 10.0.1.4 at tap 4 (offloads).
            ConfigCommand::AddRouter(RouterId(1)),
            ConfigCommand::SetRouterInterface {
                router: RouterId(1),
                network: overlay,
                addr: Ipv4Addr::new(10, 0, 0, 254),
                prefix_len: 24,
                mac: GATEWAYS[0],
                mtu: None,
            },
            ConfigCommand::SetRouterInterface {
                router: RouterId(1),
                network: vlan,
                addr: Ipv4Addr::new(10, 0, 1, 254),
                prefix_len: 24,
                mac: GATEWAYS[1],
                mtu: None,
            },
            ConfigCommand::AddMacEntry {
                network: overlay,
                mac: MacAddr([2, 0, 0, 0, 0, 0x13]),
                location: Location::Port(PortId(3)),
            },
            ConfigCommand::AddMacEntry {
                network: overlay,
                mac: MacAddr([2, 0, 0, 0, 0, 0x18]),
                location: Location::Vtep(Ipv4Addr::new(192, 0, 2, 2)),
            },
            ConfigCommand::AddMacEntry {
                network: vlan,
                mac: MacAddr([2, 0, 0, 0, 0, 0x14]),
                location: Location::Port(PortId(4)),
            },
            ConfigCommand::AddArpEntry {
                network: overlay,
                ip: Ipv4Addr::new(10, 0, 0, 9),
                mac: JOIN_MAC,
            },
            ConfigCommand::AddArpEntry {
                network: overlay,
                ip: Ipv4Addr::new(10, 0, 0, 3),
                mac: MacAddr([2, 0, 0, 0, 0, 0x13]),
            },
            ConfigCommand::AddArpEntry {
                network: overlay,
                ip: Ipv4Addr::new(10, 0, 0, 8),
                mac: MacAddr([2, 0, 0, 0, 0, 0x18]),
            },
            ConfigCommand::AddArpEntry {
                network: vlan,
                ip: Ipv4Addr::new(10, 0, 1, 4),
                mac: MacAddr([2, 0, 0, 0, 0, 0x14]),
            },
            // Router 1's uplink on VLAN 82, this switch its edge: 198.51.100.0/24 through
            // 203.0.113.254 (registered); large segments there are source-NATed and cut for
            // the trunk.
            ConfigCommand::AddNetwork {
                id: NetworkId(3),
                segment: Segment::Vlan {
                    vid: VlanId::new(82).unwrap(),
                },
            },
            ConfigCommand::SetRouterUplink {
                router: RouterId(1),
                network: NetworkId(3),
                addr: UPLINK_IP,
                prefix_len: 24,
                mac: UPLINK_MAC,
                edge: Edge::Local,
                transit_vni: 0xff_0001,
                mtu: None,
            },
            ConfigCommand::AddRoute {
                router: RouterId(1),
                prefix: Prefix {
                    addr: Ipv4Addr::new(198, 51, 100, 0),
                    len: 24,
                },
                via: Ipv4Addr::new(203, 0, 113, 254),
            },
            ConfigCommand::AddArpEntry {
                network: NetworkId(3),
                ip: Ipv4Addr::new(203, 0, 113, 254),
                mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
            },
        ],
    )
    .unwrap();
    for (id, _, offloads) in PORTS {
        if offloads {
            switch.set_port_offloads(id, true).unwrap();
        }
    }
    // The edge's gratuitous ARP, before any frame.
    assert_eq!(switch.announce(&mut TxBatch::new()), 1);
    switch
}

static STATE: Mutex<Option<(Switch, TxBatch, u64)>> = Mutex::new(None);

/// Internet checksum sum, computed plainly.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut acc: u64 = 0;
    for pair in bytes.chunks(2) {
        acc += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Cuts `l3` as a GSO frame of `kind` and checks the segments against the original; returns
/// the TCPv4 segments as Ethernet frames to [`JOIN_MAC`].
fn check_segmentation(l3: &[u8], kind: GsoKind, size: u16) -> Vec<Vec<u8>> {
    let ethertype = match kind {
        GsoKind::Tcpv4 => EtherType::IPV4,
        GsoKind::Tcpv6 => EtherType::IPV6,
    };
    let gso = Gso {
        kind,
        size,
        hdr_len: 0,
        ecn: false,
    };
    let Ok(s) = Segmenter::new(ethertype, l3, &gso) else {
        return Vec::new();
    };
    let (ip_len, ip_hdr) = match kind {
        GsoKind::Tcpv4 => (
            usize::from(u16::from_be_bytes([l3[2], l3[3]])),
            usize::from(l3[0] & 0xf) * 4,
        ),
        GsoKind::Tcpv6 => (40 + usize::from(u16::from_be_bytes([l3[4], l3[5]])), 40),
    };
    let tcp_hdr = usize::from(l3[ip_hdr + 12] >> 4) * 4;
    let headers = ip_hdr + tcp_hdr;
    let mut payload = Vec::new();
    let mut frames = Vec::new();
    for i in 0..s.count() {
        let mut seg = Vec::new();
        assert!(s.write(i, &mut seg));
        assert_eq!(seg.len(), s.segment_len(i));
        assert!(seg.len() <= s.max_segment_len());
        assert!(seg.len() - headers <= usize::from(size));
        let tcp_len = seg.len() - ip_hdr;
        let pseudo = match kind {
            GsoKind::Tcpv4 => {
                assert_eq!(ones_sum(&[&seg[..ip_hdr]]), 0xffff, "IPv4 header checksum");
                let mut p = seg[12..20].to_vec();
                p.extend_from_slice(&[0, 6]);
                p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
                p
            }
            GsoKind::Tcpv6 => {
                let mut p = seg[8..40].to_vec();
                p.extend_from_slice(&(tcp_len as u32).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, 6]);
                p
            }
        };
        assert_eq!(ones_sum(&[&pseudo, &seg[ip_hdr..]]), 0xffff, "TCP checksum");
        payload.extend_from_slice(&seg[headers..]);
        if kind == GsoKind::Tcpv4 {
            let mut frame = JOIN_MAC.0.to_vec();
            frame.extend_from_slice(&[2, 0, 0, 0, 0, 0x11, 8, 0]);
            frame.extend_from_slice(&seg);
            frames.push(frame);
        }
    }
    assert!(!s.write(s.count(), &mut Vec::new()));
    assert_eq!(payload, l3[headers..ip_len]);
    check_coalescing(&frames);
    frames
}

/// The TCP payload of a TCP/IPv4 Ethernet frame, by its headers' lengths.
fn tcp_payload(frame: &[u8]) -> &[u8] {
    let ip = &frame[14..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let ip_hdr = usize::from(ip[0] & 0xf) * 4;
    let tcp_hdr = usize::from(ip[ip_hdr + 12] >> 4) * 4;
    ip.get(ip_hdr + tcp_hdr..total).unwrap_or(&[])
}

/// The frame's TCP ports as one number, by its headers' lengths.
fn tcp_ports(frame: &[u8]) -> u32 {
    let ip_hdr = usize::from(frame[14] & 0xf) * 4;
    u32::from_be_bytes(frame[14 + ip_hdr..14 + ip_hdr + 4].try_into().unwrap())
}

/// The same segment in another flow: source port + 1, TCP checksum recomputed.
fn other_flow(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ip_hdr = usize::from(f[14] & 0xf) * 4;
    let tcp = 14 + ip_hdr;
    let port = u16::from_be_bytes([f[tcp], f[tcp + 1]]).wrapping_add(1);
    f[tcp..tcp + 2].copy_from_slice(&port.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([f[16], f[17]])).min(f.len() - 14);
    let tcp_len = total - ip_hdr;
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    f[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
    let sum = !ones_sum(&[&pseudo, &f[tcp..14 + total]]);
    f[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Segments of two flows, interleaved, from the VM port (MTU 1400) to tap 1 (offloads,
/// [`JOIN_MAC`]) in one batch: the switch joins them; tap 1 gets, per flow, the payload of
/// every segment that fit, in order, and every joined frame cuts into segments that fit.
fn check_switch_joins(switch: &mut Switch, tx: &mut TxBatch, now: Duration, frames: &[Vec<u8>]) {
    let batch: Vec<Vec<u8>> = frames
        .iter()
        .flat_map(|f| [f.clone(), other_flow(f)])
        .collect();
    tx.clear();
    switch.process(now, batch.iter().map(|f| (PortId(3), f.as_slice())), tx);
    let mut sent: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
    for f in batch.iter().filter(|f| f.len() <= 1400 + 14) {
        sent.entry(tcp_ports(f))
            .or_default()
            .extend_from_slice(tcp_payload(f));
    }
    let mut got: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
    for (out, bytes) in tx.iter() {
        assert_eq!(out.port, PortId(1), "only to the port of {JOIN_MAC:?}");
        if let Some(g) = out.offload.gso {
            let s = Segmenter::new(EtherType::IPV4, &bytes[14..], &g).expect("joined frames cut");
            assert!(s.max_segment_len() <= 1400, "segments as they came");
        }
        got.entry(tcp_ports(bytes))
            .or_default()
            .extend_from_slice(tcp_payload(bytes));
    }
    assert_eq!(got, sent, "each flow's payload, in order");
    tx.clear();
}

/// Joins segments as the switch does for an offload port: the joined frames carry the same
/// payload in order, each within 64 KiB, and cut back into valid segments.
fn check_coalescing(frames: &[Vec<u8>]) {
    let joined = gro::join_frames(frames.iter().map(Vec::as_slice));
    let payload = |f: &[u8]| gro::TcpSegment::parse(f).map(|s| f[s.headers_len()..].to_vec());
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for f in frames {
        before.extend(payload(f).unwrap_or_default());
    }
    for (frame, offload) in &joined {
        assert!(frame.len() <= 14 + 65_535);
        let Some(g) = offload.gso else {
            after.extend(payload(frame).unwrap_or_default());
            continue;
        };
        let headers = usize::from(g.hdr_len);
        after.extend_from_slice(&frame[headers..]);
        let cut = Segmenter::new(EtherType::IPV4, &frame[14..], &g).expect("joined frames cut");
        assert!(cut.count() >= 2);
        assert!(cut.max_segment_len() + 14 <= headers + usize::from(g.size));
    }
    assert_eq!(before, after, "the same payload, in order");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < virtio_net::HEADER_LEN + 2 {
        return;
    }
    let (header, rest) = data.split_at(virtio_net::HEADER_LEN);
    let (&selector, frame) = rest.split_first().unwrap();
    let parsed = Offload::parse(&virtio_net::Packet::new_checked(header).unwrap());
    if let Ok(o) = parsed {
        // What parses re-emits to a header that parses the same.
        let again = Offload::parse(&virtio_net::Packet::new_checked(&o.to_bytes()[..]).unwrap());
        assert_eq!(again, Ok(o));
    }
    // The segmenter and checksum completion on the frame's payload as an L3 packet.
    let size = u16::from_le_bytes([header[4], header[5]]);
    let l3 = frame.get(14..).unwrap_or(&[]);
    let mut segments = Vec::new();
    if size != 0 {
        segments = check_segmentation(l3, GsoKind::Tcpv4, size);
        check_segmentation(l3, GsoKind::Tcpv6, size);
    }
    let mut copy = l3.to_vec();
    let _ = gso::complete_checksum(&mut copy, usize::from(header[6]), usize::from(header[8]));
    let _ = gso::ip_packet_len(EtherType::IPV4, l3);
    let _ = gso::ip_packet_len(EtherType::IPV6, l3);

    // The frame through the switch, with the header's metadata, from any port.
    let offload = parsed.unwrap_or(Offload::NONE);
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let (switch, tx, clock) = guard.get_or_insert_with(|| (configured(), TxBatch::new(), 0));
    *clock += 1;
    if !segments.is_empty() {
        check_switch_joins(switch, tx, Duration::from_millis(*clock), &segments);
    }
    let (port, _, _) = PORTS[usize::from(selector) % PORTS.len()];
    tx.clear();
    switch.process_frame_offload(Duration::from_millis(*clock), port, frame, offload, tx);
    for (out, bytes) in tx.iter() {
        let &(_, max, offloads) = PORTS
            .iter()
            .find(|(p, _, _)| *p == out.port)
            .expect("sent to a real port");
        if !offloads {
            assert_eq!(out.offload, Offload::NONE, "metadata to {:?}", out.port);
        }
        if out.offload.gso.is_none() {
            assert!(
                bytes.len() <= max,
                "{} bytes to {:?}",
                bytes.len(),
                out.port
            );
        } else {
            // Passed through whole: its segments fit.
            let s = Segmenter::new(
                EtherType(u16::from_be_bytes([bytes[12], bytes[13]])),
                &bytes[14..],
                &out.offload.gso.unwrap(),
            )
            .expect("checked at ingress");
            assert!(s.max_segment_len() + 14 <= max);
        }
        let inner = if out.port == UPLINK {
            let d = wire::decapsulate(bytes).expect("the switch emits valid VXLAN");
            assert_eq!(Some(d.dst_ip), out.vtep);
            d.inner
        } else {
            bytes
        };
        // What the router routed or wrote (from a local port only the router sends from a
        // gateway MAC): a valid IPv4 header, TTL decrement and all, in the whole frame and in
        // each segment.
        let from_gateway = inner.len() >= 14
            && GATEWAYS.iter().any(|g| inner[6..12] == g.0)
            && port != UPLINK
            && port != TRUNK;
        let tagged = out.port == TRUNK;
        let l3 = inner.get(if tagged { 18 } else { 14 }..).unwrap_or(&[]);
        let ethertype = inner
            .get(if tagged { 16..18 } else { 12..14 })
            .unwrap_or(&[]);
        if from_gateway && ethertype == [0x08, 0x00] {
            let ip = ipv4::Packet::new_checked(l3).expect("valid IPv4");
            assert!(ip.verify_checksum(), "a routed header's checksum");
        }
        if inner.len() >= 14 && inner[6..12] == UPLINK_MAC.0 {
            // Source-NATed (or written by the edge): out of the trunk, a valid header from
            // the uplink's address, every segment.
            assert_eq!(out.port, TRUNK);
            assert_eq!(ethertype, [0x08, 0x00]);
            let ip = ipv4::Packet::new_checked(l3).expect("valid IPv4");
            assert!(ip.verify_checksum(), "a translated header's checksum");
            assert_eq!(ip.src_addr(), UPLINK_IP);
        }
    }
});
