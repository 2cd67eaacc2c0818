//! Security groups enforced end to end in a 3-host lab, with real guests and real TCP.
//!
//! Two guests on one overlay network run a script of their own next to the guest image's init
//! (an initramfs of the test's appended to the image's, started by `rdinit=/fw/init`):
//! - `srv` (on h1) is in group `web`, whose one rule allows TCP 8080 from the network. It serves
//!   the same thing on 8080 and 8081 (busybox `nc -ll -e`): a `probe` line is answered `pong`, a
//!   `stream` line with a number every half second, for ever. Every second it also probes
//!   `peer`'s port 9000 (`FW-OUT <round> ok|fail`): an outbound connection, whose replies no rule
//!   allows.
//! - `peer` (on h2, in no group) serves probes on 9000; it opens one long-lived stream to
//!   `srv`:8080 and prints what comes (`FW-STREAM <n>`, `FW-STREAM-END` if it ends), and every
//!   second probes `srv`'s 8080 and 8081 (`FW-TRY <round> 8080=pong|none 8081=pong|none`).
//!
//! The test asserts that 8080 answers and 8081 does not (h1's switch counts
//! `firewall_default_deny` on `srv`'s port), that `srv`'s outbound probes are answered; then
//! migrates `srv` live to h3: the stream goes on (its connection came along with the VM) and
//! 8081 stays closed on h3; then deletes the rule: new connections to 8080 fail while the stream
//! still goes on.
//!
//! `srv`'s NIC also has a QoS, which follows it: created with a rate each way, it is on h1's
//! switch port (`set_port_qos`, the default burst filled in); `vinfra vm nic set --rate
//! --burst --priority` changes it there at once; after the migration h3's port has it and h1
//! no longer has the port. (This checks the configuration only: the rates are measured by the
//! switch daemon's own tests.) `vinfra vm show` prints the QoS and the port's firewall drops.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{api, can_run_labs, cli, console_lines, console_text, start_lab_with, wait_for};
use vinfra_lab::Lab;
use vinfra_switch_control::{
    LocationSpec, Mac, NetworkSpec, PrioritySpec, QosSpec, RateSpec, Request,
};
use vinfra_types::api::MigrateVmRequest;
use vinfra_types::error::chain;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::qos::{NicQos, NicRate};
use vinfra_types::security_group::{
    SecurityGroup, SgAction, SgDirection, SgPortRange, SgProtocol, SgRule,
};
use vinfra_types::{BootSource, MigrationPhase};

const NET: &str = "blue";
const SUBNET: &str = "10.80.8.0/24";
const SRV_IP: &str = "10.80.8.10";
const PEER_IP: &str = "10.80.8.20";
const SRV_MAC: &str = "02:66:77:00:00:0a";
const PEER_MAC: &str = "02:66:77:00:00:14";
const GROUP: &str = "web";
/// The guests' initramfs: the image's with the test's scripts appended.
const FW_INITRD: &str = "fw-initrd.img";

/// The guests' role script after the common prelude (`common::install_role_initrd`): plays the
/// role that `fw.role=` names, printing `FW*` lines on the console.
const ROLE: &str = r#"case $role in
server)
    nc -ll -p 8080 -e /fw/serve.sh &
    nc -ll -p 8081 -e /fw/serve.sh &
    echo "FW server ready"
    n=0
    while :; do
        n=$((n + 1))
        if [ "$(probe @PEER_IP@ 9000)" = pong ]; then r=ok; else r=fail; fi
        echo "FW-OUT $n $r"
        sleep 1
    done
    ;;
client)
    nc -ll -p 9000 -e /fw/serve.sh &
    echo "FW client ready"
    until [ "$(probe @SRV_IP@ 8080)" = pong ]; do sleep 1; done
    ( (echo stream; sleep 100000) | nc @SRV_IP@ 8080 | while read -r l; do echo "FW-STREAM $l"; done
      echo "FW-STREAM-END" ) &
    n=0
    while :; do
        n=$((n + 1))
        echo "FW-TRY $n 8080=$(probe @SRV_IP@ 8080) 8081=$(probe @SRV_IP@ 8081)"
        sleep 1
    done
    ;;
esac
"#;

