//! Routers (VRFs) end to end in a 2-host lab, with real guests, real pings, real TCP.
//!
//! Two tenants use the same address plan: tenant A's router `ra` joins networks `a-web`
//! (10.60.1.0/24) and `a-db` (10.60.2.0/24, MTU 1200), tenant B's router `rb` joins `b-web` and
//! `b-db` with the same subnets. Each network's gateway is its first address (.1), the same
//! address and MAC on both hosts.
//! - `aw` (h1, a-web, 10.60.1.10) pings `ad`; runs the test's client script: a TCP probe to
//!   `ad`:7000 every second (`RT-TCP <n> pong|none`), a long-lived TCP stream from it
//!   (`RT-STREAM <n>`), and every 10 s three traceroutes (`RT-TR`, to `ad`; `RT-TRU`, to an
//!   address no route covers; `RT-TRF`, to `ad` with 1,400-byte packets and DF set, which the
//!   1,200-byte a-db cannot carry).
//! - `ad` (h2, a-db, 10.60.2.10) serves TCP on 7000.
//! - `bw` (h1, b-web, 10.60.1.10: A's `aw` address) pings 10.60.2.10, A's `ad` address, which
//!   nothing in tenant B has: it must never get a reply.
//! - `bd` (h2, b-db, 10.60.2.20) pings `bw`, through `rb`.
//!
//! Asserted: the pings are answered with TTL 63 (one routed hop, on the replier's host); h1's
//! switch routes `aw`'s packets itself and sends them straight to h2 on a-db's VNI, though h1
//! has no port on a-db (the router's counters on h1, a-db's uplink traffic on h1); the traceroutes
//! show the gateway as hop 1 (TTL exceeded), then `!N` from it for the unrouted address and
//! `!F` for the oversized one; `bw` gets no reply while `bd` reaches `bw`; `ad` migrates live to h1 and the
//! stream and the probes go on.

mod common;

use std::time::{Duration, Instant};

use common::{
    api, can_run_labs, cli, console_lines, console_text, ping_ttls, start_lab_with, wait_for,
};
use vinfra_lab::Lab;
use vinfra_switch_control::protocol::RouterCountersView;
use vinfra_switch_control::{NetworkSpec, Request};
use vinfra_types::error::{chain, Chain};
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::BootSource;

const AW_IP: &str = "10.60.1.10";
const AD_IP: &str = "10.60.2.10";
const BD_IP: &str = "10.60.2.20";
/// Covered by no route of either router.
const UNROUTED: &str = "10.99.0.1";
/// The client's and the server's initramfs: the image's with the test's scripts appended.
const RT_INITRD: &str = "rt-initrd.img";

/// The guests' role script after the common prelude (`common::install_role_initrd`): plays the
/// role that `rt.role=` names, printing `RT*` lines on the console.
const ROLE: &str = r#"trace() {
    tag=$1
    shift
    echo "$tag-BEGIN"
    traceroute -n -q 1 -w 1 -m 3 "$@" 2>&1 | while read -r l; do echo "$tag $l"; done
    echo "$tag-END"
}
case $role in
server)
    nc -ll -p 7000 -e /rt/serve.sh &
    echo "RT server ready"
    ;;
client)
    echo "RT client ready"
    until [ "$(probe @AD_IP@ 7000)" = pong ]; do sleep 1; done
    ( (echo stream; sleep 100000) | nc @AD_IP@ 7000 | while read -r l; do echo "RT-STREAM $l"; done
      echo "RT-STREAM-END" ) &
    n=0
    while :; do
        n=$((n + 1))
        echo "RT-TCP $n $(probe @AD_IP@ 7000)"
        if [ $((n % 10)) = 1 ]; then
            trace RT-TR @AD_IP@
            trace RT-TRU @UNROUTED@
            trace RT-TRF -F @AD_IP@ 1400
        fi
        sleep 1
    done
    ;;
esac
"#;

/// Writes the guests' initramfs into the lab's datastore.
fn install_initrd(lab: &Lab) {
    let role = ROLE
        .replace("@AD_IP@", AD_IP)
        .replace("@UNROUTED@", UNROUTED);
    common::install_role_initrd(lab, RT_INITRD, "rt", &role, &[]);
}

