//! The few system calls without a safe wrapper: creating a tap device (with virtio-net headers
//! and offloads), and an AF_PACKET socket that gives back the 802.1Q tag the kernel moved into
//! packet metadata.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub mod fast_map;
pub mod vm_tap;

/// `struct tpacket_auxdata` from `<linux/if_packet.h>`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;
/// Room kept in front of a received trunk frame to put its tag back.
pub(crate) const TAG_ROOM: usize = 4;

/// Length of the virtio-net header in front of each frame on a tap opened with offloads.
pub const VNET_HDR_LEN: usize = vinfra_switch::wire::virtio_net::HEADER_LEN;

/// An open tap and whether it carries virtio-net headers with checksum and TSO offloads.
#[derive(Debug)]
pub struct Tap {
    /// The tap's descriptor.
    pub fd: OwnedFd,
    /// Whether frames carry a virtio-net header with offloads.
    pub offloads: bool,
}

/// Opens (creating it if needed) the tap interface `name`, non-blocking, without packet
/// information headers. With `offloads`, it is opened with `IFF_VNET_HDR` (a 10-byte
/// little-endian virtio-net header in front of every frame, both ways) and asked for checksum
/// and TCP segmentation offload (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`), so the kernel hands
/// over large TCP segments with partial checksums; when the kernel refuses the header or the
/// offloads, the tap is opened plain and reads and writes are whole Ethernet frames. (What QEMU
/// does with `-netdev tap` for a guest that takes offloads.)
pub fn open_tap(name: &str, offloads: bool) -> io::Result<Tap> {
    if offloads {
        if let Ok(fd) = open_tap_with(name, true) {
            if enable_offloads(&fd).is_ok() {
                return Ok(Tap { fd, offloads: true });
            }
        }
    }
    Ok(Tap {
        fd: open_tap_with(name, false)?,
        offloads: false,
    })
}

fn open_tap_with(name: &str, vnet_hdr: bool) -> io::Result<OwnedFd> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an interface name has 1 to 15 bytes",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: the descriptor is open on /dev/net/tun and `ifr` is a valid, initialised `ifreq`
    // that outlives the call; TUNSETIFF reads and writes only that struct.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

