//! The TCP state machine: the kernel's (`nf_conntrack_proto_tcp`) table of the next state by
//! direction, kind of segment and current state, without its sequence-window checks.

use super::packet::TcpFlags;

/// The state of a TCP connection, named as the kernel's conntrack names them. The states say
/// what the tracker saw, from neither end's point of view: `FinWait` is one FIN seen,
/// `CloseWait` that FIN acknowledged, `LastAck` the second FIN seen, `TimeWait` the second FIN
/// acknowledged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TcpState {
    /// A SYN from the originator seen.
    SynSent,
    /// SYNs seen both ways (simultaneous open).
    SynSent2,
    /// The SYN+ACK answer seen.
    SynRecv,
    /// The handshake's last ACK seen: data flows.
    Established,
    /// A FIN seen.
    FinWait,
    /// The first FIN acknowledged.
    CloseWait,
    /// The second FIN seen.
    LastAck,
    /// The second FIN acknowledged.
    TimeWait,
    /// A RST seen.
    Close,
}

impl TcpState {
    /// Every state.
    pub const ALL: [TcpState; 9] = [
        TcpState::SynSent,
        TcpState::SynSent2,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
    ];

    /// The snake_case name (`syn_sent`, `established`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn_sent",
            TcpState::SynSent2 => "syn_sent2",
            TcpState::SynRecv => "syn_recv",
            TcpState::Established => "established",
            TcpState::FinWait => "fin_wait",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
        }
    }
}

/// What a segment is, from its flags, as the kernel sorts them: RST first, then SYN (with or
/// without ACK), FIN, ACK.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SegmentKind {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl SegmentKind {
    pub(crate) fn of(flags: TcpFlags) -> SegmentKind {
        if flags.contains(TcpFlags::RST) {
            SegmentKind::Rst
        } else if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) {
                SegmentKind::SynAck
            } else {
                SegmentKind::Syn
            }
        } else if flags.contains(TcpFlags::FIN) {
            SegmentKind::Fin
        } else if flags.contains(TcpFlags::ACK) {
            SegmentKind::Ack
        } else {
            SegmentKind::None
        }
    }
}

/// Whether the flags are a combination a TCP stack sends (the kernel's `tcp_valid_flags`): with
/// ECE, CWR and PSH ignored, one of SYN, SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK,
/// FIN+ACK+URG, ACK, ACK+URG. Anything else (SYN+FIN, no flag, a FIN without ACK, …) is a
/// scan or garbage.
pub(crate) fn valid_flags(flags: TcpFlags) -> bool {
    const FIN: u8 = TcpFlags::FIN.0;
    const SYN: u8 = TcpFlags::SYN.0;
    const RST: u8 = TcpFlags::RST.0;
    const ACK: u8 = TcpFlags::ACK.0;
    const URG: u8 = TcpFlags::URG.0;
    let f = flags.0 & !(TcpFlags::ECE.0 | TcpFlags::CWR.0 | TcpFlags::PSH.0);
    [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ]
    .contains(&f)
}

/// What a segment does to a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Step {
    /// Valid; the connection moves to (or stays in) this state.
    To(TcpState),
    /// Valid for the connection but changes nothing (a retransmission, a SYN for a connection
    /// the tracker may have lost track of): passed, timeout not refreshed.
    Ignore,
    /// A SYN for a connection in `TimeWait` or `Close`: the old connection ends and the SYN
    /// opens a new one, checked against the rules again.
    Reopen,
    /// Not valid for the connection in this state.
    Invalid,
}

