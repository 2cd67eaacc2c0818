//! QEMU's end of a VM's tap, played by the tests: the tap opened as QEMU opens it, and a relay
//! between it and a veth into a namespace whose stack plays the guest.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vinfra_switchd::sys::{self, PacketSocket, VNET_HDR_LEN};

use super::Netns;

/// Opens the tap as QEMU does for a guest that negotiated checksum and TSO offloads.
pub fn open_as_qemu(host: &Netns, tap: &str) -> OwnedFd {
    let tap = tap.to_owned();
    let t = host.run(move || sys::open_tap(&tap, true).unwrap());
    assert!(t.offloads, "the tap takes virtio-net headers");
    t.fd
}

/// QEMU and its guest, played by a relay: frames from the switch (read from the tap with their
/// virtio-net header) go out of a veth into namespace `ep` with the same metadata
/// (AF_PACKET with `PACKET_VNET_HDR`), and frames from `ep` go to the tap the same way. The
/// largest frame each way is recorded. Runs until `stop`.
pub fn relay(
    host: &Netns,
    veth: String,
    tap: OwnedFd,
    stop: Arc<AtomicBool>,
    largest: Arc<[AtomicUsize; 2]>,
) -> Vec<std::thread::JoinHandle<()>> {
    let packet = Arc::new(host.run(move || PacketSocket::open_with_vnet_hdr(&veth).unwrap()));
    let tap = Arc::new(tap);
    let to_veth = {
        let (packet, tap, stop, largest) =
            (packet.clone(), tap.clone(), stop.clone(), largest.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; VNET_HDR_LEN + 65536];
            while !stop.load(Ordering::Relaxed) {
                match nix::unistd::read(&*tap, &mut buf) {
                    Ok(n) if n > VNET_HDR_LEN => {
                        let header: [u8; VNET_HDR_LEN] = buf[..VNET_HDR_LEN].try_into().unwrap();
                        largest[0].fetch_max(n - VNET_HDR_LEN, Ordering::Relaxed);
                        let _ = packet.send_with_header(&header, &buf[VNET_HDR_LEN..n]);
                    }
                    _ => std::thread::sleep(Duration::from_micros(50)),
                }
            }
        })
    };
    let to_tap = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536 + 4];
        let mut header = [0u8; VNET_HDR_LEN];
        while !stop.load(Ordering::Relaxed) {
            match packet.recv_with_header(&mut buf, &mut header) {
                Ok((range, _)) => {
                    largest[1].fetch_max(range.len(), Ordering::Relaxed);
                    let _ = nix::sys::uio::writev(
                        &*tap,
                        &[
                            std::io::IoSlice::new(&header),
                            std::io::IoSlice::new(&buf[range]),
                        ],
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_micros(50)),
            }
        }
    });
    vec![to_veth, to_tap]
}
