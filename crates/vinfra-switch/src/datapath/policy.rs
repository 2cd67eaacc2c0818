//! Port policy: what a VM port may send (port security), how many source addresses it may
//! bring into the network and how much it may flood (storm control).
//!
//! The switch checks a frame from an access port against its port's policy right after
//! classification, before it learns the source or forwards anything: a refused frame changes
//! no table and is counted by reason on the port and its network.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::counters::DropReason;
use crate::wire::ipv4::{self, protocol};
use crate::wire::{arp, dhcp, udp, EtherType, MacAddr};

/// A source a port may send from: a MAC address and the IPv4 addresses (a prefix) that MAC may
/// use. A NIC's own MAC with its IPAM address is one (a `/32`); an allowed address pair (a
/// virtual IP moved by keepalived, say) another. `prefix_len` 0 allows every IPv4 source from
/// that MAC (a NIC on a network without IPAM).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AllowedAddress {
    /// A unicast MAC address.
    pub mac: MacAddr,
    /// The prefix's address (bits past `prefix_len` are ignored).
    pub ip: Ipv4Addr,
    /// The prefix's length, 0 to 32.
    pub prefix_len: u8,
}

impl AllowedAddress {
    /// Whether `ip` lies in the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let bits = u32::from(self.prefix_len.min(32));
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }
}

/// Storm control: a token bucket over the broadcast, multicast and unknown-unicast frames a
/// port sends into its network (frames the switch would flood).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StormControl {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Frames that may go at once after a quiet period (the bucket's depth), at least 1.
    pub burst: u32,
}

/// A port's policy. The default is open: no port security, no per-port MAC limit, no storm
/// control; the agent sets the policy of each VM port right after adding it (before its QEMU
/// starts), so port security is on for every VM NIC unless its owner turned it off.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PortPolicy {
    /// Port security. `Some`: the port sends only from these sources; a frame whose source MAC
    /// is not listed is dropped (`spoofed_mac`); an IPv4 packet whose source is not allowed
    /// for that MAC (`spoofed_ip`, DHCP client messages from 0.0.0.0 excepted), an ARP packet
    /// whose sender is not the frame's source MAC or not an allowed address of it (0.0.0.0 for
    /// a probe excepted: `spoofed_arp`), a DHCP server message (UDP from port 67:
    /// `dhcp_server`) and any other EtherType than IPv4, ARP and RARP (`ethertype_not_allowed`)
    /// are dropped. An empty list sends nothing. `None`: off.
    pub allowed: Option<Vec<AllowedAddress>>,
    /// Most learned MAC entries that may point at the port; a frame from a further source MAC
    /// is dropped (`port_mac_limit`). `None`: only the network's limit applies.
    pub mac_limit: Option<u32>,
    /// Storm control; flooded frames over the rate are dropped (`storm_control`). `None`: off.
    pub storm: Option<StormControl>,
}

/// Checks a frame from a port with port security on against its allowed sources: `src` is the
/// frame's source MAC, `payload` what follows its Ethernet header. The L3 headers were validated
/// by classification (IPv4 header and checksum, the UDP header of unfragmented UDP, ARP as
/// Ethernet/IPv4); anything else found malformed here is refused all the same.
#[inline]
pub(crate) fn check_source(
    allowed: &[AllowedAddress],
    src: MacAddr,
    ethertype: EtherType,
    payload: &[u8],
) -> Result<(), DropReason> {
    // Entries of other MACs never allow anything for this frame.
    let mut mine = allowed.iter().filter(|a| a.mac == src).peekable();
    if mine.peek().is_none() {
        return Err(DropReason::SpoofedMac);
    }
    match ethertype {
        EtherType::IPV4 => {
            let packet = ipv4::Packet::new_checked(payload).map_err(|_| DropReason::SpoofedIp)?;
            let src_ip = packet.src_addr();
            // The first fragment (or the whole datagram) has the UDP ports; a datagram too short
            // for them reads zeros.
            if packet.protocol() == protocol::UDP && packet.frag_offset() == 0 {
                let datagram = udp::Packet::new_unchecked(packet.payload());
                if datagram.src_port() == dhcp::SERVER_PORT {
                    return Err(DropReason::DhcpServer);
                }
                if src_ip.is_unspecified()
                    && !packet.is_fragment()
                    && datagram.dst_port() == dhcp::SERVER_PORT
                {
                    // A DHCP client that has no address yet.
                    return Ok(());
                }
            }
            if mine.any(|a| a.contains(src_ip)) {
                Ok(())
            } else {
                Err(DropReason::SpoofedIp)
            }
        }
        EtherType::ARP => {
            let packet = arp::Packet::new_checked(payload).map_err(|_| DropReason::SpoofedArp)?;
            let sender = packet.source_protocol_addr();
            if packet.source_hardware_addr() == src
                && (sender.is_unspecified() || mine.any(|a| a.contains(sender)))
            {
                Ok(())
            } else {
                Err(DropReason::SpoofedArp)
            }
        }
        EtherType::RARP => {
            // QEMU's announcement of a migrated VM: a RARP request for the VM's own MAC.
            let packet = arp::Packet::new_checked(payload).map_err(|_| DropReason::SpoofedArp)?;
            if packet.hardware_type() == arp::HTYPE_ETHERNET
                && packet.hardware_len() == 6
                && packet.source_hardware_addr() == src
            {
                Ok(())
            } else {
                Err(DropReason::SpoofedArp)
            }
        }
        _ => Err(DropReason::EthertypeNotAllowed),
    }
}

