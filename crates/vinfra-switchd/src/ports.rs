//! Port I/O: how each port kind's frames are read and written.
//!
//! | kind | socket | a read gives | a write takes |
//! |---|---|---|---|
//! | VM | Unix datagram, QEMU `-netdev dgram` | one frame (`recvmmsg`: up to 32) | one frame (`sendmmsg`: a batch) |
//! | VM tap | AF_PACKET with virtio-net headers on a tap QEMU holds (`-netdev tap`) | virtio-net header + one frame (up to 64 KiB) | virtio-net header + one frame |
//! | host | tap (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, TSO/checksum offloads) | virtio-net header + one frame (up to 64 KiB) | virtio-net header + one frame |
//! | VXLAN uplink | UDP on the underlay address, port 4789 | a VXLAN packet (UDP payload; `recvmmsg`: up to 32 messages, each one datagram or, with `UDP_GRO`, the datagrams of a peer's UDP GSO message back to back, cut apart here) | a VXLAN packet (`sendmmsg`; equal-sized packets to one VTEP as one UDP GSO message; a segment's headers and its payload, left in the frame read from a tap, gathered) |
//! | VLAN trunk | AF_PACKET on an interface | one tagged frame (tag restored) | one tagged frame |
//!
//! The core works on whole underlay frames for the uplink; the daemon rebuilds the outer
//! Ethernet, IPv4 and UDP headers of a received VXLAN packet in the 42 bytes in front of it (the
//! kernel has already checked them) and sends only the bytes from the core's UDP payload offset.
//! A VXLAN packet over the uplink's MTU that carries one large TCP segment (another host's
//! kernel fast path sent it whole over an underlay that cut nothing) is cut first ([`large`]).
//!
//! A host tap and a VM tap take offloads (a host tap when the kernel allows them (else it is opened plain): its frames
//! carry a virtio-net header, parsed into the core's [`Offload`] metadata on receive and written
//! from [`vinfra_switch::datapath::TxFrame::offload`] on send; the core cuts large segments and
//! completes checksums for every port that has no offloads.

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mio::net::{UdpSocket, UnixDatagram};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use vinfra_switch::wire::encap::{UDP_PAYLOAD_OFFSET, VXLAN_PORT};
use vinfra_switch::wire::ipv4::{self, protocol, Ipv4Repr};
use vinfra_switch::wire::udp::{self, UdpRepr};
use vinfra_switch::wire::virtio_net;
use vinfra_switch::wire::{EtherType, EthernetRepr, MacAddr, Offload};
use vinfra_switch_control::{Attachment, PortSpec};

use crate::sys::{self, PacketSocket, RawAddr, VNET_HDR_LEN};

pub(crate) use send::Outgoing;
use send::{group_vxlan, send_groups, FrameGroup, Parts};

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
    /// A sub-interface has no socket or device of its own to open.
    #[error("an 802.1Q sub-interface has no socket of its own (its frames use its parent's)")]
    SubInterface,
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
        /// The peer's address for `sendmmsg` (`None` for a path too long for it: frames then
        /// go one `sendto` each).
        peer_addr: Option<RawAddr>,
    },
    Tap {
        fd: OwnedFd,
        /// Frames carry a virtio-net header (checksum and TSO offloads).
        offloads: bool,
    },
    Uplink {
        socket: UdpSocket,
        local_ip: Ipv4Addr,
        /// The kernel takes UDP GSO messages (off after one was refused).
        udp_gso: Cell<bool>,
    },
    Trunk(PacketSocket),
    /// A VM's tap, or an interface port (`owned: false`: the switch neither made nor deletes
    /// it), through an AF_PACKET socket with virtio-net headers.
    VmTap {
        socket: PacketSocket,
        tap: String,
        owned: bool,
        /// An interface port's settings before the switch took it, put back when it goes.
        saved: sys::vm_tap::Saved,
    },
}

/// A message read from a port: where it is in its buffer, its offload metadata and, for
/// datagrams the kernel coalesced on the uplink, how to cut them apart.
#[derive(Clone, Debug)]
pub(crate) struct RxFrame {
    /// The frame; for coalesced datagrams, their payloads back to back.
    pub(crate) range: Range<usize>,
    pub(crate) offload: Offload,
    pub(crate) coalesced: Option<CoalescedDatagrams>,
}

