//! `vinfra host …`: list, show (resources, or the host's virtual switch), set (ratio override,
//! maintenance, fence command), fence, remove, revoked (the removed hosts' certificates).

use std::collections::BTreeMap;

use clap::Subcommand;
use uuid::Uuid;
use vinfra_types::api::UpdateHostRequest;
use vinfra_types::filter::{HostFilter, RevokedCertificateFilter};
use vinfra_types::ha::FenceOutcome;
use vinfra_types::network::{HostSwitchCounters, SwitchRouterNat, TrafficCounters};
use vinfra_types::{AllocationRatios, HostStatus, HostSummary};

use crate::config::ConnectionOverrides;
use crate::follow;
use crate::output::{self, render, table, traffic_cells, Output, TRAFFIC};
use crate::parse;
use crate::rest::{check_name, confirm, name_arg, show, word_arg, RestCommandError};

/// `vinfra host …`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts (all, or those whose agent is connected or not, in maintenance or not).
    List {
        /// Only the hosts whose agent is connected or disconnected (the STATUS column).
        #[arg(long, value_parser = parse_status, value_name = "connected|disconnected")]
        status: Option<HostStatus>,
        /// Only the hosts in maintenance (on) or out of it (off).
        #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
        maintenance: Option<bool>,
    },
    /// Show a host: CPU and memory allocated, allocatable, physical and used.
    Show {
        /// The host.
        name: String,
        /// Show the host's virtual switch instead: counters per network, per VM NIC port, of
        /// the VXLAN uplink and the VLAN trunk, and drops by reason.
        #[arg(long)]
        switch: bool,
    },
    /// Change a host's ratio override, maintenance mode or fence command.
    Set {
        /// The host.
        name: String,
        /// vCPUs per core on this host.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        cpu_ratio: Option<f64>,
        /// Guest memory per physical memory on this host.
        #[arg(long, value_parser = parse::ratio, allow_hyphen_values = true)]
        memory_ratio: Option<f64>,
        /// Remove the override (use the cluster default).
        #[arg(long, conflicts_with_all = ["cpu_ratio", "memory_ratio"])]
        clear_ratios: bool,
        /// Maintenance mode: no new VMs are placed on the host; `on` waits until its running
        /// VMs have left it (moved by balancing, or by hand), showing how many are left.
        #[arg(long, value_parser = parse::on_off, value_name = "on|off")]
        maintenance: Option<bool>,
        /// The host's out-of-band fence command (IPMI, Redfish, a PDU …), run by the console
        /// with `sh -c` and VINFRA_HOST set when the host must be off: exit 0 means it is.
        /// Never shown again (it may hold credentials).
        #[arg(long, value_parser = parse::fence_command, allow_hyphen_values = true, value_name = "CMD")]
        fence_command: Option<String>,
        /// Remove the host's fence command.
        #[arg(long, conflicts_with = "fence_command")]
        no_fence_command: bool,
        /// With `--maintenance on`: print the evacuation's task number and return at once.
        #[arg(long, requires = "maintenance")]
        no_wait: bool,
    },
    /// A host's CPU and memory use over the last hour (one row per 10 s while it is
    /// connected).
    Usage {
        /// The host.
        name: String,
    },
    /// Power a host off with its fence command (refused while its agent is connected, unless
    /// --force).
    Fence {
        /// The host.
        name: String,
        /// Also while the host's agent is connected: it powers off a running host.
        #[arg(long)]
        force: bool,
        /// Print the task's number and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Forget a host (it must have no VMs); its certificates are revoked (asks first on a
    /// terminal).
    Remove {
        /// The host.
        name: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The certificates of removed hosts, revoked until they expire.
    Revoked {
        /// Only those issued to this host.
        #[arg(long, value_parser = name_arg)]
        host: Option<String>,
    },
}

/// `--status`: a host's connection status as the API names it.
fn parse_status(v: &str) -> Result<HostStatus, String> {
    word_arg(v, "connected or disconnected")
}

/// `vinfra host …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &HostCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        HostCommand::List {
            status,
            maintenance,
        } => {
            let filter = HostFilter {
                status: *status,
                maintenance: *maintenance,
            };
            show(out, &conn.client()?.hosts_where(&filter)?, |h| {
                output::hosts(h)
            })
        }
        HostCommand::Revoked { host } => {
            let filter = RevokedCertificateFilter { host: host.clone() };
            show(
                out,
                &conn.client()?.revoked_certificates_where(&filter)?,
                |r| output::revoked_certificates(r),
            )
        }
        HostCommand::Show { name, switch: true } => {
            check_name("host", name)?;
            let api = conn.client()?;
            show(out, &api.host_switch(name)?, |c| {
                // VM names for the port table; ids stand in when the list is unavailable.
                let vms = api.vms().unwrap_or_default();
                let names = vms.into_iter().map(|v| (v.id, v.name)).collect();
                host_switch_text(name, c, &names)
            })
        }
        HostCommand::Show { name, .. } => {
            check_name("host", name)?;
            show(out, &conn.client()?.host(name)?, output::host)
        }
        HostCommand::Usage { name } => {
            check_name("host", name)?;
            show(out, &conn.client()?.host_usage(name)?, output::usage::usage)
        }
        HostCommand::Set {
            name,
            cpu_ratio,
            memory_ratio,
            clear_ratios,
            maintenance,
            fence_command,
            no_fence_command,
            no_wait,
        } => {
            check_name("host", name)?;
            if !*clear_ratios
                && cpu_ratio.is_none()
                && memory_ratio.is_none()
                && maintenance.is_none()
                && fence_command.is_none()
                && !*no_fence_command
            {
                return Err(RestCommandError::NothingToChange(
                    "--cpu-ratio, --memory-ratio, --clear-ratios, --maintenance, \
                     --fence-command or --no-fence-command",
                ));
            }
            let api = conn.client()?;
            let ratios = if *clear_ratios {
                Some(None)
            } else if cpu_ratio.is_some() || memory_ratio.is_some() {
                // Fill in the ratio not given from what is in force on the host.
                let current = api.host(name)?.ratios;
                Some(Some(AllocationRatios {
                    cpu: cpu_ratio.unwrap_or(current.cpu),
                    memory: memory_ratio.unwrap_or(current.memory),
                }))
            } else {
                None
            };
            let fence_command = match (fence_command, no_fence_command) {
                (Some(c), _) => Some(Some(c.clone())),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let req = UpdateHostRequest {
                ratios,
                maintenance: *maintenance,
                fence_command,
            };
            if *maintenance != Some(true) {
                return show(out, &api.update_host(name, &req)?, output::host);
            }
            let task = api.update_host_task(name, &req)?;
            if *no_wait {
                return follow::accepted(out, &task);
            }
            let host: HostSummary = follow::result(&api, task)?;
            show(out, &host, output::host)
        }
        HostCommand::Fence {
            name,
            force,
            no_wait,
        } => {
            check_name("host", name)?;
            let api = conn.client()?;
            let task = api.fence_host_task(name, *force)?;
            if *no_wait {
                return follow::accepted(out, &task);
            }
            let o: FenceOutcome = follow::result(&api, task)?;
            show(out, &o, |o| {
                let mut text = format!(
                    "host {} fenced ({}, {} ms)",
                    o.host,
                    o.ending(),
                    o.duration_ms
                );
                let tail = o.output_tail.trim_end();
                if !tail.is_empty() {
                    text.push('\n');
                    text.push_str(tail);
                }
                text
            })
        }
        HostCommand::Remove { name, yes } => {
            check_name("host", name)?;
            confirm(
                &format!("Remove host {name} and revoke its certificates?"),
                *yes,
            )?;
            conn.client()?.delete_host(name)?;
            show(out, &(), |_| format!("host {name} removed"))
        }
    }
}

