//! `vinfra router …`: routers (create, list, show with their interfaces, routes and uplink,
//! delete), attaching and detaching networks, static routes (add, del), and the uplink (set,
//! remove).

use std::net::Ipv4Addr;

use clap::Subcommand;
use vinfra_types::filter::RouterFilter;
use vinfra_types::router::{
    parse_route_prefix, AttachNetworkRequest, CreateRouterRequest, RouterAttachment,
    RouterStaticRoute, RouterSummary, SetUplinkRequest, UplinkSummary,
};

use crate::config::ConnectionOverrides;
use crate::output::{pairs, render, table, timestamp, Output};
use crate::rest::{check_name, name_arg, show, RestCommandError};

/// `vinfra router …`.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    /// Every router, or those on a network, with their edge on a host.
    List {
        /// Only the routers with an interface on this network, or their uplink on it.
        #[arg(long, value_parser = name_arg)]
        network: Option<String>,
        /// Only the routers whose uplink's edge (the host that translates their north-south
        /// traffic) is this host.
        #[arg(long, value_parser = name_arg)]
        edge: Option<String>,
    },
    /// One router: its interfaces (network, gateway address and MAC) and static routes.
    Show {
        /// The router.
        name: String,
    },
    /// Create a router (no networks, no routes).
    Create {
        /// The router's name.
        name: String,
    },
    /// Delete a router (refused while networks are attached).
    Delete {
        /// The router.
        name: String,
    },
    /// Attach a network: the router's interface on it is the network's gateway, the same
    /// address and MAC on every host.
    Attach {
        /// The router.
        router: String,
        /// The network.
        network: String,
        /// The gateway address (default: the network's gateway, else its subnet's first usable
        /// address).
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
    },
    /// Detach a network (refused while static routes go through it).
    Detach {
        /// The router.
        router: String,
        /// The network.
        network: String,
    },
    /// Static routes.
    #[command(subcommand)]
    Route(RouteCommand),
    /// The uplink to an external network, where north-south traffic leaves (source NAT).
    #[command(subcommand)]
    Uplink(UplinkCommand),
}

/// `vinfra router uplink …`.
#[derive(Debug, Subcommand)]
pub enum UplinkCommand {
    /// Give the router its uplink: its address IP on the external (VLAN) network NET.
    Set {
        /// The router.
        router: String,
        /// The external network.
        network: String,
        /// The router's address on it.
        ip: Ipv4Addr,
    },
    /// Remove the router's uplink (refused while it has floating IPs or routes through it).
    Remove {
        /// The router.
        router: String,
    },
}

/// `vinfra router route …`.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Add a static route: PREFIX via a next hop on one of the router's networks.
    Add {
        /// The router.
        router: String,
        /// The destination, A.B.C.D/L (host bits zero; 0.0.0.0/0 for a default route).
        prefix: String,
        /// The next hop's address.
        #[arg(long)]
        via: Ipv4Addr,
    },
    /// Delete the static route to PREFIX.
    Del {
        /// The router.
        router: String,
        /// The destination, A.B.C.D/L.
        prefix: String,
    },
}

