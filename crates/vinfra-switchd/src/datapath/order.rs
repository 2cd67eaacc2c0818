//! The reading order when some ports have QoS: classes, weights, and ports held by their
//! egress limit.

use std::collections::VecDeque;
use std::time::Duration;

use vinfra_switch::qos::Class;

use super::{Datapath, Read};
use crate::qos;

impl Datapath {
    /// One round over the ready ports when some have QoS: high class first, then normal, then
    /// low; within a class each port reads batches in proportion to its weight (the lightest
    /// ready port of the class one, a port of `k` times its weight about `k`, the remainder
    /// carried to the next round). A port that has more goes to the back; a port whose egress
    /// limit is in debt waits in `throttled`. False when the control side is gone.
    pub(super) fn weighted_round(&mut self, ready: &mut VecDeque<u32>) -> bool {
        let mut round: Vec<(Class, u32, u32)> = ready
            .drain(..)
            .map(|id| {
                let source = self
                    .ports
                    .get(&id)
                    .map_or_else(|| qos::default_source(id), |p| p.source(id));
                (source.class, id, u32::from(source.weight))
            })
            .collect();
        round.sort_by_key(|&(class, _, _)| std::cmp::Reverse(class));
        for i in 0..round.len() {
            let Some(&(class, id, weight)) = round.get(i) else {
                break;
            };
            let cost = round
                .iter()
                .filter(|(c, _, _)| *c == class)
                .map(|&(_, _, w)| w)
                .min()
                .unwrap_or(weight)
                .max(1);
            let mut credit = self
                .ports
                .get(&id)
                .map_or(0, |p| p.read_credit)
                .saturating_add(weight);
            let mut read = Read::More;
            while credit >= cost && read == Read::More {
                credit -= cost;
                read = self.batch(id);
                if !self.drain_control() {
                    return false;
                }
            }
            match read {
                Read::More => ready.push_back(id),
                Read::Throttled => {
                    if !self.throttled.contains(&id) {
                        self.throttled.push(id);
                    }
                }
                Read::Done => credit = 0,
            }
            if let Some(p) = self.ports.get_mut(&id) {
                p.read_credit = if read == Read::More { credit } else { 0 };
            }
        }
        true
    }

    /// Moves the held ports whose egress limit is repaid back to `ready`; returns how soon the
    /// next of the others is.
    pub(super) fn release_throttled(
        &mut self,
        ready: &mut VecDeque<u32>,
        now: Duration,
    ) -> Option<Duration> {
        let mut wake: Option<Duration> = None;
        let ports = &mut self.ports;
        self.throttled.retain(|id| {
            let Some(bucket) = ports
                .get_mut(id)
                .and_then(|p| p.qos.as_mut())
                .and_then(|q| q.egress.as_mut())
            else {
                // Gone, or its limit was lifted: read it again.
                if ports.contains_key(id) && !ready.contains(id) {
                    ready.push_back(*id);
                }
                return false;
            };
            if bucket.ready(now) {
                if !ready.contains(id) {
                    ready.push_back(*id);
                }
                return false;
            }
            let w = bucket.ready_at().saturating_sub(now);
            wake = Some(wake.map_or(w, |x| x.min(w)));
            true
        });
        wake
    }
}
