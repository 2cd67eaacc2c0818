use super::*;

/// A frame to `dst` from `src` carrying an IPv4 header (`ihl_byte`, fragment field `frag`,
/// protocol `proto`, TTL 64) and a transport header with `flags` at byte 13.
fn frame(dst0: u8, ihl_byte: u8, frag: u16, proto: u8, flags: u8) -> Vec<u8> {
    let mut f = vec![dst0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = vec![
        ihl_byte, 0, 0, 60, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut l4 = vec![
        0x13, 0x88, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0, 0, 0, 0, 0, 0,
    ];
    l4.extend_from_slice(&[0; 20]);
    f.extend_from_slice(&l4);
    f
}

#[test]
fn only_unicast_plain_ipv4_tcp_without_control_flags_and_udp_are_candidates() {
    let p = PortId(3);
    let k = candidate(p, &frame(2, 0x45, 0x4000, 6, 0x10), false).unwrap();
    assert_eq!(
        (k.in_port, k.protocol, k.src_port, k.dst_port),
        (p, 6, 5000, 80)
    );
    assert_eq!(k.src, Ipv4Addr::new(10, 0, 0, 1));
    assert!(candidate(p, &frame(2, 0x45, 0, 17, 0), false).is_some());
    for (dst0, ihl, frag, proto, flags) in [
        (3, 0x45, 0, 6, 0x10),    // multicast destination
        (2, 0x46, 0, 6, 0x10),    // options
        (2, 0x45, 0x2000, 17, 0), // more fragments
        (2, 0x45, 0x0010, 17, 0), // a later fragment
        (2, 0x45, 0, 1, 0),       // ICMP
        (2, 0x45, 0, 6, 0x02),    // SYN
        (2, 0x45, 0, 6, 0x11),    // FIN
        (2, 0x45, 0, 6, 0x14),    // RST
    ] {
        assert!(candidate(p, &frame(dst0, ihl, frag, proto, flags), false).is_none());
    }
    assert!(candidate(p, &frame(2, 0x45, 0, 6, 0x10)[..40], false).is_none());
}

#[test]
fn an_icmp_echo_is_keyed_by_its_identifier_and_type() {
    let mut f = frame(2, 0x45, 0, 1, 0);
    f[34..42].copy_from_slice(&[8, 0, 0xab, 0xcd, 0x12, 0x34, 0, 1]);
    let k = candidate(PortId(1), &f, false).unwrap();
    assert_eq!((k.protocol, k.src_port, k.dst_port), (1, 0x1234, 0x0800));
    f[34] = 0;
    assert_eq!(candidate(PortId(1), &f, false).unwrap().dst_port, 0);
    // Code other than 0, or another type: not a candidate.
    f[35] = 1;
    assert!(candidate(PortId(1), &f, false).is_none());
}
