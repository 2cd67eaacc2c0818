//! Routers through a real switch daemon, without guests: the agent applies the console's
//! routers (routers, interfaces, static routes), names their counters, gives them back to a
//! restarted switch and takes them away again. Needs root and `ip` (a network namespace for the
//! switch's underlay), not QEMU.
//!
//! The daemon must route for this test to pass: a switch without routing refuses every router
//! request ("routing is not supported by this switch") and the first configuration fails.

use vinfra_proto::{SwitchRoute, SwitchRouter, SwitchRouterInterface};
use vinfra_switch_control::PrefixSpec;

use super::*;

const BLUE_GW: &str = "02:76:72:00:00:01";
const RED_GW: &str = "02:76:72:00:00:02";

/// [`host_config`] with router `edge` (number 7): blue's gateway 10.92.0.254/24, red's
/// 10.94.0.254/24, and a route to 192.168.50.0/24 via 10.92.0.9 (on blue).
fn routed(other_host: Ipv4Addr) -> HostSwitchConfig {
    let interface = |network: &str, ip: [u8; 4], mac: &str| SwitchRouterInterface {
        network: network.into(),
        ip: ip.into(),
        prefix_len: 24,
        mac: mac.into(),
    };
    HostSwitchConfig {
        routers: vec![SwitchRouter {
            name: "edge".into(),
            id: 7,
            interfaces: vec![
                interface("blue", [10, 92, 0, 254], BLUE_GW),
                interface("red", [10, 94, 0, 254], RED_GW),
            ],
            routes: vec![SwitchRoute {
                prefix: "192.168.50.0/24".into(),
                via: Ipv4Addr::new(10, 92, 0, 9),
            }],
            uplink: None,
        }],
        ..host_config(other_host, MAC_B)
    }
}

/// The router requests `routed` becomes (networks blue = 1, red = 2).
fn routing() -> Vec<Request> {
    let interface = |network: u32, ip: [u8; 4], mac: &str| Request::SetRouterInterface {
        router: 7,
        network,
        ip: ip.into(),
        prefix_len: 24,
        mac: mac.parse().unwrap(),
        mtu: Some(1450),
    };
    vec![
        Request::AddRouter { id: 7 },
        interface(1, [10, 92, 0, 254], BLUE_GW),
        interface(2, [10, 94, 0, 254], RED_GW),
        Request::AddRoute {
            router: 7,
            prefix: PrefixSpec {
                ip: Ipv4Addr::new(192, 168, 50, 0),
                prefix_len: 24,
            },
            via: Ipv4Addr::new(10, 92, 0, 9),
        },
    ]
}

fn is_routing(r: &Request) -> bool {
    matches!(
        r,
        Request::AddRouter { .. } | Request::SetRouterInterface { .. } | Request::AddRoute { .. }
    )
}

/// The router requests of the switch's configuration now.
fn switch_routing(sw: &Switch) -> Vec<Request> {
    let mut c = sw.client();
    c.config().unwrap().into_iter().filter(is_routing).collect()
}

fn same(a: &[Request], b: &[Request]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.contains(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_gets_the_routers_back_after_a_restart_and_loses_them_when_they_go() {
    if !netns_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("datastore");
    std::fs::create_dir_all(ds.join("images")).unwrap();
    let host = Netns::new("r");
    let (ua, ub) = (name("u"), name("u"));
    host.exec(&[
        "ip", "link", "add", &ua, "type", "veth", "peer", "name", &ub,
    ]);
    host.exec(&["ip", "addr", "add", "10.95.0.1/24", "dev", &ua]);
    host.exec(&["ip", "link", "set", &ua, "up"]);
    host.exec(&["ip", "link", "set", &ub, "up"]);
    let ip = Ipv4Addr::new(10, 95, 0, 1);
    let other = Ipv4Addr::new(10, 95, 0, 2);
    let mut sw = Switch::start(&host, tmp.path());
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
    let apply = |config: HostSwitchConfig| handle(&m, AgentCommand::ApplySwitchConfig { config });

    // The routers, interfaces and routes reach the switch with the networks.
    let reply = apply(routed(other))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sw.log_text()));
    assert_eq!(reply, CommandReply::Done);
    let got = switch_routing(&sw);
    assert!(same(&got, &routing()), "{got:#?}");

    // Their counters, by router name.
    let reply = handle(&m, AgentCommand::SwitchCounters).await.unwrap();
    let CommandReply::SwitchCounters { counters } = reply else {
        panic!("{reply:?}");
    };
    let names: Vec<&str> = counters.routers.iter().map(|r| r.router.as_str()).collect();
    assert_eq!(names, ["edge"], "{counters:#?}");

    // A crashed switch comes back empty; the agent's reconcile gives the routers back.
    sw.kill();
    sw.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || same(
            &switch_routing(&sw),
            &routing()
        ))
        .await,
        "{:#?}\n{}",
        switch_routing(&sw),
        sw.log_text()
    );

    // Red leaves the router (and the route stays, its next hop on blue); then the router goes;
    // the networks stay.
    let mut c = routed(other);
    c.routers[0].interfaces.pop();
    apply(c)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sw.log_text()));
    let want: Vec<Request> = routing()
        .into_iter()
        .filter(|r| !matches!(r, Request::SetRouterInterface { network: 2, .. }))
        .collect();
    let got = switch_routing(&sw);
    assert!(same(&got, &want), "{got:#?}");
    apply(host_config(other, MAC_B))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", sw.log_text()));
    assert_eq!(switch_routing(&sw), vec![]);
    let config = sw.client().config().unwrap();
    for id in [1, 2] {
        assert!(
            config
                .iter()
                .any(|r| matches!(r, Request::AddNetwork { id: n, .. } if *n == id)),
            "{config:?}"
        );
    }
}
