//! `plot.svg`: six small line charts over time (imbalance, highest host load, cumulative
//! migrations, hard violations, should-rule violations, cross-host traffic), every balancer of
//! the report overlaid. Plain SVG 1.1 text, no dependencies.

use std::fmt::Write as _;

use crate::engine::{BalancerKind, BalancerRun, StepMetrics};

const WIDTH: f64 = 1000.0;
const HEADER: f64 = 64.0;
const PANEL_W: f64 = 490.0;
const PANEL_H: f64 = 220.0;
const GAP: f64 = 10.0;
/// Plot area inside a panel: left, right, top, bottom margins.
const ML: f64 = 62.0;
const MR: f64 = 14.0;
const MT: f64 = 30.0;
const MB: f64 = 34.0;

fn color(k: BalancerKind) -> &'static str {
    match k {
        BalancerKind::Vinfra => "#1f6fb4",
        BalancerKind::Greedy => "#d9480f",
    }
}

fn dash(k: BalancerKind) -> &'static str {
    match k {
        BalancerKind::Vinfra => "",
        BalancerKind::Greedy => " stroke-dasharray=\"6 3\"",
    }
}

/// Text made safe for XML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at least `v` (1 for `v` ≤ 0).
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v * (1.0 - 1e-9) {
            return m * p;
        }
    }
    10.0 * p
}

fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_owned()
    }
}

/// Bytes/s in MiB/s.
pub fn mib(bytes_per_s: u64) -> f64 {
    bytes_per_s as f64 / (1024.0 * 1024.0)
}

/// What the plot's title and reference lines say about the scenario.
#[derive(Debug, Clone, Copy)]
pub struct PlotHeader<'a> {
    /// Scenario name.
    pub scenario: &'a str,
    /// Seed of the scenario's random streams.
    pub seed: u64,
    /// Number of steps.
    pub steps: u32,
    /// Minutes per step.
    pub step_minutes: u32,
    /// Balancer level.
    pub level: u8,
    /// The level's target imbalance, drawn as a reference line.
    pub target_imbalance: Option<f64>,
    /// Steps at which hosts failed, marked by a vertical line in every chart.
    pub failures: &'a [u32],
}

struct Chart<'a> {
    title: &'a str,
    value: fn(&StepMetrics) -> f64,
    /// A dashed reference line and its label.
    reference: Option<(f64, &'a str)>,
}

/// The SVG document for the runs `runs` of one scenario.
pub fn svg(r: &PlotHeader<'_>, runs: &[BalancerRun]) -> String {
    let charts = [
        Chart {
            title: "Imbalance (std. dev. of host loads)",
            value: |s| s.imbalance,
            reference: r.target_imbalance.map(|t| (t, "target")),
        },
        Chart {
            title: "Highest host load (demand / capacity)",
            value: |s| s.max_host_load,
            reference: Some((1.0, "full")),
        },
        Chart {
            title: "Migrations (cumulative)",
            value: |s| s.migrations_total as f64,
            reference: None,
        },
        Chart {
            title: "Hard violations (must-rule VMs, hosts over cap., VMs on maint.)",
            value: |s| {
                (s.must_violations + s.over_capacity_hosts as u64 + s.vms_on_maintenance as u64)
                    as f64
            },
            reference: None,
        },
        Chart {
            title: "Should-rule violations (VMs)",
            value: |s| s.should_violations as f64,
            reference: None,
        },
        Chart {
            title: "Cross-host traffic (MiB/s)",
            value: |s| mib(s.cross_host_traffic),
            reference: None,
        },
    ];
    let rows = charts.len().div_ceil(2) as f64;
    let height = HEADER + rows * (PANEL_H + GAP) + GAP;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    let _ = writeln!(
        o,
        "<text x=\"{GAP}\" y=\"24\" font-size=\"17\" font-weight=\"bold\">{}</text>",
        escape(&format!(
            "vinfra sim: {} (seed {}, {} steps of {} min, level {})",
            r.scenario, r.seed, r.steps, r.step_minutes, r.level
        ))
    );
    // Legend.
    let mut x = GAP;
    for run in runs {
        let k = run.balancer;
        let _ = writeln!(
            o,
            "<line x1=\"{x}\" y1=\"46\" x2=\"{}\" y2=\"46\" stroke=\"{}\" stroke-width=\"2.5\"{}/>",
            x + 28.0,
            color(k),
            dash(k)
        );
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"50\">{}</text>",
            x + 34.0,
            escape(k.name())
        );
        x += 110.0;
    }
    for (i, c) in charts.iter().enumerate() {
        let px = GAP + (i % 2) as f64 * (PANEL_W + GAP);
        let py = HEADER + (i / 2) as f64 * (PANEL_H + GAP);
        panel(&mut o, r, runs, c, px, py);
    }
    o.push_str("</svg>\n");
    o
}

