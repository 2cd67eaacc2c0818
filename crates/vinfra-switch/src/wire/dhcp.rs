//! BOOTP / DHCPv4 messages (RFC 2131) and the options the switch's DHCP responder uses
//! (RFC 2132): message type (53), requested address (50), server identifier (54), lease time
//! (51), subnet mask (1), router (3), interface MTU (26), pad (0) and end (255). Other options
//! are skipped.

use core::net::Ipv4Addr;

use super::error::{Error, Layer};
use super::ethernet::MacAddr;
use super::field::Rest;
use super::field::{get_array, get_u16, get_u8, set_bytes, set_u16, set_u8, Field};

mod field {
    use super::{Field, Rest};
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Field = 4..8;
    pub const SECS: Field = 8..10;
    pub const FLAGS: Field = 10..12;
    pub const CIADDR: Field = 12..16;
    pub const YIADDR: Field = 16..20;
    pub const SIADDR: Field = 20..24;
    pub const GIADDR: Field = 24..28;
    pub const CHADDR: Field = 28..44;
    pub const MAGIC: Field = 236..240;
    pub const OPTIONS: Rest = 240..;
}

/// Length of the fixed part, magic cookie included.
pub const HEADER_LEN: usize = field::MAGIC.end;
/// The DHCP magic cookie (99.130.83.99).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Smallest BOOTP message relay agents and old clients accept (RFC 1542); replies are padded
/// to it.
pub const MIN_MESSAGE_LEN: usize = 300;
/// UDP port of DHCP servers.
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;
/// The broadcast bit of the flags field.
const FLAG_BROADCAST: u16 = 0x8000;
/// Hardware type Ethernet.
const HTYPE_ETHERNET: u8 = 1;

/// Option codes.
pub mod option {
    /// Padding.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// Interface MTU.
    pub const INTERFACE_MTU: u8 = 26;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time, seconds.
    pub const LEASE_TIME: u8 = 51;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// End of the options.
    pub const END: u8 = 255;
}

/// BOOTP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhcpOp {
    /// From a client (BOOTREQUEST).
    Request,
    /// From a server (BOOTREPLY).
    Reply,
}

impl DhcpOp {
    const fn to_u8(self) -> u8 {
        match self {
            DhcpOp::Request => 1,
            DhcpOp::Reply => 2,
        }
    }
}

/// DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhcpMessageType {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPOFFER.
    Offer,
    /// DHCPREQUEST.
    Request,
    /// DHCPDECLINE.
    Decline,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
    /// DHCPRELEASE.
    Release,
    /// DHCPINFORM.
    Inform,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for DhcpMessageType {
    fn from(v: u8) -> Self {
        match v {
            1 => DhcpMessageType::Discover,
            2 => DhcpMessageType::Offer,
            3 => DhcpMessageType::Request,
            4 => DhcpMessageType::Decline,
            5 => DhcpMessageType::Ack,
            6 => DhcpMessageType::Nak,
            7 => DhcpMessageType::Release,
            8 => DhcpMessageType::Inform,
            other => DhcpMessageType::Unknown(other),
        }
    }
}

impl From<DhcpMessageType> for u8 {
    fn from(v: DhcpMessageType) -> u8 {
        match v {
            DhcpMessageType::Discover => 1,
            DhcpMessageType::Offer => 2,
            DhcpMessageType::Request => 3,
            DhcpMessageType::Decline => 4,
            DhcpMessageType::Ack => 5,
            DhcpMessageType::Nak => 6,
            DhcpMessageType::Release => 7,
            DhcpMessageType::Inform => 8,
            DhcpMessageType::Unknown(other) => other,
        }
    }
}

