//! [`FlowExport`]: the host's flows to the cluster's IPFIX collector over UDP, encoded by
//! [`super::ipfix`]. The collector is the one the console sent last
//! (`AgentCommand::SetFlowExport`); without one nothing is sent.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;

use super::ipfix::{observation_domain, IpfixEncoder, IpfixRecord};
use crate::network::TakenFlows;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The UDP socket could not be opened or a message not sent.
    #[error("sending IPFIX to {collector}")]
    Send {
        /// The collector.
        collector: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Default)]
struct State {
    collector: Option<SocketAddr>,
    /// The encoder of the current collector (a new collector starts a new stream).
    encoder: Option<IpfixEncoder>,
    socket: Option<UdpSocket>,
}

/// The host's IPFIX exporting process.
#[derive(Debug, Default)]
pub struct FlowExport {
    state: Mutex<State>,
}

impl FlowExport {
    /// An exporter without a collector.
    pub fn new() -> FlowExport {
        FlowExport::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the collector (`None`: stop exporting). A different collector starts a new
    /// stream: sequence 0, the template first.
    pub fn set_collector(&self, collector: Option<SocketAddr>) {
        let mut s = self.lock();
        if s.collector != collector {
            *s = State {
                collector,
                ..State::default()
            };
        }
    }

    /// The collector in force.
    pub fn collector(&self) -> Option<SocketAddr> {
        self.lock().collector
    }

    /// Sends `taken` (host `host`'s flows, ending at `now_ms`, milliseconds since the Unix
    /// epoch) to the collector; returns the messages sent (0 without a collector).
    pub fn export(
        &self,
        host: &str,
        taken: &TakenFlows,
        now_ms: u64,
    ) -> Result<usize, ExportError> {
        let mut s = self.lock();
        let Some(collector) = s.collector else {
            return Ok(0);
        };
        let start_ms = now_ms.saturating_sub(taken.interval_ms);
        let records: Vec<IpfixRecord> = taken
            .flows
            .iter()
            .map(|f| IpfixRecord {
                src: f.src,
                dst: f.dst,
                protocol: f.protocol,
                src_port: f.src_port,
                dst_port: f.dst_port,
                octets: f.bytes,
                packets: f.packets,
                start_ms,
                end_ms: now_ms,
                direction: f.direction,
            })
            .collect();
        let export_time = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let messages = s
            .encoder
            .get_or_insert_with(|| IpfixEncoder::new(observation_domain(host)))
            .encode(export_time, &records);
        let err = |source| ExportError::Send { collector, source };
        if s.socket.is_none() {
            let bind: SocketAddr = if collector.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            s.socket = Some(UdpSocket::bind(bind).map_err(err)?);
        }
        let Some(socket) = s.socket.as_ref() else {
            return Ok(0);
        };
        for m in &messages {
            socket.send_to(m, collector).map_err(err)?;
        }
        Ok(messages.len())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use vinfra_proto::HostFlow;
    use vinfra_types::flows::TrafficDirection;

    use super::*;
    use crate::flows::ipfix::{TEMPLATE_ID, TEMPLATE_SET_ID, VERSION};

    fn taken() -> TakenFlows {
        TakenFlows {
            interval_ms: 10_000,
            flows: vec![HostFlow {
                network: "blue".into(),
                router: None,
                src: Ipv4Addr::new(10, 0, 0, 2),
                dst: Ipv4Addr::new(10, 0, 0, 3),
                protocol: 17,
                src_port: 5353,
                dst_port: 53,
                packets: 4,
                bytes: 400,
                direction: TrafficDirection::EastWest,
            }],
            untracked_packets: 0,
            unnamed: 0,
        }
    }

    /// A local UDP socket as the collector receives the real datagrams: the template and the
    /// record first, then the record alone with the sequence advanced.
    #[test]
    fn a_local_collector_receives_the_exports() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let e = FlowExport::new();
        assert_eq!(e.export("h1", &taken(), 1_000).unwrap(), 0, "no collector");
        e.set_collector(Some(collector.local_addr().unwrap()));
        assert_eq!(e.export("h1", &taken(), 1_700_000_000_000).unwrap(), 1);
        assert_eq!(e.export("h1", &taken(), 1_700_000_010_000).unwrap(), 1);
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let m = &buf[..n];
        assert_eq!(u16::from_be_bytes([m[0], m[1]]), VERSION);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), n);
        assert_eq!(
            u32::from_be_bytes(m[4..8].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(u32::from_be_bytes(m[8..12].try_into().unwrap()), 0);
        assert_eq!(
            u32::from_be_bytes(m[12..16].try_into().unwrap()),
            observation_domain("h1")
        );
        assert_eq!(u16::from_be_bytes([m[16], m[17]]), TEMPLATE_SET_ID);
        let n = collector.recv(&mut buf).unwrap();
        let m = &buf[..n];
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            1,
            "one record before"
        );
        // No template this time: the data set follows the header.
        assert_eq!(u16::from_be_bytes([m[16], m[17]]), TEMPLATE_ID);
        // The record: 10.0.0.2 -> 10.0.0.3, UDP, 400 bytes, 4 packets.
        let r = &m[20..];
        assert_eq!(&r[0..4], &[10, 0, 0, 2]);
        assert_eq!(&r[4..8], &[10, 0, 0, 3]);
        assert_eq!(r[8], 17);
        assert_eq!(u64::from_be_bytes(r[13..21].try_into().unwrap()), 400);
        assert_eq!(u64::from_be_bytes(r[21..29].try_into().unwrap()), 4);
        assert_eq!(
            u64::from_be_bytes(r[29..37].try_into().unwrap()),
            1_700_000_000_000,
            "the interval's start"
        );
        e.set_collector(None);
        assert_eq!(e.export("h1", &taken(), 1_000).unwrap(), 0);
    }
}
