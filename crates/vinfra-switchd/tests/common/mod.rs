//! Test helpers: network namespaces, switch daemons, endpoints, raw frames.
#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vinfra_switch_control::{Attachment, Mac, NetworkSpec, PortSpec, Request, SwitchClient};

pub mod relay;

/// Runs a command; panics with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command; true when it succeeds.
pub fn try_sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A unique short name: "sw" + a per-process number + `tag` (at most 15 bytes for interfaces).
pub fn name(tag: &str) -> String {
    prefixed_name("sw-", tag)
}

/// A unique short name: `prefix` + a per-process number + `tag`.
pub fn prefixed_name(prefix: &str, tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}{tag}", std::process::id() % 10_000)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        Netns::named(name(tag))
    }

    /// A namespace with exactly this name.
    pub fn named(name: String) -> Netns {
        vinfra_testenv::add_netns(&name);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        // No IPv6: no router solicitations or DAD frames in the counters.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn try_exec(&self, args: &[&str]) -> bool {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        try_sh(&full)
    }

    /// Pings `ip` `count` times; true when a reply came back.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        self.try_exec(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", ip])
    }

    /// Pings until a reply comes (ARP and learning need a moment on a fresh path), at most
    /// `tries` rounds.
    pub fn ping_until(&self, ip: &str, tries: u32) -> bool {
        (0..tries).any(|_| self.try_exec(&["ping", "-c", "1", "-W", "1", ip]))
    }

    /// Runs `f` on a thread inside this namespace (sockets opened there stay in it).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A switch daemon started in a namespace; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub control: PathBuf,
    ns: String,
    underlay: Option<Ipv4Addr>,
    log: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Daemon {
    pub fn start(ns: &Netns, dir: &Path, underlay: Option<Ipv4Addr>) -> Daemon {
        Daemon::start_with_env(ns, dir, underlay, &[])
    }

    /// As [`Daemon::start`], with extra environment variables for the daemon.
    pub fn start_with_env(
        ns: &Netns,
        dir: &Path,
        underlay: Option<Ipv4Addr>,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_with(ns, dir, underlay, env, &[])
    }

    /// As [`Daemon::start_with_env`], with extra command-line arguments for the daemon.
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        underlay: Option<Ipv4Addr>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        let control = dir.join(format!("{}.ctl", ns.name));
        let log = dir.join(format!("{}.log", ns.name));
        let mut d = Daemon {
            child: None,
            control,
            ns: ns.name.clone(),
            underlay,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        // VINFRA_SWITCHD names another build of the daemon (e.g. a baseline to compare with).
        let bin = std::env::var_os("VINFRA_SWITCHD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vinfra-switchd")));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(&bin)
            .arg("--control")
            .arg(&self.control);
        if let Some(ip) = self.underlay {
            cmd.args(["--underlay-ip", &ip.to_string()]);
        }
        cmd.args(&self.args);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("start vinfra-switchd"));
    }

    /// The daemon's process id (`ip netns exec` runs it in its own place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's CPU time so far (user + system), from `/proc`.
    pub fn cpu_time(&self) -> Duration {
        let stat = self
            .pid()
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .unwrap_or_default();
        // Fields after the command name (which ends with the last ')'): utime and stime are
        // the 12th and 13th, in clock ticks (100 per second on Linux).
        let rest = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse().ok())
            .collect();
        Duration::from_millis(fields.iter().sum::<u64>() * 10)
    }

    pub fn client(&self) -> SwitchClient {
        SwitchClient::connect_within(&self.control, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("switch not answering: {e}; log: {}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn overlay(id: u32, vni: u32) -> Request {
    Request::AddNetwork {
        id,
        kind: NetworkSpec::Overlay { vni },
    }
}

pub fn vlan(id: u32, vid: u16) -> Request {
    Request::AddNetwork {
        id,
        kind: NetworkSpec::Vlan { vid },
    }
}

pub fn tap_port(id: u32, network: u32, tap: &str, mtu: u16) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu,
        attach: Attachment::Host {
            network,
            tap: tap.to_owned(),
        },
    })
}

/// Gateway MACs for router interfaces.
pub const GW1: [u8; 6] = [0x02, 0x76, 0x72, 0, 0, 1];
pub const GW2: [u8; 6] = [0x02, 0x76, 0x72, 0, 0, 2];

/// Router 1's interface on `network`: gateway `ip`/24 with `mac`, the network's MTU.
pub fn router_interface(network: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Request {
    Request::SetRouterInterface {
        router: 1,
        network,
        ip,
        prefix_len: 24,
        mac: Mac(mac),
        mtu: None,
    }
}

/// Moves tap `tap` from `host` into `ep` and gives it `cidr`.
pub fn attach_tap(host: &Netns, tap: &str, ep: &Netns, cidr: &str, mtu: u16) {
    host.exec(&["ip", "link", "set", tap, "netns", &ep.name]);
    ep.exec(&["ip", "link", "set", tap, "mtu", &mtu.to_string()]);
    ep.exec(&["ip", "addr", "add", cidr, "dev", tap]);
    ep.exec(&["ip", "link", "set", tap, "up"]);
}

/// Polls `f` every 50 ms until it is true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An Ethernet frame: dst, src, optional 802.1Q VID, EtherType, payload.
pub fn frame(
    dst: [u8; 6],
    src: [u8; 6],
    vid: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vid) = vid {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP payload (Ethernet/IPv4).
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    p
}

/// An IPv4 header (checksum filled) with `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A tap or interface's MAC address inside a namespace.
pub fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let text = ns.exec(&["cat", &format!("/sys/class/net/{dev}/address")]);
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *b = u8::from_str_radix(part, 16).expect("mac");
    }
    mac
}

