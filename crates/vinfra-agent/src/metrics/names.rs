//! The agent's metric families (README, "Metrics"; docs/design.md, "Metrics").

/// VMs on the host by the state of their latest observation (gauge, label `state`).
pub const VMS: &str = "vinfra_agent_vms";
/// 1 while the VM's QEMU runs and answered the latest observation (gauge, label `vm`).
pub const VM_UP: &str = "vinfra_agent_vm_up";
/// CPU time of the VM's QEMU, user and system (counter, milliseconds: counters are integers;
/// label `vm`).
pub const VM_CPU: &str = "vinfra_agent_vm_cpu_milliseconds_total";
/// vCPUs as defined (gauge, label `vm`).
pub const VM_VCPUS: &str = "vinfra_agent_vm_vcpus";
/// Memory as defined (gauge, bytes, label `vm`).
pub const VM_MEMORY: &str = "vinfra_agent_vm_memory_bytes";
/// Resident memory of the VM's QEMU (gauge, bytes, label `vm`).
pub const VM_RSS: &str = "vinfra_agent_vm_memory_rss_bytes";
/// Storage bytes the VM's QEMU read (counter, label `vm`).
pub const VM_DISK_READ: &str = "vinfra_agent_vm_disk_read_bytes_total";
/// Storage bytes the VM's QEMU wrote (counter, label `vm`).
pub const VM_DISK_WRITTEN: &str = "vinfra_agent_vm_disk_written_bytes_total";
/// 1 while the agent has a session with the console (gauge).
pub const CONSOLE_CONNECTED: &str = "vinfra_agent_console_connected";
/// Time since the console last acknowledged a heartbeat (gauge, seconds).
pub const CONSOLE_CONTACT_AGE: &str = "vinfra_agent_console_contact_age_seconds";
/// Reports sent to the console (counter).
pub const REPORTS_SENT: &str = "vinfra_agent_reports_sent_total";

/// 1 when the switch answered the scrape's counters request (gauge).
pub const SWITCH_UP: &str = "vinfra_switch_up";
/// Frames the switch received on a port (counter, labels `port`, `vm`, `nic`, `network`).
pub const PORT_RX_PACKETS: &str = "vinfra_switch_port_rx_packets_total";
/// Their bytes (counter).
pub const PORT_RX_BYTES: &str = "vinfra_switch_port_rx_bytes_total";
/// Frames the switch sent on a port (counter).
pub const PORT_TX_PACKETS: &str = "vinfra_switch_port_tx_packets_total";
/// Their bytes (counter).
pub const PORT_TX_BYTES: &str = "vinfra_switch_port_tx_bytes_total";
/// Frames of a port dropped, by reason (counter, labels of the port and `reason`).
pub const PORT_DROPS: &str = "vinfra_switch_port_drops_total";
/// A port's I/O errors, by direction (counter, labels of the port and `direction`).
pub const PORT_ERRORS: &str = "vinfra_switch_port_errors_total";
/// A network's frames received from other hosts (counter, label `network`).
pub const NETWORK_RX_PACKETS: &str = "vinfra_switch_network_rx_packets_total";
/// Their bytes (counter).
pub const NETWORK_RX_BYTES: &str = "vinfra_switch_network_rx_bytes_total";
/// A network's frames sent to other hosts (counter).
pub const NETWORK_TX_PACKETS: &str = "vinfra_switch_network_tx_packets_total";
/// Their bytes (counter).
pub const NETWORK_TX_BYTES: &str = "vinfra_switch_network_tx_bytes_total";
/// A network's drops, by reason (counter, labels `network`, `reason`).
pub const NETWORK_DROPS: &str = "vinfra_switch_network_drops_total";
/// Frames flooded on a network (counter).
pub const NETWORK_FLOODED: &str = "vinfra_switch_network_flooded_total";
/// ARP requests the switch answered for a network (counter).
pub const NETWORK_ARP_SUPPRESSED: &str = "vinfra_switch_network_arp_suppressed_total";
/// Drops that belong to no port or network, by reason (counter, label `reason`).
pub const SWITCH_DROPS: &str = "vinfra_switch_drops_total";
/// Packets a router routed on this host (counter, label `router`).
pub const ROUTER_ROUTED: &str = "vinfra_switch_router_routed_packets_total";
/// Packets a router did not route, by reason (counter, labels `router`, `reason`).
pub const ROUTER_DROPS: &str = "vinfra_switch_router_drops_total";
/// The datapath's reads of a port, by the frames each brought (counter, label `frames`).
pub const RX_BATCHES: &str = "vinfra_switch_rx_batches_total";
/// The frames of those reads (counter): over [`RX_BATCHES`] summed, the mean batch size.
pub const RX_BATCH_FRAMES: &str = "vinfra_switch_rx_batch_frames_total";
/// Flows the kernel fast path holds (gauge).
pub const FAST_FLOWS: &str = "vinfra_switch_fast_path_flows";
/// Frames the kernel fast path forwarded (counter).
pub const FAST_FRAMES: &str = "vinfra_switch_fast_path_frames_total";
/// Their bytes (counter).
pub const FAST_BYTES: &str = "vinfra_switch_fast_path_bytes_total";
/// Times the switch took every flow back from the kernel (counter).
pub const FAST_FLUSHES: &str = "vinfra_switch_fast_path_flushes_total";

