//! An IPFIX (RFC 7011) encoder: flows into IPFIX messages, pure (no I/O).
//!
//! Every message has the 16-byte header (version 10, length, export time in seconds,
//! sequence number: the data records sent before this message in this observation domain,
//! modulo 2^32, and the observation domain). One template ([`TEMPLATE_ID`], [`FIELDS`]) is
//! sent in a template set at the head of the first message of every [`TEMPLATE_EVERY`]th
//! export (the first included), as UDP transport asks (RFC 7011 section 10.3.6); the flows
//! follow in data sets of that template, at most [`MAX_MESSAGE`] bytes a message.
//!
//! The direction is `biflowDirection` (IE 239): 0 (arbitrary) for east-west, 3 (perimeter) for
//! north-south, the flow crossing the perimeter of the cluster's networks. `flowStartMilliseconds`
//! and `flowEndMilliseconds` bound the interval the counts cover (the switch counts deltas
//! between two takes, not per-flow times).

use std::net::Ipv4Addr;

use vinfra_types::flows::TrafficDirection;

/// IPFIX's version number.
pub const VERSION: u16 = 10;
/// The set id of a template set.
pub const TEMPLATE_SET_ID: u16 = 2;
/// The id of the one template (and the set id of its data sets).
pub const TEMPLATE_ID: u16 = 256;
/// A template set leads the first message of every this many exports.
pub const TEMPLATE_EVERY: u64 = 10;
/// The largest message, bytes (fits an Ethernet MTU with IP and UDP headers).
pub const MAX_MESSAGE: usize = 1400;
/// `biflowDirection` of an east-west flow: arbitrary.
pub const BIFLOW_EAST_WEST: u8 = 0;
/// `biflowDirection` of a north-south flow: perimeter.
pub const BIFLOW_NORTH_SOUTH: u8 = 3;

/// The template's fields, in order: (information element id, length in bytes).
pub const FIELDS: [(u16, u16); 10] = [
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (4, 1),   // protocolIdentifier
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (1, 8),   // octetDeltaCount
    (2, 8),   // packetDeltaCount
    (152, 8), // flowStartMilliseconds
    (153, 8), // flowEndMilliseconds
    (239, 1), // biflowDirection
];

const HEADER: usize = 16;
const SET_HEADER: usize = 4;

/// Bytes of one data record.
pub const RECORD_LEN: usize = 46;

/// One flow as exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpfixRecord {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub protocol: u8,
    /// Source port (0 without one).
    pub src_port: u16,
    /// Destination port (0 without one).
    pub dst_port: u16,
    /// Bytes in the interval.
    pub octets: u64,
    /// Packets in the interval.
    pub packets: u64,
    /// Start of the interval, milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// End of the interval, milliseconds since the Unix epoch.
    pub end_ms: u64,
    /// East-west or north-south.
    pub direction: TrafficDirection,
}

/// The state of one exporting process for one observation domain: sequence numbers and
/// when the template is due.
#[derive(Debug, Clone)]
pub struct IpfixEncoder {
    domain: u32,
    sequence: u32,
    exports: u64,
}

