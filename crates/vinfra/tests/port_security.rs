//! Port security end to end in a 3-host lab, with real guests sending real frames.
//!
//! Three guests on one overlay network run a script of their own next to the guest image's init
//! (an initramfs of the test's appended to the image's, started by `rdinit=/portsec/init`):
//! - `s`, the spoofer (on h1, port security on), claims the victim's address (a secondary
//!   `V_IP/32`), and in rounds pings `n` from it, sends gratuitous ARP requests and replies for
//!   it, and sends from the victim's MAC; it also runs a DHCP server (busybox `udhcpd`) that
//!   answers whatever DHCP request reaches it.
//! - `n`, the neighbour (on h1, port security off), pings `v` all along, and prints which MAC
//!   its ARP cache has for `v`'s address and how many UDP datagrams reached a closed port of
//!   its; it also pings `v` from an address that is none of its own (`ANY_IP`).
//! - `v`, the victim (on h2, port security on, `ALLOWED_IP` as an allowed address pair), pings
//!   `n` from that virtual IP, and takes DHCP leases from its switch in a loop.
//!
//! The test asserts that h1's switch dropped and counted each kind of spoofing on `s`'s port
//! and in its network (`spoofed_mac`, `spoofed_ip`, `spoofed_arp`, `dhcp_server` for the rogue
//! server's offers, `ethertype_not_allowed` for its IPv6), and that nobody noticed: `n`'s pings
//! of `v` go on, `n`'s ARP cache keeps `v`'s MAC for `v`'s address, the rogue's offers (sent
//! unicast to `n`) never reach `n`, and `v`'s leases come from its switch.
//!
//! A DHCP request reaches the rogue server only from the underlay (a switch answers its own
//! VMs' requests and floods none), so the test injects one there, as h2's switch would send
//! it; the same request from the underlay address that is no cluster host's is dropped by h1's
//! uplink (`unknown_vtep`) and never reaches the server. A forged announcement of `v` (on h2)
//! from h3, a cluster host that no migration names (a third host: the other host besides `v`'s
//! would be h1 itself), leaves `v`'s entry on h1 where it is (`mac_moves_refused`): `n`'s
//! pings of `v` are still answered, and h1 sends h3 nothing. And the two ways out work: `v`
//! sends from its allowed address, `n` (port security off) from any.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{api, can_run_labs, console_lines, console_text, in_netns, start_lab_with, wait_for};
use vinfra_lab::Lab;
use vinfra_switch_control::{
    CountersView, LocationSpec, Mac, NetworkCountersView, NetworkSpec, Request, UPLINK_PORT,
};
use vinfra_types::error::chain;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::{AllowedAddressPair, BootSource, VmSummary};

const NET: &str = "blue";
const SUBNET: &str = "10.80.7.0/24";
const GATEWAY: &str = "10.80.7.1";
const V_IP: &str = "10.80.7.20";
const N_IP: &str = "10.80.7.30";
const S_IP: &str = "10.80.7.40";
/// `v`'s allowed address pair: a virtual IP it may send from.
const ALLOWED_IP: &str = "10.80.7.50";
/// An address of nobody's, that `n` (port security off) sends from.
const ANY_IP: &str = "10.80.7.99";
const V_MAC: &str = "02:70:73:00:00:14";
const N_MAC: &str = "02:70:73:00:00:1e";
const S_MAC: &str = "02:70:73:00:00:28";
/// The rogue DHCP server's pool.
const ROGUE_POOL: (&str, &str) = ("10.80.7.200", "10.80.7.210");
/// `n`'s ping interval of `v`, ms.
const PING_MS: u32 = 200;
/// The guests' initramfs: the image's with the test's scripts appended.
const PORTSEC_INITRD: &str = "portsec-initrd.img";
/// The transaction ID of the DHCP requests the test injects.
const XID: u32 = 0x5053_4543;

