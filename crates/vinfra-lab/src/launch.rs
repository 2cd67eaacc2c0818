//! Small helpers for starting the lab's processes: a free port, a log's last lines, a switch's
//! control socket, words for `sh`.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::process;

/// `word` quoted for `sh`: in single quotes, each `'` written `'\''`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

pub(crate) fn free_port() -> Result<u16, LabError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LabError::Port)?;
    Ok(l.local_addr().map_err(LabError::Port)?.port())
}

pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Waits (up to 10 s) until the switch `pid` has created its control socket `control`.
pub(crate) fn wait_control(
    control: &Path,
    pid: u32,
    log: &Path,
    what: &str,
) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        if !process::alive(pid) {
            return Err(LabError::Exited {
                what: what.to_string(),
                tail: log_tail(log),
                log: log.to_path_buf(),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: what.to_string(),
                secs: 10,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
