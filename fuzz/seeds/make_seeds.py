#!/usr/bin/env python3
"""Writes the seed inputs of the `classify` fuzz target (valid frames for each port kind) and
of the `segment` target (a virtio-net header, a port selector and a large TCP segment).

The first byte of an input selects the ingress port (see PORTS in fuzz_targets/classify.rs):
0 VM port on the overlay, 2 VM port on VLAN 100, 3 VXLAN uplink, 4 VLAN trunk. Router 1 has
gateways 10.0.0.254 (MAC 02:76:72:00:00:01) on the overlay and 10.0.1.254 (02:76:72:00:00:02)
on VLAN 100.
"""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "classify")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(b):
    return bytes([0x52, 0x54, 0, 0, 0, b])


def ipv4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def eth(dst, src, ethertype, payload, vid=None):
    tag = struct.pack("!HH", 0x8100, vid) if vid is not None else b""
    return dst + src + tag + struct.pack("!H", ethertype) + payload


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + bytes(spa) + tha + bytes(tpa)


def udp(sport, dport, payload):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def vxlan(vni, inner):
    return struct.pack("!B3sI", 0x08, b"\0\0\0", vni << 8) + inner


BCAST = b"\xff" * 6
ip1, ip2, ip9 = [10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 9]
req = eth(BCAST, mac(1), 0x0806, arp(1, mac(1), ip1, b"\0" * 6, ip9))
ping = eth(mac(9), mac(1), 0x0800, ipv4(ip1, ip9, 1, b"\x08\0\0\0" + bytes(32)))
dgram = eth(mac(2), mac(1), 0x0800, ipv4(ip1, ip2, 17, udp(5000, 6000, b"hello")))
outer = lambda inner, vni=5001: eth(  # noqa: E731
    bytes([2, 0, 0, 0, 0, 1]), bytes([2, 0, 0, 0, 0, 2]), 0x0800,
    ipv4([192, 0, 2, 2], [192, 0, 2, 1], 17, udp(50000, 4789, vxlan(vni, inner))))


GW1, GW2 = bytes([2, 0x76, 0x72, 0, 0, 1]), bytes([2, 0x76, 0x72, 0, 0, 2])
gw_ip1, gw_ip2 = [10, 0, 0, 254], [10, 0, 1, 254]


def echo(ident):
    m = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"ping"
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def with_ttl(packet, ttl):
    p = packet[:8] + bytes([ttl]) + packet[9:10] + b"\0\0" + packet[12:]
    return p[:10] + struct.pack("!H", csum(p[:20])) + p[12:]


UPLINK_MAC, UPLINK_IP = bytes([2, 0x76, 0x72, 1, 0, 1]), [203, 0, 113, 2]


def icmp_error(quoted):
    m = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def dhcp(msg_type, client, requested=None):
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s192s4s", 1, 1, 6, 0, 0x01020304, 0, 0x8000,
                        bytes(4), bytes(4), bytes(4), bytes(4), client + bytes(10), bytes(192),
                        bytes([99, 130, 83, 99]))
    opts = bytes([53, 1, msg_type])
    if requested is not None:
        opts += bytes([50, 4]) + bytes(requested)
    return fixed + opts + b"\xff"


def dhcp_frame(msg):
    return eth(BCAST, mac(1), 0x0800, ipv4([0, 0, 0, 0], [255, 255, 255, 255], 17, udp(68, 67, msg)))