/// The guests' role script after the common prelude (`common::install_role_initrd`): plays the
/// role that `portsec.role=` names, printing `PORTSEC-*` lines on the console.
const ROLE: &str = r#"echo "PORTSEC $role ready"
n=0
case $role in
spoofer)
    : >/tmp/udhcpd.leases
    udhcpd -f -a 100 /portsec/udhcpd.conf &
    sleep 1
    ip addr add @V_IP@/32 dev eth0
    while :; do
        n=$((n + 1))
        # Another VM's address: a ping of the neighbour from the victim's.
        arp -s @N_IP@ @N_MAC@
        ping -c 1 -W 1 -I @V_IP@ @N_IP@ >/dev/null 2>&1
        # Gratuitous ARP for the victim's address, a request and a reply.
        arping -q -U -c 1 -I eth0 -s @V_IP@ @V_IP@
        arping -q -A -c 1 -I eth0 -s @V_IP@ @V_IP@
        # Another VM's MAC.
        ip link set eth0 down
        ip link set eth0 address @V_MAC@
        ip link set eth0 up
        arp -s @N_IP@ @N_MAC@
        ping -c 1 -W 1 @N_IP@ >/dev/null 2>&1
        ip link set eth0 down
        ip link set eth0 address @S_MAC@
        ip link set eth0 up
        echo "PORTSEC-SPOOF $n"
        sleep 1
    done
    ;;
neighbour)
    ip addr add @ANY_IP@/32 dev eth0
    while :; do
        n=$((n + 1))
        if ping -c 1 -W 1 -I @ANY_IP@ @V_IP@ >/dev/null 2>&1; then any=ok; else any=fail; fi
        neigh=$(ip neigh show to @V_IP@ dev eth0 | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')
        noports=$(awk '/^Udp:/ { if (h) print $3; h = 1 }' /proc/net/snmp)
        echo "PORTSEC-N $n any=$any neigh=${neigh:--} noports=$noports"
        sleep 1
    done
    ;;
victim)
    ip addr add @ALLOWED_IP@/32 dev eth0
    while :; do
        n=$((n + 1))
        if ping -c 1 -W 1 -I @ALLOWED_IP@ @N_IP@ >/dev/null 2>&1; then vip=ok; else vip=fail; fi
        echo "PORTSEC-VIP $n $vip"
        udhcpc -i eth0 -n -q -t 2 -T 1 -s /portsec/lease.sh >/dev/null 2>&1 ||
            echo "PORTSEC-LEASE $n none"
        sleep 1
    done
    ;;
esac
"#;

/// `udhcpc`'s script on `v`: prints the lease, configures nothing.
const LEASE: &str = r#"#!/bin/sh
[ "$1" = bound ] && echo "PORTSEC-LEASE $ip server=$serverid" >/dev/console
exit 0
"#;

/// The rogue DHCP server's configuration.
const UDHCPD_CONF: &str = "start @POOL_START@
end @POOL_END@
interface eth0
max_leases 8
lease_file /tmp/udhcpd.leases
auto_time 0
opt subnet 255.255.255.0
opt router @S_IP@
opt lease 600
";

fn fill(template: &str) -> String {
    [
        ("@V_IP@", V_IP),
        ("@N_IP@", N_IP),
        ("@S_IP@", S_IP),
        ("@ALLOWED_IP@", ALLOWED_IP),
        ("@ANY_IP@", ANY_IP),
        ("@V_MAC@", V_MAC),
        ("@N_MAC@", N_MAC),
        ("@S_MAC@", S_MAC),
        ("@POOL_START@", ROGUE_POOL.0),
        ("@POOL_END@", ROGUE_POOL.1),
    ]
    .iter()
    .fold(template.to_string(), |t, (k, v)| t.replace(k, v))
}

/// Writes the guests' initramfs into the lab's datastore: the image's with the test's scripts.
fn install_initrd(lab: &Lab) {
    let (role, conf) = (fill(ROLE), fill(UDHCPD_CONF));
    common::install_role_initrd(
        lab,
        PORTSEC_INITRD,
        "portsec",
        &role,
        &[
            ("lease.sh", LEASE.as_bytes()),
            ("udhcpd.conf", conf.as_bytes()),
        ],
    );
}

fn create_network(lab: &Lab) {
    let req = CreateNetworkRequest {
        name: NET.into(),
        kind: NetworkKind::Overlay,
        vni: None,
        vlan_id: None,
        subnet: SUBNET.into(),
        gateway: Some(GATEWAY.into()),
        mtu: None,
    };
    api(lab)
        .create_network(&req)
        .unwrap_or_else(|e| panic!("create network {NET}: {e}"));
}