/// The next step for a segment of kind `kind` in direction `reply` on a connection in `state`.
///
/// The kernel's table (columns SYN_SENT … SYN_SENT2 of `tcp_conntracks`), except that a SYN
/// on a closed or time-wait connection always reopens it through the rules (the kernel reuses
/// the entry unless the close was initiated by a FIN or RST).
pub(crate) fn step(state: TcpState, reply: bool, kind: SegmentKind) -> Step {
    use SegmentKind as K;
    use Step::{Ignore, Invalid, Reopen, To};
    use TcpState::*;
    match (kind, reply, state) {
        (K::None, _, _) => Invalid,
        (K::Rst, _, _) => To(Close),

        // SYN from the originator: a retransmission in SYN_SENT; in SYN_SENT2 nothing new; a
        // new connection after the close; ignored otherwise.
        (K::Syn, false, SynSent) => To(SynSent),
        (K::Syn, false, SynSent2) => To(SynSent2),
        (K::Syn, _, TimeWait | Close) => Reopen,
        (K::Syn, false, _) => Ignore,
        // SYN from the responder: simultaneous open.
        (K::Syn, true, SynSent | SynSent2) => To(SynSent2),
        (K::Syn, true, _) => Invalid,

        // SYN+ACK: the responder's answer; from the originator only in a simultaneous open.
        (K::SynAck, false, SynRecv | SynSent2) => To(SynRecv),
        (K::SynAck, false, _) => Invalid,
        (K::SynAck, true, SynSent | SynSent2) => To(SynRecv),
        (K::SynAck, true, _) => Ignore,

        // FIN: either direction alike.
        (K::Fin, _, SynSent | SynSent2) => Invalid,
        (K::Fin, _, SynRecv | Established) => To(FinWait),
        (K::Fin, _, FinWait | CloseWait | LastAck) => To(LastAck),
        (K::Fin, _, TimeWait) => To(TimeWait),
        (K::Fin, _, Close) => To(Close),

        // ACK: the originator's completes the handshake; the responder's in SYN_RECV is a
        // retransmission.
        (K::Ack, false, SynSent | SynSent2) => Invalid,
        (K::Ack, true, SynSent | SynSent2) => Ignore,
        (K::Ack, false, SynRecv) => To(Established),
        (K::Ack, true, SynRecv) => To(SynRecv),
        (K::Ack, _, Established) => To(Established),
        (K::Ack, _, FinWait | CloseWait) => To(CloseWait),
        (K::Ack, _, LastAck | TimeWait) => To(TimeWait),
        (K::Ack, _, Close) => To(Close),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(f: u8) -> SegmentKind {
        SegmentKind::of(TcpFlags(f))
    }

    #[test]
    fn flag_combinations() {
        for ok in [
            0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30, 0x18, 0xc2, 0x19,
        ] {
            assert!(valid_flags(TcpFlags(ok)), "{ok:#x}");
        }
        for bad in [0x00, 0x01, 0x03, 0x06, 0x07, 0x29, 0x3f, 0x08, 0x13, 0x16] {
            assert!(!valid_flags(TcpFlags(bad)), "{bad:#x}");
        }
        assert_eq!(kind(0x12), SegmentKind::SynAck);
        assert_eq!(kind(0x14), SegmentKind::Rst);
        assert_eq!(kind(0x11), SegmentKind::Fin);
    }

    #[test]
    fn handshake_and_close() {
        let mut s = TcpState::SynSent;
        for (reply, k, next) in [
            (true, SegmentKind::SynAck, TcpState::SynRecv),
            (false, SegmentKind::Ack, TcpState::Established),
            (true, SegmentKind::Ack, TcpState::Established),
            (false, SegmentKind::Fin, TcpState::FinWait),
            (true, SegmentKind::Ack, TcpState::CloseWait),
            (true, SegmentKind::Fin, TcpState::LastAck),
            (false, SegmentKind::Ack, TcpState::TimeWait),
        ] {
            assert_eq!(step(s, reply, k), Step::To(next), "{s:?} {reply} {k:?}");
            s = next;
        }
        assert_eq!(step(s, false, SegmentKind::Syn), Step::Reopen);
        assert_eq!(step(s, true, SegmentKind::Syn), Step::Reopen);
    }

    #[test]
    fn simultaneous_open() {
        assert_eq!(
            step(TcpState::SynSent, true, SegmentKind::Syn),
            Step::To(TcpState::SynSent2)
        );
        assert_eq!(
            step(TcpState::SynSent2, false, SegmentKind::SynAck),
            Step::To(TcpState::SynRecv)
        );
    }

    #[test]
    fn invalid_steps() {
        assert_eq!(
            step(TcpState::Established, true, SegmentKind::Syn),
            Step::Invalid
        );
        assert_eq!(
            step(TcpState::SynSent, false, SegmentKind::SynAck),
            Step::Invalid
        );
        assert_eq!(
            step(TcpState::SynSent, false, SegmentKind::Ack),
            Step::Invalid
        );
        assert_eq!(
            step(TcpState::Established, false, SegmentKind::None),
            Step::Invalid
        );
        for s in TcpState::ALL {
            assert_eq!(step(s, true, SegmentKind::Rst), Step::To(TcpState::Close));
        }
    }
}