/// A stable observation domain id for a host: FNV-1a (32 bits) of its name, never 0.
pub fn observation_domain(host: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in host.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

fn template_set() -> Vec<u8> {
    let len = SET_HEADER + 4 + FIELDS.len() * 4;
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    s.extend_from_slice(&(len as u16).to_be_bytes());
    s.extend_from_slice(&TEMPLATE_ID.to_be_bytes());
    s.extend_from_slice(&(FIELDS.len() as u16).to_be_bytes());
    for (id, length) in FIELDS {
        s.extend_from_slice(&id.to_be_bytes());
        s.extend_from_slice(&length.to_be_bytes());
    }
    s
}

fn record(out: &mut Vec<u8>, r: &IpfixRecord) {
    out.extend_from_slice(&r.src.octets());
    out.extend_from_slice(&r.dst.octets());
    out.push(r.protocol);
    out.extend_from_slice(&r.src_port.to_be_bytes());
    out.extend_from_slice(&r.dst_port.to_be_bytes());
    out.extend_from_slice(&r.octets.to_be_bytes());
    out.extend_from_slice(&r.packets.to_be_bytes());
    out.extend_from_slice(&r.start_ms.to_be_bytes());
    out.extend_from_slice(&r.end_ms.to_be_bytes());
    out.push(match r.direction {
        TrafficDirection::EastWest => BIFLOW_EAST_WEST,
        TrafficDirection::NorthSouth => BIFLOW_NORTH_SOUTH,
    });
}

impl IpfixEncoder {
    /// An encoder for observation domain `domain`, sequence 0, the template due.
    pub fn new(domain: u32) -> IpfixEncoder {
        IpfixEncoder {
            domain,
            sequence: 0,
            exports: 0,
        }
    }

    /// The observation domain.
    pub fn domain(&self) -> u32 {
        self.domain
    }

    /// The messages of one export of `records` at `export_time_s` (seconds since the Unix
    /// epoch): the template first when due, then every record, each message at most
    /// [`MAX_MESSAGE`] bytes. No message when there is no record and no template is due.
    pub fn encode(&mut self, export_time_s: u32, records: &[IpfixRecord]) -> Vec<Vec<u8>> {
        let with_template = self.exports.is_multiple_of(TEMPLATE_EVERY);
        self.exports += 1;
        let mut messages = Vec::new();
        let mut rest = records;
        let mut template = with_template;
        while template || !rest.is_empty() {
            let mut body = Vec::with_capacity(MAX_MESSAGE);
            if template {
                body.extend(template_set());
                template = false;
            }
            let room = (MAX_MESSAGE - HEADER - body.len()).saturating_sub(SET_HEADER) / RECORD_LEN;
            let n = rest.len().min(room);
            if n > 0 {
                let len = SET_HEADER + n * RECORD_LEN;
                body.extend_from_slice(&TEMPLATE_ID.to_be_bytes());
                body.extend_from_slice(&(len as u16).to_be_bytes());
                for r in &rest[..n] {
                    record(&mut body, r);
                }
            }
            let mut m = Vec::with_capacity(HEADER + body.len());
            m.extend_from_slice(&VERSION.to_be_bytes());
            m.extend_from_slice(&((HEADER + body.len()) as u16).to_be_bytes());
            m.extend_from_slice(&export_time_s.to_be_bytes());
            m.extend_from_slice(&self.sequence.to_be_bytes());
            m.extend_from_slice(&self.domain.to_be_bytes());
            m.extend(body);
            messages.push(m);
            self.sequence = self.sequence.wrapping_add(n as u32);
            rest = &rest[n..];
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded message: header fields, the template's fields if it carried one, records.
    #[derive(Debug, Default)]
    struct Decoded {
        length: u16,
        export_time: u32,
        sequence: u32,
        domain: u32,
        template: Option<Vec<(u16, u16)>>,
        records: Vec<IpfixRecord>,
    }

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_be_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], i: usize) -> u64 {
        u64::from_be_bytes(b[i..i + 8].try_into().unwrap())
    }

    /// Decodes a message by RFC 7011, field by field, with the template it carries or
    /// `known` (the template of an earlier message).
    fn decode(m: &[u8], known: Option<&Vec<(u16, u16)>>) -> Decoded {
        assert_eq!(u16_at(m, 0), VERSION, "version");
        let mut d = Decoded {
            length: u16_at(m, 2),
            export_time: u32_at(m, 4),
            sequence: u32_at(m, 8),
            domain: u32_at(m, 12),
            ..Decoded::default()
        };
        assert_eq!(usize::from(d.length), m.len(), "message length");
        let mut at = 16;
        while at < m.len() {
            let (id, len) = (u16_at(m, at), usize::from(u16_at(m, at + 2)));
            assert!(len >= 4 && at + len <= m.len(), "set length");
            let set = &m[at + 4..at + len];
            if id == TEMPLATE_SET_ID {
                assert_eq!(u16_at(set, 0), TEMPLATE_ID);
                let count = usize::from(u16_at(set, 2));
                let fields = (0..count)
                    .map(|i| (u16_at(set, 4 + 4 * i), u16_at(set, 6 + 4 * i)))
                    .collect::<Vec<_>>();
                assert_eq!(set.len(), 4 + 4 * count);
                d.template = Some(fields);
            } else {
                assert_eq!(id, TEMPLATE_ID, "data set of an unknown template");
                let fields = d.template.as_ref().or(known).expect("a template first");
                let rlen: usize = fields.iter().map(|f| usize::from(f.1)).sum();
                assert_eq!(set.len() % rlen, 0, "whole records");
                for r in set.chunks(rlen) {
                    let mut rec = IpfixRecord {
                        src: Ipv4Addr::UNSPECIFIED,
                        dst: Ipv4Addr::UNSPECIFIED,
                        protocol: 0,
                        src_port: 0,
                        dst_port: 0,
                        octets: 0,
                        packets: 0,
                        start_ms: 0,
                        end_ms: 0,
                        direction: TrafficDirection::EastWest,
                    };
                    let mut i = 0;
                    for &(ie, flen) in fields {
                        match (ie, flen) {
                            (8, 4) => rec.src = Ipv4Addr::from(u32_at(r, i)),
                            (12, 4) => rec.dst = Ipv4Addr::from(u32_at(r, i)),
                            (4, 1) => rec.protocol = r[i],
                            (7, 2) => rec.src_port = u16_at(r, i),
                            (11, 2) => rec.dst_port = u16_at(r, i),
                            (1, 8) => rec.octets = u64_at(r, i),
                            (2, 8) => rec.packets = u64_at(r, i),
                            (152, 8) => rec.start_ms = u64_at(r, i),
                            (153, 8) => rec.end_ms = u64_at(r, i),
                            (239, 1) => {
                                rec.direction = match r[i] {
                                    BIFLOW_EAST_WEST => TrafficDirection::EastWest,
                                    BIFLOW_NORTH_SOUTH => TrafficDirection::NorthSouth,
                                    other => panic!("biflowDirection {other}"),
                                }
                            }
                            other => panic!("unexpected field {other:?}"),
                        }
                        i += usize::from(flen);
                    }
                    d.records.push(rec);
                }
            }
            at += len;
        }
        d
    }

    fn flow(i: u32, direction: TrafficDirection) -> IpfixRecord {
        IpfixRecord {
            src: Ipv4Addr::from(0x0a00_0000 + i),
            dst: Ipv4Addr::new(10, 1, 0, 9),
            protocol: 6,
            src_port: 40000 + i as u16,
            dst_port: 443,
            octets: 1_000_000 + u64::from(i),
            packets: 700 + u64::from(i),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_010_000,
            direction,
        }
    }

    #[test]
    fn one_export_decodes_to_its_records_with_the_template() {
        let mut e = IpfixEncoder::new(observation_domain("h1"));
        let flows = vec![
            flow(1, TrafficDirection::EastWest),
            flow(2, TrafficDirection::NorthSouth),
        ];
        let m = e.encode(1_700_000_010, &flows);
        assert_eq!(m.len(), 1);
        let d = decode(&m[0], None);
        assert_eq!(d.export_time, 1_700_000_010);
        assert_eq!(d.sequence, 0);
        assert_eq!(d.domain, observation_domain("h1"));
        assert_ne!(d.domain, observation_domain("h2"));
        assert_eq!(d.template.as_deref(), Some(&FIELDS[..]));
        assert_eq!(d.records, flows);
        assert_eq!(
            FIELDS.iter().map(|f| usize::from(f.1)).sum::<usize>(),
            RECORD_LEN
        );
    }

    #[test]
    fn sequence_counts_records_and_the_template_comes_every_tenth_export() {
        let mut e = IpfixEncoder::new(7);
        let flows: Vec<_> = (0..3)
            .map(|i| flow(i, TrafficDirection::EastWest))
            .collect();
        let template = FIELDS.to_vec();
        for export in 0..21u32 {
            let m = e.encode(export, &flows);
            assert_eq!(m.len(), 1);
            let d = decode(&m[0], Some(&template));
            assert_eq!(d.sequence, export * 3, "export {export}");
            assert_eq!(d.template.is_some(), export % 10 == 0, "export {export}");
            assert_eq!(d.records.len(), 3);
        }
        // Nothing to send and no template due: no message; due: a template alone.
        for _ in 0..9 {
            assert!(e.encode(0, &[]).is_empty());
        }
        let m = e.encode(0, &[]);
        assert_eq!(m.len(), 1);
        let d = decode(&m[0], None);
        assert!(d.template.is_some() && d.records.is_empty());
        assert_eq!(d.sequence, 63);
    }

    #[test]
    fn large_exports_split_into_messages_within_the_bound() {
        let mut e = IpfixEncoder::new(1);
        let flows: Vec<_> = (0..100)
            .map(|i| flow(i, TrafficDirection::NorthSouth))
            .collect();
        let m = e.encode(5, &flows);
        assert!(m.len() > 1);
        let template = FIELDS.to_vec();
        let mut all = Vec::new();
        let mut seq = 0;
        for msg in &m {
            assert!(msg.len() <= MAX_MESSAGE);
            let d = decode(msg, Some(&template));
            assert_eq!(d.sequence, seq);
            seq += d.records.len() as u32;
            all.extend(d.records);
        }
        assert_eq!(all, flows);
    }
}
