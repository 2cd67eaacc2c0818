//! The switch's DHCP responder: DISCOVER → OFFER, REQUEST → ACK or NAK, unknown clients,
//! and DHCP frames flooded as before on networks without the responder.

use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::datapath::{
    ConfigCommand, ConfigError, DhcpConfig, DropReason, NetworkId, PortConfig, PortId, PortKind,
    Segment, Switch, SwitchSettings, TxBatch, DHCP_SERVER_MAC,
};
use vinfra_switch::wire::{dhcp, ipv4, udp};
use vinfra_switch::wire::{
    DhcpMessageType, DhcpOp, DhcpRepr, EtherType, EthernetRepr, Ipv4Repr, MacAddr, UdpRepr, Vni,
};

const NET: NetworkId = NetworkId(1);
const VM: PortId = PortId(1);
const OTHER: PortId = PortId(2);
const CLIENT: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x10]);
const GATEWAY_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x01]);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 9, 0, last)
}

fn dhcp_config(gateway: Option<Ipv4Addr>) -> DhcpConfig {
    DhcpConfig {
        prefix_len: 24,
        gateway,
        server: Some(ip(2)),
        mtu: None,
        lease_secs: 3600,
    }
}

fn switch(dhcp: Option<DhcpConfig>) -> Switch {
    let port = |id, kind| {
        ConfigCommand::AddPort(PortConfig {
            id,
            kind,
            mtu: 1450,
        })
    };
    let mut commands = vec![
        ConfigCommand::AddNetwork {
            id: NET,
            segment: Segment::Overlay {
                vni: Vni::new(700).unwrap(),
            },
        },
        port(VM, PortKind::Vm { network: NET }),
        port(OTHER, PortKind::Host { network: NET }),
        ConfigCommand::AddArpEntry {
            network: NET,
            ip: ip(10),
            mac: CLIENT,
        },
        ConfigCommand::AddArpEntry {
            network: NET,
            ip: ip(1),
            mac: GATEWAY_MAC,
        },
    ];
    if dhcp.is_some() {
        commands.push(ConfigCommand::SetDhcp {
            network: NET,
            config: dhcp,
        });
    }
    Switch::with_commands(SwitchSettings::default(), commands).unwrap()
}

