//! A port's QoS in the daemon (`set_port_qos`): its rate limits, and the output queue every
//! port has.
//!
//! - **Egress** (what the VM sends): a token bucket on reading. The datapath reads a port only
//!   while its bucket is not in debt, at most as many frames as the credit covers plus one (a
//!   frame is never cut: the bucket goes into debt by at most one frame, a GSO frame's whole
//!   length); then the port waits, its frames held in the VM's socket or the tap's queue, until
//!   the debt is repaid. A shaper, not a policer: the sender sees backpressure.
//! - **Ingress** (what goes to the VM): every frame for the port goes through its [`PortOutput`]
//!   queue and leaves as its bucket allows.
//! - **PortOutput queue**: every port's frames wait there when its peer is full (`EAGAIN`) or its
//!   ingress limit holds them, queued by the class and weight of the port they came from
//!   (strict priority between classes, deficit round robin by weight within a class,
//!   [`vinfra_switch::qos::Scheduler`]). Without an ingress limit it holds at most
//!   [`BACKLOG_LIMITS`]; with one, `2 × max(burst, 64 KiB) + 64 KiB` (two bursts'
//!   worth, so a batch read at once or a sender's burst after the datapath was descheduled does
//!   not overflow it, and one large frame). A full queue drops at the heaviest source of the lowest class; drops are
//!   `qos_dropped` on a port with an ingress limit, transmit errors otherwise.
//! - **Reading order**: see the datapath; ports are read high class first, and within a class
//!   in batches proportional to weight.
//!
//! Rates count Ethernet frame bytes (no preamble, FCS or virtio-net header).

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use vinfra_switch::qos::{Class, Limits, Scheduler, Source, TokenBucket};
use vinfra_switch::wire::Offload;
use vinfra_switch_control::{Attachment, PrioritySpec, QosSpec, RateSpec, DEFAULT_QOS_WEIGHT};

use crate::ports::PortIo;

/// Bounds of a port's queue without an ingress limit (frames its peer refused for now): a VM's
/// datagram queue holds only `net.unix.max_dgram_qlen` frames, 10 by default, and a large TCP
/// segment cut in software is tens of frames.
pub const BACKLOG_LIMITS: Limits = Limits {
    bytes: 32 << 20,
    items: 512,
};
/// Most frames in the queue of a port with an ingress limit.
const SHAPED_ITEMS: usize = 4_096;
/// Room for one frame of the largest kind (a GSO frame from an offload tap) in a shaped queue.
const LARGEST_FRAME: u64 = 64 << 10;
/// How soon a port whose peer refused a frame is tried again when nothing else is ready.
pub const BACKLOG_RETRY: Duration = Duration::from_micros(100);
/// A queue whose peer took nothing for this long (a paused VM) is dropped, so the datapath
/// does not keep retrying it.
const BACKLOG_GIVE_UP: Duration = Duration::from_millis(50);