/// How a guest's NIC is set up.
struct Guest<'a> {
    name: &'a str,
    host: &'a str,
    ip: &'a str,
    mac: &'a str,
    role: &'a str,
    port_security: bool,
    allowed: Option<&'a str>,
    options: String,
}

/// Creates and starts a guest booting the test's initramfs.
fn create_guest(lab: &Lab, g: Guest<'_>) -> VmSummary {
    let address = lab
        .static_address(NET, g.ip.parse().expect("an address"))
        .unwrap_or_else(|e| panic!("{}'s address: {}", g.name, chain(&e)));
    let mut req = Lab::guest_nic_vm_request(g.name, 128, Some(g.host), NET, address);
    if let BootSource::Kernel {
        initrd, cmdline, ..
    } = &mut req.spec.boot
    {
        *initrd = Some(PORTSEC_INITRD.into());
        cmdline.push_str(&format!(
            " rdinit=/portsec/init portsec.role={} {}",
            g.role, g.options
        ));
    }
    let nic = &mut req.spec.nics[0];
    nic.mac = Some(g.mac.into());
    nic.port_security = Some(g.port_security);
    nic.allowed_addresses = g
        .allowed
        .map(|ip| AllowedAddressPair {
            ip: ip.into(),
            mac: None,
        })
        .into_iter()
        .collect();
    api(lab)
        .create_vm(&req)
        .unwrap_or_else(|e| panic!("create VM {}: {e}", g.name))
}

/// The bytes of a MAC address written `02:70:73:00:00:14`.
fn mac(text: &str) -> Mac {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("an IPv4 address")
}

/// What the test reads of `host`'s switch: `NET`'s id and VNI there, and the port of each of
/// its local MACs.
struct SwitchView {
    network: u32,
    vni: u32,
    ports: BTreeMap<Mac, u32>,
}

fn switch_view(lab: &Lab, host: &str) -> SwitchView {
    let vni = api(lab)
        .network(NET)
        .unwrap_or_else(|e| panic!("GET network {NET}: {e}"))
        .network
        .vni
        .expect("an overlay network has a VNI");
    let config = lab
        .switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .config()
        .unwrap_or_else(|e| panic!("{host}'s switch configuration: {e}"));
    let network = config
        .iter()
        .find_map(|r| match r {
            Request::AddNetwork {
                id,
                kind: NetworkSpec::Overlay { vni: v },
            } if *v == vni => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{host}'s switch has no network with VNI {vni}"));
    let ports = config
        .iter()
        .filter_map(|r| match r {
            Request::AddMacEntry {
                network: n,
                mac,
                location: LocationSpec::Port(p),
            } if *n == network => Some((*mac, *p)),
            _ => None,
        })
        .collect();
    SwitchView {
        network,
        vni,
        ports,
    }
}

impl SwitchView {
    fn port(&self, text: &str) -> u32 {
        *self
            .ports
            .get(&mac(text))
            .unwrap_or_else(|| panic!("no local port has {text}: {:?}", self.ports))
    }
}

fn counters(lab: &Lab, host: &str) -> CountersView {
    lab.switch_client(host)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
        .counters()
        .unwrap_or_else(|e| panic!("{host}'s switch counters: {e}"))
}

/// The drops by reason of port `port` on `host`'s switch.
fn port_drops(lab: &Lab, host: &str, port: u32) -> BTreeMap<String, u64> {
    counters(lab, host)
        .port(port)
        .unwrap_or_else(|| panic!("{host}'s switch has no counters for port {port}"))
        .traffic
        .drops
        .clone()
}

fn network_counters(lab: &Lab, host: &str, network: u32) -> NetworkCountersView {
    counters(lab, host)
        .network(network)
        .cloned()
        .unwrap_or_else(|| panic!("{host}'s switch has no counters for network {network}"))
}

fn uplink_drops(lab: &Lab, host: &str, reason: &str) -> u64 {
    counters(lab, host)
        .port(UPLINK_PORT)
        .map_or(0, |p| p.traffic.dropped(reason))
}

/// Packets that reached `host`'s VXLAN uplink.
fn uplink_rx(lab: &Lab, host: &str) -> u64 {
    counters(lab, host)
        .port(UPLINK_PORT)
        .map_or(0, |p| p.traffic.rx_packets)
}

fn drops(d: &BTreeMap<String, u64>, reason: &str) -> u64 {
    d.get(reason).copied().unwrap_or(0)
}

/// The fields of the complete console lines of `vm` that start with `prefix` and a round
/// number above `after`: (round, the rest).
fn rounds(lab: &Lab, vm: &str, prefix: &str, after: u64) -> Vec<(u64, String)> {
    let text = console_text(lab, vm);
    console_lines(&text)
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (n, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((n.parse::<u64>().ok()?, rest.to_string()))
        })
        .filter(|(n, _)| *n > after)
        .collect()
}

/// The last round number of the `prefix` lines of `vm` (0 before the first).
fn last_round(lab: &Lab, vm: &str, prefix: &str) -> u64 {
    rounds(lab, vm, prefix, 0).last().map_or(0, |r| r.0)
}

/// The leases `v`'s DHCP client took (`ADDR server=SERVER_ID`), in order; failed attempts
/// (`PORTSEC-LEASE <round> none`) are left out.
fn leases(lab: &Lab) -> Vec<String> {
    console_lines(&console_text(lab, "v"))
        .filter_map(|l| l.strip_prefix("PORTSEC-LEASE "))
        .filter(|rest| !rest.ends_with(" none"))
        .map(str::to_string)
        .collect()
}

/// `key=value` of a `PORTSEC-N` line.
fn field<'a>(rest: &'a str, key: &str) -> &'a str {
    rest.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in '{rest}'"))
}

