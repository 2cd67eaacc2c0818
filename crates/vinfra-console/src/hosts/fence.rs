//! A host's out-of-band fence: its fence command (the role an IPMI or Redfish power-off plays in
//! a data centre), run by the console when the host must be off for sure before its VMs run
//! elsewhere.
//!
//! [`Console::fence_host`] is the one way to fence a host: the operator's
//! `POST /api/v1/hosts/{name}/fence` ([`fence`]) and the HA controller both call it. It runs
//! the host's command with `sh -c` on a blocking thread (never on the async runtime), in a
//! process group of its own, with `VINFRA_HOST=<name>` in its environment, standard input from
//! `/dev/null` and standard output and error captured together (the last
//! [`OUTPUT_TAIL`] bytes kept). Exit 0 means the host is off: its record gets `fenced_at`.
//! Any other exit, a signal, or running longer than the console's fence timeout (60 s by
//! default, `ConsoleConfig::fence_timeout`; the whole process group is then killed) is a failed
//! fence. Every fence is in the event log: its start, and its end with how long it took and,
//! when it failed, the tail of its output. One fence per host runs at a time: the host counts
//! as being fenced until its command has ended.
//!
//! The command itself is never shown (not in the API, not in events, not in logs): it may hold
//! the credentials of the host's BMC.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use vinfra_types::ha::FenceOutcome;
use vinfra_types::HostStatus;

use crate::error::{Error, FenceCommandError};
use crate::state::records::now_s;
use crate::state::tasks;
use crate::state::{lock, Console};

/// How much of a fence command's output is kept: its last 2 KiB.
pub const OUTPUT_TAIL: usize = 2048;

/// How often a running fence command is checked for its exit.
const POLL: Duration = Duration::from_millis(20);

/// How long the output is still read after the command ended (a child it left in the
/// background may hold the pipe open).
const DRAIN: Duration = Duration::from_secs(1);

/// The API's fence (`POST /api/v1/hosts/{name}/fence[?force=true]`): refused while the host's
/// agent is connected unless `force` (fencing powers the host off), then
/// [`Console::fence_host`].
pub async fn fence(console: &Arc<Console>, host: &str, force: bool) -> Result<FenceOutcome, Error> {
    console.host(host)?;
    if !force && console.agents().status(host) == HostStatus::Connected {
        return Err(Error::FenceConnected {
            host: host.to_string(),
        });
    }
    if console.host(host)?.value.fence_command.is_none() {
        return Err(Error::NoFenceCommand {
            host: host.to_string(),
        });
    }
    let reason = if force {
        "asked by the operator, with force"
    } else {
        "asked by the operator"
    };
    // Another fence of the host under way is a refusal, not a task that fails.
    drop(console.inflight().fencing(host)?);
    tasks::say(format!("running the fence command of host {host}"));
    tasks::accepted();
    console.fence_host(host, reason).await
}

impl Console {
    /// Fences host `name` with its fence command (see the module doc); `reason` goes into the
    /// event that tells of the start. `Ok` only when the command exited 0 (the host's
    /// `fenced_at` is then set); [`Error::FenceFailed`] (with what the command did) when it
    /// exited otherwise or ran out of time, [`Error::FenceNotRun`] when it could not be run,
    /// [`Error::NoFenceCommand`] when the host has none, [`Error::FenceInProgress`] while
    /// another fence of the host runs, [`Error::NotFound`] for an unknown host. It does not
    /// check whether the host is connected: its caller decides that.
    ///
    /// The fence runs in a task of its own: a caller that stops waiting (an API client that
    /// goes away) does not stop it, nor its record in the host and the event log.
    pub async fn fence_host(
        self: &Arc<Self>,
        name: &str,
        reason: &str,
    ) -> Result<FenceOutcome, Error> {
        let console = self.clone();
        let (host, why) = (name.to_string(), reason.to_string());
        tokio::spawn(crate::state::events::inherit(async move {
            console.fence_now(&host, &why).await
        }))
        .await
        .unwrap_or_else(|e| Err(self.not_run(name, FenceCommandError::Thread(e))))
    }

    /// [`Console::fence_host`], in the caller's task.
    async fn fence_now(&self, name: &str, reason: &str) -> Result<FenceOutcome, Error> {
        let command =
            self.host(name)?
                .value
                .fence_command
                .ok_or_else(|| Error::NoFenceCommand {
                    host: name.to_string(),
                })?;
        let fencing = self.inflight().fencing(name)?;
        self.event(
            "host",
            name,
            format!("fencing host {name}: running its fence command ({reason})"),
        );
        let host = name.to_string();
        let timeout = self.fence_timeout();
        let ran = tokio::task::spawn_blocking(move || {
            let ran = run_fence_command(&host, &command, timeout);
            drop(fencing);
            ran
        })
        .await;
        let outcome = match ran {
            Ok(Ok(o)) => o,
            Ok(Err(source)) => return Err(self.not_run(name, source)),
            Err(e) => return Err(self.not_run(name, FenceCommandError::Thread(e))),
        };
        if outcome.fenced {
            if let Err(e) = self.update_host(name, |h| h.fenced_at = Some(now_s())) {
                // The fence worked; only the note of it is missing.
                tracing::warn!(
                    host = name,
                    "fenced_at not recorded: {}",
                    vinfra_types::error::Chain(&e)
                );
            }
            self.event(
                "host",
                name,
                format!(
                    "host {name} fenced ({}, {} ms)",
                    outcome.ending(),
                    outcome.duration_ms
                ),
            );
            return Ok(outcome);
        }
        let e = Error::FenceFailed {
            outcome: Box::new(outcome),
        };
        self.event("host", name, e.to_string());
        Err(e)
    }

