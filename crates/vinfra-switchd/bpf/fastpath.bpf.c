// SPDX-License-Identifier: Apache-2.0
//
// The switch's kernel fast path: flows the switch decided and handed to the kernel
// (`vinfra-switchd`'s `fastpath` module fills the map `flows`), forwarded from one local port
// to another without the daemon.
//
// - `vinfra_fast` (tc, direct action) runs where a port's frames enter the kernel on their way
//   to the switch: the ingress of a VM's tap or an interface port, the egress of a host tap. A
//   frame whose flow is in `flows` (and which fits its limits) is rewritten when routed (MACs,
//   TTL, IPv4 checksum), counted and redirected to the egress port; any other frame goes on
//   to the switch unchanged. A flow out on the VXLAN uplink is encapsulated here (outer IPv4,
//   UDP to port 4789, VXLAN; the outer Ethernet header written by the kernel's neighbour
//   table) and sent out of the underlay device; only its large TCP segments and ICMP echoes
//   go this way (see `FastFlow::encap` in the switch's core).
// - `vinfra_underlay` (tc, direct action) runs on the ingress of the underlay device that
//   holds the VXLAN uplink's address: a VXLAN packet to that address and port whose inner
//   frame's flow (with its VNI and sending VTEP) is in `flows` is decapsulated and redirected
//   to the egress port; anything else goes on to the switch's UDP socket.
// - `vinfra_skip` (socket filter) runs on the switch's AF_PACKET socket of such a port, which
//   sees a received frame before tc does: it hides the frames `vinfra_fast` takes, so that the
//   switch does not forward them a second time.
//
// Both decide with `fast_flow` alone. Only unicast, untagged IPv4 without options or
// fragments, TCP without SYN, FIN or RST, UDP, and ICMP echo requests and replies are looked
// up.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from,
                                   __u32 len, __u64 flags) = (void *)9;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 offset, __u64 from, __u64 to,
                                   __u64 size) = (void *)10;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) =
    (void *)26;
static long (*bpf_skb_adjust_room)(struct __sk_buff *skb, __s32 len_diff, __u32 mode,
                                   __u64 flags) = (void *)50;
static long (*bpf_redirect_neigh)(__u32 ifindex, struct bpf_redir_neigh *params, int plen,
                                  __u64 flags) = (void *)152;

// Bytes VXLAN puts in front of the inner frame after the outer Ethernet header: IPv4 20,
// UDP 8, VXLAN 8, the inner Ethernet header 14.
#define VXLAN_ROOM 50

// The flow's match: keep in step with `MapKey` in src/sys/fast_map.rs.
struct fp_key {
    __u32 ifindex;
    __u8 dst[6];
    __u8 src[6];
    __u32 saddr;
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 pad[3];
    __u32 vni;  // from the uplink: the VNI (host order), else 0
    __u32 vtep; // from the uplink: the sending VTEP (network order), else 0
};

// The flow's action and counters: keep in step with `MapValue` in src/sys/fast_map.rs.
struct fp_value {
    __u32 out_ifindex;
    __u32 flags;
    __u8 new_dst[6];
    __u8 new_src[6];
    __u16 max_ip_len;
    __u16 pad;
    __u32 local;    // the VXLAN uplink's address (network order): the outer source, or the
                    // destination a decapsulated packet must have had
    __u32 remote;   // encapsulated: the outer destination (network order)
    __u8 vni[4];    // encapsulated: the VXLAN header's VNI and reserved bytes
    __u16 sport;    // encapsulated: the outer UDP source port (network order)
    __u16 pad2;
    __u64 frames;
    __u64 bytes;
    __u64 packets;
    __u64 ip_bytes;
    __u64 last_ns;
};

#define FP_ROUTED 1
#define FP_ENCAP 2
#define FP_NO_LARGE 4 // the egress device takes no large segment decapsulated here

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct fp_key);
    __type(value, struct fp_value);
} flows SEC(".maps");

// What the headers say beyond the key.
struct fp_frame {
    __u8 ttl;
    __u8 proto;
    __u32 ip_len;
    __u32 headers; // IP and transport header bytes of each segment
    __u32 segs;    // IP packets the frame carries (a large segment: its segments)
};