/// What each family is, for the `# HELP` lines.
pub const HELP: &[(&str, &str)] = &[
    (VMS, "VMs on this host by the state of their latest observation."),
    (VM_UP, "1 while the VM's QEMU runs and answered the agent's latest observation, else 0."),
    (VM_CPU, "CPU time (user and system) of the VM's QEMU process in milliseconds, as of its latest observation."),
    (VM_VCPUS, "vCPUs of the VM as defined."),
    (VM_MEMORY, "Memory of the VM as defined."),
    (VM_RSS, "Resident memory of the VM's QEMU process, as of its latest observation."),
    (VM_DISK_READ, "Storage bytes the VM's QEMU process read (read_bytes of /proc/<pid>/io)."),
    (VM_DISK_WRITTEN, "Storage bytes the VM's QEMU process wrote (write_bytes of /proc/<pid>/io)."),
    (CONSOLE_CONNECTED, "1 while the agent has a session with the console, else 0."),
    (CONSOLE_CONTACT_AGE, "Time since the console last acknowledged a heartbeat of this host."),
    (REPORTS_SENT, "Reports of the host's state sent to the console since the agent started."),
    (SWITCH_UP, "1 when the host's switch answered this scrape's counters request, else 0."),
    (PORT_RX_PACKETS, "Frames the switch received on the port (for a VM NIC: the guest sent)."),
    (PORT_RX_BYTES, "Bytes of the frames the switch received on the port."),
    (PORT_TX_PACKETS, "Frames the switch sent on the port (for a VM NIC: to the guest)."),
    (PORT_TX_BYTES, "Bytes of the frames the switch sent on the port."),
    (PORT_DROPS, "Frames of the port the switch dropped, by reason."),
    (PORT_ERRORS, "The port's I/O errors: rx (receive errors), tx (frames that could not be sent)."),
    (NETWORK_RX_PACKETS, "The network's frames received from other hosts (inner frames, over the VXLAN uplink or the trunk)."),
    (NETWORK_RX_BYTES, "Bytes of the network's frames received from other hosts (inner frames)."),
    (NETWORK_TX_PACKETS, "The network's frames sent to other hosts (inner frames)."),
    (NETWORK_TX_BYTES, "Bytes of the network's frames sent to other hosts (inner frames)."),
    (NETWORK_DROPS, "Frames of the network the switch dropped, by reason."),
    (NETWORK_FLOODED, "Frames flooded on the network (destination unknown, broadcast, multicast)."),
    (NETWORK_ARP_SUPPRESSED, "ARP requests on the network the switch answered itself."),
    (SWITCH_DROPS, "Frames the switch dropped that belong to no port or network, by reason."),
    (ROUTER_ROUTED, "Packets the router routed on this host."),
    (ROUTER_DROPS, "Packets the router did not route on this host, by reason."),
    (RX_BATCHES, "The datapath's reads of a port, by the frames each read brought (1 to the batch size)."),
    (RX_BATCH_FRAMES, "Frames the datapath's reads brought (over the reads: the mean batch size)."),
    (FAST_FLOWS, "Flows between local ports the kernel fast path forwards without the switch's thread."),
    (FAST_FRAMES, "Frames the kernel fast path forwarded (also in the ports' counters)."),
    (FAST_BYTES, "Bytes of the frames the kernel fast path forwarded."),
    (FAST_FLUSHES, "Times the switch took every flow back from the kernel (its state changed, or revalidation)."),
];
