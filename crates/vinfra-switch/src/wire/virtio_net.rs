//! The virtio-net header (`struct virtio_net_hdr`, virtio 1.x section 5.1.6) that a tap opened
//! with `IFF_VNET_HDR` puts in front of every frame: checksum and segmentation offload metadata.
//!
//! The 10-byte legacy layout, little-endian (the tap is asked for little-endian headers):
//! flags, GSO type, header length, GSO size, checksum start, checksum offset. Offsets count from
//! the start of the Ethernet frame that follows the header.

use super::error::{Error, Layer};
use super::field::{get_u8, set_u8, Field};

mod field {
    use super::Field;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CSUM_OFFSET.end;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the end is left to fill.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the sender already checked the checksums.
pub const FLAG_DATA_VALID: u8 = 2;

/// GSO types (`VIRTIO_NET_HDR_GSO_*`).
pub mod gso_type {
    /// Not a GSO frame.
    pub const NONE: u8 = 0;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 1;
    /// UDP fragmentation offload (refused here).
    pub const UDP: u8 = 3;
    /// TCP over IPv6.
    pub const TCPV6: u8 = 4;
    /// UDP segmentation offload (refused here).
    pub const UDP_L4: u8 = 5;
    /// Flag: the TCP segments carry ECN (CWR only on the first).
    pub const ECN: u8 = 0x80;
}

/// A view over a virtio-net header.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn get_le16(buf: &[u8], f: Field) -> u16 {
    buf.get(f)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_le_bytes)
}

fn set_le16(buf: &mut [u8], f: Field, value: u16) {
    if let Some(dst) = buf.get_mut(f) {
        for (d, s) in dst.iter_mut().zip(value.to_le_bytes()) {
            *d = s;
        }
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer of at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::VirtioNet));
        }
        Ok(packet)
    }

    /// The flags.
    pub fn flags(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::FLAGS)
    }

    /// The GSO type, with the ECN flag.
    pub fn gso_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::GSO_TYPE)
    }

    /// Length of the headers (Ethernet to TCP) of a GSO frame, a hint.
    pub fn hdr_len(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::HDR_LEN)
    }

    /// Payload bytes per segment of a GSO frame.
    pub fn gso_size(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::GSO_SIZE)
    }

    /// Where checksumming starts, from the start of the frame.
    pub fn csum_start(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::CSUM_START)
    }

    /// Where the checksum goes, from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags.
    pub fn set_flags(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::FLAGS, value);
    }

    /// Sets the GSO type.
    pub fn set_gso_type(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::GSO_TYPE, value);
    }

    /// Sets the header length.
    pub fn set_hdr_len(&mut self, value: u16) {
        set_le16(self.buffer.as_mut(), field::HDR_LEN, value);
    }

    /// Sets the GSO size.
    pub fn set_gso_size(&mut self, value: u16) {
        set_le16(self.buffer.as_mut(), field::GSO_SIZE, value);
    }

    /// Sets the checksum start.
    pub fn set_csum_start(&mut self, value: u16) {
        set_le16(self.buffer.as_mut(), field::CSUM_START, value);
    }

    /// Sets the checksum offset.
    pub fn set_csum_offset(&mut self, value: u16) {
        set_le16(self.buffer.as_mut(), field::CSUM_OFFSET, value);
    }
}

/// A partial checksum left to complete: the ones' complement sum of the bytes from `start` to
/// the end of the L4 packet goes, complemented, at `start + offset`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PartialCsum {
    /// Where checksumming starts, from the start of the frame.
    pub start: u16,
    /// Where the checksum goes, from `start`.
    pub offset: u16,
}

/// The transport of a GSO frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GsoKind {
    /// TCP over IPv4.
    Tcpv4,
    /// TCP over IPv6.
    Tcpv6,
}

/// A GSO frame: one large TCP segment to cut into `size`-byte segments.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Gso {
    /// TCP over IPv4 or IPv6.
    pub kind: GsoKind,
    /// Payload bytes per segment (the MSS).
    pub size: u16,
    /// Length of the headers, Ethernet to TCP (the sender's hint; segmentation reads the
    /// headers themselves).
    pub hdr_len: u16,
    /// The ECN flag: segments carry CWR only on the first.
    pub ecn: bool,
}