/// Sets the virtio-net header to 10 bytes, little-endian, and turns on checksum and TSO
/// offloads.
fn enable_offloads(fd: &OwnedFd) -> io::Result<()> {
    let size = libc::c_int::try_from(VNET_HDR_LEN).unwrap_or(10);
    // SAFETY: `size` is a valid c_int that outlives the call; TUNSETVNETHDRSZ reads only it.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let little_endian: libc::c_int = 1;
    // SAFETY: as above, TUNSETVNETLE reads one c_int. Little-endian is the default on
    // little-endian hosts, so an old kernel without the request is not an error there.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETLE, &little_endian) };
    if rc < 0 && cfg!(target_endian = "big") {
        return Err(io::Error::last_os_error());
    }
    let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes the feature bits as the argument itself, no pointer.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(features),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An AF_PACKET raw socket bound to one interface, seeing every frame on it (promiscuous), not
/// the frames sent from this host.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket on the interface `name`.
    pub fn open(name: &str) -> io::Result<PacketSocket> {
        PacketSocket::open_with(name, false)
    }

    /// Opens a socket on the interface `name` whose frames carry a virtio-net header both ways
    /// (`PACKET_VNET_HDR`: checksum and segmentation offload metadata, as on a tap opened with
    /// `IFF_VNET_HDR`): see [`PacketSocket::recv_with_header`] and
    /// [`PacketSocket::send_with_header`].
    pub fn open_with_vnet_hdr(name: &str) -> io::Result<PacketSocket> {
        PacketSocket::open_with(name, true)
    }

    fn open_with(name: &str, vnet_hdr: bool) -> io::Result<PacketSocket> {
        let ifindex = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)?;
        let ifindex = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just returned by socket(2) and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `sockaddr_ll` is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid `sockaddr_ll` and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        set_int(&fd, PACKET_AUXDATA, 1)?;
        set_int(&fd, PACKET_IGNORE_OUTGOING, 1)?;
        if vnet_hdr {
            set_int(&fd, PACKET_VNET_HDR, 1)?;
        }
        // SAFETY: `packet_mreq` is plain old data; all-zero is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex;
        mreq.mr_type = PACKET_MR_PROMISC;
        // SAFETY: `mreq` is a valid `packet_mreq` and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_ADD_MEMBERSHIP,
                std::ptr::addr_of!(mreq).cast(),
                socklen::<libc::packet_mreq>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd })
    }

    /// Receives one frame into `buf[TAG_ROOM..]`; returns where the frame is in `buf`. When the
    /// kernel took the frame's 802.1Q tag off into metadata, the tag is put back in place, using
    /// the first `TAG_ROOM` bytes.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Range<usize>> {
        self.recv_into(buf, None).map(|(frame, _)| frame)
    }

    /// On a socket opened with [`PacketSocket::open_with_vnet_hdr`]: receives the virtio-net
    /// header into `header` and the frame as [`PacketSocket::recv`] does. True with the range
    /// when the frame's tag was put back (the header's offsets count from the frame without
    /// it).
    pub fn recv_with_header(
        &self,
        buf: &mut [u8],
        header: &mut [u8; VNET_HDR_LEN],
    ) -> io::Result<(Range<usize>, bool)> {
        self.recv_into(buf, Some(header))
    }

    fn recv_into(
        &self,
        buf: &mut [u8],
        header: Option<&mut [u8; VNET_HDR_LEN]>,
    ) -> io::Result<(Range<usize>, bool)> {
        let Some(data) = buf.get_mut(TAG_ROOM..) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            ));
        };
        let data_iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut iovs = [data_iov, data_iov];
        let iov_count = match header {
            Some(h) => {
                iovs[0] = libc::iovec {
                    iov_base: h.as_mut_ptr().cast(),
                    iov_len: h.len(),
                };
                2
            }
            None => 1,
        };
        // Room for one cmsghdr and a tpacket_auxdata, aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: `msghdr` is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = iov_count;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at `iovs` (over the header, if any, and `data`) and `control`, all
        // alive and writable for the call; the kernel writes at most their stated lengths.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame larger than the buffer",
            ));
        }
        let head = if iov_count == 2 { VNET_HDR_LEN } else { 0 };
        let len = usize::try_from(n)
            .unwrap_or(0)
            .saturating_sub(head)
            .min(data.len());
        let mut aux = None;
        // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR stay within
        // `msg_control`/`msg_controllen`, and the auxdata is read unaligned after checking its
        // header's level, type and length.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let hdr = &*cmsg;
                if hdr.cmsg_level == SOL_PACKET
                    && hdr.cmsg_type == PACKET_AUXDATA
                    && hdr.cmsg_len >= libc::CMSG_LEN(size_of_u32::<TpacketAuxdata>()) as usize
                {
                    aux = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<TpacketAuxdata>(),
                    ));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let frame = TAG_ROOM..TAG_ROOM + len;
        let Some(aux) = aux.filter(|a| a.tp_status & TP_STATUS_VLAN_VALID != 0) else {
            return Ok((frame, false));
        };
        if len < 12 {
            return Ok((frame, false));
        }
        let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 && aux.tp_vlan_tpid != 0 {
            aux.tp_vlan_tpid
        } else {
            ETH_P_8021Q
        };
        buf.copy_within(TAG_ROOM..TAG_ROOM + 12, 0);
        if let Some(tag) = buf.get_mut(12..16) {
            tag[..2].copy_from_slice(&tpid.to_be_bytes());
            tag[2..].copy_from_slice(&aux.tp_vlan_tci.to_be_bytes());
        }
        Ok((0..TAG_ROOM + len, true))
    }

    /// On a socket opened with [`PacketSocket::open_with_vnet_hdr`]: sends `header` and the
    /// frame, non-blocking; returns the frame's bytes sent.
    pub fn send_with_header(&self, header: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<usize> {
        let iovs = [
            libc::iovec {
                iov_base: header.as_ptr().cast_mut().cast(),
                iov_len: header.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            },
        ];
        // SAFETY: `msghdr` is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs.as_ptr().cast_mut();
        msg.msg_iovlen = iovs.len();
        // SAFETY: `msg` points at `iovs` over `header` and `frame`, alive for the call; the
        // kernel only reads them.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0).saturating_sub(VNET_HDR_LEN))
    }

    /// Sends one frame as it is.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is a valid readable buffer of the given length for the call.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

impl std::os::fd::AsFd for PacketSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

fn set_int(fd: &OwnedFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the call and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            option,
            std::ptr::addr_of!(value).cast(),
            socklen::<libc::c_int>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

fn size_of_u32<T>() -> u32 {
    u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX)
}

/// A socket address for `sendmmsg`/`recvmmsg`: IPv4 or a Unix socket path.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAddr").field("len", &self.len).finish()
    }
}

