//! ICMPv4 (RFC 792): echo request and reply, destination unreachable (with the next-hop MTU of
//! "fragmentation needed", RFC 1191) and time exceeded, with the checksum over the whole
//! message.

use super::checksum;
use super::error::{Error, Layer};
use super::field::{get_u16, get_u8, set_bytes, set_u16, set_u8, Field, Rest};

mod field {
    use super::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo request and reply: the identifier.
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo request and reply: the sequence number.
    pub const ECHO_SEQ_NO: Field = 6..8;
    /// Destination unreachable: the unused word before the next-hop MTU (RFC 1191).
    pub const UNUSED: Field = 4..6;
    /// Destination unreachable, code 4: the next-hop MTU (RFC 1191).
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// The rest of an error's header (time exceeded): unused.
    pub const REST_OF_HEADER: Field = 4..8;
    /// Echo data, or the datagram an error quotes.
    pub const DATA: Rest = 8..;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte rest of the header).
pub const HEADER_LEN: usize = field::DATA.start;

/// ICMP message types used here.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (an error).
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source quench (an error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (an error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (an error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (an error).
    pub const PARAM_PROBLEM: u8 = 12;

    /// Whether a message of this type is an error message (RFC 1812 section 4.3.2.7: no ICMP
    /// error is ever sent about one).
    pub const fn is_error(ty: u8) -> bool {
        matches!(
            ty,
            DST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
}

/// Why a destination is unreachable: the code of a destination-unreachable message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DstUnreachable {
    /// Code 0: no route to the destination network.
    NetUnreachable,
    /// Code 1: the destination host does not answer.
    HostUnreachable,
    /// Code 2: the protocol is not supported.
    ProtoUnreachable,
    /// Code 3: no listener on the port.
    PortUnreachable,
    /// Code 4: the datagram is larger than the next hop's MTU and has DF set.
    FragRequired {
        /// The next hop's MTU (RFC 1191); 0 from routers that predate it.
        mtu: u16,
    },
    /// Any other code.
    Other(u8),
}

impl DstUnreachable {
    /// The ICMP code.
    pub const fn code(self) -> u8 {
        match self {
            DstUnreachable::NetUnreachable => 0,
            DstUnreachable::HostUnreachable => 1,
            DstUnreachable::ProtoUnreachable => 2,
            DstUnreachable::PortUnreachable => 3,
            DstUnreachable::FragRequired { .. } => 4,
            DstUnreachable::Other(code) => code,
        }
    }

    fn from_code(code: u8, mtu: u16) -> DstUnreachable {
        match code {
            0 => DstUnreachable::NetUnreachable,
            1 => DstUnreachable::HostUnreachable,
            2 => DstUnreachable::ProtoUnreachable,
            3 => DstUnreachable::PortUnreachable,
            4 => DstUnreachable::FragRequired { mtu },
            other => DstUnreachable::Other(other),
        }
    }
}

/// Why a datagram was discarded in transit: the code of a time-exceeded message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TimeExceeded {
    /// Code 0: the time to live reached zero in transit.
    TtlExpired,
    /// Code 1: reassembly did not complete in time.
    FragReassembly,
    /// Any other code.
    Other(u8),
}

impl TimeExceeded {
    /// The ICMP code.
    pub const fn code(self) -> u8 {
        match self {
            TimeExceeded::TtlExpired => 0,
            TimeExceeded::FragReassembly => 1,
            TimeExceeded::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> TimeExceeded {
        match code {
            0 => TimeExceeded::TtlExpired,
            1 => TimeExceeded::FragReassembly,
            other => TimeExceeded::Other(other),
        }
    }
}

/// A view over an ICMPv4 message.
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

    /// Checks that the 8-byte header lies inside the buffer (the message is the whole buffer:
    /// give it the IPv4 payload).
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated(Layer::Icmp))
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TYPE)
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// Next-hop MTU of a "fragmentation needed" message.
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// The data after the header: echo data, or the datagram an error quotes.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(field::DATA).unwrap_or(&[])
    }

    /// Whether the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        let buf = self.buffer.as_ref();
        buf.len() >= HEADER_LEN && checksum::sum(buf) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The data after the header, borrowed for as long as the buffer.
    pub fn data_ref(&self) -> &'a [u8] {
        self.buffer.as_ref().get(field::DATA).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::TYPE, value);
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::CODE, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the identifier of an echo request or reply.
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the sequence number of an echo request or reply.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Sets the next-hop MTU of a destination-unreachable message (and clears the unused word
    /// before it).
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::UNUSED, 0);
        set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU, value);
    }

    /// Clears the 4-byte rest of the header (unused in time-exceeded messages).
    pub fn clear_rest_of_header(&mut self) {
        set_bytes(self.buffer.as_mut(), field::REST_OF_HEADER, &[0; 4]);
    }

    /// The data after the header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::DATA).unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::sum(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