/// Where `scripts/build-guest-image.sh` puts the test guest (kernel and initrd).
pub const GUEST_DIR: &str = "/var/cache/vinfra/guest";

/// The QEMU the guest tests boot.
pub const QEMU: &str = "qemu-system-x86_64";

/// What a switch test needs: root and `ip` (namespaces, taps). Add more, end with `.met()`: when
/// something is missing the test is skipped, or fails under CI (`vinfra_testenv`).
pub fn needs() -> vinfra_testenv::Needs {
    vinfra_testenv::Needs::new().root().program("ip")
}

/// The guest image directory, when a guest can boot here (see [`needs`]: also QEMU and the image).
pub fn guest_image() -> Option<PathBuf> {
    let guest = Path::new(GUEST_DIR);
    needs()
        .program(QEMU)
        .file(
            guest.join("vmlinuz"),
            "the guest image (scripts/build-guest-image.sh /var/cache/vinfra/guest)",
        )
        .met()
        .then(|| guest.to_owned())
}

/// A QEMU guest (TCG, so the tests do not depend on KVM) whose one vNIC is a `-netdev dgram`
/// over Unix sockets: it binds `vm` and sends to `switch` (a VM port's socket). Killed on drop.
pub struct Qemu {
    child: Child,
    serial: PathBuf,
}

impl Qemu {
    /// Boots `guest` (see [`guest_image`]) with kernel command line `append` and vNIC `mac`; the
    /// serial console goes to `serial`.
    pub fn start(
        guest: &Path,
        append: &str,
        mac: &str,
        vm: &Path,
        switch: &Path,
        serial: &Path,
    ) -> Qemu {
        let netdev = format!(
            "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            vm.display(),
            switch.display()
        );
        let child = Command::new(QEMU)
            .args(["-nodefaults", "-display", "none", "-no-reboot", "-m", "256"])
            .args(["-machine", "q35,accel=tcg"])
            .arg("-kernel")
            .arg(guest.join("vmlinuz"))
            .arg("-initrd")
            .arg(guest.join("initrd.img"))
            .args(["-append", &format!("console=ttyS0 panic=-1 {append}")])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args(["-netdev", &netdev])
            .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu");
        Qemu {
            child,
            serial: serial.to_owned(),
        }
    }

    /// What the guest printed on its serial console so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// True while QEMU runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic byte stream: the byte at position `i` comes from a hash of `i / 8`, so a
/// receiver can check every byte it gets, whatever the sizes of its reads.
pub fn pattern(offset: usize, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let pos = (offset + i) as u64;
        let mut z = (pos / 8).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        *b = (z >> (8 * (pos % 8))) as u8;
    }
}

/// Sends `bytes` bytes of [`pattern`] over TCP from namespace `client` to a listener in
/// `server` on `server_ip`, and returns how many bytes the server received that matched the
/// pattern, in order (it stops at the first wrong byte), within `limit`.
pub fn tcp_transfer(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    bytes: usize,
    limit: Duration,
) -> usize {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let listener = server.run(move || TcpListener::bind((server_ip, 0)).expect("listen"));
    let addr: SocketAddr = listener.local_addr().expect("address");
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(limit)).expect("timeout");
        let (mut buf, mut want) = (vec![0u8; 256 * 1024], vec![0u8; 256 * 1024]);
        let mut good = 0;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return good,
                Ok(n) => n,
            };
            pattern(good, &mut want[..n]);
            let same = buf[..n]
                .iter()
                .zip(&want[..n])
                .take_while(|(a, b)| a == b)
                .count();
            good += same;
            if same < n {
                return good;
            }
        }
    });
    client.run(move || {
        let mut stream = TcpStream::connect_timeout(&addr, limit).expect("connect");
        stream.set_write_timeout(Some(limit)).expect("timeout");
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent = 0;
        while sent < bytes {
            let n = (bytes - sent).min(buf.len());
            pattern(sent, &mut buf[..n]);
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
            sent += n;
        }
    });
    receiver.join().expect("receiver")
}

/// [`tcp_transfer`] of `bytes` from `client` to `server` on `server_ip` within 30 s; asserts
/// that every byte arrived (failing with `daemon`'s log).
pub fn transfer(
    server: &Netns,
    server_ip: Ipv4Addr,
    client: &Netns,
    bytes: usize,
    daemon: &Daemon,
) {
    let got = tcp_transfer(server, server_ip, client, bytes, Duration::from_secs(30));
    assert_eq!(got, bytes, "{}", daemon.log_text());
}