/// `n`'s pings of `v` (`vinfra.pingfast`): replies so far, and the longest time without
/// replies in a gap (ms).
fn fast_pings(lab: &Lab) -> (u64, u64) {
    let text = console_text(lab, "n");
    let ok = format!("VINFRA-PINGFAST {V_IP} ok ");
    let mut replies = 0;
    let mut longest = 0;
    for l in console_lines(&text) {
        if let Some(rest) = l.strip_prefix(&ok) {
            if let Some(r) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                replies = r;
            }
        } else if let Some(rest) = l.strip_prefix("VINFRA-PINGGAP ") {
            if let Some(s) = rest.split_whitespace().nth(3).and_then(|s| s.parse().ok()) {
                longest = longest.max(s);
            }
        }
    }
    (replies, longest)
}

/// A VXLAN header for network `vni`.
fn vxlan_header(vni: u32) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend_from_slice(&(vni << 8).to_be_bytes());
    h
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP payload of a VXLAN packet (network `vni`) carrying a DHCP DISCOVER broadcast from
/// `src`, for client `client` at `ciaddr`: a DHCP server answers it unicast to that client.
fn dhcp_discover(vni: u32, src: Mac, client: Mac, ciaddr: Ipv4Addr) -> Vec<u8> {
    let mut bootp = vec![1, 1, 6, 0];
    bootp.extend_from_slice(&XID.to_be_bytes());
    bootp.extend_from_slice(&[0; 4]);
    bootp.extend_from_slice(&ciaddr.octets());
    bootp.extend_from_slice(&[0; 12]);
    bootp.extend_from_slice(&client.0);
    bootp.resize(236, 0);
    bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    bootp.resize(300, 0);
    let udp_len = (8 + bootp.len()) as u16;
    let mut ipv4 = vec![0x45, 0];
    ipv4.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ipv4.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    ipv4.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255]);
    let sum = checksum(&ipv4);
    ipv4[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = vxlan_header(vni);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ipv4);
    f.extend_from_slice(&68u16.to_be_bytes());
    f.extend_from_slice(&67u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&bootp);
    f
}

/// The UDP payload of a VXLAN packet (network `vni`) announcing `mac` at `ip`: a gratuitous
/// ARP request, as a VM sends when it has moved.
fn announcement(vni: u32, mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = vxlan_header(vni);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// Sends `payload` `times` times, `every` apart, from `from` in namespace `ns` to `to`'s VXLAN
/// port.
fn send_vxlan(
    ns: &str,
    from: Ipv4Addr,
    to: Ipv4Addr,
    payload: Vec<u8>,
    times: u32,
    every: Duration,
) {
    in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind((from, 0))
            .unwrap_or_else(|e| panic!("a UDP socket on {from}: {e}"));
        for _ in 0..times {
            socket
                .send_to(&payload, (to, 4789))
                .unwrap_or_else(|e| panic!("send to {to}: {e}"));
            std::thread::sleep(every);
        }
    })
    .join()
    .expect("the VXLAN packets were sent");
}