/// An ICMPv4 message of a kind the switch answers or sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IcmpRepr<'a> {
    /// Echo request (type 8).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data, echoed back in the reply.
        data: &'a [u8],
    },
    /// Echo reply (type 0).
    EchoReply {
        /// Identifier of the request.
        ident: u16,
        /// Sequence number of the request.
        seq_no: u16,
        /// Data of the request.
        data: &'a [u8],
    },
    /// Destination unreachable (type 3).
    DstUnreachable {
        /// Why (the code; the next-hop MTU of code 4).
        reason: DstUnreachable,
        /// The datagram it is about: its IP header and the start of its payload.
        data: &'a [u8],
    },
    /// Time exceeded (type 11).
    TimeExceeded {
        /// Why (the code).
        reason: TimeExceeded,
        /// The datagram it is about: its IP header and the start of its payload.
        data: &'a [u8],
    },
}

impl<'a> IcmpRepr<'a> {
    /// Parses a message after checking its checksum ([`Error::BadIcmpChecksum`]); another type
    /// than the four above is [`Error::UnsupportedIcmp`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<IcmpRepr<'a>, Error> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadIcmpChecksum);
        }
        let data = packet.data_ref();
        match packet.msg_type() {
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY if packet.msg_code() != 0 => {
                Err(Error::UnsupportedIcmp)
            }
            msg_type::ECHO_REQUEST => Ok(IcmpRepr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            msg_type::ECHO_REPLY => Ok(IcmpRepr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            msg_type::DST_UNREACHABLE => Ok(IcmpRepr::DstUnreachable {
                reason: DstUnreachable::from_code(packet.msg_code(), packet.next_hop_mtu()),
                data,
            }),
            msg_type::TIME_EXCEEDED => Ok(IcmpRepr::TimeExceeded {
                reason: TimeExceeded::from_code(packet.msg_code()),
                data,
            }),
            _ => Err(Error::UnsupportedIcmp),
        }
    }

    /// The data after the header.
    pub const fn data(&self) -> &'a [u8] {
        match *self {
            IcmpRepr::EchoRequest { data, .. }
            | IcmpRepr::EchoReply { data, .. }
            | IcmpRepr::DstUnreachable { data, .. }
            | IcmpRepr::TimeExceeded { data, .. } => data,
        }
    }

    /// Length of the emitted message.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message, its checksum filled, into the start of the view, whose buffer must
    /// hold [`IcmpRepr::buffer_len`] bytes (the checksum covers exactly that much).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        let len = self.buffer_len();
        let buf = packet
            .buffer
            .as_mut()
            .get_mut(..len)
            .ok_or(Error::Exhausted)?;
        let mut out = Packet::new_unchecked(buf);
        match *self {
            IcmpRepr::EchoRequest { ident, seq_no, .. }
            | IcmpRepr::EchoReply { ident, seq_no, .. } => {
                let ty = if matches!(self, IcmpRepr::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                out.set_msg_type(ty);
                out.set_msg_code(0);
                out.set_echo_ident(ident);
                out.set_echo_seq_no(seq_no);
            }
            IcmpRepr::DstUnreachable { reason, .. } => {
                out.set_msg_type(msg_type::DST_UNREACHABLE);
                out.set_msg_code(reason.code());
                let mtu = match reason {
                    DstUnreachable::FragRequired { mtu } => mtu,
                    _ => 0,
                };
                out.set_next_hop_mtu(mtu);
            }
            IcmpRepr::TimeExceeded { reason, .. } => {
                out.set_msg_type(msg_type::TIME_EXCEEDED);
                out.set_msg_code(reason.code());
                out.clear_rest_of_header();
            }
        }
        let data = self.data();
        let dst = out.data_mut();
        if dst.len() != data.len() {
            return Err(Error::Exhausted);
        }
        dst.copy_from_slice(data);
        out.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(repr: &IcmpRepr<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        buf
    }

    /// A plain ones' complement sum over 16-bit words, to check the checksum independently.
    fn reference_sum(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            acc += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn echo_request_known_bytes() {
        // Identifier 0x1234, sequence 1, 8 bytes of data: the checksum computed by hand.
        let data = [0u8, 1, 2, 3, 4, 5, 6, 7];
        let buf = emit(&IcmpRepr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: &data,
        });
        assert_eq!(&buf[..2], &[8, 0]);
        assert_eq!(&buf[4..8], &[0x12, 0x34, 0, 1]);
        // 0x0800 + 0x1234 + 0x0001 + 0x0001 + 0x0203 + 0x0405 + 0x0607 = 0x2645; ~ = 0xd9ba.
        assert_eq!(&buf[2..4], &[0xd9, 0xba]);
        assert_eq!(reference_sum(&buf), 0xffff);
    }

    #[test]
    fn every_kind_round_trips() {
        let quoted: Vec<u8> = (0..48u8).collect();
        let odd = [1u8, 2, 3];
        let reprs = [
            IcmpRepr::EchoRequest {
                ident: 7,
                seq_no: 9,
                data: &odd,
            },
            IcmpRepr::EchoReply {
                ident: 0xffff,
                seq_no: 0,
                data: &[],
            },
            IcmpRepr::DstUnreachable {
                reason: DstUnreachable::NetUnreachable,
                data: &quoted,
            },
            IcmpRepr::DstUnreachable {
                reason: DstUnreachable::HostUnreachable,
                data: &quoted,
            },
            IcmpRepr::DstUnreachable {
                reason: DstUnreachable::FragRequired { mtu: 1400 },
                data: &quoted,
            },
            IcmpRepr::DstUnreachable {
                reason: DstUnreachable::Other(13),
                data: &quoted,
            },
            IcmpRepr::TimeExceeded {
                reason: TimeExceeded::TtlExpired,
                data: &quoted,
            },
            IcmpRepr::TimeExceeded {
                reason: TimeExceeded::FragReassembly,
                data: &quoted,
            },
        ];
        for repr in reprs {
            let buf = emit(&repr);
            assert_eq!(buf.len(), repr.buffer_len());
            assert_eq!(reference_sum(&buf), 0xffff, "{repr:?}");
            let packet = Packet::new_checked(&buf[..]).unwrap();
            assert!(packet.verify_checksum());
            assert_eq!(IcmpRepr::parse(&packet), Ok(repr));
        }
    }

    #[test]
    fn fragmentation_needed_carries_the_mtu() {
        let buf = emit(&IcmpRepr::DstUnreachable {
            reason: DstUnreachable::FragRequired { mtu: 1450 },
            data: &[0x45; 28],
        });
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (3, 4));
        assert_eq!(&buf[4..6], &[0, 0]);
        assert_eq!(p.next_hop_mtu(), 1450);
        assert_eq!(p.data(), &[0x45; 28]);
        // Other codes leave the word zero.
        let buf = emit(&IcmpRepr::DstUnreachable {
            reason: DstUnreachable::HostUnreachable,
            data: &[],
        });
        assert_eq!(&buf[4..8], &[0; 4]);
    }

    #[test]
    fn bad_checksum_unknown_types_and_truncation() {
        let mut buf = emit(&IcmpRepr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: &[9; 10],
        });
        buf[9] ^= 1;
        assert_eq!(
            IcmpRepr::parse(&Packet::new_unchecked(&buf[..])),
            Err(Error::BadIcmpChecksum)
        );
        // A timestamp request (type 13) with a valid checksum.
        let mut ts = [13u8, 0, 0, 0, 0, 1, 0, 1];
        Packet::new_unchecked(&mut ts[..]).fill_checksum();
        assert_eq!(
            IcmpRepr::parse(&Packet::new_unchecked(&ts[..])),
            Err(Error::UnsupportedIcmp)
        );
        // An echo request with a code other than 0.
        let mut echo = [8u8, 1, 0, 0, 0, 1, 0, 1];
        Packet::new_unchecked(&mut echo[..]).fill_checksum();
        assert_eq!(
            IcmpRepr::parse(&Packet::new_unchecked(&echo[..])),
            Err(Error::UnsupportedIcmp)
        );
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&buf[..len]).err(),
                Some(Error::Truncated(Layer::Icmp)),
                "length {len}"
            );
            assert_eq!(
                IcmpRepr::parse(&Packet::new_unchecked(&buf[..len])),
                Err(Error::Truncated(Layer::Icmp))
            );
        }
    }

    #[test]
    fn emit_needs_room_and_unchecked_views_do_not_panic() {
        let repr = IcmpRepr::EchoReply {
            ident: 1,
            seq_no: 1,
            data: &[1, 2, 3],
        };
        let mut short = [0u8; 10];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut short[..])),
            Err(Error::Exhausted)
        );
        let empty = Packet::new_unchecked(&[][..]);
        assert_eq!(
            (empty.msg_type(), empty.echo_ident(), empty.data()),
            (0, 0, &[][..])
        );
        assert!(!empty.verify_checksum());
        let mut tiny = [0u8; 3];
        let mut p = Packet::new_unchecked(&mut tiny[..]);
        p.set_next_hop_mtu(1500);
        p.fill_checksum();
        p.data_mut();
    }

    #[test]
    fn error_types() {
        for ty in [3, 4, 5, 11, 12] {
            assert!(msg_type::is_error(ty));
        }
        for ty in [0, 8, 13, 14, 255] {
            assert!(!msg_type::is_error(ty));
        }
    }
}
