//! The output of a batch: frames to send, packed into one reusable buffer.

use core::net::Ipv4Addr;
use core::ops::Range;

use super::port::PortId;
use crate::wire::gro::{Coalesced, TcpSegment};
use crate::wire::Offload;

/// One frame to send.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TxFrame {
    /// The port to send it on.
    pub port: PortId,
    /// For a frame on the VXLAN uplink, the remote VTEP it is addressed to.
    pub vtep: Option<Ipv4Addr>,
    /// Offload metadata for a port that takes it (a tap with virtio-net headers): a checksum
    /// left to complete or a large TCP segment, with offsets from the start of the frame. Always
    /// [`Offload::NONE`] for other ports: their frames are complete.
    pub offload: Offload,
    range: Range<usize>,
}

/// Frames produced by [`super::Switch::process`], in order. Clear and reuse it between batches:
/// its buffers keep their capacity, so a steady state allocates nothing. Several frames may share
/// the same bytes (one flooded frame to several access ports).
#[derive(Clone, Debug, Default)]
pub struct TxBatch {
    data: Vec<u8>,
    frames: Vec<TxFrame>,
    /// The last frame, when later TCP segments for the same port may still join it.
    open: Option<(PortId, Coalesced)>,
}

impl TxBatch {
    /// An empty batch.
    pub fn new() -> TxBatch {
        TxBatch::default()
    }

    /// An empty batch with room for `frames` frames of `bytes` bytes in total.
    pub fn with_capacity(frames: usize, bytes: usize) -> TxBatch {
        TxBatch {
            data: Vec::with_capacity(bytes),
            frames: Vec::with_capacity(frames),
            open: None,
        }
    }

    /// Forgets every frame, keeping the capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
        self.open = None;
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// No frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The bytes of a frame.
    pub fn bytes(&self, frame: &TxFrame) -> &[u8] {
        self.data.get(frame.range.clone()).unwrap_or(&[])
    }

    /// Length of the frame at position `index`; zero past the end.
    pub(crate) fn frame_len(&self, index: usize) -> usize {
        self.frames.get(index).map_or(0, |f| f.range.len())
    }

    /// Every frame with its bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&TxFrame, &[u8])> + '_ {
        self.frames.iter().map(move |f| (f, self.bytes(f)))
    }

    /// Writes a frame with `write` (which appends its bytes to the buffer and says whether it
    /// succeeded) and queues it. Returns the range of the bytes, to queue them again with
    /// [`TxBatch::push_again`]; on failure the bytes are discarded and nothing is queued.
    #[inline]
    pub(crate) fn push_with(
        &mut self,
        port: PortId,
        vtep: Option<Ipv4Addr>,
        offload: Offload,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> Option<Range<usize>> {
        self.open = None;
        let start = self.data.len();
        if !write(&mut self.data) {
            self.data.truncate(start);
            return None;
        }
        let range = start..self.data.len();
        self.frames.push(TxFrame {
            port,
            vtep,
            offload,
            range: range.clone(),
        });
        Some(range)
    }

    /// Queues bytes already in the buffer for another port.
    #[inline]
    pub(crate) fn push_again(&mut self, port: PortId, range: Range<usize>, offload: Offload) {
        self.open = None;
        self.frames.push(TxFrame {
            port,
            vtep: None,
            offload,
            range,
        });
    }

    /// Writes a complete frame for a port that takes large segments, as [`TxBatch::push_with`],
    /// joining it to the previous frame when both are segments of one TCP flow in sequence
    /// (see [`crate::wire::gro`]): the previous frame then grows and carries GSO metadata.
    /// Returns the range of a frame queued on its own (to queue again with
    /// [`TxBatch::push_again`]), `None` when it was joined or not written.
    pub(crate) fn push_coalescing(
        &mut self,
        port: PortId,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> Option<Range<usize>> {
        let open = self.open.take();
        let range = self.push_with(port, None, Offload::NONE, write)?;
        let Some(segment) = self.data.get(range.clone()).and_then(TcpSegment::parse) else {
            return Some(range);
        };
        if let Some((open_port, mut state)) = open {
            if let Some(joined) = self.join_last(open_port, &mut state, &range, &segment) {
                if joined {
                    self.open = Some((port, state));
                }
                return None;
            }
        }
        self.open = Coalesced::start(&segment).map(|state| (port, state));
        Some(range)
    }

    /// Joins the newest frame (at `range`, holding `segment`) to the one before it when that
    /// one is open on the same port and takes it. `Some(more)` when joined, `more` saying
    /// whether the frame stays open.
    fn join_last(
        &mut self,
        open_port: PortId,
        state: &mut Coalesced,
        range: &Range<usize>,
        segment: &TcpSegment,
    ) -> Option<bool> {
        let [.., prev, last] = self.frames.as_slice() else {
            return None;
        };
        if prev.port != open_port
            || last.port != open_port
            || prev.range.end != range.start
            || last.range != *range
        {
            return None;
        }
        let prev_range = prev.range.clone();
        let (head, tail) = self.data.split_at(range.start);
        if !state.accepts(head.get(prev_range.clone())?, segment, tail) {
            return None;
        }
        // Move the payload down over the new frame's headers, and forget the new frame.
        let payload = range.start + segment.headers_len()..range.end;
        self.data.copy_within(payload, range.start);
        self.data.truncate(range.start + segment.payload_len());
        self.frames.pop();
        let end = self.data.len();
        let frame = self.frames.last_mut()?;
        frame.range.end = end;
        let bytes = self.data.get_mut(prev_range.start..end)?;
        let (offload, more) = state.join(bytes, segment);
        frame.offload = offload;
        Some(more)
    }

    /// Queues the frames at positions `frames` (see [`TxBatch::len`]) again, for `port`.
    pub(crate) fn repeat(&mut self, port: PortId, frames: Range<usize>) {
        self.open = None;
        for i in frames {
            if let Some(f) = self.frames.get(i) {
                let range = f.range.clone();
                let offload = f.offload;
                self.push_again(port, range, offload);
            }
        }
    }
}
