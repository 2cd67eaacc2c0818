//! A VM's tap as the switch keeps it: a persistent tap device that QEMU opens by name
//! (`-netdev tap,ifname=…`), kept out of the host's own network stack, whose frames the switch
//! reads and writes through an AF_PACKET socket with virtio-net headers
//! ([`super::PacketSocket::open`] with `vnet_hdr`).
//!
//! Out of the host's stack, in layers (a frame reaches the switch's packet socket before any of
//! them: packet taps run first in the kernel's receive path):
//! 1. an nftables `netdev` ingress chain on the tap with policy drop (table `vinfra`, chain `t`
//!    followed by the tap name in hex, replaced in one transaction): nothing the guest sends
//!    goes further. Required: without `nft` the port is refused (fail closed);
//! 2. the tap is a port of [`SINK_BRIDGE`], a bridge that is never set up, whose ports stay
//!    disabled, so it drops what they receive; link-local group addresses (01:80:c2:00:00:0X),
//!    which a bridge handles before it looks at the port's state, are forwarded (and so
//!    dropped) by its `group_fwd_mask`, all but the three a bridge may not forward, which it
//!    passes up to the stack;
//! 3. on the tap: ARP never answered (`arp_ignore=8`), unicast IPv4 in link-layer multicast
//!    frames dropped (`drop_unicast_in_l2_multicast`), strict reverse-path filtering (the tap
//!    has no routes, so no source passes), IPv6 off (no link-local address, no router
//!    solicitations to the guest).
//!
//! So an operator's `nft flush ruleset` (a firewall reload) leaves the second and third.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::open_tap_with;

/// The user that may open tap `name` without privileges, as the kernel shows it.
fn tap_owner(name: &str) -> Option<u32> {
    let text =
        std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("owner")).ok()?;
    // -1: nobody's.
    text.trim().parse::<u32>().ok()
}

/// Makes the tap attached to `fd` openable by `owner` alone (besides privileged processes);
/// `None`: by privileged processes only (owner root). A tap with neither an owner nor a group
/// may be attached by any process that opens /dev/net/tun, so every VM tap gets an owner.
fn set_owner(fd: &impl AsRawFd, owner: Option<u32>) -> io::Result<()> {
    let uid = owner.unwrap_or(0);
    // SAFETY: the descriptor is an attached tap; TUNSETOWNER takes the user as the argument
    // itself, no pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOWNER, libc::c_ulong::from(uid)) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bridge that holds every VM tap and is never up.
pub const SINK_BRIDGE: &str = "vinfra-sink";

/// Makes the persistent tap `name` ready for a VM: created unless it exists (it does when QEMU
/// holds it or the switch restarted), a port of [`SINK_BRIDGE`], IPv6 off, MTU `mtu`, up.
pub(crate) fn prepare(name: &str, mtu: u16, owner: Option<u32>) -> io::Result<()> {
    check_name(name)?;
    if exists(name) {
        // Taken over only if it is a tap (a VM's, left by a switch that restarted).
        if !Path::new("/sys/class/net")
            .join(name)
            .join("tun_flags")
            .exists()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} exists and is not a tap"),
            ));
        }
        if tap_owner(name) != Some(owner.unwrap_or(0)) {
            match open_tap_with(name, false) {
                Ok(fd) => set_owner(&fd, owner)?,
                // Attached: QEMU opened it as the owner it had (a tap the switch made has had
                // one since; a tap left from before owners had none, so keep such a VM's port
                // only while its QEMU holds it).
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
        }
    } else {
        let fd = open_tap_with(name, false)?;
        set_owner(&fd, owner)?;
        // SAFETY: the descriptor is an attached tap; TUNSETPERSIST takes its flag as the
        // argument itself, no pointer.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    confine(name, mtu)
}