fn panel(
    o: &mut String,
    r: &PlotHeader<'_>,
    runs: &[BalancerRun],
    c: &Chart<'_>,
    px: f64,
    py: f64,
) {
    let (x0, y0) = (px + ML, py + MT);
    let (w, h) = (PANEL_W - ML - MR, PANEL_H - MT - MB);
    let _ = writeln!(o, "<g>");
    let _ = writeln!(
        o,
        "<rect x=\"{px}\" y=\"{py}\" width=\"{PANEL_W}\" height=\"{PANEL_H}\" fill=\"#fafafa\" stroke=\"#cccccc\"/>"
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        px + 8.0,
        py + 19.0,
        escape(c.title)
    );
    let max = runs
        .iter()
        .flat_map(|run| run.steps.iter().map(c.value))
        .chain(c.reference.map(|(v, _)| v))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let ymax = nice_ceil(max);
    let n = runs.iter().map(|run| run.steps.len()).max().unwrap_or(0);
    let last = n.saturating_sub(1).max(1) as f64;
    let sx = |step: f64| x0 + step / last * w;
    let sy = |v: f64| y0 + h - (v / ymax).clamp(0.0, 1.05) * h;
    // Grid and y labels.
    for k in 0..=4 {
        let v = ymax * f64::from(k) / 4.0;
        let y = sy(v);
        let _ = writeln!(
            o,
            "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e2e2e2\"/>",
            x0 + w
        );
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444444\">{}</text>",
            x0 - 6.0,
            y + 4.0,
            tick_label(v)
        );
    }
    // X ticks: about five, on whole steps.
    let every = nice_ceil(last / 5.0).max(1.0);
    let mut t = 0.0;
    while t <= last + 1e-9 {
        let x = sx(t);
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#888888\"/>",
            y0 + h,
            y0 + h + 4.0
        );
        let _ = writeln!(
            o,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444444\">{}</text>",
            y0 + h + 16.0,
            tick_label(t)
        );
        t += every;
    }
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#666666\" font-size=\"11\">step ({} min)</text>",
        x0 + w,
        y0 + h + 30.0,
        r.step_minutes
    );
    let _ = writeln!(
        o,
        "<polyline points=\"{x0},{y0} {x0},{:.1} {:.1},{:.1}\" fill=\"none\" stroke=\"#555555\"/>",
        y0 + h,
        x0 + w,
        y0 + h
    );
    for (i, &f) in r.failures.iter().enumerate() {
        let x = sx(f64::from(f));
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#c92a2a\" stroke-dasharray=\"4 3\"/>",
            y0 + h
        );
        if i == 0 {
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c92a2a\" font-size=\"11\">host failure</text>",
                x + 3.0,
                y0 + 11.0
            );
        }
    }
    if let Some((v, label)) = c.reference {
        if v.is_finite() {
            let y = sy(v);
            let _ = writeln!(
                o,
                "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#2b8a3e\" stroke-dasharray=\"2 3\"/>",
                x0 + w
            );
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#2b8a3e\" font-size=\"11\">{}</text>",
                x0 + w - 2.0,
                y - 3.0,
                escape(label)
            );
        }
    }
    for run in runs {
        let mut pts = String::new();
        for s in &run.steps {
            let v = (c.value)(s);
            let v = if v.is_finite() { v } else { 0.0 };
            let _ = write!(pts, "{:.1},{:.1} ", sx(f64::from(s.step)), sy(v));
        }
        if run.steps.len() == 1 {
            let _ = write!(pts, "{:.1},{:.1}", x0 + w, sy((c.value)(&run.steps[0])));
        }
        let _ = writeln!(
            o,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} stroke-linejoin=\"round\"/>",
            pts.trim_end(),
            color(run.balancer),
            dash(run.balancer)
        );
    }
    let _ = writeln!(o, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_bounds_and_labels() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(0.13), 0.2);
        assert_eq!(nice_ceil(3.0), 5.0);
        assert_eq!(nice_ceil(100.0), 100.0);
        assert_eq!(nice_ceil(101.0), 200.0);
        assert_eq!(tick_label(0.05), "0.05");
        assert_eq!(tick_label(25000.0), "25k");
        assert_eq!(tick_label(3.0), "3");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & 'c'"), "a&lt;b &amp; &apos;c&apos;");
    }
}
