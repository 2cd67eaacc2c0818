//! Ethernet II frames, and the L2 header with an optional 802.1Q tag ([`EthernetRepr`]).

use super::error::{Error, Layer};
pub use super::ether_type::EtherType;
use super::field::{get_array, get_u16, set_bytes, set_u16, Field, Rest};
use super::vlan::{self, VlanTci};

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address from the first six bytes of `bytes`, if there are six.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        bytes
            .get(..6)
            .and_then(|s| <[u8; 6]>::try_from(s).ok())
            .map(MacAddr)
    }

    /// The six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group address: the least significant bit of the first byte is set (includes broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// An individual (unicast) address.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl core::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// Length of an Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view over an Ethernet II frame (without FCS).
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer that holds at least the Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header is inside the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated(Layer::Ethernet))
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::DESTINATION))
    }

    /// Source address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SOURCE))
    }

    /// EtherType (or TPID when tagged).
    pub fn ethertype(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::DESTINATION, &value.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SOURCE, &value.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }

    /// The bytes after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD)
            .unwrap_or(&mut [])
    }
}

/// A parsed L2 header: addresses, an optional single 802.1Q tag and the EtherType of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst: MacAddr,
    /// Source address.
    pub src: MacAddr,
    /// The 802.1Q tag, if the frame has one.
    pub vlan: Option<VlanTci>,
    /// EtherType of the payload (after the tag, if any).
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Parses the L2 header of `frame`; returns it and the offset of the payload.
    ///
    /// An 802.1ad outer tag or two stacked 802.1Q tags are [`Error::QinqUnsupported`].
    pub fn parse(frame: &[u8]) -> Result<(EthernetRepr, usize), Error> {
        let eth = Frame::new_checked(frame)?;
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        match eth.ethertype() {
            EtherType::QINQ => Err(Error::QinqUnsupported),
            EtherType::VLAN => {
                let tag = vlan::Packet::new_checked(eth.payload())?;
                let inner = tag.ethertype();
                if inner == EtherType::VLAN || inner == EtherType::QINQ {
                    return Err(Error::QinqUnsupported);
                }
                let repr = EthernetRepr {
                    dst,
                    src,
                    vlan: Some(tag.tci()),
                    ethertype: inner,
                };
                Ok((repr, HEADER_LEN + vlan::HEADER_LEN))
            }
            ethertype => Ok((
                EthernetRepr {
                    dst,
                    src,
                    vlan: None,
                    ethertype,
                },
                HEADER_LEN,
            )),
        }
    }

    /// Length of the header this repr emits: 14, or 18 with a tag.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            HEADER_LEN + vlan::HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        if buf.len() < self.header_len() {
            return Err(Error::Exhausted);
        }
        let mut frame = Frame::new_unchecked(&mut *buf);
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        match self.vlan {
            None => frame.set_ethertype(self.ethertype),
            Some(tci) => {
                frame.set_ethertype(EtherType::VLAN);
                let mut tag = vlan::Packet::new_unchecked(frame.payload_mut());
                tag.set_tci(tci);
                tag.set_ethertype(self.ethertype);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 2]);

    #[test]
    fn untagged_round_trip() {
        let repr = EthernetRepr {
            dst: A,
            src: B,
            vlan: None,
            ethertype: EtherType::IPV4,
        };
        let mut buf = vec![0u8; repr.header_len() + 3];
        repr.emit(&mut buf).unwrap();
        assert_eq!(
            &buf[..14],
            &[0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2, 0x08, 0x00]
        );
        let (parsed, offset) = EthernetRepr::parse(&buf).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(offset, 14);
    }

    #[test]
    fn tagged_round_trip() {
        let tci = VlanTci {
            pcp: 5,
            dei: true,
            vid: 100,
        };
        let repr = EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: A,
            vlan: Some(tci),
            ethertype: EtherType::ARP,
        };
        let mut buf = vec![0u8; 18];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[12..18], &[0x81, 0x00, 0xb0, 0x64, 0x08, 0x06]);
        assert_eq!(EthernetRepr::parse(&buf).unwrap(), (repr, 18));
    }

    #[test]
    fn qinq_and_stacked_tags_are_refused() {
        let mut buf = [0u8; 22];
        buf[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(EthernetRepr::parse(&buf), Err(Error::QinqUnsupported));
        buf[12..14].copy_from_slice(&[0x81, 0x00]);
        buf[16..18].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(EthernetRepr::parse(&buf), Err(Error::QinqUnsupported));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut buf = [0u8; 18];
        buf[12..14].copy_from_slice(&[0x81, 0x00]);
        for len in 0..14 {
            assert_eq!(
                EthernetRepr::parse(&buf[..len]),
                Err(Error::Truncated(Layer::Ethernet))
            );
        }
        for len in 14..18 {
            assert_eq!(
                EthernetRepr::parse(&buf[..len]),
                Err(Error::Truncated(Layer::Vlan))
            );
        }
        assert!(EthernetRepr::parse(&buf).is_ok());
    }

    #[test]
    fn unchecked_view_on_short_buffer_reads_zeros() {
        let mut short = [0xffu8; 3];
        let mut frame = Frame::new_unchecked(&mut short[..]);
        assert_eq!(frame.ethertype(), EtherType(0));
        assert!(frame.payload().is_empty());
        frame.set_src_addr(A);
        assert_eq!(short, [0xff; 3]);
    }

    #[test]
    fn address_classes() {
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(A.is_unicast());
        assert_eq!(A.to_string(), "52:54:00:00:00:01");
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3]), None);
    }
}
