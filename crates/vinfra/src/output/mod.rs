//! Output: `--output table|json`, the `out!` macro, JSON printing, tables (comfy-table) and
//! units, the tables shared by several commands.

pub mod usage;

use clap::ValueEnum;
use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use vinfra_types::api::{ClusterSettings, Event};
use vinfra_types::network::{TrafficCounters, VmCounters, VXLAN_OVERHEAD};
use vinfra_types::{GuardView, HostSummary, MigrationProgress, VmSummary};

/// Prints a line to stdout, ignoring a closed pipe (e.g. `vinfra vm list | head -1`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use out;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable tables.
    Table,
    /// The API's JSON body.
    Json,
}

/// Prints `value` as pretty JSON, keys in order (as the API's body reads once parsed).
pub fn print_json<T: Serialize>(value: &T) -> Result<(), serde_json::Error> {
    let text = serde_json::to_value(value).and_then(|v| serde_json::to_string_pretty(&v))?;
    out!("{text}");
    Ok(())
}

/// A table with the CLI's look: no borders, a header row.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new));
    t
}

/// Two-column key/value table.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    for (k, v) in rows {
        t.add_row(vec![Cell::new(format!("{k}:")), Cell::new(v)]);
    }
    trim(t)
}

fn trim(mut t: Table) -> String {
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders a table with trailing spaces removed.
pub fn render(t: Table) -> String {
    trim(t)
}

/// `512 MiB`, `2.0 GiB`, `1.5 TiB`.
pub fn mib(m: u64) -> String {
    if m >= 1024 * 1024 {
        format!("{:.1} TiB", m as f64 / (1024.0 * 1024.0))
    } else if m >= 1024 {
        format!("{:.1} GiB", m as f64 / 1024.0)
    } else {
        format!("{m} MiB")
    }
}

/// Bytes in binary units.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub fn duration_s(s: u64) -> String {
    let (d, h, m, sec) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// A bit rate: `940 Mbit/s`.
pub fn rate_bps(bps: u64) -> String {
    if bps >= 1_000_000_000 {
        format!("{:.2} Gbit/s", bps as f64 / 1e9)
    } else if bps >= 1_000_000 {
        format!("{:.0} Mbit/s", bps as f64 / 1e6)
    } else {
        format!("{:.0} kbit/s", bps as f64 / 1e3)
    }
}

/// A UTC timestamp `YYYY-MM-DD HH:MM:SS` from seconds since the epoch.
pub fn timestamp(secs: u64) -> String {
    vinfra_types::utc_timestamp(secs)
}

/// A port's host, `-` when the VM is placed nowhere the console knows.
pub fn host_cell(host: &str) -> String {
    if host.is_empty() {
        "-".into()
    } else {
        host.to_string()
    }
}

/// Headers of the traffic columns of [`traffic_cells`].
pub const TRAFFIC: [&str; 5] = ["RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES", "DROPS"];

/// Drops as `total` or `total (reason n, …)`.
pub fn drops_text(t: &TrafficCounters) -> String {
    let total = t.drops_total();
    if total == 0 {
        return "0".into();
    }
    let reasons: Vec<String> = t
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    format!("{total} ({})", reasons.join(", "))
}

/// The cells under [`TRAFFIC`]: rx/tx packets and bytes and drops, `-` for unknown counters.
pub fn traffic_cells(t: Option<&TrafficCounters>) -> Vec<String> {
    match t {
        Some(t) => vec![
            t.rx_packets.to_string(),
            t.rx_bytes.to_string(),
            t.tx_packets.to_string(),
            t.tx_bytes.to_string(),
            drops_text(t),
        ],
        None => vec!["-".into(); 5],
    }
}

/// The JSON (snake_case) name of an enum value.
pub fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// `vinfra host list`.
pub fn hosts(hosts: &[HostSummary]) -> String {
    let mut t = table(&[
        "NAME",
        "ADDRESS",
        "STATUS",
        "ACCEL",
        "VCPUS",
        "MEMORY",
        "CPU USED",
        "MEM USED",
        "VMS",
        "MAINTENANCE",
        "TRUNK",
        "UNDERLAY MTU",
    ]);
    for h in hosts {
        t.add_row(vec![
            h.name.clone(),
            h.address.clone(),
            snake(&h.status),
            h.accel.map(|a| snake(&a)).unwrap_or_else(|| "-".into()),
            format!("{}/{}", h.allocated_vcpus, h.allocatable_vcpus),
            format!(
                "{}/{}",
                mib(h.allocated_memory_mib),
                mib(h.allocatable_memory_mib)
            ),
            format!("{:.2}/{}", h.usage.cpu_cores, h.capacity.cores),
            format!(
                "{}/{}",
                mib(h.usage.memory_used_mib),
                mib(h.capacity.memory_mib)
            ),
            h.vm_count.to_string(),
            if h.maintenance { "on" } else { "off" }.to_string(),
            h.trunk.clone().unwrap_or_else(|| "-".into()),
            h.underlay_mtu.to_string(),
        ]);
    }
    render(t)
}

/// The host's guard in one line: its incarnation and lease renewal, or that HA cannot protect
/// the host's VMs without one.
fn guard(g: Option<&GuardView>) -> String {
    let Some(g) = g else {
        return "no guard: HA cannot protect this host's VMs".into();
    };
    let mut out = format!("incarnation {}, ", g.incarnation);
    match g.renewal_age_ms {
        Some(ms) => out.push_str(&format!(
            "lease renewed {ms} ms ago (counter {})",
            g.lease_counter
        )),
        None => out.push_str("lease not renewed yet"),
    }
    if g.isolated {
        out.push_str(", isolated");
    }
    if g.self_fences > 0 {
        out.push_str(&format!(", self-fenced {} times", g.self_fences));
    }
    out
}

/// `vinfra host show`: the host, then CPU and memory as allocated / allocatable / physical / used.
pub fn host(h: &HostSummary) -> String {
    let ratios = format!(
        "cpu {} memory {}{}",
        h.ratios.cpu,
        h.ratios.memory,
        if h.ratio_override.is_some() {
            " (host override)"
        } else {
            " (cluster default)"
        }
    );
    let mut out = pairs(&[
        ("Name", h.name.clone()),
        ("Address", h.address.clone()),
        ("Status", snake(&h.status)),
        (
            "Last seen",
            h.last_seen_s
                .map(|s| format!("{} ago", duration_s(s)))
                .unwrap_or_else(|| "never".into()),
        ),
        (
            "Accelerator",
            h.accel.map(|a| snake(&a)).unwrap_or_else(|| "-".into()),
        ),
        ("QEMU", h.qemu_version.clone().unwrap_or_else(|| "-".into())),
        (
            "CPU",
            h.platform
                .as_ref()
                .map_or_else(|| "-".into(), |p| p.cpu_name.clone()),
        ),
        (
            "CPU models",
            h.platform
                .as_ref()
                .map_or_else(|| "- (not reported)".into(), |p| p.cpu_models.join(" ")),
        ),
        (
            "Machine types",
            h.platform.as_ref().map_or_else(
                || "-".into(),
                |p| {
                    let first = p.machine_types.first().cloned().unwrap_or_default();
                    format!(
                        "{first} to {} ({} types; q35 = {})",
                        p.machine_types.last().cloned().unwrap_or_default(),
                        p.machine_types.len(),
                        p.default_machine_type
                    )
                },
            ),
        ),
        (
            "VLAN trunk",
            h.trunk
                .clone()
                .unwrap_or_else(|| "none (no VMs with NICs on VLAN networks)".into()),
        ),
        (
            "Underlay MTU",
            format!(
                "{} (overlay networks up to MTU {})",
                h.underlay_mtu,
                h.underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
            ),
        ),
        (
            "Maintenance",
            if h.maintenance { "on" } else { "off" }.into(),
        ),
        ("Guard", guard(h.guard.as_ref())),
        ("Ratios", ratios),
        ("VMs", h.vm_count.to_string()),
        (
            "Fence command",
            if h.fence_command_set { "set" } else { "none" }.into(),
        ),
        (
            "Fenced",
            h.fenced_at
                .map_or_else(|| "no".to_string(), |t| format!("{} UTC", timestamp(t))),
        ),
    ]);
    let mut t = table(&["RESOURCE", "ALLOCATED", "ALLOCATABLE", "PHYSICAL", "USED"]);
    t.add_row(vec![
        "cpu".to_string(),
        format!("{} vCPU", h.allocated_vcpus),
        format!("{} vCPU", h.allocatable_vcpus),
        format!("{} cores", h.capacity.cores),
        format!("{:.2} cores", h.usage.cpu_cores),
    ]);
    t.add_row(vec![
        "memory".to_string(),
        mib(h.allocated_memory_mib),
        mib(h.allocatable_memory_mib),
        mib(h.capacity.memory_mib),
        mib(h.usage.memory_used_mib),
    ]);
    for col in 1..5 {
        if let Some(c) = t.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push_str("\n\n");
    out.push_str(&render(t));
    out
}

/// `vinfra vm list`.
pub fn vms(vms: &[VmSummary]) -> String {
    let mut t = table(&[
        "NAME", "HOST", "STATE", "DESIRED", "VCPUS", "MEMORY", "UPTIME", "CPU", "RSS", "HA",
    ]);
    for v in vms {
        t.add_row(vec![
            v.name.clone(),
            v.host.clone(),
            snake(&v.state),
            snake(&v.desired),
            v.vcpus.to_string(),
            mib(v.memory_mib),
            duration_s(v.uptime_s),
            format!("{:.2}", v.usage.cpu_cores),
            mib(v.usage.rss_mib),
            ha_cell(&v.spec.ha),
        ]);
    }
    render(t)
}

/// A VM's HA policy in one table cell: `off`, or `on` with its priority.
pub fn ha_cell(ha: &vinfra_types::ha::VmHa) -> String {
    if ha.enabled {
        format!("on, {}", ha.priority)
    } else {
        "off".into()
    }
}

/// One NIC in a line: `blue ip=… mac=… sg=web+db`, with `port-security=off` and `allow=…`
/// when set.
pub fn nic(n: &vinfra_types::NicSpec) -> String {
    let mut s = n.network.clone();
    if let Some(ip) = &n.ip {
        s.push_str(&format!(" ip={ip}"));
    }
    if let Some(mac) = &n.mac {
        s.push_str(&format!(" mac={mac}"));
    }
    if !n.port_security() {
        s.push_str(" port-security=off");
    }
    if !n.allowed_addresses.is_empty() {
        let pairs: Vec<String> = n
            .allowed_addresses
            .iter()
            .map(|a| match &a.mac {
                Some(m) => format!("{}@{m}", a.ip),
                None => a.ip.clone(),
            })
            .collect();
        s.push_str(&format!(" allow={}", pairs.join("+")));
    }
    if !n.security_groups.is_empty() {
        s.push_str(&format!(" sg={}", n.security_groups.join("+")));
    }
    if let Some(v) = &n.vlan {
        s.push_str(&format!(" vlan={} on NIC {}", v.vid, v.parent));
    }
    s
}

/// A NIC's QoS in one line (`rate 100M burst 1M each way, priority high, weight 10, dscp
/// trust`), `none` without one.
pub fn nic_qos(n: &vinfra_types::NicSpec) -> String {
    n.qos
        .as_ref()
        .map_or_else(|| "none".to_string(), |q| q.to_string())
}

/// A VM's NIC port counters in one line: `rx 10 pkts 1.2 KiB, tx …, drops 3 (reason 3)`.
fn port_text(t: &TrafficCounters) -> String {
    format!(
        "rx {} pkts {}, tx {} pkts {}, drops {}",
        t.rx_packets,
        bytes(t.rx_bytes),
        t.tx_packets,
        bytes(t.tx_bytes),
        drops_text(t)
    )
}

/// `vinfra vm show`: the VM, then each NIC's QoS and its switch port's traffic and drops by
/// reason (`ports`: the counters read from its host, or why they could not be).
pub fn vm_with_ports(v: &VmSummary, ports: &Result<VmCounters, String>) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    for (i, n) in v.spec.nics.iter().enumerate() {
        rows.push((format!("NIC {i} QoS"), nic_qos(n)));
        let port = match ports {
            Err(e) => format!("- ({e})"),
            Ok(c) => match c.nics.iter().find(|p| p.nic == i) {
                Some(p) => match (&p.counters, &p.error) {
                    (Some(t), _) => port_text(t),
                    (None, Some(e)) => format!("- ({e})"),
                    (None, None) => "-".into(),
                },
                None => "-".into(),
            },
        };
        rows.push((format!("NIC {i} port"), port));
    }
    let mut all: Vec<(&str, String)> = vm_rows(v);
    all.extend(rows.iter().map(|(k, v)| (k.as_str(), v.clone())));
    pairs(&all)
}

/// `vinfra vm show` without the NICs' ports.
pub fn vm(v: &VmSummary) -> String {
    pairs(&vm_rows(v))
}

fn vm_rows(v: &VmSummary) -> Vec<(&'static str, String)> {
    let boot = v.spec.boot.to_string();
    let disks: Vec<String> = v
        .spec
        .disks
        .iter()
        .map(|d| {
            let mut s = d.name.clone();
            if let Some(i) = &d.image {
                s.push_str(&format!(" image={i}"));
            }
            if let Some(g) = d.size_gib {
                s.push_str(&format!(" size={g}G"));
            }
            s
        })
        .collect();
    let nics: Vec<String> = v.spec.nics.iter().map(nic).collect();
    let or_none = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join("; ")
        }
    };
    vec![
        ("Name", v.name.clone()),
        ("Id", v.id.to_string()),
        ("Host", v.host.clone()),
        ("State", snake(&v.state)),
        ("Desired", snake(&v.desired)),
        ("vCPUs", v.vcpus.to_string()),
        ("Memory", mib(v.memory_mib)),
        ("Boot", boot),
        ("Disks", or_none(disks)),
        ("NICs", or_none(nics)),
        ("HA", v.spec.ha.describe()),
        (
            "CPU model",
            match &v.platform {
                Some(p) if p.cpu_model == vinfra_types::vm::HOST_CPU_MODEL => {
                    "host (its host's own CPU)".into()
                }
                Some(p) => p.cpu_model.clone(),
                None => "- (host under KVM, qemu64 under TCG)".into(),
            },
        ),
        (
            "Machine type",
            v.platform
                .as_ref()
                .map_or_else(|| "q35".into(), |p| p.machine_type.clone()),
        ),
        ("Uptime", duration_s(v.uptime_s)),
        (
            "CPU",
            format!(
                "{:.2} cores, {} s total",
                v.usage.cpu_cores,
                v.usage.cpu_time_ms / 1000
            ),
        ),
        ("RSS", mib(v.usage.rss_mib)),
        ("Created", timestamp(v.created_at)),
    ]
}