/// Why a `set_port_qos` request was refused. A refused request changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QosError {
    /// The port is the VXLAN uplink or the VLAN trunk: QoS is for VM and host ports.
    #[error("port {0} is not a VM or host port: QoS applies to those only")]
    NotAccessPort(u32),
    /// A rate of 0 bits per second.
    #[error("{0} rate must be at least 1 bit/s")]
    ZeroRate(&'static str),
    /// A burst of 0 bytes.
    #[error("{0} burst must be at least 1 byte")]
    ZeroBurst(&'static str),
    /// A weight outside 1..=100.
    #[error("weight {0} is not in 1..=100")]
    Weight(u16),
    /// A DSCP value above 63.
    #[error("DSCP {0} is not in 0..=63")]
    Dscp(u8),
}

/// The class of a port's frames.
pub fn class(p: PrioritySpec) -> Class {
    match p {
        PrioritySpec::Low => Class::Low,
        PrioritySpec::Normal => Class::Normal,
        PrioritySpec::High => Class::High,
    }
}

/// Where a frame of a port without QoS comes from: normal class, default weight.
pub fn default_source(port: u32) -> Source {
    Source {
        class: Class::Normal,
        key: port,
        weight: DEFAULT_QOS_WEIGHT,
    }
}

/// A port's QoS as the datapath applies it.
#[derive(Clone, Debug)]
pub struct PortQos {
    /// Class and weight of the port's frames wherever they wait.
    pub source: Source,
    /// The reading limit (what the VM sends).
    pub egress: Option<TokenBucket>,
    /// The output limit (what goes to the VM).
    pub ingress: Option<TokenBucket>,
}

fn bucket(
    direction: &'static str,
    rate: Option<RateSpec>,
) -> Result<Option<TokenBucket>, QosError> {
    let Some(r) = rate else { return Ok(None) };
    if r.bits_per_sec == 0 {
        return Err(QosError::ZeroRate(direction));
    }
    if r.burst_bytes == 0 {
        return Err(QosError::ZeroBurst(direction));
    }
    Ok(Some(TokenBucket::new(r.bits_per_sec, r.burst_bytes)))
}

impl PortQos {
    /// Checks `spec` for port `port` attached to `attach`.
    pub fn new(port: u32, attach: &Attachment, spec: &QosSpec) -> Result<PortQos, QosError> {
        if !matches!(
            attach,
            Attachment::Vm { .. }
                | Attachment::VmTap { .. }
                | Attachment::Interface { .. }
                | Attachment::Host { .. }
        ) {
            return Err(QosError::NotAccessPort(port));
        }
        if !(1..=100).contains(&spec.weight) {
            return Err(QosError::Weight(spec.weight));
        }
        if let Some(dscp) = spec.dscp_mark.filter(|d| *d > 63) {
            return Err(QosError::Dscp(dscp));
        }
        // DSCP: marked by the core (`ConfigCommand::SetPortDscp`, sent by the datapath).
        Ok(PortQos {
            source: Source {
                class: class(spec.priority),
                key: port,
                weight: spec.weight,
            },
            egress: bucket("egress", spec.egress)?,
            ingress: bucket("ingress", spec.ingress)?,
        })
    }
}

/// Bounds of the queue of a port with ingress limit `bucket`.
fn shaped_limits(bucket: &TokenBucket) -> Limits {
    let bytes = 2 * bucket.burst_bytes().max(LARGEST_FRAME) + LARGEST_FRAME;
    Limits {
        bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        items: SHAPED_ITEMS,
    }
}

/// A frame waiting in a port's queue.
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    vtep: Option<Ipv4Addr>,
    offload: Offload,
}

/// A port's output: frames go straight to the peer while nothing waits and no ingress limit
/// holds them, else through the queue. Times are the datapath's (from its start).
#[derive(Debug)]
pub(crate) struct PortOutput {
    queue: Scheduler<Pending>,
    shaper: Option<TokenBucket>,
    /// When the peer refused a frame, with none taken since.
    stalled: Option<Duration>,
    /// Frames that could not be sent (peer gone, queue full without an ingress limit).
    pub tx_errors: u64,
    /// Frames dropped by a full queue of a port with an ingress limit.
    pub qos_dropped: u64,
    /// Frames that waited in the queue.
    pub qos_delayed: u64,
}

impl PortOutput {
    /// An empty output without a limit.
    pub fn new() -> PortOutput {
        PortOutput {
            queue: Scheduler::new(BACKLOG_LIMITS),
            shaper: None,
            stalled: None,
            tx_errors: 0,
            qos_dropped: 0,
            qos_delayed: 0,
        }
    }

    /// Sets or clears the ingress limit; frames already queued stay.
    pub fn set_shaper(&mut self, shaper: Option<TokenBucket>) {
        self.queue
            .set_limits(shaper.as_ref().map_or(BACKLOG_LIMITS, shaped_limits));
        self.shaper = shaper;
    }

    /// True when frames may go out in one batch now (nothing waits, no limit).
    #[inline]
    pub fn direct(&self) -> bool {
        self.shaper.is_none() && self.queue.is_empty()
    }

