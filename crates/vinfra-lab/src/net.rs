//! The lab network: an underlay namespace with a Linux bridge, and one namespace per host joined
//! to the bridge by a veth pair. Addresses are in 10.77.0.0/24; no namespace has a default route,
//! and the root namespace is never touched.
//!
//! Besides, a "physical network" for VLANs: a namespace `vl-<lab>-phys` with a second Linux
//! bridge (`br0`, no VLAN filtering: it forwards 802.1Q-tagged frames as they are, learning
//! MACs across VLANs like a plain switch would), joined to each host by a veth pair, `trunk0` in
//! the host's namespace (the host's trunk, `vinfra agent --trunk-interface trunk0`) and `t<N>`
//! on the bridge. One more veth pair, `tor0` ↔ `tor` (on the bridge), is the trunk of the
//! top-of-rack switch that gives the physical network its endpoints (see
//! [`crate::Lab::add_vlan_endpoint`]). Nothing needs `ethtool`: where the kernel moves a tag into
//! packet metadata, the bridge forwards it with the frame and the switches' AF_PACKET sockets
//! put it back.
//!
//! On the physical network, an upstream router and an "internet" behind it have namespaces of
//! their own, `vl-<lab>-upstream` and `vl-<lab>-internet` (see [`crate::upstream`]).

use std::net::Ipv4Addr;
use std::process::Command;

/// Address of the bridge in the underlay namespace (the console's agent endpoint).
pub const UNDERLAY_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Prefix length of the lab subnet.
pub const PREFIX: u8 = 24;
/// Port of the console's agent endpoint in the underlay namespace.
pub const AGENT_PORT: u16 = 7444;
/// Port of each host agent's `GET /metrics` (`vinfra agent --metrics-listen`), on the host's
/// address.
pub const METRICS_PORT: u16 = 9101;

/// Why setting up or tearing down the lab network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The `ip` command could not be run at all.
    #[error("cannot run 'ip {args}'")]
    Spawn {
        /// The arguments of `ip`.
        args: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// An `ip` command failed.
    #[error("'ip {args}' failed: {stderr}")]
    Failed {
        /// The arguments of `ip`.
        args: String,
        /// What it printed on stderr, on one line.
        stderr: String,
    },
    /// The lock that serializes `ip netns add` could not be taken (see `add_netns`).
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: &'static str,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// Name of the underlay namespace of lab `lab`.
pub fn underlay_ns(lab: &str) -> String {
    format!("vl-{lab}-ul")
}

/// Name of the physical-network namespace of lab `lab`.
pub fn phys_ns(lab: &str) -> String {
    format!("vl-{lab}-phys")
}

/// Name of the upstream router's namespace of lab `lab` (see [`crate::upstream`]).
pub fn upstream_ns(lab: &str) -> String {
    format!("vl-{lab}-upstream")
}

/// Name of the "internet" namespace of lab `lab`, behind its upstream router.
pub fn internet_ns(lab: &str) -> String {
    format!("vl-{lab}-internet")
}

/// The trunk interface in every host namespace.
pub const TRUNK_INTERFACE: &str = "trunk0";
/// The top-of-rack switch's trunk interface in the physical-network namespace.
pub const TOR_TRUNK_INTERFACE: &str = "tor0";

/// The bridge port (in the physical-network namespace) of host `index`'s trunk: `t<index>`.
pub fn trunk_port(index: usize) -> String {
    format!("t{index}")
}

/// Name of the namespace of host `index` (1-based) of lab `lab`.
pub fn host_ns(lab: &str, index: usize) -> String {
    format!("vl-{lab}-h{index}")
}

/// Address of host `index` (1-based): 10.77.0.(10 + index).
pub fn host_addr(index: usize) -> Ipv4Addr {
    let last = u8::try_from(10 + index).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 77, 0, last)
}

/// Runs `ip args`.
pub(crate) fn ip(args: &[&str]) -> Result<(), NetError> {
    ip_output(args).map(drop)
}

/// The lock file of [`add_netns`]. The switch daemon's and the agent's tests and the switch
/// benchmarks take the same one (`vinfra_testenv::add_netns`): keep the paths equal.
const NETNS_LOCK: &str = "/run/vinfra-netns.lock";

/// Runs `ip netns add ns` holding an exclusive `flock` on [`NETNS_LOCK`], so that no other
/// process (another lab, a test) adds a namespace at the same time. On its first use iproute2
/// makes `/run/netns` a shared mount (bind-mounting it on itself when it is not a mount
/// point yet); two `ip netns add` doing that at once can stack two such mounts, and the
/// namespace one of them made is then hidden under the other: `ip -n ns ...` fails with
/// "setting the network namespace ... failed: Invalid argument".
pub(crate) fn add_netns(ns: &str) -> Result<(), NetError> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let lock_error = |source| NetError::Lock {
        path: NETNS_LOCK,
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(NETNS_LOCK)
        .map_err(lock_error)?;
    let _lock = loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => break lock,
            Err((again, Errno::EINTR)) => file = again,
            Err((_, errno)) => return Err(lock_error(errno.into())),
        }
    };
    ip(&["netns", "add", ns])
}

