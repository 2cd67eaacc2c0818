//! The lab's upstream router and the "internet" behind it: where a data centre's external VLAN
//! leads. Nothing of it leaves the machine.
//!
//! [`crate::Lab::add_upstream`] builds, for VLAN `vid` of the physical network:
//! - a namespace `vl-<lab>-upstream`, the upstream router. Its interface `ext0` is an access
//!   port of the top-of-rack switch on VLAN `vid`: the switch creates the tap in the
//!   physical-network namespace, and the lab moves it here (`ip link set ext0 netns …`); the
//!   switch keeps the tap's file descriptor, so frames go on flowing between the VLAN and this
//!   namespace. (The lab's kernel has no 802.1Q sub-interfaces, macvlan or VRF: the
//!   userspace switch is the only way onto a VLAN, as for [`crate::Lab::add_vlan_endpoint`].)
//!   `ext0` has the router's external address (`10.82.0.254/24`); `inet0`, one end of a veth
//!   pair, the router's address towards the internet (`10.250.0.1/24`). IPv4 forwarding is
//!   on. The router has routes to those two subnets only, and to what [`add_route`] adds: no
//!   default route.
//! - a namespace `vl-<lab>-internet`, the "internet": `eth0`, the veth's other end, with the
//!   address beside the router's ([`IfaceAddr::peer`], `10.250.0.2/24`) and a default route via
//!   the router. It runs the internet service ([`SERVICE_PORT`], a `socat` started as a lab
//!   process, pidfile `<root>/upstream/service.pid`, log `service.log` beside it): a line
//!   `probe` gets the answer `pong <the client's address as the service sees it>` (so a test
//!   sees the address a SNAT gave its connection), any other line comes back as it is (echo).
//!
//! Addresses on the external subnet (a SNAT address, floating IPs) need no route on the
//! router: it reaches them by ARP on the VLAN, as any neighbour, and whoever holds them
//! answers. A range outside the external subnet needs a route to a next hop on it:
//! [`add_route`].

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::net::{self, NetError};
use crate::process::{self, ProcessError};

/// TCP port of the internet service.
pub const SERVICE_PORT: u16 = 7777;
/// The top-of-rack switch's port number of the upstream router's access port.
pub const TOR_PORT: u32 = 20_000;
// None of the VLAN endpoints' access ports (10000 + VLAN ID, `crate::tor_access_port`).
const _: () = assert!(TOR_PORT > 10_000 + 4094);
/// The upstream router's interface on the external VLAN (a tap of the top-of-rack switch).
pub const EXTERNAL_INTERFACE: &str = "ext0";
/// The upstream router's interface towards the internet (a veth).
pub const INTERNET_LINK: &str = "inet0";
/// The internet's interface (the veth's other end).
pub const INTERNET_INTERFACE: &str = "eth0";
/// Shortest prefix of the external and internet subnets.
pub const MIN_PREFIX: u8 = 8;
/// Longest prefix of the external and internet subnets (two host addresses).
pub const MAX_PREFIX: u8 = 30;

/// How long the internet service may take to answer its first probe.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a probe waits to connect, and then for the answer.
const PROBE_TIMEOUT_SECS: u32 = 5;

/// What the internet service runs for each connection (`sh -c`, with the client's address in
/// `SOCAT_PEERADDR`). No `,`, `:` or `!!`: socat would read them as its own syntax.
const SERVICE_SCRIPT: &str = "while read -r line; do if [ \"$line\" = probe ]; then \
                              echo \"pong $SOCAT_PEERADDR\"; else echo \"$line\"; fi; done";

