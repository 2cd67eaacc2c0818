//! The output of a batch: frames to send, packed into one reusable buffer.

use core::net::Ipv4Addr;
use core::ops::Range;

use super::frame::L2;
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
    /// The bytes that follow, left in a received frame.
    tail: Option<Tail>,
}

impl TxFrame {
    /// The frame's last bytes when they were left in a received frame rather than copied into
    /// the batch (only in batches from [`super::Switch::process_gathered`]): the frame is
    /// [`TxBatch::bytes`] followed by them.
    pub fn tail(&self) -> Option<&Tail> {
        self.tail.as_ref()
    }
}

/// Bytes of a received frame that a frame to send ends with: see [`TxFrame::tail`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tail {
    /// The received frame: its position among the frames given to
    /// [`super::Switch::process_gathered`].
    pub input: usize,
    /// The bytes, as offsets into that frame.
    pub range: Range<usize>,
}

/// The received frame being forwarded, whose bytes a frame may end with.
#[derive(Clone, Copy, Debug)]
struct Input {
    index: usize,
    /// The address of its first byte and its length: a slice lies in it when its address does.
    addr: usize,
    len: usize,
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
    /// While [`super::Switch::process_gathered`] forwards a frame: that frame, which frames may
    /// end with slices of instead of copies.
    input: Option<Input>,
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
            input: None,
        }
    }

    /// Forgets every frame, keeping the capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
        self.open.clear();
        self.side_used = 0;
        self.input = None;
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// No frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The bytes of a frame held in the batch: all of it, or all but its [`TxFrame::tail`].
    pub fn bytes(&self, frame: &TxFrame) -> &[u8] {
        match frame.side {
            None => self.data.get(frame.range.clone()).unwrap_or(&[]),
            Some(k) => self.side.get(k).map_or(&[], Vec::as_slice),
        }
    }

    /// Length of the frame at position `index`, its tail included; zero past the end.
    pub(crate) fn frame_len(&self, index: usize) -> usize {
        self.frames.get(index).map_or(0, |f| {
            self.bytes(f).len() + f.tail.as_ref().map_or(0, |t| t.range.len())
        })
    }

    /// The frame at position `index` with the bytes held in the batch.
    pub fn get(&self, index: usize) -> Option<(&TxFrame, &[u8])> {
        self.frames.get(index).map(|f| (f, self.bytes(f)))
    }

    /// Every frame with the bytes held in the batch (see [`TxBatch::bytes`]).
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
            tail: None,
        });
        Some(range)
    }

    /// Forwarding input `index`, `frame`, next: frames may end with slices of it.
    pub(crate) fn set_input(&mut self, index: usize, frame: &[u8]) {
        self.input = Some(Input {
            index,
            addr: frame.as_ptr() as usize,
            len: frame.len(),
        });
    }

    /// No input frame to end frames with any longer.
    pub(crate) fn clear_input(&mut self) {
        self.input = None;
    }

    /// Where `bytes` are in the input frame, if they are in it.
    fn in_input(&self, bytes: &[u8]) -> Option<Tail> {
        let input = self.input?;
        let start = (bytes.as_ptr() as usize).checked_sub(input.addr)?;
        let end = start.checked_add(bytes.len())?;
        (!bytes.is_empty() && end <= input.len).then_some(Tail {
            input: input.index,
            range: start..end,
        })
    }

    /// Writes a frame with `write`, as [`TxBatch::push_with`], followed by `tail`: left where
    /// it is when it lies in the input frame (see [`TxBatch::set_input`]), else copied. Returns
    /// the frame's length; `None` when `write` failed and nothing was queued.
    #[inline]
    pub(crate) fn push_with_tail(
        &mut self,
        port: PortId,
        vtep: Option<Ipv4Addr>,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
        tail: &[u8],
    ) -> Option<usize> {
        self.close(port);
        let gathered = self.in_input(tail);
        let range = self.push_frame(port, vtep, Offload::NONE, write)?;
        match gathered {
            Some(t) => {
                if let Some(f) = self.frames.last_mut() {
                    f.tail = Some(t);
                }
            }
            None => self.data.extend_from_slice(tail),
        }
        if let Some(f) = self.frames.last_mut() {
            f.range.end = self.data.len();
        }
        Some(range.len() + tail.len())
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
            tail: None,
        });
    }

    /// Writes a complete frame for a port that takes large segments, as [`TxBatch::push_with`],
    /// joining it to an earlier frame of the batch when both are segments of one TCP flow to
    /// this port, in sequence (see [`crate::wire::gro`]): that frame then grows and carries GSO
    /// metadata. Up to eight frames (flows) stay open at once; any other frame of an open flow,
    /// or a frame for the port that is not TCP, closes them so that nothing is reordered within
    /// a flow. Returns the range of a frame queued on its own (to queue again with
    /// [`TxBatch::push_again`]), `None` when it was joined.
    ///
    /// A TCP segment's headers are written first and checked with its payload where it was
    /// received: a payload that joins is copied once, to the frame it joins.
    pub(super) fn push_coalescing(&mut self, port: PortId, l2: &L2<'_>) -> Option<Range<usize>> {
        let (l3_head, rest) = l2.split_tcp().unwrap_or((l2.payload, &[]));
        let start = self.data.len();
        l2.write_head(&mut self.data, None, l3_head);
        let head = self.data.get(start..).unwrap_or(&[]);
        let Some(flow) = Flow::of(head) else {
            self.data.extend_from_slice(rest);
            self.close(port);
            return self.queue_written(port, start);
        };
        let segment = TcpSegment::parse_parts(head, rest);
        let at = self
            .open
            .iter()
            .position(|o| o.port == port && o.state.flow() == flow);
        if let (Some(at), Some(segment)) = (at, segment) {
            if self.join(at, start, rest, &segment) {
                return None;
            }
        }
        // Not joined: queued whole; the flow's open frame (if any) is done; this one may start
        // another.
        self.data.extend_from_slice(rest);
        let range = self.queue_written(port, start);
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
        range
    }

    /// Queues the bytes written from `start` as a complete frame for `port`.
    fn queue_written(&mut self, port: PortId, start: usize) -> Option<Range<usize>> {
        let range = start..self.data.len();
        self.frames.push(TxFrame {
            port,
            vtep: None,
            offload: Offload::NONE,
            range: range.clone(),
            side: None,
            tail: None,
        });
        Some(range)
    }

    /// Joins the segment whose headers were just written at `start` (`segment`, its payload
    /// the headers' own bytes after the TCP header, if any, then `rest`) to open frame `at`
    /// when that one takes it. True when joined: the headers are gone, the payload appended to
    /// the open frame (moved to a side buffer on its first join), which stays open unless it
    /// is full.
    fn join(&mut self, at: usize, start: usize, rest: &[u8], segment: &TcpSegment) -> bool {
        let Some(open) = self.open.get(at) else {
            return false;
        };
        let Some(frame) = self.frames.get(open.index) else {
            return false;
        };
        let head = self.data.get(start..).unwrap_or(&[]);
        if !open.state.accepts(self.bytes(frame), segment, head) {
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
                .get(start + segment.headers_len()..)
                .unwrap_or(&[]),
        );
        buf.extend_from_slice(rest);
        let Some(open) = self.open.get_mut(at) else {
            return false;
        };
        let (offload, more) = open.state.join(buf, segment);
        let index = open.index;
        if !more {
            self.open.remove(at);
        }
        // The headers were only just written: drop them.
        self.data.truncate(start);
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
