//! What the lists of the REST API can be narrowed to: `GET /hosts?status=connected`,
//! `GET /events?vm=web-1`, `GET /routers?network=blue`, … One filter per list; each of its tests
//! is optional, and an item passes when it passes every test given (none given: every item).
//!
//! Each filter says which items it lets through ([`ListFilter::lets`]), which of its values
//! must be names ([`ListFilter::check`]) and how it is written as query parameters
//! ([`ListFilter::pairs`]): the console's next-page links and the client's paths are written
//! from the same words. The VMs' filter is [`VmFilter`] (in [`crate::api`], the console tests
//! its host and network on the records and its state on the hosts' reports); the tasks' is
//! [`crate::task::TaskFilter`] (its target a name or a number).

use serde::Serialize;

use crate::api::{Event, RevokedCertificate, VmFilter};
use crate::auth::{Role, TokenState, TokenSummary};
use crate::balancing::{PlacementRule, Recommendation, RuleKind, RuleStrength};
use crate::host::{HostStatus, HostSummary};
use crate::network::{NetworkKind, NetworkSummary};
use crate::router::{FloatingIpSummary, RouterSummary};
use crate::security_group::SecurityGroupSummary;
use crate::vm::VmSummary;
use crate::NameError;

/// A filter's value that its parameter does not take: a name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter '{param}'")]
pub struct FilterError {
    /// The query parameter.
    pub param: &'static str,
    /// Why its value is not a name.
    #[source]
    pub source: NameError,
}

/// The filter of one list.
pub trait ListFilter: Default {
    /// What the list lists.
    type Item;

    /// Whether `item` passes every test given.
    fn lets(&self, item: &Self::Item) -> bool;

    /// The tests given, as query parameters (`("status", "connected")`), always in the same
    /// order; empty when none is.
    fn pairs(&self) -> Vec<(&'static str, String)>;

    /// The values given that must be names, with their parameters.
    fn names(&self) -> Vec<(&'static str, &str)>;

    /// Checks that every value that must be a name is one.
    fn check(&self) -> Result<(), FilterError> {
        for (param, value) in self.names() {
            crate::validate_name(value).map_err(|source| FilterError { param, source })?;
        }
        Ok(())
    }

    /// True when it lets every item through.
    fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
}

/// An enum's word as the API writes it (its serde name: `connected`, `anti_affinity`, …).
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The pairs of the values given, in the order given.
fn given<const N: usize>(
    pairs: [(&'static str, Option<String>); N],
) -> Vec<(&'static str, String)> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// The names given, in the order given.
fn named<'a, const N: usize>(
    names: [(&'static str, Option<&'a String>); N],
) -> Vec<(&'static str, &'a str)> {
    names
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v.as_str())))
        .collect()
}

/// Whether the test `want` (if given) holds of `have`.
fn is(want: &Option<String>, have: &str) -> bool {
    want.as_deref().is_none_or(|w| w == have)
}

impl ListFilter for VmFilter {
    type Item = VmSummary;

    fn lets(&self, v: &VmSummary) -> bool {
        self.placed(&v.host, &v.spec) && self.state.is_none_or(|s| s == v.state)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("host", self.host.clone()),
            ("state", self.state.map(|s| word(&s))),
            ("network", self.network.clone()),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([
            ("host", self.host.as_ref()),
            ("network", self.network.as_ref()),
        ])
    }
}

/// `GET /hosts`: the hosts whose agent is connected or not, in maintenance or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFilter {
    /// Only the hosts whose agent is in this state (the `status` the list shows).
    pub status: Option<HostStatus>,
    /// Only the hosts in maintenance (`true`) or out of it (`false`).
    pub maintenance: Option<bool>,
}

impl ListFilter for HostFilter {
    type Item = HostSummary;

    fn lets(&self, h: &HostSummary) -> bool {
        self.status.is_none_or(|s| s == h.status)
            && self.maintenance.is_none_or(|m| m == h.maintenance)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("status", self.status.map(|s| word(&s))),
            ("maintenance", self.maintenance.map(|m| m.to_string())),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// `GET /tokens`: the API tokens of a role, in a state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// Only the tokens of this role.
    pub role: Option<Role>,
    /// Only the tokens in this state (`active`, `expired`, `revoked`).
    pub state: Option<TokenState>,
}

impl ListFilter for TokenFilter {
    type Item = TokenSummary;

