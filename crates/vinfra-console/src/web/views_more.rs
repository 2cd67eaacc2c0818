//! The templates of the host, network, placement rule, balancer and settings pages, and
//! what they show.

use askama::Template;
use vinfra_types::balancing::{PlacementRule, PlanSummary, Recommendation};
use vinfra_types::network::{
    NetworkHostCounters, NetworkPort, NetworkPortCounters, NetworkSummary, TrafficCounters,
};

use super::views::{when, EventRow, HostRow, Nav, TaskView, VmRow};

/// `GET /hosts/{name}`.
#[derive(Template)]
#[template(path = "web/host.html")]
pub struct HostPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The host, its capacity and use.
    pub host: HostRow,
    /// Its QEMU's version.
    pub qemu: String,
    /// KVM or TCG.
    pub accel: String,
    /// Its HA state (empty when the session may not read it).
    pub ha_state: String,
    /// Why it is in that state.
    pub ha_detail: String,
    /// The VMs placed on it.
    pub vms: Vec<VmRow>,
    /// Whether the session may switch its maintenance.
    pub may_maintain: bool,
    /// Its CPU and memory over the last hour.
    pub usage: super::graphs::UsageBox,
}

/// A value as the API writes it (`"manual"`, `"anti_affinity"`).
pub fn words<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// One network.
pub struct NetworkRow {
    /// Its name.
    pub name: String,
    /// `overlay` or `vlan`.
    pub kind: String,
    /// Its VNI or VLAN ID.
    pub segment: String,
    /// Its subnet.
    pub subnet: String,
    /// Its gateway, if any.
    pub gateway: String,
    /// Its MTU.
    pub mtu: u32,
    /// How many ports it has.
    pub ports: usize,
}

impl From<&NetworkSummary> for NetworkRow {
    fn from(n: &NetworkSummary) -> Self {
        let net = &n.network;
        let segment = match (net.vni, net.vlan_id) {
            (Some(vni), _) => format!("VNI {vni}"),
            (_, Some(vlan)) => format!("VLAN {vlan}"),
            _ => String::new(),
        };
        NetworkRow {
            name: net.name.clone(),
            kind: net.kind.as_str().to_string(),
            segment,
            subnet: net.subnet.clone(),
            gateway: net.gateway.clone().unwrap_or_default(),
            mtu: net.mtu,
            ports: n.ports.len(),
        }
    }
}

/// Traffic in words (empty when unknown).
pub struct Traffic {
    /// Received packets and bytes.
    pub rx: String,
    /// Sent packets and bytes.
    pub tx: String,
    /// Dropped packets.
    pub drops: String,
}

impl Traffic {
    fn of(c: Option<&TrafficCounters>) -> Traffic {
        match c {
            Some(c) => Traffic {
                rx: format!("{} pkts, {} B", c.rx_packets, c.rx_bytes),
                tx: format!("{} pkts, {} B", c.tx_packets, c.tx_bytes),
                drops: c.drops_total().to_string(),
            },
            None => Traffic {
                rx: String::new(),
                tx: String::new(),
                drops: String::new(),
            },
        }
    }
}

/// One port of a network, with its counters when read.
pub struct PortRow {
    /// The VM.
    pub vm: String,
    /// The NIC's index.
    pub nic: usize,
    /// The VM's host.
    pub host: String,
    /// Its MAC address.
    pub mac: String,
    /// Its IP address.
    pub ip: String,
    /// Its traffic.
    pub traffic: Traffic,
    /// Why its counters could not be read.
    pub error: String,
}

impl From<&NetworkPort> for PortRow {
    fn from(p: &NetworkPort) -> Self {
        PortRow {
            vm: p.vm.clone(),
            nic: p.nic,
            host: p.host.clone(),
            mac: p.mac.clone(),
            ip: p.ip.clone(),
            traffic: Traffic::of(None),
            error: String::new(),
        }
    }
}

impl From<&NetworkPortCounters> for PortRow {
    fn from(p: &NetworkPortCounters) -> Self {
        PortRow {
            traffic: Traffic::of(p.counters.as_ref()),
            error: p.error.clone().unwrap_or_default(),
            ..PortRow::from(&p.port)
        }
    }
}

/// A host's share of a network's traffic.
pub struct CounterRow {
    /// The host.
    pub host: String,
    /// Its traffic on the network.
    pub traffic: Traffic,
}

impl From<&NetworkHostCounters> for CounterRow {
    fn from(h: &NetworkHostCounters) -> Self {
        CounterRow {
            host: h.host.clone(),
            traffic: Traffic::of(h.counters.as_ref()),
        }
    }
}

