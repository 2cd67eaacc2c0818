//! Security groups: named rule sets attached to VM NICs, the distributed firewall's model.
//!
//! A [`SecurityGroup`] holds [`SgRule`]s: a direction, a protocol, optional ports, one remote
//! (an IPv4 prefix, or every NIC of a group) and an action. A NIC lists the groups it is in
//! (`NicSpec::security_groups`); its host's switch filters its traffic:
//! - a NIC in no group is not filtered;
//! - a NIC in groups gets the union of their rules: a packet matched by a `deny` rule is
//!   dropped, else one matched by an `allow` rule passes, else ingress is dropped and egress
//!   passes;
//! - replies to allowed connections pass both ways (the switch tracks connections).
//!
//! A `remote_group` rule matches the addresses of every NIC in that group, cluster-wide (every
//! VM, whatever its host or power state), as they are at any time.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::NameError;

/// Most rules one group may have.
pub const MAX_RULES: usize = 256;
/// Most groups one NIC may be in.
pub const MAX_NIC_GROUPS: usize = 8;
/// Longest description of a group or rule, in bytes.
pub const MAX_DESCRIPTION: usize = 255;

/// Why a security group or a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityGroupError {
    /// The group's name is not a valid name.
    #[error("security group name")]
    Name(#[source] NameError),
    /// A description is too long or has control characters.
    #[error("description must be printable and at most {MAX_DESCRIPTION} bytes")]
    Description,
    /// More rules than allowed in one group.
    #[error("a security group has at most {MAX_RULES} rules")]
    TooManyRules,
    /// One of the rules given with a group is refused.
    #[error("rule {index}")]
    Rule {
        /// Its position in the list given (from 0).
        index: usize,
        /// Why.
        #[source]
        source: Box<SecurityGroupError>,
    },
    /// A rule without a remote.
    #[error("a rule names its remote: remote_cidr or remote_group")]
    NoRemote,
    /// A rule with both kinds of remote.
    #[error("a rule names one remote: remote_cidr or remote_group, not both")]
    TwoRemotes,
    /// A remote prefix that does not parse or has host bits set.
    #[error(
        "remote_cidr '{0}' is not an IPv4 prefix like 10.0.0.0/8 or 0.0.0.0/0 (host bits zero)"
    )]
    RemoteCidr(String),
    /// A remote group whose name is not a valid name.
    #[error("remote_group")]
    RemoteGroup(#[source] NameError),
    /// Ports on a rule whose protocol has none.
    #[error("ports are for tcp and udp rules only, not {0}")]
    PortsWithoutTcpOrUdp(SgProtocol),
    /// A port or port range that does not parse.
    #[error("'{0}' is not a port (1-65535) or a range like 8000-8080")]
    Ports(String),
    /// A protocol that does not parse.
    #[error("'{0}' is not a protocol: any, tcp, udp, icmp or a number 0-255")]
    Protocol(String),
}

/// Which traffic of the NIC a rule is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SgDirection {
    /// Traffic to the NIC (the remote is the source).
    Ingress,
    /// Traffic from the NIC (the remote is the destination).
    Egress,
}

impl SgDirection {
    /// `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            SgDirection::Ingress => "ingress",
            SgDirection::Egress => "egress",
        }
    }
}

/// What a rule does with the traffic it matches.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SgAction {
    /// Let it pass (unless a deny rule matches it too).
    #[default]
    Allow,
    /// Drop it, whatever allow rules say.
    Deny,
}

impl SgAction {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            SgAction::Allow => "allow",
            SgAction::Deny => "deny",
        }
    }
}

/// The IP protocol a rule matches: `any`, `tcp`, `udp`, `icmp`, or a protocol number
/// (`"47"`); written as a string. Numbers 1, 6 and 17 are icmp, tcp and udp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SgProtocol {
    /// Every protocol.
    #[default]
    Any,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// Another IP protocol number.
    Number(u8),
}

impl SgProtocol {
    /// The IP protocol number; `None` for any.
    pub fn number(self) -> Option<u8> {
        match self {
            SgProtocol::Any => None,
            SgProtocol::Tcp => Some(6),
            SgProtocol::Udp => Some(17),
            SgProtocol::Icmp => Some(1),
            SgProtocol::Number(n) => Some(n),
        }
    }

    /// True for the protocols with ports (tcp, udp).
    pub fn has_ports(self) -> bool {
        matches!(self, SgProtocol::Tcp | SgProtocol::Udp)
    }
}

