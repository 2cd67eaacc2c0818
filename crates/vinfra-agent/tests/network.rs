//! VM networking through real switch daemons: two "hosts" (network namespaces joined by a veth
//! underlay), each with a switch and an agent [`Manager`]; real QEMU guests (TCG) with NICs on
//! an overlay network ping each other across VXLAN; a guest on another network with the same
//! addresses sees none of their frames; a switch crash kills no VM and the agent replays the
//! switch's configuration when it comes back.
//!
//! The switches are this test binary started again as `switchd_child` (running
//! `vinfra_switchd::run`) inside a namespace, so they can be killed and restarted like the real
//! daemon. Tests skip when qemu-system-x86_64 is missing. Routers (a switch
//! daemon without guests): [`routers`]; the host's flows with no console: [`flows`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vinfra_agent::network::{SwitchAttachment, VmNicPorts};
use vinfra_agent::qemu::qmp::QemuRunner;
use vinfra_agent::{handle, Manager, ManagerConfig};
use vinfra_proto::{
    AgentCommand, CommandError, CommandReply, HostSwitchConfig, MigrationSettings, SwitchArpEntry,
    SwitchMacEntry, SwitchNetwork, SwitchNetworkKind, VmInstance,
};
use vinfra_switch_control::{Attachment, Request, SwitchClient, UPLINK_PORT};
use vinfra_types::{Accel, NicSpec, PowerState};

mod common;
#[path = "network/flows.rs"]
mod flows;
#[path = "network/routers.rs"]
mod routers;
use common::{datastore, instance_with, netns_and_qemu, netns_present, KillQemusUnder, QEMU};

const CHILD_ENV: &str = "VINFRA_AGENT_TEST_SWITCHD_CONTROL";
/// With [`CHILD_ENV`]: `IP/MTU` of a VXLAN uplink the switch opens itself.
const CHILD_UNDERLAY_ENV: &str = "VINFRA_AGENT_TEST_SWITCHD_UNDERLAY";