impl RxFrame {
    fn new(range: Range<usize>, offload: Offload) -> RxFrame {
        RxFrame {
            range,
            offload,
            coalesced: None,
        }
    }
}

/// VXLAN packets the kernel coalesced on the uplink (UDP GRO: one UDP GSO message from a peer
/// arrives whole): back to back, `segment` bytes each but the last, all from `from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CoalescedDatagrams {
    pub(crate) segment: usize,
    pub(crate) from: SocketAddrV4,
    pub(crate) local_ip: Ipv4Addr,
}

impl CoalescedDatagrams {
    /// Hands each packet of `payloads` (a range of `buf` that starts at or after
    /// [`RX_HEADROOM`]) to `f` in order, as the frame a single datagram gives: its underlay
    /// headers are rebuilt in front of it, over the end of the packet before it (already
    /// handed over, so `f` must not keep it). Returns how many packets went to `f`.
    pub(crate) fn for_each(
        &self,
        buf: &mut [u8],
        payloads: Range<usize>,
        mut f: impl FnMut(&[u8]),
    ) -> usize {
        let mut start = payloads.start;
        let mut count = 0;
        while start < payloads.end && self.segment > 0 {
            let len = self.segment.min(payloads.end - start);
            let Some(frame) = start
                .checked_sub(RX_HEADROOM)
                .and_then(|head| buf.get_mut(head..start + len))
            else {
                break;
            };
            rebuild_underlay(frame, len, *self.from.ip(), self.from.port(), self.local_ip);
            f(frame);
            count += 1;
            start += len;
        }
        count
    }
}

/// MAC the switch uses as the underlay source and next hop of the UDP uplink. The kernel
/// rewrites the underlay Ethernet header: these bytes never reach the wire.
pub(crate) const UNDERLAY_PLACEHOLDER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

/// Bytes in front of a VXLAN packet read from the UDP socket: outer Ethernet, IPv4, UDP.
pub(crate) const RX_HEADROOM: usize = UDP_PAYLOAD_OFFSET;

/// The device a port reads through a packet socket (a VM's tap, an interface port): one port
/// each.
pub(crate) fn packet_device(attach: &Attachment) -> Option<&str> {
    match attach {
        Attachment::VmTap { tap, .. } => Some(tap),
        Attachment::Interface { interface, .. } => Some(interface),
        _ => None,
    }
}

