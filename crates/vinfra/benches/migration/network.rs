//! The network case: what a continuous ping every `PING_MS` sees of the migrating guest, ours
//! through the API, plain QEMU on switches of its own and on Linux bridges (`plain_net.rs`),
//! same topology (see the benchmark's module doc).

use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::NicSpec;

use super::plain_net::{
    plain_argv, PlainBridges, PlainPath, PlainSwitches, BRIDGE_TAP, OVERLAY_MTU, PLAIN_GUEST,
    PLAIN_GUEST_MAC, PLAIN_PINGER, PLAIN_PINGER_MAC, PLAIN_VNI,
};
use super::*;

/// A run of unanswered pings: `lost` pings, `silence_ms` between the replies before and after.
#[derive(Debug, Clone, Copy, Default)]
struct PingGap {
    lost: u64,
    silence_ms: f64,
}

/// One migration of the network case.
#[derive(Debug, Clone, Default)]
pub(super) struct NetRun {
    /// Completed, and the pings were answered again afterwards.
    completed: bool,
    total_ms: f64,
    downtime_ms: f64,
    /// The longest gap since the migration started (zero when no ping was lost).
    gap: PingGap,
    /// Every gap since the migration started.
    gaps: Vec<PingGap>,
    note: String,
}

impl NetRun {
    fn from_migration(run: &Run) -> NetRun {
        NetRun {
            completed: run.completed,
            total_ms: run.total_ms,
            downtime_ms: run.downtime_ms,
            note: run.note.clone(),
            ..NetRun::default()
        }
    }

    fn set_gaps(&mut self, gaps: Vec<PingGap>) {
        self.gap = gaps
            .iter()
            .copied()
            .max_by(|a, b| a.silence_ms.total_cmp(&b.silence_ms))
            .unwrap_or_default();
        self.gaps = gaps;
    }
}

/// The gap lines of the guest's fast pinger in a serial log, in order:
/// `VINFRA-PINGGAP <lost> <first_lost_seq> <interval_ms> <silence_ms>`.
fn guest_gaps(text: &str) -> Vec<PingGap> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("VINFRA-PINGGAP "))
        .filter_map(|rest| {
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            match f[..] {
                [lost, _, _, silence] => Some(PingGap {
                    lost,
                    silence_ms: silence as f64,
                }),
                _ => None,
            }
        })
        .collect()
}

/// How often the guest's fast pinger had to start ping again (a gap across a restart is not
/// reported).
fn guest_restarts(text: &str, target: &str) -> usize {
    let line = format!("VINFRA-PINGFAST {target} restart");
    text.lines().filter(|l| l.trim() == line).count()
}

