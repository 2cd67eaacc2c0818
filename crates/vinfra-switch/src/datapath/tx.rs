//! The output of a batch: frames to send, packed into one reusable buffer.

use core::net::Ipv4Addr;
use core::ops::Range;

use super::ids::PortId;
use crate::wire::gro::{Coalesced, Flow, TcpSegment};
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
    /// Where the bytes are: `None` in the shared buffer at `range`, `Some(k)` all of side
    /// buffer `k` (a frame that segments were joined to).
    side: Option<usize>,
}

/// Most frames open for joining at once (flows interleaved in a batch), as the kernel's GRO.
const MAX_OPEN: usize = 8;

/// A frame later segments may still join.
#[derive(Clone, Debug)]
struct Open {
    /// Its position in the batch.
    index: usize,
    port: PortId,
    state: Coalesced,
}

/// Frames produced by [`super::Switch::process`], in order. Clear and reuse it between batches:
/// its buffers keep their capacity, so a steady state allocates nothing. Several frames may share
/// the same bytes (one flooded frame to several access ports).
#[derive(Clone, Debug, Default)]
pub struct TxBatch {
    data: Vec<u8>,
    frames: Vec<TxFrame>,
    /// Frames that later TCP segments for the same port and flow may still join.
    open: Vec<Open>,
    /// Buffers of joined frames (kept with their capacity between batches); the first
    /// `side_used` are in use.
    side: Vec<Vec<u8>>,
    side_used: usize,
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
            open: Vec::with_capacity(MAX_OPEN),
            side: Vec::new(),
            side_used: 0,
        }
    }

    /// Forgets every frame, keeping the capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
        self.open.clear();
        self.side_used = 0;
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
        match frame.side {
            None => self.data.get(frame.range.clone()).unwrap_or(&[]),
            Some(k) => self.side.get(k).map_or(&[], Vec::as_slice),
        }
    }

    /// Length of the frame at position `index`; zero past the end.
    pub(crate) fn frame_len(&self, index: usize) -> usize {
        self.frames.get(index).map_or(0, |f| self.bytes(f).len())
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
        self.close(port);
        self.push_frame(port, vtep, offload, write)
    }

    /// Ends the open frames of `port`: a frame queued for it after them must not be overtaken
    /// by segments joined to them later.
    fn close(&mut self, port: PortId) {
        self.open.retain(|o| o.port != port);
    }

    fn push_frame(
        &mut self,
        port: PortId,
        vtep: Option<Ipv4Addr>,
        offload: Offload,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> Option<Range<usize>> {
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
            side: None,
        });
        Some(range)
    }

    /// Queues bytes already in the buffer for another port.
    #[inline]
    pub(crate) fn push_again(&mut self, port: PortId, range: Range<usize>, offload: Offload) {
        // Joining never changes these bytes (a joined frame moves to a side buffer first), so
        // only the ordering on `port` matters.
        self.close(port);
        self.frames.push(TxFrame {
            port,
            vtep: None,
            offload,
            range,
            side: None,
        });
    }

    /// Writes a complete frame for a port that takes large segments, as [`TxBatch::push_with`],
    /// joining it to an earlier frame of the batch when both are segments of one TCP flow to
    /// this port, in sequence (see [`crate::wire::gro`]): that frame then grows and carries GSO
    /// metadata. Up to eight frames (flows) stay open at once; any other frame of an open flow,
    /// or a frame for the port that is not TCP, closes them so that nothing is reordered within
    /// a flow. Returns the range of a frame queued on its own (to queue again with
    /// [`TxBatch::push_again`]), `None` when it was joined or not written.
    pub(crate) fn push_coalescing(
        &mut self,
        port: PortId,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> Option<Range<usize>> {
        let range = self.push_frame(port, None, Offload::NONE, write)?;
        let bytes = self.data.get(range.clone()).unwrap_or(&[]);
        let Some(flow) = Flow::of(bytes) else {
            self.close(port);
            return Some(range);
        };
        let segment = TcpSegment::parse(bytes);
        let at = self
            .open
            .iter()
            .position(|o| o.port == port && o.state.flow() == flow);
        if let (Some(at), Some(segment)) = (at, segment) {
            if self.join(at, &range, &segment) {
                return None;
            }
        }
        // Not joined: the flow's open frame (if any) is done; this one may start another.
        if let Some(at) = at {
            self.open.remove(at);
        }
        if let Some(state) = segment.as_ref().and_then(Coalesced::start) {
            if self.open.len() >= MAX_OPEN {
                self.open.remove(0);
            }
            self.open.push(Open {
                index: self.frames.len() - 1,
                port,
                state,
            });
        }
        Some(range)
    }

    /// Joins the newest frame (at `range`, holding `segment`) to open frame `at` when that one
    /// takes it. True when joined: the newest frame is gone, its payload appended to the open
    /// frame (moved to a side buffer on its first join), which stays open unless it is full.
    fn join(&mut self, at: usize, range: &Range<usize>, segment: &TcpSegment) -> bool {
        let Some(open) = self.open.get(at) else {
            return false;
        };
        let Some(frame) = self.frames.get(open.index) else {
            return false;
        };
        let next = self.data.get(range.clone()).unwrap_or(&[]);
        if !open.state.accepts(self.bytes(frame), segment, next) {
            return false;
        }
        let side = match frame.side {
            Some(k) => k,
            None => {
                // First join: the frame's bytes move to a side buffer of their own.
                let k = self.side_used;
                if k == self.side.len() {
                    self.side.push(Vec::with_capacity(64 * 1024));
                }
                self.side_used += 1;
                let (side, data) = (&mut self.side, &self.data);
                let Some(buf) = side.get_mut(k) else {
                    return false;
                };
                buf.clear();
                buf.extend_from_slice(data.get(frame.range.clone()).unwrap_or(&[]));
                k
            }
        };
        let Some(buf) = self.side.get_mut(side) else {
            return false;
        };
        buf.extend_from_slice(
            self.data
                .get(range.start + segment.headers_len()..range.end)
                .unwrap_or(&[]),
        );
        let Some(open) = self.open.get_mut(at) else {
            return false;
        };
        let (offload, more) = open.state.join(buf, segment);
        let index = open.index;
        if !more {
            self.open.remove(at);
        }
        // The newest frame was only just written: drop it and its bytes.
        self.frames.pop();
        self.data.truncate(range.start);
        if let Some(f) = self.frames.get_mut(index) {
            f.side = Some(side);
            f.offload = offload;
        }
        true
    }

    /// Queues the frames at positions `frames` (see [`TxBatch::len`]) again, for `port`.
    pub(crate) fn repeat(&mut self, port: PortId, frames: Range<usize>) {
        self.close(port);
        for i in frames {
            if let Some(f) = self.frames.get(i) {
                let mut again = f.clone();
                again.port = port;
                again.vtep = None;
                self.frames.push(again);
            }
        }
    }
}
