//! Routers (VRFs): what an operator asks for ([`CreateRouterRequest`],
//! [`AttachNetworkRequest`], [`RouterStaticRoute`]) and what the console keeps and shows
//! ([`RouterSummary`]), with the checks of a request that need no cluster state.
//!
//! A router is a routing domain with its own table. A network attaches to at most one router;
//! the attachment ([`RouterAttachment`]) is the router's virtual interface on the network: the
//! network's gateway, the same address and MAC ([`gateway_mac`]) on every host. Routes are the
//! connected ones (each attached subnet) and static ones (a prefix via a next hop on an
//! attached subnet); a connected route wins over a static one of the same prefix. Two routers
//! never exchange a packet, so tenants may reuse address ranges in different routers.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::NameError;

/// First three bytes of the routers' gateway MACs ([`gateway_mac`]): locally administered,
/// unicast (`02`), then `76:72` ("vr"). A VM NIC may not have a MAC with this prefix.
pub const GATEWAY_MAC_PREFIX: [u8; 3] = [0x02, 0x76, 0x72];

/// Most static routes one router may have.
pub const MAX_ROUTES: usize = 256;

/// The MAC of a router's gateway on the network whose switch number is `switch_id`:
/// `02:76:72:00:HH:LL` (HH:LL the number, big-endian), the same on every host.
pub fn gateway_mac(switch_id: u16) -> [u8; 6] {
    let [p, q, r] = GATEWAY_MAC_PREFIX;
    let [h, l] = switch_id.to_be_bytes();
    [p, q, r, 0, h, l]
}

/// The MAC of router `router_id`'s uplink: `02:76:72:01:RR:LL` (RR:LL the router's number,
/// big-endian). Only the router's edge host sends or receives frames with it.
pub fn uplink_mac(router_id: u16) -> [u8; 6] {
    let [p, q, r] = GATEWAY_MAC_PREFIX;
    let [h, l] = router_id.to_be_bytes();
    [p, q, r, 1, h, l]
}

/// First VNI reserved for routers' transit traffic to their edges: router `R` carries its
/// north-south packets in VNI `TRANSIT_VNI_BASE | R` ([`transit_vni`]). A network may not have
/// a VNI from here up.
pub const TRANSIT_VNI_BASE: u32 = 0x00FF_0000;

/// The VNI that carries router `router_id`'s north-south packets from the other hosts to its
/// edge host: `0xFF0000 | id` ([`TRANSIT_VNI_BASE`]; no network may have it).
pub fn transit_vni(router_id: u16) -> u32 {
    TRANSIT_VNI_BASE | u32::from(router_id)
}