    fn lets(&self, t: &TokenSummary) -> bool {
        self.role.is_none_or(|r| r == t.role) && self.state.is_none_or(|s| s == t.state)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("role", self.role.map(|r| word(&r))),
            ("state", self.state.map(|s| word(&s))),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// The kinds of the events whose object is a VM: its life cycle, its migrations, the
/// balancer's moves of it.
pub const VM_EVENT_KINDS: [&str; 3] = ["vm", "migration", "drs"];

/// The kind of the events whose object is a host.
pub const HOST_EVENT_KIND: &str = "host";

/// `GET /events`: the events of a kind, about a VM, about a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only the events of this kind (`vm`, `host`, `migration`, `drs`, `network`, `router`,
    /// `security-group`, `rule`, `token`, `cluster`, `certificate`).
    pub kind: Option<String>,
    /// Only the events about this VM: of a kind in [`VM_EVENT_KINDS`], with the VM as their
    /// object.
    pub vm: Option<String>,
    /// Only the events about this host: of kind [`HOST_EVENT_KIND`], with the host as their
    /// object.
    pub host: Option<String>,
}

impl ListFilter for EventFilter {
    type Item = Event;

    fn lets(&self, e: &Event) -> bool {
        is(&self.kind, &e.kind)
            && self
                .vm
                .as_deref()
                .is_none_or(|v| v == e.object && VM_EVENT_KINDS.contains(&e.kind.as_str()))
            && self
                .host
                .as_deref()
                .is_none_or(|h| h == e.object && e.kind == HOST_EVENT_KIND)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("kind", self.kind.clone()),
            ("vm", self.vm.clone()),
            ("host", self.host.clone()),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([
            ("kind", self.kind.as_ref()),
            ("vm", self.vm.as_ref()),
            ("host", self.host.as_ref()),
        ])
    }
}

/// `GET /revoked-certificates`: the certificates of one removed host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedCertificateFilter {
    /// Only the certificates issued to this host.
    pub host: Option<String>,
}

impl ListFilter for RevokedCertificateFilter {
    type Item = RevokedCertificate;

    fn lets(&self, c: &RevokedCertificate) -> bool {
        is(&self.host, &c.host)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([("host", self.host.clone())])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([("host", self.host.as_ref())])
    }
}

/// `GET /rules`: the placement rules naming a VM, naming a host, of a kind, of a strength.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleFilter {
    /// Only the rules naming this VM.
    pub vm: Option<String>,
    /// Only the rules naming this host (`run_on`, `not_on`).
    pub host: Option<String>,
    /// Only the rules of this kind.
    pub kind: Option<RuleKind>,
    /// Only the rules of this strength.
    pub strength: Option<RuleStrength>,
}

impl ListFilter for RuleFilter {
    type Item = PlacementRule;

    fn lets(&self, r: &PlacementRule) -> bool {
        self.vm.as_ref().is_none_or(|v| r.vms.contains(v))
            && self.host.as_ref().is_none_or(|h| r.hosts.contains(h))
            && self.kind.is_none_or(|k| k == r.kind)
            && self.strength.is_none_or(|s| s == r.strength)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("vm", self.vm.clone()),
            ("host", self.host.clone()),
            ("kind", self.kind.map(|k| word(&k))),
            ("strength", self.strength.map(|s| word(&s))),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([("vm", self.vm.as_ref()), ("host", self.host.as_ref())])
    }
}

/// `GET /drs/recommendations`: the moves of a VM, from or to a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecommendationFilter {
    /// Only the moves of this VM (the VM moved, or one moving with it).
    pub vm: Option<String>,
    /// Only the moves from or to this host.
    pub host: Option<String>,
}

impl ListFilter for RecommendationFilter {
    type Item = Recommendation;

    fn lets(&self, r: &Recommendation) -> bool {
        self.vm
            .as_ref()
            .is_none_or(|v| *v == r.vm || r.with.contains(v))
            && self
                .host
                .as_ref()
                .is_none_or(|h| *h == r.from || *h == r.to)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([("vm", self.vm.clone()), ("host", self.host.clone())])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([("vm", self.vm.as_ref()), ("host", self.host.as_ref())])
    }
}

/// `GET /networks`: the networks of a kind, with a port on a host, with a port of a VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFilter {
    /// Only the networks of this kind (`overlay`, `vlan`).
    pub kind: Option<NetworkKind>,
    /// Only the networks with a port on this host (a NIC of a VM placed there).
    pub host: Option<String>,
    /// Only the networks with a port of this VM (one of its NICs).
    pub vm: Option<String>,
}

impl ListFilter for NetworkFilter {
    type Item = NetworkSummary;

    fn lets(&self, n: &NetworkSummary) -> bool {
        self.kind.is_none_or(|k| k == n.network.kind)
            && self
                .host
                .as_ref()
                .is_none_or(|h| n.ports.iter().any(|p| p.host == *h))
            && self
                .vm
                .as_ref()
                .is_none_or(|v| n.ports.iter().any(|p| p.vm == *v))
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("kind", self.kind.map(|k| word(&k))),
            ("host", self.host.clone()),
            ("vm", self.vm.clone()),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([("host", self.host.as_ref()), ("vm", self.vm.as_ref())])
    }
}

