//! `vinfra router …` as a user runs it: the built binary against a console started in this
//! process (real store, real TLS; no hosts, no root): what each command prints, and that a
//! refusal is one line on stderr with exit code 2.

use std::process::Command;

use vinfra_console::{ConsoleConfig, RunningConsole};

/// A console on 127.0.0.1 with its data in `dir`, on a runtime of its own.
fn console(dir: &std::path::Path) -> (tokio::runtime::Runtime, RunningConsole) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = ConsoleConfig::new(dir.to_path_buf());
    config.api_listen = "127.0.0.1:0".parse().expect("address");
    config.agent_listen = "127.0.0.1:0".parse().expect("address");
    config.token_file = Some(dir.join("token"));
    let running = rt
        .block_on(vinfra_console::start(config))
        .expect("console starts");
    (rt, running)
}

/// What one `vinfra` run gave: exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `vinfra ARGS` against the console.
fn vinfra(c: &RunningConsole, dir: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vinfra"))
        .args(args)
        .env("VINFRA_URL", format!("https://{}", c.api_addr))
        .env("VINFRA_TOKEN", c.api_token.as_deref().expect("a token"))
        .env(
            "VINFRA_CA",
            dir.join(vinfra_client::CONSOLE_CA_FILE).as_os_str(),
        )
        .env_remove("VINFRA_CONFIG")
        .output()
        .expect("run vinfra");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `vinfra ARGS`, which must succeed; returns its stdout.
fn ok(c: &RunningConsole, dir: &std::path::Path, args: &[&str]) -> String {
    let r = vinfra(c, dir, args);
    assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

/// Runs `vinfra ARGS`, which must fail with exit code 2 and one line on stderr containing
/// `why`.
fn refused(c: &RunningConsole, dir: &std::path::Path, args: &[&str], why: &str) {
    let r = vinfra(c, dir, args);
    assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    assert!(r.stderr.starts_with("vinfra: "), "{args:?}: {}", r.stderr);
    assert!(
        r.stderr.contains(why),
        "{args:?}: {} lacks {why:?}",
        r.stderr
    );
}

/// The whitespace-separated cells of the first line of `text` starting with `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.trim_start().starts_with(first))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

#[test]
fn routers_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (rt, c) = console(dir.path());
    let d = dir.path();

    ok(
        &c,
        d,
        &[
            "net",
            "create",
            "blue",
            "--overlay",
            "--subnet",
            "10.80.1.0/24",
        ],
    );
    ok(
        &c,
        d,
        &[
            "net",
            "create",
            "red",
            "--overlay",
            "--subnet",
            "10.80.2.0/24",
            "--gateway",
            "10.80.2.254",
        ],
    );
    assert_eq!(ok(&c, d, &["router", "list"]).trim(), "no routers");
    assert_eq!(
        ok(&c, d, &["router", "create", "r1"]).trim(),
        "router r1 created (number 1)"
    );
    refused(
        &c,
        d,
        &["router", "create", "r1"],
        "a router named 'r1' already exists",
    );
    refused(&c, d, &["router", "create", "R1"], "bad router name: ");

    assert_eq!(
        ok(&c, d, &["router", "attach", "r1", "blue"]).trim(),
        "network blue attached to router r1: gateway 10.80.1.1, MAC 02:76:72:00:00:01"
    );
    refused(
        &c,
        d,
        &["router", "attach", "r1", "red", "--gateway", "10.80.2.1"],
        "network 'red' has the gateway 10.80.2.254, not 10.80.2.1",
    );
    refused(
        &c,
        d,
        &["router", "attach", "r1", "red", "--gateway", "10.80.2"],
        "invalid value '10.80.2'",
    );
    assert!(ok(
        &c,
        d,
        &["router", "attach", "r1", "red", "--gateway", "10.80.2.254"]
    )
    .contains("gateway 10.80.2.254, MAC 02:76:72:00:00:02"));
    refused(
        &c,
        d,
        &["router", "attach", "r1", "nope"],
        "network 'nope' not found",
    );

    assert_eq!(
        ok(
            &c,
            d,
            &[
                "router",
                "route",
                "add",
                "r1",
                "10.90.0.0/16",
                "--via",
                "10.80.1.10"
            ]
        )
        .trim(),
        "route 10.90.0.0/16 via 10.80.1.10 added to router r1"
    );
    refused(
        &c,
        d,
        &[
            "router",
            "route",
            "add",
            "r1",
            "10.90.0.1/16",
            "--via",
            "10.80.1.10",
        ],
        "prefix '10.90.0.1/16' has host bits set; the network address is 10.90.0.0/16",
    );
    refused(
        &c,
        d,
        &[
            "router",
            "route",
            "add",
            "r1",
            "10.91.0.0/16",
            "--via",
            "10.99.0.1",
        ],
        "next hop 10.99.0.1 is not an address of the subnets of router 'r1'",
    );

    let text = ok(&c, d, &["router", "show", "r1"]);
    assert_eq!(
        row(&text, "blue "),
        ["blue", "10.80.1.0/24", "10.80.1.1", "02:76:72:00:00:01"],
        "{text}"
    );
    assert_eq!(
        row(&text, "red "),
        ["red", "10.80.2.0/24", "10.80.2.254", "02:76:72:00:00:02"],
        "{text}"
    );
    assert_eq!(
        row(&text, "10.90.0.0/16"),
        ["10.90.0.0/16", "10.80.1.10"],
        "{text}"
    );
    let list = ok(&c, d, &["router", "list"]);
    assert_eq!(
        row(&list, "r1 "),
        ["r1", "1", "blue,", "red", "1", "-", "-"],
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&c, d, &["-o", "json", "router", "show", "r1"])).expect("JSON");
    assert_eq!(json["routes"][0]["via"], "10.80.1.10");

    refused(
        &c,
        d,
        &["router", "detach", "r1", "blue"],
        "router 'r1' has route via network 'blue' (10.90.0.0/16 via 10.80.1.10); delete it first",
    );
    refused(
        &c,
        d,
        &["router", "delete", "r1"],
        "router 'r1' has networks attached (blue, red); detach them first",
    );
    assert_eq!(
        ok(&c, d, &["router", "route", "del", "r1", "10.90.0.0/16"]).trim(),
        "route to 10.90.0.0/16 deleted from router r1"
    );
    refused(
        &c,
        d,
        &["router", "route", "del", "r1", "10.90.0.0/16"],
        "router 'r1' has no route to 10.90.0.0/16",
    );
    refused(
        &c,
        d,
        &["router", "route", "del", "r1", "10.90.0.0"],
        "prefix '10.90.0.0' is not an IPv4 prefix",
    );
    for n in ["blue", "red"] {
        assert_eq!(
            ok(&c, d, &["router", "detach", "r1", n]).trim(),
            format!("network {n} detached from router r1")
        );
    }
    assert_eq!(
        ok(&c, d, &["router", "delete", "r1"]).trim(),
        "router r1 deleted"
    );
    refused(&c, d, &["router", "show", "r1"], "router 'r1' not found");

    rt.block_on(c.shutdown()).expect("console stops");
}
