//! The Internet checksum (RFC 1071).

use core::net::{Ipv4Addr, Ipv6Addr};

/// The 16-bit ones' complement sum of `data` (not complemented), folded.
///
/// Adds the 16-bit words in the machine's byte order into [`LANES`] 32-bit accumulators, which
/// the compiler turns into vector adds, and swaps the folded result into network order at the end
/// (RFC 1071 section 2(B): the sum does not depend on the byte order, up to that swap). A lane
/// takes one word in [`LANES`], so the accumulators are emptied every [`LANE_BLOCK`] bytes, far
/// before they could overflow.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for block in data.chunks(LANE_BLOCK) {
        let mut lanes = [0u32; LANES];
        let mut rows = block.chunks_exact(2 * LANES);
        for row in &mut rows {
            for (lane, word) in lanes.iter_mut().zip(row.chunks_exact(2)) {
                if let &[a, b] = word {
                    *lane += u32::from(u16::from_ne_bytes([a, b]));
                }
            }
        }
        acc += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
        let mut words = rows.remainder().chunks_exact(2);
        for word in &mut words {
            if let &[a, b] = word {
                acc += u64::from(u16::from_ne_bytes([a, b]));
            }
        }
        if let Some(&last) = words.remainder().first() {
            // An odd length: the last byte is the first of a word padded with zero.
            acc += u64::from(u16::from_ne_bytes([last, 0]));
        }
    }
    u16::from_be(fold64(acc))
}

/// Accumulators of [`sum`].
const LANES: usize = 16;
/// Bytes [`sum`] adds before emptying its accumulators: each lane then holds at most
/// `LANE_BLOCK / (2 * LANES)` words of at most 0xffff, which fits 32 bits.
const LANE_BLOCK: usize = 1 << 20;

fn fold64(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(0xffff)
}

/// The ones' complement sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut acc: u64 = 0;
    for a in [src.octets(), dst.octets()] {
        for pair in a.chunks_exact(2) {
            if let Ok(w) = <[u8; 2]>::try_from(pair) {
                acc += u64::from(u16::from_be_bytes(w));
            }
        }
    }
    acc += u64::from(length >> 16) + u64::from(length & 0xffff);
    acc += u64::from(next_header);
    fold64(acc)
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

/// A header checksum after one 16-bit word it covers changed from `old` to `new`, without summing
/// the header again (RFC 1624, equation 3: `HC' = ~(~HC + ~m + m')`).
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!checksum) + u32::from(!old) + u32::from(new))
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
    fn word_sum_equals_pair_sum_for_every_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..data.len() {
            let mut acc: u32 = 0;
            for pair in data[..len].chunks(2) {
                acc += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            }
            assert_eq!(sum(&data[..len]), fold(acc), "length {len}");
        }
        assert_eq!(sum(&[0xff; 65536]), 0xffff);
    }

    #[test]
    fn lanes_equal_pair_sum_at_every_offset_and_past_a_block() {
        let data: Vec<u8> = (0..(LANE_BLOCK + 4099) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let reference = |d: &[u8]| {
            let mut acc: u64 = 0;
            for pair in d.chunks(2) {
                acc += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
            }
            fold64(acc)
        };
        for start in 0..4 {
            for len in [0, 1, 31, 32, 33, 63, 64, 65, 1447, 1448, 65_535, 65_536] {
                let d = &data[start..start + len];
                assert_eq!(sum(d), reference(d), "start {start} length {len}");
            }
        }
        assert_eq!(sum(&data), reference(&data));
        let ones = vec![0xffu8; 2 * LANE_BLOCK + 3];
        assert_eq!(sum(&ones), reference(&ones));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), sum(&[0x12, 0x34, 0x56, 0x00]));
    }

    #[test]
    fn update_equals_summing_again() {
        let mut header = [
            0x45u8, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let fill = |h: &mut [u8; 20]| {
            h[10..12].copy_from_slice(&[0, 0]);
            let c = !sum(&h[..]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            c
        };
        let mut checksum = fill(&mut header);
        for tos in (0..=255u8).chain([0, 0xff, 0x01]) {
            let old = u16::from_be_bytes([header[0], header[1]]);
            header[1] = tos;
            let new = u16::from_be_bytes([header[0], header[1]]);
            checksum = update(checksum, old, new);
            assert_eq!(checksum, fill(&mut header), "TOS {tos:#x}");
        }
    }

    #[test]
    fn combine_equals_sum_of_concatenation() {
        let a = [0xffu8, 0xfe, 0x01, 0x02];
        let b = [0x80u8, 0x00, 0x80, 0x00];
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(combine(&[sum(&a), sum(&b)]), sum(&whole));
    }
}
