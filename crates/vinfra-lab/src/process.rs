//! Starting the lab's processes detached (own process group, output to a log file, pidfile) and
//! stopping them by pid, checking first that a pid still belongs to the lab.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Why starting or stopping a process failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The pidfile could not be written.
    #[error("cannot write pidfile {path}")]
    Pidfile {
        /// The pidfile.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("cannot send {signal} to pid {pid}")]
    Signal {
        /// The process.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// What went wrong.
        #[source]
        source: nix::Error,
    },
}

/// Starts `program args` in its own process group with stdin closed and stdout/stderr appended
/// to `log`; writes its pid to `pidfile` and returns it. The process outlives its starter; while
/// the starter lives, a thread reaps it when it exits so that no zombie is left behind.
pub fn spawn_detached(
    program: &Path,
    args: &[String],
    log: &Path,
    pidfile: &Path,
) -> Result<u32, ProcessError> {
    let open_log = || -> Result<File, ProcessError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ProcessError::Log {
                path: log.to_path_buf(),
                source,
            })
    };
    let out = open_log()?;
    let err = open_log()?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    std::fs::write(pidfile, format!("{}\n", child.id())).map_err(|source| {
        ProcessError::Pidfile {
            path: pidfile.to_path_buf(),
            source,
        }
    })?;
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// Reads a pid from a pidfile.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(parts.join(" "))
}

/// Pids of live processes whose command line contains `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| cmdline(*pid).is_some_and(|c| c.contains(needle)) && alive(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: Signal) -> Result<(), ProcessError> {
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(());
    };
    match kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(ProcessError::Signal {
            pid,
            signal,
            source,
        }),
    }
}

/// Waits up to `timeout` for `pid` to be gone; true when it is.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL after `grace`; waits for the process to be gone.
pub fn terminate(pid: u32, grace: Duration) -> Result<(), ProcessError> {
    signal(pid, Signal::SIGTERM)?;
    if !wait_gone(pid, grace) {
        signal(pid, Signal::SIGKILL)?;
        wait_gone(pid, Duration::from_secs(5));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_and_terminate() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let pidfile = dir.path().join("pid");
        let pid = spawn_detached(
            Path::new("/bin/sh"),
            &["-c".into(), "echo hello; exec sleep 30".into()],
            &log,
            &pidfile,
        )
        .unwrap();
        assert_eq!(read_pidfile(&pidfile), Some(pid));
        assert!(alive(pid));
        std::thread::sleep(Duration::from_millis(200));
        terminate(pid, Duration::from_secs(5)).unwrap();
        assert!(!alive(pid));
        assert!(std::fs::read_to_string(&log).unwrap().contains("hello"));
    }
}