/// Why a router request was refused, before any cluster state is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterRequestError {
    /// The router's name is not a valid name.
    #[error("router name")]
    Name(#[source] NameError),
    /// The network's name is not a valid name.
    #[error("network name")]
    Network(#[source] NameError),
    /// The gateway does not parse.
    #[error("gateway '{0}' is not an IPv4 address")]
    Gateway(String),
    /// The destination prefix does not parse.
    #[error("prefix '{0}' is not an IPv4 prefix like 10.1.0.0/16 or 0.0.0.0/0")]
    PrefixSyntax(String),
    /// The destination prefix has bits set beyond its length.
    #[error("prefix '{prefix}' has host bits set; the network address is {network}")]
    PrefixHostBits {
        /// The prefix as given.
        prefix: String,
        /// The network address meant, `A.B.C.D/L`.
        network: String,
    },
    /// The next hop does not parse.
    #[error("via '{0}' is not an IPv4 address")]
    Via(String),
    /// More static routes than allowed in one router.
    #[error("a router has at most {MAX_ROUTES} static routes")]
    TooManyRoutes,
    /// The uplink's or floating IP's address does not parse.
    #[error("ip '{0}' is not an IPv4 address")]
    Ip(String),
    /// The VM's name is not a valid name.
    #[error("VM name")]
    Vm(#[source] NameError),
}

/// Parses a route's destination `A.B.C.D/L` (L 0 to 32, host bits zero): the address and the
/// length. An address with host bits set is refused, naming the network address meant.
pub fn parse_route_prefix(s: &str) -> Result<(Ipv4Addr, u8), RouterRequestError> {
    let syntax = || RouterRequestError::PrefixSyntax(s.to_string());
    let (addr, len) = s.trim().split_once('/').ok_or_else(syntax)?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let len: u8 = len.parse().map_err(|_| syntax())?;
    if len > 32 {
        return Err(syntax());
    }
    let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let bits = u32::from(addr);
    if bits & !mask != 0 {
        return Err(RouterRequestError::PrefixHostBits {
            prefix: s.to_string(),
            network: format!("{}/{len}", Ipv4Addr::from(bits & mask)),
        });
    }
    Ok((addr, len))
}

/// `POST /api/v1/routers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRouterRequest {
    /// Cluster-unique name, a DNS label.
    pub name: String,
}

impl CreateRouterRequest {
    /// Checks the name.
    pub fn validate(&self) -> Result<(), RouterRequestError> {
        crate::validate_name(&self.name).map_err(RouterRequestError::Name)
    }
}

/// `POST /api/v1/routers/{name}/interfaces`: attach a network to the router.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachNetworkRequest {
    /// The network.
    pub network: String,
    /// The gateway address on the network. A network with a gateway keeps it (another one is
    /// refused); a network without one gets this one, or its subnet's first usable address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

impl AttachNetworkRequest {
    /// Checks the network's name and the gateway's syntax; returns the gateway.
    pub fn validate(&self) -> Result<Option<Ipv4Addr>, RouterRequestError> {
        crate::validate_name(&self.network).map_err(RouterRequestError::Network)?;
        self.gateway
            .as_deref()
            .map(|g| {
                g.trim()
                    .parse()
                    .map_err(|_| RouterRequestError::Gateway(g.to_string()))
            })
            .transpose()
    }
}

/// A static route: traffic to `prefix` goes to the next hop `via`, an address on one of the
/// router's networks. The body of `POST /api/v1/routers/{name}/routes`, and how a router lists
/// its routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterStaticRoute {
    /// Destination prefix `A.B.C.D/L` (L 0 to 32, host bits zero; `0.0.0.0/0` is the default
    /// route).
    #[schema(example = "10.90.0.0/16")]
    pub prefix: String,
    /// The next hop's IPv4 address.
    #[schema(example = "10.80.1.10")]
    pub via: String,
}

impl RouterStaticRoute {
    /// Checks the prefix and the next hop; returns them parsed.
    pub fn validate(&self) -> Result<((Ipv4Addr, u8), Ipv4Addr), RouterRequestError> {
        let prefix = parse_route_prefix(&self.prefix)?;
        let via = self
            .via
            .trim()
            .parse()
            .map_err(|_| RouterRequestError::Via(self.via.clone()))?;
        Ok((prefix, via))
    }

    /// The route in one line: `10.90.0.0/16 via 10.80.1.10`.
    pub fn describe(&self) -> String {
        format!("{} via {}", self.prefix, self.via)
    }
}

/// A router's virtual interface on a network: the network's gateway, the same address and MAC
/// on every host (a distributed anycast gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouterAttachment {
    /// The network.
    pub network: String,
    /// The network's subnet, `A.B.C.D/P`.
    pub subnet: String,
    /// The gateway's address (the network's gateway).
    pub gateway: String,
    /// The gateway's MAC, `02:76:72:00:HH:LL` from the network's switch number.
    pub gateway_mac: String,
}

/// `PUT /api/v1/routers/{name}/uplink`: the router's interface on an external network (a VLAN
/// network towards the physical network), where its north-south traffic leaves, source-NATed
/// to `ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetUplinkRequest {
    /// The external network: a VLAN network with a subnet, not attached to a router.
    pub network: String,
    /// The router's address on it: a usable address of its subnet, not its gateway, free.
    #[schema(example = "10.82.0.10")]
    pub ip: String,
}

impl SetUplinkRequest {
    /// Checks the network's name and the address's syntax; returns the address.
    pub fn validate(&self) -> Result<Ipv4Addr, RouterRequestError> {
        crate::validate_name(&self.network).map_err(RouterRequestError::Network)?;
        parse_ip(&self.ip)
    }
}

/// An IPv4 address of an uplink or a floating IP.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, RouterRequestError> {
    s.trim()
        .parse()
        .map_err(|_| RouterRequestError::Ip(s.to_string()))
}

/// `POST /api/v1/vms/{name}/floating-ips`: a floating IP for one of the VM's NICs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFloatingIpRequest {
    /// The floating IP: an address of the uplink subnet of the router the NIC's network is
    /// attached to, not the uplink's address, not the external network's gateway, free.
    #[schema(example = "10.82.0.20")]
    pub ip: String,
    /// The NIC's index in the VM's spec (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<usize>,
}

