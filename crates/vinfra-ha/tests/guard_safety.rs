//! The guard's safety property over random schedules: for any sequence of lease writes
//! (succeeding, failing, failing yet landing, landing late) and heartbeats (acknowledged, lost
//! on the way out or on the way back, passed on to the guard late), the guard decides to
//! self-fence no later than `self_fence_after` after the later of its last successful write
//! start and its last console contact, and a console that loses the host and reads its lease
//! (with the real `LeaseObserver`) sees it expired only once the guard's deadline, as the guard
//! knew it, passed at least `kill_slack` before.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use vinfra_ha::guard::{decide, self_fence_deadline};
use vinfra_ha::{
    GuardAction, GuardInputs, HaTimings, IsolationResponse, Lease, LeaseObserver, LeaseState,
    LeaseVerdict,
};

/// Milliseconds on one timeline (both clocks run at the same rate; the margin is for drift).
type Ms = u64;

#[derive(Debug, Clone, Copy)]
enum Write {
    /// Returns success after `dur`; the rename lands at some point within it.
    Ok { dur: Ms, land: Ms },
    /// Returns failure; nothing lands.
    Fail,
    /// Returns failure, yet the rename lands, maybe long after.
    FailLanded { land: Ms },
}

#[derive(Debug, Clone, Copy)]
enum Beat {
    /// The console receives it after `there` and its ack arrives `rtt` after the send; the
    /// agent passes the contact on to the guard `pet` later.
    Acked { there: Ms, rtt: Ms, pet: Ms },
    /// Lost on the way to the console.
    LostOut,
    /// Received by the console after `there`, its ack lost.
    LostBack { there: Ms },
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (1u64..900).prop_flat_map(|dur| (Just(dur), 0..=dur)).prop_map(|(dur, land)| Write::Ok { dur, land }),
        1 => Just(Write::Fail),
        1 => (0u64..12_000).prop_map(|land| Write::FailLanded { land }),
    ]
}

fn beat() -> impl Strategy<Value = Beat> {
    prop_oneof![
        3 => (1u64..500, 1u64..1500, 0u64..800).prop_map(|(there, rtt, pet)| Beat::Acked { there: there.min(rtt), rtt, pet }),
        1 => Just(Beat::LostOut),
        1 => (1u64..1500).prop_map(|there| Beat::LostBack { there }),
    ]
}

fn beat_after_cutoff() -> impl Strategy<Value = Beat> {
    prop_oneof![
        Just(Beat::LostOut),
        (1u64..1500).prop_map(|there| Beat::LostBack { there }),
    ]
}

fn failing_write() -> impl Strategy<Value = Write> {
    prop_oneof![
        Just(Write::Fail),
        (0u64..12_000).prop_map(|land| Write::FailLanded { land }),
    ]
}

const PERIOD: Ms = 1000;
const N: usize = 30;

