//! The output of a batch: frames to send, packed into one reusable buffer.

use core::net::Ipv4Addr;
use core::ops::Range;

use super::port::PortId;
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
        }
    }

    /// Forgets every frame, keeping the capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
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
        self.frames.push(TxFrame {
            port,
            vtep: None,
            offload,
            range,
        });
    }

    /// Queues the frames at positions `frames` (see [`TxBatch::len`]) again, for `port`.
    pub(crate) fn repeat(&mut self, port: PortId, frames: Range<usize>) {
        for i in frames {
            if let Some(f) = self.frames.get(i) {
                let range = f.range.clone();
                let offload = f.offload;
                self.push_again(port, range, offload);
            }
        }
    }
}
