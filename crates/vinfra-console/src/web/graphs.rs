//! A VM's use over the last hour as graphs drawn here, on the server: inline SVG polylines
//! (no chart library, no script), one per measure, and the template of their box.

use askama::Template;

use vinfra_types::usage::{UsageHistory, USAGE_WINDOW_S};

/// Width of a graph, in its own units.
pub const WIDTH: u64 = 600;
/// Height of a graph, in its own units.
pub const HEIGHT: u64 = 100;

/// One graph.
pub struct UsageGraph {
    /// Its element's id (`graph-cpu`).
    pub id: String,
    /// What it shows, in words.
    pub title: String,
    /// The latest value, in words.
    pub latest: String,
    /// The top of its scale, in words.
    pub top: String,
    /// The polyline's points, `x,y x,y …` (empty: nothing measured yet).
    pub points: String,
}

/// A VM's or a host's graphs, the box its page shows and its script refreshes.
pub struct UsageBox {
    /// The box's element id (`vm-usage`, `host-usage`).
    pub id: &'static str,
    /// Where the script fetches the box again (`/ui/vms/{name}/usage`).
    pub refresh: String,
    /// CPU, then memory.
    pub graphs: Vec<UsageGraph>,
    /// Samples in the hour.
    pub samples: usize,
}

/// `GET /ui/vms/{name}/usage`: the box alone.
#[derive(Template)]
#[template(path = "web/usage.html")]
pub struct UsageFragment {
    /// The box.
    pub usage: UsageBox,
}

