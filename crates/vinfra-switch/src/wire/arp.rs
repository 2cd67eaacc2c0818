//! ARP for Ethernet/IPv4 (RFC 826).

use core::net::Ipv4Addr;

use super::error::{Error, Layer};
use super::ether_type::EtherType;
use super::ethernet::MacAddr;
use super::field::{get_array, get_u16, get_u8, set_bytes, set_u16, set_u8, Field};

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// The hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// A view over an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least 28 bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the Ethernet/IPv4 fields are inside the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error::Truncated(Layer::Arp))
        } else {
            Ok(())
        }
    }

    /// Hardware type.
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type.
    pub fn protocol_type(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HLEN)
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::PLEN)
    }

    /// Operation code.
    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SHA))
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SPA))
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::THA))
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets hardware type, protocol type and both address lengths for Ethernet/IPv4.
    pub fn set_ethernet_ipv4(&mut self) {
        let buf = self.buffer.as_mut();
        set_u16(buf, field::HTYPE, HTYPE_ETHERNET);
        set_u16(buf, field::PTYPE, EtherType::IPV4.0);
        set_u8(buf, field::HLEN, 6);
        set_u8(buf, field::PLEN, 4);
    }

    /// Sets the operation code.
    pub fn set_operation(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::OPER, value);
    }

    /// Sets the sender hardware address.
    pub fn set_source_hardware_addr(&mut self, value: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SHA, &value.0);
    }

    /// Sets the sender protocol address.
    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SPA, &value.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_hardware_addr(&mut self, value: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::THA, &value.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::TPA, &value.octets());
    }
}

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Request (1).
    Request,
    /// Reply (2).
    Reply,
    /// Any other code.
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(v: ArpOperation) -> u16 {
        match v {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Operation.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub source_hardware_addr: MacAddr,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: MacAddr,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses a checked packet; anything but Ethernet/IPv4 is [`Error::UnsupportedArp`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<ArpRepr, Error> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != EtherType::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::UnsupportedArp);
        }
        Ok(ArpRepr {
            operation: packet.operation().into(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Length of the emitted packet.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into a view of at least [`PACKET_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        packet.check_len().map_err(|_| Error::Exhausted)?;
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation.into());
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn round_trip() {
        let repr = request();
        let mut buf = [0u8; PACKET_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(&buf[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&buf[24..28], &[10, 0, 0, 2]);
        let parsed = ArpRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
    }

    #[test]
    fn truncated_at_every_length() {
        let mut buf = [0u8; PACKET_LEN];
        request()
            .emit(&mut Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        for len in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&buf[..len]).err(),
                Some(Error::Truncated(Layer::Arp))
            );
            assert_eq!(
                ArpRepr::parse(&Packet::new_unchecked(&buf[..len])),
                Err(Error::Truncated(Layer::Arp))
            );
        }
    }

    #[test]
    fn non_ethernet_ipv4_is_unsupported() {
        let mut buf = [0u8; PACKET_LEN];
        request()
            .emit(&mut Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bad = buf;
            bad[at] = value;
            assert_eq!(
                ArpRepr::parse(&Packet::new_unchecked(&bad[..])),
                Err(Error::UnsupportedArp)
            );
        }
    }

    #[test]
    fn emit_into_short_buffer_fails() {
        let mut buf = [0u8; 10];
        assert_eq!(
            request().emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Exhausted)
        );
    }
}
