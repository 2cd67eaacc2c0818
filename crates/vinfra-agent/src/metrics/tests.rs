//! The agent's `GET /metrics` over HTTP, against the fake QEMU and (for the switch's families)
//! a switch daemon in this process, read back with the `prometheus-parse` crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_proto::{HostSwitchConfig, SwitchNetwork, SwitchNetworkKind, VmInstance};
use vinfra_types::{Accel, BootSource, NicSpec, VmSpec};

use crate::manager::{Manager, ManagerConfig};
use crate::network::{SwitchAttachment, VmNicPorts};
use crate::qemu::fake::FakeRunner;

/// A datastore with a kernel and an initrd under `root`, and a manager over the fake QEMU.
async fn manager(root: &Path, fake: &FakeRunner, switch: Option<SwitchAttachment>) -> Manager {
    let images = root.join("ds/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(images.join("initrd.img"), b"initrd").unwrap();
    Manager::open(ManagerConfig {
        data_dir: root.join("data"),
        datastore: root.join("ds"),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        runner: Arc::new(fake.clone()),
        switch,
    })
    .await
    .unwrap()
}

fn instance(name: &str, nics: Vec<NicSpec>) -> VmInstance {
    VmInstance {
        id: Uuid::new_v4(),
        spec: VmSpec {
            name: name.into(),
            vcpus: 2,
            memory_mib: 64,
            boot: BootSource::Kernel {
                kernel: "vmlinuz".into(),
                initrd: Some("initrd.img".into()),
                cmdline: "console=ttyS0".into(),
            },
            disks: Vec::new(),
            nics,
            ha: Default::default(),
        },
        started_at: None,
        slot: None,
        platform: None,
    }
}

/// Serves the manager's metrics on a loopback port; its address.
async fn listen(m: Arc<Manager>) -> SocketAddr {
    let listener = super::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(super::serve(listener, m));
    addr
}

/// `GET /metrics` over HTTP, parsed.
async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    // Plain HTTP, but reqwest wants a TLS provider all the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = answer.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample of `family` whose labels include `labels`; `None` without one.
fn value(s: &prometheus_parse::Scrape, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == family && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test]
async fn vms_and_the_console_session_are_scraped() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeRunner::new(Accel::Tcg);
    let m = Arc::new(manager(tmp.path(), &fake, None).await);
    let vm = instance("alpha", vec![]);
    m.create(vm.clone(), true).await.unwrap();
    let addr = listen(m.clone()).await;

    let s = scrape(addr).await;
    let alpha = [("vm", "alpha")];
    assert_eq!(value(&s, "vinfra_agent_vm_up", &alpha), Some(1.0));
    assert_eq!(value(&s, "vinfra_agent_vm_vcpus", &alpha), Some(2.0));
    assert_eq!(
        value(&s, "vinfra_agent_vm_memory_bytes", &alpha),
        Some((64u64 << 20) as f64)
    );
    assert_eq!(
        value(&s, "vinfra_agent_vms", &[("state", "running")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "vinfra_agent_vms", &[("state", "crashed")]),
        Some(0.0)
    );
    assert_eq!(value(&s, "vinfra_agent_console_connected", &[]), Some(0.0));
    assert_eq!(value(&s, "vinfra_agent_reports_sent_total", &[]), Some(0.0));
    // No switch: no switch families.
    assert_eq!(value(&s, "vinfra_switch_up", &[]), None);
    // A fake QEMU's pid has no /proc files: no disk counters (rather than zeros).
    assert_eq!(
        value(&s, "vinfra_agent_vm_disk_read_bytes_total", &alpha),
        None
    );

    // A session with reports: the counter moves.
    m.contact().set_session(true);
    m.contact().report_sent();
    m.contact().report_sent();
    let s = scrape(addr).await;
    assert_eq!(value(&s, "vinfra_agent_console_connected", &[]), Some(1.0));
    assert_eq!(value(&s, "vinfra_agent_reports_sent_total", &[]), Some(2.0));

    // The QEMU dies: the next observation (a report's) finds it, and so does the scrape.
    fake.crash(vm.id);
    m.observe_all().await;
    let s = scrape(addr).await;
    assert_eq!(value(&s, "vinfra_agent_vm_up", &alpha), Some(0.0));
    assert_eq!(
        value(&s, "vinfra_agent_vms", &[("state", "crashed")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "vinfra_agent_vms", &[("state", "running")]),
        Some(0.0)
    );

    // Deleted: its series are gone.
    m.delete(vm.id, true).await.unwrap();
    let s = scrape(addr).await;
    assert_eq!(value(&s, "vinfra_agent_vm_up", &alpha), None);
}

#[tokio::test]
async fn an_unspecified_address_is_refused() {
    let e = super::bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
    assert!(matches!(e, super::MetricsError::Unspecified(_)), "{e}");
    let e = super::bind("[::]:0".parse().unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("management or loopback"), "{e}");
    let e = super::bind("[::ffff:0.0.0.0]:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, super::MetricsError::Unspecified(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_counters_move_with_a_nic_s_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let control = tmp.path().join("switch.ctl");
    let config = vinfra_switchd::SwitchdConfig::new(&control);
    // The daemon runs until the test process ends.
    std::thread::spawn(move || vinfra_switchd::run(config));
    // An underlay address of its own on the loopback for the overlay network's uplink.
    let octets = Uuid::new_v4().into_bytes();
    let underlay = Ipv4Addr::new(127, 77, octets[0], octets[1].max(1));
    let attachment = SwitchAttachment {
        underlay_ip: Some(underlay),
        vm_nic_ports: VmNicPorts::Dgram,
        ..SwitchAttachment::new(&control)
    };
    let fake = FakeRunner::new(Accel::Tcg);
    let m = Arc::new(manager(tmp.path(), &fake, Some(attachment)).await);
    m.apply_switch_config(HostSwitchConfig {
        networks: vec![SwitchNetwork {
            name: "red".into(),
            id: 2,
            kind: SwitchNetworkKind::Overlay { vni: 5002 },
            mtu: 1450,
            flood: vec![],
            dhcp: None,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let nic = NicSpec {
        network: "red".into(),
        mac: Some("52:54:00:12:34:56".into()),
        ..Default::default()
    };
    let vm = instance("alpha", vec![nic]);
    m.create(vm.clone(), true).await.unwrap();
    let addr = listen(m.clone()).await;
    let port = [
        ("port", "vm"),
        ("vm", "alpha"),
        ("nic", "0"),
        ("network", "red"),
    ];

    let before = scrape(addr).await;
    assert_eq!(value(&before, "vinfra_switch_up", &[]), Some(1.0));
    let rx = |s: &prometheus_parse::Scrape| value(s, "vinfra_switch_port_rx_packets_total", &port);
    let batches =
        |s: &prometheus_parse::Scrape| value(s, "vinfra_switch_rx_batch_frames_total", &[]);
    assert_eq!(rx(&before), Some(0.0), "{:?}", before.samples);

    // The guest's side of the NIC: 5 broadcasts from its MAC of the local experimental
    // EtherType (which the NIC's port security does not allow), and one runt.
    let record = m.record(vm.id).await.unwrap();
    let nic = &record.nics[0];
    let guest = std::os::unix::net::UnixDatagram::bind(&nic.qemu_socket).unwrap();
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xb5]);
    frame.resize(60, 0);
    for _ in 0..5 {
        guest.send_to(&frame, &nic.switch_socket).unwrap();
    }
    guest.send_to(&[0xff; 5], &nic.switch_socket).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = scrape(addr).await;
        if rx(&s) >= Some(5.0) || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(rx(&after) >= Some(5.0), "{:?}", after.samples);
    assert!(value(&after, "vinfra_switch_port_rx_bytes_total", &port) >= Some(5.0 * 60.0));
    let mut runt = port.to_vec();
    runt.push(("reason", "runt"));
    assert_eq!(
        value(&after, "vinfra_switch_port_drops_total", &runt),
        Some(1.0)
    );
    let mut ethertype = port.to_vec();
    ethertype.push(("reason", "ethertype_not_allowed"));
    assert_eq!(
        value(&after, "vinfra_switch_port_drops_total", &ethertype),
        Some(5.0)
    );
    // Every frame came in some read of the port.
    assert!(
        batches(&after) >= batches(&before).map(|n| n + 6.0),
        "{:?} then {:?}",
        batches(&before),
        batches(&after)
    );
    // The reads are counted by how many frames each brought (the six frames may come in one
    // read or in several): the batches' frames add up to those of every read.
    let by_size: Vec<(f64, f64)> = after
        .samples
        .iter()
        .filter(|x| x.metric == "vinfra_switch_rx_batches_total")
        .filter_map(|x| {
            let frames: f64 = x.labels.get("frames")?.trim_end_matches('+').parse().ok()?;
            match x.value {
                prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) => {
                    Some((frames, n))
                }
                _ => None,
            }
        })
        .collect();
    let reads: f64 = by_size.iter().map(|(_, n)| n).sum();
    assert!(reads >= 1.0, "no read counted by its size: {by_size:?}");
    assert_eq!(
        value(
            &after,
            "vinfra_switch_network_drops_total",
            &[("network", "red"), ("reason", "runt")]
        ),
        Some(1.0)
    );
    // The report to the console carries the same traffic, seen from the VM: what it sent.
    let info = crate::connection::HostInfo {
        host: "h1".into(),
        address: "127.0.0.1".into(),
        qemu_version: "7.2.0".into(),
        capacity: vinfra_types::HostCapacity {
            cores: 2,
            memory_mib: 2048,
        },
        platform: None,
        guard: None,
    };
    let report = crate::connection::host_report(&m, &info).await;
    let net = report
        .vms
        .iter()
        .find(|v| v.id == vm.id)
        .and_then(|v| v.net)
        .expect("the report has the VM's traffic");
    assert!(net.tx_bytes >= 5 * 60, "{net:?}");
    assert_eq!(net.rx_bytes, 0, "{net:?}");
}

/// Every family the console and the agent export.
fn exported() -> Vec<&'static str> {
    use vinfra_console::metrics as console;
    let mut names: Vec<&'static str> = super::names::HELP.iter().map(|(n, _)| *n).collect();
    names.extend([
        console::HTTP_REQUESTS,
        console::HTTP_DURATION,
        console::VMS_DESIRED,
        console::VMS_OBSERVED,
        console::HOSTS,
        console::MIGRATIONS_STARTED,
        console::MIGRATIONS_ENDED,
        console::MIGRATION_DURATION,
        console::MIGRATIONS_RUNNING,
        console::BALANCER_PASSES,
        console::BALANCER_MOVES,
        console::STORE_COMMIT,
        console::TASKS_ENDED,
        console::TASKS_RUNNING,
    ]);
    names
}

/// The `vinfra_…` names in `text`.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("vinfra_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_and_the_readme_use_the_exported_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exported = exported();
    let dashboard = std::fs::read_to_string(root.join("docs/grafana/vinfra.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let used = names_in(&dashboard);
    for name in &used {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| exported.contains(f))
            .unwrap_or(name);
        assert!(
            exported.contains(&family),
            "the dashboard reads {name}, which nothing exports"
        );
    }
    for family in ["vinfra_console_", "vinfra_agent_", "vinfra_switch_"] {
        assert!(
            used.iter().any(|n| n.starts_with(family)),
            "no {family} panel"
        );
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for name in &exported {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not list {name}"
        );
    }
}
