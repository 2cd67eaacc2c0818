//! The HA commands of the command line against a console of their own (`vinfra console` on
//! 127.0.0.1, no hosts, no root needed): `vinfra ha show|set` reads and writes the cluster's HA
//! settings without touching the others; `vinfra vm set`, `vinfra vm create --ha…`,
//! `vinfra host set --fence-command` and `vinfra host fence` refuse bad input with one line on
//! stderr and exit code 2, and change nothing.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_one_line_error, vinfra, VINFRA};
use vinfra_types::api::ClusterSettings;

/// A `vinfra console` run for one test; killed when dropped.
struct OwnConsole {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Drop for OwnConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn tail(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl OwnConsole {
    /// Starts `vinfra console` in a temporary directory; waits for its API token.
    fn start() -> OwnConsole {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("console.log")).expect("log file");
        let child = Command::new(VINFRA)
            .args(["console", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--agent-listen", "127.0.0.1:0", "--token-file"])
            .arg(dir.path().join("token"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vinfra console");
        let mut c = OwnConsole {
            child,
            dir,
            url: format!("https://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!(
                    "the console ended ({status}): {}",
                    tail(&c.dir.path().join("console.log"))
                );
            }
            if !c.token().is_empty() && run(&c, &["ha", "show"]).status.success() {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "the console's API never answered: {}",
                tail(&c.dir.path().join("console.log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn token(&self) -> String {
        tail(&self.dir.path().join("token")).trim().to_string()
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("data/pki/ca.pem")
    }

    /// `VINFRA_URL`, `VINFRA_TOKEN` and `VINFRA_CA` of this console.
    fn env_refs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VINFRA_URL", self.url.clone()),
            ("VINFRA_TOKEN", self.token()),
            ("VINFRA_CA", self.ca().display().to_string()),
        ]
    }
}

/// Runs `vinfra args` with the console's connection settings.
fn run(c: &OwnConsole, args: &[&str]) -> std::process::Output {
    let env = c.env_refs();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vinfra(args, &refs)
}

/// Runs `vinfra args`, asserts it succeeded; returns its stdout.
fn ok(c: &OwnConsole, args: &[&str]) -> String {
    let out = run(c, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn settings(c: &OwnConsole) -> ClusterSettings {
    serde_json::from_str(&ok(c, &["--output", "json", "settings", "show"])).expect("JSON")
}

/// The value after `key:` in `show` output.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .trim()
        .to_string()
}

#[test]
fn ha_commands_read_modify_write_and_refuse_bad_input() {
    let c = OwnConsole::start();

    let shown = ok(&c, &["ha", "show"]);
    assert_eq!(field(&shown, "Tolerated host failures"), "1");
    assert_eq!(field(&shown, "Isolation response"), "keep-running");
    assert_eq!(
        field(&shown, "Fence isolated hosts"),
        "off (would be after 30 s)"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&c, &["--output", "json", "ha", "show"])).unwrap();
    assert_eq!(json["settings"]["tolerate_host_failures"], 1);
    // The host table and the reserve follow the settings (no hosts, no HA VM here).
    assert!(shown.contains("No hosts."), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l == "Reserve: not enforced (no HA VM runs)"),
        "{shown}"
    );
    assert_eq!(json["hosts"], serde_json::json!([]));
    assert_eq!(json["reserve"]["enforced"], false);
    assert_eq!(json["reserve"]["tolerate"], 1);

    // `ha set` changes what it is given and nothing else; `settings set` leaves HA alone.
    ok(&c, &["settings", "set", "--cpu-ratio", "3"]);
    let set = ok(
        &c,
        &[
            "ha",
            "set",
            "--tolerate-host-failures",
            "2",
            "--isolation-response",
            "power-off",
            "--fence-isolated",
            "on",
            "--isolation-fence-after",
            "1m",
        ],
    );
    assert_eq!(field(&set, "Tolerated host failures"), "2");
    assert_eq!(field(&set, "Fence isolated hosts"), "on, after 60 s");
    let s = settings(&c);
    assert_eq!(s.ratios.cpu, 3.0, "the other settings stay");
    assert_eq!(
        (
            s.ha.tolerate_host_failures,
            s.ha.isolation_response.as_str(),
            s.ha.fence_isolated,
            s.ha.isolation_fence_after_s
        ),
        (2, "power-off", true, 60)
    );
    ok(&c, &["ha", "set", "--fence-isolated", "off"]);
    ok(&c, &["settings", "set", "--memory-ratio", "1.5"]);
    let s = settings(&c);
    assert_eq!(
        (
            s.ha.tolerate_host_failures,
            s.ha.fence_isolated,
            s.ratios.cpu
        ),
        (2, false, 3.0)
    );

    // Bad input: one line, exit 2, nothing changed.
    let before = settings(&c);
    let long = format!("--fence-command={}", "a".repeat(4097));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ha", "set"], "nothing to change"),
        (
            vec!["ha", "set", "--tolerate-host-failures", "33"],
            "between 0 and 32",
        ),
        (
            vec!["ha", "set", "--tolerate-host-failures", "-1"],
            "tolerate-host-failures",
        ),
        (
            vec!["ha", "set", "--isolation-response", "reboot"],
            "reboot",
        ),
        (vec!["ha", "set", "--fence-isolated", "maybe"], "maybe"),
        (
            vec!["ha", "set", "--isolation-fence-after", "4s"],
            "between 5s and 3600s",
        ),
        (vec!["vm", "set", "web"], "nothing to change"),
        (vec!["vm", "set", "web", "--ha", "maybe"], "maybe"),
        (
            vec!["vm", "set", "web", "--ha-priority", "urgent"],
            "urgent",
        ),
        (
            vec!["vm", "set", "web", "--ha-start-after", "Bad_Name"],
            "Bad_Name",
        ),
        (vec!["vm", "set", "Bad_Name", "--ha", "on"], "bad VM name"),
        (
            vec!["vm", "set", "ghost", "--ha", "on"],
            "VM 'ghost' not found",
        ),
        (
            vec![
                "vm",
                "create",
                "web",
                "--vcpus",
                "1",
                "--memory",
                "128M",
                "--kernel",
                "k",
                "--ha-start-after",
                "Bad_Name",
            ],
            "bad VM name",
        ),
        (
            vec![
                "vm",
                "create",
                "web",
                "--vcpus",
                "1",
                "--memory",
                "128M",
                "--kernel",
                "k",
                "--ha-priority",
                "urgent",
            ],
            "urgent",
        ),
        (
            vec!["host", "set", "ghost", "--fence-command", "true"],
            "host 'ghost' not found",
        ),
        (
            vec![
                "host",
                "set",
                "h1",
                "--fence-command",
                "true",
                "--no-fence-command",
            ],
            "--no-fence-command",
        ),
        (vec!["host", "set", "h1", &long], "4097 bytes"),
        (vec!["host", "set", "h1", "--fence-command", " "], "empty"),
        (vec!["host", "fence", "ghost"], "host 'ghost' not found"),
        (vec!["host", "fence", "ghost", "--force"], "not found"),
        (vec!["host", "fence", "Bad_Name"], "bad host name"),
    ];
    for (args, says) in &cases {
        let out = run(&c, args);
        assert_one_line_error(&out, 2, says);
    }
    assert_eq!(settings(&c), before);
    let vms = ok(&c, &["--output", "json", "vm", "list"]);
    assert_eq!(vms.trim(), "[]", "no VM was created");
}