/// Not a test of its own: when this binary is started with [`CHILD_ENV`] set, it is a switch
/// daemon with that control socket (see [`Switch::spawn`]).
#[test]
fn switchd_child() {
    let Some(control) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = vinfra_switchd::SwitchdConfig::new(control);
    if let Ok(underlay) = std::env::var(CHILD_UNDERLAY_ENV) {
        let (ip, mtu) = underlay.split_once('/').expect("IP/MTU");
        config.underlay_ip = Some(ip.parse().expect("underlay IP"));
        config.underlay_mtu = mtu.parse().expect("underlay MTU");
    }
    let result = vinfra_switchd::run(config);
    eprintln!("switch stopped: {result:?}");
    std::process::exit(1);
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A unique name starting with "ag-" (at most 15 bytes, usable for interfaces too).
fn name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("ag-{}{n}{tag}", std::process::id() % 100_000)
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let ns = Netns(name(tag));
        vinfra_testenv::add_netns(&ns.0);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend_from_slice(args);
        sh(&full);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// A switch daemon in a namespace; killed on drop.
struct Switch {
    child: Option<Child>,
    control: PathBuf,
    ns: String,
    log: PathBuf,
    /// `IP/MTU` of an uplink of the switch's own.
    underlay: Option<String>,
}

impl Switch {
    fn start(ns: &Netns, dir: &Path) -> Switch {
        Switch::start_with_uplink(ns, dir, None)
    }

    fn start_with_uplink(ns: &Netns, dir: &Path, underlay: Option<(Ipv4Addr, u16)>) -> Switch {
        let mut s = Switch {
            child: None,
            control: dir.join(format!("{}.ctl", ns.0)),
            ns: ns.0.clone(),
            log: dir.join(format!("{}.log", ns.0)),
            underlay: underlay.map(|(ip, mtu)| format!("{ip}/{mtu}")),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let exe = std::env::current_exe().unwrap();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(exe)
            .args([
                "switchd_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &self.control)
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(u) = &self.underlay {
            cmd.env(CHILD_UNDERLAY_ENV, u);
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn client(&self) -> SwitchClient {
        SwitchClient::connect_within(&self.control, Duration::from_secs(10)).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn manager(data_dir: &Path, ds: &Path, switch: Option<SwitchAttachment>) -> Manager {
    Manager::open(ManagerConfig {
        data_dir: data_dir.to_path_buf(),
        datastore: ds.to_path_buf(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(QemuRunner {
            binary: QEMU.into(),
            accel: Accel::Tcg,
            guard: None,
        }),
        switch,
    })
    .await
    .unwrap()
    .with_padded_ram(common::loses_writes())
}

fn nic(network: &str, mac: &str) -> NicSpec {
    NicSpec {
        network: network.into(),
        mac: Some(mac.into()),
        ip: None,
        ..Default::default()
    }
}

/// Waits until `f` holds, at most `limit`.
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn read_from(path: &Path, offset: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(text.get(offset..).unwrap_or_default()).into_owned()
}

fn file_len(path: &Path) -> usize {
    std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

const MAC_A: &str = "52:54:00:92:00:01";
const MAC_B: &str = "52:54:00:92:00:02";
const MAC_C: &str = "52:54:00:92:00:03";

/// The console's view for one host: networks `blue` (VNI 9201) and `red` (VNI 9202) on both
/// hosts, MAC entries for the other host's blue NIC, ARP entries for both blue guests.
fn host_config(other_host: Ipv4Addr, remote_mac: &str) -> HostSwitchConfig {
    let network = |name: &str, id: u16, vni: u32| SwitchNetwork {
        name: name.into(),
        id,
        kind: SwitchNetworkKind::Overlay { vni },
        mtu: 1450,
        flood: vec![other_host],
        dhcp: None,
    };
    HostSwitchConfig {
        networks: vec![network("blue", 1, 9201), network("red", 2, 9202)],
        macs: vec![SwitchMacEntry {
            network: "blue".into(),
            mac: remote_mac.into(),
            host_ip: other_host,
            moving_to: None,
        }],
        arps: vec![
            SwitchArpEntry {
                network: "blue".into(),
                ip: Ipv4Addr::new(10, 92, 0, 1),
                mac: MAC_A.into(),
            },
            SwitchArpEntry {
                network: "blue".into(),
                ip: Ipv4Addr::new(10, 92, 0, 2),
                mac: MAC_B.into(),
            },
        ],
        underlay_peers: vec![other_host],
        firewalls: vec![],
        qos: vec![],
        port_security: vec![],
        routers: vec![],
    }
}

async fn create(m: &Manager, vm: &VmInstance) -> Result<CommandReply, CommandError> {
    handle(
        m,
        AgentCommand::CreateVm {
            vm: vm.clone(),
            start: true,
        },
    )
    .await
}

fn vm_port(client: &mut SwitchClient, socket_dir: &Path) -> Option<u32> {
    client.config().unwrap().iter().find_map(|r| match r {
        Request::AddPort(p) => match &p.attach {
            Attachment::Vm { socket, .. } if socket.starts_with(socket_dir) => Some(p.id),
            _ => None,
        },
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_ping_across_vxlan_and_survive_a_switch_restart() {
    if !netns_and_qemu() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = KillQemusUnder(tmp.path().to_path_buf());
    let ds = datastore(tmp.path());

    // Two hosts joined by an underlay veth.
    let (ha, hb) = (Netns::new("a"), Netns::new("b"));
    let (ua, ub) = (name("u"), name("u"));
    sh(&[
        "ip", "link", "add", &ua, "netns", &ha.0, "type", "veth", "peer", "name", &ub, "netns",
        &hb.0,
    ]);
    let (ip_a, ip_b) = (Ipv4Addr::new(10, 91, 0, 1), Ipv4Addr::new(10, 91, 0, 2));
    ha.exec(&["ip", "addr", "add", "10.91.0.1/24", "dev", &ua]);
    hb.exec(&["ip", "addr", "add", "10.91.0.2/24", "dev", &ub]);
    ha.exec(&["ip", "link", "set", &ua, "up"]);
    hb.exec(&["ip", "link", "set", &ub, "up"]);
    let mut sw_a = Switch::start(&ha, tmp.path());
    let sw_b = Switch::start(&hb, tmp.path());

    // The agents open the VXLAN uplink themselves (the switches run without an underlay).
    let settings = |sw: &Switch, ip| SwitchAttachment {
        control: sw.control.clone(),
        underlay_ip: Some(ip),
        underlay_mtu: 1500,
        trunk_interface: None,
        // QEMU runs in the test's network namespace, the switch in another: a tap is seen
        // only in its namespace, sockets everywhere.
        vm_nic_ports: VmNicPorts::Dgram,
    };
    let ma = manager(
        &tmp.path().join("agent-a"),
        &ds,
        Some(settings(&sw_a, ip_a)),
    )
    .await;
    let mb = manager(
        &tmp.path().join("agent-b"),
        &ds,
        Some(settings(&sw_b, ip_b)),
    )
    .await;
    for (m, other, mac) in [(&ma, ip_b, MAC_B), (&mb, ip_a, MAC_A)] {
        let reply = handle(
            m,
            AgentCommand::ApplySwitchConfig {
                config: host_config(other, mac),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", sw_a.log_text(), sw_b.log_text()));
        assert_eq!(reply, CommandReply::Done);
    }
    let (mut ca, mut cb) = (sw_a.client(), sw_b.client());
    assert!(ca.counters().unwrap().port(UPLINK_PORT).is_some());

    // A NIC on a network this host does not have: refused, nothing left behind.
    let bad = instance_with("bad", "", vec![], vec![nic("green", "52:54:00:92:00:09")]);
    let err = create(&ma, &bad).await.unwrap_err();
    assert!(
        matches!(&err, CommandError::Network { detail } if detail.contains("green")),
        "{err:?}"
    );
    assert!(!tmp
        .path()
        .join("agent-a/vms")
        .join(bad.id.to_string())
        .exists());
    assert!(!ds.join("vms").join(bad.id.to_string()).exists());

    // Guest A pings B across the overlay; C, on red with B's address, pings A's address.
    let a = instance_with(
        "guest-a",
        "vinfra.ip=10.92.0.1/24 vinfra.ping=10.92.0.2",
        vec![],
        vec![nic("blue", MAC_A)],
    );
    let b = instance_with(
        "guest-b",
        "vinfra.ip=10.92.0.2/24",
        vec![],
        vec![nic("blue", MAC_B)],
    );
    let c = instance_with(
        "guest-c",
        "vinfra.ip=10.92.0.2/24 vinfra.ping=10.92.0.1",
        vec![],
        vec![nic("red", MAC_C)],
    );
    create(&ma, &a).await.unwrap();
    create(&mb, &b).await.unwrap();
    create(&ma, &c).await.unwrap();
    let dir_a = tmp.path().join("agent-a/vms").join(a.id.to_string());
    let dir_c = tmp.path().join("agent-a/vms").join(c.id.to_string());
    let port_a = vm_port(&mut ca, &dir_a).expect("guest A's port on switch A");
    let port_c = vm_port(&mut ca, &dir_c).expect("guest C's port on switch A");
    assert_ne!(port_a, port_c);
    let port_b = vm_port(
        &mut cb,
        &tmp.path().join("agent-b/vms").join(b.id.to_string()),
    )
    .expect("guest B's port on switch B");

    let log_a = ma.serial_log_path(a.id).await.unwrap();
    let log_c = ma.serial_log_path(c.id).await.unwrap();
    let diag = |ca: &mut SwitchClient, cb: &mut SwitchClient| {
        format!(
            "guest A:\n{}\nguest C:\n{}\nswitch A: {:#?}\nswitch B: {:#?}",
            read_from(&log_a, 0),
            read_from(&log_c, 0),
            ca.counters().ok(),
            cb.counters().ok()
        )
    };
    let ok_line = "VINFRA-PING 10.92.0.2 ok";
    let pinged = wait_until(Duration::from_secs(60), || {
        read_from(&log_a, 0).contains(ok_line)
    })
    .await;
    assert!(pinged, "A never reached B\n{}", diag(&mut ca, &mut cb));
    assert!(
        wait_until(Duration::from_secs(20), || read_from(&log_c, 0)
            .contains("VINFRA-PING 10.92.0.1 fail"))
        .await,
        "C's pinger did not run\n{}",
        diag(&mut ca, &mut cb)
    );

    // No frame crossed networks: C's port delivered nothing to C, B's port only blue frames.
    let counters = ca.counters().unwrap();
    let c_port = counters.port(port_c).unwrap();
    assert_eq!(c_port.traffic.tx_packets, 0, "{counters:#?}");
    assert!(c_port.traffic.rx_packets > 0, "{counters:#?}");
    assert!(counters.port(port_a).unwrap().traffic.tx_packets > 0);
    assert!(counters.port(UPLINK_PORT).unwrap().traffic.tx_packets > 0);
    assert!(!read_from(&log_c, 0).contains("VINFRA-PING 10.92.0.1 ok"));
    let counters_b = cb.counters().unwrap();
    assert!(counters_b.port(port_b).unwrap().traffic.tx_packets > 0);
    // C's broadcasts crossed to host B in red's VNI (red's flood list has B), and red has no
    // port there: not one copy went out of red, to B's port or any other.
    let red_b = counters_b.network(2).expect("host B has red");
    assert!(red_b.traffic.rx_packets > 0, "{counters_b:#?}");
    assert_eq!(
        red_b.traffic.tx_packets, 0,
        "red frames reached a port on host B: {counters_b:#?}"
    );

    // The same through the agents, named in the cluster's terms: VM ports by VM id and NIC
    // index, networks by name, the uplink.
    let switch_counters = |reply: CommandReply| match reply {
        CommandReply::SwitchCounters { counters } => counters,
        other => panic!("{other:?}"),
    };
    let host_a = switch_counters(handle(&ma, AgentCommand::SwitchCounters).await.unwrap());
    let host_b = switch_counters(handle(&mb, AgentCommand::SwitchCounters).await.unwrap());
    let vm_port_of = |h: &vinfra_types::network::HostSwitchCounters, id| {
        h.ports
            .iter()
            .find(|p| p.vm_id == id && p.nic == 0)
            .cloned()
            .unwrap_or_else(|| panic!("no port of {id} in {h:#?}"))
    };
    let (pa, pb, pc) = (
        vm_port_of(&host_a, a.id),
        vm_port_of(&host_b, b.id),
        vm_port_of(&host_a, c.id),
    );
    assert_eq!(
        (pa.port, pa.network.as_str(), pa.mac.as_str()),
        (port_a, "blue", MAC_A)
    );
    assert_eq!((pc.port, pc.network.as_str()), (port_c, "red"));
    for p in [&pa, &pb] {
        assert!(
            p.traffic.rx_packets > 0 && p.traffic.tx_packets > 0,
            "{p:#?}"
        );
        assert!(p.traffic.rx_bytes > 0 && p.traffic.tx_bytes > 0, "{p:#?}");
    }
    assert_eq!(pc.traffic.tx_packets, 0, "{host_a:#?}");
    assert!(host_a.uplink.as_ref().is_some_and(|u| u.tx_packets > 0));
    let blue_a = host_a.networks.iter().find(|n| n.network == "blue");
    assert!(
        blue_a.is_some_and(|n| n.traffic.rx_packets > 0),
        "{host_a:#?}"
    );

    // Switch A crashes: the guests keep running, A's pings fail.
    let before_kill = file_len(&log_a);
    sw_a.kill();
    assert!(
        wait_until(Duration::from_secs(20), || read_from(&log_a, before_kill)
            .contains("VINFRA-PING 10.92.0.2 fail"))
        .await,
        "pings did not fail with the switch down:\n{}",
        read_from(&log_a, 0)
    );
    for id in [a.id, c.id] {
        assert_eq!(ma.observe(id).await.unwrap().state, PowerState::Running);
    }

    // It restarts empty; the agent replays networks, uplink, ports and entries; pings resume.
    let before_restart = file_len(&log_a);
    sw_a.spawn();
    let mut ca = sw_a.client();
    let resumed = wait_until(Duration::from_secs(30), || {
        read_from(&log_a, before_restart).contains(ok_line)
    })
    .await;
    assert!(
        resumed,
        "pings did not resume after the restart\n{}\n{}",
        diag(&mut ca, &mut cb),
        sw_a.log_text()
    );
    let config = ca.config().unwrap();
    assert_eq!(vm_port(&mut ca, &dir_a), Some(port_a));
    assert!(config.iter().any(|r| matches!(r,
        Request::AddPort(p) if p.id == UPLINK_PORT)));
    assert!(
        config
            .iter()
            .filter(|r| matches!(r, Request::AddArpEntry { .. }))
            .count()
            == 2,
        "{config:#?}"
    );

    // B migrates to host A: its port exists on switch A before the guest arrives, leaves
    // switch B after the source is finished, and A's pings go on (now within host A).
    let CommandReply::Incoming { uri, .. } = handle(
        &ma,
        AgentCommand::PrepareIncoming {
            vm: b.clone(),
            tls: None,
        },
    )
    .await
    .unwrap() else {
        panic!("PrepareIncoming gave no URI")
    };
    let dir_b_on_a = tmp.path().join("agent-a/vms").join(b.id.to_string());
    assert!(vm_port(&mut ca, &dir_b_on_a).is_some());
    handle(
        &mb,
        AgentCommand::MigrateOut {
            id: b.id,
            uri,
            settings: MigrationSettings::default(),
            tls: None,
            redirect_to: None,
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let CommandReply::Migration { status } = handle(
            &mb,
            AgentCommand::MigrationStatus {
                id: b.id,
                wait_ms: 0,
            },
        )
        .await
        .unwrap() else {
            panic!("MigrationStatus gave no status")
        };
        if status.is_final() {
            assert_eq!(status.qemu_status, "completed", "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "migration stuck: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle(&mb, AgentCommand::FinishMigrationSource { id: b.id })
        .await
        .unwrap();
    assert_eq!(
        vm_port(
            &mut cb,
            &tmp.path().join("agent-b/vms").join(b.id.to_string())
        ),
        None
    );
    let after_migration = file_len(&log_a);
    assert!(
        wait_until(Duration::from_secs(30), || read_from(
            &log_a,
            after_migration
        )
        .contains(ok_line))
        .await,
        "pings did not resume after the migration\n{}",
        diag(&mut ca, &mut cb)
    );
    let port_b_on_a = vm_port(&mut ca, &dir_b_on_a).unwrap();
    assert!(
        ca.counters()
            .unwrap()
            .port(port_b_on_a)
            .unwrap()
            .traffic
            .rx_packets
            > 0
    );

    // Stopping and deleting take the ports off the switch.
    handle(
        &ma,
        AgentCommand::StopVm {
            id: c.id,
            force: true,
            timeout_s: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(vm_port(&mut ca, &dir_c), None);
    handle(
        &ma,
        AgentCommand::DeleteVm {
            id: a.id,
            delete_disks: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(vm_port(&mut ca, &dir_a), None);
    assert!(ca.config().unwrap().iter().all(|r| !matches!(r,
        Request::AddMacEntry { mac, .. } if mac.to_string() == MAC_A)));
}

#[tokio::test]
async fn nics_without_a_switch_are_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("datastore");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    for f in ["vinfra-guest-vmlinuz", "vinfra-guest-initrd.img"] {
        std::fs::write(ds.join("images").join(f), b"x").unwrap();
    }
    let data = tmp.path().join("agent");
    let m = manager(&data, &ds, None).await;
    let vm = instance_with("netless", "", vec![], vec![nic("blue", MAC_A)]);
    let err = create(&m, &vm).await.unwrap_err();
    assert!(
        matches!(&err, CommandError::Network { detail } if detail.contains("no virtual switch")),
        "{err:?}"
    );
    assert!(!data.join("vms").join(vm.id.to_string()).exists());
    assert!(!ds.join("vms").join(vm.id.to_string()).exists());
    let err = handle(
        &m,
        AgentCommand::PrepareIncoming {
            vm: vm.clone(),
            tls: None,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CommandError::Network { .. }), "{err:?}");
    assert!(!data.join("vms").join(vm.id.to_string()).exists());
    // An empty switch configuration is fine without a switch; networks are not.
    handle(
        &m,
        AgentCommand::ApplySwitchConfig {
            config: HostSwitchConfig::default(),
        },
    )
    .await
    .unwrap();
    let err = handle(
        &m,
        AgentCommand::ApplySwitchConfig {
            config: host_config(Ipv4Addr::new(10, 91, 0, 2), MAC_B),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CommandError::Network { .. }), "{err:?}");
}

#[tokio::test]
async fn the_agent_reports_the_underlay_mtu_of_a_switch_with_its_own_uplink() {
    if !netns_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ds = datastore(tmp.path());
    let host = Netns::new("m");
    let (ua, ub) = (name("u"), name("u"));
    host.exec(&[
        "ip", "link", "add", &ua, "type", "veth", "peer", "name", &ub,
    ]);
    host.exec(&["ip", "addr", "add", "10.93.0.1/24", "dev", &ua]);
    host.exec(&["ip", "link", "set", &ua, "up"]);
    host.exec(&["ip", "link", "set", &ub, "up"]);
    let ip = Ipv4Addr::new(10, 93, 0, 1);
    let sw = Switch::start_with_uplink(&host, tmp.path(), Some((ip, 1400)));
    // The agent was told 1500; the switch's uplink says 1400, and wins.
    let m = manager(
        &tmp.path().join("agent"),
        &ds,
        Some(SwitchAttachment {
            control: sw.control.clone(),
            underlay_ip: Some(ip),
            underlay_mtu: 1500,
            trunk_interface: None,
            // QEMU runs in the test's network namespace, the switch in another.
            vm_nic_ports: VmNicPorts::Dgram,
        }),
    )
    .await;
    let link = m.switch().unwrap().clone();
    let empty = HostSwitchConfig {
        networks: vec![],
        macs: vec![],
        arps: vec![],
        underlay_peers: vec![],
        firewalls: vec![],
        qos: vec![],
        port_security: vec![],
        routers: vec![],
    };
    let reply = handle(&m, AgentCommand::ApplySwitchConfig { config: empty })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sw.log_text()));
    assert_eq!(reply, CommandReply::Done);
    assert!(
        wait_until(Duration::from_secs(10), || link.underlay_mtu() == 1400).await,
        "underlay MTU {}; {}",
        link.underlay_mtu(),
        sw.log_text()
    );
    // The agent did not add an uplink of its own.
    let config = sw.client().config().unwrap();
    assert!(
        !config
            .iter()
            .any(|r| matches!(r, Request::AddPort(p) if p.id == UPLINK_PORT)),
        "{config:?}"
    );
}