/// `GET /networks`.
#[derive(Template)]
#[template(path = "web/networks.html")]
pub struct NetworksPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The networks.
    pub networks: Vec<NetworkRow>,
}

/// `GET /networks/{name}`.
#[derive(Template)]
#[template(path = "web/network.html")]
pub struct NetworkPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The network.
    pub network: NetworkRow,
    /// Its ports.
    pub ports: Vec<PortRow>,
    /// Its traffic per host.
    pub hosts: Vec<CounterRow>,
    /// Why the counters could not be read.
    pub counters_error: String,
}

/// One placement rule.
pub struct RuleRow {
    /// Its name.
    pub name: String,
    /// `must` or `should`.
    pub strength: String,
    /// What it asks.
    pub kind: String,
    /// Its VMs.
    pub vms: String,
    /// Its hosts.
    pub hosts: String,
}

impl From<&PlacementRule> for RuleRow {
    fn from(r: &PlacementRule) -> Self {
        RuleRow {
            name: r.name.clone(),
            strength: words(&r.strength),
            kind: r.kind.as_str().to_string(),
            vms: r.vms.join(", "),
            hosts: r.hosts.join(", "),
        }
    }
}

/// The rule form's values, as typed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct RuleForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// Its name.
    pub name: String,
    /// `must` or `should`.
    pub strength: String,
    /// `affinity`, `anti_affinity`, `run_on`, `not_on`.
    pub kind: String,
    /// Its VMs, separated by commas or spaces.
    pub vms: String,
    /// Its hosts, likewise.
    pub hosts: String,
}

/// `GET /rules`.
#[derive(Template)]
#[template(path = "web/rules.html")]
pub struct RulesPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The rules.
    pub rules: Vec<RuleRow>,
    /// Whether the session may create and delete rules.
    pub may_edit: bool,
    /// The form's values.
    pub form: RuleForm,
    /// Why the console refused them.
    pub problem: String,
}

/// The balancer's last pass.
pub struct PlanView {
    /// When (UTC).
    pub at: String,
    /// Imbalance before and after.
    pub imbalance: String,
    /// Moves planned and started.
    pub moves: String,
}

impl From<&PlanSummary> for PlanView {
    fn from(p: &PlanSummary) -> Self {
        PlanView {
            at: when(p.at),
            imbalance: format!("{:.3} → {:.3}", p.imbalance_before, p.imbalance_after),
            moves: format!("{} planned, {} started", p.moves, p.started),
        }
    }
}

/// A recommendation waiting.
pub struct RecommendationRow {
    /// Its number.
    pub id: u64,
    /// The VM.
    pub vm: String,
    /// From which host.
    pub from: String,
    /// To which host.
    pub to: String,
    /// Why.
    pub reason: String,
    /// Its score.
    pub score: String,
}

impl From<&Recommendation> for RecommendationRow {
    fn from(r: &Recommendation) -> Self {
        RecommendationRow {
            id: r.id,
            vm: r.vm.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            reason: r.reason.clone(),
            score: format!("{:.3}", r.expected_gain.score),
        }
    }
}

/// `GET /balancer`.
#[derive(Template)]
#[template(path = "web/balancer.html")]
pub struct BalancerPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// `off`, `manual`, `automatic`.
    pub mode: String,
    /// Its level.
    pub level: u8,
    /// Seconds between passes.
    pub interval_s: u64,
    /// When it last ran (UTC), or `never`.
    pub last_run: String,
    /// Its last plan.
    pub last_plan: Option<PlanView>,
    /// Its last error.
    pub last_error: String,
    /// The recommendations waiting.
    pub recommendations: Vec<RecommendationRow>,
    /// Whether the session may apply one.
    pub may_apply: bool,
    /// Whether the session may run a pass.
    pub may_run: bool,
}

/// `GET /settings`.
#[derive(Template)]
#[template(path = "web/settings.html")]
pub struct SettingsPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The session's CSRF token.
    pub csrf: String,
    /// The settings, as JSON.
    pub text: String,
    /// Whether the session may replace them.
    pub may_edit: bool,
    /// Why the console refused the last ones.
    pub problem: String,
}

/// `GET /events`.
#[derive(Template)]
#[template(path = "web/events.html")]
pub struct EventsPage {
    /// Who is logged in.
    pub nav: Option<Nav>,
    /// The newest events first.
    pub events: Vec<EventRow>,
    /// The newest tasks first.
    pub tasks: Vec<TaskView>,
}
