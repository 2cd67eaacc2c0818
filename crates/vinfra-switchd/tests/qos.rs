//! QoS through the switch daemon with real frames: host ports on taps moved into network
//! namespaces, iperf3 between them. A rate limit holds within ±10 % each way and lifting it
//! restores full speed; a high-priority port's TCP keeps its share of a limited port against a
//! UDP flood (and does not when it is normal); two flooding ports of weights 30 and 10 share a
//! limited port about 3:1. A request with a value out of range is refused and changes nothing.
//!
//! Timing on a shared machine varies: each measure is retried once when it misses, and every
//! value measured is printed.

mod common;

use std::net::Ipv4Addr;

use common::*;
use vinfra_switch_control::{PrioritySpec, QosSpec, RateSpec, Request, SwitchClient};

/// The limit of the rate tests, bits per second.
const RATE: u64 = 50_000_000;
/// The limit of the contention tests.
const LIMITED: u64 = 100_000_000;

fn needs() -> bool {
    common::needs().program("iperf3").met()
}

/// A rate with 20 ms of burst: twice the CLI's default, so that the daemon (a debug build here,
/// on a machine that may be busy) being descheduled for a few milliseconds does not cost rate.
fn rate(bits_per_sec: u64) -> Option<RateSpec> {
    Some(RateSpec {
        bits_per_sec,
        burst_bytes: bits_per_sec / 8 / 50,
    })
}

fn set_qos(client: &mut SwitchClient, port: u32, qos: Option<QosSpec>) {
    client
        .apply(&[Request::SetPortQos { port, qos }])
        .expect("set_port_qos");
}

/// One switch with `n` host ports 1..=n on one overlay network, each tap moved into its own
/// endpoint namespace as 10.`net`.0.`port`. Fields drop in order: the daemon before the
/// namespaces.
struct Bed {
    client: SwitchClient,
    daemon: Daemon,
    eps: Vec<Netns>,
    _host: Netns,
    _dir: tempfile::TempDir,
    net: u8,
}

impl Bed {
    fn new(n: u32, net: u8) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let host = Netns::new("h");
        let daemon = Daemon::start(&host, dir.path(), None);
        let mut client = daemon.client();
        let taps: Vec<String> = (1..=n).map(|_| name("t")).collect();
        let mut config = vec![overlay(1, 300 + u32::from(net))];
        config.extend(
            taps.iter()
                .zip(1..)
                .map(|(tap, id)| tap_port(id, 1, tap, 1500)),
        );
        client.apply(&config).unwrap();
        let eps: Vec<Netns> = taps
            .iter()
            .zip(1..)
            .map(|(tap, id)| {
                let ep = Netns::new("e");
                attach_tap(&host, tap, &ep, &format!("10.{net}.0.{id}/24"), 1500);
                ep
            })
            .collect();
        let bed = Bed {
            client,
            daemon,
            eps,
            _host: host,
            _dir: dir,
            net,
        };
        for id in 2..=n {
            assert!(
                bed.ep(1).ping_until(&bed.ip(id).to_string(), 10),
                "{}",
                bed.daemon.log_text()
            );
        }
        bed
    }

    fn ep(&self, port: u32) -> &Netns {
        &self.eps[port as usize - 1]
    }

    fn ip(&self, port: u32) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, port as u8)
    }

    /// TCP from port `from` to port `to` for `secs` seconds (the first left out: slow
    /// start), bits per second received.
    fn tcp(&self, from: u32, to: u32, secs: u32) -> f64 {
        let t = secs.to_string();
        iperf(
            self.ep(from),
            self.ep(to),
            self.ip(to),
            5201,
            &["-t", &t, "-O", "1"],
        )
    }
}

/// Runs `measure` until `ok` holds for its value, at most twice; returns the last value.
fn measured(what: &str, mut measure: impl FnMut() -> f64, ok: impl Fn(f64) -> bool) -> f64 {
    let first = measure();
    println!("{what}: {:.1} Mbit/s", first / 1e6);
    if ok(first) {
        return first;
    }
    let second = measure();
    println!("{what} (again): {:.1} Mbit/s", second / 1e6);
    second
}

fn within(value: f64, target: u64, tolerance: f64) -> bool {
    (value - target as f64).abs() <= target as f64 * tolerance
}

#[test]
fn an_egress_limit_holds_within_ten_percent_and_lifting_it_restores_full_speed() {
    if !needs() {
        return;
    }
    let mut bed = Bed::new(2, 120);
    let limited = QosSpec {
        egress: rate(RATE),
        ..QosSpec::default()
    };
    set_qos(&mut bed.client, 1, Some(limited));
    let got = measured("egress 50M", || bed.tcp(1, 2, 4), |v| within(v, RATE, 0.10));
    assert!(within(got, RATE, 0.10), "{got} bit/s, limit {RATE}");
    // What the switch read from port 1 is what it sent to port 2: nothing queued or dropped.
    let c = bed.client.counters().unwrap();
    let (p1, p2) = (c.port(1).unwrap(), c.port(2).unwrap());
    assert_eq!((p1.qos_dropped, p2.qos_dropped), (0, 0), "{c:#?}");

    set_qos(&mut bed.client, 1, None);
    let free = measured(
        "egress lifted",
        || bed.tcp(1, 2, 2),
        |v| v > 4.0 * RATE as f64,
    );
    assert!(free > 4.0 * RATE as f64, "{free} bit/s without a limit");
}

