//! The lab's upstream router and the "internet" behind it, in a 1-host lab: the router's port
//! on the external VLAN (200) is an access port of the top-of-rack switch, moved into the
//! router's namespace.
//!
//! - The internet reaches the router; the router reaches a physical endpoint on VLAN 200
//!   through the top-of-rack switch; the endpoint, given a route, reaches the internet service
//!   through the router, which sees it come from the endpoint's own address.
//! - A VM on the VLAN network `external` (gateway: the router) pings the internet across the
//!   hosts' trunk, the physical bridge, the top-of-rack switch and the router (one hop: TTL 63),
//!   and the internet pings the VM back.
//! - No namespace of the lab has a default route but the internet's, which leads to the router,
//!   which has none: an address off the machine is unreachable from both.
//! - `vinfra lab status` lists the router, the internet and the service; `lab down` leaves
//!   nothing behind.

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::Duration;

use common::{api, can_run_labs, create_nic_vm, start_lab, wait_for, NicAddress};
use vinfra_lab::{upstream, Lab};
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};

const EXTERNAL: &str = "10.82.0.254/24";
const ROUTER_IP: &str = "10.82.0.254";
const INTERNET_GATEWAY: &str = "10.250.0.1/24";
const INTERNET_IP: &str = "10.250.0.2";
const ENDPOINT: &str = "10.82.0.1/24";
const ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(10, 82, 0, 1);
const VM_IP: &str = "10.82.0.10";
/// An address that is on no network of the lab (TEST-NET-1).
const OFF_THE_MACHINE: &str = "192.0.2.1";

