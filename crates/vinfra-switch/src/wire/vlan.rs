//! 802.1Q tags: the 4 bytes after the Ethernet addresses' TPID (0x8100).

use super::error::{Error, Layer};
use super::ether_type::EtherType;
use super::field::{get_u16, set_u16, Field, Rest};

/// A VLAN identifier usable for a network: 1 to 4094 (0 means priority-tagged, 4095 is reserved).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct VlanId(u16);

impl VlanId {
    /// The VLAN ID, if `vid` is in 1..=4094.
    pub const fn new(vid: u16) -> Option<VlanId> {
        if vid >= 1 && vid <= 4094 {
            Some(VlanId(vid))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl core::fmt::Display for VlanId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// Tag control information. The VID is kept raw (12 bits, 0 and 4095 included) so that any
/// received tag parses; [`VlanTci::vlan_id`] tells whether it can name a network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VlanTci {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTci {
    /// A tag with priority 0 for `vid`.
    pub const fn for_vid(vid: VlanId) -> VlanTci {
        VlanTci {
            pcp: 0,
            dei: false,
            vid: vid.0,
        }
    }

    /// The VLAN ID, unless the VID is 0 (priority tag) or 4095 (reserved).
    pub const fn vlan_id(self) -> Option<VlanId> {
        VlanId::new(self.vid)
    }

    /// The 16-bit TCI.
    pub const fn to_u16(self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }
}

mod field {
    use super::{Field, Rest};
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// Length of the tag after the outer TPID.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view over an 802.1Q tag (TCI and inner EtherType), starting right after the TPID.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least the tag.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the tag is inside the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated(Layer::Vlan))
        } else {
            Ok(())
        }
    }

    /// The raw 16-bit TCI.
    pub fn raw_tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TCI)
    }

    /// The raw VID (12 bits, 0 and 4095 included).
    pub fn raw_vid(&self) -> u16 {
        self.raw_tci() & 0x0fff
    }

    /// The tag control information.
    pub fn tci(&self) -> VlanTci {
        let raw = self.raw_tci();
        VlanTci {
            // Masked to 3 bits, always fits.
            pcp: u8::try_from(raw >> 13).unwrap_or(0),
            dei: raw & 0x1000 != 0,
            vid: raw & 0x0fff,
        }
    }

    /// The EtherType of the payload.
    pub fn ethertype(&self) -> EtherType {
        EtherType(get_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The bytes after the tag.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the TCI.
    pub fn set_tci(&mut self, tci: VlanTci) {
        set_u16(self.buffer.as_mut(), field::TCI, tci.to_u16());
    }

    /// Sets the inner EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_id_range() {
        assert_eq!(VlanId::new(0), None);
        assert_eq!(VlanId::new(4095), None);
        assert_eq!(VlanId::new(1).map(VlanId::get), Some(1));
        assert_eq!(VlanId::new(4094).map(VlanId::get), Some(4094));
    }

    #[test]
    fn tci_round_trip() {
        let tci = VlanTci {
            pcp: 7,
            dei: false,
            vid: 4094,
        };
        let mut buf = [0u8; 4];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_tci(tci);
        p.set_ethertype(EtherType::IPV4);
        assert_eq!(buf, [0xef, 0xfe, 0x08, 0x00]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.tci(), tci);
        assert_eq!(p.ethertype(), EtherType::IPV4);
    }

    #[test]
    fn truncated() {
        for len in 0..4 {
            assert_eq!(
                Packet::new_checked(&[0u8; 4][..len]).err(),
                Some(Error::Truncated(Layer::Vlan))
            );
        }
    }
}
