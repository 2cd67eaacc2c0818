//! `vinfra vm floating-ip …`: a VM NIC's floating IPs (add, del, list), 1:1 NAT on the edge of
//! the router its network is attached to. Reached through `vinfra vm`.

use std::net::Ipv4Addr;

use clap::Subcommand;
use vinfra_types::filter::FloatingIpFilter;
use vinfra_types::router::{AddFloatingIpRequest, FloatingIpSummary};

use crate::config::ConnectionOverrides;
use crate::output::{render, table, Output};
use crate::rest::{check_name, name_arg, show, RestCommandError};

/// `vinfra vm floating-ip …`.
#[derive(Debug, Subcommand)]
pub enum FloatingIpCommand {
    /// Give a NIC of the VM a floating IP (an address of its router's uplink subnet).
    Add {
        /// The VM.
        vm: String,
        /// The floating IP.
        ip: Ipv4Addr,
        /// The NIC's index in the VM's spec (from 0).
        #[arg(long, default_value_t = 0)]
        nic: usize,
    },
    /// Delete a floating IP of the VM.
    Del {
        /// The VM.
        vm: String,
        /// The floating IP.
        ip: Ipv4Addr,
    },
    /// Every floating IP, or the VM's, a router's, those of NICs on a network.
    List {
        /// Only this VM's.
        #[arg(value_parser = name_arg)]
        vm: Option<String>,
        /// Only those on this router's uplink.
        #[arg(long, value_parser = name_arg)]
        router: Option<String>,
        /// Only those of a NIC on this network (the internal one, attached to the router).
        #[arg(long, value_parser = name_arg)]
        network: Option<String>,
    },
}

/// `vinfra vm floating-ip list`: address, VM, NIC, internal address, router.
pub fn list_text(ips: &[FloatingIpSummary]) -> String {
    if ips.is_empty() {
        return "no floating IPs".into();
    }
    let mut t = table(&["IP", "VM", "NIC", "INTERNAL", "NETWORK", "ROUTER"]);
    for f in ips {
        t.add_row(vec![
            f.ip.clone(),
            f.vm.clone(),
            f.nic.to_string(),
            f.internal.clone(),
            f.network.clone(),
            f.router.clone(),
        ]);
    }
    render(t)
}

/// The line `vinfra vm floating-ip add` prints.
pub fn added_text(f: &FloatingIpSummary) -> String {
    format!(
        "floating IP {} added to VM {} nic {} ({} on {}, router {})",
        f.ip, f.vm, f.nic, f.internal, f.network, f.router
    )
}

/// `vinfra vm floating-ip …`: checks the arguments, then asks the console.
pub fn run(
    conn: &ConnectionOverrides,
    out: Output,
    cmd: &FloatingIpCommand,
) -> Result<(), RestCommandError> {
    match cmd {
        FloatingIpCommand::Add { vm, ip, nic } => {
            check_name("VM", vm)?;
            let request = AddFloatingIpRequest {
                ip: ip.to_string(),
                nic: Some(*nic),
            };
            show(
                out,
                &conn.client()?.add_floating_ip(vm, &request)?,
                added_text,
            )
        }
        FloatingIpCommand::Del { vm, ip } => {
            check_name("VM", vm)?;
            conn.client()?.delete_floating_ip(vm, *ip)?;
            show(out, &(), |_| {
                format!("floating IP {ip} deleted from VM {vm}")
            })
        }
        FloatingIpCommand::List {
            vm,
            router,
            network,
        } => {
            let filter = FloatingIpFilter {
                vm: vm.clone(),
                router: router.clone(),
                network: network.clone(),
            };
            show(out, &conn.client()?.floating_ips_where(&filter)?, |a| {
                list_text(a)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `vinfra vm floating-ip` alone.
    #[derive(Debug, Parser)]
    struct Fip {
        #[command(subcommand)]
        cmd: FloatingIpCommand,
    }

    fn parse(args: &[&str]) -> Result<FloatingIpCommand, String> {
        let mut argv = vec!["floating-ip"];
        argv.extend_from_slice(args);
        Fip::try_parse_from(argv)
            .map(|s| s.cmd)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_command_line_parses() {
        match parse(&["add", "web", "10.82.0.20", "--nic", "1"]).unwrap() {
            FloatingIpCommand::Add { vm, ip, nic } => {
                assert_eq!(
                    (vm.as_str(), ip, nic),
                    ("web", Ipv4Addr::new(10, 82, 0, 20), 1)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["add", "web", "10.82.0.20"]),
            Ok(FloatingIpCommand::Add { nic: 0, .. })
        ));
        assert!(matches!(
            parse(&["del", "web", "10.82.0.20"]),
            Ok(FloatingIpCommand::Del { .. })
        ));
        assert!(matches!(
            parse(&["list"]),
            Ok(FloatingIpCommand::List {
                vm: None,
                router: None,
                network: None
            })
        ));
        match parse(&["list", "web"]).unwrap() {
            FloatingIpCommand::List { vm, .. } => assert_eq!(vm.as_deref(), Some("web")),
            other => panic!("{other:?}"),
        }
        match parse(&["list", "--router", "r1", "--network", "blue"]).unwrap() {
            FloatingIpCommand::List {
                vm: None,
                router,
                network,
            } => assert_eq!(
                (router.as_deref(), network.as_deref()),
                (Some("r1"), Some("blue"))
            ),
            other => panic!("{other:?}"),
        }
        for (bad, why) in [
            (&["add", "web"][..], "<IP>"),
            (&["add", "web", "10.82.0"], "invalid value '10.82.0'"),
            (
                &["add", "web", "10.82.0.20", "--nic", "one"],
                "invalid value 'one'",
            ),
            (&["del", "web", "x"], "invalid value 'x'"),
            (&["list", "Web"], "invalid value 'Web'"),
            (&["list", "--router", "r_1"], "invalid value 'r_1'"),
            (&["list", "--network", ""], "name is empty"),
        ] {
            let e = parse(bad).expect_err(why);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn floating_ips_are_listed_with_their_nic_and_router() {
        let f = FloatingIpSummary {
            ip: "10.82.0.20".into(),
            vm: "web".into(),
            nic: 0,
            network: "blue".into(),
            internal: "10.80.1.10".into(),
            router: "r1".into(),
        };
        let text = list_text(std::slice::from_ref(&f));
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["10.82.0.20", "web", "0", "10.80.1.10", "blue", "r1"]),
            "{text}"
        );
        assert_eq!(list_text(&[]), "no floating IPs");
        assert_eq!(
            added_text(&f),
            "floating IP 10.82.0.20 added to VM web nic 0 (10.80.1.10 on blue, router r1)"
        );
    }
}