/// `vinfra settings show`.
pub fn settings(s: &ClusterSettings) -> String {
    pairs(&[
        ("CPU ratio", s.ratios.cpu.to_string()),
        ("Memory ratio", s.ratios.memory.to_string()),
        (
            "Migration bandwidth",
            s.migration_max_bandwidth_mib
                .map_or("unlimited".to_string(), |b| format!("{b} MiB/s")),
        ),
        (
            "Migration downtime limit",
            match s.migration_downtime_limit_ms {
                Some(ms) => format!("{ms} ms"),
                None => format!("{} ms (default)", s.effective_downtime_limit_ms()),
            },
        ),
        (
            "Migration auto-converge",
            match s.migration_auto_converge {
                Some(true) => "on".to_string(),
                Some(false) => "off".to_string(),
                None => "on (default)".to_string(),
            },
        ),
        (
            "Migration encryption",
            match s.migration_encrypted {
                Some(true) => "on".to_string(),
                Some(false) => "off".to_string(),
                None => "on (default)".to_string(),
            },
        ),
        (
            "CPU baseline",
            s.cpu_baseline
                .clone()
                .unwrap_or_else(|| "none (VMs run with their host's CPU)".into()),
        ),
        (
            "IPFIX collector",
            s.flows
                .ipfix_collector
                .map_or("none".to_string(), |c| c.to_string()),
        ),
        (
            "Balancer traffic window",
            format!("{} min", s.flows.traffic_minutes),
        ),
    ])
}

