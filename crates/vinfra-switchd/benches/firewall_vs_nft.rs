//! vinfra's distributed firewall against nftables in the kernel, between the same two
//! network-namespace endpoints, in the same run.
//!
//! Paths (the topologies of the `throughput` bench, `endpoints` module): vinfra switch with two
//! tap host ports, the firewall on the server's (receiving) port; a Linux bridge with two veths
//! in its own namespace, `br_netfilter` on (`net.bridge.bridge-nf-call-iptables=1` in that
//! namespace) so bridged IPv4 goes through the `inet` family's forward hook and the kernel's
//! conntrack, and an nftables table there: `ct state established,related accept`, `ct state
//! invalid drop`, then packets to the server jump to a chain of the same rules, ending in
//! `drop` (ingress default deny; the server's own traffic out is accepted, as vinfra's egress
//! default). The kernel has no conntrack in the `bridge` family here (`nf_conntrack_bridge` is
//! not built), hence `br_netfilter`.
//!
//! Rule sets: N rules that match none of the test traffic, then one allow rule that does (any
//! protocol from the client's /32), last, so a linear scan passes all of them first. The N
//! rules (by tenths) are TCP to one port from a /32, UDP to a range of 100 ports from a /24, TCP
//! to 8000-8999 from a /20, TCP from a /16, and any protocol from a /28, /20, /32, /26, /30 or
//! /24, all in 172.16.0.0/12: the tuple-space classifier faces ten masks. nftables gets them
//! as one rule each, in the same order (a linear chain). The mix keeps the
//! `set_port_firewall` request for 10,001 rules under the control socket's 1 MiB line (102 bytes
//! a rule; 10,000 rules of a protocol, ports and a prefix each, 121-126 bytes, do not fit).
//!
//! Cases: the firewall off (no rules, no conntrack; the bridge without `br_netfilter`), then
//! conntrack on with 0, 100 and 10,000 rules besides the allow rule. Each case, each round:
//! iperf3 TCP and 64-byte UDP packets per second (the `throughput` bench's `sendmmsg` generator),
//! both paths. Then new connections per second, the firewall off and through conntrack with 0
//! and 10,000 rules: 8 client threads each connect, send 64 bytes, read the 64-byte answer and
//! the server's close, close, again, for 4 s; the connection tables are emptied before each
//! measure and their size and states read after (the server closes first, so the closing
//! connections wait in TIME_WAIT on both sides and in both tables).
//!
//! Targets (issue 11): 10,000 rules cost at most 10 % of vinfra's own throughput and packet
//! rate with 0 rules (`RESULT … >= 0.90`); new connections per second at least the kernel's
//! (`>= 1.00`). The other ratios against nftables are recorded.
//!
//! Root only; needs `iperf3`, `ping`, `nft` (nftables), `conntrack` (conntrack-tools).
//! Namespaces are named `swb-…` and deleted at the end; addresses are 10.86–10.87.x.
//!
//!     cargo bench -p vinfra-switchd --bench firewall_vs_nft [-- [SECONDS [ROUNDS]]]
//!
//! (4 s of iperf3 and 5 rounds by default; paths alternate which goes first.)

#[path = "../tests/common/mod.rs"]
mod common;
mod endpoints;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use endpoints::{
    bridge_path, iperf_gbits, load, median, udp_mpps, BridgePath, Pair, SwitchPath, SERVER_PORT,
};
use vinfra_switch_control::{
    ActionSpec, DirectionSpec, FirewallRuleSpec, PrefixSpec, Request, TcpStateSpec,
};