/// A view over a BOOTP/DHCP message (the UDP payload).
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

    /// Checks that the fixed part and the magic cookie lie inside the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::Dhcp));
        }
        Ok(())
    }

    /// Operation (1: request, 2: reply).
    pub fn op(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::OP)
    }

    /// Hardware address type (1: Ethernet).
    pub fn htype(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HTYPE)
    }

    /// Hardware address length (6 for Ethernet).
    pub fn hlen(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HLEN)
    }

    /// Relay hops.
    pub fn hops(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HOPS)
    }

    /// Transaction ID.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes(get_array(self.buffer.as_ref(), field::XID))
    }

    /// Seconds since the client began.
    pub fn secs(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SECS)
    }

    /// Flags field.
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// Client address (when it already has one).
    pub fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::CIADDR))
    }

    /// "Your" address: the one offered or assigned.
    pub fn yiaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::YIADDR))
    }

    /// Next server address.
    pub fn siaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SIADDR))
    }

    /// Relay agent address.
    pub fn giaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::GIADDR))
    }

    /// The first six bytes of the client hardware address.
    pub fn client_mac(&self) -> MacAddr {
        MacAddr(get_array(
            self.buffer.as_ref(),
            field::CHADDR.start..field::CHADDR.start + 6,
        ))
    }

    /// Magic cookie.
    pub fn magic(&self) -> [u8; 4] {
        get_array(self.buffer.as_ref(), field::MAGIC)
    }

    /// The options area (after the magic cookie).
    pub fn options(&self) -> &[u8] {
        self.buffer.as_ref().get(field::OPTIONS).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn buf(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// One option from the options area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpOption<'a> {
    /// Option code.
    pub code: u8,
    /// Option data.
    pub data: &'a [u8],
}

/// Iterates over options up to the end option. Yields an error (and stops) when an option runs
/// past the buffer or the end option is missing.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Options<'a> {
    /// Iterates over an options area.
    pub fn new(options: &'a [u8]) -> Options<'a> {
        Options {
            rest: options,
            done: false,
        }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<DhcpOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let Some((&code, rest)) = self.rest.split_first() else {
                self.done = true;
                return Some(Err(Error::Truncated(Layer::Dhcp)));
            };
            match code {
                option::PAD => self.rest = rest,
                option::END => {
                    self.done = true;
                    return None;
                }
                _ => {
                    let parsed = rest.split_first().and_then(|(&len, data)| {
                        let len = usize::from(len);
                        Some((data.get(..len)?, data.get(len..)?))
                    });
                    let Some((data, rest)) = parsed else {
                        self.done = true;
                        return Some(Err(Error::Truncated(Layer::Dhcp)));
                    };
                    self.rest = rest;
                    return Some(Ok(DhcpOption { code, data }));
                }
            }
        }
    }
}

fn addr_option(data: &[u8]) -> Result<Ipv4Addr, Error> {
    <[u8; 4]>::try_from(data)
        .map(Ipv4Addr::from)
        .map_err(|_| Error::BadDhcpOption)
}

/// A parsed DHCP message of an Ethernet client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRepr {
    /// Request (client) or reply (server).
    pub op: DhcpOp,
    /// Transaction ID, chosen by the client.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Whether the client asks for broadcast replies.
    pub broadcast: bool,
    /// Client address (renewing or rebinding clients).
    pub ciaddr: Ipv4Addr,
    /// Address offered or assigned to the client.
    pub yiaddr: Ipv4Addr,
    /// Next server address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client MAC address.
    pub client_mac: MacAddr,
    /// Message type (option 53), required.
    pub message_type: DhcpMessageType,
    /// Requested address (option 50).
    pub requested_ip: Option<Ipv4Addr>,
    /// Server identifier (option 54).
    pub server_id: Option<Ipv4Addr>,
    /// Lease time in seconds (option 51).
    pub lease_secs: Option<u32>,
    /// Subnet mask (option 1).
    pub subnet_mask: Option<Ipv4Addr>,
    /// First router (option 3).
    pub router: Option<Ipv4Addr>,
    /// Interface MTU (option 26).
    pub mtu: Option<u16>,
}