seeds = {
    "vm_arp_request": b"\0" + req,
    "vm_ping": b"\0" + ping,
    "vm_udp": b"\0" + dgram,
    "vm_dhcp_discover": b"\0" + dhcp_frame(dhcp(1, mac(1))),
    "vm_dhcp_request": b"\0" + dhcp_frame(dhcp(3, mac(1), ip1)),
    "vlan_vm_dhcp_discover": b"\2" + eth(BCAST, mac(3), 0x0800, ipv4([0, 0, 0, 0], [255, 255, 255, 255], 17, udp(68, 67, dhcp(1, mac(3))))),
    "vlan_vm_arp": b"\2" + eth(BCAST, mac(3), 0x0806, arp(1, mac(3), [10, 0, 0, 4], b"\0" * 6, [10, 0, 0, 3])),
    "uplink_arp": b"\3" + outer(eth(BCAST, mac(8), 0x0806, arp(1, mac(8), [10, 0, 0, 8], b"\0" * 6, ip1))),
    "uplink_udp": b"\3" + outer(eth(mac(1), mac(8), 0x0800, ipv4([10, 0, 0, 8], ip1, 17, udp(1, 2, b"x")))),
    "uplink_unknown_vni": b"\3" + outer(ping, vni=77),
    "trunk_arp": b"\4" + eth(BCAST, mac(50), 0x0806, arp(1, mac(50), [10, 0, 0, 50], b"\0" * 6, [10, 0, 0, 3]), vid=100),
    "trunk_ping": b"\4" + eth(mac(3), mac(50), 0x0800, ipv4([10, 0, 0, 50], [10, 0, 0, 3], 1, bytes(40)), vid=100),
    # Routing: to the gateway's MAC from the VM ports; ARP and ping for the gateway; TTL 1; a
    # destination the router must ask for; from the trunk and the uplink (not routed there;
    # an ARP reply to the gateway is learned if the router asked).
    "vm_routed_udp": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [10, 0, 1, 3], 17, udp(5000, 6000, b"routed"))),
    "vm_routed_default": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [198, 51, 100, 1], 17, udp(1, 2, b"far"))),
    "vm_routed_remote": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [192, 0, 2, 77], 6, bytes(20))),
    "vm_routed_ttl1": b"\0" + eth(GW1, mac(1), 0x0800, with_ttl(ipv4(ip1, [10, 0, 1, 3], 17, udp(1, 2, b"x")), 1)),
    "vm_ping_gateway": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, gw_ip1, 1, echo(7))),
    "vm_arp_gateway": b"\0" + eth(BCAST, mac(1), 0x0806, arp(1, mac(1), ip1, b"\0" * 6, gw_ip1)),
    "vlan_vm_routed": b"\2" + eth(GW2, mac(3), 0x0800, ipv4([10, 0, 1, 3], ip9, 17, udp(7, 8, b"to 9"))),
    "vlan_vm_ping_gateway": b"\2" + eth(GW2, mac(3), 0x0800, ipv4([10, 0, 1, 3], gw_ip1, 1, echo(9))),
    "trunk_arp_reply_gateway": b"\4" + eth(GW2, mac(50), 0x0806, arp(2, mac(50), [10, 0, 1, 9], GW2, gw_ip2), vid=100),
    "trunk_to_gateway": b"\4" + eth(GW2, mac(50), 0x0800, ipv4([10, 0, 1, 50], ip1, 17, udp(1, 2, b"x")), vid=100),
    "uplink_to_gateway": b"\3" + outer(eth(GW1, mac(8), 0x0800, ipv4([10, 0, 0, 8], [10, 0, 1, 3], 17, udp(1, 2, b"x")))),
    # North-south: router 1's uplink 203.0.113.2 (MAC 02:76:72:01:00:01) on VLAN 82, this
    # switch its edge; 198.51.100.0/24 through it; floating IP 203.0.113.50 for 10.0.0.5.
    "nat_vm_udp": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [198, 51, 100, 1], 17, udp(5000, 53, b"query"))),
    "nat_vm_ping": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [198, 51, 100, 1], 1, echo(7))),
    "nat_vm_tcp": b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [198, 51, 100, 1], 6, struct.pack("!HHIIBBHHH", 40000, 443, 1, 0, 5 << 4, 2, 512, 0, 0))),
    "nat_trunk_reply": b"\4" + eth(UPLINK_MAC, mac(0xfe), 0x0800, ipv4([198, 51, 100, 1], UPLINK_IP, 17, udp(53, 5000, b"answer")), vid=82),
    "nat_trunk_ping_uplink": b"\4" + eth(UPLINK_MAC, mac(0xfe), 0x0800, ipv4([198, 51, 100, 1], UPLINK_IP, 1, echo(3)), vid=82),
    "nat_trunk_floating": b"\4" + eth(UPLINK_MAC, mac(0xfe), 0x0800, ipv4([198, 51, 100, 1], [203, 0, 113, 50], 17, udp(53, 80, b"in")), vid=82),
    "nat_trunk_arp_uplink": b"\4" + eth(BCAST, mac(0xfe), 0x0806, arp(1, mac(0xfe), [203, 0, 113, 254], b"\0" * 6, UPLINK_IP), vid=82),
    "nat_trunk_icmp_error": b"\4" + eth(UPLINK_MAC, mac(0xfe), 0x0800, ipv4([198, 51, 100, 1], UPLINK_IP, 1, icmp_error(ipv4(UPLINK_IP, [198, 51, 100, 1], 17, udp(5000, 53, b"query")))), vid=82),
    "nat_transit": b"\3" + outer(eth(GW1, mac(8), 0x0800, ipv4([10, 0, 0, 8], [198, 51, 100, 1], 17, udp(6000, 53, b"x"))), vni=0xFF0001),
}
os.makedirs(HERE, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


# segment: virtio-net header (10 bytes, little-endian), port selector, frame.
SEGMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "segment")