/// `GET /security-groups`: the groups with a NIC of a VM, with a NIC on a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroupFilter {
    /// Only the groups one of this VM's NICs is in.
    pub vm: Option<String>,
    /// Only the groups a NIC on this network is in.
    pub network: Option<String>,
}

impl ListFilter for SecurityGroupFilter {
    type Item = SecurityGroupSummary;

    fn lets(&self, g: &SecurityGroupSummary) -> bool {
        self.vm
            .as_ref()
            .is_none_or(|v| g.members.iter().any(|m| m.vm == *v))
            && self
                .network
                .as_ref()
                .is_none_or(|n| g.members.iter().any(|m| m.network == *n))
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([("vm", self.vm.clone()), ("network", self.network.clone())])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([("vm", self.vm.as_ref()), ("network", self.network.as_ref())])
    }
}

/// `GET /routers`: the routers on a network, with their edge on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterFilter {
    /// Only the routers with an interface on this network, or their uplink on it.
    pub network: Option<String>,
    /// Only the routers whose uplink's edge (the host that translates their north-south
    /// traffic) is this host.
    pub edge: Option<String>,
}

impl ListFilter for RouterFilter {
    type Item = RouterSummary;

    fn lets(&self, r: &RouterSummary) -> bool {
        self.network.as_ref().is_none_or(|n| {
            r.interfaces.iter().any(|i| i.network == *n)
                || r.uplink.as_ref().is_some_and(|u| u.network == *n)
        }) && self.edge.as_ref().is_none_or(|h| {
            r.uplink
                .as_ref()
                .is_some_and(|u| u.edge.as_ref() == Some(h))
        })
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("network", self.network.clone()),
            ("edge", self.edge.clone()),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([
            ("network", self.network.as_ref()),
            ("edge", self.edge.as_ref()),
        ])
    }
}

/// `GET /floating-ips`: the floating IPs of a VM, of a router, to a NIC on a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloatingIpFilter {
    /// Only this VM's.
    pub vm: Option<String>,
    /// Only those on this router's uplink.
    pub router: Option<String>,
    /// Only those of a NIC on this network (the internal one, attached to the router).
    pub network: Option<String>,
}

impl ListFilter for FloatingIpFilter {
    type Item = FloatingIpSummary;

    fn lets(&self, f: &FloatingIpSummary) -> bool {
        is(&self.vm, &f.vm) && is(&self.router, &f.router) && is(&self.network, &f.network)
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        given([
            ("vm", self.vm.clone()),
            ("router", self.router.clone()),
            ("network", self.network.clone()),
        ])
    }

