//! `vinfra sim` as a user runs it: the built binary on a shipped scenario, no root, no console.

use std::path::PathBuf;
use std::process::{Command, Output};

fn vinfra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vinfra"))
        .args(args)
        .env_remove("VINFRA_URL")
        .env_remove("VINFRA_TOKEN")
        .output()
        .expect("run vinfra")
}

fn scenario(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn sim_writes_metrics_moves_and_plot_and_prints_a_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("out");
    let out = vinfra(&[
        "sim",
        &scenario("maintenance-evacuation.toml"),
        "--out",
        out_dir.to_str().expect("utf-8 path"),
        "--steps",
        "10",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("maintenance-evacuation: 10 steps of 10 min"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("vinfra ") || l.starts_with("greedy "))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for f in ["metrics.csv", "metrics.json", "moves.json", "plot.svg"] {
        let len = std::fs::metadata(out_dir.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 0, "{f} missing or empty");
    }
    let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 2 * 10);

    // One balancer, a seed override, JSON summary.
    let out = vinfra(&[
        "--output",
        "json",
        "sim",
        &scenario("hot-spot.toml"),
        "--balancer",
        "greedy",
        "--seed",
        "9",
        "--out",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary.as_array().map(Vec::len), Some(1));
    assert_eq!(summary[0]["balancer"], "greedy");
    let metrics = std::fs::read_to_string(out_dir.join("metrics.json")).expect("json");
    assert!(metrics.contains("\"seed\": 9"));
}

#[test]
fn a_bad_scenario_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "steps = 3\nstep_minutes = 10\nvms = []\n[[hosts]]\nname = \"h1\"\ncores = 4\nmemory_gib = -1\n",
    )
    .expect("write");
    let out = vinfra(&[
        "sim",
        bad.to_str().expect("utf-8 path"),
        "--out",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("vinfra: "), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("hosts[0].memory_gib"), "{stderr}");
    assert!(!dir.path().join("metrics.csv").exists());

    let out = vinfra(&["sim", "/nonexistent/none.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/none.toml"));
}

#[test]
fn host_failures_restart_ha_vms_and_failover_json_says_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("out");
    let out = vinfra(&[
        "sim",
        &scenario("ha-rack-failure.toml"),
        "--balancer",
        "vinfra",
        "--out",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("host failures"), "{stdout}");
    assert!(stdout.contains("failover.json"), "{stdout}");
    let text = std::fs::read_to_string(out_dir.join("failover.json")).expect("failover.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc.as_array().map(Vec::len), Some(1));
    assert_eq!(doc[0]["balancer"], "vinfra");
    let failures = doc[0]["failures"].as_array().expect("failures");
    let hosts: Vec<&str> = failures.iter().filter_map(|f| f["host"].as_str()).collect();
    assert_eq!(hosts, ["r1-1", "r1-2"]);
    assert!(failures.iter().all(|f| f["step"] == 4));
    // Every HA VM of the rack is placed on a surviving host or listed with the reason.
    let mut placed = Vec::new();
    for f in failures {
        for r in f["restarts"].as_array().expect("restarts") {
            let host = r["host"].as_str().expect("host");
            assert!(host.starts_with("h-"), "{r}");
            placed.push(r["vm"].as_str().expect("vm").to_string());
        }
    }
    placed.sort();
    let mut want = vec!["web-1", "web-2", "web-3", "web-4"];
    // db-1 and app started on r1-1 unless the balancer moved them off before the failure.
    let r11 = &failures[0];
    for vm in ["app", "db-1"] {
        let on_rack = r11["restarts"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|r| r["vm"] == vm));
        if on_rack {
            want.push(vm);
        }
    }
    want.sort();
    assert_eq!(placed, want);
    let unplaced = failures[1]["unplaced"].as_array().expect("unplaced");
    assert_eq!(unplaced.len(), 1);
    assert_eq!(unplaced[0]["vm"], "big");
    assert!(unplaced[0]["why"].as_str().is_some_and(|w| w
        .starts_with("no host can take VM 'big'")
        && w.contains("short of capacity")));
    assert_eq!(failures[1]["predicted"]["holds"], false);
    assert!(r11["stopped"].as_array().is_some_and(|s| !s.is_empty()
        && s.iter()
            .all(|v| v.as_str().is_some_and(|v| v.starts_with("batch-")))));
    assert_eq!(doc[0]["retries"][0]["restarts"][0]["vm"], "big");
    // The reserve's verdicts and the refused arrivals are in metrics.json.
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("metrics.json")).expect("metrics.json"),
    )
    .expect("valid JSON");
    let adm = &metrics["runs"][0]["admission"];
    let whens: Vec<&str> = adm["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter_map(|v| v["when"].as_str())
        .collect();
    assert_eq!(whens, ["start", "before-failure", "end"]);
    assert!(adm["refused"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("would break the HA reserve")));
    assert_eq!(metrics["runs"][0]["summary"]["host_failures"], 2);
}