/// The rule counts besides the allow rule.
const RULE_COUNTS: [usize; 3] = [0, 100, 10_000];
/// The new-connections measure's cases.
const CPS_CASES: [Case; 3] = [Case::Off, Case::Rules(0), Case::Rules(10_000)];
/// The new-connections measure's server port.
const CPS_PORT: u16 = 7001;
/// Client threads of the new-connections measure.
const CPS_CLIENTS: usize = 8;
/// Server threads of the new-connections measure.
const CPS_SERVERS: usize = 4;
/// Bytes each way of a short connection.
const CPS_BYTES: usize = 64;
/// Seconds of a new-connections measure.
const CPS_SECONDS: f64 = 4.0;
/// Seconds of a 64-byte UDP measure.
const UDP_SECONDS: f64 = 3.0;

/// A rule as both peers take it (ingress, allow).
#[derive(Clone, Copy)]
struct Rule {
    protocol: Option<u8>,
    ports: Option<(u16, u16)>,
    remote: Ipv4Addr,
    prefix_len: u8,
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// `n` rules that match nothing the client sends, then the allow rule (any protocol from
/// `client`/32).
fn rule_set(n: usize, client: Ipv4Addr) -> Vec<Rule> {
    let mut rules: Vec<Rule> = (0..n)
        .map(|i| {
            let port = 1024 + (i * 7 % 60_000) as u16;
            // Rules of a protocol and ports are 121-126 bytes on the control socket, from a
            // prefix only 88: the mix must stay under its 1 MiB line.
            let (protocol, ports, prefix_len) = match i % 10 {
                0 => (Some(TCP), Some((port, port)), 32),
                1 => (Some(UDP), Some((port, port + 99)), 24),
                2 => (Some(TCP), Some((8000, 8999)), 20),
                3 => (Some(TCP), None, 16),
                4 => (None, None, 28),
                5 => (None, None, 20),
                6 => (None, None, 32),
                7 => (None, None, 26),
                8 => (None, None, 30),
                _ => (None, None, 24),
            };
            // Spread over 172.16.0.0/12, never the endpoints' 10.0.0.0/8.
            let host = (i as u32).wrapping_mul(2_654_435_761) & 0x000f_ffff;
            let mask = u32::MAX << (32 - prefix_len);
            Rule {
                protocol,
                ports,
                remote: Ipv4Addr::from((0xac10_0000 | host) & mask),
                prefix_len,
            }
        })
        .collect();
    rules.push(Rule {
        protocol: None,
        ports: None,
        remote: client,
        prefix_len: 32,
    });
    rules
}

impl Rule {
    fn spec(&self) -> FirewallRuleSpec {
        FirewallRuleSpec {
            direction: DirectionSpec::Ingress,
            protocol: self.protocol,
            ports: self.ports,
            remote: vec![PrefixSpec {
                ip: self.remote,
                prefix_len: self.prefix_len,
            }],
            action: ActionSpec::Allow,
        }
    }

    /// The rule as an nftables rule of the server's chain.
    fn nft(&self) -> String {
        let mut r = format!("ip saddr {}/{}", self.remote, self.prefix_len);
        let name = |p| match p {
            TCP => "tcp".to_string(),
            UDP => "udp".to_string(),
            p => p.to_string(),
        };
        match (self.protocol, self.ports) {
            (Some(p), Some((a, b))) if a == b => r += &format!(" {} dport {a}", name(p)),
            (Some(p), Some((a, b))) => r += &format!(" {} dport {a}-{b}", name(p)),
            (Some(p), None) => r += &format!(" meta l4proto {}", name(p)),
            (None, _) => {}
        }
        r + " accept"
    }
}

/// What a case sets on both paths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Case {
    /// No firewall, no conntrack.
    Off,
    /// Conntrack on, this many rules besides the allow rule.
    Rules(usize),
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Off => "firewall off".into(),
            Case::Rules(0) => "allow rule only".into(),
            Case::Rules(n) => format!("{n} rules + allow"),
        }
    }
}

/// The connection table after a new-connections measure.
#[derive(Default, Debug)]
struct Table {
    /// Connections in it.
    entries: u64,
    /// By state (TCP state name, or the protocol).
    states: BTreeMap<String, u64>,
    /// Connections it refused or dropped for want of room.
    refused: u64,
}