/// Keeps interface `name` out of the host's stack (see the module's documentation), sets its
/// MTU and brings it up.
fn confine(name: &str, mtu: u16) -> io::Result<()> {
    ingress_drop(name)?;
    let ipv6 = Path::new("/proc/sys/net/ipv6/conf")
        .join(name)
        .join("disable_ipv6");
    if ipv6.exists() {
        std::fs::write(&ipv6, "1")?;
    }
    let ipv4 = Path::new("/proc/sys/net/ipv4/conf").join(name);
    for (setting, value) in [
        ("arp_ignore", "8"),
        ("drop_unicast_in_l2_multicast", "1"),
        ("rp_filter", "1"),
    ] {
        let path = ipv4.join(setting);
        if path.exists() {
            std::fs::write(&path, value)?;
        }
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

/// Refuses a name with anything but letters, digits, '-', '_' and '.' (it goes into an
/// nftables script).
fn check_name(name: &str) -> io::Result<()> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !plain {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an interface port's or VM tap's name has only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// What an interface port changed on its interface, to put back when it goes: each setting's
/// file and the value it had.
pub type Saved = Vec<(PathBuf, String)>;

/// Makes the existing interface `name` ready for an interface port: not a tap (a VM's), a
/// bridge, loopback or another device's port; kept out of the host's stack as a VM's tap is
/// (the ingress chain, the sink bridge, the settings), MTU `mtu`, up. Everything is checked
/// before anything changes, and a failure half-way undoes what was done. Returns the settings
/// it changed, for [`release_interface`].
pub(crate) fn prepare_interface(name: &str, mtu: u16) -> io::Result<Saved> {
    check_name(name)?;
    let dir = Path::new("/sys/class/net").join(name);
    if !dir.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ));
    }
    if dir.join("tun_flags").exists() || dir.join("bridge").exists() || name == "lo" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is a tap, a bridge or loopback: not an interface port"),
        ));
    }
    if let Ok(target) = std::fs::read_link(dir.join("master")) {
        if target.file_name().is_none_or(|n| n != SINK_BRIDGE) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} is a port of another device"),
            ));
        }
    }
    let ipv4 = Path::new("/proc/sys/net/ipv4/conf").join(name);
    let files = [
        dir.join("mtu"),
        Path::new("/proc/sys/net/ipv6/conf")
            .join(name)
            .join("disable_ipv6"),
        ipv4.join("arp_ignore"),
        ipv4.join("drop_unicast_in_l2_multicast"),
        ipv4.join("rp_filter"),
    ];
    let saved: Saved = files
        .into_iter()
        .filter_map(|f| {
            let value = std::fs::read_to_string(&f).ok()?;
            Some((f, value.trim().to_string()))
        })
        .collect();
    if let Err(e) = confine(name, mtu) {
        release_interface(name, &saved);
        return Err(e);
    }
    Ok(saved)
}

/// Lets the interface `name` go: out of the sink bridge, its ingress chain deleted, the
/// settings `saved` put back (the interface stays).
pub(crate) fn release_interface(name: &str, saved: &Saved) {
    let _ = nft(&format!("delete chain netdev vinfra {}\n", chain(name)));
    let master = Path::new("/sys/class/net").join(name).join("master");
    if std::fs::read_link(&master)
        .ok()
        .is_some_and(|t| t.file_name().is_some_and(|n| n == SINK_BRIDGE))
    {
        if let Err(e) = del_from_sink(name) {
            tracing::debug!(interface = name, "left in the sink bridge: {e}");
        }
    }
    for (file, value) in saved {
        if let Err(e) = std::fs::write(file, value) {
            tracing::debug!(interface = name, file = %file.display(), "not put back: {e}");
        }
    }
}

/// Whether an interface `name` exists.
pub(crate) fn exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// Deletes the persistent tap `name` (nothing when it does not exist). Fails with `EBUSY` while
/// QEMU still holds it; the tap then goes with QEMU's next restart of the port or stays (the
/// switch logs it).
pub(crate) fn remove(name: &str) -> io::Result<()> {
    if !exists(name) {
        return Ok(());
    }
    let fd = open_tap_with(name, false)?;
    // SAFETY: as in `prepare`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 0 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(fd);
    // The tap is gone: its chain can go.
    let _ = nft(&format!("delete chain netdev vinfra {}\n", chain(name)));
    Ok(())
}

/// The nftables chain of tap `name`: `t` and the name's bytes in hex (chain names cannot be
/// quoted; this keeps every tap name apart).
fn chain(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("t{hex}")
}

/// Drops everything tap `name` receives at its ingress (after the packet sockets saw it): the
/// chain is added, or replaced in the same transaction (a chain left from an earlier tap of the
/// name may have lost its hook).
fn ingress_drop(name: &str) -> io::Result<()> {
    let c = chain(name);
    let spec =
        format!("{{ type filter hook ingress device \"{name}\" priority -500; policy drop; }}");
    nft(&format!(
        "add table netdev vinfra\nadd chain netdev vinfra {c} {spec}\n\
         delete chain netdev vinfra {c}\nadd chain netdev vinfra {c} {spec}\n"
    ))
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> io::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("nft (nftables) cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
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
    // Link-local group addresses 03 to 0F forwarded, so dropped by the disabled ports (00 is
    // forwarded without STP, 01 dropped; 02 cannot be: the other layers take it).
    std::fs::write(
        Path::new("/sys/class/net")
            .join(SINK_BRIDGE)
            .join("bridge/group_fwd_mask"),
        "0xfff8",
    )?;
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

/// Takes `name` out of [`SINK_BRIDGE`].
fn del_from_sink(name: &str) -> io::Result<()> {
    let socket = control_socket()?;
    let index = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)?;
    let mut ifr = ifreq(SINK_BRIDGE)?;
    ifr.ifr_ifru.ifru_ifindex = libc::c_int::try_from(index).map_err(io::Error::other)?;
    // SAFETY: `ifr` is a valid `ifreq` naming the bridge and holding the port's index, alive
    // for the call; SIOCBRDELIF reads only it.
    if unsafe { libc::ioctl(socket.as_raw_fd(), SIOCBRDELIF, &ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIOCBRADDBR`, `SIOCBRADDIF` and `SIOCBRDELIF` from `<linux/sockios.h>`.
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;
const SIOCBRDELIF: libc::c_ulong = 0x89a3;

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
