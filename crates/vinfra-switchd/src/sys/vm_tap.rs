//! A VM's tap as the switch keeps it: a persistent tap device that QEMU opens by name
//! (`-netdev tap,ifname=…`), kept out of the host's own network stack, whose frames the switch
//! reads and writes through an AF_PACKET socket with virtio-net headers
//! ([`super::PacketSocket::open`] with `vnet_hdr`).
//!
//! Out of the host's stack: the tap is a port of [`SINK_BRIDGE`], a bridge that is never set up.
//! A frame the guest sends reaches the switch's packet socket first (packet taps run before a
//! device's receive handler) and is then dropped by the bridge, whose ports stay disabled while
//! it is down, so the host never answers the guest's ARP or takes its packets for a local
//! address. IPv6 is off on the tap (no link-local address, no router solicitations to the
//! guest).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::open_tap_with;

/// The bridge that holds every VM tap and is never up.
pub const SINK_BRIDGE: &str = "vinfra-sink";

/// Makes the persistent tap `name` ready for a VM: created unless it exists (it does when QEMU
/// holds it or the switch restarted), a port of [`SINK_BRIDGE`], IPv6 off, MTU `mtu`, up.
pub(crate) fn prepare(name: &str, mtu: u16) -> io::Result<()> {
    if nix::net::if_::if_nametoindex(name).is_err() {
        let fd = open_tap_with(name, false)?;
        // SAFETY: the descriptor is an attached tap; TUNSETPERSIST takes its flag as the
        // argument itself, no pointer.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let ipv6 = Path::new("/proc/sys/net/ipv6/conf")
        .join(name)
        .join("disable_ipv6");
    if ipv6.exists() {
        std::fs::write(&ipv6, "1")?;
    }
    add_to_sink(name)?;
    let socket = control_socket()?;
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
    // SAFETY: `ifr` is a valid `ifreq` naming the device, alive for the call; SIOCSIFMTU reads
    // only it.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFMTU, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ifr = ifreq(name)?;
    // SAFETY: as above; SIOCGIFFLAGS writes the flags into `ifr`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS reads only `ifr`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Deletes the persistent tap `name` (nothing when it does not exist). Fails with `EBUSY` while
/// QEMU still holds it; the tap then goes with QEMU's next restart of the port or stays (the
/// switch logs it).
pub(crate) fn remove(name: &str) -> io::Result<()> {
    if nix::net::if_::if_nametoindex(name).is_err() {
        return Ok(());
    }
    let fd = open_tap_with(name, false)?;
    // SAFETY: as in `prepare`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `name` a port of [`SINK_BRIDGE`], creating the bridge (down) if needed.
fn add_to_sink(name: &str) -> io::Result<()> {
    let master = Path::new("/sys/class/net").join(name).join("master");
    if let Ok(target) = std::fs::read_link(&master) {
        if target.file_name().is_some_and(|n| n == SINK_BRIDGE) {
            return Ok(());
        }
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{name} is a port of another device"),
        ));
    }
    let socket = control_socket()?;
    let bridge = std::ffi::CString::new(SINK_BRIDGE).map_err(io::Error::other)?;
    // SAFETY: SIOCBRADDBR reads the NUL-terminated bridge name, alive for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), SIOCBRADDBR, bridge.as_ptr()) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    let index = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)?;
    let mut ifr = ifreq(SINK_BRIDGE)?;
    ifr.ifr_ifru.ifru_ifindex = libc::c_int::try_from(index).map_err(io::Error::other)?;
    // SAFETY: `ifr` is a valid `ifreq` naming the bridge and holding the port's index, alive
    // for the call; SIOCBRADDIF reads only it.
    if unsafe { libc::ioctl(socket.as_raw_fd(), SIOCBRADDIF, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIOCBRADDBR` and `SIOCBRADDIF` from `<linux/sockios.h>`.
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// A socket for interface ioctls.
fn control_socket() -> io::Result<std::os::fd::OwnedFd> {
    nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// An `ifreq` naming `name` (1 to 15 bytes), the rest zero.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an interface name has 1 to 15 bytes",
        ));
    }
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}
