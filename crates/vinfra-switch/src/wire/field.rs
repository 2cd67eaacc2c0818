//! Field ranges and the byte accessors every view uses: reads out of bounds give zeros, writes
//! out of bounds do nothing, so no accessor panics.

/// A range of bytes holding one header field.
pub type Field = core::ops::Range<usize>;
/// The bytes from an offset to the end of the buffer.
pub type Rest = core::ops::RangeFrom<usize>;

/// Reads a big-endian `u16` at `field`; zero when out of bounds.
#[inline]
pub(crate) fn get_u16(buf: &[u8], field: Field) -> u16 {
    buf.get(field)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map_or(0, u16::from_be_bytes)
}

/// Reads one byte; zero when out of bounds.
#[inline]
pub(crate) fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// Reads a fixed-size array at `field`; zeros when out of bounds.
#[inline]
pub(crate) fn get_array<const N: usize>(buf: &[u8], field: Field) -> [u8; N] {
    buf.get(field)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

/// Writes `value` into `field`; does nothing when out of bounds.
#[inline]
pub(crate) fn set_bytes(buf: &mut [u8], field: Field, value: &[u8]) {
    if let Some(dst) = buf.get_mut(field) {
        for (d, s) in dst.iter_mut().zip(value) {
            *d = *s;
        }
    }
}

/// Writes a big-endian `u16` into `field`; does nothing when out of bounds.
#[inline]
pub(crate) fn set_u16(buf: &mut [u8], field: Field, value: u16) {
    set_bytes(buf, field, &value.to_be_bytes());
}

/// Writes one byte; does nothing when out of bounds.
#[inline]
pub(crate) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = value;
    }
}