/// `vinfra host show NAME --switch`: one host's virtual switch, per network, per VM NIC port,
/// uplink and trunk, then the drops that belong to no port.
///
/// `vm_names` maps VM ids to names; a port of a VM not in it shows the id.
pub fn host_switch_text(
    host: &str,
    c: &HostSwitchCounters,
    vm_names: &BTreeMap<Uuid, String>,
) -> String {
    let mut out = format!(
        "Switch of host {host}: {} networks, {} VM ports",
        c.networks.len(),
        c.ports.len()
    );
    if !c.networks.is_empty() {
        let mut head = vec!["NETWORK"];
        head.extend(TRAFFIC);
        head.extend(["ARP SUPPRESSED", "FLOODED"]);
        let mut t = table(&head);
        for n in &c.networks {
            let mut row = vec![n.network.clone()];
            row.extend(traffic_cells(Some(&n.traffic)));
            row.extend([n.arp_suppressed.to_string(), n.flooded.to_string()]);
            t.add_row(row);
        }
        out = format!("{out}\n\n{}", render(t));
    }
    if !c.ports.is_empty() {
        let mut head = vec!["PORT", "VM", "NIC", "NETWORK", "MAC"];
        head.extend(TRAFFIC);
        head.extend(["TX ERRORS", "RX ERRORS"]);
        let mut t = table(&head);
        for p in &c.ports {
            let vm = vm_names
                .get(&p.vm_id)
                .cloned()
                .unwrap_or_else(|| p.vm_id.to_string());
            let mut row = vec![
                p.port.to_string(),
                vm,
                p.nic.to_string(),
                p.network.clone(),
                p.mac.clone(),
            ];
            row.extend(traffic_cells(Some(&p.traffic)));
            row.extend([p.tx_errors.to_string(), p.rx_errors.to_string()]);
            t.add_row(row);
        }
        out = format!("{out}\n\n{}", render(t));
    }
    let links: Vec<(&str, &TrafficCounters)> = [
        ("VXLAN uplink", c.uplink.as_ref()),
        ("VLAN trunk", c.trunk.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, t)| t.map(|t| (name, t)))
    .collect();
    if !links.is_empty() {
        let mut head = vec!["LINK"];
        head.extend(TRAFFIC);
        let mut t = table(&head);
        for (name, traffic) in links {
            let mut row = vec![name.to_string()];
            row.extend(traffic_cells(Some(traffic)));
            t.add_row(row);
        }
        out = format!("{out}\n\n{}", render(t));
    }
    if !c.routers.is_empty() {
        let mut t = table(&[
            "ROUTER",
            "ROUTED PKTS",
            "ROUTED BYTES",
            "ECHO REPLIES",
            "ICMP ERRORS",
            "ARP REQUESTS",
            "NOT ROUTED",
            "NAT",
        ]);
        for r in &c.routers {
            t.add_row(vec![
                r.router.clone(),
                r.routed_packets.to_string(),
                r.routed_bytes.to_string(),
                r.echo_replies.to_string(),
                by_reason(&r.icmp_sent),
                r.arp_requests.to_string(),
                by_reason(&r.drops),
                r.nat.as_ref().map_or_else(|| "-".to_string(), nat_cell),
            ]);
        }
        out = format!("{out}\n\n{}", render(t));
    }
    let drops: Vec<String> = c
        .switch_drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    if !drops.is_empty() {
        out = format!("{out}\n\nother drops: {}", drops.join(", "));
    }
    out
}