fn fill(template: &str) -> String {
    template
        .replace("@SRV_IP@", SRV_IP)
        .replace("@PEER_IP@", PEER_IP)
}

/// Writes the guests' initramfs into the lab's datastore: the image's with the test's scripts.
fn install_initrd(lab: &Lab) {
    let role = fill(ROLE);
    common::install_role_initrd(lab, FW_INITRD, "fw", &role, &[]);
}

/// Creates and starts a guest on `host` booting the test's initramfs in `role`, its NIC in
/// `groups` with `qos`.
#[allow(clippy::too_many_arguments)]
fn create_guest(
    lab: &Lab,
    name: &str,
    host: &str,
    ip: &str,
    mac: &str,
    role: &str,
    groups: &[&str],
    qos: Option<NicQos>,
) {
    let address = lab
        .static_address(NET, ip.parse().expect("an address"))
        .unwrap_or_else(|e| panic!("{name}'s address: {}", chain(&e)));
    let mut req = Lab::guest_nic_vm_request(name, 128, Some(host), NET, address);
    if let BootSource::Kernel {
        initrd, cmdline, ..
    } = &mut req.spec.boot
    {
        *initrd = Some(FW_INITRD.into());
        cmdline.push_str(&format!(" rdinit=/fw/init fw.role={role}"));
    }
    let nic = &mut req.spec.nics[0];
    nic.mac = Some(mac.into());
    nic.security_groups = groups.iter().map(|g| g.to_string()).collect();
    nic.qos = qos;
    api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {name}: {}", vinfra_types::error::Chain(&e)));
}

/// `host`'s switch configuration, as its `get_config` lists it.
fn switch_config(lab: &Lab, host: &str) -> Vec<Request> {
    lab.switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .config()
        .unwrap_or_else(|e| {
            panic!(
                "{host}'s switch configuration: {}",
                vinfra_types::error::Chain(&e)
            )
        })
}

/// The switch port of `mac` on `host` (its local MAC entry in the test's network), if any.
fn local_port(lab: &Lab, host: &str, mac: &str) -> Option<u32> {
    let vni = api(lab)
        .network(NET)
        .unwrap_or_else(|e| panic!("GET network {NET}: {}", vinfra_types::error::Chain(&e)))
        .network
        .vni
        .expect("an overlay network has a VNI");
    let config = switch_config(lab, host);
    let network = config.iter().find_map(|r| match r {
        Request::AddNetwork {
            id,
            kind: NetworkSpec::Overlay { vni: v },
        } if *v == vni => Some(*id),
        _ => None,
    })?;
    let mac: Mac = mac.parse().expect("a MAC");
    config.iter().find_map(|r| match r {
        Request::AddMacEntry {
            network: n,
            mac: m,
            location: LocationSpec::Port(p),
        } if *n == network && *m == mac => Some(*p),
        _ => None,
    })
}

/// The switch port of `mac` on `host` (its local MAC entry), and whether the switch has a
/// firewall with rules on it.
fn port_of(lab: &Lab, host: &str, mac: &str) -> (u32, bool) {
    let port = local_port(lab, host, mac)
        .unwrap_or_else(|| panic!("{host}'s switch has no port with {mac}"));
    let filtered = switch_config(lab, host).iter().any(|r| {
        matches!(r, Request::SetPortFirewall { port: p, rules: Some(rules) } if *p == port && !rules.is_empty())
    });
    (port, filtered)
}

/// The QoS of port `port` on `host`'s switch: `None` when it has no `set_port_qos` for it at
/// all, `Some(None)` when the port has none.
fn port_qos(lab: &Lab, host: &str, port: u32) -> Option<Option<QosSpec>> {
    switch_config(lab, host).into_iter().find_map(|r| match r {
        Request::SetPortQos { port: p, qos } if p == port => Some(qos),
        _ => None,
    })
}

/// The same rate limit both ways, with the default weight and no DSCP marking.
fn both_ways(bits_per_sec: u64, burst_bytes: u64, priority: PrioritySpec) -> QosSpec {
    let rate = RateSpec {
        bits_per_sec,
        burst_bytes,
    };
    QosSpec {
        egress: Some(rate),
        ingress: Some(rate),
        priority,
        ..QosSpec::default()
    }
}

/// The value of `key:` in a `show` output.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .trim()
        .to_string()
}