impl DhcpRepr {
    /// Parses a message: the operation, an Ethernet client address, the magic cookie and the
    /// options (which must be well formed and hold a message type).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<DhcpRepr, Error> {
        packet.check_len()?;
        let op = match packet.op() {
            1 => DhcpOp::Request,
            2 => DhcpOp::Reply,
            _ => return Err(Error::NotDhcp),
        };
        if packet.htype() != HTYPE_ETHERNET || packet.hlen() != 6 || packet.magic() != MAGIC_COOKIE
        {
            return Err(Error::NotDhcp);
        }
        let mut repr = DhcpRepr {
            op,
            xid: packet.xid(),
            secs: packet.secs(),
            broadcast: packet.flags() & FLAG_BROADCAST != 0,
            ciaddr: packet.ciaddr(),
            yiaddr: packet.yiaddr(),
            siaddr: packet.siaddr(),
            giaddr: packet.giaddr(),
            client_mac: packet.client_mac(),
            message_type: DhcpMessageType::Unknown(0),
            requested_ip: None,
            server_id: None,
            lease_secs: None,
            subnet_mask: None,
            router: None,
            mtu: None,
        };
        let mut message_type = None;
        for opt in Options::new(packet.options()) {
            let DhcpOption { code, data } = opt?;
            match code {
                option::MESSAGE_TYPE => match data {
                    [t] => message_type = Some(DhcpMessageType::from(*t)),
                    _ => return Err(Error::BadDhcpOption),
                },
                option::REQUESTED_IP => repr.requested_ip = Some(addr_option(data)?),
                option::SERVER_ID => repr.server_id = Some(addr_option(data)?),
                option::SUBNET_MASK => repr.subnet_mask = Some(addr_option(data)?),
                option::ROUTER => {
                    // A list of routers; the first is the one used.
                    if data.is_empty() || data.len() % 4 != 0 {
                        return Err(Error::BadDhcpOption);
                    }
                    repr.router = Some(addr_option(data.get(..4).unwrap_or(&[]))?);
                }
                option::LEASE_TIME => {
                    let secs = <[u8; 4]>::try_from(data).map_err(|_| Error::BadDhcpOption)?;
                    repr.lease_secs = Some(u32::from_be_bytes(secs));
                }
                option::INTERFACE_MTU => {
                    let mtu = <[u8; 2]>::try_from(data).map_err(|_| Error::BadDhcpOption)?;
                    repr.mtu = Some(u16::from_be_bytes(mtu));
                }
                _ => {}
            }
        }
        repr.message_type = message_type.ok_or(Error::BadDhcpOption)?;
        Ok(repr)
    }

    fn options_len(&self) -> usize {
        let addr = |a: Option<Ipv4Addr>| if a.is_some() { 6 } else { 0 };
        3 + addr(self.requested_ip)
            + addr(self.server_id)
            + addr(self.subnet_mask)
            + addr(self.router)
            + if self.lease_secs.is_some() { 6 } else { 0 }
            + if self.mtu.is_some() { 4 } else { 0 }
            + 1
    }

    /// Length of the emitted message: the fixed part, the options and the end option, padded
    /// to [`MIN_MESSAGE_LEN`].
    pub fn buffer_len(&self) -> usize {
        (HEADER_LEN + self.options_len()).max(MIN_MESSAGE_LEN)
    }

    /// Writes the message into a buffer of at least [`DhcpRepr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        let len = self.buffer_len();
        let Some(buf) = packet.buf().get_mut(..len) else {
            return Err(Error::Exhausted);
        };
        buf.fill(0);
        set_u8(buf, field::OP, self.op.to_u8());
        set_u8(buf, field::HTYPE, HTYPE_ETHERNET);
        set_u8(buf, field::HLEN, 6);
        set_u8(buf, field::HOPS, 0);
        set_bytes(buf, field::XID, &self.xid.to_be_bytes());
        set_u16(buf, field::SECS, self.secs);
        set_u16(
            buf,
            field::FLAGS,
            if self.broadcast { FLAG_BROADCAST } else { 0 },
        );
        set_bytes(buf, field::CIADDR, &self.ciaddr.octets());
        set_bytes(buf, field::YIADDR, &self.yiaddr.octets());
        set_bytes(buf, field::SIADDR, &self.siaddr.octets());
        set_bytes(buf, field::GIADDR, &self.giaddr.octets());
        set_bytes(buf, field::CHADDR, &self.client_mac.0);
        set_bytes(buf, field::MAGIC, &MAGIC_COOKIE);
        let mut at = field::OPTIONS.start;
        let mut put = |code: u8, data: &[u8]| {
            let end = at + 2 + data.len();
            set_u8(buf, at, code);
            set_u8(buf, at + 1, u8::try_from(data.len()).unwrap_or(0));
            set_bytes(buf, at + 2..end, data);
            at = end;
        };
        put(option::MESSAGE_TYPE, &[u8::from(self.message_type)]);
        if let Some(a) = self.server_id {
            put(option::SERVER_ID, &a.octets());
        }
        if let Some(a) = self.requested_ip {
            put(option::REQUESTED_IP, &a.octets());
        }
        if let Some(s) = self.lease_secs {
            put(option::LEASE_TIME, &s.to_be_bytes());
        }
        if let Some(a) = self.subnet_mask {
            put(option::SUBNET_MASK, &a.octets());
        }
        if let Some(a) = self.router {
            put(option::ROUTER, &a.octets());
        }
        if let Some(m) = self.mtu {
            put(option::INTERFACE_MTU, &m.to_be_bytes());
        }
        set_u8(buf, at, option::END);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> DhcpRepr {
        DhcpRepr {
            op: DhcpOp::Reply,
            xid: 0x1234_5678,
            secs: 3,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac: MacAddr([0x52, 0x54, 0, 1, 2, 3]),
            message_type: DhcpMessageType::Offer,
            requested_ip: None,
            server_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
            lease_secs: Some(3600),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: Some(Ipv4Addr::new(10, 0, 0, 1)),
            mtu: Some(1450),
        }
    }

    fn emit(repr: &DhcpRepr) -> Vec<u8> {
        let mut buf = vec![0xaa; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        let repr = offer();
        let buf = emit(&repr);
        assert_eq!(buf.len(), MIN_MESSAGE_LEN);
        assert_eq!(&buf[236..240], &MAGIC_COOKIE);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(DhcpRepr::parse(&p).unwrap(), repr);

        let request = DhcpRepr {
            op: DhcpOp::Request,
            broadcast: false,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            message_type: DhcpMessageType::Request,
            requested_ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
            lease_secs: None,
            subnet_mask: None,
            router: None,
            mtu: None,
            ..offer()
        };
        let buf = emit(&request);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(DhcpRepr::parse(&p).unwrap(), request);
    }

    #[test]
    fn known_bytes_of_a_discover() {
        // A DHCPDISCOVER as busybox udhcpc sends it, options trimmed.
        let mut buf = vec![0u8; 240];
        buf[0] = 1;
        buf[1] = 1;
        buf[2] = 6;
        buf[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        buf[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        buf[236..240].copy_from_slice(&MAGIC_COOKIE);
        buf.extend_from_slice(&[53, 1, 1, 57, 2, 0x02, 0x40, 0, 0, 255]);
        let repr = DhcpRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(repr.op, DhcpOp::Request);
        assert_eq!(repr.xid, 0xdead_beef);
        assert_eq!(repr.message_type, DhcpMessageType::Discover);
        assert_eq!(repr.client_mac, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(repr.requested_ip, None);
        assert!(!repr.broadcast);
    }

    #[test]
    fn truncated_at_every_length() {
        let repr = offer();
        let buf = emit(&repr);
        // The end option is the last meaningful byte; the rest is padding.
        let end = HEADER_LEN + repr.options_len();
        for len in 0..end {
            let r = Packet::new_checked(&buf[..len]).and_then(|p| DhcpRepr::parse(&p));
            assert_eq!(r, Err(Error::Truncated(Layer::Dhcp)), "length {len}");
            // Unchecked views read zeros and never panic.
            let p = Packet::new_unchecked(&buf[..len]);
            let _ = (p.xid(), p.client_mac(), p.options(), p.giaddr(), p.magic());
        }
        for len in end..=buf.len() {
            let p = Packet::new_checked(&buf[..len]).unwrap();
            assert_eq!(DhcpRepr::parse(&p).unwrap(), repr, "length {len}");
        }
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let good = emit(&offer());
        let parse = |buf: &[u8]| DhcpRepr::parse(&Packet::new_checked(buf).unwrap());
        let mut bad = good.clone();
        bad[236] = 0;
        assert_eq!(parse(&bad), Err(Error::NotDhcp), "magic cookie");
        let mut bad = good.clone();
        bad[0] = 3;
        assert_eq!(parse(&bad), Err(Error::NotDhcp), "op");
        let mut bad = good.clone();
        bad[1] = 6;
        assert_eq!(parse(&bad), Err(Error::NotDhcp), "htype");
        // Message type option with two bytes.
        let mut bad = good.clone();
        bad[241] = 2;
        assert!(parse(&bad).is_err());
        // No message type at all: the first option becomes padding.
        let mut bad = good.clone();
        bad[240..243].fill(0);
        assert_eq!(parse(&bad), Err(Error::BadDhcpOption));
        // An option whose length runs past the end.
        let mut bad = good[..HEADER_LEN].to_vec();
        bad.extend_from_slice(&[53, 1, 1, 50, 9, 1, 2]);
        assert_eq!(parse(&bad), Err(Error::Truncated(Layer::Dhcp)));
        // A requested address of three bytes.
        let mut bad = good[..HEADER_LEN].to_vec();
        bad.extend_from_slice(&[53, 1, 3, 50, 3, 1, 2, 3, 255]);
        assert_eq!(parse(&bad), Err(Error::BadDhcpOption));
        // A router list that is not a multiple of four.
        let mut bad = good[..HEADER_LEN].to_vec();
        bad.extend_from_slice(&[53, 1, 3, 3, 5, 1, 2, 3, 4, 5, 255]);
        assert_eq!(parse(&bad), Err(Error::BadDhcpOption));
    }

    #[test]
    fn unknown_options_are_skipped_and_routers_take_the_first() {
        let mut buf = emit(&offer())[..HEADER_LEN].to_vec();
        buf.extend_from_slice(&[0, 0, 12, 3, b'v', b'm', b'1', 53, 1, 5]);
        buf.extend_from_slice(&[3, 8, 10, 0, 0, 1, 10, 0, 0, 2, 255]);
        let repr = DhcpRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(repr.message_type, DhcpMessageType::Ack);
        assert_eq!(repr.router, Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn emit_into_short_buffer_fails() {
        let repr = offer();
        let mut buf = vec![0u8; repr.buffer_len() - 1];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Exhausted)
        );
    }

    #[test]
    fn message_types_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(DhcpMessageType::from(v)), v);
        }
    }
}
