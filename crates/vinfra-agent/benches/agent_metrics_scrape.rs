//! The agent's `GET /metrics` with 1,000 VMs on the host, each with a NIC on the host's switch
//! (target: p99 ≤ 50 ms, and no more than twice the cost of the agent's report of the same
//! VMs).
//!
//! The VMs run on the fake QEMU (in memory; no `/proc` files, so no disk families); the switch
//! is a real switch daemon in this process (its datapath and control threads), with the
//! 1,000 NIC ports (Unix datagram sockets) the agent added, and some frames through each so
//! that its counters (and their drops) are not all zero. Each VM was observed once, as a
//! report does. Compared with the JSON report of the same host, which the agent sends the
//! console every 2 s: `connection::host_report` (every VM observed: 1,000 QEMU round trips on
//! the fake QEMU, at once) serialized as the session writes it. Both in-process, timed over
//! the same number of rounds; the scrape is also timed over HTTP (keep-alive, the whole body
//! read), which is what Prometheus sees.
//!
//! `cargo bench -p vinfra-agent --bench agent_metrics_scrape`

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vinfra_agent::connection::{host_report, HostInfo};
use vinfra_agent::manager::{Manager, ManagerConfig};
use vinfra_agent::network::{SwitchAttachment, VmNicPorts};
use vinfra_agent::qemu::fake::FakeRunner;
use vinfra_proto::{HostSwitchConfig, SwitchNetwork, SwitchNetworkKind, VmInstance};
use vinfra_types::{Accel, BootSource, HostCapacity, NicSpec, VmSpec};

const VMS: usize = 1_000;
const ROUNDS: usize = 200;
const TARGET_P99: Duration = Duration::from_millis(50);
const TARGET_RATIO: f64 = 2.0;