/// The points of `values` (time in Unix seconds, value) over the hour before `now_s`, scaled
/// to `top`.
fn points(values: &[(u64, f64)], top: f64, now_s: u64) -> String {
    let start = now_s.saturating_sub(USAGE_WINDOW_S);
    let top = if top > 0.0 { top } else { 1.0 };
    values
        .iter()
        .filter(|(at, _)| *at >= start && *at <= now_s)
        .map(|(at, v)| {
            let x = (at - start) as f64 * WIDTH as f64 / USAGE_WINDOW_S as f64;
            let y = HEIGHT as f64 - (v.max(0.0) / top).min(1.0) * HEIGHT as f64;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a usage box is of: the VM or host, and the scale its graphs start from.
pub enum Graphed<'a> {
    /// A VM: CPU against its vCPUs, memory against its memory.
    Vm {
        /// The VM.
        name: &'a str,
        /// Its vCPUs.
        vcpus: u32,
        /// Its memory, MiB.
        memory_mib: u64,
    },
    /// A host: CPU against its cores, memory against its physical memory.
    Host {
        /// The host.
        name: &'a str,
        /// Its cores.
        cores: u32,
        /// Its memory, MiB.
        memory_mib: u64,
    },
}

/// The graphs of `history` (the console's 10 s samples, oldest first) of `what`, at `now_s`
/// (Unix seconds): each against its scale (or more, if it used more).
pub fn usage_box(what: Graphed<'_>, history: &UsageHistory, now_s: u64) -> UsageBox {
    let (id, refresh, vcpus, memory_mib) = match what {
        Graphed::Vm {
            name,
            vcpus,
            memory_mib,
        } => (
            "vm-usage",
            format!("/ui/vms/{name}/usage"),
            vcpus,
            memory_mib,
        ),
        Graphed::Host {
            name,
            cores,
            memory_mib,
        } => (
            "host-usage",
            format!("/ui/hosts/{name}/usage"),
            cores,
            memory_mib,
        ),
    };
    let samples = &history.samples;
    let cpu: Vec<(u64, f64)> = samples.iter().map(|s| (s.at, s.cpu_cores)).collect();
    let mem: Vec<(u64, f64)> = samples
        .iter()
        .map(|s| (s.at, s.memory_mib as f64))
        .collect();
    let cpu_top = cpu
        .iter()
        .map(|(_, v)| *v)
        .fold(f64::from(vcpus.max(1)), f64::max);
    let mem_top = mem
        .iter()
        .map(|(_, v)| *v)
        .fold(memory_mib.max(1) as f64, f64::max);
    let last = samples.last();
    let mut graphs = vec![
        UsageGraph {
            id: "graph-cpu".into(),
            title: "CPU (cores)".into(),
            latest: last
                .map(|s| format!("{:.2}", s.cpu_cores))
                .unwrap_or_default(),
            top: format!("{cpu_top:.1}"),
            points: points(&cpu, cpu_top, now_s),
        },
        UsageGraph {
            id: "graph-memory".into(),
            title: "Memory (MiB)".into(),
            latest: last.map(|s| s.memory_mib.to_string()).unwrap_or_default(),
            top: format!("{mem_top:.0}"),
            points: points(&mem, mem_top, now_s),
        },
    ];
    // A VM's network, once its host's switch has counted it twice.
    let net = |rate: fn(&vinfra_types::usage::UsageSample) -> Option<f64>| -> Vec<(u64, f64)> {
        samples
            .iter()
            .filter_map(|s| Some((s.at, rate(s)?)))
            .collect()
    };
    let rx = net(|s| s.rx_bytes_per_s);
    let tx = net(|s| s.tx_bytes_per_s);
    if !rx.is_empty() || !tx.is_empty() {
        let top = rx.iter().chain(&tx).map(|(_, v)| *v).fold(1024.0, f64::max);
        for (id, title, values) in [
            ("graph-net-in", "Network in (bytes/s)", &rx),
            ("graph-net-out", "Network out (bytes/s)", &tx),
        ] {
            graphs.push(UsageGraph {
                id: id.into(),
                title: title.into(),
                latest: values
                    .last()
                    .map(|(_, v)| format!("{v:.0}"))
                    .unwrap_or_default(),
                top: format!("{top:.0}"),
                points: points(values, top, now_s),
            });
        }
    }
    UsageBox {
        id,
        refresh,
        graphs,
        samples: samples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vinfra_types::usage::{UsageSample, USAGE_INTERVAL_S};

    fn vm(vcpus: u32, memory_mib: u64) -> Graphed<'static> {
        Graphed::Vm {
            name: "a",
            vcpus,
            memory_mib,
        }
    }

    fn history(samples: Vec<UsageSample>) -> UsageHistory {
        UsageHistory {
            interval_s: USAGE_INTERVAL_S,
            samples,
        }
    }

    #[test]
    fn the_points_span_the_hour_and_the_scale() {
        let now = 10 * USAGE_WINDOW_S;
        let samples = history(vec![
            UsageSample {
                at: now - USAGE_WINDOW_S,
                cpu_cores: 0.0,
                memory_mib: 256,
                rx_bytes_per_s: None,
                tx_bytes_per_s: None,
            },
            UsageSample {
                at: now,
                cpu_cores: 2.0,
                memory_mib: 512,
                rx_bytes_per_s: None,
                tx_bytes_per_s: None,
            },
        ]);
        let b = usage_box(vm(2, 512), &samples, now);
        assert_eq!(b.graphs[0].points, "0.0,100.0 600.0,0.0");
        assert_eq!(b.graphs[1].points, "0.0,50.0 600.0,0.0");
        assert_eq!(b.graphs[0].latest, "2.00");
        assert_eq!((b.id, b.refresh.as_str()), ("vm-usage", "/ui/vms/a/usage"));
        // More than its vCPUs: the scale grows, the line stays inside.
        let busy = history(vec![UsageSample {
            at: now,
            cpu_cores: 4.0,
            memory_mib: 0,
            rx_bytes_per_s: None,
            tx_bytes_per_s: None,
        }]);
        let b = usage_box(vm(2, 512), &busy, now);
        assert_eq!(b.graphs[0].top, "4.0");
        assert_eq!(b.graphs[0].points, "600.0,0.0");
        // With the network counted: two more graphs, in and out, on one scale.
        let mut counted = busy.clone();
        counted.samples[0].rx_bytes_per_s = Some(4096.0);
        counted.samples[0].tx_bytes_per_s = Some(1024.0);
        let b = usage_box(vm(2, 512), &counted, now);
        assert_eq!(b.graphs.len(), 4);
        assert_eq!(b.graphs[2].id, "graph-net-in");
        assert_eq!(b.graphs[2].latest, "4096");
        assert_eq!(b.graphs[3].points, "600.0,75.0");
        assert_eq!(usage_box(vm(2, 512), &busy, now).graphs.len(), 2);
        assert!(usage_box(vm(1, 1), &history(vec![]), now).graphs[0]
            .points
            .is_empty());
    }
}
