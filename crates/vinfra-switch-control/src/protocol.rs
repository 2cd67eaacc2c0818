//! The messages: one JSON object per line, a [`Request`] from the agent, a [`Response`] from
//! the switch, in order.
//!
//! The requests are the switch core's configuration commands (`ConfigCommand` in
//! `vinfra-switch`), with ports carrying what the daemon needs to open them (a socket path, a tap
//! name, an interface), plus `ping`, `get_config`, `get_counters` and `export_connections` (a
//! port's tracked connections, for a migrating VM's new host, which takes them with
//! `import_connections`). The types here are the wire's own: plain numbers and addresses,
//! checked and converted by the daemon. Example:
//!
//! ```text
//! {"op":"add_network","id":1,"kind":{"overlay":{"vni":5001}}}
//! {"status":"ok"}
//! {"op":"add_port","id":3,"mtu":1450,"attach":{"kind":"host","network":1,"tap":"sw-tap3"}}
//! {"status":"ok"}
//! {"op":"get_counters"}
//! {"status":"counters","ports":[…],"networks":[…],"switch_drops":{}}
//! ```
//!
//! Here the requests and responses; the types they carry in `ports` (networks, ports and what
//! they hold), `firewall` (rules, tracked connections), `views` (flows, counters) and `mac`.

mod firewall;
mod mac;
mod ports;
#[cfg(test)]
mod tests;
mod views;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use firewall::*;
pub use mac::*;
pub use ports::*;
pub use views::*;

