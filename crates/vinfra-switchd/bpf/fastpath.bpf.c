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
//   to the switch unchanged.
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
};

// The flow's action and counters: keep in step with `MapValue` in src/sys/fast_map.rs.
struct fp_value {
    __u32 out_ifindex;
    __u32 flags;
    __u8 new_dst[6];
    __u8 new_src[6];
    __u16 max_ip_len;
    __u16 pad;
    __u64 frames;
    __u64 bytes;
    __u64 packets;
    __u64 ip_bytes;
    __u64 last_ns;
};

#define FP_ROUTED 1

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

static __attribute__((always_inline)) struct fp_value *
fast_flow(struct __sk_buff *skb, struct fp_key *key, struct fp_frame *f)
{
    __u8 h[42];

    if (skb->vlan_present)
        return 0;
    // Every frame looked up has at least 42 bytes: Ethernet, IPv4 and 8 of the transport's.
    if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)) < 0)
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
    __u32 sum = 0;
#pragma unroll
    for (int i = 14; i < 34; i += 2)
        sum += ((__u32)h[i] << 8) | h[i + 1];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    if (sum != 0xffff)
        return 0;
    __u32 ip_len = ((__u32)h[16] << 8) | h[17];
    if (ip_len > skb->len - 14)
        return 0;
    // The key's ports: TCP's and UDP's; an ICMP echo's identifier and its type and code.
    __u8 sport[2] = {h[34], h[35]};
    __u8 dport[2] = {h[36], h[37]};
    if (proto == 6) {
        __u8 t[2];
        if (bpf_skb_load_bytes(skb, 46, t, 2) < 0)
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
    struct fp_value *v = bpf_map_lookup_elem(&flows, key);
    if (!v)
        return 0;
    if (ip_len < 20 + l4len)
        return 0;
    // Only large TCP segments: the switch takes no other kind (UDP GSO is refused).
    if (skb->gso_size && proto != 6)
        return 0;
    f->ttl = h[22];
    f->proto = proto;
    f->headers = 20 + l4len;
    // The IP packet, or each segment of a large one, within the flow's limit. A large
    // segment from a tap may not have its segment count yet (the kernel works it out later).
    __u32 largest = skb->len - 14;
    f->segs = 1;
    if (skb->gso_size) {
        __u32 payload = skb->len - 14 - f->headers;
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

SEC("classifier")
int vinfra_fast(struct __sk_buff *skb)
{
    struct fp_key key;
    struct fp_frame f;
    struct fp_value *v = fast_flow(skb, &key, &f);
    if (!v)
        return TC_ACT_OK;
    if (v->flags & FP_ROUTED) {
        // TTL and protocol are one 16-bit word of the header, taken as it lies in memory.
        __u8 ttl = f.ttl - 1;
        __u8 was[2] = {f.ttl, f.proto};
        __u8 now[2] = {ttl, f.proto};
        __u16 from, to;
        __builtin_memcpy(&from, was, 2);
        __builtin_memcpy(&to, now, 2);
        // The socket filter hid the frame from the switch: a failure here drops it.
        if (bpf_l3_csum_replace(skb, 24, from, to, 2) < 0)
            return TC_ACT_SHOT;
        if (bpf_skb_store_bytes(skb, 22, &ttl, 1, 0) < 0)
            return TC_ACT_SHOT;
        if (bpf_skb_store_bytes(skb, 0, v->new_dst, 6, 0) < 0)
            return TC_ACT_SHOT;
        if (bpf_skb_store_bytes(skb, 6, v->new_src, 6, 0) < 0)
            return TC_ACT_SHOT;
    }
    __u64 segs = f.segs ? f.segs : 1;
    __sync_fetch_and_add(&v->frames, 1);
    __sync_fetch_and_add(&v->bytes, skb->len);
    __sync_fetch_and_add(&v->packets, segs);
    __sync_fetch_and_add(&v->ip_bytes, f.ip_len + (segs - 1) * f.headers);
    v->last_ns = bpf_ktime_get_ns();
    return bpf_redirect(v->out_ifindex, 0);
}

SEC("socket")
int vinfra_skip(struct __sk_buff *skb)
{
    struct fp_key key;
    struct fp_frame f;
    if (fast_flow(skb, &key, &f))
        return 0;
    return skb->len;
}

char _license[] SEC("license") = "Apache-2.0";