/// The replies the guest's fast pinger counted so far (its last progress line).
fn guest_replies(text: &str, target: &str) -> u64 {
    let prefix = format!("VINFRA-PINGFAST {target} ok ");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits until `f` holds, at most `timeout`; false when it never did.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Ours: the migrating VM `n<k>` on h1 and its pinger `p<k>` on h3, both on the overlay network
/// `NET_NAME`; `n<k>` migrates to h2. Returns the run and the QEMU command lines of `n<k>` and
/// `p<k>`.
fn ours_network(lab: &LabGuard, k: usize) -> (NetRun, Vec<String>, Vec<String>) {
    let api = lab.api().expect("API client");
    // Fresh addresses per run: a deleted VM's address is not reused while its deletion runs.
    let (peer_ip, vm_ip) = (
        format!("10.86.0.{}", 10 + k),
        format!("10.86.0.{}", 100 + k),
    );
    let create = |name: &str, host: &str, ip: &str, memory: u64, extra: &str| -> VmSummary {
        let mut req = Lab::guest_vm_request(name, memory, Some(host));
        // The guest configures its NIC from its command line alone (the console never adds to it).
        if let BootSource::Kernel { cmdline: c, .. } = &mut req.spec.boot {
            *c = format!("{} vinfra.ip={ip}/24{extra}", cmdline(0));
        }
        req.spec.nics = vec![NicSpec {
            network: NET_NAME.into(),
            mac: None,
            ip: Some(ip.into()),
            ..Default::default()
        }];
        api.create_vm(&req)
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
    };
    let (peer_name, name) = (format!("p{k}"), format!("n{k}"));
    let peer = create(
        &peer_name,
        "h3",
        &peer_ip,
        128,
        &format!(" vinfra.pingfast={vm_ip},{PING_MS}"),
    );
    let vm = create(&name, "h1", &vm_ip, MEMORY_MIB, "");
    let id = vm.id.to_string();
    let pids = lab.qemu_pids_for(&id);
    assert_eq!(pids.len(), 1, "one QEMU for {name}: {pids:?}");
    let argv = common::argv_of(pids[0]);
    wait_guest(&serial_log(lab, 0, &id), 0);
    let peer_pids = lab.qemu_pids_for(&peer.id.to_string());
    assert_eq!(
        peer_pids.len(),
        1,
        "one QEMU for {peer_name}: {peer_pids:?}"
    );
    let peer_argv = common::argv_of(peer_pids[0]);
    let peer_log = serial_log(lab, 2, &peer.id.to_string());
    let run = across_migration(&peer_log, &vm_ip, &name, || api_migrate(&api, &name, "h2"));
    for n in [&name, &peer_name] {
        api.delete_vm(n, true)
            .unwrap_or_else(|e| panic!("delete {n}: {e}"));
    }
    (run, argv, peer_argv)
}

/// Watches the pinger guest's serial log `peer_log` (pinging `target`, the guest of VM `name`)
/// across `migrate`: waits for steady replies, runs the migration, waits for replies after its
/// end and returns the run with the gaps the pinger printed since the migration started.
fn across_migration(
    peer_log: &Path,
    target: &str,
    name: &str,
    migrate: impl FnOnce() -> Run,
) -> NetRun {
    assert!(
        wait_until(BOOT_TIMEOUT, || guest_replies(&read_log(peer_log), target)
            > 0),
        "the pings of {name} were never answered"
    );
    // Two seconds of steady replies.
    std::thread::sleep(Duration::from_secs(2));
    let text = read_log(peer_log);
    let (before, restarts) = (guest_gaps(&text).len(), guest_restarts(&text, target));

    let mut run = NetRun::from_migration(&migrate());
    if run.completed {
        let at_end = guest_replies(&read_log(peer_log), target);
        if wait_until(RESUME_TIMEOUT, || {
            guest_replies(&read_log(peer_log), target) > at_end
        }) {
            // The gap line is printed with the first reply after it; let a second pass.
            std::thread::sleep(Duration::from_secs(1));
        } else {
            run.completed = false;
            run.note = format!(
                "no reply within {} s of the migration's end",
                RESUME_TIMEOUT.as_secs()
            );
        }
    }
    let text = read_log(peer_log);
    let all = guest_gaps(&text);
    run.set_gaps(all[before.min(all.len())..].to_vec());
    if run.completed && guest_restarts(&text, target) != restarts {
        run.completed = false;
        run.note = "the pinger's ping exited during the migration: gap unknown".into();
    }
    run
}

/// Plain: the same two guests (`argv`: the migrating VM's command line, `pinger_argv`: its
/// pinger's) on the same hosts and the same path shape as ours (QEMU `-netdev tap` on a tap of a
/// `vinfra switch` on each host, VXLAN between the hosts over the lab's underlay), but no
/// console and no agents: the benchmark configures the switches once as the console would
/// (ports on h1, h2 and h3, the VMs' MAC and ARP entries; h2's port ready for the incoming
/// QEMU) and never again, and drives QEMU directly over QMP with QEMU's default parameters, as
/// the idle case's plain side does. The pinger on h3 pings every `PING_MS`
/// with the same guest tool as ours; after the switchover the destination's announce moves h3's
/// MAC entry (MAC mobility, expected as the console expects it for ours: `ExpectMacMove`).
/// With [`PlainPath::Bridge`] the same guests and QEMU commands on Linux bridges instead
/// ([`PlainBridges`]): nothing configured per guest, the guest's announce moves h3's entry.
fn plain_network(
    lab: &LabGuard,
    argv: &[String],
    pinger_argv: &[String],
    tag: &str,
    port: u16,
    path: PlainPath,
) -> NetRun {
    use vinfra_switch_control::{Attachment, LocationSpec, Mac, NetworkSpec, PortSpec, Request};
    let base = lab.state().root.join("bench-plain").join(tag);
    let dirs: Vec<PathBuf> = ["src", "dst", "pinger"]
        .iter()
        .map(|d| base.join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).expect("create a QEMU directory");
    }
    let (mut sw, bridges, taps) = match path {
        PlainPath::Switches => (
            Some(PlainSwitches::start(lab, &base)),
            None,
            // One tap per host (each in its host's namespace, beside the agent's own).
            (0..3).map(|i| format!("vplain{i}")).collect::<Vec<_>>(),
        ),
        PlainPath::Bridge => (
            None,
            Some(PlainBridges::start(lab)),
            vec![BRIDGE_TAP.to_string(); 3],
        ),
    };
    let mac = |m: &str| m.parse::<Mac>().expect("MAC");
    let vteps = sw.as_ref().map(|s| s.vteps.clone()).unwrap_or_default();
    let clients = sw
        .as_mut()
        .map(|s| s.clients.as_mut_slice())
        .unwrap_or_default();
    for (i, client) in clients.iter_mut().enumerate() {
        let here = |on: bool, at: usize| {
            if on {
                LocationSpec::Port(1)
            } else {
                LocationSpec::Vtep(vteps[at])
            }
        };
        let mut config = vec![
            Request::AddNetwork {
                id: 1,
                kind: NetworkSpec::Overlay { vni: PLAIN_VNI },
            },
            Request::SetFloodList {
                network: 1,
                vteps: vteps
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, v)| *v)
                    .collect(),
            },
            Request::AddPort(PortSpec {
                id: 1,
                mtu: OVERLAY_MTU,
                attach: Attachment::VmTap {
                    network: 1,
                    tap: taps[i].clone(),
                    owner: None,
                },
            }),
            Request::AddArpEntry {
                network: 1,
                ip: PLAIN_GUEST.parse().expect("IP"),
                mac: mac(PLAIN_GUEST_MAC),
            },
            Request::AddArpEntry {
                network: 1,
                ip: PLAIN_PINGER.parse().expect("IP"),
                mac: mac(PLAIN_PINGER_MAC),
            },
            Request::AddMacEntry {
                network: 1,
                mac: mac(PLAIN_GUEST_MAC),
                location: here(i < 2, 0),
            },
            Request::AddMacEntry {
                network: 1,
                mac: mac(PLAIN_PINGER_MAC),
                location: here(i == 2, 2),
            },
        ];
        if i == 2 {
            // As the console tells every other host when a migration begins: the guest's MAC
            // may move to the destination's VTEP (port security moves it on no other word).
            config.push(Request::ExpectMacMove {
                network: 1,
                mac: mac(PLAIN_GUEST_MAC),
                to: Some(vteps[1]),
            });
        }
        client
            .apply(&config)
            .unwrap_or_else(|e| panic!("configure the plain switch of host {i}: {e}"));
    }
    let guest_append = format!("{} vinfra.ip={PLAIN_GUEST}/24", cmdline(0));
    let pinger_append = format!(
        "{} vinfra.ip={PLAIN_PINGER}/24 vinfra.pingfast={PLAIN_GUEST},{PING_MS}",
        cmdline(0)
    );
    let src_argv = plain_argv(argv, &dirs[0], &taps[0], PLAIN_GUEST_MAC, &guest_append);
    let mut dst_argv = plain_argv(argv, &dirs[1], &taps[1], PLAIN_GUEST_MAC, &guest_append);
    let p_argv = plain_argv(
        pinger_argv,
        &dirs[2],
        &taps[2],
        PLAIN_PINGER_MAC,
        &pinger_append,
    );
    let h2 = lab.state().hosts[1].address;
    let uri = format!("tcp:{h2}:{port}");
    dst_argv.extend(["-incoming".to_string(), uri.clone()]);
    let ns = |i: usize| lab.state().hosts[i].namespace.clone();
    for (i, a) in [(2, p_argv), (1, dst_argv), (0, src_argv)] {
        common::in_netns(&ns(i), move || common::run_daemonized(&a))
            .join()
            .expect("start a plain QEMU");
    }
    let mut src = Qmp::connect(&dirs[0].join("qmp.sock"));
    let dst = Qmp::connect(&dirs[1].join("qmp.sock"));
    let pinger = Qmp::connect(&dirs[2].join("qmp.sock"));
    wait_guest(&dirs[0].join("serial.log"), 0);
    let run = across_migration(&dirs[2].join("serial.log"), PLAIN_GUEST, "plain", || {
        qmp_migrate(&mut src, &uri, Instant::now())
    });
    let pid = common::read_pid(&dirs[2].join("qemu.pid"));
    pinger.quit();
    if let Some(pid) = pid {
        common::wait_gone(pid, Duration::from_secs(10));
    }
    quit_plain(src, dst, &dirs[0], &dirs[1], &base);
    drop(sw);
    drop(bridges);
    run
}