/// Nanoseconds in a second: a token is worth this many units of credit per frame per second.
const NANOS: u128 = 1_000_000_000;

/// A port's storm-control token bucket, in integer arithmetic: the credit is counted in
/// frame-nanoseconds per second, so a frame costs [`NANOS`] and `d` nanoseconds add
/// `d × frames_per_sec`; the bucket holds at most `burst` frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct StormBucket {
    limit: StormControl,
    /// Credit, at most `burst × NANOS`.
    credit: u128,
    /// When the credit was last refilled; `None` before the first frame (the bucket is full).
    last: Option<Duration>,
}

impl StormBucket {
    /// A full bucket.
    pub(crate) fn new(limit: StormControl) -> StormBucket {
        StormBucket {
            limit,
            credit: u128::from(limit.burst) * NANOS,
            last: None,
        }
    }

    /// Its rate and depth.
    pub(crate) fn limit(&self) -> StormControl {
        self.limit
    }

    /// Refills the bucket up to `now` and takes a token; false when there is none. Time that
    /// goes backwards refills nothing (and the bucket keeps the latest time it saw).
    #[inline]
    pub(crate) fn take(&mut self, now: Duration) -> bool {
        let depth = u128::from(self.limit.burst) * NANOS;
        if let Some(last) = self.last {
            let elapsed = now.saturating_sub(last).as_nanos();
            let refill = elapsed.saturating_mul(u128::from(self.limit.frames_per_sec));
            self.credit = self.credit.saturating_add(refill).min(depth);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        match self.credit.checked_sub(NANOS) {
            Some(rest) => {
                self.credit = rest;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn prefixes() {
        let a = |ip, prefix_len| AllowedAddress {
            mac: M1,
            ip,
            prefix_len,
        };
        let net = Ipv4Addr::new(10, 1, 2, 0);
        assert!(a(net, 24).contains(Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!a(net, 24).contains(Ipv4Addr::new(10, 1, 3, 1)));
        assert!(a(Ipv4Addr::new(10, 1, 2, 7), 32).contains(Ipv4Addr::new(10, 1, 2, 7)));
        assert!(!a(Ipv4Addr::new(10, 1, 2, 7), 32).contains(Ipv4Addr::new(10, 1, 2, 6)));
        assert!(a(Ipv4Addr::UNSPECIFIED, 0).contains(Ipv4Addr::new(203, 0, 113, 9)));
        // Bits past the prefix are ignored.
        assert!(a(Ipv4Addr::new(10, 1, 2, 99), 24).contains(Ipv4Addr::new(10, 1, 2, 1)));
    }

    #[test]
    fn storm_bucket_refills_at_its_rate_up_to_its_depth() {
        let mut b = StormBucket::new(StormControl {
            frames_per_sec: 10,
            burst: 3,
        });
        // A full bucket: the burst goes, then nothing.
        assert!((0..3).all(|_| b.take(ms(1000))));
        assert!(!b.take(ms(1000)));
        // 10 per second: one token every 100 ms.
        assert!(!b.take(ms(1099)));
        assert!(b.take(ms(1100)));
        assert!(!b.take(ms(1100)));
        // Time going backwards refills nothing and panics not.
        assert!(!b.take(ms(500)));
        assert!(!b.take(ms(1150)));
        assert!(b.take(ms(1200)));
        // A long quiet period fills the bucket to its depth only.
        assert!((0..3).all(|_| b.take(ms(100_000))));
        assert!(!b.take(ms(100_000)));
        // Extremes do not overflow.
        let mut b = StormBucket::new(StormControl {
            frames_per_sec: u32::MAX,
            burst: u32::MAX,
        });
        assert!(b.take(Duration::ZERO));
        assert!(b.take(Duration::MAX));
        assert!(b.take(Duration::ZERO));
    }
}