impl fmt::Display for SgProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SgProtocol::Any => f.write_str("any"),
            SgProtocol::Tcp => f.write_str("tcp"),
            SgProtocol::Udp => f.write_str("udp"),
            SgProtocol::Icmp => f.write_str("icmp"),
            SgProtocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for SgProtocol {
    type Err = SecurityGroupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "any" => SgProtocol::Any,
            "tcp" | "6" => SgProtocol::Tcp,
            "udp" | "17" => SgProtocol::Udp,
            "icmp" | "1" => SgProtocol::Icmp,
            n if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
                SgProtocol::Number(
                    n.parse()
                        .map_err(|_| SecurityGroupError::Protocol(s.to_string()))?,
                )
            }
            _ => return Err(SecurityGroupError::Protocol(s.to_string())),
        })
    }
}

impl Serialize for SgProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SgProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A protocol as a name or a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(u8),
            Text(String),
        }
        match Given::deserialize(d)? {
            Given::Number(n) => n.to_string().parse(),
            Given::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A destination port or an inclusive range of them (tcp, udp): `"80"` or `"8000-8080"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SgPortRange {
    /// The first port (1 or more).
    pub first: u16,
    /// The last port (`first` or more).
    pub last: u16,
}

impl fmt::Display for SgPortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for SgPortRange {
    type Err = SecurityGroupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SecurityGroupError::Ports(s.to_string());
        let port = |p: &str| -> Result<u16, SecurityGroupError> {
            let p = p.trim();
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(bad());
        }
        Ok(SgPortRange { first, last })
    }
}

impl Serialize for SgPortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SgPortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A port range as text, or one port as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Number(u16),
            Text(String),
        }
        match Given::deserialize(d)? {
            Given::Number(n) => n.to_string().parse(),
            Given::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Parses an IPv4 prefix `A.B.C.D/L` (L 0..=32, host bits zero); a bare address is a /32.
pub fn parse_prefix(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = match s.trim().split_once('/') {
        Some((ip, len)) => {
            if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (ip, len.parse::<u8>().ok().filter(|l| *l <= 32)?)
        }
        None => (s.trim(), 32),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    (u32::from(ip) & !mask == 0).then_some((ip, len))
}

/// One rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SgRule {
    /// The rule's number in its group, assigned by the console (ignored in requests): stable,
    /// never reused within the group.
    #[serde(default)]
    pub id: u32,
    /// `ingress` (to the NIC) or `egress` (from it).
    pub direction: SgDirection,
    /// `any` (default), `tcp`, `udp`, `icmp` or an IP protocol number (`"47"`).
    #[serde(default)]
    #[schema(value_type = String, example = "tcp")]
    pub protocol: SgProtocol,
    /// Destination port or range, tcp and udp only: `"80"` or `"8000-8080"`; every port when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "8000-8080")]
    pub ports: Option<SgPortRange>,
    /// The remote as an IPv4 prefix (`10.0.0.0/8`, `0.0.0.0/0` for any; host bits zero). A rule
    /// has this or `remote_group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cidr: Option<String>,
    /// The remote as a security group: the addresses of every NIC in it, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group: Option<String>,
    /// `allow` (default) or `deny`; a matching deny wins over every allow.
    #[serde(default)]
    pub action: SgAction,
    /// Free text, at most 255 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a rule's traffic comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgRemote<'a> {
    /// An IPv4 prefix.
    Cidr(Ipv4Addr, u8),
    /// Every NIC of a group.
    Group(&'a str),
}

fn check_description(d: &Option<String>) -> Result<(), SecurityGroupError> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION || d.chars().any(char::is_control) => {
            Err(SecurityGroupError::Description)
        }
        _ => Ok(()),
    }
}

impl SgRule {
    /// Checks the rule: one valid remote, ports only with tcp or udp, a short description.
    pub fn validate(&self) -> Result<(), SecurityGroupError> {
        match (&self.remote_cidr, &self.remote_group) {
            (None, None) => return Err(SecurityGroupError::NoRemote),
            (Some(_), Some(_)) => return Err(SecurityGroupError::TwoRemotes),
            (Some(c), None) => {
                if parse_prefix(c).is_none() || !c.contains('/') {
                    return Err(SecurityGroupError::RemoteCidr(c.clone()));
                }
            }
            (None, Some(g)) => crate::validate_name(g).map_err(SecurityGroupError::RemoteGroup)?,
        }
        if self.ports.is_some() && !self.protocol.has_ports() {
            return Err(SecurityGroupError::PortsWithoutTcpOrUdp(self.protocol));
        }
        check_description(&self.description)
    }