#[test]
fn port_security_drops_spoofing_and_the_uplink_takes_only_cluster_hosts() {
    if !can_run_labs() {
        return;
    }
    let started = Instant::now();
    let lab = start_lab_with("portsec", 3, |_| {});
    create_network(&lab);
    install_initrd(&lab);
    let guests = [
        Guest {
            name: "v",
            host: "h2",
            ip: V_IP,
            mac: V_MAC,
            role: "victim",
            port_security: true,
            allowed: Some(ALLOWED_IP),
            options: String::new(),
        },
        Guest {
            name: "s",
            host: "h1",
            ip: S_IP,
            mac: S_MAC,
            role: "spoofer",
            port_security: true,
            allowed: None,
            options: String::new(),
        },
        Guest {
            name: "n",
            host: "h1",
            ip: N_IP,
            mac: N_MAC,
            role: "neighbour",
            port_security: false,
            allowed: None,
            options: format!("vinfra.pingfast={V_IP},{PING_MS}"),
        },
    ];
    let roles: Vec<(&str, &str)> = guests.iter().map(|g| (g.name, g.role)).collect();
    for g in guests {
        let vm = create_guest(&lab, g);
        assert_eq!(vm.spec.nics.len(), 1, "{} has its NIC", vm.name);
    }
    let lab_up = started.elapsed();
    for (name, role) in &roles {
        lab.wait_console(name, &format!("PORTSEC {role} ready"), common::BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("VM {name} did not come up: {}", chain(&e)));
    }
    eprintln!(
        "lab and VMs created in {} ms, guests ready after {} ms",
        lab_up.as_millis(),
        started.elapsed().as_millis()
    );
    let h1 = switch_view(&lab, "h1");
    let h2 = switch_view(&lab, "h2");
    let (s_port, n_port, v_port) = (h1.port(S_MAC), h1.port(N_MAC), h2.port(V_MAC));

    // Everybody reaches everybody first: n pings v, v's DHCP client has a lease.
    wait_for("n's pings of v to succeed", Duration::from_secs(60), || {
        (fast_pings(&lab).0 > 0).then_some(())
    });
    wait_for("a lease of v's", Duration::from_secs(60), || {
        (!leases(&lab).is_empty()).then_some(())
    });

    // From here on the spoofer's rounds are counted.
    let s0 = port_drops(&lab, "h1", s_port);
    let net0 = network_counters(&lab, "h1", h1.network);
    let (n_round0, v_round0) = (
        last_round(&lab, "n", "PORTSEC-N "),
        last_round(&lab, "v", "PORTSEC-VIP "),
    );
    // n prints its first round a ping (up to a second) after it is ready.
    let noports0: u64 = wait_for("a line of n's", Duration::from_secs(30), || {
        rounds(&lab, "n", "PORTSEC-N ", 0)
            .last()
            .map(|(_, rest)| field(rest, "noports").parse().expect("a count"))
    });
    let (replies0, _) = fast_pings(&lab);
    let spoof0 = last_round(&lab, "s", "PORTSEC-SPOOF ");
    let leases0 = leases(&lab).len();
    eprintln!("before: s's port drops {s0:?}; network {net0:?}");

    let state = lab.state().clone();
    let addr = |name: &str| {
        state
            .hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("host {name}"))
            .clone()
    };
    let (host1, host2, host3) = (addr("h1"), addr("h2"), addr("h3"));
    let discover = dhcp_discover(h1.vni, mac(V_MAC), mac(N_MAC), ip(N_IP));

    // A DHCP request for n from the underlay address that is no cluster host's: h1's uplink
    // drops it, and the rogue server never hears it.
    let vtep0 = uplink_drops(&lab, "h1", "unknown_vtep");
    send_vxlan(
        &state.underlay_namespace,
        vinfra_lab::net::UNDERLAY_ADDR,
        host1.address,
        discover.clone(),
        5,
        Duration::from_millis(100),
    );
    std::thread::sleep(Duration::from_secs(2));
    let vtep1 = uplink_drops(&lab, "h1", "unknown_vtep");
    assert!(
        vtep1 >= vtep0 + 5,
        "h1's uplink did not drop the 5 packets from {} as unknown_vtep ({vtep0} → {vtep1})",
        vinfra_lab::net::UNDERLAY_ADDR
    );
    let s_after_unknown = port_drops(&lab, "h1", s_port);
    assert_eq!(
        drops(&s_after_unknown, "dhcp_server"),
        drops(&s0, "dhcp_server"),
        "the rogue server answered a DHCP request from an unknown VTEP: {s_after_unknown:?}"
    );

    // The same request from h2, as h2's switch would flood it: the rogue server answers, unicast
    // to n, and h1's switch drops its offers.
    send_vxlan(
        &host2.namespace,
        host2.address,
        host1.address,
        discover,
        10,
        Duration::from_millis(300),
    );
    wait_for(
        "h1's switch to drop the rogue server's offers",
        Duration::from_secs(15),
        || {
            (drops(&port_drops(&lab, "h1", s_port), "dhcp_server") > drops(&s0, "dhcp_server"))
                .then_some(())
        },
    );

    // A forged announcement of v (on h2) from h3, which no migration names: h1's switch keeps
    // v's entry at h2, and n's pings of v go on. h3 has no port on the network: h1 sends it
    // nothing of it, unless the entry moved there.
    let moves0 = network_counters(&lab, "h1", h1.network).mac_moves_refused;
    let h3_rx0 = uplink_rx(&lab, "h3");
    send_vxlan(
        &host3.namespace,
        host3.address,
        host1.address,
        announcement(h1.vni, mac(V_MAC), ip(V_IP)),
        3,
        Duration::from_millis(200),
    );
    wait_for(
        "h1's switch to refuse moving v's entry to h3",
        Duration::from_secs(10),
        || (network_counters(&lab, "h1", h1.network).mac_moves_refused > moves0).then_some(()),
    );
    let (replies_at_refusal, _) = fast_pings(&lab);
    wait_for(
        "n's pings of v to be answered after the forged announcement",
        Duration::from_secs(15),
        || (fast_pings(&lab).0 > replies_at_refusal + 5).then_some(()),
    );
    assert_eq!(
        uplink_rx(&lab, "h3"),
        h3_rx0,
        "h1's switch sent n's pings of v to h3 after h3's forged announcement"
    );

    // A few more spoofing rounds, then the verdict.
    wait_for(
        "3 more rounds of s's spoofing",
        Duration::from_secs(60),
        || (last_round(&lab, "s", "PORTSEC-SPOOF ") >= spoof0 + 3).then_some(()),
    );
    wait_for(
        "3 more rounds of n and of v",
        Duration::from_secs(30),
        || {
            (last_round(&lab, "n", "PORTSEC-N ") >= n_round0 + 3
                && last_round(&lab, "v", "PORTSEC-VIP ") >= v_round0 + 3)
                .then_some(())
        },
    );
    let s1 = port_drops(&lab, "h1", s_port);
    let net1 = network_counters(&lab, "h1", h1.network);
    eprintln!("after: s's port drops {s1:?}; network {net1:?}");
    for reason in [
        "spoofed_mac",
        "spoofed_ip",
        "spoofed_arp",
        "dhcp_server",
        "ethertype_not_allowed",
    ] {
        assert!(
            drops(&s1, reason) > drops(&s0, reason),
            "s's port dropped no further frames as {reason}: {s0:?} → {s1:?}"
        );
        assert!(
            net1.traffic.dropped(reason) > net0.traffic.dropped(reason),
            "the network counted no further drops as {reason}: {net0:?} → {net1:?}"
        );
    }

    // The neighbour noticed nothing: its ARP cache has v's MAC for v's address all along, no
    // rogue offer reached it, and its pings of v went on.
    let n_lines = rounds(&lab, "n", "PORTSEC-N ", n_round0);
    for (round, rest) in &n_lines {
        let neigh = field(rest, "neigh");
        assert!(
            neigh == V_MAC || neigh == "-",
            "n's ARP cache has {neigh} for {V_IP} (v is {V_MAC}) in round {round}: {rest}"
        );
        let noports: u64 = field(rest, "noports").parse().expect("a count");
        assert_eq!(
            noports, noports0,
            "UDP datagrams reached a closed port of n's (the rogue's offers?) in round {round}"
        );
    }
    assert!(
        n_lines
            .iter()
            .any(|(_, rest)| field(rest, "neigh") == V_MAC),
        "n's ARP cache never showed v's MAC for {V_IP}: {n_lines:?}"
    );
    let (replies1, longest_gap) = fast_pings(&lab);
    eprintln!(
        "n's pings of v every {PING_MS} ms: {} replies while s spoofed, longest silence {longest_gap} ms",
        replies1 - replies0
    );
    assert!(
        replies1 >= replies0 + 20,
        "n's pings of v were answered {} times only while s spoofed",
        replies1 - replies0
    );
    assert!(
        longest_gap < 5_000,
        "n's pings of v stopped for {longest_gap} ms"
    );
    // v's DHCP client got its leases from its switch: its own address, the gateway as server.
    let leases = leases(&lab);
    assert!(
        leases.len() > leases0,
        "v got no lease while s ran a DHCP server: {leases:?}"
    );
    for lease in &leases {
        assert_eq!(
            *lease,
            format!("{V_IP} server={GATEWAY}"),
            "a lease of v's, not from its switch"
        );
    }

    // The ways out: v sends from its allowed address, n (port security off) from any.
    let vip = rounds(&lab, "v", "PORTSEC-VIP ", v_round0);
    assert!(
        vip.iter().any(|(_, r)| r == "ok"),
        "v's pings of n from its allowed address {ALLOWED_IP} all failed: {vip:?}"
    );
    let v_drops = port_drops(&lab, "h2", v_port);
    for reason in ["spoofed_mac", "spoofed_ip", "spoofed_arp"] {
        assert_eq!(
            drops(&v_drops, reason),
            0,
            "v's port dropped frames of v's as {reason}: {v_drops:?}"
        );
    }
    assert!(
        n_lines.iter().any(|(_, rest)| field(rest, "any") == "ok"),
        "n (port security off) never reached v from {ANY_IP}: {n_lines:?}"
    );
    let n_drops = port_drops(&lab, "h1", n_port);
    assert!(
        n_drops.keys().all(|r| !r.starts_with("spoofed")),
        "n's port (port security off) dropped frames as spoofed: {n_drops:?}"
    );

    // Live: v's allowed address taken away, its pings from it stop at its port (spoofed_ip);
    // given back, they pass again. The running VM's port follows each PATCH.
    let set_allowed = |pairs: Vec<vinfra_types::AllowedAddressPair>| {
        api(&lab)
            .update_nic(
                "v",
                0,
                &vinfra_types::api::UpdateNicRequest {
                    allowed_addresses: Some(pairs),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("PATCH v's NIC: {}", chain(&e)))
    };
    set_allowed(vec![]);
    let spoofed0 = drops(&port_drops(&lab, "h2", v_port), "spoofed_ip");
    let round = last_round(&lab, "v", "PORTSEC-VIP ");
    wait_for(
        "v's pings from its former allowed address to fail, dropped at its port",
        Duration::from_secs(30),
        || {
            let r = rounds(&lab, "v", "PORTSEC-VIP ", round);
            let dropped = drops(&port_drops(&lab, "h2", v_port), "spoofed_ip") > spoofed0;
            (r.len() >= 2 && r.iter().all(|(_, v)| v == "fail") && dropped).then_some(())
        },
    );
    set_allowed(vec![vinfra_types::AllowedAddressPair {
        ip: ALLOWED_IP.to_string(),
        mac: None,
    }]);
    let round = last_round(&lab, "v", "PORTSEC-VIP ");
    wait_for(
        "v's pings from its allowed address to pass again",
        Duration::from_secs(30),
        || {
            let r = rounds(&lab, "v", "PORTSEC-VIP ", round);
            (r.len() >= 2 && r.iter().rev().take(2).all(|(_, v)| v == "ok")).then_some(())
        },
    );
    eprintln!(
        "port security test done in {} ms",
        started.elapsed().as_millis()
    );
    lab.down();
}
