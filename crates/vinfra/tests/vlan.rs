//! VLAN networks end to end in a 2-host lab with a "physical network": every host's switch has
//! a trunk (`trunk0`) into one Linux bridge that forwards tagged frames as they are, and a
//! top-of-rack switch on that bridge gives VLAN 100 a physical endpoint, 10.81.0.1.
//!
//! - A VM on VLAN network `v100` on h1 pings the endpoint and gets replies; a VM on `v100` on
//!   h2 reaches the first one through the bridge (VLAN networks have no flood lists: the trunks
//!   learn).
//! - On the wire (h1's bridge port), every frame of the VM carries the 802.1Q tag 100.
//! - A VM on `v200`, the same subnet and the same address as the first VM, next to it on h1,
//!   reaches nothing: its pings fail, its frames on the wire carry tag 200 only, and the
//!   endpoint never receives one of them (the top-of-rack switch drops them as an unknown VLAN).

mod common;

use std::fs::File;
use std::time::Duration;

use common::{api, can_run_labs, create_nic_vm, start_named_lab, vm_pings, wait_for, NicAddress};
use vinfra_lab::Lab;
use vinfra_switch_control::SwitchClient;
use vinfra_switchd::sys::PacketSocket;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::VmSummary;

const SUBNET: &str = "10.81.0.0/24";
const ENDPOINT_IP: &str = "10.81.0.1";
const A_IP: &str = "10.81.0.10";
const B_IP: &str = "10.81.0.20";

fn create_vlan_network(lab: &Lab, name: &str, vlan_id: u32) {
    let req = CreateNetworkRequest {
        name: name.into(),
        kind: NetworkKind::Vlan,
        vni: None,
        vlan_id: Some(vlan_id),
        subnet: SUBNET.into(),
        gateway: Some(ENDPOINT_IP.into()),
        mtu: None,
    };
    api(lab)
        .create_network(&req)
        .unwrap_or_else(|e| panic!("create network {name}: {e}"));
}

