use super::*;
use vinfra_types::host::{Accel, HostCapacity, HostUsage};
use vinfra_types::vm::{VmNetBytes, VmObserved, VmUsage};

fn vm(id: Uuid, state: PowerState, cpu: f64, rss: u64) -> VmObserved {
    VmObserved {
        id,
        name: "v".into(),
        state,
        pid: (state == PowerState::Running).then_some(42),
        uptime_s: 1,
        usage: VmUsage {
            cpu_time_ms: 0,
            cpu_cores: cpu,
            rss_mib: rss,
        },
        unresponsive: false,
        ha: false,
        net: None,
    }
}

fn report(host: &str, cpu: f64, vms: Vec<VmObserved>) -> HostReport {
    HostReport {
        host: host.into(),
        address: "10.0.0.1".into(),
        accel: Accel::Tcg,
        qemu_version: "7.2.0".into(),
        capacity: HostCapacity {
            cores: 4,
            memory_mib: 8192,
        },
        usage: HostUsage {
            cpu_cores: cpu,
            memory_used_mib: 1000,
        },
        vms,
        trunk: None,
        underlay_mtu: 1500,
        guard: None,
    }
}

const T0: u64 = 1_700_000_000;

#[test]
fn reports_of_one_interval_make_one_sample_with_the_mean_cpu_and_the_last_memory() {
    let id = Uuid::new_v4();
    let mut h = UsageHistories::default();
    h.record(
        T0,
        &report("h1", 1.0, vec![vm(id, PowerState::Running, 0.5, 100)]),
    );
    h.record(
        T0 + 2,
        &report("h1", 3.0, vec![vm(id, PowerState::Running, 1.5, 120)]),
    );
    h.record(
        T0 + 10,
        &report("h1", 2.0, vec![vm(id, PowerState::Running, 0.25, 130)]),
    );
    let v = h.vm(id, T0 + 11);
    assert_eq!(v.interval_s, 10);
    assert_eq!(
        v.samples,
        vec![
            UsageSample {
                at: T0 - T0 % 10,
                cpu_cores: 1.0,
                memory_mib: 120,
                rx_bytes_per_s: None,
                tx_bytes_per_s: None,
            },
            UsageSample {
                at: T0 + 10 - (T0 + 10) % 10,
                cpu_cores: 0.25,
                memory_mib: 130,
                rx_bytes_per_s: None,
                tx_bytes_per_s: None,
            },
        ]
    );
    let host = h.host("h1", T0 + 11);
    assert_eq!(host.samples.len(), 2);
    assert_eq!(host.samples[0].cpu_cores, 2.0);
    assert_eq!(host.samples[0].memory_mib, 1000);
}

#[test]
fn a_stopped_vm_adds_nothing_and_a_moved_vm_keeps_its_history() {
    let id = Uuid::new_v4();
    let mut h = UsageHistories::default();
    h.record(
        T0,
        &report("h1", 0.0, vec![vm(id, PowerState::Stopped, 9.0, 9)]),
    );
    assert!(h.vm(id, T0).samples.is_empty());
    h.record(
        T0,
        &report("h1", 0.0, vec![vm(id, PowerState::Running, 1.0, 50)]),
    );
    h.record(
        T0 + 20,
        &report("h2", 0.0, vec![vm(id, PowerState::Running, 1.0, 60)]),
    );
    assert_eq!(h.vm(id, T0 + 20).samples.len(), 2);
    assert!(h.vm(Uuid::new_v4(), T0).samples.is_empty());
}

#[test]
fn the_history_holds_one_hour_and_forgets_what_nothing_reports_any_more() {
    let id = Uuid::new_v4();
    let mut h = UsageHistories::default();
    let mut t = T0;
    for _ in 0..2 * CAPACITY {
        h.record(
            t,
            &report("h1", 0.5, vec![vm(id, PowerState::Running, 0.5, 64)]),
        );
        t += USAGE_INTERVAL_S;
    }
    let v = h.vm(id, t);
    assert_eq!(v.samples.len(), CAPACITY);
    assert!(v.samples.windows(2).all(|w| w[0].at < w[1].at));
    assert!(v.samples[0].at + USAGE_WINDOW_S >= t - USAGE_INTERVAL_S);
    // An hour and more later, a report without the VM sweeps it and the other host away.
    h.record(t + USAGE_WINDOW_S + 100, &report("h2", 0.0, vec![]));
    assert_eq!(h.len(), (0, 1));
    // A view ages too: nothing older than an hour is shown.
    let mut h = UsageHistories::default();
    h.record(
        T0,
        &report("h1", 0.5, vec![vm(id, PowerState::Running, 0.5, 64)]),
    );
    assert!(h.vm(id, T0 + USAGE_WINDOW_S + 10).samples.is_empty());
}

#[test]
fn a_cpu_figure_that_is_not_a_number_counts_as_idle() {
    let id = Uuid::new_v4();
    let mut h = UsageHistories::default();
    h.record(
        T0,
        &report(
            "h1",
            f64::NAN,
            vec![vm(id, PowerState::Running, f64::INFINITY, 1)],
        ),
    );
    assert_eq!(h.vm(id, T0).samples[0].cpu_cores, 0.0);
    assert_eq!(h.host("h1", T0).samples[0].cpu_cores, 0.0);
}

fn with_net(mut v: VmObserved, rx: u64, tx: u64) -> VmObserved {
    v.net = Some(VmNetBytes {
        rx_bytes: rx,
        tx_bytes: tx,
    });
    v
}

#[test]
fn a_vm_s_traffic_becomes_bytes_per_second_and_a_count_that_went_back_adds_nothing() {
    let id = Uuid::new_v4();
    let run = |rx, tx| with_net(vm(id, PowerState::Running, 0.1, 64), rx, tx);
    let mut h = UsageHistories::default();
    let t = T0 - T0 % 10;
    h.record(t, &report("h1", 0.0, vec![run(1_000, 500)]));
    // The first count has nothing to compare with.
    assert_eq!(h.vm(id, t).samples[0].rx_bytes_per_s, None);
    h.record(t + 2, &report("h1", 0.0, vec![run(3_000, 900)]));
    h.record(t + 4, &report("h1", 0.0, vec![run(5_000, 1_300)]));
    let s = h.vm(id, t + 4).samples[0];
    assert_eq!(s.rx_bytes_per_s, Some(1_000.0));
    assert_eq!(s.tx_bytes_per_s, Some(200.0));
    // Migrated: the new host's counts start again from 0; that interval adds nothing, the
    // next ones count from there.
    h.record(t + 10, &report("h2", 0.0, vec![run(100, 10)]));
    assert_eq!(h.vm(id, t + 10).samples[1].rx_bytes_per_s, None);
    h.record(t + 12, &report("h2", 0.0, vec![run(300, 30)]));
    let s = h.vm(id, t + 12).samples[1];
    assert_eq!(s.rx_bytes_per_s, Some(100.0));
    assert_eq!(s.tx_bytes_per_s, Some(10.0));
    // A host has no network figures.
    assert!(h.host("h1", t + 12).samples[0].rx_bytes_per_s.is_none());
}
