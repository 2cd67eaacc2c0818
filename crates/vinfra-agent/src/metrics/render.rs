//! A [`ScrapeSnapshot`] into the Prometheus text format, through a `metrics-exporter-prometheus`
//! recorder made for the scrape (never the process's global recorder): every value is set
//! from the snapshot, so a series of a VM, port or network that is gone is in no later scrape.

use std::collections::HashMap;

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use uuid::Uuid;
use vinfra_types::network::TrafficCounters;
use vinfra_types::PowerState;

use super::names::*;
use super::snapshot::{ScrapeSnapshot, SwitchSample};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The states of [`VMS`], each set at every scrape (0 when no VM is in it).
const STATES: [PowerState; 7] = [
    PowerState::Running,
    PowerState::Paused,
    PowerState::Stopped,
    PowerState::Incoming,
    PowerState::Migrating,
    PowerState::Crashed,
    PowerState::Unknown,
];

/// The scrape's recorder.
struct Out(PrometheusRecorder);

impl Out {
    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.0
            .register_gauge(&Self::key(name, labels), &METADATA)
            .set(value);
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        self.0
            .register_counter(&Self::key(name, labels), &METADATA)
            .absolute(value);
    }

    /// A port's or a network's traffic: four counters and its drops by reason.
    fn traffic(
        &self,
        names: [&'static str; 5],
        labels: &[(&'static str, &str)],
        t: &TrafficCounters,
    ) {
        let [rx_p, rx_b, tx_p, tx_b, drops] = names;
        self.counter(rx_p, labels, t.rx_packets);
        self.counter(rx_b, labels, t.rx_bytes);
        self.counter(tx_p, labels, t.tx_packets);
        self.counter(tx_b, labels, t.tx_bytes);
        for (reason, n) in &t.drops {
            let mut l = labels.to_vec();
            l.push(("reason", reason));
            self.counter(drops, &l, *n);
        }
    }
}

const PORT: [&str; 5] = [
    PORT_RX_PACKETS,
    PORT_RX_BYTES,
    PORT_TX_PACKETS,
    PORT_TX_BYTES,
    PORT_DROPS,
];
const NETWORK: [&str; 5] = [
    NETWORK_RX_PACKETS,
    NETWORK_RX_BYTES,
    NETWORK_TX_PACKETS,
    NETWORK_TX_BYTES,
    NETWORK_DROPS,
];

/// The text of `GET /metrics` for `s`.
pub fn render(s: &ScrapeSnapshot) -> String {
    let out = Out(PrometheusBuilder::new().build_recorder());
    for (name, help) in HELP {
        // One description per name, whatever its kind.
        out.0.describe_counter(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
    }
    vms(&out, s);
    out.gauge(
        CONSOLE_CONNECTED,
        &[],
        f64::from(u8::from(s.console_connected)),
    );
    if let Some(age) = s.contact_age {
        out.gauge(CONSOLE_CONTACT_AGE, &[], age.as_secs_f64());
    }
    out.counter(REPORTS_SENT, &[], s.reports_sent);
    switch(&out, s);
    out.0.handle().render()
}

fn vms(out: &Out, s: &ScrapeSnapshot) {
    let mut by_state: HashMap<&'static str, u64> = HashMap::new();
    for vm in &s.vms {
        let labels = [("vm", vm.name.as_str())];
        let obs = vm.observed.as_ref();
        let state = obs.map_or(PowerState::Unknown, |o| o.state);
        *by_state.entry(state.as_str()).or_default() += 1;
        let up = obs.is_some_and(|o| o.pid.is_some() && !o.unresponsive)
            && !matches!(
                state,
                PowerState::Stopped | PowerState::Crashed | PowerState::Unknown
            );
        out.gauge(VM_UP, &labels, f64::from(u8::from(up)));
        out.gauge(VM_VCPUS, &labels, f64::from(vm.vcpus));
        out.gauge(VM_MEMORY, &labels, (vm.memory_mib << 20) as f64);
        if let Some(o) = obs.filter(|o| o.pid.is_some()) {
            // Milliseconds: the recorder's counters are integers.
            out.counter(VM_CPU, &labels, o.usage.cpu_time_ms);
            out.gauge(VM_RSS, &labels, (o.usage.rss_mib << 20) as f64);
        }
        if let Some((read, written)) = s.disk_io.get(&vm.id) {
            out.counter(VM_DISK_READ, &labels, *read);
            out.counter(VM_DISK_WRITTEN, &labels, *written);
        }
    }
    for state in STATES {
        let n = by_state.get(state.as_str()).copied().unwrap_or(0);
        out.gauge(VMS, &[("state", state.as_str())], n as f64);
    }
}

fn switch(out: &Out, s: &ScrapeSnapshot) {
    let (view, named) = match &s.switch {
        SwitchSample::None => return,
        SwitchSample::Down => {
            out.gauge(SWITCH_UP, &[], 0.0);
            return;
        }
        SwitchSample::Up(both) => (&both.0, &both.1),
    };
    out.gauge(SWITCH_UP, &[], 1.0);
    let names: HashMap<Uuid, &str> = s.vms.iter().map(|v| (v.id, v.name.as_str())).collect();
    for p in &named.ports {
        let id = p.vm_id.to_string();
        let vm = names.get(&p.vm_id).copied().unwrap_or(&id);
        let nic = p.nic.to_string();
        let labels = [
            ("port", "vm"),
            ("vm", vm),
            ("nic", nic.as_str()),
            ("network", p.network.as_str()),
        ];
        out.traffic(PORT, &labels, &p.traffic);
        port_errors(out, &labels, p.rx_errors, p.tx_errors);
    }
    for (port, traffic, id) in [
        ("uplink", &named.uplink, vinfra_switch_control::UPLINK_PORT),
        (
            "trunk",
            &named.trunk,
            crate::network::attachment::TRUNK_PORT,
        ),
    ] {
        if let Some(t) = traffic {
            let labels = [("port", port)];
            out.traffic(PORT, &labels, t);
            if let Some(c) = view.port(id) {
                port_errors(out, &labels, c.rx_errors, c.tx_errors);
            }
        }
    }
    for n in &named.networks {
        let labels = [("network", n.network.as_str())];
        out.traffic(NETWORK, &labels, &n.traffic);
        out.counter(NETWORK_FLOODED, &labels, n.flooded);
        out.counter(NETWORK_ARP_SUPPRESSED, &labels, n.arp_suppressed);
    }
    for (reason, n) in &named.switch_drops {
        out.counter(SWITCH_DROPS, &[("reason", reason)], *n);
    }
    for r in &named.routers {
        let labels = [("router", r.router.as_str())];
        out.counter(ROUTER_ROUTED, &labels, r.routed_packets);
        for (reason, n) in &r.drops {
            out.counter(
                ROUTER_DROPS,
                &[("router", &r.router), ("reason", reason)],
                *n,
            );
        }
    }
    if !view.rx_batches.is_empty() {
        let mut frames = 0u64;
        for (size, n) in view.rx_batches.iter().enumerate().skip(1) {
            out.counter(RX_BATCHES, &[("frames", &size.to_string())], *n);
            frames = frames.saturating_add((size as u64).saturating_mul(*n));
        }
        out.counter(RX_BATCH_FRAMES, &[], frames);
    }
}

fn port_errors(out: &Out, labels: &[(&'static str, &str)], rx: u64, tx: u64) {
    for (direction, n) in [("rx", rx), ("tx", tx)] {
        let mut l = labels.to_vec();
        l.push(("direction", direction));
        out.counter(PORT_ERRORS, &l, n);
    }
}