/// The MAC address of a VM's first NIC, as bytes.
fn mac_of(vm: &VmSummary) -> [u8; 6] {
    let text = vm.spec.nics[0]
        .mac
        .as_deref()
        .expect("the console gave a MAC");
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

/// A capture on interface `dev` of namespace `ns`: an AF_PACKET socket that sees the frames
/// the interface receives (not the ones it sends), with 802.1Q tags restored.
fn capture(ns: &str, dev: &str) -> PacketSocket {
    let (ns, dev) = (ns.to_string(), dev.to_string());
    std::thread::spawn(move || {
        let file = File::open(format!("/run/netns/{ns}")).expect("open the namespace");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        PacketSocket::open(&dev).unwrap_or_else(|e| panic!("capture on {dev} in {ns}: {e}"))
    })
    .join()
    .expect("capture thread")
}

/// Every frame queued on `socket` now.
fn drain(socket: &PacketSocket, into: &mut Vec<Vec<u8>>) {
    let mut buf = vec![0u8; 4096];
    while let Ok(r) = socket.recv(&mut buf) {
        into.push(buf[r].to_vec());
    }
}

/// The 802.1Q VLAN ID of a frame, `None` when it is untagged.
fn vid(frame: &[u8]) -> Option<u16> {
    (frame.len() >= 18 && frame[12..14] == [0x81, 0x00])
        .then(|| u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
}

fn from(frames: &[Vec<u8>], mac: [u8; 6]) -> Vec<&Vec<u8>> {
    frames
        .iter()
        .filter(|f| f.len() >= 14 && f[6..12] == mac)
        .collect()
}

#[test]
fn vlan_networks_reach_the_physical_network_tagged_and_stay_apart() {
    if !can_run_labs() {
        return;
    }
    let mut lab = start_named_lab("net-vlan", 2, |_| {});
    let endpoint = lab
        .lab_mut()
        .add_vlan_endpoint(100, &format!("{ENDPOINT_IP}/24"))
        .unwrap_or_else(|e| panic!("VLAN 100 endpoint: {e}"));
    let status = lab.status();
    for p in &status.processes {
        assert!(p.alive, "lab process {} ({}) runs", p.name, p.pid);
    }
    assert!(
        status.processes.iter().any(|p| p.name == "phys switch"),
        "lab status shows the top-of-rack switch: {:?}",
        status.processes
    );
    let hosts = api(&lab).hosts().expect("GET hosts");
    for h in &hosts {
        assert_eq!(h.trunk.as_deref(), Some("trunk0"), "{h:?}");
    }

    let phys = lab
        .state()
        .phys_namespace
        .clone()
        .expect("the lab has a physical network");
    // What h1 puts on the wire, and what the endpoint receives.
    let wire_h1 = capture(&phys, &vinfra_lab::net::trunk_port(1));
    let at_endpoint = capture(&phys, &endpoint.tap);

    create_vlan_network(&lab, "v100", 100);
    create_vlan_network(&lab, "v200", 200);
    let a = create_nic_vm(
        &lab,
        "a",
        "h1",
        "v100",
        NicAddress::Static(A_IP),
        &format!("vinfra.ping={}", ENDPOINT_IP),
    );
    let b = create_nic_vm(
        &lab,
        "b",
        "h2",
        "v100",
        NicAddress::Static(B_IP),
        &format!("vinfra.ping={}", A_IP),
    );
    // c has a's address on v200, next to a on h1, and pings the endpoint's address.
    let c = create_nic_vm(
        &lab,
        "c",
        "h1",
        "v200",
        NicAddress::Static(A_IP),
        &format!("vinfra.ping={}", ENDPOINT_IP),
    );
    for v in [&a, &b, &c] {
        lab.wait_console(&v.name, "VINFRA-GUEST BOOTED", common::BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("VM {} did not boot: {e}", v.name));
    }

    // a reaches the physical endpoint, b reaches a across the physical bridge.
    wait_for(
        "a's pings of the endpoint to succeed",
        Duration::from_secs(60),
        || {
            vm_pings(&lab, "a", ENDPOINT_IP)
                .contains(&true)
                .then_some(())
        },
    );
    wait_for("b's pings of a to succeed", Duration::from_secs(60), || {
        vm_pings(&lab, "b", A_IP).contains(&true).then_some(())
    });
    // c has tried as long as that took, and a few times more: never once an answer.
    let c_tries = wait_for("c to try 10 pings", Duration::from_secs(60), || {
        let p = vm_pings(&lab, "c", ENDPOINT_IP);
        (p.len() >= 10).then_some(p)
    });
    assert!(
        c_tries.iter().all(|ok| !ok),
        "c on v200 reached the VLAN 100 endpoint: {c_tries:?}"
    );

    // On the wire: a's frames carry tag 100, c's tag 200, nothing of either leaves untagged.
    let mut wire = Vec::new();
    drain(&wire_h1, &mut wire);
    let (a_mac, c_mac) = (mac_of(&a), mac_of(&c));
    let a_frames = from(&wire, a_mac);
    let c_frames = from(&wire, c_mac);
    assert!(!a_frames.is_empty(), "no frame of a on h1's trunk");
    assert!(!c_frames.is_empty(), "no frame of c on h1's trunk");
    for f in &a_frames {
        assert_eq!(vid(f), Some(100), "a's frame on the wire: {f:02x?}");
    }
    for f in &c_frames {
        assert_eq!(vid(f), Some(200), "c's frame on the wire: {f:02x?}");
    }

    // The endpoint got a's frames, untagged on its access port, and none of c's.
    let mut received = Vec::new();
    drain(&at_endpoint, &mut received);
    assert!(
        !from(&received, a_mac).is_empty(),
        "the endpoint received nothing from a"
    );
    assert!(
        from(&received, c_mac).is_empty(),
        "the VLAN 100 endpoint received frames of c on v200"
    );
    assert!(
        received.iter().all(|f| vid(f).is_none()),
        "tagged frames on the endpoint's access port"
    );
    // c's frames did reach the top-of-rack switch, which has no VLAN 200: dropped there.
    let counters = SwitchClient::connect(&lab.tor_control())
        .and_then(|mut t| t.counters())
        .unwrap_or_else(|e| panic!("top-of-rack switch counters: {e}"));
    let unknown = counters
        .port(vinfra_lab::TOR_TRUNK_PORT)
        .expect("the top-of-rack switch has its trunk")
        .traffic
        .dropped("unknown_vlan");
    assert!(
        unknown >= 10,
        "the top-of-rack switch dropped {unknown} frames of unknown VLANs: {counters:?}"
    );
    eprintln!(
        "h1's trunk: {} frames of a (VLAN 100), {} of c (VLAN 200); the endpoint received {} \
         frames, {} of them from a; the top-of-rack switch dropped {unknown} of unknown VLANs",
        a_frames.len(),
        c_frames.len(),
        received.len(),
        from(&received, a_mac).len()
    );
    // The operator sees the same through the API and `vinfra host show h1 --switch`: the
    // trunk carried frames both ways, and a's NIC port is listed under its name.
    let h1 = api(&lab).host_switch("h1").expect("GET h1's switch");
    let trunk = h1.trunk.as_ref().expect("h1's switch has a trunk");
    for (dir, n) in [("rx", trunk.rx_packets), ("tx", trunk.tx_packets)] {
        assert!(n > 0, "h1's trunk {dir} packets {n}: {h1:?}");
    }
    let env = common::cli_env(&lab);
    let out = common::vinfra(&["host", "show", "h1", "--switch"], &common::refs(&env));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vinfra host show h1 --switch: {out:?}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("VLAN trunk")),
        "no trunk row: {text}"
    );
    assert!(
        text.lines().any(|l| l.contains(" a ")
            && l.contains("v100")
            && l.contains(a.spec.nics[0].mac.as_deref().unwrap_or("?"))),
        "no row for a's NIC: {text}"
    );
    lab.down();
}