def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def tcp(payload, flags=0x18):
    return struct.pack("!HHIIBBHHH", 40000, 5201, 1000, 1, 8 << 4, flags, 512, 0, 0) + \
        bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) + payload


def ipv6_tcp(payload):
    t = tcp(payload)
    return struct.pack("!IHBB", 6 << 28, len(t), 6, 64) + bytes([0xfd] + [0] * 14 + [1]) + \
        bytes([0xfd] + [0] * 14 + [2]) + t


body = bytes(i * 7 % 251 for i in range(6000))
v4 = eth(mac(9), mac(1), 0x0800, ipv4(ip1, ip9, 6, tcp(body)))
v6 = eth(mac(9), mac(1), 0x86DD, ipv6_tcp(body))
segment_seeds = {
    "tcp4_gso": vnet(1, 1, 66, 1300, 34, 16) + b"\0" + v4,
    "tcp4_gso_mss1448": vnet(1, 1, 66, 1448, 34, 16) + b"\2" + v4,
    "tcp6_gso": vnet(1, 4, 86, 1280, 54, 16) + b"\0" + v6,
    "tcp4_csum": vnet(1, 0, 0, 0, 34, 16) + b"\0" + eth(mac(9), mac(1), 0x0800, ipv4(ip1, ip9, 6, tcp(body[:1000]))),
    "udp_csum": vnet(1, 0, 0, 0, 34, 6) + b"\3" + dgram,
    "vlan_tcp4_gso": vnet(1, 1, 66, 1400, 34, 16) + b"\3" + v4,
    # Routed: from tap 1 to the overlay's gateway, on to tap 4 (VLAN, offloads), the VM port,
    # another host.
    "routed_tcp4_gso_tap": vnet(1, 1, 66, 1400, 34, 16) + b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [10, 0, 1, 4], 6, tcp(body))),
    "routed_tcp4_gso_vm": vnet(1, 1, 66, 1300, 34, 16) + b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [10, 0, 0, 3], 6, tcp(body))),
    "routed_tcp4_gso_vtep": vnet(1, 1, 66, 1400, 34, 16) + b"\1" + eth(GW1, bytes([2, 0, 0, 0, 0, 0x11]), 0x0800, ipv4(ip1, [10, 0, 0, 8], 6, tcp(body))),
    # Source-NATed on the edge (router 1's uplink on VLAN 82) and cut for the trunk.
    "nat_tcp4_gso_trunk": vnet(1, 1, 66, 1400, 34, 16) + b"\0" + eth(GW1, mac(1), 0x0800, ipv4(ip1, [198, 51, 100, 1], 6, tcp(body))),
}
os.makedirs(SEGMENT, exist_ok=True)
for name, data in segment_seeds.items():
    with open(os.path.join(SEGMENT, name), "wb") as f:
        f.write(data)
