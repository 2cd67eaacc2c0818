//! `vinfra net …`: logical networks (create, list, show with where each port lives, delete).

use std::net::Ipv4Addr;

use clap::{Args, Subcommand};
use vinfra_types::filter::NetworkFilter;
use vinfra_types::network::{
    CreateNetworkRequest, Ipv4Subnet, NetworkCounters, NetworkKind, NetworkSummary,
    MAX_NETWORK_VNI, MAX_OVERLAY_MTU, MAX_VLAN_ID, MIN_MTU,
};

use crate::config::ConnectionOverrides;
use crate::output::{host_cell, pairs, render, table, timestamp, traffic_cells, Output, TRAFFIC};
use crate::parse;
use crate::rest::{check_name, confirm, name_arg, show, word_arg, RestCommandError};

/// `--kind`: overlay or vlan.
fn parse_kind(s: &str) -> Result<NetworkKind, String> {
    word_arg(s, "overlay or vlan")
}

/// `vinfra net …`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Every network, or those of a kind, with a port on a host, with a port of a VM.
    List {
        /// Only the networks of this kind: overlay or vlan.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<NetworkKind>,
        /// Only the networks with a port on this host (a NIC of a VM placed there).
        #[arg(long, value_parser = name_arg)]
        host: Option<String>,
        /// Only the networks with a port of this VM (one of its NICs).
        #[arg(long, value_parser = name_arg)]
        vm: Option<String>,
    },
    /// One network and its ports: VM, host, MAC, address.
    Show {
        /// The network.
        name: String,
        /// Also each port's and each host's traffic (rx/tx packets and bytes, drops), read now
        /// from the hosts' switches.
        #[arg(long)]
        counters: bool,
    },
    /// Create a network.
    Create(NetCreateArgs),
    /// Delete a network (refused while a VM has a NIC on it; asks first on a terminal).
    Delete {
        /// The network.
        name: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `vinfra net create`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("kind").required(true).args(["overlay", "vlan"]))]
pub struct NetCreateArgs {
    /// Network name.
    pub name: String,
    /// A VXLAN overlay between the hosts.
    #[arg(long)]
    pub overlay: bool,
    /// A VLAN on the hosts' trunk to the physical network.
    #[arg(long)]
    pub vlan: bool,
    /// Overlay: the VNI, 1 to 16711679 (default: the lowest free from 10000; 16711680 and up
    /// are reserved for routers' transit traffic).
    #[arg(long, conflicts_with = "vlan", value_parser = |v: &str| parse::bounded(v, "vni", 1, u64::from(MAX_NETWORK_VNI)).map(|n| n as u32))]
    pub vni: Option<u32>,
    /// VLAN: the VLAN ID, 1 to 4094 (default: the lowest free from 100).
    #[arg(long, conflicts_with = "overlay", value_parser = |v: &str| parse::bounded(v, "vlan-id", 1, u64::from(MAX_VLAN_ID)).map(|n| n as u32))]
    pub vlan_id: Option<u32>,
    /// IPv4 subnet, e.g. 10.80.1.0/24 (prefix /8 to /30).
    #[arg(long, value_parser = parse_subnet)]
    pub subnet: String,
    /// Address of the subnet reserved for a gateway.
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// Guest MTU (overlay: default 1450, up to 9000 for hosts whose underlay MTU is the MTU + 50;
    /// VLAN: default and at most 1500).
    #[arg(long, value_parser = |v: &str| parse::bounded(v, "mtu", u64::from(MIN_MTU), u64::from(MAX_OVERLAY_MTU)).map(|n| n as u32))]
    pub mtu: Option<u32>,
}

fn parse_subnet(v: &str) -> Result<String, vinfra_types::network::NetworkError> {
    Ipv4Subnet::parse(v).map(|s| s.to_string())
}