/// Why the upstream router or its internet could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The VLAN ID is outside 1 to 4094.
    #[error("bad upstream router: VLAN ID {0} is not between 1 and 4094")]
    Vlan(u16),
    /// An address is not `A.B.C.D/P` with a usable host address.
    #[error(
        "bad upstream router: {what} '{value}' is not an IPv4 host address/prefix \
         (prefix {MIN_PREFIX} to {MAX_PREFIX}, neither the network nor the broadcast address)"
    )]
    Address {
        /// Which address (`external address`, `internet address`).
        what: &'static str,
        /// What was given.
        value: String,
    },
    /// The external and internet subnets overlap.
    #[error(
        "bad upstream router: the external subnet of {external} and the internet subnet of \
         {internet} overlap"
    )]
    Overlap {
        /// The external address.
        external: String,
        /// The internet address.
        internet: String,
    },
    /// The lab has its upstream router already.
    #[error("the lab has an upstream router already")]
    Taken,
    /// The lab has no upstream router.
    #[error("the lab has no upstream router (Lab::add_upstream; `vinfra lab up` adds one)")]
    Missing,
    /// A route's destination is not a subnet the router may be given.
    #[error("bad upstream route: '{0}' is not A.B.C.D/P (P from 1 to 32, no host bits set)")]
    Destination(String),
    /// A route's next hop is not on the external subnet.
    #[error("bad upstream route: next hop {via} is not a host of the external subnet {external}")]
    Via {
        /// The next hop.
        via: Ipv4Addr,
        /// The router's external address.
        external: String,
    },
    /// The namespaces or their interfaces could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The internet service could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The internet service's directory could not be created.
    #[error("cannot create {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The internet service exited.
    #[error("the internet service exited; its log: {log}")]
    ServiceExited {
        /// Its log file.
        log: PathBuf,
    },
    /// A command could not be run in a namespace.
    #[error("cannot run '{command}' in namespace {namespace}")]
    Exec {
        /// The namespace.
        namespace: String,
        /// The command, words joined by spaces.
        command: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A probe of the internet service got no `pong`.
    #[error("no pong from {addr}:{port} (probe from {namespace}): {output}")]
    Probe {
        /// The namespace the probe ran in.
        namespace: String,
        /// The service's address.
        addr: Ipv4Addr,
        /// Its port.
        port: u16,
        /// What the probe printed (stdout, then stderr), on one line.
        output: String,
    },
}

/// An interface address: a host address and the prefix length of its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceAddr {
    /// The address.
    pub ip: Ipv4Addr,
    /// The prefix length of its subnet ([`MIN_PREFIX`] to [`MAX_PREFIX`]).
    pub prefix: u8,
}

impl IfaceAddr {
    /// Parses `A.B.C.D/P` (`10.82.0.254/24`); `what` names it in the error.
    pub fn parse(value: &str, what: &'static str) -> Result<IfaceAddr, UpstreamError> {
        let bad = || UpstreamError::Address {
            what,
            value: value.to_string(),
        };
        let (ip, prefix) = value.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(bad());
        }
        let a = IfaceAddr { ip, prefix };
        if ip == a.network() || ip == a.broadcast() {
            return Err(bad());
        }
        Ok(a)
    }

    fn mask(&self) -> u32 {
        // A prefix read from a hand-edited lab.json may be anything.
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0)
    }

    /// The subnet's network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) & self.mask())
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) | !self.mask())
    }

    /// True when `ip` is a host address of the subnet (neither its network nor its broadcast
    /// address).
    pub fn has_host(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
            && ip != self.network()
            && ip != self.broadcast()
    }

    /// True when the two subnets share an address.
    pub fn overlaps(&self, other: &IfaceAddr) -> bool {
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        u32::from(self.ip) & shorter.mask() == u32::from(other.ip) & shorter.mask()
    }

    /// The host address beside this one on the subnet: the next one, or the one before when
    /// this is the last host address. (A subnet of at most /30 has both.)
    pub fn peer(&self) -> Ipv4Addr {
        let next = Ipv4Addr::from(u32::from(self.ip).wrapping_add(1));
        if self.has_host(next) {
            next
        } else {
            Ipv4Addr::from(u32::from(self.ip).wrapping_sub(1))
        }
    }

    /// The same prefix with another address.
    pub fn with_ip(&self, ip: Ipv4Addr) -> IfaceAddr {
        IfaceAddr {
            ip,
            prefix: self.prefix,
        }
    }
}

