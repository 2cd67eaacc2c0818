use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const NET: NetworkId = NetworkId(7);

fn flow(n: u16) -> Packed {
    Packed::new(NET, 0x0a00_0001, 0x0a00_0002, 17, (n, 53))
}

fn table(max_entries: usize, idle_timeout: Duration) -> FlowTable {
    FlowTable::new(FlowTableSettings {
        enabled: true,
        max_entries,
        idle_timeout,
    })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn count(t: &mut FlowTable, now: Duration, key: Packed, port: u32, bytes: u64) {
    t.count_key(now, key, PortId(port), FlowMark::default(), 1, bytes);
}

/// Packets, bytes and port of every flow in a take, by key.
fn deltas(take: &FlowTake) -> BTreeMap<FlowKey, (u64, u64, PortId)> {
    take.flows
        .iter()
        .map(|d| (d.key, (d.packets, d.bytes, d.port)))
        .collect()
}

#[test]
fn a_packed_key_unpacks_to_its_flow() {
    let key = Packed::new(
        NetworkId(NetworkId::MAX),
        0xc000_0201,
        0x0a01_0203,
        132,
        (1, 65535),
    );
    assert_eq!(
        key.key(),
        FlowKey {
            network: NetworkId(NetworkId::MAX),
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(10, 1, 2, 3),
            protocol: 132,
            src_port: 1,
            dst_port: 65535,
        }
    );
    assert_ne!(key, Packed::default(), "no key is the empty cache");
}

#[test]
fn two_alternating_flows_are_counted_apart() {
    let mut t = table(16, secs(120));
    for i in 0..10 {
        count(&mut t, secs(1), flow(1), 1, 100);
        count(&mut t, secs(1), flow(2), 2 + i % 2, 1000);
    }
    let take = t.take(secs(2));
    assert_eq!(
        deltas(&take),
        BTreeMap::from([
            (flow(1).key(), (10, 1000, PortId(1))),
            (flow(2).key(), (10, 10_000, PortId(3))),
        ])
    );
    assert_eq!(take.entries, 2);
}

#[test]
fn a_cached_flow_that_expired_gets_a_new_entry() {
    let mut t = table(16, secs(120));
    count(&mut t, secs(1), flow(1), 1, 100);
    assert_eq!(t.expire(secs(200)), 1);
    assert_eq!(t.len(), 0);
    count(&mut t, secs(200), flow(1), 1, 100);
    assert_eq!(t.len(), 1);
    assert_eq!(
        deltas(&t.take(secs(201))),
        BTreeMap::from([(flow(1).key(), (1, 100, PortId(1)))])
    );
}

#[test]
fn a_cached_flow_that_left_is_not_counted_into_the_entry_that_took_its_place() {
    let mut t = table(16, secs(120));
    // Flow 1 first (its entry first), flow 2 later; flow 1 counted last with an older
    // time, so it is the cached one and the one that expires.
    count(&mut t, secs(0), flow(1), 1, 100);
    count(&mut t, secs(100), flow(2), 2, 1000);
    count(&mut t, secs(0), flow(1), 1, 100);
    assert_eq!(t.expire(secs(130)), 1);
    // Flow 2's entry moved into flow 1's place.
    count(&mut t, secs(130), flow(1), 1, 100);
    count(&mut t, secs(130), flow(2), 2, 1000);
    assert_eq!(
        deltas(&t.take(secs(131))),
        BTreeMap::from([
            (flow(1).key(), (1, 100, PortId(1))),
            (flow(2).key(), (2, 2000, PortId(2))),
        ])
    );
}

#[test]
fn a_cached_flow_moved_by_a_take_is_counted_where_it_moved() {
    let mut t = table(16, secs(120));
    count(&mut t, secs(1), flow(1), 1, 100);
    count(&mut t, secs(1), flow(2), 2, 1000);
    t.take(secs(2));
    // Flow 2 stays busy and cached; flow 1 leaves after its idle takes.
    for take in 3..5 {
        count(&mut t, secs(take), flow(2), 2, 1000);
        t.take(secs(take));
    }
    assert_eq!(t.len(), 1);
    count(&mut t, secs(5), flow(2), 2, 1000);
    assert_eq!(
        deltas(&t.take(secs(6))),
        BTreeMap::from([(flow(2).key(), (1, 1000, PortId(2)))])
    );
}

#[test]
fn turning_accounting_off_forgets_the_cached_flow() {
    let mut t = table(16, secs(120));
    count(&mut t, secs(1), flow(1), 1, 100);
    let settings = t.settings();
    t.set_settings(FlowTableSettings {
        enabled: false,
        ..settings
    });
    t.set_settings(settings);
    count(&mut t, secs(1), flow(1), 1, 100);
    assert_eq!(t.len(), 1);
    assert_eq!(
        deltas(&t.take(secs(2))),
        BTreeMap::from([(flow(1).key(), (1, 100, PortId(1)))])
    );
}

#[test]
fn the_index_grows_and_keeps_every_flow() {
    let mut t = table(10_000, secs(120));
    for round in 0..3 {
        for n in 0..5000 {
            count(&mut t, secs(round), flow(n), u32::from(n), 10);
        }
    }
    assert_eq!(t.len(), 5000);
    assert!(t.index.len() >= 10_000 && t.index.len().is_power_of_two());
    let take = t.take(secs(4));
    assert_eq!(take.flows.len(), 5000);
    assert!(take.flows.iter().all(|d| d.packets == 3 && d.bytes == 30));
}

/// The table as it was specified: a map from flow to counts.
#[derive(Default)]
struct Model {
    flows: BTreeMap<FlowKey, (u64, u64, PortId, Duration, u32)>,
    untracked: u64,
    last_sweep: Option<Duration>,
}

impl Model {
    fn expire(&mut self, now: Duration, timeout: Duration) -> usize {
        let before = self.flows.len();
        self.flows.retain(|_, f| now.saturating_sub(f.3) < timeout);
        before - self.flows.len()
    }

    fn count(&mut self, s: FlowTableSettings, now: Duration, key: FlowKey, port: PortId) {
        if !self.flows.contains_key(&key) && self.flows.len() >= s.max_entries {
            if self
                .last_sweep
                .is_none_or(|at| now.saturating_sub(at) >= FULL_SWEEP_INTERVAL)
            {
                self.last_sweep = Some(now);
                self.expire(now, s.idle_timeout);
            }
            if self.flows.len() >= s.max_entries {
                self.untracked += 1;
                return;
            }
        }
        let f = self.flows.entry(key).or_insert((0, 0, port, now, 0));
        *f = (f.0 + 1, f.1 + 100, port, now, 0);
    }

    fn take(&mut self, now: Duration, timeout: Duration) -> BTreeMap<FlowKey, (u64, u64, PortId)> {
        let mut out = BTreeMap::new();
        self.flows.retain(|key, f| {
            if f.0 > 0 {
                out.insert(*key, (f.0, f.1, f.2));
                (f.0, f.1, f.4) = (0, 0, 0);
                return true;
            }
            f.4 += 1;
            f.4 < IDLE_TAKES && now.saturating_sub(f.3) < timeout
        });
        out
    }
}

#[derive(Clone, Debug)]
enum Op {
    Count(u16, u32),
    Take,
    Expire,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u16..40, 1u32..4).prop_map(|(n, port)| Op::Count(n, port)),
        1 => Just(Op::Take),
        1 => Just(Op::Expire),
        2 => (0u64..1500).prop_map(Op::Wait),
    ]
}

proptest! {
    #[test]
    fn the_table_counts_as_its_specification(
        max_entries in 1usize..48,
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let settings = FlowTableSettings {
            enabled: true,
            max_entries,
            idle_timeout: Duration::from_millis(3000),
        };
        let mut t = FlowTable::new(settings);
        let mut model = Model::default();
        let mut now = secs(1);
        for op in ops {
            match op {
                Op::Count(n, port) => {
                    count(&mut t, now, flow(n), port, 100);
                    model.count(settings, now, flow(n).key(), PortId(port));
                }
                Op::Take => {
                    let take = t.take(now);
                    prop_assert_eq!(deltas(&take), model.take(now, settings.idle_timeout));
                    prop_assert_eq!(take.untracked_packets, core::mem::take(&mut model.untracked));
                }
                Op::Expire => {
                    prop_assert_eq!(t.expire(now), model.expire(now, settings.idle_timeout));
                }
                Op::Wait(ms) => now += Duration::from_millis(ms),
            }
            prop_assert_eq!(t.len(), model.flows.len());
        }
        prop_assert_eq!(deltas(&t.take(now)), model.take(now, settings.idle_timeout));
    }
}
