//! VXLAN headers (RFC 7348).

use super::error::{Error, Layer};
use super::field::{get_array, get_u8, set_bytes, set_u8, Field, Rest};

/// A 24-bit VXLAN network identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Vni(u32);

impl Vni {
    /// Largest VNI.
    pub const MAX: u32 = 0x00ff_ffff;

    /// The VNI, if `vni` fits in 24 bits.
    pub const fn new(vni: u32) -> Option<Vni> {
        if vni <= Self::MAX {
            Some(Vni(vni))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl core::fmt::Display for Vni {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

mod field {
    use super::{Field, Rest};
    pub const FLAGS: usize = 0;
    pub const RESERVED0: Field = 1..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED1: usize = 7;
    pub const PAYLOAD: Rest = 8..;
}

/// Length of a VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

/// A view over a VXLAN header and the inner frame after it.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least the header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header is inside the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated(Layer::Vxlan))
        } else {
            Ok(())
        }
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::FLAGS)
    }

    /// The 24-bit VNI.
    pub fn vni(&self) -> Vni {
        let [a, b, c] = get_array::<3>(self.buffer.as_ref(), field::VNI);
        Vni(u32::from_be_bytes([0, a, b, c]))
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::FLAGS, value);
    }

    /// Sets the VNI and clears both reserved fields.
    pub fn set_vni(&mut self, vni: Vni) {
        let buf = self.buffer.as_mut();
        set_bytes(buf, field::RESERVED0, &[0; 3]);
        let [_, a, b, c] = vni.0.to_be_bytes();
        set_bytes(buf, field::VNI, &[a, b, c]);
        set_u8(buf, field::RESERVED1, 0);
    }

    /// The inner frame, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD)
            .unwrap_or(&mut [])
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The inner frame, with the lifetime of the underlying buffer.
    pub fn into_payload(self) -> &'a [u8] {
        self.buffer.get(field::PAYLOAD).unwrap_or(&[])
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// Network identifier.
    pub vni: Vni,
}

impl VxlanRepr {
    /// Parses a header. The I flag must be set; reserved bits are ignored (RFC 7348 section 5).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<VxlanRepr, Error> {
        packet.check_len()?;
        if packet.flags() & FLAG_I == 0 {
            return Err(Error::BadVxlanFlags);
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    /// Length of the emitted header.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag set, reserved fields zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        packet.check_len().map_err(|_| Error::Exhausted)?;
        packet.set_flags(FLAG_I);
        packet.set_vni(self.vni);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_range() {
        assert_eq!(Vni::new(0x0100_0000), None);
        assert_eq!(Vni::new(Vni::MAX).map(Vni::get), Some(0xff_ffff));
    }

    #[test]
    fn round_trip() {
        let repr = VxlanRepr {
            vni: Vni::new(0x12_3456).unwrap(),
        };
        let mut buf = [0xffu8; 10];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&p).unwrap(), repr);
        assert_eq!(p.payload(), &[0xff, 0xff]);
    }

    #[test]
    fn reserved_bits_are_ignored_but_i_flag_is_required() {
        let buf = [0xffu8, 0xff, 0xff, 0xff, 0, 0, 7, 0xff];
        assert_eq!(
            VxlanRepr::parse(&Packet::new_unchecked(&buf[..]))
                .unwrap()
                .vni,
            Vni::new(7).unwrap()
        );
        let buf = [0xf7u8, 0, 0, 0, 0, 0, 7, 0];
        assert_eq!(
            VxlanRepr::parse(&Packet::new_unchecked(&buf[..])),
            Err(Error::BadVxlanFlags)
        );
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                VxlanRepr::parse(&Packet::new_unchecked(&[0x08u8; 8][..len])),
                Err(Error::Truncated(Layer::Vxlan))
            );
        }
    }
}