/// `vinfra events`.
pub fn events(events: &[Event]) -> String {
    let mut t = table(&["TIME (UTC)", "KIND", "OBJECT", "BY", "MESSAGE"]);
    for e in events {
        t.add_row(vec![
            timestamp(e.at),
            e.kind.clone(),
            e.object.clone(),
            e.actor
                .as_ref()
                .map_or("-".to_string(), ToString::to_string),
            e.message.clone(),
        ]);
    }
    render(t)
}

/// The revoked host certificates, one per line.
pub fn revoked_certificates(list: &[vinfra_types::api::RevokedCertificate]) -> String {
    let mut t = table(&["HOST", "SERIAL", "REVOKED (UTC)", "EXPIRES (UTC)", "REASON"]);
    for r in list {
        t.add_row(vec![
            r.host.clone(),
            r.serial.clone(),
            timestamp(r.revoked_at),
            timestamp(r.not_after),
            r.reason.clone(),
        ]);
    }
    render(t)
}

/// One line about a finished migration.
pub fn migration_done(p: &MigrationProgress) -> String {
    format!(
        "migrated {} from {} to {} in {:.1} s, downtime {}, {} transferred{}",
        p.vm,
        p.source,
        p.destination,
        p.total_time_ms as f64 / 1000.0,
        p.downtime_ms
            .map(|d| format!("{d} ms"))
            .unwrap_or_else(|| "unknown".into()),
        bytes(p.transferred_bytes),
        if p.encrypted { ", encrypted" } else { "" },
    )
}

