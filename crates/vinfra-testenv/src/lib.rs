//! What a test needs from its machine, and the one rule for when it is missing.
//!
//! A test that needs root, a program (QEMU, `ethtool`, …) or a file (the guest image) states it
//! first:
//!
//! ```no_run
//! if !vinfra_testenv::Needs::new().root().program("ethtool").met() {
//!     return;
//! }
//! ```
//!
//! When everything is there, [`Needs::met`] is true and the test runs. When something is missing:
//! - under CI (`CI` set to anything non-empty, as CI sets `CI=true`) the test fails, naming what is
//!   missing: no test passes there without running;
//! - elsewhere the test is skipped: one line starting with `SKIPPED:` goes to standard error (past
//!   the test harness's capture, so `scripts/test.sh` sees it and counts the test as skipped, not
//!   passed) and `met` is false.
//!
//! A missing program is named with its Debian package, from the map in `scripts/common.sh` (the
//! one the install scripts use).
//!
//! Tests and benchmarks that make network namespaces add them with [`add_netns`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `text` (a daemon's log) without its terminal colour sequences (`ESC [ … m`).
pub fn plain_log(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether this run is under CI: `CI` set to a non-empty value.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The prerequisites of one test; build with the methods, end with [`Needs::met`].
#[derive(Debug, Default)]
#[must_use = "a test runs only when `met()` says so"]
pub struct Needs {
    missing: Vec<String>,
    name: Option<String>,
}

impl Needs {
    /// Nothing needed yet.
    pub fn new() -> Needs {
        Needs::default()
    }

    /// The name the `SKIPPED:` line and the failure give; by default the test's (its thread's).
    pub fn named(mut self, name: &str) -> Needs {
        self.name = Some(name.to_owned());
        self
    }

    /// The test runs as root (namespaces, taps, the lab).
    pub fn root(mut self) -> Needs {
        if !nix::unistd::geteuid().is_root() {
            self.missing.push("root (run as root)".into());
        }
        self
    }

    /// `program` is on `PATH` (or, given with a `/`, exists).
    pub fn program(mut self, program: &str) -> Needs {
        if find_program(program).is_none() {
            self.missing.push(not_installed(program));
        }
        self
    }

    /// `path` exists; `what` says what it is and how it is made.
    pub fn file(mut self, path: impl AsRef<Path>, what: &str) -> Needs {
        let path = path.as_ref();
        if !path.exists() {
            self.missing
                .push(format!("{} is missing: {what}", path.display()));
        }
        self
    }

    /// True when nothing is missing. Otherwise fails the test under CI, or prints one
    /// `SKIPPED: <test>: <what is missing>` line on standard error and returns false.
    #[track_caller]
    pub fn met(self) -> bool {
        let thread = std::thread::current();
        let test = match &self.name {
            Some(name) => name.clone(),
            None => thread
                .name()
                .filter(|n| *n != "main")
                .unwrap_or("test")
                .to_owned(),
        };
        match self.outcome(&test, under_ci()) {
            Outcome::Run => true,
            Outcome::Fail(why) => panic!("{why}"),
            Outcome::Skip(line) => {
                // Straight to the file descriptor: the harness captures `eprintln!`. The newline
                // first starts a line after the harness's "test NAME ... ".
                let _ = writeln!(std::io::stderr(), "\n{line}");
                false
            }
        }
    }

    fn outcome(&self, test: &str, ci: bool) -> Outcome {
        if self.missing.is_empty() {
            return Outcome::Run;
        }
        let what = self.missing.join("; ");
        if ci {
            Outcome::Fail(format!("{test} cannot run under CI: {what}"))
        } else {
            Outcome::Skip(format!("SKIPPED: {test}: {what}"))
        }
    }
}

/// What [`Needs::met`] does.
#[derive(Debug, PartialEq)]
enum Outcome {
    Run,
    Skip(String),
    Fail(String),
}

/// The lock file of [`add_netns`]; the lab (`vinfra_lab::net`) takes the same one: keep the
/// paths equal.
const NETNS_LOCK: &str = "/run/vinfra-netns.lock";

/// Runs `ip netns add name` holding an exclusive `flock` on `/run/vinfra-netns.lock`; panics
/// with its output when it fails. On its first use iproute2 makes `/run/netns` a shared mount
/// (bind-mounting it on itself when it is not a mount point yet); two `ip netns add` doing that
/// at once (tests in parallel, a lab beside them) can stack two such mounts, and the namespace
/// one of them made is then hidden under the other: `ip -n name ...` fails with "setting the
/// network namespace ... failed: Invalid argument".
pub fn add_netns(name: &str) {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(NETNS_LOCK)
        .unwrap_or_else(|e| panic!("cannot open {NETNS_LOCK}: {e}"));
    let _lock = loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => break lock,
            Err((again, Errno::EINTR)) => file = again,
            Err((_, errno)) => panic!("cannot lock {NETNS_LOCK}: {errno}"),
        }
    };
    let out = Command::new("ip")
        .args(["netns", "add", name])
        .output()
        .unwrap_or_else(|e| panic!("running ip netns add {name}: {e}"));
    assert!(
        out.status.success(),
        "ip netns add {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// "`program` is not installed (…)", naming its package.
fn not_installed(program: &str) -> String {
    match package_of(program) {
        Some(pkg) => format!(
            "{program} is not installed (Debian package {pkg}, which scripts/test.sh installs as root)"
        ),
        None => format!("{program} is not installed (no Debian package for it in scripts/common.sh)"),
    }
}

/// Where `program` is: itself when it names a path, else the first match on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The Debian package that installs `program`, from `VINFRA_PROGRAM_PACKAGE` in
/// `scripts/common.sh` (`[program]=package`).
pub fn package_of(program: &str) -> Option<String> {
    let common = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/common.sh");
    let text = std::fs::read_to_string(common).ok()?;
    let key = format!("[{program}]=");
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(&key)?;
        rest.split_whitespace().next().map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_come_from_the_install_map() {
        assert_eq!(package_of("ethtool").as_deref(), Some("ethtool"));
        assert_eq!(
            package_of("qemu-system-x86_64").as_deref(),
            Some("qemu-system-x86")
        );
        assert_eq!(package_of("no-such-program"), None);
    }

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("vinfra-no-such-program").is_none());
        assert!(find_program("/nonexistent/sh").is_none());
    }

    #[test]
    fn nothing_needed_runs_everywhere() {
        assert_eq!(Needs::new().outcome("t", false), Outcome::Run);
        assert_eq!(Needs::new().outcome("t", true), Outcome::Run);
        assert!(Needs::new().met());
    }

    #[test]
    fn a_missing_need_skips_outside_ci_and_fails_under_it() {
        let needs = Needs::new()
            .program("ethtool-that-is-not-there")
            .file("/nonexistent/vmlinuz", "the guest image");
        assert_eq!(
            needs.outcome("t", false),
            Outcome::Skip(
                "SKIPPED: t: ethtool-that-is-not-there is not installed (no Debian package for \
                 it in scripts/common.sh); /nonexistent/vmlinuz is missing: the guest image"
                    .into()
            )
        );
        let Outcome::Fail(why) = needs.outcome("t", true) else {
            panic!("under CI a missing need fails the test");
        };
        assert!(
            why.starts_with("t cannot run under CI: ethtool-that-is-not-there"),
            "{why}"
        );
    }

    #[test]
    fn a_log_loses_its_colours_only() {
        assert_eq!(
            plain_log(
                "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m to\u{1b}[2m=\u{1b}[0mSome(x)"
            ),
            "2026  INFO to=Some(x)"
        );
    }

    #[test]
    fn a_missing_program_is_named_with_its_package() {
        assert_eq!(
            not_installed("ethtool"),
            "ethtool is not installed (Debian package ethtool, which scripts/test.sh installs as root)"
        );
    }
}