impl std::fmt::Display for IfaceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// A route of the upstream router beyond its two subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRoute {
    /// The destination, `A.B.C.D/P` (a floating-IP range, say).
    pub destination: String,
    /// The next hop, a host of the external subnet.
    pub via: Ipv4Addr,
}

/// The lab's upstream router and its internet, as `lab.json` records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The router's namespace (`vl-<lab>-upstream`).
    pub namespace: String,
    /// The internet's namespace (`vl-<lab>-internet`).
    pub internet_namespace: String,
    /// The external VLAN, where the router's access port is.
    pub vlan_id: u16,
    /// The access port's number on the top-of-rack switch.
    pub tor_port: u32,
    /// The router's address on the external VLAN (on [`EXTERNAL_INTERFACE`]).
    pub external: IfaceAddr,
    /// The router's address towards the internet (on [`INTERNET_LINK`]).
    pub internet_gateway: IfaceAddr,
    /// The internet's address (on [`INTERNET_INTERFACE`] in its namespace).
    pub internet: IfaceAddr,
    /// The internet service's TCP port.
    pub service_port: u16,
    /// The internet service's pid when last started.
    pub service_pid: u32,
    /// Routes added with [`add_route`].
    #[serde(default)]
    pub routes: Vec<UpstreamRoute>,
}

impl Upstream {
    /// The upstream router of lab `lab` on VLAN `vlan_id`, with `external` (`10.82.0.254/24`)
    /// on the VLAN and `internet_gateway` (`10.250.0.1/24`) towards the internet; the internet
    /// takes the address beside the latter. Checks the values only.
    pub fn new(
        lab: &str,
        vlan_id: u16,
        external: &str,
        internet_gateway: &str,
    ) -> Result<Upstream, UpstreamError> {
        if !(1..=4094).contains(&vlan_id) {
            return Err(UpstreamError::Vlan(vlan_id));
        }
        let ext = IfaceAddr::parse(external, "external address")?;
        let gw = IfaceAddr::parse(internet_gateway, "internet address")?;
        if ext.overlaps(&gw) {
            return Err(UpstreamError::Overlap {
                external: external.to_string(),
                internet: internet_gateway.to_string(),
            });
        }
        Ok(Upstream {
            namespace: net::upstream_ns(lab),
            internet_namespace: net::internet_ns(lab),
            vlan_id,
            tor_port: TOR_PORT,
            external: ext,
            internet_gateway: gw,
            internet: gw.with_ip(gw.peer()),
            service_port: SERVICE_PORT,
            service_pid: 0,
            routes: Vec::new(),
        })
    }
}

/// The directory of the internet service's pidfile and log: `<root>/upstream`.
pub fn service_dir(root: &Path) -> PathBuf {
    root.join("upstream")
}

/// The internet service's pidfile under the lab's root.
pub fn service_pidfile(root: &Path) -> PathBuf {
    service_dir(root).join("service.pid")
}

