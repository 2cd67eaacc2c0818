//! The agent's `GET /metrics` in a 1-host lab (each lab agent runs with `--metrics-listen` on
//! its host's address), with real guests and the host's real switch: two guests on an overlay
//! network, one pinging the other, and VXLAN packets from an address that is no cluster host's
//! (dropped by the host's uplink as `unknown_vtep`). The scrape, read from the host's namespace
//! and parsed as Prometheus text, shows both VMs up, the pinging guest's NIC counters moving,
//! the drops by reason, the datapath's batch sizes, and the agent's console session.

mod common;

use std::time::Duration;

use common::{api, can_run_labs, create_nic_vm, in_netns, start_lab_with, wait_for, NicAddress};
use vinfra_lab::Lab;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};

const SUBNET: &str = "10.80.9.0/24";
const A_IP: &str = "10.80.9.10";
const B_IP: &str = "10.80.9.20";

fn scrape(lab: &Lab) -> prometheus_parse::Scrape {
    let text = lab
        .agent_metrics("h1")
        .unwrap_or_else(|e| panic!("{}", vinfra_types::error::chain(&e)));
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("h1's metrics are not Prometheus text: {e}\n{text}"))
}

/// The value of the sample of `family` whose labels include `labels`.
fn value(s: &prometheus_parse::Scrape, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == family && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => Some(v),
            _ => None,
        })
}

#[test]
fn an_agent_serves_its_vms_and_its_switch_s_counters() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab_with("metrics", 1, |_| {});
    api(&lab)
        .create_network(&CreateNetworkRequest {
            name: "blue".into(),
            kind: NetworkKind::Overlay,
            vni: None,
            vlan_id: None,
            subnet: SUBNET.into(),
            gateway: None,
            mtu: None,
        })
        .unwrap_or_else(|e| panic!("create network blue: {e}"));
    create_nic_vm(
        &lab,
        "a",
        "h1",
        "blue",
        NicAddress::Static(A_IP),
        &format!("vinfra.ping={B_IP}"),
    );
    create_nic_vm(&lab, "b", "h1", "blue", NicAddress::Static(B_IP), "");
    for vm in ["a", "b"] {
        lab.wait_console(vm, "VINFRA-GUEST BOOTED", common::BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("VM {vm} did not boot: {e}"));
    }

    // Both VMs up once a report has observed them; the agent's session is up.
    let first = wait_for(
        "both VMs up in h1's metrics",
        Duration::from_secs(30),
        || {
            let s = scrape(&lab);
            (value(&s, "vinfra_agent_vm_up", &[("vm", "a")]) == Some(1.0)
                && value(&s, "vinfra_agent_vm_up", &[("vm", "b")]) == Some(1.0))
            .then_some(s)
        },
    );
    assert_eq!(
        value(&first, "vinfra_agent_vms", &[("state", "running")]),
        Some(2.0)
    );
    assert_eq!(
        value(&first, "vinfra_agent_console_connected", &[]),
        Some(1.0)
    );
    assert!(value(&first, "vinfra_agent_reports_sent_total", &[]) >= Some(1.0));
    assert_eq!(value(&first, "vinfra_switch_up", &[]), Some(1.0));
    assert_eq!(
        value(&first, "vinfra_agent_vm_memory_bytes", &[("vm", "a")]),
        Some((128u64 << 20) as f64)
    );
    assert!(value(&first, "vinfra_agent_vm_memory_rss_bytes", &[("vm", "a")]) > Some(0.0));
    assert!(
        value(
            &first,
            "vinfra_agent_vm_cpu_milliseconds_total",
            &[("vm", "a")]
        ) > Some(0.0)
    );
    let a_port = [
        ("port", "vm"),
        ("vm", "a"),
        ("nic", "0"),
        ("network", "blue"),
    ];
    let b_port = [
        ("port", "vm"),
        ("vm", "b"),
        ("nic", "0"),
        ("network", "blue"),
    ];
    let rx0 = value(&first, "vinfra_switch_port_rx_packets_total", &a_port)
        .expect("a's NIC has counters");

    // a pings b: a's NIC counters move, and the switch sends b its frames.
    let moved = wait_for(
        "a's and b's NIC counters moving",
        Duration::from_secs(60),
        || {
            let s = scrape(&lab);
            (value(&s, "vinfra_switch_port_rx_packets_total", &a_port) >= Some(rx0 + 5.0)
                && value(&s, "vinfra_switch_port_tx_packets_total", &b_port) >= Some(5.0))
            .then_some(s)
        },
    );
    assert!(value(&moved, "vinfra_switch_port_rx_bytes_total", &a_port) >= Some(5.0 * 60.0));
    // The reports carry the same traffic to the console: a's usage history has its network,
    // sent and received (its pings and their answers), in bytes per second.
    wait_for(
        "a's network in its usage history",
        Duration::from_secs(40),
        || {
            let h = api(&lab)
                .vm_usage("a")
                .unwrap_or_else(|e| panic!("usage of a: {}", vinfra_types::error::Chain(&e)));
            h.samples
                .iter()
                .any(|s| {
                    s.tx_bytes_per_s.is_some_and(|r| r > 0.0)
                        && s.rx_bytes_per_s.is_some_and(|r| r > 0.0)
                })
                .then_some(())
        },
    );
    // The network's own counters are there (its traffic counts frames to and from other
    // hosts: none in a 1-host lab).
    assert!(value(
        &moved,
        "vinfra_switch_network_rx_packets_total",
        &[("network", "blue")]
    )
    .is_some());
    let frames = value(&moved, "vinfra_switch_rx_batch_frames_total", &[]).unwrap_or(0.0);
    let reads: f64 = moved
        .samples
        .iter()
        .filter(|s| s.metric == "vinfra_switch_rx_batches_total")
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => Some(v),
            _ => None,
        })
        .sum();
    assert!(
        reads >= 1.0 && frames >= reads,
        "{reads} reads of {frames} frames"
    );

    // VXLAN packets from the underlay's own address (no cluster host's): h1's uplink drops
    // them, and says why.
    let h1 = lab.state().hosts[0].address;
    let uplink_drops = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "vinfra_switch_port_drops_total",
            &[("port", "uplink"), ("reason", "unknown_vtep")],
        )
        .unwrap_or(0.0)
    };
    let before = uplink_drops(&moved);
    let ns = lab.state().underlay_namespace.clone();
    in_netns(&ns, move || {
        let socket = std::net::UdpSocket::bind((vinfra_lab::net::UNDERLAY_ADDR, 0))
            .expect("a UDP socket on the underlay");
        let mut packet = vec![0x08, 0, 0, 0, 0, 0x13, 0x8a, 0];
        packet.extend_from_slice(&[0xff; 6]);
        packet.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
        packet.resize(8 + 60, 0);
        for _ in 0..5 {
            socket.send_to(&packet, (h1, 4789)).expect("send");
        }
    })
    .join()
    .expect("the VXLAN packets were sent");
    let dropped = wait_for(
        "the uplink's unknown_vtep drops",
        Duration::from_secs(20),
        || {
            let s = scrape(&lab);
            (uplink_drops(&s) >= before + 5.0).then_some(s)
        },
    );
    assert_eq!(value(&dropped, "vinfra_switch_up", &[]), Some(1.0));
}