/// One side of the comparison.
trait Peer {
    fn label(&self) -> &'static str;
    fn pair(&self) -> &Pair;
    /// Sets the case: `None` for no firewall.
    fn set(&mut self, rules: Option<&[Rule]>);
    /// Empties the connection table.
    fn flush(&mut self, rules: &[Rule]);
    fn table(&mut self) -> Table;
}

struct Vinfra(SwitchPath);

impl Peer for Vinfra {
    fn label(&self) -> &'static str {
        "vinfra"
    }

    fn pair(&self) -> &Pair {
        &self.0.pair
    }

    fn set(&mut self, rules: Option<&[Rule]>) {
        let request = Request::SetPortFirewall {
            port: SERVER_PORT,
            rules: rules.map(|r| r.iter().map(Rule::spec).collect()),
        };
        let line = vinfra_switch_control::client::json(&request).len() as u64;
        assert!(
            line <= vinfra_switch_control::server::MAX_LINE,
            "set_port_firewall with {} rules is {line} bytes, over the control socket's line \
             limit",
            rules.map_or(0, |r| r.len())
        );
        self.0
            .control
            .apply(&[request])
            .expect("set the server port's firewall");
    }

    fn flush(&mut self, rules: &[Rule]) {
        // A port's connections go with its firewall.
        self.set(None);
        self.set(Some(rules));
    }

    fn table(&mut self) -> Table {
        let c = self.0.control.counters().expect("counters");
        let ct = c.conntrack.unwrap_or_default();
        let mut states = BTreeMap::new();
        let entries = self
            .0
            .control
            .export_connections(SERVER_PORT)
            .expect("export connections");
        for e in &entries {
            let state = match e.tcp_state {
                Some(s) => tcp_state_name(s).to_string(),
                None => format!("protocol {}", e.original.protocol),
            };
            *states.entry(state).or_default() += 1;
        }
        Table {
            entries: ct.entries,
            states,
            refused: ct.refused,
        }
    }
}

/// The kernel's name of a TCP state, as `conntrack -L` prints it.
fn tcp_state_name(s: TcpStateSpec) -> &'static str {
    match s {
        TcpStateSpec::SynSent | TcpStateSpec::SynSent2 => "SYN_SENT",
        TcpStateSpec::SynRecv => "SYN_RECV",
        TcpStateSpec::Established => "ESTABLISHED",
        TcpStateSpec::FinWait => "FIN_WAIT",
        TcpStateSpec::CloseWait => "CLOSE_WAIT",
        TcpStateSpec::LastAck => "LAST_ACK",
        TcpStateSpec::TimeWait => "TIME_WAIT",
        TcpStateSpec::Close => "CLOSE",
    }
}

struct Kernel {
    path: BridgePath,
    ruleset: tempfile::NamedTempFile,
    server_ip: &'static str,
}