pub(super) fn run_network_case(lab: &LabGuard, runs: usize, port: &mut u16) -> NetSides {
    let req = CreateNetworkRequest {
        name: NET_NAME.into(),
        kind: NetworkKind::Overlay,
        vni: None,
        vlan_id: None,
        subnet: NET_SUBNET.into(),
        gateway: None,
        mtu: None,
    };
    lab.api()
        .expect("API client")
        .create_network(&req)
        .unwrap_or_else(|e| panic!("create network {NET_NAME}: {e}"));
    let mut sides = NetSides::default();
    for k in 0..runs {
        let (o, argv, pinger_argv) = ours_network(lab, k);
        eprintln!("network #{k} ours:  {o:?}");
        *port += 1;
        let tag = format!("net-{k}");
        let p = plain_network(lab, &argv, &pinger_argv, &tag, *port, PlainPath::Switches);
        eprintln!("network #{k} plain: {p:?}");
        *port += 1;
        let tag = format!("bridge-{k}");
        let b = plain_network(lab, &argv, &pinger_argv, &tag, *port, PlainPath::Bridge);
        eprintln!("network #{k} bridge: {b:?}");
        sides.ours.push(o);
        sides.plain.push(p);
        sides.bridge.push(b);
    }
    sides
}

/// The network case's runs: ours, plain QEMU on our switches, plain QEMU on Linux bridges.
#[derive(Default)]
pub(super) struct NetSides {
    ours: Vec<NetRun>,
    plain: Vec<NetRun>,
    bridge: Vec<NetRun>,
}