/// A router's NAT on the host, in one cell: whether the host is its edge, the sessions, the
/// packets translated out (snat) and in (dnat), the packets sent to the edge.
fn nat_cell(n: &SwitchRouterNat) -> String {
    format!(
        "edge {}, {} sessions, snat/dnat {}/{}, to edge {}",
        if n.edge { "yes" } else { "no" },
        n.sessions,
        n.snat_packets,
        n.dnat_packets,
        n.to_edge_packets
    )
}

/// A total with its non-zero parts: `5 (no_route 3, ttl_exceeded 2)`, or `0`.
fn by_reason(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let total: u64 = counts.values().sum();
    if parts.is_empty() {
        total.to_string()
    } else {
        format!("{total} ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra host` alone.
    #[derive(Debug, Parser)]
    struct Host {
        #[command(subcommand)]
        cmd: HostCommand,
    }

    #[test]
    fn host_switch_table() {
        use vinfra_types::network::{SwitchNetworkCounters, SwitchPortCounters};
        let traffic = |n: u64| TrafficCounters {
            rx_packets: n,
            rx_bytes: n * 100,
            tx_packets: n + 1,
            tx_bytes: (n + 1) * 100,
            drops: [("unknown_vlan".to_string(), n)].into(),
        };
        let id = Uuid::new_v4();
        let other = Uuid::new_v4();
        let port = |vm_id, port: u32| SwitchPortCounters {
            vm_id,
            nic: 0,
            network: "v100".into(),
            mac: "02:76:66:00:00:01".into(),
            port,
            traffic: traffic(3),
            tx_errors: 4,
            rx_errors: 0,
            firewall: None,
        };
        let c = HostSwitchCounters {
            networks: vec![SwitchNetworkCounters {
                network: "v100".into(),
                traffic: traffic(5),
                arp_suppressed: 6,
                flooded: 8,
                learning_refused: 0,
            }],
            ports: vec![port(id, 17), port(other, 18)],
            uplink: None,
            trunk: Some(traffic(11)),
            switch_drops: [("runt".to_string(), 2), ("no_port".to_string(), 0)].into(),
            routers: vec![
                vinfra_types::network::SwitchRouterCounters {
                    router: "r1".into(),
                    routed_packets: 40,
                    routed_bytes: 4000,
                    icmp_sent: [
                        ("time_exceeded".to_string(), 2),
                        ("net_unreachable".to_string(), 1),
                    ]
                    .into(),
                    drops: [("no_route".to_string(), 1), ("to_gateway".to_string(), 0)].into(),
                    ..Default::default()
                },
                vinfra_types::network::SwitchRouterCounters {
                    router: "r2".into(),
                    nat: Some(SwitchRouterNat {
                        edge: true,
                        sessions: 12,
                        snat_packets: 30,
                        dnat_packets: 29,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                vinfra_types::network::SwitchRouterCounters {
                    router: "r3".into(),
                    nat: Some(SwitchRouterNat {
                        to_edge_packets: 17,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
        };
        let text = host_switch_text("h1", &c, &[(id, "web-1".to_string())].into());
        let net = text.lines().find(|l| l.starts_with("v100 ")).unwrap();
        for cell in ["500", "5 (unknown_vlan 5)", " 6 "] {
            assert!(net.contains(cell), "{net}");
        }
        assert!(net.trim_end().ends_with(" 8"), "{net}");
        let named = text.lines().find(|l| l.starts_with("17 ")).unwrap();
        assert!(named.contains("web-1") && named.contains(" 4 "), "{named}");
        let unnamed = text.lines().find(|l| l.starts_with("18 ")).unwrap();
        assert!(unnamed.contains(&other.to_string()), "{unnamed}");
        let trunk = text.lines().find(|l| l.starts_with("VLAN trunk")).unwrap();
        assert!(trunk.contains("1100"), "{trunk}");
        assert!(!text.contains("VXLAN uplink"), "{text}");
        assert!(text.ends_with("other drops: runt 2"), "{text}");
        let router = text.lines().find(|l| l.starts_with("r1 ")).unwrap();
        for cell in [
            " 40 ",
            " 4000 ",
            "3 (net_unreachable 1, time_exceeded 2)",
            "1 (no_route 1)",
        ] {
            assert!(router.contains(cell), "{router}");
        }
        // NAT: none without an uplink; the edge's translations; another host's packets to it.
        assert!(router.trim_end().ends_with(" -"), "{router}");
        let edge = text.lines().find(|l| l.starts_with("r2 ")).unwrap();
        assert!(
            edge.contains("edge yes, 12 sessions, snat/dnat 30/29, to edge 0"),
            "{edge}"
        );
        let other = text.lines().find(|l| l.starts_with("r3 ")).unwrap();
        assert!(
            other.contains("edge no, 0 sessions, snat/dnat 0/0, to edge 17"),
            "{other}"
        );
        let args = Host::try_parse_from([
            "host",
            "set",
            "h1",
            "--fence-command",
            "x",
            "--no-fence-command",
        ]);
        assert!(args.is_err(), "one or the other");
        let args = Host::try_parse_from(["host", "set", "h1", "--fence-command", ""]);
        assert!(args.is_err(), "an empty command");
        let args = Host::try_parse_from(["host", "fence", "h2", "--force"]);
        assert!(
            matches!(
                args,
                Ok(Host {
                    cmd: HostCommand::Fence { force: true, .. }
                })
            ),
            "{args:?}"
        );
        let args = Host::try_parse_from(["host", "list", "--status", "disconnected"]);
        assert!(
            matches!(
                args,
                Ok(Host {
                    cmd: HostCommand::List {
                        status: Some(HostStatus::Disconnected),
                        maintenance: None
                    }
                })
            ),
            "{args:?}"
        );
        let args = Host::try_parse_from(["host", "list", "--maintenance", "on"]);
        assert!(
            matches!(
                args,
                Ok(Host {
                    cmd: HostCommand::List {
                        status: None,
                        maintenance: Some(true)
                    }
                })
            ),
            "{args:?}"
        );
        for bad in [
            &["host", "list", "--status", "online"][..],
            &["host", "list", "--maintenance", "maybe"],
            &["host", "revoked", "--host", "H_1"],
        ] {
            assert!(Host::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let args = Host::try_parse_from(["host", "revoked", "--host", "h3"]);
        assert!(
            matches!(&args, Ok(Host { cmd: HostCommand::Revoked { host: Some(h) } }) if h == "h3"),
            "{args:?}"
        );
        let args = Host::try_parse_from(["host", "show", "h1", "--switch"]);
        assert!(
            matches!(
                args,
                Ok(Host {
                    cmd: HostCommand::Show { switch: true, .. }
                })
            ),
            "{args:?}"
        );
    }
}