impl Peer for Kernel {
    fn label(&self) -> &'static str {
        "nftables"
    }

    fn pair(&self) -> &Pair {
        &self.path.pair
    }

    fn set(&mut self, rules: Option<&[Rule]>) {
        let ns = &self.path.ns;
        ns.exec(&["nft", "flush", "ruleset"]);
        let Some(rules) = rules else {
            ns.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
            return;
        };
        let mut text = format!(
            "table inet vinfra_bench {{\n\
             \tchain forward_filter {{\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             \t\tct state established,related accept\n\
             \t\tct state invalid drop\n\
             \t\tip daddr {} jump server_ingress\n\
             \t}}\n\
             \tchain server_ingress {{\n",
            self.server_ip
        );
        for r in rules {
            text += "\t\t";
            text += &r.nft();
            text += "\n";
        }
        text += "\t\tdrop\n\t}\n}\n";
        std::fs::write(self.ruleset.path(), text).expect("write the ruleset");
        let file = self.ruleset.path().to_string_lossy().into_owned();
        ns.exec(&["nft", "-f", &file]);
        ns.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    }

    fn flush(&mut self, _rules: &[Rule]) {
        // `conntrack -F` says how many it deleted on stderr; no failure when none.
        let _ = self.path.ns.try_exec(&["conntrack", "-F"]);
    }

    fn table(&mut self) -> Table {
        let ns = &self.path.ns;
        let list = ns.exec(&["cat", "/proc/net/nf_conntrack"]);
        let mut t = Table::default();
        for line in list.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            // "ipv4 2 tcp 6 119 TIME_WAIT src=…" / "ipv4 2 udp 17 29 src=…"
            let state = match f.get(2) {
                Some(&"tcp") => f.get(5).map_or("?".into(), |s| s.to_string()),
                Some(p) => format!("protocol {}", f.get(3).unwrap_or(p)),
                None => continue,
            };
            *t.states.entry(state).or_default() += 1;
            t.entries += 1;
        }
        // "cpu=0 found=0 invalid=3 insert=0 insert_failed=0 drop=0 early_drop=0 …"
        let stats = ns.exec(&["conntrack", "-S"]);
        for w in stats.split_whitespace() {
            if let Some((k, v)) = w.split_once('=') {
                if matches!(k, "insert_failed" | "drop" | "early_drop") {
                    t.refused += v.parse::<u64>().unwrap_or(0);
                }
            }
        }
        t
    }
}

/// Samples of one case on one path.
#[derive(Default)]
struct Samples {
    tcp: Vec<f64>,
    retransmits: Vec<u64>,
    tx_mpps: Vec<f64>,
    mpps: Vec<f64>,
    cps: Vec<f64>,
    cps_errors: Vec<u64>,
    tables: Vec<(u64, Table)>,
}

/// A listener in the server namespace answering short connections until dropped.
struct ShortServer {
    addr: SocketAddr,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ShortServer {
    fn start(pair: &Pair) -> ShortServer {
        let ip: Ipv4Addr = pair.server_ip.parse().expect("server address");
        let listener = pair
            .server
            .run(move || TcpListener::bind((ip, CPS_PORT)).expect("listen"));
        let addr = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..CPS_SERVERS)
            .map(|_| {
                let l = listener.try_clone().expect("listener");
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok((mut s, _)) = l.accept() else {
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                        let mut buf = [0u8; CPS_BYTES];
                        if s.read_exact(&mut buf).is_ok() {
                            let _ = s.write_all(&buf);
                        }
                        // Dropped: the server closes first.
                    }
                })
            })
            .collect();
        ShortServer {
            addr,
            listener,
            stop,
            threads,
        }
    }
}