/// The drops by reason of port `port` on `host`'s switch.
fn port_drops(lab: &Lab, host: &str, port: u32) -> BTreeMap<String, u64> {
    lab.switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .counters()
        .unwrap_or_else(|e| {
            panic!(
                "{host}'s switch counters: {}",
                vinfra_types::error::Chain(&e)
            )
        })
        .port(port)
        .unwrap_or_else(|| panic!("{host}'s switch has no counters for port {port}"))
        .traffic
        .drops
        .clone()
}

fn default_denied(lab: &Lab, host: &str, port: u32) -> u64 {
    port_drops(lab, host, port)
        .get("firewall_default_deny")
        .copied()
        .unwrap_or(0)
}

/// Through the API (`GET /security-groups/{GROUP}/counters`): srv's NIC counted on `host`,
/// with the stream's connection tracked, and the 8080 rule's hits from its probes (each a new
/// connection; a switch counts from when it was given the rules, so h3 from the migration).
fn assert_group_counted(lab: &Lab, rule_id: u32, host: &str) {
    let c = api(lab)
        .security_group_counters(GROUP)
        .unwrap_or_else(|e| panic!("counters of {GROUP}: {}", vinfra_types::error::Chain(&e)));
    let hits = c
        .rules
        .iter()
        .find(|r| r.rule_id == rule_id)
        .map(|r| r.hits);
    assert!(
        hits.is_some_and(|h| h >= 2),
        "hits of rule {rule_id} on {host}: {c:?}"
    );
    assert_eq!(c.members.len(), 1, "{c:?}");
    let m = &c.members[0];
    assert_eq!(m.host, host, "{c:?}");
    assert!(
        m.connections.is_some_and(|n| n >= 1),
        "srv's tracked connections on {host}: {c:?}"
    );
}

/// `peer`'s probe rounds after round `after`: (round, 8080's answer, 8081's answer).
fn tries(lab: &Lab, after: u64) -> Vec<(u64, String, String)> {
    console_lines(&console_text(lab, "peer"))
        .filter_map(|l| l.strip_prefix("FW-TRY "))
        .filter_map(|rest| {
            let mut f = rest.split_whitespace();
            let n = f.next()?.parse::<u64>().ok()?;
            let a = f.next()?.strip_prefix("8080=")?.to_string();
            let b = f.next()?.strip_prefix("8081=")?.to_string();
            Some((n, a, b))
        })
        .filter(|(n, _, _)| *n > after)
        .collect()
}

fn last_try(lab: &Lab) -> u64 {
    tries(lab, 0).last().map_or(0, |t| t.0)
}