impl AddFloatingIpRequest {
    /// Checks the address's syntax; returns it.
    pub fn validate(&self) -> Result<Ipv4Addr, RouterRequestError> {
        parse_ip(&self.ip)
    }
}

/// A floating IP: 1:1 NAT on a router's edge between an address of its uplink subnet and a VM
/// NIC's address (`GET /api/v1/floating-ips`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FloatingIpSummary {
    /// The floating IP, on the router's external network.
    #[schema(example = "10.82.0.20")]
    pub ip: String,
    /// The VM.
    pub vm: String,
    /// The NIC's index in the VM's spec.
    pub nic: usize,
    /// The NIC's network (attached to the router).
    pub network: String,
    /// The NIC's address (its IPAM address), what the floating IP is translated to.
    #[schema(example = "10.80.1.10")]
    pub internal: String,
    /// The router whose uplink carries it.
    pub router: String,
}

/// A router's uplink as the console keeps and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UplinkSummary {
    /// The external network.
    pub network: String,
    /// Its subnet, `A.B.C.D/P`.
    pub subnet: String,
    /// The router's address on it (source NAT address).
    pub ip: String,
    /// The uplink's MAC, `02:76:72:01:RR:LL` from the router's number.
    pub mac: String,
    /// The host whose switch translates the router's north-south traffic (elected by the
    /// console); none while no host can be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    /// The host that would become the edge next (shown only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// The VNI of the router's traffic to its edge, `0xFF0000 | number`.
    pub transit_vni: u32,
    /// The router's floating IPs, by address.
    #[serde(default)]
    pub floating_ips: Vec<FloatingIpSummary>,
}

impl UplinkSummary {
    /// The uplink's address with its prefix length, `A.B.C.D/P` (the address alone if the
    /// subnet does not parse).
    pub fn ip_with_prefix(&self) -> String {
        match self.subnet.split_once('/') {
            Some((_, len)) => format!("{}/{len}", self.ip),
            None => self.ip.clone(),
        }
    }
}