fn client_message(
    mac: MacAddr,
    message_type: DhcpMessageType,
    requested: Option<Ipv4Addr>,
) -> Vec<u8> {
    let message = DhcpRepr {
        op: DhcpOp::Request,
        xid: 0x0102_0304,
        secs: 0,
        broadcast: false,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        client_mac: mac,
        message_type,
        requested_ip: requested,
        server_id: None,
        lease_secs: None,
        subnet_mask: None,
        router: None,
        mtu: None,
    };
    frame_with(mac, |buf| {
        message
            .emit(&mut dhcp::Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        message.buffer_len()
    })
}

/// A broadcast UDP 68 → 67 frame from `mac` whose payload `write` fills.
fn frame_with(mac: MacAddr, write: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut payload = vec![0u8; 600];
    let len = write(&mut payload);
    payload.truncate(len);
    let udp_len = udp::HEADER_LEN + len;
    let ip_repr = Ipv4Repr {
        src_addr: Ipv4Addr::UNSPECIFIED,
        dst_addr: Ipv4Addr::BROADCAST,
        protocol: ipv4::protocol::UDP,
        payload_len: udp_len,
        ttl: 64,
        dscp_ecn: 0,
    };
    let mut frame = vec![0u8; 14 + 20 + udp_len];
    frame[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    frame[6..12].copy_from_slice(&mac.0);
    frame[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    ip_repr
        .emit(&mut ipv4::Packet::new_unchecked(&mut frame[14..34]))
        .unwrap();
    let mut u = udp::Packet::new_unchecked(&mut frame[34..]);
    UdpRepr {
        src_port: 68,
        dst_port: 67,
    }
    .emit(&mut u, len)
    .unwrap();
    u.payload_mut().copy_from_slice(&payload);
    u.fill_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
    frame
}

/// Sends one frame from the VM port; returns what the switch sent.
fn send(sw: &mut Switch, frame: &[u8]) -> Vec<(PortId, Vec<u8>)> {
    let mut tx = TxBatch::new();
    sw.process(Duration::from_secs(1), [(VM, frame)], &mut tx);
    tx.iter().map(|(f, b)| (f.port, b.to_vec())).collect()
}

/// Parses a reply of the switch down to its DHCP message.
fn parse_reply(frame: &[u8]) -> (EthernetRepr, Ipv4Repr, DhcpRepr) {
    let (eth, offset) = EthernetRepr::parse(frame).unwrap();
    let ip_packet = ipv4::Packet::new_checked(&frame[offset..]).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip_packet).unwrap();
    let u = udp::Packet::new_checked(ip_packet.payload()).unwrap();
    assert_eq!((u.src_port(), u.dst_port()), (67, 68));
    assert!(u.verify_checksum(ip_repr.src_addr, ip_repr.dst_addr));
    assert_ne!(u.checksum(), 0);
    let message = DhcpRepr::parse(&dhcp::Packet::new_checked(u.payload()).unwrap()).unwrap();
    (eth, ip_repr, message)
}

fn drops(sw: &Switch, reason: DropReason) -> u64 {
    sw.port_counters(VM).unwrap().drops.get(reason)
}

#[test]
fn discover_gets_an_offer_of_the_registered_address() {
    let mut sw = switch(Some(dhcp_config(Some(ip(1)))));
    let out = send(
        &mut sw,
        &client_message(CLIENT, DhcpMessageType::Discover, None),
    );
    assert_eq!(
        out.len(),
        1,
        "answered on the ingress port only, not flooded"
    );
    assert_eq!(out[0].0, VM);
    let (eth, ip_repr, offer) = parse_reply(&out[0].1);
    assert_eq!(eth.dst, CLIENT);
    assert_eq!(
        eth.src, GATEWAY_MAC,
        "the server identifier's registered MAC"
    );
    assert_eq!(ip_repr.src_addr, ip(1));
    assert_eq!(ip_repr.dst_addr, ip(10));
    assert_eq!(offer.op, DhcpOp::Reply);
    assert_eq!(offer.message_type, DhcpMessageType::Offer);
    assert_eq!(offer.xid, 0x0102_0304);
    assert_eq!(offer.client_mac, CLIENT);
    assert_eq!(offer.yiaddr, ip(10));
    assert_eq!(offer.server_id, Some(ip(1)));
    assert_eq!(offer.router, Some(ip(1)));
    assert_eq!(offer.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(offer.lease_secs, Some(3600));
    assert_eq!(
        offer.mtu,
        Some(1450),
        "the port's MTU when none is configured"
    );
    let c = sw.network_counters(NET).unwrap();
    assert_eq!(c.dhcp_replies, 1);
    assert_eq!(c.flooded, 0);
}

#[test]
fn request_for_the_registered_address_is_acknowledged() {
    let mut config = dhcp_config(None);
    config.mtu = Some(1400);
    let mut sw = switch(Some(config));
    let out = send(
        &mut sw,
        &client_message(CLIENT, DhcpMessageType::Request, Some(ip(10))),
    );
    assert_eq!(out.len(), 1);
    let (eth, ip_repr, ack) = parse_reply(&out[0].1);
    assert_eq!(ack.message_type, DhcpMessageType::Ack);
    assert_eq!(ack.yiaddr, ip(10));
    // No gateway: the switch's own address identifies the server, and no router is sent.
    assert_eq!(ack.server_id, Some(ip(2)));
    assert_eq!(ip_repr.src_addr, ip(2));
    assert_eq!(eth.src, DHCP_SERVER_MAC);
    assert_eq!(ack.router, None);
    assert_eq!(ack.mtu, Some(1400));
    assert_eq!(sw.network_counters(NET).unwrap().dhcp_replies, 1);
}

#[test]
fn request_for_another_address_is_refused() {
    let mut sw = switch(Some(dhcp_config(Some(ip(1)))));
    let out = send(
        &mut sw,
        &client_message(CLIENT, DhcpMessageType::Request, Some(ip(99))),
    );
    assert_eq!(out.len(), 1);
    let (_, ip_repr, nak) = parse_reply(&out[0].1);
    assert_eq!(nak.message_type, DhcpMessageType::Nak);
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ip_repr.dst_addr, Ipv4Addr::BROADCAST);
    assert_eq!(nak.server_id, Some(ip(1)));
    assert_eq!(sw.network_counters(NET).unwrap().dhcp_replies, 1);
}

#[test]
fn unknown_client_gets_no_answer_and_is_counted() {
    let mut sw = switch(Some(dhcp_config(Some(ip(1)))));
    let stranger = MacAddr([0x52, 0x54, 0, 0, 0, 0x77]);
    let out = send(
        &mut sw,
        &client_message(stranger, DhcpMessageType::Discover, None),
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(drops(&sw, DropReason::DhcpUnknownClient), 1);
    let c = sw.network_counters(NET).unwrap();
    assert_eq!(c.dhcp_replies, 0);
    assert_eq!(c.flooded, 0);

    // A client hardware address that is not the frame's source is not answered either.
    let mut spoofed = client_message(CLIENT, DhcpMessageType::Discover, None);
    spoofed[6..12].copy_from_slice(&stranger.0);
    assert!(send(&mut sw, &spoofed).is_empty());
    assert_eq!(drops(&sw, DropReason::DhcpUnknownClient), 2);
}

#[test]
fn malformed_and_unanswered_messages_are_dropped_with_reasons() {
    let mut sw = switch(Some(dhcp_config(Some(ip(1)))));
    // A UDP 68 → 67 payload too short for BOOTP.
    let short = frame_with(CLIENT, |buf| {
        buf[..10].fill(1);
        10
    });
    assert!(send(&mut sw, &short).is_empty());
    assert_eq!(drops(&sw, DropReason::BadDhcp), 1);
    // A RELEASE is not answered.
    let release = client_message(CLIENT, DhcpMessageType::Release, None);
    assert!(send(&mut sw, &release).is_empty());
    assert_eq!(drops(&sw, DropReason::DhcpIgnored), 1);
    assert_eq!(sw.network_counters(NET).unwrap().flooded, 0);
}

#[test]
fn without_the_responder_dhcp_is_flooded_as_before() {
    for mut sw in [switch(None), {
        let mut sw = switch(Some(dhcp_config(Some(ip(1)))));
        sw.apply(ConfigCommand::SetDhcp {
            network: NET,
            config: None,
        })
        .unwrap();
        sw
    }] {
        let frame = client_message(CLIENT, DhcpMessageType::Discover, None);
        let out = send(&mut sw, &frame);
        assert_eq!(out, vec![(OTHER, frame)]);
        let c = sw.network_counters(NET).unwrap();
        assert_eq!((c.flooded, c.dhcp_replies), (1, 0));
    }
}

#[test]
fn dhcp_configuration_is_validated() {
    let mut sw = switch(None);
    let set = |config| ConfigCommand::SetDhcp {
        network: NET,
        config: Some(config),
    };
    let mut bad = dhcp_config(Some(ip(1)));
    bad.prefix_len = 33;
    assert_eq!(sw.apply(set(bad)), Err(ConfigError::BadPrefixLength(33)));
    let mut bad = dhcp_config(None);
    bad.server = None;
    assert_eq!(
        sw.apply(set(bad)),
        Err(ConfigError::DhcpNoServerAddress(NET))
    );
    let mut bad = dhcp_config(None);
    bad.mtu = Some(60);
    assert_eq!(sw.apply(set(bad)), Err(ConfigError::MtuTooSmall(60)));
    assert_eq!(
        sw.apply(ConfigCommand::SetDhcp {
            network: NetworkId(9),
            config: None
        }),
        Err(ConfigError::NoSuchNetwork(NetworkId(9)))
    );
    // Every prefix length converts to its mask.
    let mask = |prefix_len| {
        DhcpConfig {
            prefix_len,
            ..dhcp_config(None)
        }
        .subnet_mask()
    };
    assert_eq!(mask(32), Ipv4Addr::BROADCAST);
    assert_eq!(mask(1), Ipv4Addr::new(128, 0, 0, 0));
    assert_eq!(mask(20), Ipv4Addr::new(255, 255, 240, 0));
}