/// Two hosts over VXLAN: host namespaces joined by a veth underlay (`10.<net>.0.1` and `.2`,
/// IP MTU `underlay_mtu`), a daemon in each with its VXLAN uplink, overlay network 1 (VNI
/// `vni`) with tap host port 1 (MTU `tap_mtu`) and the other host in its flood list; each tap
/// moved to an endpoint namespace as `10.<net + 1>.0.1` / `.2`. Fields drop in order: the
/// daemons stop before their namespaces go.
pub struct VxlanPair {
    pub ca: SwitchClient,
    pub cb: SwitchClient,
    pub da: Daemon,
    pub db: Daemon,
    pub ta: String,
    pub tb: String,
    pub vtep_a: Ipv4Addr,
    pub vtep_b: Ipv4Addr,
    pub ea: Netns,
    pub eb: Netns,
    pub ha: Netns,
    pub hb: Netns,
}

pub fn vxlan_pair(dir: &Path, net: u8, underlay_mtu: u16, vni: u32, tap_mtu: u16) -> VxlanPair {
    let (ha, hb) = (Netns::new("ha"), Netns::new("hb"));
    let (ea, eb) = (Netns::new("ea"), Netns::new("eb"));
    let (ua, ub) = (name("u"), name("u"));
    sh(&[
        "ip", "link", "add", &ua, "netns", &ha.name, "type", "veth", "peer", "name", &ub, "netns",
        &hb.name,
    ]);
    let (vtep_a, vtep_b) = (Ipv4Addr::new(10, net, 0, 1), Ipv4Addr::new(10, net, 0, 2));
    let mtu = underlay_mtu.to_string();
    for (ns, dev, ip) in [(&ha, &ua, vtep_a), (&hb, &ub, vtep_b)] {
        ns.exec(&["ip", "link", "set", dev, "mtu", &mtu]);
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
        ns.exec(&["ip", "link", "set", dev, "up"]);
    }
    let args = ["--underlay-mtu", mtu.as_str()];
    let da = Daemon::start_with(&ha, dir, Some(vtep_a), &[], &args);
    let db = Daemon::start_with(&hb, dir, Some(vtep_b), &[], &args);
    let (mut ca, mut cb) = (da.client(), db.client());
    let (ta, tb) = (name("t"), name("t"));
    for (client, tap, other) in [(&mut ca, &ta, vtep_b), (&mut cb, &tb, vtep_a)] {
        client
            .apply(&[
                overlay(1, vni),
                tap_port(1, 1, tap, tap_mtu),
                Request::SetFloodList {
                    network: 1,
                    vteps: vec![other],
                },
            ])
            .unwrap();
    }
    let inner = net + 1;
    attach_tap(&ha, &ta, &ea, &format!("10.{inner}.0.1/24"), tap_mtu);
    attach_tap(&hb, &tb, &eb, &format!("10.{inner}.0.2/24"), tap_mtu);
    VxlanPair {
        ca,
        cb,
        da,
        db,
        ta,
        tb,
        vtep_a,
        vtep_b,
        ea,
        eb,
        ha,
        hb,
    }
}

/// An `iperf3 -s -1` (one test) in a namespace on a TCP port; killed on drop.
pub struct IperfServer {
    child: Child,
}

impl IperfServer {
    /// Starts the server and waits until it listens (at most 10 s).
    pub fn start(ns: &Netns, port: u16) -> IperfServer {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "iperf3", "-s", "-1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 -s");
        // A listening socket on the port (IPv4 or dual-stack IPv6): state 0A.
        let local = format!(":{port:04X} ");
        let listening = wait_for(Duration::from_secs(10), || {
            ns.exec(&["cat", "/proc/net/tcp", "/proc/net/tcp6"])
                .lines()
                .any(|l| l.contains(&local) && l.split_whitespace().nth(3) == Some("0A"))
        });
        assert!(listening, "iperf3 server on port {port} did not start");
        IperfServer { child }
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an iperf3 client in `ns` against `server:port` with `args` (`-t`, `-u`, `-b`, …),
/// JSON output; see [`iperf_received`].
pub fn iperf_spawn(ns: &Netns, server: Ipv4Addr, port: u16, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "iperf3", "-J", "-c"])
        .arg(server.to_string())
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 -c")
}

/// What the server of a finished client received, bits per second (0 when the run failed).
pub fn iperf_received(client: Child) -> f64 {
    let out = client.wait_with_output().expect("iperf3 -c");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

/// One iperf3 run: a server in `server_ns` on `port`, a client in `client_ns` with `args`;
/// bits per second received.
pub fn iperf(
    client_ns: &Netns,
    server_ns: &Netns,
    server: Ipv4Addr,
    port: u16,
    args: &[&str],
) -> f64 {
    let _server = IperfServer::start(server_ns, port);
    iperf_received(iperf_spawn(client_ns, server, port, args))
}
