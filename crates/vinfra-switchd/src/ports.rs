//! Port I/O: how each port kind's frames are read and written.
//!
//! | kind | socket | a read gives | a write takes |
//! |---|---|---|---|
//! | VM | Unix datagram, QEMU `-netdev dgram` | one frame | one frame |
//! | host | tap (`IFF_TAP | IFF_NO_PI`) | one frame | one frame |
//! | VXLAN uplink | UDP on the underlay address, port 4789 | a VXLAN packet (UDP payload) | a VXLAN packet |
//! | VLAN trunk | AF_PACKET on an interface | one tagged frame (tag restored) | one tagged frame |
//!
//! The core works on whole underlay frames for the uplink; the daemon rebuilds the outer
//! Ethernet, IPv4 and UDP headers of a received VXLAN packet in the 42 bytes in front of it (the
//! kernel has already checked them) and sends only the bytes from the core's UDP payload offset.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use mio::net::{UdpSocket, UnixDatagram};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use vinfra_switch::wire::encap::{UDP_PAYLOAD_OFFSET, VXLAN_PORT};
use vinfra_switch::wire::ipv4::{self, protocol, Ipv4Repr};
use vinfra_switch::wire::udp::{self, UdpRepr};
use vinfra_switch::wire::{EtherType, EthernetRepr, MacAddr};

