//! `--disk` and `--nic` specifications, and the NIC options of `vinfra vm nic set`: allowed
//! address pairs, security groups, MAC addresses.

use std::net::Ipv4Addr;

use vinfra_types::{AllowedAddressPair, DiskSpec, NicSpec, NicVlan};

use super::error::ParseError;
use super::qos::*;
use super::units::*;

pub(crate) fn pairs<'a>(
    what: &'static str,
    value: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, ParseError> {
    value
        .split(',')
        .map(|part| {
            part.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| ParseError::List {
                    what,
                    value: value.to_string(),
                    reason: format!("'{part}' is not key=value"),
                })
        })
        .collect()
}

/// `--disk name=root,image=debian.qcow2,size=10G` (`image` and `size` optional; a blank disk
/// needs `size`).
pub fn disk(value: &str) -> Result<DiskSpec, ParseError> {
    let err = |reason: String| ParseError::List {
        what: "disk",
        value: value.to_string(),
        reason,
    };
    let mut d = DiskSpec {
        name: String::new(),
        image: None,
        size_gib: None,
    };
    for (k, v) in pairs("disk", value)? {
        match k {
            "name" => d.name = v.to_string(),
            "image" => d.image = Some(v.to_string()),
            "size" => d.size_gib = Some(disk_gib(v).map_err(|e| err(e.to_string()))?),
            _ => return Err(err(format!("unknown key '{k}' (use name, image, size)"))),
        }
    }
    if d.name.is_empty() {
        return Err(err("name= is required".into()));
    }
    Ok(d)
}

