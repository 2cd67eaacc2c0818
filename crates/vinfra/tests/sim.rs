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
