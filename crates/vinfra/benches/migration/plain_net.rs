//! The network case's plain sides: plain QEMU's guests on switches of ours
//! ([`PlainSwitches`]) or on Linux bridges ([`PlainBridges`]), and their QEMU command lines.

use std::process::{Child, Command, Stdio};

use super::*;

/// The plain side's overlay: a VNI and addresses of its own, on switches of its own.
pub(super) const PLAIN_VNI: u32 = 9_999;
pub(super) const PLAIN_GUEST: &str = "10.89.0.20";
pub(super) const PLAIN_PINGER: &str = "10.89.0.10";
pub(super) const PLAIN_GUEST_MAC: &str = "52:54:00:89:00:14";
pub(super) const PLAIN_PINGER_MAC: &str = "52:54:00:89:00:0a";
/// The guest IP MTU of an overlay on a 1500-byte underlay (what the console gives ours).
pub(super) const OVERLAY_MTU: u16 = 1450;

/// A second `vinfra switch` in each of the lab's host namespaces, on a second underlay address
/// of the host's own interface (10.77.0.(110 + i)), so that plain QEMU has our datapath over the
/// same underlay without the agents (which own the lab's switches) touching it. Stopped, and
/// the addresses removed, on drop.
pub(super) struct PlainSwitches {
    children: Vec<Child>,
    namespaces: Vec<String>,
    pub(super) vteps: Vec<std::net::Ipv4Addr>,
    pub(super) clients: Vec<vinfra_switch_control::SwitchClient>,
}

impl PlainSwitches {
    pub(super) fn start(lab: &Lab, dir: &Path) -> PlainSwitches {
        let mut s = PlainSwitches {
            children: vec![],
            namespaces: vec![],
            vteps: vec![],
            clients: vec![],
        };
        for (i, h) in lab.state().hosts.iter().enumerate().take(3) {
            let vtep = std::net::Ipv4Addr::new(10, 77, 0, 111 + i as u8);
            let status = Command::new("ip")
                .args([
                    "-n",
                    &h.namespace,
                    "addr",
                    "add",
                    &format!("{vtep}/24"),
                    "dev",
                    "eth0",
                ])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "address {vtep} on {}",
                h.name
            );
            s.namespaces.push(h.namespace.clone());
            s.vteps.push(vtep);
            let control = dir.join(format!("switch-{}.sock", h.name));
            let log = std::fs::File::create(dir.join(format!("switch-{}.log", h.name)))
                .expect("switch log");
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &h.namespace,
                    common::VINFRA,
                    "switch",
                    "--control",
                ])
                .arg(&control)
                .args(["--underlay-ip", &vtep.to_string()])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start a plain switch");
            s.children.push(child);
            let client = vinfra_switch_control::SwitchClient::connect_within(
                &control,
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("plain switch on {}: {e}", h.name));
            s.clients.push(client);
        }
        s
    }
}

impl Drop for PlainSwitches {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (ns, vtep) in self.namespaces.iter().zip(&self.vteps) {
            remove_vtep(ns, *vtep);
        }
    }
}

/// Takes a plain side's VTEP address `vtep` off the host interface of namespace `ns` (best
/// effort: on drop).
pub(super) fn remove_vtep(ns: &str, vtep: std::net::Ipv4Addr) {
    let _ = Command::new("ip")
        .args([
            "-n",
            ns,
            "addr",
            "del",
            &format!("{vtep}/24"),
            "dev",
            "eth0",
        ])
        .output();
}

/// The Linux bridge side's overlay: its own VNI and UDP port (the kernel's VXLAN socket listens
/// on every address of its port, which the lab's switches hold on 4789).
pub(super) const BRIDGE_VNI: u32 = 9_998;
pub(super) const BRIDGE_VXLAN_PORT: &str = "4799";
/// Each host's bridge, VXLAN device and guest tap on the Linux bridge side.
pub(super) const BRIDGE: &str = "brplain";
pub(super) const BRIDGE_VXLAN: &str = "vxbplain";
pub(super) const BRIDGE_TAP: &str = "vbplain";

