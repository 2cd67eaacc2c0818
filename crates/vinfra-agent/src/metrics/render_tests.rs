//! The text of a small snapshot, exactly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use uuid::Uuid;
use vinfra_switch_control::{CountersView, PortCountersView};
use vinfra_types::network::{
    HostSwitchCounters, SwitchNetworkCounters, SwitchPortCounters, SwitchRouterCounters,
    TrafficCounters,
};
use vinfra_types::{PowerState, VmObserved, VmUsage};

use super::snapshot::{ScrapeSnapshot, SwitchSample};
use crate::manager::metrics::VmSample;

fn observed(id: Uuid, state: PowerState, pid: Option<u32>) -> VmObserved {
    VmObserved {
        id,
        name: String::new(),
        state,
        pid,
        uptime_s: 0,
        usage: VmUsage {
            cpu_time_ms: 1500,
            cpu_cores: 0.0,
            rss_mib: 100,
        },
        unresponsive: false,
        ha: false,
        net: None,
    }
}

fn traffic(rx: u64, drops: &[(&str, u64)]) -> TrafficCounters {
    TrafficCounters {
        rx_packets: rx,
        rx_bytes: rx * 60,
        tx_packets: 1,
        tx_bytes: 60,
        drops: drops.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
    }
}

/// Two VMs (one running with a NIC, one stopped whose name needs escaping), a session, and a
/// switch with a port, the uplink, a network and a router.
fn small() -> ScrapeSnapshot {
    let web = Uuid::from_u128(1);
    let odd = Uuid::from_u128(2);
    let named = HostSwitchCounters {
        networks: vec![SwitchNetworkCounters {
            network: "red".into(),
            traffic: traffic(7, &[("runt", 1)]),
            arp_suppressed: 2,
            flooded: 3,
            learning_refused: 0,
        }],
        ports: vec![SwitchPortCounters {
            vm_id: web,
            nic: 0,
            network: "red".into(),
            mac: "52:54:00:00:00:01".into(),
            port: 1,
            traffic: traffic(3, &[("runt", 1), ("ethertype_not_allowed", 2)]),
            tx_errors: 2,
            rx_errors: 0,
            firewall: None,
        }],
        uplink: Some(traffic(5, &[])),
        trunk: None,
        switch_drops: BTreeMap::from([("no_network".into(), 4)]),
        routers: vec![SwitchRouterCounters {
            router: "edge".into(),
            routed_packets: 9,
            drops: BTreeMap::from([("ttl_exceeded".into(), 1)]),
            ..Default::default()
        }],
    };
    let view = CountersView {
        ports: vec![PortCountersView {
            id: vinfra_switch_control::UPLINK_PORT,
            rx_errors: 1,
            ..Default::default()
        }],
        rx_batches: vec![0, 2, 1],
        fast_path: Some(Box::new(vinfra_switch_control::FastPathView {
            flows: 3,
            installed: 7,
            flushes: 2,
            refused: 0,
            frames: 1000,
            bytes: 64_000,
        })),
        ..Default::default()
    };
    ScrapeSnapshot {
        vms: vec![
            VmSample {
                id: odd,
                name: "odd \"one\"\\".into(),
                vcpus: 1,
                memory_mib: 64,
                observed: Some(observed(odd, PowerState::Stopped, None)),
            },
            VmSample {
                id: web,
                name: "web".into(),
                vcpus: 2,
                memory_mib: 256,
                observed: Some(observed(web, PowerState::Running, Some(42))),
            },
        ],
        disk_io: HashMap::from([(web, (10, 20))]),
        console_connected: true,
        contact_age: Some(Duration::from_millis(2500)),
        reports_sent: 7,
        switch: SwitchSample::Up(Box::new((view, named))),
    }
}

#[test]
fn a_switch_that_did_not_answer_and_no_switch() {
    let down = super::render(&ScrapeSnapshot {
        switch: SwitchSample::Down,
        ..small()
    });
    let switch: Vec<&str> = down
        .lines()
        .filter(|l| l.starts_with("vinfra_switch_"))
        .collect();
    assert_eq!(switch, ["vinfra_switch_up 0"]);
    // No VM, no session, no switch: the VMs by state (all 0), the session and the reports.
    let none = super::render(&ScrapeSnapshot::default());
    let series: Vec<&str> = none.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        series,
        [
            "vinfra_agent_vms{state=\"running\"} 0",
            "vinfra_agent_vms{state=\"paused\"} 0",
            "vinfra_agent_vms{state=\"stopped\"} 0",
            "vinfra_agent_vms{state=\"incoming\"} 0",
            "vinfra_agent_vms{state=\"migrating\"} 0",
            "vinfra_agent_vms{state=\"crashed\"} 0",
            "vinfra_agent_vms{state=\"unknown\"} 0",
            "",
            "vinfra_agent_console_connected 0",
            "",
            "vinfra_agent_reports_sent_total 0",
            "",
        ]
    );
}