fn create_network(lab: &Lab, name: &str, subnet: &str, mtu: Option<u32>) {
    api(lab)
        .create_network(&CreateNetworkRequest {
            name: name.into(),
            kind: NetworkKind::Overlay,
            vni: None,
            vlan_id: None,
            subnet: subnet.into(),
            gateway: None,
            mtu,
        })
        .unwrap_or_else(|e| panic!("create network {name}: {}", Chain(&e)));
}

/// Creates and starts a guest on `host` with its NIC on `network` at `ip` (the network's
/// gateway as its default route) and more kernel `options`; with a `role`, booting the test's
/// initramfs.
fn create_guest(
    lab: &Lab,
    name: &str,
    host: &str,
    network: &str,
    ip: &str,
    role: &str,
    options: &str,
) {
    let address = lab
        .static_address(network, ip.parse().expect("an address"))
        .unwrap_or_else(|e| panic!("{name}'s address: {}", chain(&e)));
    let mut req = Lab::guest_nic_vm_request(name, 128, Some(host), network, address);
    if let BootSource::Kernel {
        initrd, cmdline, ..
    } = &mut req.spec.boot
    {
        cmdline.push(' ');
        cmdline.push_str(options);
        if !role.is_empty() {
            *initrd = Some(RT_INITRD.into());
            cmdline.push_str(&format!(" rdinit=/rt/init rt.role={role}"));
        }
    }
    api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {name}: {}", Chain(&e)));
}

/// `host`'s switch configuration, as its `get_config` lists it.
fn switch_config(lab: &Lab, host: &str) -> Vec<Request> {
    lab.switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .config()
        .unwrap_or_else(|e| panic!("{host}'s switch configuration: {}", Chain(&e)))
}

/// The switch number of network `name` on `host`'s switch (by its VNI), if it has it.
fn network_id(lab: &Lab, host: &str, name: &str) -> Option<u32> {
    let vni = api(lab)
        .network(name)
        .unwrap_or_else(|e| panic!("GET network {name}: {}", Chain(&e)))
        .network
        .vni
        .expect("an overlay network");
    switch_config(lab, host).iter().find_map(|r| match r {
        Request::AddNetwork {
            id,
            kind: NetworkSpec::Overlay { vni: v },
        } if *v == vni => Some(*id),
        _ => None,
    })
}

