//! [`SwitchAttachment`]: how the agent reaches its host's switch, and the ports it adds of its
//! own (uplink, trunk).

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Largest port number the switch accepts.
pub const MAX_PORT: u32 = 65_535;
/// The switch port number of the VLAN trunk: reserved, never given to a VM NIC (VM ports are
/// allocated from 1 up, the uplink is [`vinfra_switch_control::UPLINK_PORT`]).
pub const TRUNK_PORT: u32 = MAX_PORT;
/// IP MTU of the trunk (the console assumes 1500 for VLAN networks).
pub const TRUNK_MTU: u16 = 1500;

/// How a VM's NIC reaches the host's switch (`vinfra agent --vm-nic-ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmNicPorts {
    /// A tap the switch creates and QEMU opens (`-netdev tap`): virtio-net headers, so the
    /// guest's checksum and TCP segmentation offloads reach the switch, and 64 KiB segments
    /// cross it whole. A NIC that carries 802.1Q sub-interfaces stays on `Dgram`.
    #[default]
    Tap,
    /// A pair of Unix datagram sockets (`-netdev dgram`): no kernel device per NIC, one frame
    /// per datagram, no offloads.
    Dgram,
}

/// How the agent reaches its host's switch (`vinfra agent --switch-control`, `--underlay-ip`,
/// `--underlay-mtu`, `--trunk-interface`, `--vm-nic-ports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchAttachment {
    /// The switch's control socket.
    pub control: PathBuf,
    /// This host's underlay (VTEP) address; needed for overlay networks.
    pub underlay_ip: Option<Ipv4Addr>,
    /// IP MTU of the underlay (the uplink port's MTU when the agent opens it).
    pub underlay_mtu: u16,
    /// The interface of the host's 802.1Q trunk to the physical network; needed for VLAN
    /// networks. The agent adds it to the switch as port [`TRUNK_PORT`].
    pub trunk_interface: Option<String>,
    /// How VM NICs reach the switch.
    pub vm_nic_ports: VmNicPorts,
}

impl SwitchAttachment {
    /// The switch at `control`, without an underlay address, underlay MTU 1500, no trunk.
    pub fn new(control: impl Into<PathBuf>) -> SwitchAttachment {
        SwitchAttachment {
            control: control.into(),
            underlay_ip: None,
            underlay_mtu: 1500,
            trunk_interface: None,
            vm_nic_ports: VmNicPorts::default(),
        }
    }
}