/// Runs `ip args`; its standard output.
pub(crate) fn ip_output(args: &[&str]) -> Result<String, NetError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', "; ");
    Err(NetError::Failed {
        args: joined,
        stderr,
    })
}

/// The pids of every process in network namespace `ns` (`ip netns pids`).
pub fn pids(ns: &str) -> Result<Vec<u32>, NetError> {
    Ok(ip_output(&["netns", "pids", ns])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Names of the existing namespaces that belong to lab `lab` (underlay, hosts, physical
/// network, upstream router, internet).
pub fn lab_namespaces(lab: &str) -> Vec<String> {
    let prefix = format!("vl-{lab}-");
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(&prefix).is_some_and(|rest| {
                matches!(rest, "ul" | "phys" | "upstream" | "internet") || is_host_suffix(rest)
            })
        })
        .collect();
    names.sort();
    names
}

fn is_host_suffix(rest: &str) -> bool {
    rest.strip_prefix('h')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates the underlay namespace with its bridge and `hosts` host namespaces.
pub fn create(lab: &str, hosts: usize) -> Result<(), NetError> {
    let ul = underlay_ns(lab);
    let bridge_addr = format!("{UNDERLAY_ADDR}/{PREFIX}");
    add_netns(&ul)?;
    ip(&["-n", &ul, "link", "set", "lo", "up"])?;
    ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &ul, "addr", "add", &bridge_addr, "dev", "br0"])?;
    ip(&["-n", &ul, "link", "set", "br0", "up"])?;
    for i in 1..=hosts {
        let ns = host_ns(lab, i);
        let peer = format!("h{i}");
        let addr = format!("{}/{PREFIX}", host_addr(i));
        add_netns(&ns)?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
            &ul,
        ])?;
        ip(&["-n", &ul, "link", "set", &peer, "master", "br0"])?;
        ip(&["-n", &ul, "link", "set", &peer, "up"])?;
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    }
    create_phys(lab, hosts)
}

/// Creates the physical-network namespace: its bridge, each host's trunk and the top-of-rack
/// switch's trunk.
fn create_phys(lab: &str, hosts: usize) -> Result<(), NetError> {
    let phys = phys_ns(lab);
    add_netns(&phys)?;
    ip(&["-n", &phys, "link", "set", "lo", "up"])?;
    // VLAN filtering is off by default (and not built into every kernel).
    ip(&["-n", &phys, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &phys, "link", "set", "br0", "up"])?;
    let mut ends: Vec<(String, String, String)> = (1..=hosts)
        .map(|i| (host_ns(lab, i), TRUNK_INTERFACE.to_string(), trunk_port(i)))
        .collect();
    ends.push((phys.clone(), TOR_TRUNK_INTERFACE.into(), "tor".into()));
    for (ns, inside, port) in &ends {
        ip(&[
            "link", "add", inside, "netns", ns, "type", "veth", "peer", "name", port, "netns",
            &phys,
        ])?;
        ip(&["-n", &phys, "link", "set", port, "master", "br0"])?;
        ip(&["-n", &phys, "link", "set", port, "up"])?;
        ip(&["-n", ns, "link", "set", inside, "up"])?;
    }
    Ok(())
}

/// Gives the endpoint interface `dev` of the physical-network namespace the address `cidr`
/// (`10.81.0.1/24`) and brings it up.
pub fn set_phys_address(lab: &str, dev: &str, cidr: &str) -> Result<(), NetError> {
    let phys = phys_ns(lab);
    ip(&["-n", &phys, "addr", "add", cidr, "dev", dev])?;
    ip(&["-n", &phys, "link", "set", dev, "up"])
}

/// Deletes every namespace of lab `lab` (the veth pairs and the bridge go with them).
/// Returns the first error but tries every namespace.
pub fn destroy(lab: &str) -> Result<(), NetError> {
    let mut first = None;
    for ns in lab_namespaces(lab) {
        if let Err(e) = ip(&["netns", "del", &ns]) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(underlay_ns("lab"), "vl-lab-ul");
        assert_eq!(host_ns("lab", 2), "vl-lab-h2");
        assert_eq!(phys_ns("lab"), "vl-lab-phys");
        assert_eq!(upstream_ns("lab"), "vl-lab-upstream");
        assert_eq!(internet_ns("lab"), "vl-lab-internet");
        assert_eq!(trunk_port(3), "t3");
        assert_eq!(host_addr(1), Ipv4Addr::new(10, 77, 0, 11));
        assert!(is_host_suffix("h12"));
        assert!(!is_host_suffix("h"));
        assert!(!is_host_suffix("hx"));
    }
}