// The ones' complement sum of the 20-byte IPv4 header at `h + 14`, folded to 16 bits: 0xffff
// for a header whose checksum is right.
static __attribute__((always_inline)) __u32 ipv4_header_sum(const __u8 *h)
{
    __u32 sum = 0;
#pragma unroll
    for (int i = 14; i < 34; i += 2)
        sum += ((__u32)h[i] << 8) | h[i + 1];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

// The flow of the frame at `off` in the packet (0, or past the encapsulation of one from the
// uplink, with its `vni` and sending `vtep`), if it is in `flows` and the frame fits it.
static __attribute__((always_inline)) struct fp_value *
fast_flow(struct __sk_buff *skb, struct fp_key *key, struct fp_frame *f, __u32 off, __u32 vni,
          __u32 vtep)
{
    __u8 h[42];

    if (skb->vlan_present)
        return 0;
    // Every frame looked up has at least 42 bytes: Ethernet, IPv4 and 8 of the transport's.
    if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
        return 0;
    // Unicast, IPv4, version 4 with a 20-byte header, no fragment.
    if ((h[0] & 1) || h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45)
        return 0;
    if ((h[20] & 0x3f) || h[21])
        return 0;
    __u8 proto = h[23];
    __u32 l4len;
    // What the switch checks of every IPv4 packet: the header checksum, and a total length
    // within the frame.
    if (ipv4_header_sum(h) != 0xffff)
        return 0;
    __u32 frame_len = skb->len - off;
    __u32 ip_len = ((__u32)h[16] << 8) | h[17];
    if (ip_len > frame_len - 14)
        return 0;
    // The key's ports: TCP's and UDP's; an ICMP echo's identifier and its type and code.
    __u8 sport[2] = {h[34], h[35]};
    __u8 dport[2] = {h[36], h[37]};
    if (proto == 6) {
        __u8 t[2];
        if (bpf_skb_load_bytes(skb, off + 46, t, 2) < 0)
            return 0;
        if (t[1] & 0x07)
            return 0;
        l4len = (t[0] >> 4) * 4;
    } else if (proto == 17) {
        l4len = 8;
        // The datagram's length within the packet's.
        if ((((__u32)h[38] << 8) | h[39]) > ip_len - 20)
            return 0;
    } else if (proto == 1 && (h[34] == 8 || h[34] == 0) && h[35] == 0) {
        l4len = 8;
        sport[0] = h[38];
        sport[1] = h[39];
        dport[0] = h[34];
        dport[1] = h[35];
    } else {
        return 0;
    }
    key->ifindex = skb->ifindex;
    __builtin_memcpy(key->dst, &h[0], 6);
    __builtin_memcpy(key->src, &h[6], 6);
    __builtin_memcpy(&key->saddr, &h[26], 4);
    __builtin_memcpy(&key->daddr, &h[30], 4);
    __builtin_memcpy(&key->sport, sport, 2);
    __builtin_memcpy(&key->dport, dport, 2);
    key->proto = proto;
    key->pad[0] = key->pad[1] = key->pad[2] = 0;
    key->vni = vni;
    key->vtep = vtep;
    struct fp_value *v = bpf_map_lookup_elem(&flows, key);
    if (!v)
        return 0;
    if (ip_len < 20 + l4len)
        return 0;
    // Only large TCP segments: the switch takes no other kind (UDP GSO is refused).
    if (skb->gso_size && proto != 6)
        return 0;
    // Out on the uplink, only large segments and ICMP echoes (see `FastFlow::encap`), whose
    // outer lengths fit their 16 bits.
    if ((v->flags & FP_ENCAP) && ((!skb->gso_size && proto != 1) || frame_len > 0xffff - 36))
        return 0;
    if ((v->flags & FP_NO_LARGE) && skb->gso_size)
        return 0;
    f->ttl = h[22];
    f->proto = proto;
    f->headers = 20 + l4len;
    // The IP packet, or each segment of a large one, within the flow's limit. A large
    // segment from a tap may not have its segment count yet (the kernel works it out later).
    __u32 largest = frame_len - 14;
    f->segs = 1;
    if (skb->gso_size) {
        __u32 payload = frame_len - 14 - f->headers;
        largest = skb->gso_size + f->headers;
        f->segs = skb->gso_segs ? skb->gso_segs : (payload + skb->gso_size - 1) / skb->gso_size;
    }
    if (largest > v->max_ip_len)
        return 0;
    if ((v->flags & FP_ROUTED) && f->ttl <= 1)
        return 0;
    f->ip_len = ip_len;
    return v;
}

// Routed: the new MACs, one TTL less and the IPv4 checksum to match. Fails only when the
// packet cannot be written.
static __attribute__((always_inline)) int route(struct __sk_buff *skb, struct fp_value *v,
                                                struct fp_frame *f)
{
    // TTL and protocol are one 16-bit word of the header, taken as it lies in memory.
    __u8 ttl = f->ttl - 1;
    __u8 was[2] = {f->ttl, f->proto};
    __u8 now[2] = {ttl, f->proto};
    __u16 from, to;
    __builtin_memcpy(&from, was, 2);
    __builtin_memcpy(&to, now, 2);
    if (bpf_l3_csum_replace(skb, 24, from, to, 2) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, 22, &ttl, 1, 0) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, 0, v->new_dst, 6, 0) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, 6, v->new_src, 6, 0) < 0)
        return -1;
    return 0;
}

