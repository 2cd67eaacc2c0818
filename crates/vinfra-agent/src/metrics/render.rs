//! A [`ScrapeSnapshot`] into the Prometheus text format, written family by family straight
//! into one `String` ([`super::text`]): every value comes from the snapshot, so a series of a
//! VM, port or network that is gone is in no later scrape. Each VM's and each port's labels
//! are escaped once and written in every family of theirs.

use std::collections::HashMap;

use uuid::Uuid;
use vinfra_types::network::TrafficCounters;
use vinfra_types::PowerState;

use super::names::*;
use super::snapshot::{ScrapeSnapshot, SwitchSample};
use super::text::{FamilyKind, Labels, Text, Value};

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

/// Bytes of text to reserve per VM (about 13 series of 70 bytes with one NIC).
const BYTES_PER_VM: usize = 1024;

/// The text of `GET /metrics` for `s`.
pub fn render(s: &ScrapeSnapshot) -> String {
    let mut t = Text::with_capacity(4096 + s.vms.len() * BYTES_PER_VM);
    vms(&mut t, s);
    begin(&mut t, CONSOLE_CONNECTED, FamilyKind::Gauge);
    t.series(&Labels::NONE, f64::from(u8::from(s.console_connected)));
    begin(&mut t, CONSOLE_CONTACT_AGE, FamilyKind::Gauge);
    if let Some(age) = s.contact_age {
        t.series(&Labels::NONE, age.as_secs_f64());
    }
    begin(&mut t, REPORTS_SENT, FamilyKind::Counter);
    t.series(&Labels::NONE, s.reports_sent);
    switch(&mut t, s);
    t.finish()
}

/// Starts the family `name` with its help from [`HELP`].
fn begin(t: &mut Text, name: &'static str, kind: FamilyKind) {
    let help = HELP
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, h)| *h);
    t.family(name, help, kind);
}

/// The family `name`: a series for each row that has a value.
fn family<'a, R: 'a, V: Value>(
    t: &mut Text,
    name: &'static str,
    kind: FamilyKind,
    rows: impl IntoIterator<Item = &'a R>,
    f: impl Fn(&'a R) -> Option<(&'a Labels, V)>,
) {
    begin(t, name, kind);
    for (labels, value) in rows.into_iter().filter_map(f) {
        t.series(labels, value);
    }
}

/// A VM's values.
struct VmRow {
    labels: Labels,
    up: bool,
    vcpus: u32,
    memory: u64,
    /// CPU milliseconds and resident bytes, while its QEMU runs.
    process: Option<(u64, u64)>,
    disk: Option<(u64, u64)>,
}

fn vms(t: &mut Text, s: &ScrapeSnapshot) {
    let mut by_state: HashMap<&'static str, u64> = HashMap::new();
    let rows: Vec<VmRow> = s
        .vms
        .iter()
        .map(|vm| {
            let obs = vm.observed.as_ref();
            let state = obs.map_or(PowerState::Unknown, |o| o.state);
            *by_state.entry(state.as_str()).or_default() += 1;
            let up = obs.is_some_and(|o| o.pid.is_some() && !o.unresponsive)
                && !matches!(
                    state,
                    PowerState::Stopped | PowerState::Crashed | PowerState::Unknown
                );
            VmRow {
                labels: Labels::new(&[("vm", &vm.name)]),
                up,
                vcpus: vm.vcpus,
                memory: vm.memory_mib << 20,
                process: obs
                    .filter(|o| o.pid.is_some())
                    .map(|o| (o.usage.cpu_time_ms, o.usage.rss_mib << 20)),
                disk: s.disk_io.get(&vm.id).copied(),
            }
        })
        .collect();
    begin(t, VMS, FamilyKind::Gauge);
    for state in STATES {
        let n = by_state.get(state.as_str()).copied().unwrap_or(0);
        t.series_with(&Labels::NONE, Some(("state", state.as_str())), n as f64);
    }
    family(t, VM_UP, FamilyKind::Gauge, &rows, |r| {
        Some((&r.labels, f64::from(u8::from(r.up))))
    });
    // Milliseconds: the counters are integers.
    family(t, VM_CPU, FamilyKind::Counter, &rows, |r| {
        Some((&r.labels, r.process?.0))
    });
    family(t, VM_VCPUS, FamilyKind::Gauge, &rows, |r| {
        Some((&r.labels, f64::from(r.vcpus)))
    });
    family(t, VM_MEMORY, FamilyKind::Gauge, &rows, |r| {
        Some((&r.labels, r.memory as f64))
    });
    family(t, VM_RSS, FamilyKind::Gauge, &rows, |r| {
        Some((&r.labels, r.process?.1 as f64))
    });
    family(t, VM_DISK_READ, FamilyKind::Counter, &rows, |r| {
        Some((&r.labels, r.disk?.0))
    });
    family(t, VM_DISK_WRITTEN, FamilyKind::Counter, &rows, |r| {
        Some((&r.labels, r.disk?.1))
    });
}

/// A port's or a network's values.
struct TrafficRow<'a> {
    labels: Labels,
    traffic: &'a TrafficCounters,
    /// A port's I/O errors (receive, send), where the switch has them.
    errors: Option<(u64, u64)>,
}