fn net_median(runs: &[NetRun], f: impl Fn(&NetRun) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().filter(|r| r.completed).map(f).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Ours' gap over the baseline's (the means for the target, the medians recorded): no gap on
/// either side is equal (1), none of ours against the baseline's is 0, a gap against none
/// infinitely worse.
fn gap_ratio(ours: f64, base: f64) -> f64 {
    match (ours > 0.0, base > 0.0) {
        (false, false) => 1.0,
        (false, true) => 0.0,
        (true, false) => f64::INFINITY,
        (true, true) => ours / base,
    }
}

pub(super) fn report_network(sides: &NetSides) {
    let (ours, plain, bridge) = (&sides.ours, &sides.plain, &sides.bridge);
    println!(
        "Network gap across a live migration, ping every {PING_MS} ms, medians of completed runs \
         (ours and plain: overlay through vinfra switch h1 -> h2, pinger VM on h3; plain: no \
         console or agents; bridge: the same QEMUs on a Linux bridge and kernel VXLAN per host)"
    );
    println!(
        "{:<14} {:>9} {:>17} {:>7} {:>15} {:>15} {:>15}",
        "case", "completed", "gap ms", "ratio", "lost pings", "downtime ms", "total ms"
    );
    let done = |r: &[NetRun]| r.iter().filter(|x| x.completed).count();
    let gap = |r: &[NetRun]| net_median(r, |r| r.gap.silence_ms);
    let (og, pg, bg) = (gap(ours), gap(plain), gap(bridge));
    // Most runs lose no ping or one (a gap of 0 or about three ping intervals), so a median of
    // them flips with one run: the target compares the mean gaps.
    let mean = |r: &[NetRun]| {
        let v: Vec<f64> = r
            .iter()
            .filter(|x| x.completed)
            .map(|x| x.gap.silence_ms)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let (om, pm, bm) = (mean(ours), mean(plain), mean(bridge));
    let lost_in = |r: &[NetRun]| r.iter().filter(|x| x.completed && x.gap.lost > 0).count();
    for (label, other, g) in [("network", plain, pg), ("network-bridge", bridge, bg)] {
        println!(
            "{:<14} {:>4}/{:<4} {:>8.0}/{:<8.0} {:>6.2}x {:>7.0}/{:<7.0} {:>7.0}/{:<7.0} {:>7.0}/{:<7.0}",
            label,
            done(ours),
            done(other),
            og,
            g,
            gap_ratio(og, g),
            net_median(ours, |r| r.gap.lost as f64),
            net_median(other, |r| r.gap.lost as f64),
            net_median(ours, |r| r.downtime_ms),
            net_median(other, |r| r.downtime_ms),
            net_median(ours, |r| r.total_ms),
            net_median(other, |r| r.total_ms),
        );
    }
    for (side, runs) in [("ours", ours), ("plain", plain), ("bridge", bridge)] {
        for r in runs.iter() {
            if r.completed {
                let gaps: Vec<String> = r
                    .gaps
                    .iter()
                    .map(|g| format!("{} lost/{:.0} ms", g.lost, g.silence_ms))
                    .collect();
                println!("  {side}: gaps [{}]", gaps.join(", "));
            } else {
                println!("  {side}: {}", r.note);
            }
        }
    }
    println!(
        "  mean gap: ours {om:.1} ms, plain {pm:.1} ms, bridge {bm:.1} ms; runs that lost a ping: \
         ours {}/{}, plain {}/{}, bridge {}/{}",
        lost_in(ours),
        done(ours),
        lost_in(plain),
        done(plain),
        lost_in(bridge),
        done(bridge)
    );
    println!(
        "RESULT migration network gap ours {og:.0} ms plain {pg:.0} ms ratio {:.2} (recorded, no target)",
        gap_ratio(og, pg)
    );
    // The target: the mean gap at most the same guests' on a Linux bridge, every migration done.
    let ratio = gap_ratio(om, bm);
    let all_done = done(ours) == ours.len() && done(bridge) == bridge.len();
    println!(
        "RESULT migration network gap-ratio {ratio:.2} (mean gap ours {om:.1} ms, Linux bridge \
         {bm:.1} ms) target <= 1.00: {}",
        if ratio <= 1.0 && all_done {
            "PASS"
        } else {
            "FAIL"
        }
    );
    // Every migration must complete and the guest must answer again afterwards.
    let all_back = all_done && done(plain) == plain.len();
    println!(
        "RESULT migration network pings back ours {}/{} plain {}/{} bridge {}/{}: {}",
        done(ours),
        ours.len(),
        done(plain),
        plain.len(),
        done(bridge),
        bridge.len(),
        if all_back { "PASS" } else { "FAIL" }
    );
}