/// The request the arguments describe, checked like the console will.
pub fn create_request(a: &NetCreateArgs) -> Result<CreateNetworkRequest, RestCommandError> {
    check_name("network", &a.name)?;
    let r = CreateNetworkRequest {
        name: a.name.clone(),
        kind: if a.vlan {
            NetworkKind::Vlan
        } else {
            NetworkKind::Overlay
        },
        vni: a.vni,
        vlan_id: a.vlan_id,
        subnet: a.subnet.clone(),
        gateway: a.gateway.map(|g| g.to_string()),
        mtu: a.mtu,
    };
    vinfra_types::network::check_request(&r)?;
    Ok(r)
}

fn segment(n: &NetworkSummary) -> String {
    match n.network.kind {
        NetworkKind::Overlay => n.network.vni.map_or("-".into(), |v| format!("vni {v}")),
        NetworkKind::Vlan => n
            .network
            .vlan_id
            .map_or("-".into(), |v| format!("vlan {v}")),
    }
}

fn list_text(nets: &[NetworkSummary]) -> String {
    if nets.is_empty() {
        return "no networks".into();
    }
    let mut t = table(&["NAME", "KIND", "ID", "SUBNET", "GATEWAY", "MTU", "PORTS"]);
    for n in nets {
        t.add_row(vec![
            n.network.name.clone(),
            n.network.kind.as_str().to_string(),
            segment(n),
            n.network.subnet.clone(),
            n.network.gateway.clone().unwrap_or_else(|| "-".into()),
            n.network.mtu.to_string(),
            n.ports.len().to_string(),
        ]);
    }
    render(t)
}

fn show_text(n: &NetworkSummary) -> String {
    let head = pairs(&[
        ("Name", n.network.name.clone()),
        ("Kind", n.network.kind.as_str().to_string()),
        ("Id", segment(n)),
        ("Subnet", n.network.subnet.clone()),
        (
            "Gateway",
            n.network.gateway.clone().unwrap_or_else(|| "-".into()),
        ),
        ("MTU", n.network.mtu.to_string()),
        ("Created", timestamp(n.network.created_at)),
        ("Ports", n.ports.len().to_string()),
    ]);
    if n.ports.is_empty() {
        return head;
    }
    let mut t = table(&["VM", "NIC", "HOST", "MAC", "IP"]);
    for p in &n.ports {
        t.add_row(vec![
            p.vm.clone(),
            p.nic.to_string(),
            host_cell(&p.host),
            p.mac.clone(),
            p.ip.clone(),
        ]);
    }
    format!("{head}\n\n{}", render(t))
}

fn counters_text(n: &NetworkCounters) -> String {
    let mut out = format!("Network {}: {} ports", n.network, n.ports.len());
    let mut missing = Vec::new();
    if !n.ports.is_empty() {
        let mut head = vec!["VM", "NIC", "HOST", "MAC", "IP"];
        head.extend(TRAFFIC);
        let mut t = table(&head);
        for p in &n.ports {
            let mut row = vec![
                p.port.vm.clone(),
                p.port.nic.to_string(),
                host_cell(&p.port.host),
                p.port.mac.clone(),
                p.port.ip.clone(),
            ];
            row.extend(traffic_cells(p.counters.as_ref()));
            t.add_row(row);
            if let Some(e) = &p.error {
                missing.push(format!("{} NIC {}: {e}", p.port.vm, p.port.nic));
            }
        }
        out = format!("{out}\n\n{}", render(t));
    }
    if !n.hosts.is_empty() {
        let mut head = vec!["HOST"];
        head.extend(TRAFFIC);
        let mut t = table(&head);
        for h in &n.hosts {
            let mut row = vec![h.host.clone()];
            row.extend(traffic_cells(h.counters.as_ref()));
            t.add_row(row);
        }
        out = format!("{out}\n\n{}", render(t));
    }
    if !missing.is_empty() {
        out = format!("{out}\n\nunavailable:\n  {}", missing.join("\n  "));
    }
    out
}