fn ok(out: &Output) -> bool {
    out.status.success()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ip args`, which must succeed; its output.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(ok(&out), "ip {}: {}", args.join(" "), text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One ping (2 s) of `target`, from the upstream router or the internet.
fn ping(lab: &Lab, from_internet: bool, target: &str) -> Output {
    let args = ["ping", "-c", "1", "-W", "2", target];
    let out = if from_internet {
        lab.internet_exec(&args)
    } else {
        lab.upstream_exec(&args)
    };
    out.unwrap_or_else(|e| panic!("ping {target}: {}", vinfra_types::error::Chain(&e)))
}

/// Waits (30 s) until a ping of `target` from the router or the internet is answered.
fn wait_ping(lab: &Lab, from_internet: bool, target: &str) {
    let from = if from_internet { "internet" } else { "router" };
    wait_for(
        &format!("the {from} to reach {target}"),
        Duration::from_secs(30),
        || ok(&ping(lab, from_internet, target)).then_some(()),
    );
}

#[test]
fn the_upstream_router_joins_the_external_vlan_and_the_internet() {
    if !can_run_labs() || !vinfra_testenv::Needs::new().program("socat").met() {
        return;
    }
    let mut lab = start_lab("inet", 1);
    let router = lab
        .lab_mut()
        .add_upstream(200, EXTERNAL, INTERNET_GATEWAY)
        .unwrap_or_else(|e| panic!("add_upstream: {}", vinfra_types::error::Chain(&e)));
    assert_eq!(router.internet.to_string(), format!("{INTERNET_IP}/24"));
    assert!(matches!(
        lab.lab_mut()
            .add_upstream(201, "10.83.0.254/24", "10.251.0.1/24"),
        Err(vinfra_lab::LabError::Upstream(
            upstream::UpstreamError::Taken
        ))
    ));
    // The VLAN network whose gateway the router is, and a VM on it that pings the internet:
    // it boots while the rest is checked.
    api(&lab)
        .create_network(&CreateNetworkRequest {
            name: "external".into(),
            kind: NetworkKind::Vlan,
            vni: None,
            vlan_id: Some(200),
            subnet: "10.82.0.0/24".into(),
            gateway: Some(ROUTER_IP.into()),
            mtu: None,
        })
        .expect("create network external");
    create_nic_vm(
        &lab,
        "vm",
        "h1",
        "external",
        NicAddress::Static(VM_IP),
        &format!("vinfra.ping={INTERNET_IP}"),
    );

    let status = lab.status();
    let service = status
        .processes
        .iter()
        .find(|p| p.name == "internet service")
        .expect("lab status lists the internet service");
    assert!(service.alive, "{service:?}");

    // The internet reaches the router on both its sides.
    wait_ping(&lab, true, "10.250.0.1");
    wait_ping(&lab, true, ROUTER_IP);

    // The router reaches a physical endpoint on VLAN 200 through the top-of-rack switch.
    lab.lab_mut()
        .add_vlan_endpoint(200, ENDPOINT)
        .unwrap_or_else(|e| panic!("VLAN 200 endpoint: {}", vinfra_types::error::Chain(&e)));
    wait_ping(&lab, false, "10.82.0.1");
    // Given a route, the endpoint reaches the internet service through the router, which
    // forwards without translating: the service sees the endpoint's address.
    let phys = lab
        .state()
        .phys_namespace
        .clone()
        .expect("physical network");
    ip(&[
        "-n",
        &phys,
        "route",
        "add",
        "10.250.0.0/24",
        "via",
        ROUTER_IP,
    ]);
    assert_eq!(
        lab.probe_internet_from(&phys).unwrap_or_else(|e| panic!(
            "probe from the endpoint: {}",
            vinfra_types::error::Chain(&e)
        )),
        ENDPOINT_IP
    );
    assert_eq!(
        lab.probe_internet_from(&router.namespace)
            .expect("probe from the router"),
        router.internet_gateway.ip
    );

    // Nothing has a default route off the machine: the internet's leads to the router, the
    // router has none.
    let namespaces = vinfra_lab::net::lab_namespaces(&lab.state().name);
    assert!(namespaces.contains(&router.namespace), "{namespaces:?}");
    assert!(
        namespaces.contains(&router.internet_namespace),
        "{namespaces:?}"
    );
    for ns in &namespaces {
        let default = ip(&["-n", ns, "route", "show", "default"]);
        if *ns == router.internet_namespace {
            assert!(
                default.starts_with("default via 10.250.0.1 dev eth0"),
                "{ns}: {default}"
            );
        } else {
            assert!(
                default.trim().is_empty(),
                "{ns} has a default route: {default}"
            );
        }
    }
    for from_internet in [true, false] {
        let out = ping(&lab, from_internet, OFF_THE_MACHINE);
        assert!(!ok(&out), "{OFF_THE_MACHINE} answered: {}", text(&out));
    }
    let out = lab
        .upstream_exec(&["ip", "route", "get", OFF_THE_MACHINE])
        .expect("ip route get");
    assert!(
        !ok(&out),
        "the router has a route off the machine: {}",
        text(&out)
    );

    // A range outside the external subnet is routed to a next hop on it.
    let vm_ip: Ipv4Addr = VM_IP.parse().expect("address");
    lab.lab_mut()
        .add_upstream_route("203.0.113.0/24", vm_ip)
        .expect("add a route");
    let out = lab
        .upstream_exec(&["ip", "route", "get", "203.0.113.5"])
        .expect("ip route get");
    assert!(
        text(&out).contains("via 10.82.0.10 dev ext0"),
        "{}",
        text(&out)
    );
    assert!(lab
        .lab_mut()
        .add_upstream_route("203.0.113.0/24", Ipv4Addr::new(10, 250, 0, 2))
        .is_err());

    // The VM reaches the internet through the router (one hop), and the internet the VM.
    lab.wait_console("vm", "VINFRA-GUEST BOOTED", common::BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("vm did not boot: {e}"));
    let ttl = wait_for(
        "the VM's pings of the internet to succeed",
        Duration::from_secs(60),
        || {
            common::ping_ttls(&common::console_text(&lab, "vm"), INTERNET_IP)
                .into_iter()
                .flatten()
                .next()
        },
    );
    assert_eq!(ttl, Some(63), "one router between the VM and the internet");
    wait_ping(&lab, true, VM_IP);
    eprintln!(
        "the internet service saw the endpoint as {ENDPOINT_IP}; the VM's pings of the internet \
         came back with TTL 63; the internet reached the VM at {VM_IP}"
    );

    // `vinfra lab status` shows them.
    let name = lab.state().name.clone();
    let root = lab.state().root.display().to_string();
    let out = common::vinfra(&["lab", "status", "--name", &name, "--root", &root], &[]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(ok(&out), "lab status: {}", text(&out));
    for needle in [
        "internet service",
        "upstream router",
        &router.namespace,
        &router.internet_namespace,
        "10.82.0.254/24 (VLAN 200), route 203.0.113.0/24 via 10.82.0.10",
    ] {
        assert!(shown.contains(needle), "no '{needle}' in: {shown}");
    }

    let pid = lab.internet_service_pid();
    lab.down();
    assert!(vinfra_lab::net::lab_namespaces(&name).is_empty());
    assert!(
        !vinfra_lab::process::alive(pid),
        "the internet service survived"
    );
}