/// Runs `ip` in namespace `ns` (`-n`), which must succeed.
pub(super) fn ip_in(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The target's baseline, "the same guests on a Linux bridge": in each of the lab's host
/// namespaces a kernel bridge with a kernel VXLAN device (VNI [`BRIDGE_VNI`] over a second
/// underlay address of the host's own interface, 10.77.0.(121 + i); flooding to the other two
/// hosts by all-zero FDB entries; MAC learning as the kernel does it) and a tap for the guest,
/// as an operator running QEMU on plain Linux networking sets them up. Nothing tells the
/// pinger's host that the guest moved but the guest's own announce after the switchover
/// (QEMU's self-announce, flooded and learnt). Removed on drop.
pub(super) struct PlainBridges {
    namespaces: Vec<String>,
    vteps: Vec<std::net::Ipv4Addr>,
}

impl PlainBridges {
    pub(super) fn start(lab: &Lab) -> PlainBridges {
        let mut s = PlainBridges {
            namespaces: vec![],
            vteps: vec![],
        };
        let hosts: Vec<_> = lab.state().hosts.iter().take(3).collect();
        let vteps: Vec<std::net::Ipv4Addr> = (0..hosts.len())
            .map(|i| std::net::Ipv4Addr::new(10, 77, 0, 121 + i as u8))
            .collect();
        for (i, h) in hosts.iter().enumerate() {
            let (ns, vtep) = (h.namespace.as_str(), vteps[i].to_string());
            // Recorded first: what a failed step leaves is removed on drop.
            s.namespaces.push(ns.to_string());
            s.vteps.push(vteps[i]);
            ip_in(
                ns,
                &["addr", "replace", &format!("{vtep}/24"), "dev", "eth0"],
            );
            ip_in(
                ns,
                &[
                    "link",
                    "add",
                    BRIDGE_VXLAN,
                    "type",
                    "vxlan",
                    "id",
                    &BRIDGE_VNI.to_string(),
                    "local",
                    &vtep,
                    "dstport",
                    BRIDGE_VXLAN_PORT,
                    "dev",
                    "eth0",
                ],
            );
            ip_in(ns, &["link", "add", BRIDGE, "type", "bridge"]);
            ip_in(ns, &["link", "set", BRIDGE_VXLAN, "master", BRIDGE, "up"]);
            ip_in(
                ns,
                &[
                    "tuntap", "add", "dev", BRIDGE_TAP, "mode", "tap", "vnet_hdr",
                ],
            );
            ip_in(
                ns,
                &[
                    "link",
                    "set",
                    BRIDGE_TAP,
                    "mtu",
                    &OVERLAY_MTU.to_string(),
                    "master",
                    BRIDGE,
                    "up",
                ],
            );
            ip_in(ns, &["link", "set", BRIDGE, "up"]);
            for (j, other) in vteps.iter().enumerate() {
                if j != i {
                    let out = Command::new("ip")
                        .args(["netns", "exec", ns, "bridge", "fdb", "append"])
                        .args(["00:00:00:00:00:00", "dev", BRIDGE_VXLAN, "dst"])
                        .arg(other.to_string())
                        .output()
                        .expect("run bridge");
                    assert!(
                        out.status.success(),
                        "flood entry to {other} on {}: {}",
                        h.name,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        s
    }
}

impl Drop for PlainBridges {
    fn drop(&mut self) {
        for (ns, vtep) in self.namespaces.iter().zip(&self.vteps) {
            for dev in [BRIDGE_TAP, BRIDGE_VXLAN, BRIDGE] {
                let _ = Command::new("ip")
                    .args(["-n", ns, "link", "del", dev])
                    .output();
            }
            remove_vtep(ns, *vtep);
        }
    }
}

/// What carries the plain side's guests: switches of ours, or Linux bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlainPath {
    /// A `vinfra switch` per host, configured once ([`PlainSwitches`]).
    Switches,
    /// A kernel bridge and VXLAN device per host ([`PlainBridges`]).
    Bridge,
}

/// `argv` (a VM's QEMU command line from the lab) moved to `dir`, its one NIC on the switch's
/// tap `tap` (`-netdev tap`, virtio-net headers, as the agent attaches a NIC) with MAC `mac`,
/// and kernel command line `append`.
pub(super) fn plain_argv(
    argv: &[String],
    dir: &Path,
    tap: &str,
    mac: &str,
    append: &str,
) -> Vec<String> {
    let vm_dir = common::vm_dir_of(argv);
    let mut a = common::relocate(argv, &vm_dir, dir);
    let i = a.iter().position(|x| x == "-netdev").expect("-netdev");
    let id = a[i + 1]
        .split(',')
        .find_map(|p| p.strip_prefix("id="))
        .expect("the netdev's id")
        .to_string();
    a[i + 1] = format!("tap,id={id},ifname={tap},script=no,downscript=no,vnet_hdr=on");
    let j = a
        .iter()
        .position(|x| x.starts_with("virtio-net-pci,"))
        .expect("the NIC's -device");
    a[j] = a[j]
        .split(',')
        .map(|p| {
            if p.starts_with("mac=") {
                format!("mac={mac}")
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let k = a.iter().position(|x| x == "-append").expect("-append");
    a[k + 1] = append.to_string();
    a
}