/// `vinfra net …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &NetCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        NetCommand::List { kind, host, vm } => {
            let filter = NetworkFilter {
                kind: *kind,
                host: host.clone(),
                vm: vm.clone(),
            };
            show(out, &conn.client()?.networks_where(&filter)?, |n| {
                list_text(n)
            })
        }
        NetCommand::Show {
            name,
            counters: true,
        } => {
            check_name("network", name)?;
            show(out, &conn.client()?.network_counters(name)?, counters_text)
        }
        NetCommand::Show {
            name,
            counters: false,
        } => {
            check_name("network", name)?;
            show(out, &conn.client()?.network(name)?, show_text)
        }
        NetCommand::Create(a) => {
            let req = create_request(a)?;
            show(out, &conn.client()?.create_network(&req)?, |n| {
                format!(
                    "network {} created: {}, {}, subnet {}, mtu {}",
                    n.network.name,
                    n.network.kind.as_str(),
                    segment(n),
                    n.network.subnet,
                    n.network.mtu
                )
            })
        }
        NetCommand::Delete { name, yes } => {
            check_name("network", name)?;
            confirm(&format!("Delete network {name}?"), *yes)?;
            conn.client()?.delete_network(name)?;
            show(out, &(), |_| format!("network {name} deleted"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use vinfra_types::network::{Network, NetworkPort, TrafficCounters};

    /// `vinfra net` alone.
    #[derive(Debug, Parser)]
    struct Net {
        #[command(subcommand)]
        cmd: NetCommand,
    }

    fn parse(args: &[&str]) -> Result<NetCreateArgs, String> {
        let mut argv = vec!["net", "create"];
        argv.extend_from_slice(args);
        match Net::try_parse_from(argv) {
            Ok(Net {
                cmd: NetCommand::Create(a),
            }) => Ok(a),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn network(name: &str, kind: NetworkKind, segment: u32, gateway: Option<&str>) -> Network {
        Network {
            name: name.into(),
            kind,
            vni: (kind == NetworkKind::Overlay).then_some(segment),
            vlan_id: (kind == NetworkKind::Vlan).then_some(segment),
            subnet: "10.80.1.0/24".into(),
            gateway: gateway.map(str::to_string),
            mtu: if kind == NetworkKind::Overlay {
                1450
            } else {
                1500
            },
            created_at: 1_700_000_000,
        }
    }

    fn port(vm: &str, nic: usize, host: &str, last: u8) -> NetworkPort {
        NetworkPort {
            vm: vm.into(),
            nic,
            host: host.into(),
            mac: format!("02:76:66:00:00:{last:02x}"),
            ip: format!("10.80.1.{last}"),
        }
    }

    /// The cells of `row` under each column of `header` (a column starts where a header word
    /// does; the tables are left-aligned).
    fn cells<'a>(header: &str, row: &'a str) -> Vec<&'a str> {
        let h = header.as_bytes();
        let starts: Vec<usize> = (0..h.len())
            .filter(|&i| h[i] != b' ' && (i == 0 || h[i - 1] == b' '))
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(k, &start)| {
                let end = starts
                    .get(k + 1)
                    .copied()
                    .unwrap_or(row.len())
                    .min(row.len());
                row.get(start.min(end)..end).unwrap_or("").trim()
            })
            .collect()
    }

    /// The value of `Key:` in a key/value block.
    fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(str::trim)
    }

    #[test]
    fn list_table() {
        assert_eq!(list_text(&[]), "no networks");
        let nets = vec![
            NetworkSummary {
                network: network("blue", NetworkKind::Overlay, 5000, Some("10.80.1.1")),
                ports: vec![port("a", 0, "h1", 2), port("b", 0, "h2", 3)],
            },
            NetworkSummary {
                network: network("v300", NetworkKind::Vlan, 300, None),
                ports: vec![],
            },
        ];
        let text = list_text(&nets);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header = lines[0];
        assert_eq!(
            cells(header, header),
            ["NAME", "KIND", "ID", "SUBNET", "GATEWAY", "MTU", "PORTS"]
        );
        assert_eq!(
            cells(header, lines[1]),
            [
                "blue",
                "overlay",
                "vni 5000",
                "10.80.1.0/24",
                "10.80.1.1",
                "1450",
                "2"
            ]
        );
        assert_eq!(
            cells(header, lines[2]),
            ["v300", "vlan", "vlan 300", "10.80.1.0/24", "-", "1500", "0"]
        );
    }

    #[test]
    fn show_names_each_ports_host() {
        let n = NetworkSummary {
            network: network("blue", NetworkKind::Overlay, 10000, Some("10.80.1.1")),
            ports: vec![
                port("a", 0, "h1", 2),
                port("a", 1, "h1", 3),
                port("long-vm-name", 0, "host-with-a-long-name", 4),
                port("unplaced", 0, "", 5),
            ],
        };
        let text = show_text(&n);
        for (key, value) in [
            ("Name", "blue"),
            ("Kind", "overlay"),
            ("Id", "vni 10000"),
            ("Subnet", "10.80.1.0/24"),
            ("Gateway", "10.80.1.1"),
            ("MTU", "1450"),
            ("Created", "2023-11-14 22:13:20"),
            ("Ports", "4"),
        ] {
            assert_eq!(field(&text, key), Some(value), "{key} in {text}");
        }
        let (_, ports) = text.split_once("\n\n").expect("a port table");
        let lines: Vec<&str> = ports.lines().collect();
        assert_eq!(lines.len(), 5, "{ports}");
        let header = lines[0];
        assert_eq!(cells(header, header), ["VM", "NIC", "HOST", "MAC", "IP"]);
        let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| cells(header, l)).collect();
        assert_eq!(
            rows,
            [
                ["a", "0", "h1", "02:76:66:00:00:02", "10.80.1.2"],
                ["a", "1", "h1", "02:76:66:00:00:03", "10.80.1.3"],
                [
                    "long-vm-name",
                    "0",
                    "host-with-a-long-name",
                    "02:76:66:00:00:04",
                    "10.80.1.4"
                ],
                ["unplaced", "0", "-", "02:76:66:00:00:05", "10.80.1.5"],
            ]
        );

        // A VLAN network without gateway or ports: no port table.
        let n = NetworkSummary {
            network: network("v300", NetworkKind::Vlan, 300, None),
            ports: vec![],
        };
        let text = show_text(&n);
        assert_eq!(field(&text, "Id"), Some("vlan 300"), "{text}");
        assert_eq!(field(&text, "Gateway"), Some("-"), "{text}");
        assert_eq!(field(&text, "Ports"), Some("0"), "{text}");
        assert!(!text.contains("HOST"), "{text}");
    }

    #[test]
    fn counters_table() {
        use vinfra_types::network::{NetworkHostCounters, NetworkPortCounters};
        let port = |vm: &str, host: &str| NetworkPort {
            vm: vm.into(),
            nic: 0,
            host: host.into(),
            mac: "02:76:66:00:00:01".into(),
            ip: "10.80.1.2".into(),
        };
        let traffic = TrafficCounters {
            rx_packets: 7,
            rx_bytes: 700,
            tx_packets: 9,
            tx_bytes: 900,
            drops: [("runt".to_string(), 2), ("no_network".to_string(), 1)].into(),
        };
        let n = NetworkCounters {
            network: "blue".into(),
            ports: vec![
                NetworkPortCounters {
                    port: port("a", "h1"),
                    counters: Some(traffic.clone()),
                    error: None,
                },
                NetworkPortCounters {
                    port: port("b", "h2"),
                    counters: None,
                    error: Some("host 'h2' is not connected".into()),
                },
            ],
            hosts: vec![NetworkHostCounters {
                host: "h1".into(),
                counters: Some(traffic),
                arp_suppressed: Some(3),
                flooded: Some(5),
                learning_refused: Some(0),
                error: None,
            }],
            total: Default::default(),
        };
        let text = counters_text(&n);
        let a = text.lines().find(|l| l.contains(" h1 ")).unwrap();
        for cell in ["10.80.1.2", "700", "900", "3 (no_network 1, runt 2)"] {
            assert!(a.contains(cell), "{a}");
        }
        assert!(
            text.contains("b NIC 0: host 'h2' is not connected"),
            "{text}"
        );
        let args = Net::try_parse_from(["net", "show", "blue", "--counters"]);
        assert!(
            matches!(
                args,
                Ok(Net {
                    cmd: NetCommand::Show { counters: true, .. }
                })
            ),
            "{args:?}"
        );
    }

    #[test]
    fn create_arguments() {
        let a = parse(&["blue", "--overlay", "--subnet", "10.80.1.0/24"]).unwrap();
        let r = create_request(&a).unwrap();
        assert_eq!((r.kind, r.vni, r.mtu), (NetworkKind::Overlay, None, None));
        let a = parse(&[
            "v",
            "--vlan",
            "--vlan-id",
            "42",
            "--subnet",
            "192.168.0.0/16",
            "--gateway",
            "192.168.0.1",
            "--mtu",
            "1500",
        ])
        .unwrap();
        let r = create_request(&a).unwrap();
        assert_eq!(r.kind, NetworkKind::Vlan);
        assert_eq!(r.vlan_id, Some(42));
        assert_eq!(r.gateway.as_deref(), Some("192.168.0.1"));
        for bad in [
            vec!["blue", "--subnet", "10.80.1.0/24"],
            vec!["blue", "--overlay", "--vlan", "--subnet", "10.80.1.0/24"],
            vec![
                "blue",
                "--overlay",
                "--vlan-id",
                "5",
                "--subnet",
                "10.80.1.0/24",
            ],
            vec!["blue", "--vlan", "--vni", "5", "--subnet", "10.80.1.0/24"],
            vec![
                "blue",
                "--overlay",
                "--vni",
                "0",
                "--subnet",
                "10.80.1.0/24",
            ],
            vec![
                "blue",
                "--overlay",
                "--vni",
                "16777216",
                "--subnet",
                "10.80.1.0/24",
            ],
            vec![
                "blue",
                "--vlan",
                "--vlan-id",
                "4095",
                "--subnet",
                "10.80.1.0/24",
            ],
            vec!["blue", "--overlay", "--subnet", "10.80.1.5/24"],
            vec!["blue", "--overlay", "--subnet", "10.80.1.0/31"],
            vec!["blue", "--overlay", "--subnet", "nope"],
            vec!["blue", "--overlay"],
            vec![
                "blue",
                "--overlay",
                "--subnet",
                "10.80.1.0/24",
                "--mtu",
                "9001",
            ],
        ] {
            let e = parse(&bad).expect_err(&format!("{bad:?}"));
            assert!(!e.lines().next().unwrap_or("").is_empty(), "{bad:?}");
        }
        // Checked before anything is sent.
        for bad in [
            vec![
                "blue",
                "--vlan",
                "--subnet",
                "10.80.1.0/24",
                "--mtu",
                "1501",
            ],
            vec![
                "blue",
                "--overlay",
                "--subnet",
                "10.80.1.0/24",
                "--gateway",
                "10.80.2.1",
            ],
            vec!["Bad_Name", "--overlay", "--subnet", "10.80.1.0/24"],
        ] {
            let a = parse(&bad).unwrap();
            let e = create_request(&a).expect_err(&format!("{bad:?}"));
            assert!(e.is_usage());
            assert!(!vinfra_types::error::chain(&e).contains('\n'));
        }
    }
}