    /// [`Error::FenceNotRun`], told in the event log.
    fn not_run(&self, name: &str, source: FenceCommandError) -> Error {
        let e = Error::FenceNotRun {
            host: name.to_string(),
            source,
        };
        self.event("host", name, vinfra_types::error::chain(&e));
        e
    }
}

/// The last [`OUTPUT_TAIL`] bytes of a stream, kept while it is read.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > OUTPUT_TAIL {
            let cut = self.0.len() - OUTPUT_TAIL;
            self.0.drain(..cut);
        }
    }
}

/// Runs `command` with `sh -c` for host `host` and waits for it, at most `timeout` (then its
/// process group is killed): what it did. Blocking: call it from a blocking thread.
pub fn run_fence_command(
    host: &str,
    command: &str,
    timeout: Duration,
) -> Result<FenceOutcome, FenceCommandError> {
    let (mut reader, writer) = std::io::pipe().map_err(FenceCommandError::Pipe)?;
    let writer2 = writer.try_clone().map_err(FenceCommandError::Pipe)?;
    let started = Instant::now();
    let mut child = {
        // The command (and with it the pipe's write ends) goes at the end of this block, so
        // that only the child holds them and the reader sees the end of its output.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .env("VINFRA_HOST", host)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0);
        cmd.spawn().map_err(FenceCommandError::Spawn)?
    };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    {
        let tail = tail.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => lock(&tail).push(&buf[..n]),
                }
            }
            let _ = done_tx.send(());
        });
    }
    let (status, timed_out) = wait_or_kill(&mut child, started, timeout)?;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Whatever the command left running in its group may still hold the pipe: read what comes
    // for a moment, then keep what was read.
    let _ = done_rx.recv_timeout(DRAIN);
    let output_tail = String::from_utf8_lossy(&lock(&tail).0).into_owned();
    let exit_code = if timed_out { None } else { status.code() };
    Ok(FenceOutcome {
        host: host.to_string(),
        fenced: !timed_out && exit_code == Some(0),
        exit_code,
        timed_out,
        duration_ms,
        output_tail,
    })
}

/// Waits for `child` until `timeout` after `started`; then kills its process group and reaps
/// it. Returns its exit status and whether it timed out.
fn wait_or_kill(
    child: &mut Child,
    started: Instant,
    timeout: Duration,
) -> Result<(ExitStatus, bool), FenceCommandError> {
    loop {
        if let Some(status) = child.try_wait().map_err(FenceCommandError::Wait)? {
            return Ok((status, false));
        }
        if started.elapsed() >= timeout {
            // The child leads its own process group (process_group(0)): its id is the group's.
            let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            if let Err(e) = killpg(group, Signal::SIGKILL) {
                tracing::warn!("killing a fence command's process group: {e}");
                let _ = child.kill();
            }
            let status = child.wait().map_err(FenceCommandError::Wait)?;
            return Ok((status, true));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(20);

    #[test]
    fn success_failure_output_and_environment() {
        let o =
            run_fence_command("h7", "echo fencing $VINFRA_HOST; echo to stderr >&2", LONG).unwrap();
        assert!(o.fenced, "{o:?}");
        assert_eq!((o.exit_code, o.timed_out), (Some(0), false));
        assert_eq!(o.host, "h7");
        assert!(o.output_tail.contains("fencing h7\n"), "{o:?}");
        assert!(o.output_tail.contains("to stderr\n"), "{o:?}");

        let o = run_fence_command("h7", "echo no BMC; exit 3", LONG).unwrap();
        assert!(!o.fenced);
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.output_tail, "no BMC\n");

        // Standard input is /dev/null: a command reading it ends at once.
        let o = run_fence_command("h7", "cat; echo read", LONG).unwrap();
        assert!(o.fenced, "{o:?}");
        assert_eq!(o.output_tail, "read\n");
    }

    #[test]
    fn only_the_last_2_kib_are_kept() {
        let o = run_fence_command(
            "h1",
            "i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done",
            LONG,
        )
        .unwrap();
        assert_eq!(o.output_tail.len(), OUTPUT_TAIL);
        assert!(o.output_tail.ends_with("line-499\n"), "{o:?}");
        assert!(!o.output_tail.contains("line-0\n"), "{o:?}");
    }

    #[test]
    fn a_command_that_runs_too_long_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-survived");
        // A child in the background that would write the marker after the timeout.
        let cmd = format!(
            "(sleep 2; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let begun = Instant::now();
        let o = run_fence_command("h1", &cmd, Duration::from_millis(500)).unwrap();
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "{:?}",
            begun.elapsed()
        );
        assert!(!o.fenced);
        assert!(o.timed_out);
        assert_eq!(o.exit_code, None);
        assert!(o.duration_ms >= 500, "{o:?}");
        assert_eq!(o.output_tail, "started\n");
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the background child was killed too");
    }
}