    fn names(&self) -> Vec<(&'static str, &str)> {
        named([
            ("vm", self.vm.as_ref()),
            ("router", self.router.as_ref()),
            ("network", self.network.as_ref()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, object: &str) -> Event {
        Event {
            seq: 1,
            at: 0,
            kind: kind.into(),
            object: object.into(),
            message: String::new(),
            actor: None,
        }
    }

    #[test]
    fn events_about_a_vm_or_a_host_are_those_of_its_kinds() {
        let all = [
            event("vm", "web"),
            event("migration", "web"),
            event("drs", "web"),
            event("host", "web"),
            event("rule", "web"),
            event("vm", "db"),
            event("host", "h1"),
        ];
        let pass = |f: &EventFilter| -> Vec<usize> {
            (0..all.len()).filter(|i| f.lets(&all[*i])).collect()
        };
        let vm = EventFilter {
            vm: Some("web".into()),
            ..Default::default()
        };
        assert_eq!(pass(&vm), [0, 1, 2]);
        let host = EventFilter {
            host: Some("web".into()),
            ..Default::default()
        };
        assert_eq!(pass(&host), [3]);
        let both = EventFilter {
            kind: Some("migration".into()),
            vm: Some("web".into()),
            host: None,
        };
        assert_eq!(pass(&both), [1]);
        assert_eq!(pass(&EventFilter::default()).len(), all.len());
        assert_eq!(
            both.pairs(),
            [("kind", "migration".into()), ("vm", "web".into())]
        );
        assert!(EventFilter::default().is_empty() && !both.is_empty());
    }

    #[test]
    fn rules_recommendations_routers_and_floating_ips_by_what_they_name() {
        let rule = PlacementRule {
            name: "r".into(),
            strength: RuleStrength::Should,
            kind: RuleKind::NotOn,
            vms: vec!["a".into(), "b".into()],
            hosts: vec!["h1".into()],
        };
        let f = |vm: Option<&str>, host: Option<&str>, kind, strength| RuleFilter {
            vm: vm.map(str::to_string),
            host: host.map(str::to_string),
            kind,
            strength,
        };
        assert!(f(Some("b"), Some("h1"), Some(RuleKind::NotOn), None).lets(&rule));
        assert!(!f(Some("c"), None, None, None).lets(&rule));
        assert!(!f(None, Some("h2"), None, None).lets(&rule));
        assert!(!f(None, None, Some(RuleKind::RunOn), None).lets(&rule));
        assert!(!f(None, None, None, Some(RuleStrength::Must)).lets(&rule));
        assert_eq!(
            f(
                None,
                Some("h1"),
                Some(RuleKind::AntiAffinity),
                Some(RuleStrength::Must)
            )
            .pairs(),
            [
                ("host", "h1".into()),
                ("kind", "anti_affinity".into()),
                ("strength", "must".into())
            ]
        );

        let rec: Recommendation = serde_json::from_value(serde_json::json!({
            "id": 1, "vm": "a", "from": "h1", "to": "h2", "reason": "", "with": ["b"],
            "expected_gain": {"imbalance": 0.0, "traffic_bytes_per_s": 0, "should_violations": 0,
                "memory_mib": 0, "score": 0.0}
        }))
        .unwrap();
        let r = |vm: Option<&str>, host: Option<&str>| RecommendationFilter {
            vm: vm.map(str::to_string),
            host: host.map(str::to_string),
        };
        for (yes, filter) in [
            (true, r(Some("a"), None)),
            (true, r(Some("b"), Some("h2"))),
            (true, r(None, Some("h1"))),
            (false, r(Some("c"), None)),
            (false, r(Some("a"), Some("h3"))),
        ] {
            assert_eq!(filter.lets(&rec), yes, "{filter:?}");
        }

        let router: RouterSummary = serde_json::from_value(serde_json::json!({
            "name": "r1", "id": 1, "routes": [], "created_at": 0,
            "interfaces": [{"network": "blue", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1",
                "gateway_mac": "02:76:72:00:00:01"}],
            "uplink": {"network": "ext", "subnet": "10.82.0.0/24", "ip": "10.82.0.10",
                "mac": "02:76:72:01:00:01", "edge": "h2", "transit_vni": 16711681}
        }))
        .unwrap();
        let rf = |network: Option<&str>, edge: Option<&str>| RouterFilter {
            network: network.map(str::to_string),
            edge: edge.map(str::to_string),
        };
        assert!(rf(Some("blue"), None).lets(&router));
        assert!(rf(Some("ext"), Some("h2")).lets(&router));
        assert!(!rf(Some("red"), None).lets(&router));
        assert!(!rf(None, Some("h1")).lets(&router));

        let fip = FloatingIpSummary {
            ip: "10.82.0.20".into(),
            vm: "a".into(),
            nic: 0,
            network: "blue".into(),
            internal: "10.0.0.5".into(),
            router: "r1".into(),
        };
        let ff = |vm: Option<&str>, router: Option<&str>, network: Option<&str>| FloatingIpFilter {
            vm: vm.map(str::to_string),
            router: router.map(str::to_string),
            network: network.map(str::to_string),
        };
        assert!(ff(Some("a"), Some("r1"), Some("blue")).lets(&fip));
        assert!(!ff(Some("b"), None, None).lets(&fip));
        assert!(!ff(None, Some("r2"), None).lets(&fip));
        assert!(!ff(None, None, Some("red")).lets(&fip));
    }

    #[test]
    fn words_are_the_apis_and_names_are_checked() {
        let hosts = HostFilter {
            status: Some(HostStatus::Disconnected),
            maintenance: Some(false),
        };
        assert_eq!(
            hosts.pairs(),
            [
                ("status", "disconnected".into()),
                ("maintenance", "false".into())
            ]
        );
        let tokens = TokenFilter {
            role: Some(Role::Operator),
            state: Some(TokenState::Revoked),
        };
        assert_eq!(
            tokens.pairs(),
            [("role", "operator".into()), ("state", "revoked".into())]
        );
        let networks = NetworkFilter {
            kind: Some(NetworkKind::Vlan),
            ..Default::default()
        };
        assert_eq!(networks.pairs(), [("kind", "vlan".into())]);
        assert_eq!(hosts.check(), Ok(()));
        let bad = SecurityGroupFilter {
            vm: Some("web".into()),
            network: Some("Blue/1".into()),
        };
        let e = bad.check().unwrap_err();
        assert_eq!(e.param, "network");
        assert!(matches!(e.source, NameError::BadChar { .. }));
        assert_eq!(e.to_string(), "filter 'network'");
        let empty = RevokedCertificateFilter {
            host: Some(String::new()),
        };
        assert_eq!(empty.check().unwrap_err().source, NameError::Empty);
    }
}