    /// The rule's remote (`None` when it has none or a bad one: see [`SgRule::validate`]).
    pub fn remote(&self) -> Option<SgRemote<'_>> {
        match (&self.remote_cidr, &self.remote_group) {
            (Some(c), None) => parse_prefix(c).map(|(ip, len)| SgRemote::Cidr(ip, len)),
            (None, Some(g)) => Some(SgRemote::Group(g)),
            _ => None,
        }
    }

    /// The rule in one line: `allow ingress tcp 22 from 10.0.0.0/8`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} {}",
            self.action.as_str(),
            self.direction.as_str(),
            self.protocol
        );
        if let Some(p) = self.ports {
            s.push_str(&format!(" {p}"));
        }
        s.push_str(match self.direction {
            SgDirection::Ingress => " from ",
            SgDirection::Egress => " to ",
        });
        match (&self.remote_cidr, &self.remote_group) {
            (Some(c), _) => s.push_str(c),
            (_, Some(g)) => s.push_str(&format!("group {g}")),
            _ => s.push('?'),
        }
        s
    }
}

/// A security group: a name, a description and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    /// Cluster-unique name, a DNS label.
    pub name: String,
    /// Free text, at most 255 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rules, by id. In a create request, the initial rules (their ids are assigned).
    #[serde(default)]
    pub rules: Vec<SgRule>,
}