#[test]
fn a_small_snapshot_s_text() {
    assert_eq!(super::render(&small()), SMALL);
}

/// The text of [`small`]: every family once, its series in the snapshot's order (the VMs by
/// name), a VM's name escaped.
const SMALL: &str = r#"# HELP vinfra_agent_vms VMs on this host by the state of their latest observation.
# TYPE vinfra_agent_vms gauge
vinfra_agent_vms{state="running"} 1
vinfra_agent_vms{state="paused"} 0
vinfra_agent_vms{state="stopped"} 1
vinfra_agent_vms{state="incoming"} 0
vinfra_agent_vms{state="migrating"} 0
vinfra_agent_vms{state="crashed"} 0
vinfra_agent_vms{state="unknown"} 0

# HELP vinfra_agent_vm_up 1 while the VM's QEMU runs and answered the agent's latest observation, else 0.
# TYPE vinfra_agent_vm_up gauge
vinfra_agent_vm_up{vm="odd \"one\"\\"} 0
vinfra_agent_vm_up{vm="web"} 1

# HELP vinfra_agent_vm_cpu_milliseconds_total CPU time (user and system) of the VM's QEMU process in milliseconds, as of its latest observation.
# TYPE vinfra_agent_vm_cpu_milliseconds_total counter
vinfra_agent_vm_cpu_milliseconds_total{vm="web"} 1500

# HELP vinfra_agent_vm_vcpus vCPUs of the VM as defined.
# TYPE vinfra_agent_vm_vcpus gauge
vinfra_agent_vm_vcpus{vm="odd \"one\"\\"} 1
vinfra_agent_vm_vcpus{vm="web"} 2

# HELP vinfra_agent_vm_memory_bytes Memory of the VM as defined.
# TYPE vinfra_agent_vm_memory_bytes gauge
vinfra_agent_vm_memory_bytes{vm="odd \"one\"\\"} 67108864
vinfra_agent_vm_memory_bytes{vm="web"} 268435456

# HELP vinfra_agent_vm_memory_rss_bytes Resident memory of the VM's QEMU process, as of its latest observation.
# TYPE vinfra_agent_vm_memory_rss_bytes gauge
vinfra_agent_vm_memory_rss_bytes{vm="web"} 104857600

# HELP vinfra_agent_vm_disk_read_bytes_total Storage bytes the VM's QEMU process read (read_bytes of /proc/<pid>/io).
# TYPE vinfra_agent_vm_disk_read_bytes_total counter
vinfra_agent_vm_disk_read_bytes_total{vm="web"} 10

# HELP vinfra_agent_vm_disk_written_bytes_total Storage bytes the VM's QEMU process wrote (write_bytes of /proc/<pid>/io).
# TYPE vinfra_agent_vm_disk_written_bytes_total counter
vinfra_agent_vm_disk_written_bytes_total{vm="web"} 20

# HELP vinfra_agent_console_connected 1 while the agent has a session with the console, else 0.
# TYPE vinfra_agent_console_connected gauge
vinfra_agent_console_connected 1

# HELP vinfra_agent_console_contact_age_seconds Time since the console last acknowledged a heartbeat of this host.
# TYPE vinfra_agent_console_contact_age_seconds gauge
vinfra_agent_console_contact_age_seconds 2.5

# HELP vinfra_agent_reports_sent_total Reports of the host's state sent to the console since the agent started.
# TYPE vinfra_agent_reports_sent_total counter
vinfra_agent_reports_sent_total 7

# HELP vinfra_switch_up 1 when the host's switch answered this scrape's counters request, else 0.
# TYPE vinfra_switch_up gauge
vinfra_switch_up 1

# HELP vinfra_switch_port_rx_packets_total Frames the switch received on the port (for a VM NIC: the guest sent).
# TYPE vinfra_switch_port_rx_packets_total counter
vinfra_switch_port_rx_packets_total{port="vm",vm="web",nic="0",network="red"} 3
vinfra_switch_port_rx_packets_total{port="uplink"} 5

# HELP vinfra_switch_port_rx_bytes_total Bytes of the frames the switch received on the port.
# TYPE vinfra_switch_port_rx_bytes_total counter
vinfra_switch_port_rx_bytes_total{port="vm",vm="web",nic="0",network="red"} 180
vinfra_switch_port_rx_bytes_total{port="uplink"} 300

# HELP vinfra_switch_port_tx_packets_total Frames the switch sent on the port (for a VM NIC: to the guest).
# TYPE vinfra_switch_port_tx_packets_total counter
vinfra_switch_port_tx_packets_total{port="vm",vm="web",nic="0",network="red"} 1
vinfra_switch_port_tx_packets_total{port="uplink"} 1

# HELP vinfra_switch_port_tx_bytes_total Bytes of the frames the switch sent on the port.
# TYPE vinfra_switch_port_tx_bytes_total counter
vinfra_switch_port_tx_bytes_total{port="vm",vm="web",nic="0",network="red"} 60
vinfra_switch_port_tx_bytes_total{port="uplink"} 60