impl Drop for ShortServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the threads blocked in accept.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Short connections from the client namespace to `server` for `seconds`: (completed per
/// second, completed, failed).
fn connections_per_second(pair: &Pair, server: SocketAddr, seconds: f64) -> (f64, u64, u64) {
    let ns = PathBuf::from(format!("/run/netns/{}", pair.client.name));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let clients: Vec<_> = (0..CPS_CLIENTS)
        .map(|_| {
            let (ns, done, failed) = (ns.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                endpoints::enter(&ns);
                let mut buf = [0x5au8; CPS_BYTES];
                while start.elapsed() < limit {
                    let ok = (|| -> std::io::Result<bool> {
                        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
                        s.set_read_timeout(Some(Duration::from_secs(3)))?;
                        s.write_all(&buf)?;
                        let mut got = 0;
                        loop {
                            match s.read(&mut buf[got..])? {
                                0 => return Ok(got == CPS_BYTES),
                                n => got += n,
                            }
                            if got == CPS_BYTES {
                                // The server's close.
                                let mut end = [0u8; 1];
                                return Ok(s.read(&mut end)? == 0);
                            }
                        }
                    })()
                    .unwrap_or(false);
                    let counter = if ok { &done } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let secs = start.elapsed().as_secs_f64();
    let done = done.load(Ordering::Relaxed);
    (done as f64 / secs, done, failed.load(Ordering::Relaxed))
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut nums = args.iter().filter_map(|a| a.parse::<u32>().ok());
    let seconds = nums.next().unwrap_or(4);
    let rounds = nums.next().unwrap_or(5).max(1);

    if !common::needs()
        .program("iperf3")
        .program("nft")
        .program("conntrack")
        .met()
    {
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let client_a: Ipv4Addr = "10.86.0.1".parse().expect("ip");
    let client_b: Ipv4Addr = "10.87.0.1".parse().expect("ip");
    let mut vinfra = Vinfra(endpoints::switch_path(dir.path(), "10.86.0.1", "10.86.0.2"));
    let mut kernel = Kernel {
        path: bridge_path("10.87.0.1", "10.87.0.2"),
        ruleset: tempfile::NamedTempFile::new().expect("ruleset file"),
        server_ip: "10.87.0.2",
    };
    for ns in [&vinfra.0.pair.client, &kernel.path.pair.client] {
        // The clients' ports: the whole range, for many short connections.
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"]);
    }
    let client_of = |peer: usize| if peer == 0 { client_a } else { client_b };

    let cases: Vec<Case> = std::iter::once(Case::Off)
        .chain(RULE_COUNTS.iter().map(|&n| Case::Rules(n)))
        .collect();
    for n in RULE_COUNTS {
        let request = Request::SetPortFirewall {
            port: SERVER_PORT,
            rules: Some(rule_set(n, client_a).iter().map(Rule::spec).collect()),
        };
        println!(
            "set_port_firewall with {} rules: {} bytes (line limit {})",
            n + 1,
            vinfra_switch_control::client::json(&request).len(),
            vinfra_switch_control::server::MAX_LINE
        );
    }
    let mut samples: BTreeMap<(Case, usize), Samples> = BTreeMap::new();
    let mut cps: BTreeMap<(Case, usize), Samples> = BTreeMap::new();
    println!(
        "rounds {rounds}, iperf3 {seconds} s, 64-byte UDP {UDP_SECONDS} s, connections {CPS_SECONDS} s \
         ({CPS_CLIENTS} clients), load at start {}",
        load()
    );

    for round in 1..=rounds {
        for &case in &cases {
            let sets: Vec<Option<Vec<Rule>>> = (0..2)
                .map(|p| match case {
                    Case::Off => None,
                    Case::Rules(n) => Some(rule_set(n, client_of(p))),
                })
                .collect();
            // Alternate which path goes first.
            let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
            for p in order {
                let peer: &mut dyn Peer = if p == 0 { &mut vinfra } else { &mut kernel };
                let t = Instant::now();
                peer.set(sets[p].as_deref());
                let set_ms = t.elapsed().as_secs_f64() * 1e3;
                endpoints::ready(peer.pair(), peer.label());
                let (tcp, retrans) = iperf_gbits(peer.pair(), seconds);
                let (tx, rx) = udp_mpps(peer.pair(), UDP_SECONDS);
                eprintln!(
                    "round {round} {:<20} {:<8} TCP {tcp:.2} Gbit/s ({retrans} retransmits), \
                     UDP tx {tx:.3} rx {rx:.3} Mpps (rules set in {set_ms:.0} ms, load {})",
                    case.label(),
                    peer.label(),
                    load()
                );
                let s = samples.entry((case, p)).or_default();
                s.tcp.push(tcp);
                s.retransmits.push(retrans);
                s.tx_mpps.push(tx);
                s.mpps.push(rx);
            }
        }
        for case in CPS_CASES {
            let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
            for p in order {
                let rules = match case {
                    Case::Off => None,
                    Case::Rules(n) => Some(rule_set(n, client_of(p))),
                };
                let peer: &mut dyn Peer = if p == 0 { &mut vinfra } else { &mut kernel };
                peer.set(rules.as_deref());
                if let Some(rules) = &rules {
                    peer.flush(rules);
                }
                let server = ShortServer::start(peer.pair());
                let (rate, made, failed) =
                    connections_per_second(peer.pair(), server.addr, CPS_SECONDS);
                drop(server);
                let s = cps.entry((case, p)).or_default();
                s.cps.push(rate);
                s.cps_errors.push(failed);
                let mut line = format!(
                    "round {round} connections {:<20} {:<8} {rate:.0}/s, {failed} failed",
                    case.label(),
                    peer.label()
                );
                if rules.is_some() {
                    let t = peer.table();
                    line += &format!(
                        "; table {} entries {:?}, refused {}",
                        t.entries, t.states, t.refused
                    );
                    s.tables.push((made, t));
                }
                eprintln!("{line} (load {})", load());
            }
        }
    }

    // ---- Report ------------------------------------------------------------------------------
    println!();
    println!(
        "== firewall on the receiving port, medians of {rounds} rounds (load {}): vinfra switch \
         (taps) vs Linux bridge + br_netfilter + nftables inet (veths)",
        load()
    );
    println!(
        "  {:<20} {:>11} {:>11} {:>6} {:>12} {:>12} {:>6}",
        "case", "vinfra Gb/s", "nft Gb/s", "ratio", "vinfra Mpps", "nft Mpps", "ratio"
    );
    let row = |case: Case, p: usize| {
        let s = &samples[&(case, p)];
        (median(s.tcp.clone()), median(s.mpps.clone()))
    };
    for &case in &cases {
        let (vt, vp) = row(case, 0);
        let (kt, kp) = row(case, 1);
        println!(
            "  {:<20} {vt:>11.2} {kt:>11.2} {:>5.2}x {vp:>12.3} {kp:>12.3} {:>5.2}x",
            case.label(),
            ratio(vt, kt),
            ratio(vp, kp)
        );
    }
    for &case in &cases {
        for p in 0..2 {
            let s = &samples[&(case, p)];
            println!(
                "  {:<20} {:<8} rounds: TCP {:?} (retransmits {:?}), UDP rx {:?} of tx {:?}",
                case.label(),
                ["vinfra", "nftables"][p],
                s.tcp
                    .iter()
                    .map(|x| (x * 100.0).round() / 100.0)
                    .collect::<Vec<_>>(),
                s.retransmits,
                s.mpps
                    .iter()
                    .map(|x| (x * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>(),
                s.tx_mpps
                    .iter()
                    .map(|x| (x * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>(),
            );
        }
    }

    println!("== new connections per second (connect, {CPS_BYTES} bytes each way, server closes)");
    for case in CPS_CASES {
        let v = &cps[&(case, 0)];
        let k = &cps[&(case, 1)];
        let (vr, kr) = (median(v.cps.clone()), median(k.cps.clone()));
        println!(
            "  {:<20} vinfra {vr:.0}/s (rounds {:?}, failed {:?}), nftables {kr:.0}/s (rounds {:?}, \
             failed {:?}): {:.2}x",
            case.label(),
            v.cps.iter().map(|x| x.round()).collect::<Vec<_>>(),
            v.cps_errors,
            k.cps.iter().map(|x| x.round()).collect::<Vec<_>>(),
            k.cps_errors,
            ratio(vr, kr)
        );
        for (p, s) in [(0, v), (1, k)] {
            for (made, t) in &s.tables {
                println!(
                    "    {:<8} after {made} connections: table {} entries {:?}, refused {}",
                    ["vinfra", "nftables"][p],
                    t.entries,
                    t.states,
                    t.refused
                );
            }
        }
    }

    // A leak shows as entries left after the port's firewall goes.
    vinfra.set(None);
    let after = vinfra.0.control.counters().expect("counters");
    let ct = after.conntrack.unwrap_or_default();
    println!(
        "vinfra conntrack after the firewall is removed: {} entries; created {}, expired {}, \
         evicted {}, removed {}, refused {}, invalid {:?}",
        ct.entries, ct.created, ct.expired, ct.evicted, ct.removed, ct.refused, ct.invalid
    );

    // ---- Results -----------------------------------------------------------------------------
    // Each round's own ratios (the two measures about 40 s apart), to show the spread.
    let per_round = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x / y * 100.0).round() / 100.0)
            .collect()
    };
    let (zero, ten) = (
        &samples[&(Case::Rules(0), 0)],
        &samples[&(Case::Rules(10_000), 0)],
    );
    println!(
        "vinfra 10000 rules/0 rules by round: TCP {:?}, pps {:?}",
        per_round(&ten.tcp, &zero.tcp),
        per_round(&ten.mpps, &zero.mpps)
    );
    let (v, k) = (&cps[&(Case::Rules(0), 0)], &cps[&(Case::Rules(0), 1)]);
    println!(
        "conn/s vinfra/nftables allow rule only by round: {:?}",
        per_round(&v.cps, &k.cps)
    );
    let (v0t, v0p) = row(Case::Rules(0), 0);
    let (v10t, v10p) = row(Case::Rules(10_000), 0);
    for (what, r) in [("tcp", ratio(v10t, v0t)), ("pps", ratio(v10p, v0p))] {
        let verdict = if r >= 0.90 { "PASS" } else { "FAIL" };
        println!(
            "RESULT firewall_vs_nft {what} vinfra 10000 rules/0 rules {r:.2} target >= 0.90: {verdict}"
        );
    }
    let (k0t, k0p) = row(Case::Rules(0), 1);
    let (k10t, k10p) = row(Case::Rules(10_000), 1);
    println!(
        "RESULT firewall_vs_nft tcp nftables 10000 rules/0 rules {:.2} (recorded)",
        ratio(k10t, k0t)
    );
    println!(
        "RESULT firewall_vs_nft pps nftables 10000 rules/0 rules {:.2} (recorded)",
        ratio(k10p, k0p)
    );
    for &case in &cases {
        let (vt, vp) = row(case, 0);
        let (kt, kp) = row(case, 1);
        let label = case.label().replace(' ', "_");
        println!(
            "RESULT firewall_vs_nft tcp vinfra/nftables {label} {:.2} (recorded)",
            ratio(vt, kt)
        );
        println!(
            "RESULT firewall_vs_nft pps vinfra/nftables {label} {:.2} (recorded)",
            ratio(vp, kp)
        );
    }
    for case in CPS_CASES {
        let r = ratio(
            median(cps[&(case, 0)].cps.clone()),
            median(cps[&(case, 1)].cps.clone()),
        );
        let label = case.label().replace(' ', "_");
        if case == Case::Rules(0) {
            let verdict = if r >= 1.0 { "PASS" } else { "FAIL" };
            println!(
                "RESULT firewall_vs_nft conn/s vinfra/nftables {label} {r:.2} target >= 1.00: {verdict}"
            );
        } else {
            println!("RESULT firewall_vs_nft conn/s vinfra/nftables {label} {r:.2} (recorded)");
        }
    }
    // The table: nothing refused, no more entries than connections made (closing ones wait
    // their TIME_WAIT), none left once the firewall goes.
    let tables: Vec<&(u64, Table)> = CPS_CASES
        .iter()
        .flat_map(|case| &cps[&(*case, 0)].tables)
        .collect();
    let refused: u64 = tables.iter().map(|(_, t)| t.refused).max().unwrap_or(0);
    let over = tables
        .iter()
        .filter(|(made, t)| t.entries > made + 2 * CPS_CLIENTS as u64 + 8)
        .count();
    let ok = refused == 0 && over == 0 && ct.entries == 0;
    println!(
        "RESULT firewall_vs_nft vinfra conntrack table: refused {refused}, rounds with more \
         entries than connections {over}, entries left {}: {}",
        ct.entries,
        if ok { "PASS" } else { "FAIL" }
    );
}