impl RawAddr {
    fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: `sockaddr_storage` is plain old data; all-zero is a valid value.
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    /// An IPv4 address and port.
    pub(crate) fn v4(addr: SocketAddrV4) -> RawAddr {
        let mut raw = RawAddr::empty();
        // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in`; the cast
        // pointer stays within `raw.storage`.
        let sin = unsafe { &mut *std::ptr::addr_of_mut!(raw.storage).cast::<libc::sockaddr_in>() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = addr.port().to_be();
        sin.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
        raw.len = socklen::<libc::sockaddr_in>();
        raw
    }

    /// A Unix socket path (at most 107 bytes).
    pub(crate) fn unix(path: &Path) -> io::Result<RawAddr> {
        let bytes = path.as_os_str().as_bytes();
        let mut raw = RawAddr::empty();
        // SAFETY: as in `v4`, for `sockaddr_un`.
        let sun = unsafe { &mut *std::ptr::addr_of_mut!(raw.storage).cast::<libc::sockaddr_un>() };
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "socket path too long",
            ));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, &s) in sun.sun_path.iter_mut().zip(bytes) {
            *d = s as libc::c_char;
        }
        let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        raw.len = libc::socklen_t::try_from(base + bytes.len() + 1).unwrap_or(0);
        Ok(raw)
    }

    /// The IPv4 address, if it is one.
    fn to_v4(self) -> Option<SocketAddrV4> {
        if self.storage.ss_family != libc::AF_INET as libc::sa_family_t {
            return None;
        }
        // SAFETY: the family says the storage holds a `sockaddr_in`, which it is large enough
        // and aligned for.
        let sin = unsafe { &*std::ptr::addr_of!(self.storage).cast::<libc::sockaddr_in>() };
        Some(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            u16::from_be(sin.sin_port),
        ))
    }
}

/// One message for [`send_batch`]: the concatenation of `parts` to `to`; with a non-zero
/// `segment`, a UDP GSO message the kernel cuts into datagrams of `segment` bytes (the last may
/// be shorter).
pub(crate) struct Message<'a> {
    pub(crate) to: &'a RawAddr,
    pub(crate) parts: &'a [io::IoSlice<'a>],
    pub(crate) segment: u16,
}

/// Most messages one `sendmmsg`/`recvmmsg` call takes (`UIO_MAXIOV`).
pub(crate) const MAX_BATCH: usize = 1024;

/// Sends messages with one `sendmmsg` call (non-blocking); returns how many the kernel took
/// (at most [`MAX_BATCH`]). An error means the first was not taken.
pub(crate) fn send_batch(fd: &impl AsRawFd, messages: &[Message<'_>]) -> io::Result<usize> {
    let messages = messages.get(..messages.len().min(MAX_BATCH)).unwrap_or(&[]);
    if messages.is_empty() {
        return Ok(0);
    }
    // Room for one cmsghdr and a u16, aligned for cmsghdr.
    let mut controls = vec![[0u64; 4]; messages.len()];
    let mut headers: Vec<libc::mmsghdr> = messages
        .iter()
        .zip(controls.iter_mut())
        .map(|(m, control)| {
            // SAFETY: `mmsghdr` is plain old data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = std::ptr::addr_of!(m.to.storage).cast_mut().cast();
            h.msg_hdr.msg_namelen = m.to.len;
            // `IoSlice` is ABI-compatible with `iovec` on Unix; the kernel only reads them.
            h.msg_hdr.msg_iov = m.parts.as_ptr().cast_mut().cast();
            h.msg_hdr.msg_iovlen = m.parts.len();
            if m.segment != 0 {
                h.msg_hdr.msg_control = control.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE only computes a size.
                h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
                // SAFETY: `msg_control` points at `control` (32 bytes, aligned for cmsghdr),
                // which holds CMSG_SPACE(2) = 24 bytes: the header and the u16 written through
                // CMSG_FIRSTHDR / CMSG_DATA stay inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    if !c.is_null() {
                        (*c).cmsg_level = libc::SOL_UDP;
                        (*c).cmsg_type = libc::UDP_SEGMENT;
                        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.segment);
                    }
                }
            }
            h
        })
        .collect();
    let count = libc::c_uint::try_from(headers.len()).unwrap_or(0);
    // SAFETY: every header points at an address, parts and a control buffer that live until
    // the call returns (`messages`, `controls`); `count` is the number of headers.
    let n = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// One message [`recv_batch`] received: its length, its sender (if IPv4) and, for datagrams
