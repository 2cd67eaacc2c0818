//! Sending a batch of frames from the core on a datagram socket: frames as I/O slices (a
//! frame's head, and the payload it left in a received frame), grouped into messages (on the
//! uplink, equal-sized VXLAN packets to one VTEP as one UDP GSO message), sent with `sendmmsg`.

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::AsRawFd;

use vinfra_switch::wire::encap::{UDP_PAYLOAD_OFFSET, VXLAN_PORT};

use crate::sys::{self, Message, RawAddr};

/// A frame from the core to send in a batch: `head` followed by `tail` (the payload of a
/// segment left in the frame it was cut from, see [`vinfra_switch::datapath::TxFrame::tail`];
/// empty for a frame the core wrote whole), and the VTEP of a frame for the uplink.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) tail: &'a [u8],
    pub(crate) vtep: Option<Ipv4Addr>,
}

impl<'a> Outgoing<'a> {
    /// A frame written whole.
    #[cfg(test)]
    pub(crate) fn whole(bytes: &'a [u8], vtep: Option<Ipv4Addr>) -> Outgoing<'a> {
        Outgoing {
            head: bytes,
            tail: &[],
            vtep,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The frame in one slice: `head` itself, or both parts copied into `scratch`.
    pub(crate) fn contiguous<'s>(&self, scratch: &'s mut Vec<u8>) -> &'s [u8]
    where
        'a: 's,
    {
        if self.tail.is_empty() {
            return self.head;
        }
        scratch.clear();
        scratch.extend_from_slice(self.head);
        scratch.extend_from_slice(self.tail);
        scratch
    }
}

/// Consecutive frames sent as one message.
pub(super) struct FrameGroup {
    pub(super) frames: Range<usize>,
    /// `None` for a frame that cannot be sent (no VTEP, too short): an error.
    pub(super) to: Option<RawAddr>,
    /// UDP GSO segment size; 0 for a single datagram.
    pub(super) segment: u16,
}

/// Most datagrams in one UDP GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
pub(super) const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one UDP GSO message (a UDP datagram's payload limit, with room).
pub(super) const GSO_MAX_BYTES: usize = 65_000;

/// Groups uplink frames into messages: with `gso`, runs of VXLAN packets to the same VTEP whose
/// lengths are equal (the last may be shorter) become one UDP GSO message.
pub(super) fn group_vxlan(frames: &[Outgoing<'_>], gso: bool) -> Vec<FrameGroup> {
    let mut groups: Vec<FrameGroup> = Vec::new();
    // Per open group: its VTEP, segment length, bytes, and whether a shorter last one closed it.
    let mut open: Option<(Ipv4Addr, usize, usize, bool)> = None;
    for (i, frame) in frames.iter().enumerate() {
        let len = frame.len().saturating_sub(UDP_PAYLOAD_OFFSET);
        let (Some(vtep), true) = (&frame.vtep, frame.head.len() > UDP_PAYLOAD_OFFSET) else {
            groups.push(FrameGroup {
                frames: i..i + 1,
                to: None,
                segment: 0,
            });
            open = None;
            continue;
        };
        if let (Some((v, seg, total, closed)), Some(last)) = (open.as_mut(), groups.last_mut()) {
            let fits = gso
                && !*closed
                && *v == *vtep
                && len <= *seg
                && last.frames.len() < GSO_MAX_SEGMENTS
                && *total + len <= GSO_MAX_BYTES;
            if fits {
                last.frames.end = i + 1;
                last.segment = u16::try_from(*seg).unwrap_or(0);
                *total += len;
                *closed = len < *seg;
                continue;
            }
        }
        groups.push(FrameGroup {
            frames: i..i + 1,
            to: Some(RawAddr::v4(SocketAddrV4::new(*vtep, VXLAN_PORT))),
            segment: 0,
        });
        open = Some((*vtep, len, len, false));
    }
    groups
}

/// The I/O slices of a batch of frames, each frame's in a row: its head from `offset` on, and
/// its tail if it has one.
pub(super) struct Parts<'a> {
    slices: Vec<io::IoSlice<'a>>,
    /// Where frame `i`'s slices start; one more entry for the end.
    starts: Vec<usize>,
}

impl<'a> Parts<'a> {
    pub(super) fn of(frames: &[Outgoing<'a>], offset: usize) -> Parts<'a> {
        let mut slices = Vec::with_capacity(frames.len() * 2);
        let mut starts = Vec::with_capacity(frames.len() + 1);
        for frame in frames {
            starts.push(slices.len());
            slices.push(io::IoSlice::new(frame.head.get(offset..).unwrap_or(&[])));
            if !frame.tail.is_empty() {
                slices.push(io::IoSlice::new(frame.tail));
            }
        }
        starts.push(slices.len());
        Parts { slices, starts }
    }

    /// The slices of frames `frames`.
    fn get(&self, frames: Range<usize>) -> Option<&[io::IoSlice<'a>]> {
        let start = *self.starts.get(frames.start)?;
        let end = *self.starts.get(frames.end)?;
        self.slices.get(start..end)
    }
}

/// Sends `groups` of `parts` with `sendmmsg` calls; see [`super::PortIo::send_batch`]. A UDP GSO
/// message the kernel refuses is sent again as single datagrams, and GSO is turned off when the
/// kernel says it cannot do it.
pub(super) fn send_groups(
    socket: &impl AsRawFd,
    parts: &Parts<'_>,
    groups: &[FrameGroup],
    errors: &mut u64,
    udp_gso: Option<&Cell<bool>>,
) -> usize {
    let mut g = 0;
    while let Some(group) = groups.get(g) {
        let Some(_) = group.to else {
            *errors += group.frames.len() as u64;
            g += 1;
            continue;
        };
        let messages: Vec<Message<'_>> = groups
            .get(g..)
            .unwrap_or(&[])
            .iter()
            .map_while(|gr| {
                Some(Message {
                    to: gr.to.as_ref()?,
                    parts: parts.get(gr.frames.clone())?,
                    segment: gr.segment,
                })
            })
            .collect();
        match sys::send_batch(socket, &messages) {
            Ok(0) => return group.frames.start,
            Ok(n) => g += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return group.frames.start,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if group.segment != 0 => {
                // Not taken as GSO: sent again as single datagrams. The kernel's "not
                // supported" answers (EIO: no checksum offload on the route's device; EINVAL:
                // a segment size it refuses) turn GSO off from now on; anything else (no route
                // or no buffer for now, a smaller path MTU) leaves it on for the next message.
                if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                    if let Some(flag) = udp_gso {
                        flag.set(false);
                    }
                }
                let singles: Vec<FrameGroup> = group
                    .frames
                    .clone()
                    .map(|i| FrameGroup {
                        frames: i..i + 1,
                        to: group.to,
                        segment: 0,
                    })
                    .collect();
                let done = send_groups(socket, parts, &singles, errors, None);
                if done < group.frames.end {
                    return done;
                }
                g += 1;
            }
            Err(_) => {
                *errors += group.frames.len() as u64;
                g += 1;
            }
        }
    }
    groups.last().map_or(0, |gr| gr.frames.end)
}