/// A router as the console keeps and shows it (`GET /api/v1/routers[/{name}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouterSummary {
    /// Cluster-unique name.
    pub name: String,
    /// The router's number on every host's switch (the lowest free from 1).
    pub id: u16,
    /// Its interfaces, one per attached network, by network name.
    pub interfaces: Vec<RouterAttachment>,
    /// Its static routes, by prefix.
    pub routes: Vec<RouterStaticRoute>,
    /// Its uplink to an external network, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkSummary>,
    /// Seconds since the Unix epoch when the router was created.
    pub created_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_macs_come_from_the_switch_number() {
        let text = |m: [u8; 6]| crate::network::format_mac(m);
        assert_eq!(text(gateway_mac(1)), "02:76:72:00:00:01");
        assert_eq!(text(gateway_mac(0x1234)), "02:76:72:00:12:34");
        assert_eq!(text(gateway_mac(u16::MAX)), "02:76:72:00:ff:ff");
        assert!(crate::network::parse_mac(&text(gateway_mac(7))).is_err());
    }

    #[test]
    fn uplink_macs_and_transit_vnis_come_from_the_router_number() {
        let text = |m: [u8; 6]| crate::network::format_mac(m);
        assert_eq!(text(uplink_mac(1)), "02:76:72:01:00:01");
        assert_eq!(text(uplink_mac(0x1234)), "02:76:72:01:12:34");
        assert_ne!(uplink_mac(7), gateway_mac(7));
        assert!(crate::network::parse_mac(&text(uplink_mac(7))).is_err());
        assert_eq!(transit_vni(1), 0xFF_0001);
        assert_eq!(transit_vni(u16::MAX), 0xFF_FFFF);
        assert_eq!(transit_vni(1), 16_711_681);
    }

    #[test]
    fn uplink_and_floating_ip_requests_are_checked() {
        let up = |network: &str, ip: &str| SetUplinkRequest {
            network: network.into(),
            ip: ip.into(),
        };
        assert_eq!(
            up("external", " 10.82.0.10").validate(),
            Ok(Ipv4Addr::new(10, 82, 0, 10))
        );
        assert_eq!(
            up("external", "10.82.0")
                .validate()
                .unwrap_err()
                .to_string(),
            "ip '10.82.0' is not an IPv4 address"
        );
        assert!(matches!(
            up("Ext", "10.82.0.10").validate(),
            Err(RouterRequestError::Network(_))
        ));
        let json: Result<SetUplinkRequest, _> =
            serde_json::from_str(r#"{"network":"external","ip":"10.82.0.10","mac":"x"}"#);
        assert!(json.is_err(), "unknown fields are refused");
        let fip: AddFloatingIpRequest = serde_json::from_str(r#"{"ip":"10.82.0.20"}"#).unwrap();
        assert_eq!(fip.nic, None);
        assert_eq!(fip.validate(), Ok(Ipv4Addr::new(10, 82, 0, 20)));
        let bad = AddFloatingIpRequest {
            ip: "x".into(),
            nic: Some(1),
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "ip 'x' is not an IPv4 address"
        );
        let u = UplinkSummary {
            network: "external".into(),
            subnet: "10.82.0.0/24".into(),
            ip: "10.82.0.10".into(),
            mac: "02:76:72:01:00:01".into(),
            edge: None,
            standby: None,
            transit_vni: transit_vni(1),
            floating_ips: vec![],
        };
        assert_eq!(u.ip_with_prefix(), "10.82.0.10/24");
    }

    #[test]
    fn route_prefixes() {
        assert_eq!(
            parse_route_prefix("0.0.0.0/0"),
            Ok((Ipv4Addr::UNSPECIFIED, 0))
        );
        assert_eq!(
            parse_route_prefix(" 10.1.0.0/16 "),
            Ok((Ipv4Addr::new(10, 1, 0, 0), 16))
        );
        assert_eq!(
            parse_route_prefix("10.1.2.3/32"),
            Ok((Ipv4Addr::new(10, 1, 2, 3), 32))
        );
        assert_eq!(
            parse_route_prefix("10.1.2.3/16").unwrap_err().to_string(),
            "prefix '10.1.2.3/16' has host bits set; the network address is 10.1.0.0/16"
        );
        assert_eq!(
            parse_route_prefix("1.2.3.4/0").unwrap_err().to_string(),
            "prefix '1.2.3.4/0' has host bits set; the network address is 0.0.0.0/0"
        );
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/008",
            "10.0.0/8",
            "x/8",
        ] {
            assert_eq!(
                parse_route_prefix(bad),
                Err(RouterRequestError::PrefixSyntax(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(CreateRouterRequest { name: "r1".into() }.validate().is_ok());
        assert_eq!(
            crate::error::chain(
                &CreateRouterRequest { name: "R_1".into() }
                    .validate()
                    .unwrap_err()
            ),
            "router name: name 'R_1' has a character that is not allowed (allowed: lower-case \
             letters, digits and '-')"
        );
        let attach = |network: &str, gateway: Option<&str>| AttachNetworkRequest {
            network: network.into(),
            gateway: gateway.map(str::to_string),
        };
        assert_eq!(attach("blue", None).validate(), Ok(None));
        assert_eq!(
            attach("blue", Some("10.0.0.1")).validate(),
            Ok(Some(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(
            attach("blue", Some("10.0.0"))
                .validate()
                .unwrap_err()
                .to_string(),
            "gateway '10.0.0' is not an IPv4 address"
        );
        assert!(matches!(
            attach("-x", None).validate(),
            Err(RouterRequestError::Network(_))
        ));
        let route = |prefix: &str, via: &str| RouterStaticRoute {
            prefix: prefix.into(),
            via: via.into(),
        };
        assert_eq!(
            route("10.9.0.0/16", "10.0.0.5").validate(),
            Ok(((Ipv4Addr::new(10, 9, 0, 0), 16), Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert_eq!(
            route("10.9.0.0/16", "10.0.0.5").describe(),
            "10.9.0.0/16 via 10.0.0.5"
        );
        assert_eq!(
            route("10.9.0.0/16", "ten")
                .validate()
                .unwrap_err()
                .to_string(),
            "via 'ten' is not an IPv4 address"
        );
        assert!(matches!(
            route("10.9.0.1/16", "10.0.0.5").validate(),
            Err(RouterRequestError::PrefixHostBits { .. })
        ));
        let json: Result<RouterStaticRoute, _> =
            serde_json::from_str(r#"{"prefix":"0.0.0.0/0","via":"10.0.0.5","metric":1}"#);
        assert!(json.is_err(), "unknown fields are refused");
    }
}