fn list_text(routers: &[RouterSummary]) -> String {
    if routers.is_empty() {
        return "no routers".into();
    }
    let mut t = table(&["NAME", "ID", "NETWORKS", "ROUTES", "UPLINK", "EDGE"]);
    for r in routers {
        let networks: Vec<&str> = r.interfaces.iter().map(|i| i.network.as_str()).collect();
        t.add_row(vec![
            r.name.clone(),
            r.id.to_string(),
            if networks.is_empty() {
                "-".into()
            } else {
                networks.join(", ")
            },
            r.routes.len().to_string(),
            r.uplink.as_ref().map_or("-".into(), |u| {
                format!("{} {}", u.network, u.ip_with_prefix())
            }),
            r.uplink
                .as_ref()
                .and_then(|u| u.edge.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    render(t)
}

/// `vinfra router show`: the router, its interfaces, its static routes.
pub fn show_text(r: &RouterSummary) -> String {
    let mut out = pairs(&[
        ("Name", r.name.clone()),
        ("Number", r.id.to_string()),
        ("Created", timestamp(r.created_at)),
    ]);
    out.push_str("\n\nInterfaces:\n");
    if r.interfaces.is_empty() {
        out.push_str("(none)");
    } else {
        let mut t = table(&["NETWORK", "SUBNET", "GATEWAY", "MAC"]);
        for i in &r.interfaces {
            t.add_row(vec![
                i.network.clone(),
                i.subnet.clone(),
                i.gateway.clone(),
                i.gateway_mac.clone(),
            ]);
        }
        out.push_str(&render(t));
    }
    out.push_str("\n\nStatic routes:\n");
    if r.routes.is_empty() {
        out.push_str("(none)");
    } else {
        let mut t = table(&["PREFIX", "VIA"]);
        for s in &r.routes {
            t.add_row(vec![s.prefix.clone(), s.via.clone()]);
        }
        out.push_str(&render(t));
    }
    out.push_str("\n\nUplink:\n");
    match &r.uplink {
        None => out.push_str("(none)"),
        Some(u) => {
            out.push_str(&uplink_pairs(u));
            out.push_str("\n\nFloating IPs:\n");
            if u.floating_ips.is_empty() {
                out.push_str("(none)");
            } else {
                let mut t = table(&["IP", "VM", "NIC", "INTERNAL"]);
                for f in &u.floating_ips {
                    t.add_row(vec![
                        f.ip.clone(),
                        f.vm.clone(),
                        f.nic.to_string(),
                        f.internal.clone(),
                    ]);
                }
                out.push_str(&render(t));
            }
        }
    }
    out
}

/// An uplink's network, address, MAC, edge and standby, one per line.
fn uplink_pairs(u: &UplinkSummary) -> String {
    pairs(&[
        ("Network", u.network.clone()),
        ("Address", u.ip_with_prefix()),
        ("MAC", u.mac.clone()),
        (
            "Edge",
            u.edge
                .clone()
                .unwrap_or_else(|| "none (no host can be the edge now)".into()),
        ),
        (
            "Standby",
            u.standby.clone().unwrap_or_else(|| "none".into()),
        ),
        ("Transit VNI", u.transit_vni.to_string()),
    ])
}

fn uplink_set_text(router: &str, u: &UplinkSummary) -> String {
    format!(
        "router {router} uplink: {} on network {} ({}), edge {}",
        u.ip_with_prefix(),
        u.network,
        u.mac,
        u.edge.as_deref().unwrap_or("none")
    )
}

fn attached_text(router: &str, i: &RouterAttachment) -> String {
    format!(
        "network {} attached to router {router}: gateway {}, MAC {}",
        i.network, i.gateway, i.gateway_mac
    )
}

/// The route the arguments describe, checked like the console will.
pub fn route_request(prefix: &str, via: Ipv4Addr) -> Result<RouterStaticRoute, RestCommandError> {
    let route = RouterStaticRoute {
        prefix: prefix.to_string(),
        via: via.to_string(),
    };
    route.validate().map_err(RestCommandError::Router)?;
    Ok(route)
}

/// `vinfra router …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &RouterCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        RouterCommand::List { network, edge } => {
            let filter = RouterFilter {
                network: network.clone(),
                edge: edge.clone(),
            };
            show(out, &conn.client()?.routers_where(&filter)?, |r| {
                list_text(r)
            })
        }
        RouterCommand::Show { name } => {
            check_name("router", name)?;
            show(out, &conn.client()?.router(name)?, show_text)
        }
        RouterCommand::Create { name } => {
            check_name("router", name)?;
            let request = CreateRouterRequest { name: name.clone() };
            show(out, &conn.client()?.create_router(&request)?, |r| {
                format!("router {} created (number {})", r.name, r.id)
            })
        }
        RouterCommand::Delete { name } => {
            check_name("router", name)?;
            conn.client()?.delete_router(name)?;
            show(out, &(), |_| format!("router {name} deleted"))
        }
        RouterCommand::Attach {
            router,
            network,
            gateway,
        } => {
            check_name("router", router)?;
            check_name("network", network)?;
            let request = AttachNetworkRequest {
                network: network.clone(),
                gateway: gateway.map(|g| g.to_string()),
            };
            let iface = conn.client()?.attach_network(router, &request)?;
            show(out, &iface, |i| attached_text(router, i))
        }
        RouterCommand::Detach { router, network } => {
            check_name("router", router)?;
            check_name("network", network)?;
            conn.client()?.detach_network(router, network)?;
            show(out, &(), |_| {
                format!("network {network} detached from router {router}")
            })
        }
        RouterCommand::Route(RouteCommand::Add {
            router,
            prefix,
            via,
        }) => {
            check_name("router", router)?;
            let route = route_request(prefix, *via)?;
            let added = conn.client()?.add_route(router, &route)?;
            show(out, &added, |r| {
                format!("route {} added to router {router}", r.describe())
            })
        }
        RouterCommand::Uplink(UplinkCommand::Set {
            router,
            network,
            ip,
        }) => {
            check_name("router", router)?;
            check_name("network", network)?;
            let request = SetUplinkRequest {
                network: network.clone(),
                ip: ip.to_string(),
            };
            let uplink = conn.client()?.set_uplink(router, &request)?;
            show(out, &uplink, |u| uplink_set_text(router, u))
        }
        RouterCommand::Uplink(UplinkCommand::Remove { router }) => {
            check_name("router", router)?;
            conn.client()?.remove_uplink(router)?;
            show(out, &(), |_| format!("router {router} uplink removed"))
        }
        RouterCommand::Route(RouteCommand::Del { router, prefix }) => {
            check_name("router", router)?;
            let (addr, len) = parse_route_prefix(prefix).map_err(RestCommandError::Router)?;
            conn.client()?.delete_route(router, addr, len)?;
            show(out, &(), |_| {
                format!("route to {addr}/{len} deleted from router {router}")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra router` alone.
    #[derive(Debug, Parser)]
    struct Router {
        #[command(subcommand)]
        cmd: RouterCommand,
    }

    fn parse(args: &[&str]) -> Result<RouterCommand, String> {
        let mut argv = vec!["router"];
        argv.extend_from_slice(args);
        Router::try_parse_from(argv)
            .map(|s| s.cmd)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_command_line_parses() {
        match parse(&["attach", "r1", "blue", "--gateway", "10.0.0.1"]).unwrap() {
            RouterCommand::Attach {
                router,
                network,
                gateway,
            } => assert_eq!(
                (router.as_str(), network.as_str(), gateway),
                ("r1", "blue", Some(Ipv4Addr::new(10, 0, 0, 1)))
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["attach", "r1", "blue"]),
            Ok(RouterCommand::Attach { gateway: None, .. })
        ));
        match parse(&["route", "add", "r1", "0.0.0.0/0", "--via", "10.0.0.5"]).unwrap() {
            RouterCommand::Route(RouteCommand::Add { prefix, via, .. }) => {
                assert_eq!(
                    route_request(&prefix, via).unwrap(),
                    RouterStaticRoute {
                        prefix: "0.0.0.0/0".into(),
                        via: "10.0.0.5".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["route", "del", "r1", "10.9.0.0/16"]),
            Ok(RouterCommand::Route(RouteCommand::Del { .. }))
        ));
        for (bad, why) in [
            (&["route", "add", "r1", "10.9.0.0/16"][..], "--via"),
            (
                &["route", "add", "r1", "10.9.0.0/16", "--via", "ten"],
                "invalid value 'ten'",
            ),
            (
                &["attach", "r1", "blue", "--gateway", "10.0.0"],
                "invalid value '10.0.0'",
            ),
            (&["attach", "r1"], "<NETWORK>"),
            (&["create"], "<NAME>"),
        ] {
            let e = parse(bad).expect_err(why);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let e = route_request("10.9.0.1/16", Ipv4Addr::new(10, 0, 0, 5)).unwrap_err();
        assert_eq!(
            vinfra_types::error::chain(&e),
            "prefix '10.9.0.1/16' has host bits set; the network address is 10.9.0.0/16"
        );
        assert!(e.is_usage());
    }

    #[test]
    fn routers_are_shown_with_their_interfaces_and_routes() {
        let r = RouterSummary {
            name: "r1".into(),
            id: 3,
            interfaces: vec![RouterAttachment {
                network: "blue".into(),
                subnet: "10.0.0.0/24".into(),
                gateway: "10.0.0.1".into(),
                gateway_mac: "02:76:72:00:00:07".into(),
            }],
            routes: vec![RouterStaticRoute {
                prefix: "10.9.0.0/16".into(),
                via: "10.0.0.5".into(),
            }],
            uplink: None,
            created_at: 0,
        };
        let text = show_text(&r);
        let row = |first: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(first))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(
            row("blue "),
            ["blue", "10.0.0.0/24", "10.0.0.1", "02:76:72:00:00:07"],
            "{text}"
        );
        assert_eq!(row("10.9.0.0/16 "), ["10.9.0.0/16", "10.0.0.5"], "{text}");
        let list = list_text(std::slice::from_ref(&r));
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["r1", "3", "blue", "1", "-", "-"]),
            "{list}"
        );
        assert_eq!(list_text(&[]), "no routers");
        let empty = RouterSummary {
            interfaces: vec![],
            routes: vec![],
            ..r
        };
        let text = show_text(&empty);
        assert_eq!(text.matches("(none)").count(), 3, "{text}");
        assert_eq!(
            attached_text("r1", &r_iface()),
            "network blue attached to router r1: gateway 10.0.0.1, MAC 02:76:72:00:00:07"
        );
    }

    #[test]
    fn the_uplink_is_shown_with_its_edge_standby_and_floating_ips() {
        use vinfra_types::router::FloatingIpSummary;
        let uplink = UplinkSummary {
            network: "external".into(),
            subnet: "10.82.0.0/24".into(),
            ip: "10.82.0.10".into(),
            mac: "02:76:72:01:00:03".into(),
            edge: Some("h2".into()),
            standby: Some("h1".into()),
            transit_vni: 0xFF_0003,
            floating_ips: vec![FloatingIpSummary {
                ip: "10.82.0.20".into(),
                vm: "web".into(),
                nic: 0,
                network: "blue".into(),
                internal: "10.0.0.10".into(),
                router: "r1".into(),
            }],
        };
        let r = RouterSummary {
            name: "r1".into(),
            id: 3,
            interfaces: vec![r_iface()],
            routes: vec![],
            uplink: Some(uplink.clone()),
            created_at: 0,
        };
        let text = show_text(&r);
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.trim_start().strip_prefix(&format!("{key}:")))
                .map(str::trim)
                .unwrap_or_default()
        };
        assert_eq!(value("Network"), "external", "{text}");
        assert_eq!(value("Address"), "10.82.0.10/24", "{text}");
        assert_eq!(value("MAC"), "02:76:72:01:00:03", "{text}");
        assert_eq!(value("Edge"), "h2", "{text}");
        assert_eq!(value("Standby"), "h1", "{text}");
        assert_eq!(value("Transit VNI"), "16711683", "{text}");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["10.82.0.20", "web", "0", "10.0.0.10"]),
            "{text}"
        );
        let list = list_text(std::slice::from_ref(&r));
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["r1", "3", "blue", "0", "external 10.82.0.10/24", "h2"]
                        .join(" ")
                        .split_whitespace()
                        .collect::<Vec<_>>()),
            "{list}"
        );
        assert_eq!(
            uplink_set_text("r1", &uplink),
            "router r1 uplink: 10.82.0.10/24 on network external (02:76:72:01:00:03), edge h2"
        );
        let none = UplinkSummary {
            edge: None,
            standby: None,
            floating_ips: vec![],
            ..uplink
        };
        let text = show_text(&RouterSummary {
            uplink: Some(none),
            ..r
        });
        assert!(
            text.contains("none (no host can be the edge now)"),
            "{text}"
        );
        assert!(text.contains("Floating IPs:\n(none)"), "{text}");
    }

    #[test]
    fn uplink_commands_parse() {
        match parse(&["uplink", "set", "r1", "external", "10.82.0.10"]).unwrap() {
            RouterCommand::Uplink(UplinkCommand::Set {
                router,
                network,
                ip,
            }) => assert_eq!(
                (router.as_str(), network.as_str(), ip),
                ("r1", "external", Ipv4Addr::new(10, 82, 0, 10))
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["uplink", "remove", "r1"]),
            Ok(RouterCommand::Uplink(UplinkCommand::Remove { .. }))
        ));
        for (bad, why) in [
            (&["uplink", "set", "r1", "external"][..], "<IP>"),
            (
                &["uplink", "set", "r1", "external", "10.82.0"],
                "invalid value '10.82.0'",
            ),
            (&["uplink", "remove"], "<ROUTER>"),
        ] {
            let e = parse(bad).expect_err(why);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    fn r_iface() -> RouterAttachment {
        RouterAttachment {
            network: "blue".into(),
            subnet: "10.0.0.0/24".into(),
            gateway: "10.0.0.1".into(),
            gateway_mac: "02:76:72:00:00:07".into(),
        }
    }
}