/// The last number of `peer`'s stream (0 before the first), and whether the stream ended.
fn stream(lab: &Lab) -> (u64, bool) {
    let text = console_text(lab, "peer");
    let last = console_lines(&text)
        .filter_map(|l| l.strip_prefix("FW-STREAM "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .last()
        .unwrap_or(0);
    let ended = console_lines(&text).any(|l| l == "FW-STREAM-END");
    (last, ended)
}

/// Waits until `peer`'s stream has gone `more` numbers past where it is now (`srv` on
/// `host`). A stream that stalls fails with what tells a lost connection from a stalled guest:
/// both guests' last console lines and the drops on srv's port.
fn stream_goes_on(lab: &Lab, what: &str, more: u64, host: &str) {
    let (at, _) = stream(lab);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (now, ended) = stream(lab);
        assert!(!ended, "{what}: the stream ended at {now}");
        if now >= at + more {
            return;
        }
        if Instant::now() >= deadline {
            let tail = |name: &str| {
                let text = console_text(lab, name);
                let lines: Vec<&str> = console_lines(&text).collect();
                lines[lines.len().saturating_sub(12)..].join("\n")
            };
            let drops = local_port(lab, host, SRV_MAC).map(|p| port_drops(lab, host, p));
            panic!(
                "timed out after 20 s waiting for {what}: the stream stayed at {now} \
                 (from {at}); drops on srv's port on {host}: {drops:?}\n\
                 --- srv's console ---\n{}\n--- peer's console ---\n{}",
                tail("srv"),
                tail("peer")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `srv`'s outbound probes of `peer` after round `after`: answered or not.
fn outbound(lab: &Lab, after: u64) -> Vec<bool> {
    console_lines(&console_text(lab, "srv"))
        .filter_map(|l| l.strip_prefix("FW-OUT "))
        .filter_map(|rest| {
            let (n, r) = rest.split_once(' ')?;
            (n.parse::<u64>().ok()? > after).then(|| r.trim() == "ok")
        })
        .collect()
}

#[test]
fn security_groups_filter_new_connections_and_established_ones_survive_migration() {
    if !can_run_labs() {
        return;
    }
    let started = Instant::now();
    let lab = start_lab_with("fw", 3, |_| {});
    api(&lab)
        .create_network(&CreateNetworkRequest {
            name: NET.into(),
            kind: NetworkKind::Overlay,
            vni: None,
            vlan_id: None,
            subnet: SUBNET.into(),
            gateway: None,
            mtu: None,
        })
        .unwrap_or_else(|e| panic!("create network {NET}: {}", vinfra_types::error::Chain(&e)));
    let group = api(&lab)
        .create_security_group(&SecurityGroup {
            name: GROUP.into(),
            description: None,
            rules: vec![SgRule {
                id: 0,
                direction: SgDirection::Ingress,
                protocol: SgProtocol::Tcp,
                ports: Some(SgPortRange {
                    first: 8080,
                    last: 8080,
                }),
                remote_cidr: Some(SUBNET.into()),
                remote_group: None,
                action: SgAction::Allow,
                description: None,
            }],
        })
        .unwrap_or_else(|e| {
            panic!(
                "create security group {GROUP}: {}",
                vinfra_types::error::Chain(&e)
            )
        });
    let rule_id = group.group.rules[0].id;
    install_initrd(&lab);
    // 100 Mbit/s each way is far above what the test sends.
    let qos = NicQos {
        egress: Some(NicRate::new(100_000_000)),
        ingress: Some(NicRate::new(100_000_000)),
        ..NicQos::default()
    };
    create_guest(
        &lab,
        "srv",
        "h1",
        SRV_IP,
        SRV_MAC,
        "server",
        &[GROUP],
        Some(qos),
    );
    create_guest(&lab, "peer", "h2", PEER_IP, PEER_MAC, "client", &[], None);
    for (name, role) in [("srv", "server"), ("peer", "client")] {
        lab.wait_console(name, &format!("FW {role} ready"), common::BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("VM {name} did not come up: {}", chain(&e)));
    }
    eprintln!("guests ready after {} ms", started.elapsed().as_millis());
    let (srv_port, filtered) = port_of(&lab, "h1", SRV_MAC);
    assert!(
        filtered,
        "h1's switch has no firewall on srv's port {srv_port}"
    );
    let (peer_port, filtered) = port_of(&lab, "h2", PEER_MAC);
    assert!(
        !filtered,
        "h2's switch filters peer's port {peer_port}, in no group"
    );
    // srv's QoS is on its port, with the default burst (10 ms at 100 Mbit/s); peer has none.
    assert_eq!(
        port_qos(&lab, "h1", srv_port),
        Some(Some(both_ways(100_000_000, 125_000, PrioritySpec::Normal))),
        "srv's QoS on h1"
    );
    assert_eq!(
        port_qos(&lab, "h2", peer_port),
        Some(None),
        "peer's QoS on h2"
    );
    // Changed live: on the port when the command returns.
    let out = cli(
        &lab,
        &[
            "vm",
            "nic",
            "set",
            "srv",
            "0",
            "--rate",
            "200M",
            "--burst",
            "1M",
            "--priority",
            "high",
        ],
    );
    assert!(
        out.contains("qos rate 200M burst 1M each way, priority high, weight 10, dscp trust"),
        "{out}"
    );
    let live = both_ways(200_000_000, 1 << 20, PrioritySpec::High);
    assert_eq!(
        port_qos(&lab, "h1", srv_port),
        Some(Some(live.clone())),
        "srv's new QoS on h1"
    );
    assert_eq!(
        local_port(&lab, "h1", SRV_MAC),
        Some(srv_port),
        "the same port"
    );

    // The rule lets the stream and the probes of 8080 in; 8081 is no rule's.
    wait_for(
        "peer's stream from srv:8080",
        Duration::from_secs(60),
        || (stream(&lab).0 >= 3).then_some(()),
    );
    let round0 = last_try(&lab);
    let out0 = outbound(&lab, 0).len() as u64;
    wait_for("3 probe rounds of peer's", Duration::from_secs(30), || {
        (tries(&lab, round0).len() >= 3).then_some(())
    });
    let before = tries(&lab, round0);
    assert!(
        before.iter().all(|(_, a, b)| a == "pong" && b == "none"),
        "peer's probes of srv (8080 allowed, 8081 not): {before:?}"
    );
    let denied_h1 = default_denied(&lab, "h1", srv_port);
    assert!(
        denied_h1 > 0,
        "h1's switch counted no firewall_default_deny on srv's port: {:?}",
        port_drops(&lab, "h1", srv_port)
    );
    assert_group_counted(&lab, rule_id, "h1");
    // `vm show` prints the NIC's QoS and its port's drops by reason.
    let shown = cli(&lab, &["vm", "show", "srv"]);
    assert_eq!(
        field(&shown, "NIC 0 QoS"),
        "rate 200M burst 1M each way, priority high, weight 10, dscp trust"
    );
    assert!(
        field(&shown, "NIC 0 port").contains("firewall_default_deny"),
        "{shown}"
    );
    // Replies to srv's own connections pass, though no rule allows them in.
    let out = outbound(&lab, out0);
    assert!(
        !out.is_empty() && out.iter().all(|ok| *ok),
        "srv's probes of peer:9000: {out:?}"
    );

    // Live migration to h3: the stream goes on there, 8081 stays closed.
    let t = Instant::now();
    api(&lab)
        .migrate_vm(
            "srv",
            &MigrateVmRequest {
                to: Some("h3".into()),
            },
        )
        .unwrap_or_else(|e| panic!("migrate srv: {}", vinfra_types::error::Chain(&e)));
    let done = common::wait_migration_end(&lab, "srv");
    assert_eq!(done.phase, MigrationPhase::Completed, "{done:?}");
    eprintln!("srv migrated to h3 in {} ms", t.elapsed().as_millis());
    stream_goes_on(&lab, "the stream to go on after the migration", 6, "h3");
    let (srv_port3, filtered) = port_of(&lab, "h3", SRV_MAC);
    assert!(
        filtered,
        "h3's switch has no firewall on srv's port {srv_port3}"
    );
    assert_eq!(
        port_qos(&lab, "h3", srv_port3),
        Some(Some(live)),
        "srv's QoS on h3"
    );
    wait_for(
        "h1's switch to drop srv's port",
        Duration::from_secs(30),
        || local_port(&lab, "h1", SRV_MAC).is_none().then_some(()),
    );
    let round1 = last_try(&lab);
    wait_for("3 probe rounds on h3", Duration::from_secs(30), || {
        (tries(&lab, round1).len() >= 3).then_some(())
    });
    let after = tries(&lab, round1);
    assert!(
        after.iter().all(|(_, a, b)| a == "pong" && b == "none"),
        "peer's probes of srv on h3 (8080 allowed, 8081 not): {after:?}"
    );
    assert!(
        default_denied(&lab, "h3", srv_port3) > 0,
        "h3's switch counted no firewall_default_deny on srv's port: {:?}",
        port_drops(&lab, "h3", srv_port3)
    );

    assert_group_counted(&lab, rule_id, "h3");

    // The rule goes: new connections to 8080 are refused, the established stream goes on.
    api(&lab)
        .delete_security_group_rule(GROUP, rule_id)
        .unwrap_or_else(|e| {
            panic!(
                "delete rule {rule_id} of {GROUP}: {}",
                vinfra_types::error::Chain(&e)
            )
        });
    let round2 = last_try(&lab);
    wait_for(
        "peer's probes of 8080 to fail",
        Duration::from_secs(20),
        || {
            let t = tries(&lab, round2);
            (t.len() >= 2 && t.iter().rev().take(2).all(|(_, a, _)| a == "none")).then_some(())
        },
    );
    stream_goes_on(&lab, "the stream to go on without the rule", 4, "h3");
    eprintln!("firewall test done in {} ms", started.elapsed().as_millis());
    lab.down();
}