fn lease(counter: u64) -> Lease {
    Lease {
        version: vinfra_ha::lease::LEASE_VERSION,
        host: "h1".into(),
        incarnation: 7,
        counter,
        state: LeaseState::Live,
        agent_absent_ms: None,
        written_unix_ms: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_guard_fences_before_any_reader_can_see_its_lease_expired(
        writes_before in proptest::collection::vec(write(), N),
        writes_after in proptest::collection::vec(failing_write(), N),
        write_cut in 0usize..N,
        write_jitter in proptest::collection::vec(0u64..300, 2 * N),
        beats_before in proptest::collection::vec(beat(), N),
        beats_after in proptest::collection::vec(beat_after_cutoff(), N),
        beat_cut in 0usize..N,
        beat_stop in 0usize..N,
        lost_after in 0u64..=3000,
        read_start in 0u64..60_000,
        read_jitter in proptest::collection::vec(0u64..400, 120),
    ) {
        let t = HaTimings::default();
        let t0 = Instant::now();
        let at = |ms: Ms| t0 + Duration::from_millis(ms);

        // The guard's writes: successes up to the cut, only failures after it.
        let writes: Vec<(Ms, Write)> = (0..2 * N)
            .map(|k| {
                let w = if k < write_cut { writes_before[k] } else { writes_after[k % N] };
                (k as Ms * PERIOD + write_jitter[k], w)
            })
            .collect();
        // Heartbeats: any outcome up to the cut, none acknowledged after it, none at all from
        // the stop on (the link is cut, or the agent is gone).
        let beat_stop = beat_cut + beat_stop;
        let beats: Vec<(Ms, Beat)> = (0..beat_stop.min(2 * N))
            .map(|k| {
                let b = if k < beat_cut { beats_before[k] } else { beats_after[k % N] };
                (k as Ms * PERIOD + 137, b)
            })
            .collect();

        // What the guard knows at time `now`.
        let known_write = |now: Ms| {
            writes
                .iter()
                .filter_map(|&(s, w)| match w {
                    Write::Ok { dur, .. } if s + dur <= now => Some(s),
                    _ => None,
                })
                .max()
        };
        let known_contact = |now: Ms| {
            beats
                .iter()
                .filter_map(|&(s, b)| match b {
                    Beat::Acked { rtt, pet, .. } if s + rtt + pet <= now => Some(s),
                    _ => None,
                })
                .max()
        };
        let inputs = |now: Ms| GuardInputs {
            now: at(now),
            started: at(0),
            last_write: known_write(now).map(at),
            last_contact: known_contact(now).map(at),
            last_pet: Some(at(now.saturating_sub(100))),
            agent_back: None,
            console_alive: Some(at(now)),
            console_since: Some(at(0)),
            response: IsolationResponse::KeepRunning,
            applied: false,
        };

        let horizon: Ms = 2 * N as Ms * PERIOD + 20_000;
        let w_final = known_write(horizon);
        let c_final = known_contact(horizon);
        let Some(deadline) = self_fence_deadline(w_final.map(at), c_final.map(at), &t) else {
            // Neither ever: the guard is fenced from its start, no QEMU ever runs.
            prop_assert_eq!(decide(&inputs(0), &t), GuardAction::SelfFence);
            return Ok(());
        };
        let deadline_ms = w_final.max(c_final).unwrap_or(0) + t.self_fence_after.as_millis() as Ms;
        prop_assert_eq!(deadline, at(deadline_ms));

        // 1. The guard decides self-fence at its deadline (with what it knows then) and after.
        for extra in [0, 1, 99, 1000, 30_000] {
            prop_assert_eq!(
                decide(&inputs(deadline_ms + extra), &t),
                GuardAction::SelfFence,
                "at deadline + {} ms", extra
            );
        }
        // And never while the lease or the contact it knows of is younger than
        // self_fence_after.
        for now in (0..deadline_ms).step_by(250) {
            let i = inputs(now);
            let fresh = [i.last_write, i.last_contact]
                .iter()
                .flatten()
                .any(|&x| at(now).saturating_duration_since(x) < t.self_fence_after);
            if fresh {
                prop_assert_ne!(decide(&i, &t), GuardAction::SelfFence, "at {} ms", now);
            }
        }

        // 2. The console loses the host after the last message it received.
        let last_received = beats
            .iter()
            .filter_map(|&(s, b)| match b {
                Beat::Acked { there, .. } | Beat::LostBack { there } => Some(s + there),
                Beat::LostOut => None,
            })
            .max()
            .unwrap_or(0);
        let since = last_received + lost_after;
        prop_assert!(c_final.is_none_or(|c| since >= c));

        // The lease file: the content of the write that landed last (renames in landing order).
        let mut landings: Vec<(Ms, u64)> = writes
            .iter()
            .enumerate()
            .filter_map(|(k, &(s, w))| match w {
                Write::Ok { land, .. } | Write::FailLanded { land } => Some((s + land, k as u64 + 1)),
                Write::Fail => None,
            })
            .collect();
        landings.sort();
        let visible = |now: Ms| landings.iter().rev().find(|(l, _)| *l <= now).map(|&(_, c)| c).unwrap_or(0);

        // 3. A reader reading about every second from `read_start`, judging from `since`.
        let mut obs = LeaseObserver::new();
        let mut now = read_start;
        let mut k = 0;
        let end = horizon + 30_000;
        let mut expired_at = None;
        while now < end {
            obs.observe(at(now), Some(lease(visible(now))));
            if now >= since && obs.verdict(at(now), at(since), t.expiry()) == LeaseVerdict::Expired {
                expired_at = Some(now);
                break;
            }
            now += 800 + read_jitter[k % read_jitter.len()];
            k += 1;
        }
        // The lease stops changing well before the readings end: the reader does see it expire.
        let Some(e) = expired_at else {
            prop_assert!(false, "the lease never expired");
            unreachable!()
        };
        // At `kill_slack` before the reader saw it expired, the guard, with what it knew then,
        // had decided to self-fence: its deadline (the later of its last successful write start
        // and its last contact, + self_fence_after) had passed.
        let slack = t.kill_slack().as_millis() as Ms;
        prop_assert!(e >= slack);
        prop_assert_eq!(
            decide(&inputs(e - slack), &t),
            GuardAction::SelfFence,
            "expired seen at {} ms; at {} ms the guard knew write {:?}, contact {:?}",
            e, e - slack, known_write(e - slack), known_contact(e - slack)
        );
        // When nothing succeeds after the readings begin, that is the final deadline.
        if w_final.is_none_or(|w| w < read_start) && c_final.is_none_or(|c| c < read_start) {
            prop_assert!(e >= deadline_ms + slack, "expired seen at {} ms, deadline {} ms", e, deadline_ms);
        }
    }
}
