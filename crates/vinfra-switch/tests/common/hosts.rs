//! Hosts joined by an overlay: host A's and host B's switches (blue and red overlays, VMs 1
//! and 3 on A, 2 and 4 on B), and a switch with two VLAN networks on a trunk.

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::datapath::{
    ConfigCommand, Location, NetworkId, PortConfig, PortId, PortKind, Segment, Switch,
    SwitchSettings,
};
use vinfra_switch::wire::{MacAddr, VlanId, Vni};

use super::{
    mac, run, Out, TRUNK, UNDERLAY_MAC_A, UNDERLAY_MAC_B, UNDERLAY_MAC_C, UPLINK, VTEP_A, VTEP_B,
    VTEP_C,
};

/// Blue: VNI 5001 (VLAN 100 on the VLAN switch).
pub const BLUE: NetworkId = NetworkId(10);
/// Red: VNI 5002, the same addresses as blue (VLAN 200 on the VLAN switch).
pub const RED: NetworkId = NetworkId(20);

pub fn vni(n: u32) -> Vni {
    Vni::new(n).unwrap()
}

pub fn vid(n: u16) -> VlanId {
    VlanId::new(n).unwrap()
}

pub fn vm(id: u32, network: NetworkId) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id: PortId(id),
        kind: PortKind::Vm { network },
        mtu: 1450,
    })
}

pub fn host_port(id: u32, network: NetworkId, mtu: u16) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id: PortId(id),
        kind: PortKind::Host { network },
        mtu,
    })
}

pub fn uplink(local_ip: Ipv4Addr, local_mac: MacAddr) -> ConfigCommand {
    ConfigCommand::AddPort(PortConfig {
        id: UPLINK,
        kind: PortKind::VxlanUplink {
            local_ip,
            local_mac,
            gateway_mac: None,
        },
        mtu: 1500,
    })
}

pub fn vtep_macs() -> Vec<ConfigCommand> {
    vec![
        ConfigCommand::SetVtepMac {
            vtep: VTEP_A,
            mac: UNDERLAY_MAC_A,
        },
        ConfigCommand::SetVtepMac {
            vtep: VTEP_B,
            mac: UNDERLAY_MAC_B,
        },
        ConfigCommand::SetVtepMac {
            vtep: VTEP_C,
            mac: UNDERLAY_MAC_C,
        },
    ]
}

pub fn overlay_networks() -> Vec<ConfigCommand> {
    vec![
        ConfigCommand::AddNetwork {
            id: BLUE,
            segment: Segment::Overlay { vni: vni(5001) },
        },
        ConfigCommand::AddNetwork {
            id: RED,
            segment: Segment::Overlay { vni: vni(5002) },
        },
    ]
}

/// Host A: VM 1 on blue, VM 3 on red (same IP range). Host B: VM 2 on blue, VM 4 on red.
/// The control plane programs both VM MACs of blue as static entries and each other as the
/// flood list of both networks.
pub fn two_hosts() -> (Switch, Switch) {
    let mut a = overlay_networks();
    a.extend(vtep_macs());
    a.extend([
        uplink(VTEP_A, UNDERLAY_MAC_A),
        vm(1, BLUE),
        vm(3, RED),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A, VTEP_B],
        },
        ConfigCommand::SetFloodList {
            network: RED,
            vteps: vec![VTEP_B],
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(1),
            location: Location::Port(PortId(1)),
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(2),
            location: Location::Vtep(VTEP_B),
        },
    ]);
    let mut b = overlay_networks();
    b.extend(vtep_macs());
    b.extend([
        uplink(VTEP_B, UNDERLAY_MAC_B),
        vm(2, BLUE),
        vm(4, RED),
        ConfigCommand::SetFloodList {
            network: BLUE,
            vteps: vec![VTEP_A],
        },
        ConfigCommand::SetFloodList {
            network: RED,
            vteps: vec![VTEP_A],
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(2),
            location: Location::Port(PortId(2)),
        },
        ConfigCommand::AddMacEntry {
            network: BLUE,
            mac: mac(1),
            location: Location::Vtep(VTEP_A),
        },
    ]);
    (
        Switch::with_commands(SwitchSettings::default(), a).unwrap(),
        Switch::with_commands(SwitchSettings::default(), b).unwrap(),
    )
}

/// Hands every underlay frame addressed to `to_ip` to `to`'s uplink; returns what `to` sends.
pub fn carry(out: &Out, to: &mut Switch, to_ip: Ipv4Addr, now: Duration) -> Out {
    let mut result = Vec::new();
    for (port, vtep, bytes) in out {
        if *port == UPLINK && *vtep == Some(to_ip) {
            result.extend(run(to, now, UPLINK, bytes));
        }
    }
    result
}

pub fn vlan_switch() -> Switch {
    Switch::with_commands(
        SwitchSettings::default(),
        [
            ConfigCommand::AddNetwork {
                id: BLUE,
                segment: Segment::Vlan { vid: vid(100) },
            },
            ConfigCommand::AddNetwork {
                id: RED,
                segment: Segment::Vlan { vid: vid(200) },
            },
            ConfigCommand::AddPort(PortConfig {
                id: TRUNK,
                kind: PortKind::VlanTrunk,
                mtu: 1500,
            }),
            host_port(5, BLUE, 1500),
            vm(6, RED),
        ],
    )
    .unwrap()
}