/// Creates both namespaces, the veth between them, their addresses and routes, and turns on
/// forwarding in the router. [`attach_external`] adds the router's external interface.
pub fn create(u: &Upstream) -> Result<(), UpstreamError> {
    let (up, inet) = (u.namespace.as_str(), u.internet_namespace.as_str());
    for ns in [up, inet] {
        net::add_netns(ns)?;
        net::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    net::ip(&[
        "link",
        "add",
        INTERNET_LINK,
        "netns",
        up,
        "type",
        "veth",
        "peer",
        "name",
        INTERNET_INTERFACE,
        "netns",
        inet,
    ])?;
    let gw = u.internet_gateway.to_string();
    net::ip(&["-n", up, "addr", "add", &gw, "dev", INTERNET_LINK])?;
    net::ip(&["-n", up, "link", "set", INTERNET_LINK, "up"])?;
    let addr = u.internet.to_string();
    net::ip(&["-n", inet, "addr", "add", &addr, "dev", INTERNET_INTERFACE])?;
    net::ip(&["-n", inet, "link", "set", INTERNET_INTERFACE, "up"])?;
    let via = u.internet_gateway.ip.to_string();
    net::ip(&["-n", inet, "route", "add", "default", "via", &via])?;
    net::ip(&[
        "netns",
        "exec",
        up,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
    ])
    .map_err(UpstreamError::from)
}

/// Moves the router's access port (the tap [`EXTERNAL_INTERFACE`], which the top-of-rack switch
/// has just created in the physical-network namespace `phys`) into the router's namespace,
/// gives it the external address and brings it up.
pub fn attach_external(u: &Upstream, phys: &str) -> Result<(), UpstreamError> {
    let up = u.namespace.as_str();
    net::ip(&["-n", phys, "link", "set", EXTERNAL_INTERFACE, "netns", up])?;
    let ext = u.external.to_string();
    net::ip(&["-n", up, "addr", "add", &ext, "dev", EXTERNAL_INTERFACE])?;
    net::ip(&["-n", up, "link", "set", EXTERNAL_INTERFACE, "up"])?;
    Ok(())
}

/// Starts the internet service in the internet namespace (detached, pidfile and log in `dir`)
/// and waits until it answers a probe from the router; returns its pid.
pub fn start_service(u: &Upstream, dir: &Path) -> Result<u32, UpstreamError> {
    std::fs::create_dir_all(dir).map_err(|source| UpstreamError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let args: Vec<String> = vec![
        "netns".into(),
        "exec".into(),
        u.internet_namespace.clone(),
        "socat".into(),
        "-d".into(),
        "-d".into(),
        format!("TCP-LISTEN:{},reuseaddr,fork", u.service_port),
        format!("SYSTEM:{SERVICE_SCRIPT}"),
    ];
    let log = dir.join("service.log");
    let pid = process::spawn_detached(Path::new("ip"), &args, &log, &dir.join("service.pid"))?;
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        if !process::alive(pid) {
            return Err(UpstreamError::ServiceExited { log });
        }
        match probe(&u.namespace, u.internet.ip, u.service_port) {
            Ok(_) => return Ok(pid),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Adds a route to `destination` (`A.B.C.D/P`) via `via`, a host of the external subnet, to
/// the router, and records it in `u`.
pub fn add_route(u: &mut Upstream, destination: &str, via: Ipv4Addr) -> Result<(), UpstreamError> {
    let destination = route_destination(destination)?;
    if !u.external.has_host(via) || via == u.external.ip {
        return Err(UpstreamError::Via {
            via,
            external: u.external.to_string(),
        });
    }
    let hop = via.to_string();
    net::ip(&[
        "-n",
        &u.namespace,
        "route",
        "replace",
        &destination,
        "via",
        &hop,
        "dev",
        EXTERNAL_INTERFACE,
    ])?;
    u.routes.retain(|r| r.destination != destination);
    u.routes.push(UpstreamRoute { destination, via });
    Ok(())
}

/// `destination` as `ip route` takes it, when it is `A.B.C.D/P` with P from 1 to 32 and no
/// host bits set (a default route is refused: nothing leaves the lab).
fn route_destination(destination: &str) -> Result<String, UpstreamError> {
    let bad = || UpstreamError::Destination(destination.to_string());
    let (ip, prefix) = destination.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    if !(1..=32).contains(&prefix) {
        return Err(bad());
    }
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    if u32::from(ip) & !mask != 0 {
        return Err(bad());
    }
    Ok(format!("{ip}/{prefix}"))
}

/// Runs `args` (a program and its arguments) in namespace `namespace` (`ip netns exec`) and
/// returns its output.
pub fn exec(namespace: &str, args: &[&str]) -> Result<Output, UpstreamError> {
    Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| UpstreamError::Exec {
            namespace: namespace.to_string(),
            command: args.join(" "),
            source,
        })
}

/// Connects from namespace `namespace` to the internet service at `addr:port`, sends `probe`
/// and returns the address the service saw the connection come from (its answer `pong ADDR`).
pub fn probe(namespace: &str, addr: Ipv4Addr, port: u16) -> Result<Ipv4Addr, UpstreamError> {
    let target = format!("TCP:{addr}:{port},connect-timeout={PROBE_TIMEOUT_SECS}");
    let secs = PROBE_TIMEOUT_SECS.to_string();
    let words = [
        "netns", "exec", namespace, "socat", "-t", &secs, "-T", &secs, "-", &target,
    ];
    let failed = |source| UpstreamError::Exec {
        namespace: namespace.to_string(),
        command: format!("socat - {target}"),
        source,
    };
    let mut child = Command::new("ip")
        .args(words)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A connection refused closes the pipe early: the output tells.
        let _ = stdin.write_all(b"probe\n");
    }
    let out = child.wait_with_output().map_err(failed)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(seen) = pong_address(&stdout) {
        return Ok(seen);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(UpstreamError::Probe {
        namespace: namespace.to_string(),
        addr,
        port,
        output: format!("{} {}", stdout.trim(), stderr.trim())
            .trim()
            .replace('\n', " | "),
    })
}

/// The address of the first `pong ADDR` line of the service's answer.
fn pong_address(answer: &str) -> Option<Ipv4Addr> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("pong ")?.trim().parse().ok())
}

/// Kills every process in lab `lab`'s upstream and internet namespaces (the internet service
/// and whatever a test started there), at most 5 s each.
pub fn stop(lab: &str) -> Result<(), UpstreamError> {
    for ns in [net::upstream_ns(lab), net::internet_ns(lab)] {
        if !Path::new("/run/netns").join(&ns).exists() {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = net::pids(&ns)?;
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                process::signal(pid, Signal::SIGKILL)?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Stops what runs in lab `lab`'s upstream and internet namespaces and deletes them (after an
/// [`crate::Lab::add_upstream`] that failed half-way).
pub fn destroy(lab: &str) -> Result<(), UpstreamError> {
    stop(lab)?;
    for ns in [net::upstream_ns(lab), net::internet_ns(lab)] {
        if Path::new("/run/netns").join(&ns).exists() {
            net::ip(&["netns", "del", &ns])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_addresses() {
        let a = IfaceAddr::parse("10.82.0.254/24", "x").unwrap();
        assert_eq!(a.to_string(), "10.82.0.254/24");
        assert_eq!(a.network(), Ipv4Addr::new(10, 82, 0, 0));
        assert_eq!(a.broadcast(), Ipv4Addr::new(10, 82, 0, 255));
        // The last host address has its peer below.
        assert_eq!(a.peer(), Ipv4Addr::new(10, 82, 0, 253));
        let g = IfaceAddr::parse("10.250.0.1/24", "x").unwrap();
        assert_eq!(g.peer(), Ipv4Addr::new(10, 250, 0, 2));
        let p = IfaceAddr::parse("192.0.2.2/30", "x").unwrap();
        assert_eq!(p.peer(), Ipv4Addr::new(192, 0, 2, 1));
        assert!(a.has_host(Ipv4Addr::new(10, 82, 0, 10)));
        assert!(!a.has_host(Ipv4Addr::new(10, 82, 0, 255)));
        assert!(!a.has_host(Ipv4Addr::new(10, 82, 1, 10)));
        for bad in [
            "10.82.0.254",
            "10.82.0.0/24",
            "10.82.0.255/24",
            "10.82.0.1/31",
            "10.82.0.1/7",
            "10.82.0.1/+4",
            "10.82.0/24",
            "x/24",
            "10.82.0.1/024",
            "",
        ] {
            match IfaceAddr::parse(bad, "external address") {
                Err(UpstreamError::Address { what, value }) => {
                    assert_eq!((what, value.as_str()), ("external address", bad));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn overlapping_subnets() {
        let p = |s| IfaceAddr::parse(s, "x").unwrap();
        assert!(p("10.82.0.1/24").overlaps(&p("10.82.0.200/24")));
        assert!(p("10.0.0.1/8").overlaps(&p("10.250.0.1/24")));
        assert!(p("10.250.0.1/24").overlaps(&p("10.0.0.1/8")));
        assert!(!p("10.82.0.1/24").overlaps(&p("10.250.0.1/24")));
        assert!(!p("10.82.0.1/30").overlaps(&p("10.82.0.5/30")));
    }

    #[test]
    fn an_upstream_router_from_its_addresses() {
        let u = Upstream::new("lab", 200, "10.82.0.254/24", "10.250.0.1/24").unwrap();
        assert_eq!(u.namespace, "vl-lab-upstream");
        assert_eq!(u.internet_namespace, "vl-lab-internet");
        assert_eq!(u.internet.to_string(), "10.250.0.2/24");
        assert_eq!(u.internet_gateway.to_string(), "10.250.0.1/24");
        assert_eq!(
            (u.vlan_id, u.tor_port, u.service_port),
            (200, TOR_PORT, 7777)
        );
        let text = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<Upstream>(&text).unwrap(), u);

        assert!(matches!(
            Upstream::new("lab", 0, "10.82.0.254/24", "10.250.0.1/24"),
            Err(UpstreamError::Vlan(0))
        ));
        assert!(matches!(
            Upstream::new("lab", 4095, "10.82.0.254/24", "10.250.0.1/24"),
            Err(UpstreamError::Vlan(4095))
        ));
        assert!(matches!(
            Upstream::new("lab", 200, "10.82.0.254/24", "10.250.0.1"),
            Err(UpstreamError::Address {
                what: "internet address",
                ..
            })
        ));
        assert!(matches!(
            Upstream::new("lab", 200, "10.82.0.254/16", "10.82.200.1/24"),
            Err(UpstreamError::Overlap { .. })
        ));
    }

    #[test]
    fn route_destinations() {
        assert_eq!(
            route_destination("203.0.113.0/24").unwrap(),
            "203.0.113.0/24"
        );
        assert_eq!(route_destination("10.82.0.77/32").unwrap(), "10.82.0.77/32");
        assert_eq!(route_destination("128.0.0.0/1").unwrap(), "128.0.0.0/1");
        for bad in [
            "0.0.0.0/0",
            "203.0.113.1/24",
            "203.0.113.0",
            "203.0.113.0/33",
            "a/8",
        ] {
            assert!(
                matches!(route_destination(bad), Err(UpstreamError::Destination(d)) if d == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn pong_answers() {
        assert_eq!(
            pong_address("pong 10.82.0.1\n"),
            Some(Ipv4Addr::new(10, 82, 0, 1))
        );
        assert_eq!(
            pong_address("hello\npong 10.82.0.9\r\n"),
            Some(Ipv4Addr::new(10, 82, 0, 9))
        );
        assert_eq!(pong_address("pong\n"), None);
        assert_eq!(pong_address(""), None);
    }

    #[test]
    fn the_service_answers_probes_and_echoes() {
        // The service's script, as socat runs it for a connection.
        let out = Command::new("sh")
            .arg("-c")
            .arg(SERVICE_SCRIPT)
            .env("SOCAT_PEERADDR", "10.82.0.7")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(b"hello\nprobe\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello\npong 10.82.0.7\n"
        );
        for special in [",", ":", "!!"] {
            assert!(!SERVICE_SCRIPT.contains(special), "{special}");
        }
    }
}