    /// True when frames wait.
    #[inline]
    pub fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Sends a frame from `source`, or queues it behind the frames waiting, or when the peer is
    /// full, or when the ingress limit holds it.
    #[inline]
    pub fn send(
        &mut self,
        io: &PortIo,
        bytes: &[u8],
        vtep: Option<Ipv4Addr>,
        offload: &Offload,
        source: Source,
        now: Duration,
    ) {
        if self.queue.is_empty() && self.shaper.as_mut().is_none_or(|b| b.ready(now)) {
            match io.send(bytes, vtep, offload) {
                Ok(()) => {
                    if let Some(b) = &mut self.shaper {
                        b.take(bytes.len() as u64);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled.get_or_insert(now);
                }
                Err(_) => {
                    self.tx_errors += 1;
                    return;
                }
            }
        }
        let pending = Pending {
            bytes: bytes.to_vec(),
            vtep,
            offload: *offload,
        };
        let pushed = self.queue.push(pending, bytes.len(), source);
        if pushed.queued {
            self.qos_delayed += 1;
        }
        let dropped = pushed.dropped as u64;
        if self.shaper.is_some() {
            self.qos_dropped += dropped;
        } else {
            self.tx_errors += dropped;
        }
    }

    /// Sends what waits, as the peer and the ingress limit allow; drops it all when the peer
    /// has taken nothing for [`BACKLOG_GIVE_UP`].
    pub fn flush(&mut self, io: &PortIo, now: Duration) {
        loop {
            if let Some(b) = &mut self.shaper {
                if !b.ready(now) {
                    break;
                }
            }
            let Some(p) = self.queue.peek() else { break };
            match io.send(&p.bytes, p.vtep, &p.offload) {
                Ok(()) => {
                    self.stalled = None;
                    if let (Some((_, len)), Some(b)) = (self.queue.pop(), &mut self.shaper) {
                        b.take(len as u64);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled.get_or_insert(now);
                    break;
                }
                Err(_) => {
                    self.queue.pop();
                    self.tx_errors += 1;
                }
            }
        }
        if self.queue.is_empty() {
            self.stalled = None;
        } else if self
            .stalled
            .is_some_and(|t| now.saturating_sub(t) > BACKLOG_GIVE_UP)
        {
            self.tx_errors += self.queue.clear() as u64;
            self.stalled = None;
        }
    }

    /// When frames wait: how long until they may move (the peer retried, or the ingress
    /// limit's debt repaid), from `now`.
    pub fn wake_in(&self, now: Duration) -> Option<Duration> {
        if self.queue.is_empty() {
            return None;
        }
        if self.stalled.is_some() {
            return Some(BACKLOG_RETRY);
        }
        match &self.shaper {
            Some(b) if b.in_debt() => Some(b.ready_at().saturating_sub(now)),
            _ => Some(Duration::ZERO),
        }
    }
}

impl Default for PortOutput {
    fn default() -> PortOutput {
        PortOutput::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Attachment {
        Attachment::Host {
            network: 1,
            tap: "t".into(),
        }
    }

    fn rate(bits_per_sec: u64, burst_bytes: u64) -> Option<RateSpec> {
        Some(RateSpec {
            bits_per_sec,
            burst_bytes,
        })
    }

    #[test]
    fn set_port_qos_refuses_bad_values_with_a_clear_message() {
        let ok = QosSpec {
            egress: rate(100_000_000, 1 << 20),
            ingress: rate(1, 1),
            priority: PrioritySpec::High,
            weight: 100,
            dscp_mark: Some(63),
        };
        let qos = PortQos::new(4, &host(), &ok).unwrap();
        assert_eq!(
            qos.source,
            Source {
                class: Class::High,
                key: 4,
                weight: 100
            }
        );
        assert_eq!(qos.egress.map(|b| b.bits_per_sec()), Some(100_000_000));
        let vm = Attachment::Vm {
            network: 1,
            socket: "/s".into(),
            peer: "/p".into(),
            owner: None,
        };
        assert!(PortQos::new(4, &vm, &QosSpec::default()).is_ok());
        let cases = [
            (
                Attachment::VxlanUplink {
                    local_ip: Ipv4Addr::LOCALHOST,
                },
                ok.clone(),
                "port 4 is not a VM or host port: QoS applies to those only",
            ),
            (
                Attachment::VlanTrunk {
                    interface: "eth1".into(),
                },
                ok.clone(),
                "port 4 is not a VM or host port: QoS applies to those only",
            ),
            (
                host(),
                QosSpec {
                    egress: rate(0, 1),
                    ..ok.clone()
                },
                "egress rate must be at least 1 bit/s",
            ),
            (
                host(),
                QosSpec {
                    ingress: rate(1, 0),
                    ..ok.clone()
                },
                "ingress burst must be at least 1 byte",
            ),
            (
                host(),
                QosSpec {
                    weight: 0,
                    ..ok.clone()
                },
                "weight 0 is not in 1..=100",
            ),
            (
                host(),
                QosSpec {
                    weight: 101,
                    ..ok.clone()
                },
                "weight 101 is not in 1..=100",
            ),
            (
                host(),
                QosSpec {
                    dscp_mark: Some(64),
                    ..ok.clone()
                },
                "DSCP 64 is not in 0..=63",
            ),
        ];
        for (attach, spec, message) in cases {
            let e = PortQos::new(4, &attach, &spec).unwrap_err();
            assert_eq!(e.to_string(), message, "{spec:?}");
        }
    }

    #[test]
    fn a_shaped_queue_holds_two_bursts_and_a_large_frame() {
        let small = TokenBucket::new(1_000_000, 1_000);
        assert_eq!(shaped_limits(&small).bytes, 192 << 10);
        let large = TokenBucket::new(1_000_000_000, 1 << 20);
        assert_eq!(shaped_limits(&large).bytes, (2 << 20) + (64 << 10));
    }
}
