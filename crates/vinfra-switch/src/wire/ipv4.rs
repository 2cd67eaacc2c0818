//! IPv4 headers (RFC 791), with the header checksum.

use core::net::Ipv4Addr;

use super::checksum;
use super::error::{Error, Layer};
use super::field::{get_array, get_u16, get_u8, set_bytes, set_u16, set_u8, Field};

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    /// The first 16-bit word: version, header length, DSCP and ECN.
    pub const FIRST_WORD: Field = 0..2;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    /// The 16-bit word of the time to live and the protocol.
    pub const TTL_PROTOCOL: Field = 8..10;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// IP protocol numbers used here.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// A view over an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header, the header with options and the total length all lie inside
    /// the buffer, and that the lengths are consistent. Bytes after the total length (Ethernet
    /// padding) are allowed.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated(Layer::Ipv4));
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(Error::BadIpv4Header);
        }
        if len < header_len {
            return Err(Error::Truncated(Layer::Ipv4));
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::BadIpv4Header);
        }
        if len < total_len {
            return Err(Error::Truncated(Layer::Ipv4));
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field.
    pub fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> u8 {
        (get_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// DSCP and ECN byte.
    pub fn dscp_ecn(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// DSCP: the upper six bits of the DSCP and ECN byte.
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    /// Total length (header and payload).
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x4000 != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) << 3
    }

    /// A fragment (more fragments follow, or not the first one).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// Whether the header checksum is correct (false when the header is not in the buffer).
    pub fn verify_checksum(&self) -> bool {
        match self.buffer.as_ref().get(..usize::from(self.header_len())) {
            Some(header) if header.len() >= HEADER_LEN => checksum::sum(header) == 0xffff,
            _ => false,
        }
    }

    /// The payload: from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        self.buffer.as_ref().get(range).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length (bytes, a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: u8) {
        set_u8(
            self.buffer.as_mut(),
            field::VER_IHL,
            0x40 | ((header_len / 4) & 0x0f),
        );
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::DSCP_ECN, value);
    }

    /// Sets the DSCP (its low six bits), keeping the ECN bits, and updates the header checksum
    /// incrementally (RFC 1624): a valid header stays valid without being summed again.
    pub fn set_dscp(&mut self, dscp: u8) {
        let buf = self.buffer.as_mut();
        let old = get_u16(buf, field::FIRST_WORD);
        let ecn = get_u8(buf, field::DSCP_ECN) & 0x03;
        set_u8(buf, field::DSCP_ECN, (dscp & 0x3f) << 2 | ecn);
        let new = get_u16(buf, field::FIRST_WORD);
        if new != old {
            let sum = checksum::update(get_u16(buf, field::CHECKSUM), old, new);
            set_u16(buf, field::CHECKSUM, sum);
        }
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets flags and fragment offset: DF as given, MF clear, offset 0.
    pub fn set_dont_frag_only(&mut self, dont_frag: bool) {
        set_u16(
            self.buffer.as_mut(),
            field::FLG_OFF,
            if dont_frag { 0x4000 } else { 0 },
        );
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::TTL, value);
    }

    /// Decrements the time to live by one (a router forwarding the packet) and updates the
    /// header checksum incrementally (RFC 1624); a TTL of 0 stays 0. A valid header stays valid.
    pub fn decrement_ttl(&mut self) {
        let buf = self.buffer.as_mut();
        let ttl = get_u8(buf, field::TTL);
        if ttl == 0 {
            return;
        }
        let old = get_u16(buf, field::TTL_PROTOCOL);
        set_u8(buf, field::TTL, ttl - 1);
        let new = get_u16(buf, field::TTL_PROTOCOL);
        let sum = checksum::update(get_u16(buf, field::CHECKSUM), old, new);
        set_u16(buf, field::CHECKSUM, sum);
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::PROTOCOL, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::DST_ADDR, &value.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let header_len = usize::from(self.header_len());
        let sum = self
            .buffer
            .as_ref()
            .get(..header_len)
            .map_or(0, checksum::sum);
        set_u16(self.buffer.as_mut(), field::CHECKSUM, !sum);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }
}