#[test]
fn an_ingress_limit_holds_within_ten_percent() {
    if !needs() {
        return;
    }
    let mut bed = Bed::new(2, 121);
    set_qos(
        &mut bed.client,
        2,
        Some(QosSpec {
            ingress: rate(RATE),
            ..QosSpec::default()
        }),
    );
    let got = measured(
        "ingress 50M",
        || bed.tcp(1, 2, 4),
        |v| within(v, RATE, 0.10),
    );
    assert!(within(got, RATE, 0.10), "{got} bit/s, limit {RATE}");
    let c = bed.client.counters().unwrap();
    assert!(c.port(2).unwrap().qos_delayed > 0, "{c:#?}");
    set_qos(&mut bed.client, 2, None);
    let free = measured(
        "ingress lifted",
        || bed.tcp(1, 2, 2),
        |v| v > 4.0 * RATE as f64,
    );
    assert!(free > 4.0 * RATE as f64, "{free} bit/s without a limit");
}

/// Port 3 limited to [`LIMITED`]; port 1 floods it with UDP while port 2 (of class `b`) sends
/// TCP to it: what port 2's TCP got, bits per second.
fn tcp_against_a_flood(bed: &mut Bed, b: PrioritySpec) -> f64 {
    set_qos(
        &mut bed.client,
        2,
        Some(QosSpec {
            priority: b,
            ..QosSpec::default()
        }),
    );
    let _flood_server = IperfServer::start(bed.ep(3), 5202);
    let flood = iperf_spawn(bed.ep(1), bed.ip(3), 5202, &["-u", "-b", "1G", "-t", "7"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let tcp = bed.tcp(2, 3, 4);
    let flooded = iperf_received(flood);
    println!(
        "port 2 {b:?}: TCP {:.1} Mbit/s, flood got {:.1} Mbit/s",
        tcp / 1e6,
        flooded / 1e6
    );
    tcp
}

#[test]
fn a_high_priority_flow_keeps_its_share_against_a_flood() {
    if !needs() {
        return;
    }
    let mut bed = Bed::new(3, 122);
    set_qos(
        &mut bed.client,
        3,
        Some(QosSpec {
            ingress: rate(LIMITED),
            ..QosSpec::default()
        }),
    );
    let share = 0.7 * LIMITED as f64;
    let high = measured(
        "high against a flood",
        || tcp_against_a_flood(&mut bed, PrioritySpec::High),
        |v| v >= share,
    );
    assert!(high >= share, "high priority TCP got {high} bit/s");
    let c = bed.client.counters().unwrap();
    assert!(c.port(3).unwrap().qos_dropped > 0, "{c:#?}");
    // The same flow at normal priority shares with the flood, and does not keep 70 %.
    let normal = measured(
        "normal against a flood",
        || tcp_against_a_flood(&mut bed, PrioritySpec::Normal),
        |v| v < share,
    );
    assert!(normal < share, "normal priority TCP got {normal} bit/s");
}

#[test]
fn two_flooding_ports_share_a_limited_port_by_weight() {
    if !needs() {
        return;
    }
    let mut bed = Bed::new(3, 123);
    set_qos(
        &mut bed.client,
        3,
        Some(QosSpec {
            ingress: rate(LIMITED),
            ..QosSpec::default()
        }),
    );
    for (port, weight) in [(1, 30), (2, 10)] {
        set_qos(
            &mut bed.client,
            port,
            Some(QosSpec {
                weight,
                ..QosSpec::default()
            }),
        );
    }
    let ratio = || {
        let _servers = (
            IperfServer::start(bed.ep(3), 5201),
            IperfServer::start(bed.ep(3), 5202),
        );
        let flood = ["-u", "-b", "400M", "-t", "4"];
        let a = iperf_spawn(bed.ep(1), bed.ip(3), 5201, &flood);
        let b = iperf_spawn(bed.ep(2), bed.ip(3), 5202, &flood);
        let (a, b) = (iperf_received(a), iperf_received(b));
        println!(
            "weight 30: {:.1} Mbit/s, weight 10: {:.1} Mbit/s",
            a / 1e6,
            b / 1e6
        );
        a / b.max(1.0)
    };
    let ok = |r: f64| (2.25..=3.75).contains(&r);
    let first = ratio();
    let r = if ok(first) { first } else { ratio() };
    println!("ratio {r:.2}");
    assert!(ok(r), "weights 30:10 shared {r:.2}:1");
}

#[test]
fn set_port_qos_is_checked_and_a_refused_request_changes_nothing() {
    if !common::needs().met() {
        return;
    }
    let mut bed = Bed::new(1, 124);
    let good = QosSpec {
        ingress: rate(RATE),
        priority: PrioritySpec::High,
        weight: 20,
        ..QosSpec::default()
    };
    set_qos(&mut bed.client, 1, Some(good.clone()));
    let refused = [
        (9, QosSpec::default(), "port 9 does not exist".to_string()),
        (
            1,
            QosSpec {
                weight: 0,
                ..good.clone()
            },
            "weight 0 is not in 1..=100".into(),
        ),
        (
            1,
            QosSpec {
                egress: Some(RateSpec {
                    bits_per_sec: 0,
                    burst_bytes: 1_000,
                }),
                ..good.clone()
            },
            "egress rate must be at least 1 bit/s".into(),
        ),
        (
            1,
            QosSpec {
                dscp_mark: Some(64),
                ..good.clone()
            },
            "DSCP 64 is not in 0..=63".into(),
        ),
    ];
    for (port, qos, message) in refused {
        let e = bed
            .client
            .apply(&[Request::SetPortQos {
                port,
                qos: Some(qos),
            }])
            .unwrap_err();
        assert!(e.to_string().contains(&message), "{e} / {message}");
    }
    let config = bed.client.config().unwrap();
    assert!(
        config.contains(&Request::SetPortQos {
            port: 1,
            qos: Some(good)
        }),
        "{config:?}"
    );
}