use crate::protocol::{Attachment, PortSpec, UNDERLAY_PLACEHOLDER_MAC};
use crate::sys::{self, PacketSocket};

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Binding the VM port's Unix socket failed.
    #[error("binding {path}")]
    BindVm {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Creating or opening the tap failed.
    #[error("opening tap {name}")]
    Tap {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Binding the UDP socket of the VXLAN uplink failed.
    #[error("binding the VXLAN uplink to {addr}")]
    Uplink {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Opening the AF_PACKET socket of the trunk failed.
    #[error("opening the trunk on {interface}")]
    Trunk {
        /// Interface name.
        interface: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Registering the port with the poller failed.
    #[error("registering the port with epoll")]
    Register(#[source] io::Error),
}

/// An open port.
#[derive(Debug)]
pub(crate) enum PortIo {
    Vm {
        socket: UnixDatagram,
        path: PathBuf,
        peer: PathBuf,
    },
    Tap(OwnedFd),
    Uplink {
        socket: UdpSocket,
        local_ip: Ipv4Addr,
    },
    Trunk(PacketSocket),
}

/// Bytes in front of a VXLAN packet read from the UDP socket: outer Ethernet, IPv4, UDP.
pub(crate) const RX_HEADROOM: usize = UDP_PAYLOAD_OFFSET;

impl PortIo {
    pub(crate) fn open(spec: &PortSpec) -> Result<PortIo, PortError> {
        match &spec.attach {
            Attachment::Vm { socket, peer, .. } => {
                let bound = bind_dgram(socket).map_err(|source| PortError::BindVm {
                    path: socket.clone(),
                    source,
                })?;
                Ok(PortIo::Vm {
                    socket: bound,
                    path: socket.clone(),
                    peer: peer.clone(),
                })
            }
            Attachment::Host { tap, .. } => {
                sys::open_tap(tap)
                    .map(PortIo::Tap)
                    .map_err(|source| PortError::Tap {
                        name: tap.clone(),
                        source,
                    })
            }
            Attachment::VxlanUplink { local_ip } => {
                let addr = SocketAddr::new(IpAddr::V4(*local_ip), VXLAN_PORT);
                let socket =
                    UdpSocket::bind(addr).map_err(|source| PortError::Uplink { addr, source })?;
                grow_buffers(&socket);
                Ok(PortIo::Uplink {
                    socket,
                    local_ip: *local_ip,
                })
            }
            Attachment::VlanTrunk { interface } => PacketSocket::open(interface)
                .map(PortIo::Trunk)
                .map_err(|source| PortError::Trunk {
                    interface: interface.clone(),
                    source,
                }),
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            PortIo::Vm { socket, .. } => registry.register(socket, token, Interest::READABLE),
            PortIo::Tap(fd) => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            }
            PortIo::Uplink { socket, .. } => registry.register(socket, token, Interest::READABLE),
            PortIo::Trunk(s) => {
                registry.register(&mut SourceFd(&s.as_raw_fd()), token, Interest::READABLE)
            }
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            PortIo::Vm { socket, .. } => registry.deregister(socket),
            PortIo::Tap(fd) => registry.deregister(&mut SourceFd(&fd.as_raw_fd())),
            PortIo::Uplink { socket, .. } => registry.deregister(socket),
            PortIo::Trunk(s) => registry.deregister(&mut SourceFd(&s.as_raw_fd())),
        }
    }

    /// Reads one frame into `buf`; returns where it is. `WouldBlock` when there is none.
    #[inline]
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Range<usize>> {
        match self {
            PortIo::Vm { socket, .. } => socket.recv(buf).map(|n| 0..n),
            PortIo::Tap(fd) => nix::unistd::read(fd, buf)
                .map(|n| 0..n)
                .map_err(io::Error::from),
            PortIo::Uplink { socket, local_ip } => {
                let payload = buf
                    .get_mut(RX_HEADROOM..)
                    .ok_or(io::ErrorKind::InvalidInput)?;
                let (n, from) = socket.recv_from(payload)?;
                let SocketAddr::V4(from) = from else {
                    // Not possible on an IPv4 socket; hand the core something it refuses.
                    return Ok(0..0);
                };
                rebuild_underlay(buf, n, *from.ip(), from.port(), *local_ip);
                Ok(0..RX_HEADROOM + n)
            }
            PortIo::Trunk(s) => s.recv(buf),
        }
    }

    /// Sends one frame from the core.
    #[inline]
    pub(crate) fn send(&self, frame: &[u8], vtep: Option<Ipv4Addr>) -> io::Result<()> {
        match self {
            PortIo::Vm { socket, peer, .. } => socket.send_to(frame, peer).map(drop),
            PortIo::Tap(fd) => nix::unistd::write(fd, frame)
                .map(drop)
                .map_err(io::Error::from),
            PortIo::Uplink { socket, .. } => {
                let Some(vtep) = vtep else {
                    return Err(io::ErrorKind::InvalidInput.into());
                };
                let payload = frame
                    .get(UDP_PAYLOAD_OFFSET..)
                    .ok_or(io::ErrorKind::InvalidInput)?;
                socket
                    .send_to(payload, SocketAddr::new(IpAddr::V4(vtep), VXLAN_PORT))
                    .map(drop)
            }
            PortIo::Trunk(s) => s.send(frame).map(drop),
        }
    }
}

impl Drop for PortIo {
    fn drop(&mut self) {
        if let PortIo::Vm { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a Unix datagram socket at `path`, replacing a socket file left by an earlier run (a
/// restarted switch takes its old paths back; QEMU keeps sending to the path).
fn bind_dgram(path: &Path) -> io::Result<UnixDatagram> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let socket = UnixDatagram::bind(path)?;
    // Room for bursts from a VM while the datapath is busy elsewhere.
    let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
    Ok(socket)
}

/// Writes outer Ethernet / IPv4 / UDP headers for a VXLAN packet of `payload_len` bytes that was
/// received at `buf[RX_HEADROOM..]`, so the core sees the underlay frame that arrived.
fn rebuild_underlay(
    buf: &mut [u8],
    payload_len: usize,
    src_ip: Ipv4Addr,
    src_port: u16,
    local_ip: Ipv4Addr,
) {
    let eth = EthernetRepr {
        dst: UNDERLAY_PLACEHOLDER_MAC,
        src: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
        vlan: None,
        ethertype: EtherType::IPV4,
    };
    let _ = eth.emit(buf);
    let Some(ip_buf) = buf.get_mut(vinfra_switch::wire::ethernet::HEADER_LEN..) else {
        return;
    };
    let _ = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: local_ip,
        protocol: protocol::UDP,
        payload_len: udp::HEADER_LEN + payload_len,
        ttl: 64,
        dscp_ecn: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(ip_buf));
    let Some(udp_buf) = buf.get_mut(vinfra_switch::wire::ethernet::HEADER_LEN + ipv4::HEADER_LEN..)
    else {
        return;
    };
    let _ = UdpRepr {
        src_port,
        dst_port: VXLAN_PORT,
    }
    .emit(&mut udp::Packet::new_unchecked(udp_buf), payload_len);
}

/// Socket buffer the VXLAN uplink asks for in each direction. The default (~208 KiB) overflows
/// within a millisecond when a burst from several remote hosts arrives while the datapath thread
/// is busy with a batch; every overflow is a lost inner frame (a TCP retransmit in a guest).
const UPLINK_SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// Raises the uplink's receive and send buffers: past `net.core.rmem_max` with the `*BUFFORCE`
/// options when the switch has CAP_NET_ADMIN, else as far as the limit allows. Best effort: a
/// smaller buffer only costs throughput, so failures are logged, not returned.
fn grow_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &UPLINK_SOCKET_BUFFER).is_err() {
        if let Err(e) = setsockopt(socket, sockopt::RcvBuf, &UPLINK_SOCKET_BUFFER) {
            tracing::warn!("uplink receive buffer left at its default: {e}");
        }
    }
    if setsockopt(socket, sockopt::SndBufForce, &UPLINK_SOCKET_BUFFER).is_err() {
        if let Err(e) = setsockopt(socket, sockopt::SndBuf, &UPLINK_SOCKET_BUFFER) {
            tracing::warn!("uplink send buffer left at its default: {e}");
        }
    }
}