// Counts the frame of `len` bytes (as it enters or leaves the access port).
static __attribute__((always_inline)) void count(struct fp_value *v, struct fp_frame *f,
                                                 __u32 len)
{
    __u64 segs = f->segs ? f->segs : 1;
    __sync_fetch_and_add(&v->frames, 1);
    __sync_fetch_and_add(&v->bytes, len);
    __sync_fetch_and_add(&v->packets, segs);
    __sync_fetch_and_add(&v->ip_bytes, f->ip_len + (segs - 1) * f->headers);
    v->last_ns = bpf_ktime_get_ns();
}

// Puts the frame in VXLAN for `v`'s remote VTEP: room for the outer headers after the
// Ethernet header (a large segment stays one, its segments of the same size, to be cut with
// their outer headers by the kernel or the device), then the outer IPv4, UDP and VXLAN headers
// and the frame's own Ethernet header behind them. The outer headers are those the switch's
// UDP socket sends: DF, TOS 0, TTL 64, the flow's source port (the socket's); the outer UDP
// checksum is zero (RFC 7348).
static __attribute__((always_inline)) int encapsulate(struct __sk_buff *skb, struct fp_value *v,
                                                      struct fp_frame *f)
{
    __u8 h[64];
    if (bpf_skb_load_bytes(skb, 0, &h[VXLAN_ROOM], 14) < 0)
        return -1;
    __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
                  BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
                  BPF_F_ADJ_ROOM_ENCAP_L2(14);
    if (bpf_skb_adjust_room(skb, VXLAN_ROOM, BPF_ADJ_ROOM_MAC, flags) < 0)
        return -1;
    __u32 len = skb->len;
    __u32 ip_len = len - 14;
    __u32 udp_len = len - 34;
    __builtin_memset(h, 0, VXLAN_ROOM);
    h[12] = 0x08;
    h[14] = 0x45;
    h[16] = ip_len >> 8;
    h[17] = ip_len;
    h[20] = 0x40;
    h[22] = 64;
    h[23] = 17;
    __builtin_memcpy(&h[26], &v->local, 4);
    __builtin_memcpy(&h[30], &v->remote, 4);
    __u32 sum = ~ipv4_header_sum(h);
    h[24] = sum >> 8;
    h[25] = sum;
    __builtin_memcpy(&h[34], &v->sport, 2);
    h[36] = 4789 >> 8;
    h[37] = 4789 & 0xff;
    h[38] = udp_len >> 8;
    h[39] = udp_len;
    h[42] = 0x08;
    __builtin_memcpy(&h[46], v->vni, 4);
    if (bpf_skb_store_bytes(skb, 0, h, sizeof(h), 0) < 0)
        return -1;
    return 0;
}