/// `--nic NETWORK[,ip=A.B.C.D][,mac=xx:xx:xx:xx:xx:xx][,port-security=on|off]
/// [,allow=IP[/LEN][@MAC][+...]][,sg=GROUP[+...]][,rate=R][,egress-rate=R][,ingress-rate=R]
/// [,burst=B][,priority=low|normal|high][,weight=N][,dscp=N|trust][,vlan=VID[,parent=N]]`:
/// each key at most once, with a value. `vlan` makes the NIC an 802.1Q sub-interface with tag
/// VID of the VM's NIC `parent` (an earlier `--nic`, counted from 0; the first by default). `allow` lists the NIC's allowed address pairs, `+`-separated: an address or
/// prefix, sent from the NIC's MAC or the one after `@`. `sg` lists its security groups,
/// `+`-separated. The rest is its QoS ([`NicQosChange`]): `rate` limits both directions,
/// `egress-rate` (what the VM sends) and `ingress-rate` (what goes to it) one each.
pub fn nic(value: &str) -> Result<NicSpec, ParseError> {
    let err = |reason: String| ParseError::List {
        what: "nic",
        value: value.to_string(),
        reason,
    };
    let (network, rest) = match value.split_once(',') {
        Some((n, rest)) => (n.trim(), Some(rest)),
        None => (value.trim(), None),
    };
    let network = network.strip_prefix("network=").unwrap_or(network);
    if network.is_empty() || network.contains('=') {
        return Err(err("start with the network name".into()));
    }
    let mut n = NicSpec {
        network: network.to_string(),
        ..Default::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut qos = NicQosChange::default();
    let (mut vid, mut parent) = (None, None);
    if let Some(rest) = rest {
        for (k, v) in pairs("nic", rest)? {
            if seen.contains(&k) {
                return Err(err(format!("{k}= is given more than once")));
            }
            seen.push(k);
            if v.is_empty() {
                return Err(err(format!("{k}= needs a value")));
            }
            match k {
                "ip" => {
                    let ip = v
                        .parse::<Ipv4Addr>()
                        .map_err(|_| err(format!("'{v}' is not an IPv4 address")))?;
                    n.ip = Some(ip.to_string());
                }
                "mac" => n.mac = Some(mac(v).map_err(err)?),
                "port-security" => {
                    n.port_security = Some(match v {
                        "on" => true,
                        "off" => false,
                        _ => return Err(err(format!("port-security is on or off, not '{v}'"))),
                    })
                }
                "allow" => n.allowed_addresses = allowed_pairs(v).map_err(err)?,
                "sg" => n.security_groups = group_names(v, '+').map_err(err)?,
                "rate" => qos.rate = Some(Some(rate(v).map_err(|e| err(e.to_string()))?)),
                "egress-rate" => {
                    qos.egress_rate = Some(Some(rate(v).map_err(|e| err(e.to_string()))?))
                }
                "ingress-rate" => {
                    qos.ingress_rate = Some(Some(rate(v).map_err(|e| err(e.to_string()))?))
                }
                "burst" => qos.burst = Some(burst(v).map_err(|e| err(e.to_string()))?),
                "priority" => qos.priority = Some(qos_priority(v).map_err(|e| err(e.to_string()))?),
                "weight" => qos.weight = Some(qos_weight(v).map_err(|e| err(e.to_string()))?),
                "dscp" => qos.dscp = Some(dscp_or_trust(v).map_err(|e| err(e.to_string()))?),
                "vlan" => {
                    vid = Some(
                        v.parse::<u16>()
                            .ok()
                            .filter(|vid| (1..=4094).contains(vid))
                            .ok_or_else(|| {
                                err(format!("vlan: '{v}' is not a VLAN ID from 1 to 4094"))
                            })?,
                    )
                }
                "parent" => {
                    parent = Some(v.parse::<usize>().map_err(|_| {
                        err(format!(
                            "parent: '{v}' is not a NIC number (0 is the first --nic)"
                        ))
                    })?)
                }
                _ => {
                    return Err(err(format!(
                        "unknown key '{k}' (use ip, mac, port-security, allow, sg, rate, \
                         egress-rate, ingress-rate, burst, priority, weight, dscp, vlan, parent)"
                    )))
                }
            }
        }
    }
    n.vlan = match (vid, parent) {
        (Some(vid), parent) => Some(NicVlan {
            parent: parent.unwrap_or(0),
            vid,
        }),
        (None, Some(_)) => return Err(err("parent= goes with vlan=".into())),
        (None, None) => None,
    };
    n.qos = qos.apply(None).map_err(err)?;
    Ok(n)
}

/// Allowed address pairs `IP[/LEN][@MAC][+...]`, or why not.
pub(crate) fn allowed_pairs(value: &str) -> Result<Vec<AllowedAddressPair>, String> {
    let mut out = Vec::new();
    for item in value.split('+') {
        let (ip, pair_mac) = match item.split_once('@') {
            Some((ip, m)) => (ip.trim(), Some(mac(m.trim())?)),
            None => (item.trim(), None),
        };
        let pair = AllowedAddressPair {
            ip: ip.to_string(),
            mac: pair_mac,
        };
        if pair.prefix().is_none() {
            return Err(format!(
                "allow: '{ip}' is not an IPv4 address or prefix like 10.0.0.0/29"
            ));
        }
        out.push(pair);
    }
    Ok(out)
}

/// Security group names separated by `sep`, each a valid name, or why not.
pub(crate) fn group_names(value: &str, sep: char) -> Result<Vec<String>, String> {
    value
        .split(sep)
        .map(str::trim)
        .map(|g| {
            vinfra_types::validate_name(g)
                .map(|()| g.to_string())
                .map_err(|e| format!("security group '{g}': {e}"))
        })
        .collect()
}

/// `--allow IP[/LEN][@MAC][+...]|none` of `vinfra vm nic set`: the NIC's allowed address pairs
/// (`none`: no pair).
pub fn allow_or_none(value: &str) -> Result<Vec<AllowedAddressPair>, ParseError> {
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    allowed_pairs(value).map_err(|reason| ParseError::List {
        what: "allow",
        value: value.to_string(),
        reason,
    })
}

/// `--security-groups A,B|none` of `vinfra vm nic set`: the NIC's security groups (`none`: no
/// group).
pub fn groups_or_none(value: &str) -> Result<Vec<String>, ParseError> {
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    group_names(value, ',').map_err(|reason| ParseError::List {
        what: "security-groups",
        value: value.to_string(),
        reason,
    })
}

/// A NIC's MAC address: six octets of exactly two hex digits each, separated by `:` (either
/// case; no sign, no space), unicast and not all zeros. Returns it in lower case, or why not.
pub(crate) fn mac(value: &str) -> Result<String, String> {
    let octets: Vec<&str> = value.split(':').collect();
    let well_formed = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(format!(
            "'{value}' is not a MAC address like 02:76:66:00:00:01 (two hex digits per octet)"
        ));
    }
    vinfra_types::network::parse_mac(value)
        .map(vinfra_types::network::format_mac)
        .map_err(|e| e.to_string())
}