/// The offload metadata of a frame: the parsed form of a virtio-net header.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Offload {
    /// A checksum left to complete (`NEEDS_CSUM`).
    pub csum: Option<PartialCsum>,
    /// A large segment to cut (`gso_type` other than none).
    pub gso: Option<Gso>,
    /// The checksums were checked by the sender (`DATA_VALID`).
    pub data_valid: bool,
}

impl Offload {
    /// A frame with nothing left to do.
    pub const NONE: Offload = Offload {
        csum: None,
        gso: None,
        data_valid: false,
    };

    /// True when the frame needs no work before it leaves on a port without offloads.
    pub fn is_complete(&self) -> bool {
        self.csum.is_none() && self.gso.is_none()
    }

    /// Parses a header. Unknown flags are ignored; a GSO type other than TCPv4/TCPv6 (UDP
    /// fragmentation or segmentation, unknown types) or a GSO frame with a zero size is an
    /// error.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Offload, Error> {
        let flags = packet.flags();
        let csum = (flags & FLAG_NEEDS_CSUM != 0).then(|| PartialCsum {
            start: packet.csum_start(),
            offset: packet.csum_offset(),
        });
        let raw_type = packet.gso_type();
        let ecn = raw_type & gso_type::ECN != 0;
        let kind = match raw_type & !gso_type::ECN {
            gso_type::NONE => None,
            gso_type::TCPV4 => Some(GsoKind::Tcpv4),
            gso_type::TCPV6 => Some(GsoKind::Tcpv6),
            _ => return Err(Error::BadVnetHeader),
        };
        let gso = match kind {
            None => None,
            Some(kind) => {
                let size = packet.gso_size();
                if size == 0 {
                    return Err(Error::BadVnetHeader);
                }
                Some(Gso {
                    kind,
                    size,
                    hdr_len: packet.hdr_len(),
                    ecn,
                })
            }
        };
        Ok(Offload {
            csum,
            gso,
            data_valid: flags & FLAG_DATA_VALID != 0,
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Exhausted);
        }
        let mut flags = 0;
        if self.csum.is_some() {
            flags |= FLAG_NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= FLAG_DATA_VALID;
        }
        packet.set_flags(flags);
        let csum = self.csum.unwrap_or(PartialCsum {
            start: 0,
            offset: 0,
        });
        packet.set_csum_start(csum.start);
        packet.set_csum_offset(csum.offset);
        match self.gso {
            None => {
                packet.set_gso_type(gso_type::NONE);
                packet.set_gso_size(0);
                packet.set_hdr_len(0);
            }
            Some(gso) => {
                let kind = match gso.kind {
                    GsoKind::Tcpv4 => gso_type::TCPV4,
                    GsoKind::Tcpv6 => gso_type::TCPV6,
                };
                packet.set_gso_type(if gso.ecn { kind | gso_type::ECN } else { kind });
                packet.set_gso_size(gso.size);
                packet.set_hdr_len(gso.hdr_len);
            }
        }
        Ok(())
    }

    /// The bytes of the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        // The buffer has exactly the header's length.
        let _ = self.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let offload = Offload {
            csum: Some(PartialCsum {
                start: 34,
                offset: 16,
            }),
            gso: Some(Gso {
                kind: GsoKind::Tcpv6,
                size: 1428,
                hdr_len: 86,
                ecn: true,
            }),
            data_valid: false,
        };
        let bytes = offload.to_bytes();
        assert_eq!(bytes, [1, 0x84, 86, 0, 0x94, 0x05, 34, 0, 16, 0]);
        let parsed = Offload::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(parsed, offload);
        assert_eq!(Offload::NONE.to_bytes(), [0; HEADER_LEN]);
    }

    #[test]
    fn refuses_udp_gso_zero_size_and_short_headers() {
        for t in [gso_type::UDP, gso_type::UDP_L4, 2, 0x7f] {
            let bytes = [0, t, 0, 0, 100, 0, 0, 0, 0, 0];
            let p = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Offload::parse(&p), Err(Error::BadVnetHeader), "type {t}");
        }
        let zero = [0, gso_type::TCPV4, 54, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Offload::parse(&Packet::new_checked(&zero[..]).unwrap()),
            Err(Error::BadVnetHeader)
        );
        for len in 0..HEADER_LEN {
            assert!(Packet::new_checked(&[0u8; HEADER_LEN][..len]).is_err());
        }
    }
}
