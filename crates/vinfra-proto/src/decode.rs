//! [`AgentMessage::from_json`]: the console's decoding of what agents send, without serde's
//! buffering of internally tagged enums for the two messages that make up nearly all of it.
//!
//! `AgentMessage` is tagged by a `type` field inside the message. Serde decodes such an enum by
//! first reading the whole message into an intermediate tree (it cannot know the variant before
//! it has seen `type`, which may come last), then decoding the variant from that tree: every
//! report is parsed twice and allocated in between (9 % of an idle console's CPU with 9,488
//! hosts sending a report every 2 s and a heartbeat every second; docs/benchmarks.md). Heartbeats
//! and reports are decoded here as a plain struct with the tag as one of its fields, straight
//! from the bytes; every other message (or one this cannot take) goes through serde's own
//! decoding, so errors and the wire format are the same.

use serde::Deserialize;

use crate::{AgentMessage, HostReport};

/// The tags decoded directly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Heartbeat,
    Report,
    #[serde(other)]
    Other,
}

/// A heartbeat's or a report's fields (others ignored, as serde ignores unknown fields).
#[derive(Deserialize)]
struct Direct {
    #[serde(rename = "type")]
    kind: Kind,
    seq: Option<u64>,
    report: Option<HostReport>,
}

impl AgentMessage {
    /// Decodes a message from its JSON bytes: the same result as `serde_json::from_slice`, in
    /// one pass for heartbeats and reports.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<AgentMessage> {
        // Serde decodes a struct from a JSON array too, an internally tagged enum only from an
        // object: anything but an object goes to serde's own decoding.
        let object = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        if !object {
            return serde_json::from_slice(bytes);
        }
        match serde_json::from_slice::<Direct>(bytes) {
            Ok(Direct {
                kind: Kind::Heartbeat,
                seq: Some(seq),
                report: None,
            }) => Ok(AgentMessage::Heartbeat { seq }),
            Ok(Direct {
                kind: Kind::Report,
                seq: None,
                report: Some(report),
            }) => Ok(AgentMessage::Report { report }),
            _ => serde_json::from_slice(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommandError, CommandReply};
    use vinfra_types::{Accel, HostCapacity, HostUsage};

    fn report() -> HostReport {
        HostReport {
            host: "h1".into(),
            address: "10.0.0.1".into(),
            accel: Accel::Tcg,
            qemu_version: "7.2.0".into(),
            capacity: HostCapacity {
                cores: 2,
                memory_mib: 2048,
            },
            usage: HostUsage::default(),
            vms: vec![],
            trunk: Some("eth1".into()),
            underlay_mtu: 1500,
            guard: None,
        }
    }

    #[test]
    fn every_message_decodes_as_serde_decodes_it() {
        let messages = [
            AgentMessage::Heartbeat { seq: 7 },
            AgentMessage::Report { report: report() },
            AgentMessage::Hello {
                protocol: crate::PROTOCOL_VERSION,
                report: report(),
                platform: None,
            },
            AgentMessage::Join {
                token: "t".into(),
                host: "h".into(),
                csr_pem: "c".into(),
            },
            AgentMessage::Response {
                id: 3,
                result: Ok(CommandReply::Done),
            },
            AgentMessage::Response {
                id: 4,
                result: Err(CommandError::Host {
                    detail: "no".into(),
                }),
            },
            AgentMessage::Flows {
                host: "h".into(),
                interval_ms: 10,
                flows: vec![],
                untracked_packets: 2,
            },
        ];
        for m in messages {
            let bytes = serde_json::to_vec(&m).unwrap();
            assert_eq!(AgentMessage::from_json(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn heartbeats_and_reports_take_the_direct_way() {
        for m in [
            AgentMessage::Heartbeat { seq: 1 },
            AgentMessage::Report { report: report() },
        ] {
            let bytes = serde_json::to_vec(&m).unwrap();
            let direct: Direct = serde_json::from_slice(&bytes).unwrap();
            assert!(!matches!(direct.kind, Kind::Other));
            assert!(direct.seq.is_some() != direct.report.is_some());
        }
        let hello = serde_json::to_vec(&AgentMessage::Hello {
            protocol: 1,
            report: report(),
            platform: None,
        })
        .unwrap();
        let direct: Direct = serde_json::from_slice(&hello).unwrap();
        assert!(matches!(direct.kind, Kind::Other));
    }

    #[test]
    fn the_tag_may_come_anywhere_and_bad_messages_fail_as_serde_fails_them() {
        let late = br#"{"seq":5,"type":"heartbeat"}"#;
        assert_eq!(
            AgentMessage::from_json(late).unwrap(),
            AgentMessage::Heartbeat { seq: 5 }
        );
        for bad in [
            &br#"{"type":"heartbeat"}"#[..],
            br#"{"type":"report"}"#,
            br#"{"type":"report","report":{"host":1}}"#,
            br#"{"type":"nonsense","seq":1}"#,
            br#"{"seq":1}"#,
            br#"[1,2]"#,
            br#"{"type":"heartbeat","seq":1"#,
            br#"["heartbeat",5,null]"#,
            br#"["report",null,{}]"#,
        ] {
            let ours = AgentMessage::from_json(bad).map_err(|e| e.to_string());
            let serde = serde_json::from_slice::<AgentMessage>(bad).map_err(|e| e.to_string());
            assert!(ours.is_err(), "{}", String::from_utf8_lossy(bad));
            assert_eq!(ours, serde, "{}", String::from_utf8_lossy(bad));
        }
        // A report that also carries a `seq` is no heartbeat: serde decides.
        let both = serde_json::to_vec(&serde_json::json!({
            "type": "report", "seq": 1, "report": report()
        }))
        .unwrap();
        assert_eq!(
            AgentMessage::from_json(&both).map_err(|e| e.to_string()),
            serde_json::from_slice::<AgentMessage>(&both).map_err(|e| e.to_string())
        );
    }
}