/// A parsed IPv4 header (options are skipped, not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP and ECN.
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// Parses a packet: checks lengths, the version and the header checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Ipv4Repr, Error> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::BadIpv4Header);
        }
        if !packet.verify_checksum() {
            return Err(Error::BadIpv4Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header (ident 0, DF set) with its checksum into the start of the view,
    /// whose buffer must hold the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        let total = u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| Error::Exhausted)?;
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Exhausted);
        }
        packet.set_version_and_header_len(20);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total);
        packet.set_ident(0);
        packet.set_dont_frag_only(true);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            protocol: protocol::UDP,
            payload_len: 4,
            ttl: 64,
            dscp_ecn: 0,
        }
    }

    fn packet() -> Vec<u8> {
        let mut buf = vec![0u8; 24];
        repr()
            .emit(&mut Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        buf[20..].copy_from_slice(&[1, 2, 3, 4]);
        buf
    }

    #[test]
    fn round_trip_and_checksum() {
        let buf = packet();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(p.dont_frag() && !p.is_fragment());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn known_checksum() {
        // Wikipedia's IPv4 header checksum example.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut buf = header;
        Packet::new_unchecked(&mut buf[..]).fill_checksum();
        assert_eq!(&buf[10..12], &[0xb8, 0x61]);
    }

    #[test]
    fn bad_checksum_version_and_lengths() {
        let mut buf = packet();
        buf[10] ^= 0xff;
        assert_eq!(
            Ipv4Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(Error::BadIpv4Checksum)
        );
        let mut buf = packet();
        buf[0] = 0x65;
        assert_eq!(
            Ipv4Repr::parse(&Packet::new_unchecked(&buf[..])),
            Err(Error::BadIpv4Header)
        );
        let mut buf = packet();
        buf[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadIpv4Header)
        );
        let mut buf = packet();
        buf[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::BadIpv4Header)
        );
        let mut buf = packet();
        buf[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&buf[..]).err(),
            Some(Error::Truncated(Layer::Ipv4))
        );
    }

    #[test]
    fn truncated_at_every_length() {
        let buf = packet();
        for len in 0..buf.len() {
            assert_eq!(
                Packet::new_checked(&buf[..len]).err(),
                Some(Error::Truncated(Layer::Ipv4)),
                "length {len}"
            );
        }
    }

    #[test]
    fn padding_after_total_length_is_allowed() {
        let mut buf = packet();
        buf.extend_from_slice(&[0; 10]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn set_dscp_keeps_ecn_and_a_valid_checksum() {
        for ecn in 0..4u8 {
            for dscp in 0..64u8 {
                let mut buf = packet();
                buf[1] = 0xa8 | ecn;
                Packet::new_unchecked(&mut buf[..]).fill_checksum();
                let mut p = Packet::new_unchecked(&mut buf[..]);
                p.set_dscp(dscp);
                assert_eq!((p.dscp(), p.dscp_ecn() & 3), (dscp, ecn));
                assert!(p.verify_checksum(), "DSCP {dscp} ECN {ecn}");
                let mut again = buf.clone();
                Packet::new_unchecked(&mut again[..]).fill_checksum();
                assert_eq!(buf, again);
            }
        }
        // With options, and on a buffer too short for the header (nothing happens).
        let mut buf = [0u8; 28];
        buf[..20].copy_from_slice(&packet()[..20]);
        buf[0] = 0x46;
        buf[3] = 28;
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]);
        Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dscp(46);
        assert!(p.verify_checksum() && p.dscp() == 46);
        Packet::new_unchecked(&mut [0u8; 1][..]).set_dscp(46);
    }

    #[test]
    fn decrement_ttl_keeps_a_valid_checksum() {
        for ttl in 1..=255u8 {
            let mut buf = packet();
            buf[8] = ttl;
            Packet::new_unchecked(&mut buf[..]).fill_checksum();
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.decrement_ttl();
            assert_eq!(p.ttl(), ttl - 1);
            assert!(p.verify_checksum(), "TTL {ttl}");
            let mut again = buf.clone();
            Packet::new_unchecked(&mut again[..]).fill_checksum();
            assert_eq!(buf[10..12], again[10..12], "TTL {ttl}");
        }
        // TTL 0 stays; a short buffer is left alone.
        let mut buf = packet();
        buf[8] = 0;
        Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let before = buf.clone();
        Packet::new_unchecked(&mut buf[..]).decrement_ttl();
        assert_eq!(buf, before);
        Packet::new_unchecked(&mut [0u8; 4][..]).decrement_ttl();
    }

    #[test]
    fn fragments() {
        let mut buf = packet();
        buf[6] = 0x20; // MF
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        assert!(p.is_fragment());
    }
}
