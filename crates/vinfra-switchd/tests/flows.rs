//! Flow accounting through the daemon's control socket: UDP and ICMP from one VM port to
//! another counted with exact packets and IP bytes by `take_flows`, deltas reset by a take,
//! `set_flow_accounting` off counting nothing and listed by `get_config`.

mod common;

use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::*;
use vinfra_switch_control::{Attachment, FlowDirection, PortSpec, Request};

fn vm_port(id: u32, network: u32, socket: &Path, peer: &Path) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu: 1500,
        attach: Attachment::Vm {
            network,
            socket: socket.to_owned(),
            peer: peer.to_owned(),
            owner: None,
        },
    })
}

#[test]
fn take_flows_answers_what_a_vm_port_sent() {
    if !common::needs().met() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("h");
    let d = dir.path();
    let (vm1_path, vm2_path) = (d.join("vm1.sock"), d.join("vm2.sock"));
    let (sw1, sw2) = (d.join("sw1.sock"), d.join("sw2.sock"));
    let vm1 = UnixDatagram::bind(&vm1_path).unwrap();
    let vm2 = UnixDatagram::bind(&vm2_path).unwrap();
    vm2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let daemon = Daemon::start(&host, d, None);
    let mut client = daemon.client();
    client
        .apply(&[
            overlay(1, 42),
            vm_port(1, 1, &sw1, &vm1_path),
            vm_port(2, 1, &sw2, &vm2_path),
        ])
        .unwrap();
    let (mac1, mac2) = ([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 83, 0, 1), Ipv4Addr::new(10, 83, 0, 2));
    // UDP 12345 -> 53 with 100 bytes of data: 128 IP bytes.
    let mut udp = vec![0x30, 0x39, 0, 53, 0, 108, 0, 0];
    udp.extend([7u8; 100]);
    let udp_frame = frame(mac2, mac1, None, 0x0800, &ipv4(ip1, ip2, 17, &udp));
    // ICMP echo request, identifier 0x0102, 56 bytes of data (checksum not checked by the
    // switch): 84 IP bytes.
    let mut echo = vec![8, 0, 0, 0, 1, 2, 0, 1];
    echo.extend([0u8; 56]);
    let echo_frame = frame(mac2, mac1, None, 0x0800, &ipv4(ip1, ip2, 1, &echo));
    let mut buf = vec![0u8; 65536];
    let mut deliver = |f: &[u8], n: usize| {
        for _ in 0..n {
            vm1.send_to(f, &sw1).unwrap();
            let got = vm2.recv(&mut buf).expect("the frame reaches vm2");
            assert_eq!(&buf[..got], f);
        }
    };

    // The first take starts the interval.
    let first = client.take_flows().unwrap();
    assert!(first.flows.is_empty(), "{first:#?}");
    assert_eq!((first.capacity, first.interval_ms), (65_536, 0));
    deliver(&udp_frame, 5);
    deliver(&echo_frame, 2);
    std::thread::sleep(Duration::from_millis(20));
    let taken = client.take_flows().unwrap();
    assert_eq!(taken.flows.len(), 2, "{taken:#?}");
    assert_eq!(taken.entries, 2);
    assert_eq!(taken.untracked_packets, 0);
    assert!(taken.interval_ms >= 20, "{taken:#?}");
    let udp_flow = taken.flows.iter().find(|f| f.protocol == 17).unwrap();
    assert_eq!(
        (udp_flow.network, udp_flow.port, udp_flow.router),
        (1, 1, None)
    );
    assert_eq!((udp_flow.src, udp_flow.dst), (ip1, ip2));
    assert_eq!((udp_flow.src_port, udp_flow.dst_port), (12345, 53));
    assert_eq!((udp_flow.packets, udp_flow.bytes), (5, 5 * 128));
    assert_eq!(udp_flow.direction, FlowDirection::EastWest);
    let echo_flow = taken.flows.iter().find(|f| f.protocol == 1).unwrap();
    assert_eq!((echo_flow.src_port, echo_flow.dst_port), (0x0102, 0x0102));
    assert_eq!((echo_flow.packets, echo_flow.bytes), (2, 2 * 84));

    // Deltas: only what came since.
    deliver(&udp_frame, 1);
    let taken = client.take_flows().unwrap();
    assert_eq!(taken.flows.len(), 1, "{taken:#?}");
    assert_eq!((taken.flows[0].packets, taken.flows[0].bytes), (1, 128));

    // Off: nothing counted, listed by get_config; on again with a bound of one flow.
    let off = Request::SetFlowAccounting {
        enabled: false,
        max_flows: None,
    };
    client.apply(std::slice::from_ref(&off)).unwrap();
    deliver(&udp_frame, 3);
    let taken = client.take_flows().unwrap();
    assert!(taken.flows.is_empty(), "{taken:#?}");
    assert_eq!(taken.entries, 0);
    assert!(client.config().unwrap().contains(&off));
    client
        .apply(&[Request::SetFlowAccounting {
            enabled: true,
            max_flows: Some(1),
        }])
        .unwrap();
    deliver(&udp_frame, 2);
    deliver(&echo_frame, 3);
    let taken = client.take_flows().unwrap();
    assert_eq!(taken.flows.len(), 1, "{taken:#?}");
    assert_eq!(taken.flows[0].packets, 2);
    assert_eq!((taken.capacity, taken.untracked_packets), (1, 3));
    // A bound above the limit is refused.
    assert!(client
        .apply(&[Request::SetFlowAccounting {
            enabled: true,
            max_flows: Some(1 << 40),
        }])
        .is_err());
}
