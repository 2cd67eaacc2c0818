//! The shipped scenarios: they run, they are deterministic, and the balancer does what each one
//! is about.

use std::collections::BTreeSet;
use std::path::PathBuf;

use vinfra_placement::LevelParams;
use vinfra_sim::{BalancerKind, BalancerRun, Report, Scenario};

const SHIPPED: [&str; 6] = [
    "hot-spot",
    "maintenance-evacuation",
    "chatty-pairs",
    "rules-heavy",
    "diurnal",
    "ha-rack-failure",
];

/// Shipped but too large to run here (the `ha` benchmark runs it): only loaded.
const LARGE: [&str; 1] = ["ha-10k"];

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(format!("{name}.toml"))
}

fn load(name: &str) -> Scenario {
    match Scenario::load(&path(name)) {
        Ok(s) => s,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn both(s: &Scenario) -> Report {
    match Report::run(s, &[BalancerKind::Vinfra, BalancerKind::Greedy]) {
        Ok(r) => r,
        Err(e) => panic!("{}: {e}", s.name),
    }
}

fn run(r: &Report, k: BalancerKind) -> &BalancerRun {
    r.run_of(k).expect("the balancer ran")
}

#[test]
fn every_shipped_scenario_runs_and_nothing_else_is_in_the_folder() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "toml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    found.sort();
    let mut expected: Vec<String> = SHIPPED
        .iter()
        .chain(&LARGE)
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(found, expected);
    for name in LARGE {
        let s = load(name);
        assert_eq!((s.hosts.len(), s.vms.len()), (10_000, 100_000), "{name}");
    }
    for name in SHIPPED {
        let s = load(name);
        let r = both(&s);
        assert_eq!(r.runs.len(), 2);
        for run in &r.runs {
            assert_eq!(run.steps.len(), s.steps as usize, "{name}");
            assert_eq!(run.summary.migrations, run.moves.len(), "{name}");
            let total: usize = run.steps.iter().map(|m| m.migrations).sum();
            assert_eq!(total, run.moves.len(), "{name}");
        }
        // The vinfra balancer never leaves a must-rule broken, a host over capacity or a VM on
        // a host in maintenance at the end.
        let last = run(&r, BalancerKind::Vinfra).steps.last().expect("steps");
        assert_eq!(
            (
                last.must_violations,
                last.over_capacity_hosts,
                last.vms_on_maintenance
            ),
            (0, 0, 0),
            "{name}"
        );
    }
}

#[test]
fn same_seed_same_bytes() {
    for name in SHIPPED {
        let s = load(name);
        let (a, b) = (both(&s), both(&s));
        assert_eq!(a.metrics_json(), b.metrics_json(), "{name}");
        assert_eq!(a.moves_json(), b.moves_json(), "{name}");
        assert_eq!(a.metrics_csv(), b.metrics_csv(), "{name}");
        assert_eq!(a.plot_svg(), b.plot_svg(), "{name}");
        assert_eq!(
            without_times(&a.failover_json()),
            without_times(&b.failover_json()),
            "{name}"
        );
    }
}

/// `failover.json` without its planning times, the one part that differs between runs.
fn without_times(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("\"planning_ms\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ha_rack_failure_restarts_by_priority_and_refuses_what_breaks_the_reserve() {
    let s = load("ha-rack-failure");
    let r = both(&s);
    for run in &r.runs {
        let name = run.balancer.name();
        let f = &run.ha.failovers;
        assert_eq!(f.len(), 2, "{name}");
        assert!(f.iter().all(|f| f.step == 4), "{name}");
        // The 40 GiB VM fits nowhere while the rack is down; the reserve said so before.
        let r12 = f.iter().find(|f| f.host == "r1-2").expect("r1-2 failed");
        assert_eq!(r12.unplaced.len(), 1, "{name}");
        assert_eq!(r12.unplaced[0].vm, "big", "{name}");
        assert_eq!(
            r12.predicted.as_ref().map(|p| p.unplaced.clone()),
            Some(vec!["big".to_string()]),
            "{name}"
        );
        // It restarts when the rack returns, empty, at step 10.
        assert_eq!(run.ha.retries.len(), 1, "{name}");
        assert_eq!(run.ha.retries[0].step, 10, "{name}");
        assert!(
            run.ha.retries[0].restarts[0].host.starts_with("r1-"),
            "{name}"
        );
        // The batch VMs (no HA) on r1-1 stopped; every HA VM runs at the end.
        assert_eq!(
            run.summary.vms_stopped,
            f.iter().map(|f| f.stopped.len()).sum::<usize>()
        );
        assert!(run.summary.vms_stopped > 0, "{name}");
        assert_eq!(run.summary.ha_down_end, 0, "{name}");
        // Two of the three late HA VMs are refused with the reserve's reason.
        assert!(!run.ha.refused.is_empty(), "{name}");
        assert!(run
            .ha
            .refused
            .iter()
            .all(|x| x.step == 6 && x.reason.contains("would break the HA reserve")));
        assert_eq!(run.summary.admission_refused, run.ha.refused.len());
        assert_eq!(run.summary.max_must_violations, 0, "{name}");
    }
}

#[test]
fn another_seed_changes_the_output_where_demand_is_random() {
    for name in SHIPPED {
        let s = load(name);
        let random = s.vms.iter().any(|v| v.demand.is_random());
        let a = both(&s).metrics_json();
        let b = both(&s.clone().with_seed(s.seed + 1)).metrics_json();
        // The seed is written into the file; compare the metrics only.
        let strip = |t: &str| {
            t.replace(&format!("\"seed\": {}", s.seed), "")
                .replace(&format!("\"seed\": {}", s.seed + 1), "")
        };
        if random {
            assert_ne!(strip(&a), strip(&b), "{name}: the seed changes nothing");
        } else {
            assert_eq!(strip(&a), strip(&b), "{name}");
        }
    }
    assert!(load("diurnal").vms.iter().all(|v| v.demand.is_random()));
}

#[test]
fn hot_spot_converges_below_the_target_without_ping_pong() {
    let s = load("hot-spot");
    let r = both(&s);
    let v = run(&r, BalancerKind::Vinfra);
    let target = LevelParams::for_level(s.balancer.level)
        .expect("level")
        .target_imbalance;
    let peak = v.steps.iter().map(|m| m.imbalance).fold(0.0, f64::max);
    assert!(peak > 2.0 * target, "the scenario has no hot spot: {peak}");
    assert!(
        v.summary.final_imbalance < target,
        "{} ≥ {target}",
        v.summary.final_imbalance
    );
    // Settled: no migration over the last third of the run.
    let tail = &v.steps[v.steps.len() * 2 / 3..];
    assert!(tail.iter().all(|m| m.migrations == 0), "{tail:?}");
    assert!(v.moves.iter().all(|m| m.reason == "reduce-imbalance"));
    // No VM goes back to a host it left within the hysteresis window.
    for (i, m) in v.moves.iter().enumerate() {
        for earlier in &v.moves[..i] {
            let minutes = (m.step - earlier.step) * s.step_minutes;
            assert!(
                !(earlier.vm == m.vm
                    && earlier.from == m.to
                    && minutes < s.balancer.hysteresis_minutes),
                "{} went back to {} after {minutes} min",
                m.vm,
                m.to
            );
        }
    }
    // The hot spot takes more than one step to relieve (two moves per host and step).
    let steps: BTreeSet<u32> = v.moves.iter().map(|m| m.step).collect();
    assert!(steps.len() >= 2, "{steps:?}");
}

#[test]
fn maintenance_evacuation_spreads_and_empties_the_host() {
    let s = load("maintenance-evacuation");
    let r = both(&s);
    let v = run(&r, BalancerKind::Vinfra);
    let evacuations: Vec<_> = v.moves.iter().filter(|m| m.reason == "evacuate").collect();
    assert!(!evacuations.is_empty());
    assert!(evacuations.iter().all(|m| m.from == "h1"));
    let targets: BTreeSet<&str> = evacuations.iter().map(|m| m.to.as_str()).collect();
    assert!(targets.len() >= 3, "piled onto {targets:?}");
    let last = v.steps.last().expect("steps");
    assert_eq!(last.vms_on_maintenance, 0);
    // The must-affinity pair moved together and was never broken.
    assert_eq!(v.summary.max_must_violations, 0);
    let app = v.moves.iter().find(|m| m.vm == "app").expect("app moved");
    let cache = v
        .moves
        .iter()
        .find(|m| m.vm == "cache")
        .expect("cache moved");
    assert_eq!((app.to.as_str(), app.step), (cache.to.as_str(), cache.step));
    // The greedy balancer knows nothing of maintenance.
    let g = run(&r, BalancerKind::Greedy);
    assert!(g.summary.final_vms_on_maintenance > 0);
}

#[test]
fn chatty_pairs_end_with_less_cross_host_traffic() {
    let r = both(&load("chatty-pairs"));
    let v = run(&r, BalancerKind::Vinfra);
    let first = v.steps.first().expect("steps").cross_host_traffic;
    let last = v.summary.final_cross_host_traffic;
    assert!(last < first, "{first} → {last}");
    assert!(v.moves.iter().any(|m| m.reason == "reduce-traffic"));
    assert!(
        last < run(&r, BalancerKind::Greedy)
            .summary
            .final_cross_host_traffic
    );
}

#[test]
fn rules_heavy_repairs_rules_the_greedy_balancer_breaks() {
    let r = both(&load("rules-heavy"));
    let v = run(&r, BalancerKind::Vinfra);
    assert!(v.steps[0].must_violations > 0 && v.steps[0].should_violations > 0);
    assert_eq!(v.summary.final_must_violations, 0);
    assert_eq!(v.summary.final_should_violations, 0);
    assert!(v.moves.iter().any(|m| m.reason == "fix-must-rule"));
    let g = run(&r, BalancerKind::Greedy);
    assert!(g.summary.final_must_violations > 0);
}

/// Checks that `text` is well-formed XML as far as tags go: every element closed in order,
/// quoted attributes, nothing after the root.
fn check_xml(text: &str) -> Result<usize, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = text.trim();
    let mut closed_root = false;
    while let Some(start) = rest.find('<') {
        let between = &rest[..start];
        if closed_root && !between.trim().is_empty() {
            return Err("text after the root element".into());
        }
        if between.contains('>') {
            return Err(format!("stray '>' in {between:?}"));
        }
        let end = rest[start..].find('>').ok_or("unterminated tag")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') {
            continue;
        }
        if tag.matches('"').count() & 1 == 1 || tag.contains('<') {
            return Err(format!("bad tag <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            closed_root = stack.is_empty();
            continue;
        }
        if closed_root {
            return Err("second root element".into());
        }
        elements += 1;
        let name: String = tag
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        if name.is_empty() {
            return Err(format!("tag without a name: <{tag}>"));
        }
        if !tag.ends_with('/') {
            stack.push(name);
        } else {
            closed_root = stack.is_empty();
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    if !rest.trim().is_empty() {
        return Err("text after the root element".into());
    }
    Ok(elements)
}

#[test]
fn the_xml_check_catches_broken_documents() {
    assert!(check_xml("<svg><g><line/></g></svg>").is_ok());
    assert!(check_xml("<svg><g></svg>").is_err());
    assert!(check_xml("<svg><g></g>").is_err());
    assert!(check_xml("<svg a=\"1></svg>").is_err());
    assert!(check_xml("<svg></svg><svg></svg>").is_err());
}

#[test]
fn plot_is_well_formed_svg_with_a_line_per_balancer_and_chart() {
    for name in SHIPPED {
        let r = both(&load(name));
        let svg = r.plot_svg();
        let elements = check_xml(&svg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(elements > 50, "{name}: {elements} elements");
        assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        // Six charts, one line per balancer each, plus the axes.
        let lines = svg.matches("<polyline").count();
        assert_eq!(lines, 6 * (1 + r.runs.len()), "{name}");
        // Every coordinate is a finite number.
        for pts in svg.split("points=\"").skip(1) {
            let pts = pts.split('"').next().unwrap_or("");
            for n in pts.split([' ', ',']) {
                let v: f64 = n.parse().unwrap_or(f64::NAN);
                assert!(v.is_finite(), "{name}: {n:?} in {pts}");
            }
        }
    }
}

#[test]
fn files_are_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = load("chatty-pairs");
    let r = both(&s);
    let out = dir.path().join("out");
    r.write(&out).expect("written");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 2 * s.steps as usize);
    assert!(csv.starts_with("balancer,step,minute,"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).expect("json"))
            .expect("valid JSON");
    assert_eq!(json["runs"][0]["balancer"], "vinfra");
    assert_eq!(json["runs"][1]["balancer"], "greedy");
    assert_eq!(
        json["runs"][0]["steps"].as_array().map(Vec::len),
        Some(s.steps as usize)
    );
    let moves: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("moves.json")).expect("moves"))
            .expect("valid JSON");
    let first = &moves[0];
    assert_eq!(first["balancer"], "vinfra");
    assert!(first["why"].as_str().is_some_and(|w| !w.is_empty()));
    assert!(out.join("plot.svg").exists());
}
