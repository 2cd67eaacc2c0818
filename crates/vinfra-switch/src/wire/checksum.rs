//! The Internet checksum (RFC 1071).

use core::net::Ipv4Addr;

/// The 16-bit ones' complement sum of `data` (not complemented), folded.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        if let Ok(word) = <[u8; 2]>::try_from(pair) {
            acc += u32::from(u16::from_be_bytes(word));
        }
    }
    if let Some(&last) = chunks.remainder().first() {
        acc += u32::from(last) << 8;
    }
    fold(acc)
}

/// Adds partial sums produced by [`sum`].
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u32::from(p)).sum())
}

/// The ones' complement sum of the IPv4 pseudo-header for an upper-layer checksum.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let mut acc: u32 = 0;
    for o in [src.octets(), dst.octets()] {
        acc += u32::from(u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([o[2], o[3]]));
    }
    acc += u32::from(protocol);
    acc += u32::from(length);
    fold(acc)
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(acc).unwrap_or(0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these bytes is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), sum(&[0x12, 0x34, 0x56, 0x00]));
    }

    #[test]
    fn combine_equals_sum_of_concatenation() {
        let a = [0xffu8, 0xfe, 0x01, 0x02];
        let b = [0x80u8, 0x00, 0x80, 0x00];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(combine(&[sum(&a), sum(&b)]), sum(&whole));
    }
}