impl PortIo {
    pub(crate) fn open(spec: &PortSpec) -> Result<PortIo, PortError> {
        match &spec.attach {
            Attachment::Vm {
                socket,
                peer,
                owner,
                ..
            } => {
                let failed = |source| PortError::BindVm {
                    path: socket.clone(),
                    source,
                };
                let bound = bind_dgram(socket).map_err(failed)?;
                if let Some(uid) = owner {
                    // QEMU, running as `uid`, may send to it; nobody else but root. The path is
                    // in the VM's directory, root's: QEMU cannot put a link in its place.
                    std::os::unix::fs::lchown(socket, Some(*uid), None).map_err(failed)?;
                    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
                        .map_err(failed)?;
                }
                Ok(PortIo::Vm {
                    socket: bound,
                    path: socket.clone(),
                    peer: peer.clone(),
                    peer_addr: RawAddr::unix(peer).ok(),
                })
            }
            Attachment::Host { tap, .. } => sys::open_tap(tap, tap_offloads())
                .map(|t| PortIo::Tap {
                    fd: t.fd,
                    offloads: t.offloads,
                })
                .map_err(|source| PortError::Tap {
                    name: tap.clone(),
                    source,
                }),
            Attachment::VxlanUplink { local_ip } => {
                let addr = SocketAddr::new(IpAddr::V4(*local_ip), VXLAN_PORT);
                let socket =
                    UdpSocket::bind(addr).map_err(|source| PortError::Uplink { addr, source })?;
                grow_buffers(&socket, UPLINK_SOCKET_BUFFER);
                if !sys::enable_udp_gro(&socket) {
                    tracing::debug!(
                        "the kernel does not coalesce the uplink's datagrams (UDP_GRO)"
                    );
                }
                let udp_gso = Cell::new(sys::udp_gso_supported(&socket));
                Ok(PortIo::Uplink {
                    socket,
                    local_ip: *local_ip,
                    udp_gso,
                })
            }
            Attachment::VmTap { tap, owner, .. } => sys::vm_tap::prepare(tap, spec.mtu, *owner)
                .and_then(|()| PacketSocket::open_with_vnet_hdr(tap))
                // Room for bursts of 64 KiB segments while the datapath is busy elsewhere.
                .inspect(|socket| grow_buffers(socket, VM_TAP_SOCKET_BUFFER))
                .map(|socket| PortIo::VmTap {
                    socket,
                    tap: tap.clone(),
                    owned: true,
                    saved: Vec::new(),
                })
                .map_err(|source| PortError::Tap {
                    name: tap.clone(),
                    source,
                }),
            Attachment::Interface { interface, .. } => {
                let failed = |source| PortError::Tap {
                    name: interface.clone(),
                    source,
                };
                let saved = sys::vm_tap::prepare_interface(interface, spec.mtu).map_err(failed)?;
                match PacketSocket::open_with_vnet_hdr(interface) {
                    Ok(socket) => {
                        grow_buffers(&socket, VM_TAP_SOCKET_BUFFER);
                        Ok(PortIo::VmTap {
                            socket,
                            tap: interface.clone(),
                            owned: false,
                            saved,
                        })
                    }
                    Err(e) => {
                        sys::vm_tap::release_interface(interface, &saved);
                        Err(failed(e))
                    }
                }
            }
            Attachment::VmVlan { .. } => Err(PortError::SubInterface),
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
            PortIo::Tap { fd, .. } => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            }
            PortIo::Uplink { socket, .. } => registry.register(socket, token, Interest::READABLE),
            PortIo::Trunk(s) | PortIo::VmTap { socket: s, .. } => {
                registry.register(&mut SourceFd(&s.as_raw_fd()), token, Interest::READABLE)
            }
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            PortIo::Vm { socket, .. } => registry.deregister(socket),
            PortIo::Tap { fd, .. } => registry.deregister(&mut SourceFd(&fd.as_raw_fd())),
            PortIo::Uplink { socket, .. } => registry.deregister(socket),
            PortIo::Trunk(s) | PortIo::VmTap { socket: s, .. } => {
                registry.deregister(&mut SourceFd(&s.as_raw_fd()))
            }
        }
    }

    /// True for a port whose frames carry offload metadata.
    pub(crate) fn offloads(&self) -> bool {
        matches!(
            self,
            PortIo::Tap { offloads: true, .. } | PortIo::VmTap { .. }
        )
    }

    /// Where the kernel fast path goes on this port: the device, and the packet socket whose
    /// filter hides what the fast path takes (`crate::fastpath`). Only VM taps and interface
    /// ports: a host tap may be moved to another namespace, where the program's interface
    /// indexes would name other devices.
    pub(crate) fn fast_device(&self) -> Option<(&str, &PacketSocket)> {
        match self {
            PortIo::VmTap { socket, tap, .. } => Some((tap, socket)),
            _ => None,
        }
    }

    /// The VXLAN uplink's address, whose underlay device the fast path can take VXLAN packets
    /// on and send them from.
    pub(crate) fn fast_uplink(&self) -> Option<Ipv4Addr> {
        match self {
            PortIo::Uplink { local_ip, .. } => Some(*local_ip),
            _ => None,
        }
    }

    /// Reads one frame into `buf`; returns where it is and its offload metadata. `WouldBlock`
    /// when there is none; `InvalidData` for a virtio-net header the core cannot take.
    #[inline]
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<(Range<usize>, Offload)> {
        match self {
            PortIo::Tap { fd, offloads: true } => {
                let n = nix::unistd::read(fd, buf).map_err(io::Error::from)?;
                let header = buf.get(..n.min(VNET_HDR_LEN)).unwrap_or(&[]);
                let offload = virtio_net::Packet::new_checked(header)
                    .and_then(|h| Offload::parse(&h))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok((VNET_HDR_LEN..n, offload))
            }
            PortIo::VmTap { socket, .. } => {
                let mut header = [0u8; VNET_HDR_LEN];
                let (range, tagged) = socket.recv_with_header(buf, &mut header)?;
                if tagged {
                    shift_offsets(&mut header, sys::TAG_ROOM);
                }
                let offload = Offload::parse(&virtio_net::Packet::new_unchecked(&header[..]))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok((range, offload))
            }
            other => other.recv_plain(buf).map(|r| (r, Offload::NONE)),
        }
    }

    #[inline]
    fn recv_plain(&self, buf: &mut [u8]) -> io::Result<Range<usize>> {
        match self {
            PortIo::Vm { socket, .. } => socket.recv(buf).map(|n| 0..n),
            PortIo::Tap { fd, .. } => nix::unistd::read(fd, buf)
                .map(|n| 0..n)
                .map_err(io::Error::from),
            PortIo::Uplink {
                socket, local_ip, ..
            } => {
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
            // Its frames come with a header: `recv` reads them.
            PortIo::VmTap { .. } => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    /// Reads up to `bufs.len()` frames, appending where each is and its offload metadata to
    /// `frames`: one `recvmmsg` on datagram sockets (VM ports, the uplink), one read per frame
    /// on the others. True when the port may have more (every buffer was filled); receive
    /// errors are counted in `errors`.
    pub(crate) fn recv_batch(
        &self,
        bufs: &mut [Box<[u8]>],
        frames: &mut Vec<RxFrame>,
        scratch: &mut Vec<sys::Received>,
        errors: &mut u64,
    ) -> bool {
        let (fd, offset): (&dyn AsRawFd, usize) = match self {
            PortIo::Vm { socket, .. } => (socket, 0),
            PortIo::Uplink { socket, .. } => (socket, RX_HEADROOM),
            PortIo::Tap { .. } | PortIo::Trunk(_) | PortIo::VmTap { .. } => {
                for buf in bufs.iter_mut() {
                    match self.recv(buf) {
                        Ok((range, offload)) => frames.push(RxFrame::new(range, offload)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => *errors += 1,
                    }
                }
                return true;
            }
        };
        // An error with nothing received (e.g. an ICMP error queued on the UDP socket): count
        // it and read on, a few times.
        for _ in 0..4 {
            scratch.clear();
            match sys::recv_batch(&Fd(fd.as_raw_fd()), bufs, offset, scratch) {
                Ok(n) => {
                    for (r, buf) in scratch.iter().zip(bufs.iter_mut()) {
                        let len = r.len;
                        match self {
                            PortIo::Uplink { local_ip, .. } => {
                                let Some(from) = r.from else {
                                    // Not possible on an IPv4 socket; the core refuses it.
                                    frames.push(RxFrame::new(0..0, Offload::NONE));
                                    continue;
                                };
                                if let Some(segment) = r.segment.filter(|s| *s < len) {
                                    frames.push(RxFrame {
                                        range: RX_HEADROOM..RX_HEADROOM + len,
                                        offload: Offload::NONE,
                                        coalesced: Some(CoalescedDatagrams {
                                            segment,
                                            from,
                                            local_ip: *local_ip,
                                        }),
                                    });
                                    continue;
                                }
                                rebuild_underlay(buf, len, *from.ip(), from.port(), *local_ip);
                                frames.push(RxFrame::new(0..RX_HEADROOM + len, Offload::NONE));
                            }
                            _ => frames.push(RxFrame::new(0..len, Offload::NONE)),
                        }
                    }
                    return n == bufs.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => *errors += 1,
            }
        }
        true
    }

    /// True for a port whose frames go out in batches ([`PortIo::send_batch`]).
    pub(crate) fn batches(&self) -> bool {
        matches!(
            self,
            PortIo::Uplink { .. }
                | PortIo::Vm {
                    peer_addr: Some(_),
                    ..
                }
        )
    }

    /// Sends frames from the core in order: one `sendmmsg` for many datagrams; on the uplink,
    /// consecutive VXLAN packets to the same VTEP with the same length (the segments of one
    /// large TCP segment, the last may be shorter) go as one UDP GSO message. Returns how many
    /// frames are done (sent, or failed and counted in `errors`); the rest could not be sent
    /// now (the peer is full) and are for the backlog.
    pub(crate) fn send_batch(&self, frames: &[Outgoing<'_>], errors: &mut u64) -> usize {
        match self {
            PortIo::Vm {
                socket,
                peer_addr: Some(to),
                ..
            } => {
                let parts = Parts::of(frames, 0);
                let groups: Vec<FrameGroup> = (0..frames.len())
                    .map(|i| FrameGroup {
                        frames: i..i + 1,
                        to: Some(*to),
                        segment: 0,
                    })
                    .collect();
                send_groups(socket, &parts, &groups, errors, None)
            }
            PortIo::Uplink {
                socket, udp_gso, ..
            } => {
                // The core's UDP payload: each packet's headers from the VXLAN header on, and
                // the payload left in a received frame, gathered by the kernel.
                let parts = Parts::of(frames, UDP_PAYLOAD_OFFSET);
                let groups = group_vxlan(frames, udp_gso.get());
                send_groups(socket, &parts, &groups, errors, Some(udp_gso))
            }
            PortIo::Tap { .. } | PortIo::Trunk(_) | PortIo::VmTap { .. } | PortIo::Vm { .. } => {
                let mut joined = Vec::new();
                for (i, frame) in frames.iter().enumerate() {
                    match self.send(frame.contiguous(&mut joined), frame.vtep, &Offload::NONE) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return i,
                        Err(_) => *errors += 1,
                    }
                }
                frames.len()
            }
        }
    }

    /// Sends one frame from the core, with its offload metadata on a tap that takes it.
    #[inline]
    pub(crate) fn send(
        &self,
        frame: &[u8],
        vtep: Option<Ipv4Addr>,
        offload: &Offload,
    ) -> io::Result<()> {
        match self {
            PortIo::Vm { socket, peer, .. } => socket.send_to(frame, peer).map(drop),
            PortIo::Tap { fd, offloads: true } => {
                let header = offload.to_bytes();
                nix::sys::uio::writev(fd, &[io::IoSlice::new(&header), io::IoSlice::new(frame)])
                    .map(drop)
                    .map_err(io::Error::from)
            }
            PortIo::Tap { fd, .. } => nix::unistd::write(fd, frame)
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
            PortIo::VmTap { socket, .. } => socket
                .send_with_header(&offload.to_bytes(), frame)
                .map(drop),
        }
    }
}

impl Drop for PortIo {
    fn drop(&mut self) {
        match self {
            PortIo::Vm { path, .. } => {
                let _ = std::fs::remove_file(path);
            }
            PortIo::VmTap {
                tap, owned: true, ..
            } => {
                if let Err(e) = sys::vm_tap::remove(tap) {
                    tracing::debug!(tap, "VM tap not deleted now: {e}");
                }
            }
            PortIo::VmTap {
                tap,
                owned: false,
                saved,
                ..
            } => sys::vm_tap::release_interface(tap, saved),
            _ => {}
        }
    }
}

/// Moves a virtio-net header's offsets (header length, checksum start) `by` bytes further into
/// the frame: for a frame whose 802.1Q tag was put back in front of the offsets the kernel
/// counted without it.
fn shift_offsets(header: &mut [u8; VNET_HDR_LEN], by: usize) {
    let by = u16::try_from(by).unwrap_or(0);
    let mut packet = virtio_net::Packet::new_unchecked(&mut header[..]);
    let flags = packet.flags();
    if packet.hdr_len() != 0 {
        packet.set_hdr_len(packet.hdr_len().saturating_add(by));
    }
    if flags & virtio_net::FLAG_NEEDS_CSUM != 0 {
        packet.set_csum_start(packet.csum_start().saturating_add(by));
    }
}

/// Whether host taps are opened with virtio-net headers and offloads: yes unless the
/// environment sets `VINFRA_SWITCH_TAP_OFFLOADS=off` (to compare, or to rule offloads out).
fn tap_offloads() -> bool {
    std::env::var_os("VINFRA_SWITCH_TAP_OFFLOADS").is_none_or(|v| v != "off")
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

/// Socket buffer a VM tap's packet socket asks for in each direction: the default (~208 KiB)
/// holds three 64 KiB segments.
const VM_TAP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Raises a socket's receive and send buffers to `size`: past `net.core.rmem_max` with the
/// `*BUFFORCE` options when the switch has CAP_NET_ADMIN, else as far as the limit allows. Best
/// effort: a smaller buffer only costs throughput, so failures are logged, not returned.
fn grow_buffers(socket: &impl std::os::fd::AsFd, size: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &size).is_err() {
        if let Err(e) = setsockopt(socket, sockopt::RcvBuf, &size) {
            tracing::warn!("receive buffer left at its default: {e}");
        }
    }
    if setsockopt(socket, sockopt::SndBufForce, &size).is_err() {
        if let Err(e) = setsockopt(socket, sockopt::SndBuf, &size) {
            tracing::warn!("send buffer left at its default: {e}");
        }
    }
}

/// A raw descriptor borrowed for one call.
struct Fd(std::os::fd::RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

pub(crate) mod large;
mod send;
#[cfg(test)]
mod tests;