/// The four traffic families and the drops of `rows`, named by `names`.
fn traffic(t: &mut Text, names: [&'static str; 5], rows: &[TrafficRow]) {
    let [rx_p, rx_b, tx_p, tx_b, drops] = names;
    let c = FamilyKind::Counter;
    family(t, rx_p, c, rows, |r| {
        Some((&r.labels, r.traffic.rx_packets))
    });
    family(t, rx_b, c, rows, |r| Some((&r.labels, r.traffic.rx_bytes)));
    family(t, tx_p, c, rows, |r| {
        Some((&r.labels, r.traffic.tx_packets))
    });
    family(t, tx_b, c, rows, |r| Some((&r.labels, r.traffic.tx_bytes)));
    begin(t, drops, c);
    for r in rows {
        for (reason, n) in &r.traffic.drops {
            t.series_with(&r.labels, Some(("reason", reason)), *n);
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

fn switch(t: &mut Text, s: &ScrapeSnapshot) {
    let (view, named) = match &s.switch {
        SwitchSample::None => return,
        SwitchSample::Down => {
            begin(t, SWITCH_UP, FamilyKind::Gauge);
            t.series(&Labels::NONE, 0.0);
            return;
        }
        SwitchSample::Up(both) => (&both.0, &both.1),
    };
    begin(t, SWITCH_UP, FamilyKind::Gauge);
    t.series(&Labels::NONE, 1.0);
    let names: HashMap<Uuid, &str> = s.vms.iter().map(|v| (v.id, v.name.as_str())).collect();
    let mut ports: Vec<TrafficRow> = named
        .ports
        .iter()
        .map(|p| {
            let id = p.vm_id.to_string();
            let vm = names.get(&p.vm_id).copied().unwrap_or(&id);
            TrafficRow {
                labels: Labels::new(&[
                    ("port", "vm"),
                    ("vm", vm),
                    ("nic", &p.nic.to_string()),
                    ("network", &p.network),
                ]),
                traffic: &p.traffic,
                errors: Some((p.rx_errors, p.tx_errors)),
            }
        })
        .collect();
    for (port, traffic, id) in [
        ("uplink", &named.uplink, vinfra_switch_control::UPLINK_PORT),
        (
            "trunk",
            &named.trunk,
            crate::network::attachment::TRUNK_PORT,
        ),
    ] {
        if let Some(traffic) = traffic {
            ports.push(TrafficRow {
                labels: Labels::new(&[("port", port)]),
                traffic,
                errors: view.port(id).map(|c| (c.rx_errors, c.tx_errors)),
            });
        }
    }
    traffic(t, PORT, &ports);
    begin(t, PORT_ERRORS, FamilyKind::Counter);
    for r in &ports {
        if let Some((rx, tx)) = r.errors {
            t.series_with(&r.labels, Some(("direction", "rx")), rx);
            t.series_with(&r.labels, Some(("direction", "tx")), tx);
        }
    }

    let networks: Vec<TrafficRow> = named
        .networks
        .iter()
        .map(|n| TrafficRow {
            labels: Labels::new(&[("network", &n.network)]),
            traffic: &n.traffic,
            errors: None,
        })
        .collect();
    traffic(t, NETWORK, &networks);
    let c = FamilyKind::Counter;
    let flooded = named.networks.iter().map(|n| n.flooded);
    begin(t, NETWORK_FLOODED, c);
    for (r, n) in networks.iter().zip(flooded) {
        t.series(&r.labels, n);
    }
    let suppressed = named.networks.iter().map(|n| n.arp_suppressed);
    begin(t, NETWORK_ARP_SUPPRESSED, c);
    for (r, n) in networks.iter().zip(suppressed) {
        t.series(&r.labels, n);
    }

    begin(t, SWITCH_DROPS, c);
    for (reason, n) in &named.switch_drops {
        t.series_with(&Labels::NONE, Some(("reason", reason)), *n);
    }

    let routers: Vec<Labels> = named
        .routers
        .iter()
        .map(|r| Labels::new(&[("router", &r.router)]))
        .collect();
    begin(t, ROUTER_ROUTED, c);
    for (labels, r) in routers.iter().zip(&named.routers) {
        t.series(labels, r.routed_packets);
    }
    begin(t, ROUTER_DROPS, c);
    for (labels, r) in routers.iter().zip(&named.routers) {
        for (reason, n) in &r.drops {
            t.series_with(labels, Some(("reason", reason)), *n);
        }
    }

    if !view.rx_batches.is_empty() {
        begin(t, RX_BATCHES, c);
        let mut frames = 0u64;
        for (size, n) in view.rx_batches.iter().enumerate().skip(1) {
            t.series_with(&Labels::NONE, Some(("frames", &size.to_string())), *n);
            frames = frames.saturating_add((size as u64).saturating_mul(*n));
        }
        begin(t, RX_BATCH_FRAMES, c);
        t.series(&Labels::NONE, frames);
    }

    if let Some(f) = view.fast_path.as_deref() {
        begin(t, FAST_FLOWS, FamilyKind::Gauge);
        t.series(&Labels::NONE, f.flows);
        for (name, value) in [
            (FAST_FRAMES, f.frames),
            (FAST_BYTES, f.bytes),
            (FAST_FLUSHES, f.flushes),
        ] {
            begin(t, name, c);
            t.series(&Labels::NONE, value);
        }
    }
}