SEC("classifier")
int vinfra_fast(struct __sk_buff *skb)
{
    struct fp_key key;
    struct fp_frame f;
    struct fp_value *v = fast_flow(skb, &key, &f, 0, 0, 0);
    if (!v)
        return TC_ACT_OK;
    // The socket filter hid the frame from the switch: a failure from here on drops it.
    __u32 len = skb->len;
    if (v->flags & FP_ENCAP) {
        if (encapsulate(skb, v, &f) < 0)
            return TC_ACT_SHOT;
        count(v, &f, len);
        return bpf_redirect_neigh(v->out_ifindex, 0, 0, 0);
    }
    if ((v->flags & FP_ROUTED) && route(skb, v, &f) < 0)
        return TC_ACT_SHOT;
    count(v, &f, len);
    return bpf_redirect(v->out_ifindex, 0);
}

SEC("classifier")
int vinfra_underlay(struct __sk_buff *skb)
{
    __u8 h[VXLAN_ROOM];
    // What it does not take goes on to the device's next program or filter (the device is
    // the host's, shared): TC_ACT_UNSPEC.
    if (skb->vlan_present || skb->pkt_type != 0) // PACKET_HOST
        return TC_ACT_UNSPEC;
    if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)) < 0)
        return TC_ACT_UNSPEC;
    // IPv4 with a 20-byte header, not a fragment, UDP to port 4789, lengths that fill the
    // packet exactly (the decapsulated frame is the rest of it), VXLAN's I flag.
    if (h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 || h[23] != 17)
        return TC_ACT_UNSPEC;
    if ((h[20] & 0x3f) || h[21] || h[36] != (4789 >> 8) || h[37] != (4789 & 0xff))
        return TC_ACT_UNSPEC;
    if (!(h[42] & 0x08))
        return TC_ACT_UNSPEC;
    __u32 ip_len = ((__u32)h[16] << 8) | h[17];
    __u32 udp_len = ((__u32)h[38] << 8) | h[39];
    if (ip_len != skb->len - 14 || udp_len != skb->len - 34)
        return TC_ACT_UNSPEC;
    if (ipv4_header_sum(h) != 0xffff)
        return TC_ACT_UNSPEC;
    __u32 vni = ((__u32)h[46] << 16) | ((__u32)h[47] << 8) | h[48];
    __u32 vtep, daddr;
    __builtin_memcpy(&vtep, &h[26], 4);
    __builtin_memcpy(&daddr, &h[30], 4);
    struct fp_key key;
    struct fp_frame f;
    struct fp_value *v = fast_flow(skb, &key, &f, VXLAN_ROOM, vni, vtep);
    // The inner packet fills the rest: one frame, or one large segment (not a train of
    // datagrams sent as one, whose first inner packet is a fraction of it).
    if (!v || v->local != daddr || f.ip_len != skb->len - VXLAN_ROOM - 14)
        return TC_ACT_UNSPEC;
    __u8 macs[12];
    if (bpf_skb_load_bytes(skb, VXLAN_ROOM, macs, sizeof(macs)) < 0)
        return TC_ACT_UNSPEC;
    // The outer headers and the inner Ethernet header go; the outer Ethernet header stays,
    // with the inner one's addresses. A large segment keeps its segment size.
    if (bpf_skb_adjust_room(skb, -VXLAN_ROOM, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
        return TC_ACT_UNSPEC;
    if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0) < 0)
        return TC_ACT_SHOT;
    if ((v->flags & FP_ROUTED) && route(skb, v, &f) < 0)
        return TC_ACT_SHOT;
    count(v, &f, skb->len);
    return bpf_redirect(v->out_ifindex, 0);
}

SEC("socket")
int vinfra_skip(struct __sk_buff *skb)
{
    struct fp_key key;
    struct fp_frame f;
    if (fast_flow(skb, &key, &f, 0, 0, 0))
        return 0;
    return skb->len;
}

char _license[] SEC("license") = "Apache-2.0";