/// A request to the switch.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answered with `pong`.
    Ping,
    /// Answered with `config`: requests that rebuild the current configuration.
    GetConfig,
    /// Answered with `counters`.
    GetCounters,
    /// Answered with `flows`: the flows counted since the previous `take_flows` and their
    /// packets and bytes since then (deltas), and the flow table's counters. A query, never in
    /// `get_config`.
    TakeFlows,
    /// Answered with `connections`: the port's tracked connections, for a migrating VM's new
    /// host (the core's `Switch::export_connections`). An action: `get_config` never lists it.
    ExportConnections {
        /// A VM or host port.
        port: u32,
    },
    /// The core's `ConfigCommand::AddNetwork`.
    AddNetwork {
        /// Network number.
        id: u32,
        /// Overlay or VLAN.
        kind: NetworkSpec,
    },
    /// The core's `ConfigCommand::RemoveNetwork`.
    RemoveNetwork {
        /// Network number.
        id: u32,
    },
    /// The core's `ConfigCommand::AddPort`, after opening the port's socket or device.
    AddPort(PortSpec),
    /// The core's `ConfigCommand::RemovePort`, then closes the port.
    RemovePort {
        /// Port number.
        id: u32,
    },
    /// The core's `ConfigCommand::SetFloodList`.
    SetFloodList {
        /// Overlay network.
        network: u32,
        /// Remote VTEPs.
        vteps: Vec<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::AddMacEntry`.
    AddMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// Where it lives.
        location: LocationSpec,
    },
    /// The core's `ConfigCommand::RemoveMacEntry`.
    RemoveMacEntry {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
    },
    /// The core's `ConfigCommand::RevertMacMoves`: every static MAC entry that MAC mobility moved
    /// to another host goes back where `add_mac_entry` put it. An action, not configuration:
    /// `get_config` never lists it.
    RevertMacMoves,
    /// The core's `ConfigCommand::AddArpEntry`.
    AddArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
        /// Its owner.
        mac: Mac,
    },
    /// The core's `ConfigCommand::RemoveArpEntry`.
    RemoveArpEntry {
        /// Network.
        network: u32,
        /// IPv4 address.
        ip: Ipv4Addr,
    },
    /// The core's `ConfigCommand::SetVtepMac`. Accepted and kept for completeness: the UDP uplink lets the
    /// kernel resolve underlay MACs.
    SetVtepMac {
        /// Remote VTEP.
        vtep: Ipv4Addr,
        /// Its underlay MAC.
        mac: Mac,
    },
    /// The core's `ConfigCommand::SetSettings`.
    SetSettings {
        /// Learned MAC ageing, seconds.
        mac_ageing_secs: u64,
        /// Most learned MACs per network.
        mac_learn_limit: usize,
    },
    /// The core's `ConfigCommand::SetFlowAccounting`: flow counting on or off (on until set;
    /// off empties the flow table, so `take_flows` answers no flows), and optionally the flow
    /// table's bound (default 65,536 flows). A setting: `get_config` lists it once set.
    SetFlowAccounting {
        /// Whether the switch counts flows.
        enabled: bool,
        /// Most flows in the table; absent: 65,536.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_flows: Option<u64>,
    },
    /// The core's `ConfigCommand::SetPortPolicy`; a port's policy goes with the port.
    SetPortPolicy {
        /// A VM or host port.
        port: u32,
        /// Its policy.
        policy: PortPolicySpec,
    },
    /// The core's `ConfigCommand::SetPortFirewall`: a port's security-group rules; absent or
    /// `null`: no firewall. Goes with the port.
    SetPortFirewall {
        /// A VM or host port.
        port: u32,
        /// Its rules.
        #[serde(default)]
        rules: Option<Vec<FirewallRuleSpec>>,
    },
    /// A port's QoS (rate limits, priority class, weight, DSCP marking); absent or `null`:
    /// none. Goes with the port.
    SetPortQos {
        /// A VM or host port.
        port: u32,
        /// Its QoS.
        #[serde(default)]
        qos: Option<QosSpec>,
    },
    /// The core's `ConfigCommand::ImportConnections`: connections exported from the switch a
    /// VM leaves, given to its port here. An action: `get_config` never lists it.
    ImportConnections {
        /// A VM or host port.
        port: u32,
        /// The connections.
        entries: Vec<ConnectionSpec>,
    },
    /// The core's `ConfigCommand::SetUnderlayPeers`: the VXLAN uplink accepts packets from
    /// these underlay addresses only; absent or `null` accepts any.
    SetUnderlayPeers {
        /// The other hosts' underlay addresses.
        #[serde(default)]
        peers: Option<Vec<Ipv4Addr>>,
    },
    /// The core's `ConfigCommand::ExpectMacMove`: a static entry for a remote host may move to
    /// VTEP `to` on an announcement from there; absent or `null` withdraws that.
    ExpectMacMove {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// The VTEP it may move to.
        #[serde(default)]
        to: Option<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::RedirectMac`: the frames for a local VM's address go to VTEP
    /// `to` (the host it is migrating to) instead of its port, for at most 30 s; absent or
    /// `null` ends that. An action: `get_config` never lists it.
    RedirectMac {
        /// Network.
        network: u32,
        /// Address.
        mac: Mac,
        /// The VTEP its frames go to.
        #[serde(default)]
        to: Option<Ipv4Addr>,
    },
    /// The core's `ConfigCommand::SetDhcp`: enables (`config` set) or disables the DHCP responder.
    SetDhcp {
        /// Network.
        network: u32,
        /// The responder's parameters; absent or `null` disables it.
        #[serde(default)]
        config: Option<DhcpSpec>,
    },
    /// The core's `ConfigCommand::AddRouter`: a routing domain (VRF) with its own table, empty.
    AddRouter {
        /// Router number (1 to 65535), the same on every host.
        id: u32,
    },
    /// The core's `ConfigCommand::RemoveRouter`: the router, its interfaces and routes.
    RemoveRouter {
        /// Router number.
        id: u32,
    },
    /// The core's `ConfigCommand::SetRouterInterface`: the router's virtual interface on a
    /// network (the network's distributed gateway: the same address and MAC on every host);
    /// gives the router the connected route of `ip/prefix_len`. A network has at most one
    /// interface; setting it again replaces it (on another router too).
    SetRouterInterface {
        /// Router number.
        router: u32,
        /// Network number.
        network: u32,
        /// The gateway's address on the network.
        ip: Ipv4Addr,
        /// The network's prefix length (1 to 32).
        prefix_len: u8,
        /// The gateway's MAC (unicast).
        mac: Mac,
        /// The network's IP MTU: a routed packet larger than it is not sent on the network
        /// (fragmentation needed when it says DF, else dropped); absent: only the ports' and
        /// the underlay's MTUs count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u16>,
    },
    /// The core's `ConfigCommand::RemoveRouterInterface`: the network's gateway and its
    /// connected route go.
    RemoveRouterInterface {
        /// Network number.
        network: u32,
    },
    /// The core's `ConfigCommand::AddRoute`: a static route of the router; replaces a route to
    /// the same prefix.
    AddRoute {
        /// Router number.
        router: u32,
        /// Destination prefix (host bits zero).
        prefix: PrefixSpec,
        /// Next hop, an address on one of the router's networks.
        via: Ipv4Addr,
    },
    /// The core's `ConfigCommand::RemoveRoute`.
    RemoveRoute {
        /// Router number.
        router: u32,
        /// Destination prefix.
        prefix: PrefixSpec,
    },
    /// The core's `ConfigCommand::SetRouterUplink`: the router's uplink on an external network
    /// (a VLAN network of the trunk, towards the physical network): the router's own address
    /// and MAC there (not a distributed gateway: only the edge answers for them), a connected
    /// route of `ip/prefix_len`, and where its north-south traffic is translated. What the
    /// router sends out through the uplink leaves with the source address of the uplink (source
    /// NAT) or of the sender's floating IP; what comes in to those addresses is translated back.
    /// On the edge (`edge` is `Local`) the switch does that and announces the uplink's and the
    /// floating IPs' addresses with gratuitous ARP; on every other host a packet the router
    /// would send out through the uplink goes, as the sender sent it, to the edge's VTEP in
    /// VXLAN with `transit_vni`, and the edge routes it. Replaces the router's uplink. The
    /// network must not carry a router interface.
    SetRouterUplink {
        /// Router number.
        router: u32,
        /// Network number of the external network.
        network: u32,
        /// The router's address on it.
        ip: Ipv4Addr,
        /// The external network's prefix length (1 to 32).
        prefix_len: u8,
        /// The router's MAC on it (unicast; the same on every host, used only by the edge).
        mac: Mac,
        /// Where the router's north-south traffic is translated.
        edge: EdgeSpec,
        /// The VNI that carries north-south packets from the router's other hosts to its edge
        /// (one per router, no network's).
        transit_vni: u32,
        /// The external network's IP MTU, as for [`Request::SetRouterInterface`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u16>,
    },
    /// The core's `ConfigCommand::RemoveRouterUplink`: the uplink, its floating IPs and its NAT
    /// state go.
    RemoveRouterUplink {
        /// Router number.
        router: u32,
    },
    /// The core's `ConfigCommand::AddFloatingIp`: 1:1 NAT between `external` (in the uplink's
    /// subnet, not the uplink's own address) and `internal` (an address on one of the router's
    /// other networks): inbound to `external` goes to `internal`, and what `internal` sends out
    /// leaves from `external`. Replaces a floating IP of the same external address.
    AddFloatingIp {
        /// Router number (it has an uplink).
        router: u32,
        /// The address on the external network.
        external: Ipv4Addr,
        /// The VM NIC's address behind it.
        internal: Ipv4Addr,
    },
    /// The core's `ConfigCommand::RemoveFloatingIp`.
    RemoveFloatingIp {
        /// Router number.
        router: u32,
        /// The address on the external network.
        external: Ipv4Addr,
    },
}

/// Where a router's north-south traffic is translated (its edge).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EdgeSpec {
    /// On this switch.
    Local,
    /// On the switch of the host with this underlay (VTEP) address.
    Remote {
        /// The edge host's VTEP address.
        vtep: Ipv4Addr,
    },
}

/// A response.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// The request was applied.
    Ok,
    /// The answer to `ping`.
    Pong,
    /// The answer to `get_config`.
    Config {
        /// Requests that rebuild the configuration, in order.
        requests: Vec<Request>,
    },
    /// The answer to `get_counters`.
    Counters(CountersView),
    /// The answer to `take_flows`.
    Flows(FlowsView),
    /// The answer to `export_connections`.
    Connections {
        /// The port's live connections.
        entries: Vec<ConnectionSpec>,
    },
    /// The request was refused and changed nothing.
    Error {
        /// Why.
        message: String,
    },
}