/// The router with an interface on network `name` on `host`'s switch, and its counters.
fn router_counters(lab: &Lab, host: &str, name: &str) -> RouterCountersView {
    let network = network_id(lab, host, name)
        .unwrap_or_else(|| panic!("{host}'s switch does not have network {name}"));
    let router = switch_config(lab, host)
        .iter()
        .find_map(|r| match r {
            Request::SetRouterInterface {
                router, network: n, ..
            } if *n == network => Some(*router),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{host}'s switch has no router interface on {name}"));
    let counters = lab
        .switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .counters()
        .unwrap_or_else(|e| panic!("{host}'s switch counters: {}", Chain(&e)));
    counters
        .router(router)
        .cloned()
        .unwrap_or_else(|| panic!("{host}'s switch has no counters for router {router}"))
}

/// Frames network `name` sent out of `host`'s switch (to its ports and the uplink).
fn network_tx(lab: &Lab, host: &str, name: &str) -> u64 {
    let id = network_id(lab, host, name)
        .unwrap_or_else(|| panic!("{host}'s switch does not have network {name}"));
    lab.switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .counters()
        .unwrap_or_else(|e| panic!("{host}'s switch counters: {}", Chain(&e)))
        .network(id)
        .map_or(0, |n| n.traffic.tx_packets)
}

/// The lines of every complete traceroute tagged `tag` in `text`, the newest last.
fn traces(text: &str, tag: &str) -> Vec<Vec<String>> {
    let (begin, end, prefix) = (
        format!("{tag}-BEGIN"),
        format!("{tag}-END"),
        format!("{tag} "),
    );
    let mut all = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for l in console_lines(text) {
        if l == begin {
            current = Some(Vec::new());
        } else if l == end {
            all.extend(current.take());
        } else if let (Some(c), Some(rest)) = (current.as_mut(), l.strip_prefix(&prefix)) {
            c.push(rest.to_string());
        }
    }
    all
}

/// The numbers of the stream's lines seen so far and whether it ended.
fn stream(text: &str) -> (u64, bool) {
    let mut last = 0;
    let mut ended = false;
    for l in console_lines(text) {
        if let Some(n) = l.strip_prefix("RT-STREAM ") {
            last = n.trim().parse().unwrap_or(last);
        }
        ended |= l == "RT-STREAM-END";
    }
    (last, ended)
}

/// The results of the TCP probes after round `after` (`true`: pong).
fn probes(text: &str, after: u64) -> Vec<bool> {
    console_lines(text)
        .filter_map(|l| {
            let mut f = l.strip_prefix("RT-TCP ")?.split(' ');
            let n: u64 = f.next()?.parse().ok()?;
            (n > after).then(|| f.next() == Some("pong"))
        })
        .collect()
}

fn last_probe(text: &str) -> u64 {
    console_lines(text)
        .filter_map(|l| l.strip_prefix("RT-TCP ")?.split(' ').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn routers_route_east_west_on_the_senders_host_and_keep_tenants_apart() {
    if !can_run_labs() {
        return;
    }
    let started = Instant::now();
    let lab = start_lab_with("rt", 2, |_| {});
    create_network(&lab, "a-web", "10.60.1.0/24", None);
    create_network(&lab, "a-db", "10.60.2.0/24", Some(1200));
    create_network(&lab, "b-web", "10.60.1.0/24", None);
    create_network(&lab, "b-db", "10.60.2.0/24", None);
    for (router, nets) in [("ra", ["a-web", "a-db"]), ("rb", ["b-web", "b-db"])] {
        cli(&lab, &["router", "create", router]);
        for net in nets {
            cli(&lab, &["router", "attach", router, net]);
        }
    }
    let shown = cli(&lab, &["router", "show", "ra"]);
    for want in ["a-web", "10.60.1.1", "a-db", "10.60.2.1"] {
        assert!(
            shown.contains(want),
            "router show ra lacks {want}:\n{shown}"
        );
    }
    install_initrd(&lab);
    create_guest(&lab, "ad", "h2", "a-db", AD_IP, "server", "");
    create_guest(
        &lab,
        "aw",
        "h1",
        "a-web",
        AW_IP,
        "client",
        &format!("vinfra.ping={AD_IP}"),
    );
    create_guest(
        &lab,
        "bw",
        "h1",
        "b-web",
        AW_IP,
        "",
        &format!("vinfra.ping={AD_IP}"),
    );
    create_guest(
        &lab,
        "bd",
        "h2",
        "b-db",
        BD_IP,
        "",
        &format!("vinfra.ping={AW_IP}"),
    );
    lab.wait_console("ad", "RT server ready", common::BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("VM ad did not come up: {}", chain(&e)));
    lab.wait_console("aw", "RT client ready", common::BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("VM aw did not come up: {}", chain(&e)));
    eprintln!("guests ready after {} ms", started.elapsed().as_millis());

    // Pings answered through one routed hop: the reply's TTL is 63.
    for (vm, target) in [("aw", AD_IP), ("bd", AW_IP)] {
        let ttls = wait_for(
            &format!("{vm}'s pings to {target} answered"),
            Duration::from_secs(90),
            || {
                let t = ping_ttls(&console_text(&lab, vm), target);
                (t.iter().flatten().count() >= 3).then_some(t)
            },
        );
        let ok: Vec<_> = ttls.iter().flatten().collect();
        assert!(
            ok.iter().all(|t| **t == Some(63)),
            "{vm}'s replies from {target} with TTLs {ok:?} (63 expected)"
        );
    }
    // Routed on the sender's host: h1 has no port on a-db, yet it routes aw's packets onto
    // a-db and sends them to h2 itself.
    let h1 = router_counters(&lab, "h1", "a-web");
    assert!(
        h1.routed_packets > 0,
        "h1's router ra routed nothing: {h1:?}"
    );
    assert!(
        network_tx(&lab, "h1", "a-db") > 0,
        "h1 sent nothing on a-db"
    );
    let h2 = router_counters(&lab, "h2", "a-db");
    assert!(
        h2.routed_packets > 0,
        "h2's router ra routed nothing: {h2:?}"
    );
    // The operator sees the same through the console: h1's switch routes for ra.
    let shown = cli(&lab, &["host", "show", "h1", "--switch"]);
    let row = shown
        .lines()
        .find(|l| l.starts_with("ra "))
        .unwrap_or_else(|| panic!("no router ra in vinfra host show h1 --switch:\n{shown}"));
    let routed: u64 = row
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("router row {row}"));
    assert!(routed > 0, "{row}");

    // TCP through the router, and a stream that stays open.
    wait_for("aw's TCP probes answered", Duration::from_secs(60), || {
        probes(&console_text(&lab, "aw"), 0)
            .iter()
            .filter(|p| **p)
            .nth(2)
            .copied()
    });
    wait_for("aw's stream running", Duration::from_secs(30), || {
        (stream(&console_text(&lab, "aw")).0 >= 5).then_some(())
    });

    // Tenants apart: bw asks its router for A's ad address, which tenant B does not have.
    let bw_pings = wait_for("bw's pinger", Duration::from_secs(60), || {
        let p = ping_ttls(&console_text(&lab, "bw"), AD_IP);
        (p.len() >= 5).then_some(p)
    });
    assert!(
        bw_pings.iter().all(Option::is_none),
        "bw (router rb) got replies from {AD_IP}, tenant A's address: {bw_pings:?}"
    );
    let rb = router_counters(&lab, "h1", "b-web");
    assert!(
        rb.drops.get("neighbour_unknown").copied().unwrap_or(0) > 0,
        "h1's router rb did not refuse bw's pings: {rb:?}"
    );

    // ICMP errors from the gateway: TTL exceeded at hop 1, unreachable, fragmentation needed.
    let (tr, tru, trf) = wait_for("aw's traceroutes", Duration::from_secs(60), || {
        let text = console_text(&lab, "aw");
        let (tr, tru, trf) = (
            traces(&text, "RT-TR"),
            traces(&text, "RT-TRU"),
            traces(&text, "RT-TRF"),
        );
        (!tr.is_empty() && !tru.is_empty() && !trf.is_empty())
            .then(|| (tr.last().cloned(), tru.last().cloned(), trf.last().cloned()))
    });
    let (tr, tru, trf) = (tr.unwrap(), tru.unwrap(), trf.unwrap());
    let hop = |lines: &[String], n: &str| -> String {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{n} ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        hop(&tr, "1").contains("10.60.1.1"),
        "traceroute to ad: {tr:#?}"
    );
    assert!(hop(&tr, "2").contains(AD_IP), "traceroute to ad: {tr:#?}");
    assert!(
        hop(&tru, "1").contains("10.60.1.1")
            && tru
                .iter()
                .any(|l| l.contains("10.60.1.1") && l.contains("!N")),
        "traceroute to {UNROUTED}: {tru:#?}"
    );
    assert!(
        trf.iter().any(|l| l.contains("!F")),
        "traceroute with DF and 1400 bytes over a 1200-byte network: {trf:#?}"
    );
    let h1 = router_counters(&lab, "h1", "a-web");
    for kind in ["time_exceeded", "net_unreachable", "fragmentation_needed"] {
        assert!(
            h1.icmp_sent.get(kind).copied().unwrap_or(0) > 0,
            "h1's router ra sent no {kind}: {h1:?}"
        );
    }

    // ad moves to h1 live; the stream and the probes go on (the gateway is the same there).
    let text = console_text(&lab, "aw");
    let (before, _) = stream(&text);
    let round = last_probe(&text);
    common::migrate_to(&lab, "ad", "h1");
    wait_for(
        "the stream going on after the migration",
        Duration::from_secs(60),
        || {
            let (n, ended) = stream(&console_text(&lab, "aw"));
            assert!(!ended, "aw's stream to ad ended across the migration");
            (n >= before + 10).then_some(())
        },
    );
    let after = wait_for(
        "probes after the migration",
        Duration::from_secs(60),
        || {
            let p = probes(&console_text(&lab, "aw"), round);
            (p.len() >= 15).then_some(p)
        },
    );
    assert!(
        after.iter().rev().take(5).all(|p| *p),
        "aw's probes after ad moved to h1: {after:?}"
    );
    eprintln!("done after {} s", started.elapsed().as_secs());
}
