//! UDP headers (RFC 768).

use core::net::Ipv4Addr;

use super::checksum;
use super::error::{Error, Layer};
use super::field::{get_u16, set_u16, Field};
use super::ipv4::protocol;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view over a UDP datagram.
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

    /// Checks that the header and the length it announces lie inside the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated(Layer::Udp));
        }
        let announced = usize::from(self.len());
        if announced < HEADER_LEN {
            return Err(Error::BadUdpLength);
        }
        if len < announced {
            return Err(Error::Truncated(Layer::Udp));
        }
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checksum field (0: none).
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the checksum is absent (0) or correct for the given IPv4 addresses.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let Some(datagram) = self.buffer.as_ref().get(..usize::from(len)) else {
            return false;
        };
        checksum::combine(&[
            checksum::pseudo_header(src, dst, protocol::UDP, len),
            checksum::sum(datagram),
        ]) == 0xffff
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..usize::from(self.len()))
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and stores the checksum over the pseudo-header, header and payload.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let sum = self
            .buffer
            .as_ref()
            .get(..usize::from(len))
            .map_or(0, checksum::sum);
        let total =
            !checksum::combine(&[checksum::pseudo_header(src, dst, protocol::UDP, len), sum]);
        // 0 means "no checksum": send all ones instead.
        self.set_checksum(if total == 0 { 0xffff } else { total });
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses a datagram (lengths only; see [`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<UdpRepr, Error> {
        packet.check_len()?;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Length of the emitted header.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for a payload of `payload_len` bytes, with checksum 0 (none).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        payload_len: usize,
    ) -> Result<(), Error> {
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::Exhausted)?;
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Exhausted);
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn datagram() -> Vec<u8> {
        let mut buf = vec![0u8; 12];
        let repr = UdpRepr {
            src_port: 50000,
            dst_port: 4789,
        };
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p, 4).unwrap();
        p.payload_mut().copy_from_slice(b"ping");
        buf
    }

    #[test]
    fn round_trip() {
        let buf = datagram();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            UdpRepr::parse(&p).unwrap(),
            UdpRepr {
                src_port: 50000,
                dst_port: 4789
            }
        );
        assert_eq!(p.len(), 12);
        assert_eq!(p.payload(), b"ping");
        assert!(p.verify_checksum(SRC, DST), "zero checksum is accepted");
    }

    #[test]
    fn checksum_fill_and_verify() {
        let mut buf = datagram();
        Packet::new_unchecked(&mut buf[..]).fill_checksum(SRC, DST);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn lengths() {
        let buf = datagram();
        for len in 0..buf.len() {
            assert_eq!(
                Packet::new_checked(&buf[..len]).err(),
                Some(Error::Truncated(Layer::Udp)),
                "length {len}"
            );
        }
        let mut bad = buf.clone();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&bad[..]).err(),
            Some(Error::BadUdpLength)
        );
    }
}