impl SecurityGroup {
    /// Checks the name, the description and every rule (at most [`MAX_RULES`]).
    pub fn validate(&self) -> Result<(), SecurityGroupError> {
        crate::validate_name(&self.name).map_err(SecurityGroupError::Name)?;
        check_description(&self.description)?;
        if self.rules.len() > MAX_RULES {
            return Err(SecurityGroupError::TooManyRules);
        }
        for (index, r) in self.rules.iter().enumerate() {
            r.validate().map_err(|e| SecurityGroupError::Rule {
                index,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }
}

/// A NIC in a security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SgMember {
    /// The VM.
    pub vm: String,
    /// The NIC's index in the VM's spec.
    pub nic: usize,
    /// The NIC's network.
    pub network: String,
    /// The NIC's IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A security group as the API shows it: its rules, the NICs in it and the groups whose rules
/// name it as their remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroupSummary {
    /// The group.
    #[serde(flatten)]
    pub group: SecurityGroup,
    /// Every NIC in the group, by VM name and NIC index.
    pub members: Vec<SgMember>,
    /// The groups (this one included) with a rule whose remote_group is this group.
    pub referenced_by: Vec<String>,
    /// Seconds since the Unix epoch when the group was created.
    pub created_at: u64,
}

/// How often one rule of a group decided a connection's first packet, summed over the NICs
/// counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SgRuleHits {
    /// The rule's id in its group.
    pub rule_id: u32,
    /// First packets the rule decided (allowed or denied) since the NIC's rules were last set.
    pub hits: u64,
}

/// One NIC of a group with its port's firewall, read now from the switch of its VM's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SgMemberCounters {
    /// The NIC.
    #[serde(flatten)]
    pub member: SgMember,
    /// The host its VM runs on (empty when the VM is not placed).
    pub host: String,
    /// Connections the NIC's firewall tracks now (all its groups'); `null` when not read (see
    /// `error`).
    pub connections: Option<u64>,
    /// Why the NIC was not counted: its host is disconnected or did not answer, or its switch
    /// has no port for it (a stopped VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A group's rule hits across the hosts (`GET /api/v1/security-groups/{name}/counters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroupCounters {
    /// The group's name.
    pub group: String,
    /// Each rule of the group (in the group's order) with its hits summed over the NICs
    /// counted.
    pub rules: Vec<SgRuleHits>,
    /// Each NIC in the group.
    pub members: Vec<SgMemberCounters>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Result<SgRule, String> {
        let r: SgRule = serde_json::from_str(json).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| crate::error::chain(&e))?;
        Ok(r)
    }

    #[test]
    fn rules_parse_with_their_defaults() {
        let r = rule(
            r#"{"direction":"ingress","protocol":"tcp","ports":"22","remote_cidr":"10.0.0.0/8"}"#,
        )
        .unwrap();
        assert_eq!(r.action, SgAction::Allow);
        assert_eq!(
            r.ports,
            Some(SgPortRange {
                first: 22,
                last: 22
            })
        );
        assert_eq!(
            r.remote(),
            Some(SgRemote::Cidr(Ipv4Addr::new(10, 0, 0, 0), 8))
        );
        assert_eq!(r.describe(), "allow ingress tcp 22 from 10.0.0.0/8");
        let r = rule(r#"{"direction":"egress","remote_group":"db","action":"deny"}"#).unwrap();
        assert_eq!(r.protocol, SgProtocol::Any);
        assert_eq!(r.describe(), "deny egress any to group db");
        let r = rule(r#"{"direction":"ingress","protocol":47,"remote_cidr":"0.0.0.0/0"}"#).unwrap();
        assert_eq!(r.protocol.number(), Some(47));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["protocol"], "47");
        let r = rule(r#"{"direction":"ingress","protocol":"6","ports":"8000-8080","remote_cidr":"1.2.3.4/32"}"#)
            .unwrap();
        assert_eq!(r.protocol, SgProtocol::Tcp);
        assert_eq!(serde_json::to_value(r).unwrap()["ports"], "8000-8080");
    }

    #[test]
    fn bad_rules_say_why() {
        for (json, want) in [
            (r#"{"direction":"ingress"}"#, "a rule names its remote"),
            (
                r#"{"direction":"ingress","remote_cidr":"10.0.0.0/8","remote_group":"a"}"#,
                "a rule names one remote",
            ),
            (
                r#"{"direction":"ingress","remote_cidr":"10.0.0.1/8"}"#,
                "remote_cidr '10.0.0.1/8' is not an IPv4 prefix",
            ),
            (
                r#"{"direction":"ingress","remote_cidr":"10.0.0.1"}"#,
                "remote_cidr '10.0.0.1' is not an IPv4 prefix",
            ),
            (
                r#"{"direction":"ingress","remote_group":"Bad_Name"}"#,
                "remote_group: ",
            ),
            (
                r#"{"direction":"ingress","protocol":"icmp","ports":"80","remote_cidr":"0.0.0.0/0"}"#,
                "ports are for tcp and udp rules only, not icmp",
            ),
            (
                r#"{"direction":"ingress","protocol":"tcp","ports":"0","remote_cidr":"0.0.0.0/0"}"#,
                "'0' is not a port",
            ),
            (
                r#"{"direction":"ingress","protocol":"tcp","ports":"90-80","remote_cidr":"0.0.0.0/0"}"#,
                "'90-80' is not a port",
            ),
            (
                r#"{"direction":"ingress","protocol":"gre","remote_cidr":"0.0.0.0/0"}"#,
                "'gre' is not a protocol",
            ),
            (
                r#"{"direction":"ingress","protocol":"256","remote_cidr":"0.0.0.0/0"}"#,
                "'256' is not a protocol",
            ),
            (
                r#"{"direction":"up","remote_cidr":"0.0.0.0/0"}"#,
                "unknown variant",
            ),
        ] {
            let e = rule(json).expect_err(json);
            assert!(e.starts_with(want) || e.contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn groups_name_the_rule_that_is_wrong() {
        let mut g = SecurityGroup {
            name: "web".into(),
            description: Some("front".into()),
            rules: vec![serde_json::from_str(
                r#"{"direction":"ingress","remote_cidr":"0.0.0.0/0"}"#,
            )
            .unwrap()],
        };
        g.validate().unwrap();
        g.rules.push(g.rules[0].clone());
        g.rules[1].remote_cidr = None;
        assert_eq!(
            crate::error::chain(&g.validate().unwrap_err()),
            "rule 1: a rule names its remote: remote_cidr or remote_group"
        );
        g.name = "Web".into();
        assert!(
            crate::error::chain(&g.validate().unwrap_err()).starts_with("security group name: ")
        );
        g.name = "web".into();
        g.rules.truncate(1);
        g.description = Some("x".repeat(MAX_DESCRIPTION + 1));
        assert_eq!(g.validate(), Err(SecurityGroupError::Description));
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("0.0.0.0/0"), Some((Ipv4Addr::UNSPECIFIED, 0)));
        assert_eq!(
            parse_prefix("10.1.2.3"),
            Some((Ipv4Addr::new(10, 1, 2, 3), 32))
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/+8",
        ] {
            assert_eq!(parse_prefix(bad), None, "{bad}");
        }
    }
}