fn instance(i: usize) -> VmInstance {
    VmInstance {
        id: Uuid::new_v4(),
        spec: VmSpec {
            name: format!("vm-{i:04}"),
            vcpus: 1,
            memory_mib: 256,
            boot: BootSource::Kernel {
                kernel: "vmlinuz".into(),
                initrd: Some("initrd.img".into()),
                cmdline: "console=ttyS0".into(),
            },
            disks: Vec::new(),
            nics: vec![NicSpec {
                network: "red".into(),
                mac: Some(format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256)),
                ..Default::default()
            }],
            ha: Default::default(),
        },
        started_at: None,
        slot: None,
        platform: None,
    }
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `rounds` timings of `f`, sorted.
async fn time<F, Fut, T>(rounds: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        std::hint::black_box(f().await);
        times.push(t.elapsed());
    }
    times.sort_unstable();
    times
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let control = root.join("switch.ctl");
    let config = vinfra_switchd::SwitchdConfig::new(&control);
    std::thread::spawn(move || vinfra_switchd::run(config));
    let images = root.join("ds/images");
    std::fs::create_dir_all(&images).expect("datastore");
    std::fs::write(images.join("vmlinuz"), b"kernel").expect("kernel");
    std::fs::write(images.join("initrd.img"), b"initrd").expect("initrd");
    let octets = Uuid::new_v4().into_bytes();
    let fake = FakeRunner::new(Accel::Tcg);
    let m = Arc::new(
        Manager::open(ManagerConfig {
            data_dir: root.join("data"),
            datastore: root.join("ds"),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            runner: Arc::new(fake.clone()),
            switch: Some(SwitchAttachment {
                underlay_ip: Some(Ipv4Addr::new(127, 78, octets[0], octets[1].max(1))),
                vm_nic_ports: VmNicPorts::Dgram,
                ..SwitchAttachment::new(&control)
            }),
        })
        .await
        .expect("manager"),
    );
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
    .expect("switch configuration");

    let t = Instant::now();
    let vms: Vec<VmInstance> = (0..VMS).map(instance).collect();
    for vm in &vms {
        m.create(vm.clone(), true).await.expect("create");
    }
    let created = t.elapsed();
    // Frames through every NIC: 3 broadcasts and a runt (a drop) each.
    for vm in &vms {
        let record = m.record(vm.id).await.expect("record");
        let nic = &record.nics[0];
        let guest = std::os::unix::net::UnixDatagram::bind(&nic.qemu_socket).expect("bind");
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x88, 0xb5]);
        frame.resize(60, 0);
        for _ in 0..3 {
            let _ = guest.send_to(&frame, &nic.switch_socket);
        }
        let _ = guest.send_to(&[0xff; 5], &nic.switch_socket);
    }
    m.observe_all().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let listener = vinfra_agent::metrics::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("metrics listener");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(vinfra_agent::metrics::serve(listener, m.clone()));
    // Plain HTTP, but reqwest wants a TLS provider all the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let get = || async {
        let answer = http.get(&url).send().await.expect("GET /metrics");
        assert_eq!(answer.status(), 200);
        answer.bytes().await.expect("body")
    };

    // The first scrape, checked: every VM up, every NIC's frames counted.
    let text = String::from_utf8(get().await.to_vec()).expect("UTF-8");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let sum = |family: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == family)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let up = sum("vinfra_agent_vm_up");
    let rx = sum("vinfra_switch_port_rx_packets_total");
    let drops = sum("vinfra_switch_port_drops_total");
    let series = scrape.samples.len();
    let body = text.len();

    let info = HostInfo {
        host: "h1".into(),
        address: "127.0.0.1".into(),
        qemu_version: "9.2.0".into(),
        capacity: HostCapacity {
            cores: 64,
            memory_mib: 512 * 1024,
        },
        platform: None,
        guard: None,
    };
    let report_len = serde_json::to_vec(&host_report(&m, &info).await)
        .expect("JSON")
        .len();

    let scrapes = time(ROUNDS, || vinfra_agent::metrics::scrape(&m)).await;
    let reports = time(ROUNDS, || async {
        serde_json::to_vec(&host_report(&m, &info).await).expect("JSON")
    })
    .await;
    let over_http = time(ROUNDS, get).await;
    // Where a scrape's time goes: reading the snapshot (the switch's counters among it), and
    // rendering it.
    let snapshots = time(ROUNDS, || vinfra_agent::metrics::scrape::snapshot(&m)).await;
    let snapshot = vinfra_agent::metrics::scrape::snapshot(&m).await;
    let renders = time(ROUNDS, || async {
        vinfra_agent::metrics::render(&snapshot)
    })
    .await;
    let switch = m.switch().cloned().expect("a switch");
    let counters = time(ROUNDS, || {
        let switch = switch.clone();
        async move { tokio::task::spawn_blocking(move || switch.counters_with_view()).await }
    })
    .await;
    let load = loadavg();

    let (s50, s99) = (pct(&scrapes, 50), pct(&scrapes, 99));
    let (r50, r99) = (pct(&reports, 50), pct(&reports, 99));
    let (h50, h99) = (pct(&over_http, 50), pct(&over_http, 99));
    println!(
        "agent GET /metrics, {VMS} VMs with a NIC each (fake QEMU, real switch daemon), {ROUNDS} rounds \
         (load average {load}; {VMS} VMs created in {:.1} s)",
        created.as_secs_f64()
    );
    println!(
        "  scrape (in-process):  p50 {:.2} ms  p99 {:.2} ms  body {} KiB, {series} samples",
        ms(s50),
        ms(s99),
        body / 1024
    );
    println!(
        "  scrape (HTTP):        p50 {:.2} ms  p99 {:.2} ms",
        ms(h50),
        ms(h99)
    );
    println!(
        "  of which: snapshot p50 {:.2} ms (the switch's counters p50 {:.2} ms), render p50 {:.2} ms",
        ms(pct(&snapshots, 50)),
        ms(pct(&counters, 50)),
        ms(pct(&renders, 50))
    );
    println!(
        "  report (JSON):        p50 {:.2} ms  p99 {:.2} ms  body {} KiB (what the agent sends the console every 2 s)",
        ms(r50),
        ms(r99),
        report_len / 1024
    );
    println!("  first scrape: {up}/{VMS} VMs up, {rx} frames received on VM NICs, {drops} dropped");
    assert_eq!(up, VMS as f64, "every VM up");
    assert!(rx >= (3 * VMS) as f64, "every NIC's frames counted");
    assert!(drops >= VMS as f64, "every NIC's runt dropped");
    let ratio = s99.as_secs_f64() / r99.as_secs_f64();
    println!(
        "  scrape p99 / report p99: {ratio:.2} (target ≤ {TARGET_RATIO}); HTTP p99 target ≤ {} ms",
        TARGET_P99.as_millis()
    );
    println!(
        "RESULT agent_metrics_scrape {ratio:.2} {}",
        if ratio <= TARGET_RATIO && h99 <= TARGET_P99 {
            "PASS"
        } else {
            "FAIL"
        }
    );
}
