//! Networks and ports: what a port is attached to, its addresses, DHCP, policy and QoS.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::mac::Mac;

/// A network's kind: `{"overlay":{"vni":5001}}` or `{"vlan":{"vid":100}}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum NetworkSpec {
    /// A VXLAN overlay.
    Overlay {
        /// VXLAN network identifier, 0 to 2^24 - 1.
        vni: u32,
    },
    /// A VLAN on the trunk.
    Vlan {
        /// VLAN ID, 1 to 4094.
        vid: u16,
    },
}

/// What a port is attached to and how the daemon reaches it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attachment {
    /// A VM's vNIC through QEMU's `-netdev dgram` over Unix sockets: the switch binds `socket`
    /// (QEMU's `remote.path`) and sends to `peer` (QEMU's `local.path`).
    Vm {
        /// The network.
        network: u32,
        /// The switch's socket path.
        socket: PathBuf,
        /// QEMU's socket path.
        peer: PathBuf,
        /// The user QEMU runs as: the switch's socket is made its (mode 0600), so that QEMU
        /// may send to it. `None`: root's, mode as bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<u32>,
    },
    /// A VM's vNIC through a tap that QEMU opens by name (`-netdev tap,ifname=…`, virtio-net
    /// headers, so the guest's checksum and TCP segmentation offloads reach the switch and back).
    /// The switch creates the tap (persistent) unless it exists, keeps it out of the host's own
    /// stack and reads and writes its frames through an AF_PACKET socket; it deletes the tap
    /// when the port goes, once QEMU has let go of it.
    VmTap {
        /// The network.
        network: u32,
        /// Interface name (1 to 15 bytes).
        tap: String,
        /// The user QEMU runs as: the tap is made its (`TUNSETOWNER`), so that QEMU may open
        /// it without privileges. `None`: only a privileged process may.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<u32>,
    },
    /// An 802.1Q sub-interface of a VM's vNIC: the frames tagged `vid` (1 to 4094) on VM port
    /// `parent`, in network `network`. No socket of its own: its frames travel through the
    /// parent's, tagged. Removed with the parent.
    VmVlan {
        /// The network.
        network: u32,
        /// The vNIC's port.
        parent: u32,
        /// The tag.
        vid: u16,
    },
    /// An existing interface of the switch's network namespace as an access port: a veth
    /// whose peer is in a container's namespace, say. Read and written like a VM's tap
    /// (an AF_PACKET socket with virtio-net headers, so offloads cross), kept out of the
    /// host's own stack the same way; never created nor deleted by the switch. The kernel
    /// fast path takes it as it takes a VM's tap.
    Interface {
        /// The network.
        network: u32,
        /// Interface name (1 to 15 bytes); not a tap, a bridge or loopback.
        interface: String,
    },
    /// A tap interface the switch creates (or opens) in its network namespace.
    Host {
        /// The network.
        network: u32,
        /// Interface name.
        tap: String,
    },
    /// The VXLAN uplink: a UDP socket on `local_ip`:4789.
    VxlanUplink {
        /// This host's underlay (VTEP) address.
        local_ip: Ipv4Addr,
    },
    /// The 802.1Q trunk: an AF_PACKET socket on an interface.
    VlanTrunk {
        /// Interface name.
        interface: String,
    },
}

/// A port to add.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct PortSpec {
    /// Port number (below 65536).
    pub id: u32,
    /// IP MTU.
    pub mtu: u16,
    /// Where it goes.
    pub attach: Attachment,
}

/// Where a MAC address lives: `{"port":3}` or `{"vtep":"10.1.0.2"}`.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LocationSpec {
    /// Behind a local port.
    Port(u32),
    /// On another host.
    Vtep(Ipv4Addr),
}

/// The switch's DHCP responder on a network (the core's `DhcpConfig`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct DhcpSpec {
    /// Prefix length of the subnet (1 to 32).
    pub prefix_len: u8,
    /// Default gateway, also the server identifier when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Server identifier when there is no gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Ipv4Addr>,
    /// Interface MTU to send; absent sends the client port's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Lease time, seconds.
    pub lease_secs: u32,
}

/// A source a port may send from (the core's `AllowedAddress`): a MAC and the IPv4 prefix it
/// may use; `prefix_len` 0 allows any IPv4 source from that MAC.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct AllowedAddressSpec {
    /// A unicast MAC address.
    pub mac: Mac,
    /// The prefix's address.
    pub ip: Ipv4Addr,
    /// The prefix's length, 0 to 32.
    pub prefix_len: u8,
}

/// Storm control (the core's `StormControl`): flooded frames a port may send.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct StormSpec {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Bucket depth, frames.
    pub burst: u32,
}

/// An access port's policy (the core's `PortPolicy`); absent fields are off.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
pub struct PortPolicySpec {
    /// Port security: the sources the port may send from; absent or `null` is off, `[]` sends
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<AllowedAddressSpec>>,
    /// Most learned MAC entries pointing at the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
    /// Storm control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormSpec>,
}

/// A rate and the burst it allows: a token bucket.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct RateSpec {
    /// Sustained rate, bits per second (Ethernet frames, headers included), at least 1.
    pub bits_per_sec: u64,
    /// Bytes that may pass at once above the rate (the bucket's depth), at least 1.
    pub burst_bytes: u64,
}

/// A port's priority class at every place its frames wait behind others (the datapath's
/// reading order, a port's output queue): a higher class goes first.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrioritySpec {
    /// After the others.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before the others.
    High,
}

/// The default [`QosSpec::weight`].
pub const DEFAULT_QOS_WEIGHT: u16 = 10;

fn default_qos_weight() -> u16 {
    DEFAULT_QOS_WEIGHT
}

/// A VM or host port's QoS, seen from the VM (`egress` is what it sends). Absent fields are
/// off.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct QosSpec {
    /// What the VM sends: the switch takes its frames no faster than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<RateSpec>,
    /// What goes to the VM: queued and sent no faster than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<RateSpec>,
    /// The port's priority class.
    #[serde(default)]
    pub priority: PrioritySpec,
    /// The port's share against ports of the same class under contention, 1 to 100.
    #[serde(default = "default_qos_weight")]
    pub weight: u16,
    /// DSCP (0 to 63) written into every IPv4 packet the VM sends; absent: the guest's own
    /// DSCP is kept (trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp_mark: Option<u8>,
}

impl Default for QosSpec {
    fn default() -> QosSpec {
        QosSpec {
            egress: None,
            ingress: None,
            priority: PrioritySpec::Normal,
            weight: DEFAULT_QOS_WEIGHT,
            dscp_mark: None,
        }
    }
}
