//! `vinfra token create|list|revoke|rotate` and `vinfra events` against a console started in
//! this process (real store, real TLS; no hosts, no root needed): a token is created with a
//! role and an expiry and its secret printed once, listed without it, refused what its role
//! does not allow, revoked; bad input (and every refusal of the console, 4xx) is one line on
//! stderr and exit code 2, and creates nothing; the event history says which token made each change.

use std::path::Path;
use std::process::{Command, Output};

use vinfra_console::{ConsoleConfig, RunningConsole};

const VINFRA: &str = env!("CARGO_BIN_EXE_vinfra");

/// A console on 127.0.0.1 with TLS, and what the CLI needs to reach it.
struct Console {
    rt: tokio::runtime::Runtime,
    running: Option<RunningConsole>,
    url: String,
    ca_file: std::path::PathBuf,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Console {
    fn start() -> Console {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ConsoleConfig::new(dir.path().join("console"));
        config.api_listen = "127.0.0.1:0".parse().unwrap();
        config.agent_listen = "127.0.0.1:0".parse().unwrap();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let running = rt
            .block_on(vinfra_console::start(config))
            .expect("console starts");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &running.ca_pem).unwrap();
        Console {
            url: format!("https://127.0.0.1:{}", running.api_addr.port()),
            admin: running.api_token.clone().expect("the first token"),
            running: Some(running),
            rt,
            ca_file,
            _dir: dir,
        }
    }

    /// Runs `vinfra args` with `token`, a clean environment and an empty home.
    fn vinfra(&self, token: &str, args: &[&str]) -> Output {
        let home = tempfile::tempdir().expect("temp dir");
        run(home.path(), &self.url, token, &self.ca_file, args)
    }

    /// Runs `vinfra args` as the admin; asserts it succeeded; returns its stdout.
    fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.vinfra(token, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.rt.block_on(r.shutdown());
        }
    }
}

fn run(home: &Path, url: &str, token: &str, ca: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(VINFRA);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("VINFRA_CONFIG")
        .env("VINFRA_URL", url)
        .env("VINFRA_TOKEN", token)
        .env("VINFRA_CA", ca);
    cmd.output().expect("run vinfra")
}

/// One line on stderr, `vinfra: …` containing `contains`, exit code `code`.
fn assert_one_line_error(out: &Output, code: i32, contains: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("vinfra: "), "{stderr}");
    assert!(
        stderr.contains(contains),
        "expected '{contains}' in: {stderr}"
    );
}

/// The token names `vinfra --output json token list` shows, with their role and state.
fn listed(c: &Console) -> Vec<(String, String, String)> {
    let text = c.ok(&c.admin, &["--output", "json", "token", "list"]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["role"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn tokens_through_the_cli() {
    let c = Console::start();

    // Create: the secret first, printed once.
    let text = c.ok(
        &c.admin,
        &[
            "token",
            "create",
            "ci",
            "--role",
            "viewer",
            "--expires",
            "30d",
        ],
    );
    let secret = text.lines().next().unwrap().trim().to_string();
    assert!(secret.starts_with("vinfra_"), "{text}");
    assert!(text.contains("role viewer"), "{text}");
    let text = c.ok(&c.admin, &["token", "list"]);
    assert!(!text.contains(&secret), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("ci "))
        .unwrap_or_else(|| panic!("no ci row: {text}"));
    assert!(row.contains("viewer") && row.contains("active"), "{row}");

    // The viewer reads, and is refused what changes anything.
    c.ok(&secret, &["vm", "list"]);
    let out = c.vinfra(&secret, &["token", "create", "mine", "--role", "admin"]);
    assert_one_line_error(&out, 2, "role viewer");

    // Bad input: one line, nothing created.
    let before = listed(&c);
    for (args, code, says) in [
        (
            &["token", "create", "x", "--role", "root"][..],
            2,
            "unknown role 'root'",
        ),
        (
            &[
                "token",
                "create",
                "x",
                "--role",
                "viewer",
                "--expires",
                "soon",
            ][..],
            2,
            "soon",
        ),
        (
            &[
                "token",
                "create",
                "x",
                "--role",
                "viewer",
                "--expires",
                "20y",
            ][..],
            2,
            "expiry",
        ),
        (
            &["token", "create", "Bad_Name", "--role", "viewer"][..],
            2,
            "token",
        ),
        (
            &["token", "create", "ci", "--role", "viewer"][..],
            2,
            "already exists",
        ),
        (&["token", "revoke", "nope"][..], 2, "nope"),
        (
            &["token", "revoke", "bootstrap"][..],
            2,
            "last active admin",
        ),
    ] {
        let out = c.vinfra(&c.admin, args);
        assert_one_line_error(&out, code, says);
    }
    assert_eq!(listed(&c), before);

    // Revoke: refused from then on, listed as revoked.
    let text = c.ok(&c.admin, &["token", "revoke", "ci"]);
    assert_eq!(text.trim(), "token ci revoked");
    let out = c.vinfra(&secret, &["vm", "list"]);
    assert_one_line_error(&out, 2, "revoked");
    assert!(listed(&c).contains(&("ci".into(), "viewer".into(), "revoked".into())));

    // The history says who did it.
    let text = c.ok(&c.admin, &["events"]);
    let line = text
        .lines()
        .find(|l| l.contains(" ci ") && l.contains("revoked"))
        .unwrap_or_else(|| panic!("no revocation of ci in:\n{text}"));
    assert!(line.contains("token:bootstrap"), "{line}");
    assert!(text.lines().next().unwrap().contains("BY"), "{text}");
}