# HELP vinfra_switch_port_drops_total Frames of the port the switch dropped, by reason.
# TYPE vinfra_switch_port_drops_total counter
vinfra_switch_port_drops_total{port="vm",vm="web",nic="0",network="red",reason="ethertype_not_allowed"} 2
vinfra_switch_port_drops_total{port="vm",vm="web",nic="0",network="red",reason="runt"} 1

# HELP vinfra_switch_port_errors_total The port's I/O errors: rx (receive errors), tx (frames that could not be sent).
# TYPE vinfra_switch_port_errors_total counter
vinfra_switch_port_errors_total{port="vm",vm="web",nic="0",network="red",direction="rx"} 0
vinfra_switch_port_errors_total{port="vm",vm="web",nic="0",network="red",direction="tx"} 2
vinfra_switch_port_errors_total{port="uplink",direction="rx"} 1
vinfra_switch_port_errors_total{port="uplink",direction="tx"} 0

# HELP vinfra_switch_network_rx_packets_total The network's frames received from other hosts (inner frames, over the VXLAN uplink or the trunk).
# TYPE vinfra_switch_network_rx_packets_total counter
vinfra_switch_network_rx_packets_total{network="red"} 7

# HELP vinfra_switch_network_rx_bytes_total Bytes of the network's frames received from other hosts (inner frames).
# TYPE vinfra_switch_network_rx_bytes_total counter
vinfra_switch_network_rx_bytes_total{network="red"} 420

# HELP vinfra_switch_network_tx_packets_total The network's frames sent to other hosts (inner frames).
# TYPE vinfra_switch_network_tx_packets_total counter
vinfra_switch_network_tx_packets_total{network="red"} 1

# HELP vinfra_switch_network_tx_bytes_total Bytes of the network's frames sent to other hosts (inner frames).
# TYPE vinfra_switch_network_tx_bytes_total counter
vinfra_switch_network_tx_bytes_total{network="red"} 60

# HELP vinfra_switch_network_drops_total Frames of the network the switch dropped, by reason.
# TYPE vinfra_switch_network_drops_total counter
vinfra_switch_network_drops_total{network="red",reason="runt"} 1

# HELP vinfra_switch_network_flooded_total Frames flooded on the network (destination unknown, broadcast, multicast).
# TYPE vinfra_switch_network_flooded_total counter
vinfra_switch_network_flooded_total{network="red"} 3

# HELP vinfra_switch_network_arp_suppressed_total ARP requests on the network the switch answered itself.
# TYPE vinfra_switch_network_arp_suppressed_total counter
vinfra_switch_network_arp_suppressed_total{network="red"} 2

# HELP vinfra_switch_drops_total Frames the switch dropped that belong to no port or network, by reason.
# TYPE vinfra_switch_drops_total counter
vinfra_switch_drops_total{reason="no_network"} 4

# HELP vinfra_switch_router_routed_packets_total Packets the router routed on this host.
# TYPE vinfra_switch_router_routed_packets_total counter
vinfra_switch_router_routed_packets_total{router="edge"} 9

# HELP vinfra_switch_router_drops_total Packets the router did not route on this host, by reason.
# TYPE vinfra_switch_router_drops_total counter
vinfra_switch_router_drops_total{router="edge",reason="ttl_exceeded"} 1

# HELP vinfra_switch_rx_batches_total The datapath's reads of a port, by the frames each read brought (1 to the batch size).
# TYPE vinfra_switch_rx_batches_total counter
vinfra_switch_rx_batches_total{frames="1"} 2
vinfra_switch_rx_batches_total{frames="2"} 1

# HELP vinfra_switch_rx_batch_frames_total Frames the datapath's reads brought (over the reads: the mean batch size).
# TYPE vinfra_switch_rx_batch_frames_total counter
vinfra_switch_rx_batch_frames_total 4

# HELP vinfra_switch_fast_path_flows Flows between local ports the kernel fast path forwards without the switch's thread.
# TYPE vinfra_switch_fast_path_flows gauge
vinfra_switch_fast_path_flows 3

# HELP vinfra_switch_fast_path_frames_total Frames the kernel fast path forwarded (also in the ports' counters).
# TYPE vinfra_switch_fast_path_frames_total counter
vinfra_switch_fast_path_frames_total 1000

# HELP vinfra_switch_fast_path_bytes_total Bytes of the frames the kernel fast path forwarded.
# TYPE vinfra_switch_fast_path_bytes_total counter
vinfra_switch_fast_path_bytes_total 64000

# HELP vinfra_switch_fast_path_flushes_total Times the switch took every flow back from the kernel (its state changed, or revalidation).
# TYPE vinfra_switch_fast_path_flushes_total counter
vinfra_switch_fast_path_flushes_total 2

"#;