/// the kernel coalesced (UDP GRO, see [`enable_udp_gro`]), the size of each but the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) from: Option<SocketAddrV4>,
    pub(crate) segment: Option<usize>,
}

/// Receives up to `bufs.len()` messages with one `recvmmsg` call (non-blocking), each into
/// `buf[offset..]`; appends each to `out`.
pub(crate) fn recv_batch(
    fd: &impl AsRawFd,
    bufs: &mut [Box<[u8]>],
    offset: usize,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    let count = bufs.len().min(MAX_BATCH);
    let mut names = vec![RawAddr::empty(); count];
    // Room for one cmsghdr and an int (UDP_GRO's segment size), aligned for cmsghdr.
    let mut controls = vec![[0u64; 4]; count];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .take(count)
        .map(|b| {
            let data = b.get_mut(offset..).unwrap_or(&mut []);
            libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            }
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(names.iter_mut())
        .zip(controls.iter_mut())
        .map(|((iov, name), control)| {
            // SAFETY: `mmsghdr` is plain old data; all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = std::ptr::addr_of_mut!(name.storage).cast();
            h.msg_hdr.msg_namelen = socklen::<libc::sockaddr_storage>();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = control.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of_val(control);
            h
        })
        .collect();
    let vlen = libc::c_uint::try_from(headers.len()).unwrap_or(0);
    // SAFETY: every header points at its own name storage, control buffer and iovec, which
    // point at the buffers; all are alive and writable for the call; `vlen` is the number of
    // headers.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0);
    for (h, name) in headers.iter().zip(names.iter_mut()).take(n) {
        name.len = h.msg_hdr.msg_namelen;
        out.push(Received {
            len: h.msg_len as usize,
            from: name.to_v4(),
            segment: gro_segment(&h.msg_hdr),
        });
    }
    Ok(n)
}

/// The segment size of a `UDP_GRO` control message in a received header, if it has one.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    let mut segment = None;
    // SAFETY: `hdr` was filled by `recvmmsg`: its control pointer and (kernel-set) length
    // describe the caller's control buffer, which is alive; CMSG_FIRSTHDR / CMSG_NXTHDR stay
    // inside that length, and the int is read only when the message's length covers it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP
                && (*c).cmsg_type == libc::UDP_GRO
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                segment = usize::try_from(size).ok().filter(|s| *s > 0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    segment
}

/// Asks the kernel to coalesce datagrams for this UDP socket (`UDP_GRO`, Linux 5.0): a UDP GSO
/// message from another host then arrives whole, with its segment size, instead of cut into
/// datagrams on the way in. False when the kernel refuses.
pub(crate) fn enable_udp_gro(fd: &impl AsRawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: `on` is valid for reads of its size for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            std::ptr::addr_of!(on).cast(),
            socklen::<libc::c_int>(),
        )
    };
    rc == 0
}

/// Whether the kernel takes UDP GSO (`UDP_SEGMENT`, Linux 4.18) on this socket.
pub(crate) fn udp_gso_supported(fd: &impl AsRawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = socklen::<libc::c_int>();
    // SAFETY: `value` and `len` are valid for writes of their sizes for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    rc == 0
}