/// `text` made safe for a terminal: control characters (C0 but newline and tab, DEL, C1), which
/// a guest's console output or a message quoting it could carry to move the cursor, rewrite
/// the screen or set the window title, become `?`; carriage returns go.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .filter(|c| *c != '\r')
        .map(|c| if unsafe_char(c) { '?' } else { c })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_output_cannot_steer_the_terminal() {
        assert_eq!(terminal_safe("plain\ttext\nline"), "plain\ttext\nline");
        assert_eq!(
            terminal_safe("boot\r\n\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m"),
            "boot\n?]0;owned??[2J?31m"
        );
    }

    #[test]
    fn units() {
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(2048), "2.0 GiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration_s(3725), "1h2m");
        assert_eq!(duration_s(59), "59s");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(rate_bps(940_000_000), "940 Mbit/s");
    }

    #[test]
    fn vm_show_prints_each_nics_qos_and_its_ports_drops() {
        use vinfra_types::network::VmNicCounters;
        let v: VmSummary = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000001", "name": "web", "vcpus": 1,
            "memory_mib": 128, "host": "h1", "desired": "running", "state": "running",
            "uptime_s": 5, "usage": {"cpu_time_ms": 0, "cpu_cores": 0.0, "rss_mib": 0},
            "created_at": 0,
            "spec": {"name": "web", "vcpus": 1, "memory_mib": 128, "boot": {"kind": "disk"},
                "nics": [
                    {"network": "blue", "qos": {"egress": {"bits_per_sec": 100000000, "burst_bytes": 1048576},
                        "ingress": {"bits_per_sec": 100000000, "burst_bytes": 1048576}, "priority": "high"}},
                    {"network": "red"}
                ]}
        }))
        .unwrap();
        let mut traffic = TrafficCounters {
            rx_packets: 10,
            ..TrafficCounters::default()
        };
        traffic.drops.insert("spoofed_source".into(), 3);
        let ports = Ok(VmCounters {
            vm: "web".into(),
            host: "h1".into(),
            nics: vec![
                VmNicCounters {
                    nic: 0,
                    network: "blue".into(),
                    mac: "02:76:66:00:00:01".into(),
                    counters: Some(traffic),
                    error: None,
                },
                VmNicCounters {
                    nic: 1,
                    network: "red".into(),
                    mac: "02:76:66:00:00:02".into(),
                    counters: None,
                    error: Some("no port".into()),
                },
            ],
        });
        let shown = vm_with_ports(&v, &ports);
        let line = |key: &str| {
            shown
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("no {key} in {shown}"))
                .trim_start_matches(key)
                .trim()
                .to_string()
        };
        assert_eq!(
            line("NIC 0 QoS:"),
            "rate 100M burst 1M each way, priority high, weight 10, dscp trust"
        );
        assert_eq!(
            line("NIC 0 port:"),
            "rx 10 pkts 0 B, tx 0 pkts 0 B, drops 3 (spoofed_source 3)"
        );
        assert_eq!(line("NIC 1 QoS:"), "none");
        assert_eq!(line("NIC 1 port:"), "- (no port)");
        let shown = vm_with_ports(&v, &Err("host h1 is not connected".into()));
        assert!(shown.contains("- (host h1 is not connected)"), "{shown}");
    }

    #[test]
    fn hosts_show_their_underlay_mtu() {
        let h: HostSummary = serde_json::from_value(serde_json::json!({
            "name": "h1", "address": "10.0.0.1", "status": "connected", "accel": "kvm",
            "qemu_version": "9.2.0", "capacity": {"cores": 4, "memory_mib": 8192},
            "ratios": {"cpu": 4.0, "memory": 1.0}, "ratio_override": null,
            "allocated_vcpus": 0, "allocated_memory_mib": 0, "allocatable_vcpus": 16,
            "allocatable_memory_mib": 8192, "usage": {"cpu_cores": 0.0, "memory_used_mib": 0},
            "vm_count": 0, "last_seen_s": 1, "maintenance": false, "trunk": null,
            "underlay_mtu": 1400
        }))
        .unwrap();
        let shown = host(&h);
        let line = shown
            .lines()
            .find(|l| l.starts_with("Underlay MTU"))
            .unwrap();
        assert!(
            line.contains("1400 (overlay networks up to MTU 1350)"),
            "{line}"
        );
        let listed = hosts(std::slice::from_ref(&h));
        let mut lines = listed.lines();
        let header = lines.next().unwrap();
        assert!(
            header.trim_end().ends_with("TRUNK  UNDERLAY MTU"),
            "{header}"
        );
        let row = lines.next().unwrap();
        assert!(row.trim_end().ends_with("1400"), "{row}");
        let line = shown.lines().find(|l| l.starts_with("Guard")).unwrap();
        assert!(
            line.contains("no guard: HA cannot protect this host's VMs"),
            "{line}"
        );
    }

    #[test]
    fn hosts_show_their_guard() {
        let mut g = GuardView {
            incarnation: 77,
            lease_counter: 12,
            renewal_age_ms: Some(340),
            self_fences: 0,
            isolated: false,
        };
        assert_eq!(
            guard(Some(&g)),
            "incarnation 77, lease renewed 340 ms ago (counter 12)"
        );
        g.isolated = true;
        g.self_fences = 2;
        g.renewal_age_ms = None;
        assert_eq!(
            guard(Some(&g)),
            "incarnation 77, lease not renewed yet, isolated, self-fenced 2 times"
        );
    }
}
