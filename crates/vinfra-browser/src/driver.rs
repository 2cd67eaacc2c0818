//! The `chromedriver` process: started on a free port of 127.0.0.1 in a process group of its
//! own, so that dropping [`Chromedriver`] (also while a test panics) ends it and the Chromium it
//! started.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The WebDriver server of Chromium (Debian package `chromium-driver`).
pub const CHROMEDRIVER: &str = "chromedriver";

/// How long `chromedriver` may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long it may take to end after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Why `chromedriver` did not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No free port could be found.
    #[error("cannot find a free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    /// The process could not be started.
    #[error("cannot start {CHROMEDRIVER} (Debian package chromium-driver)")]
    Spawn(#[source] std::io::Error),
    /// It ended before it listened.
    #[error("{CHROMEDRIVER} exited ({status}) before listening; its log {log}:\n{tail}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// It did not listen in time.
    #[error("{CHROMEDRIVER} did not listen on port {port} within {} s; its log: {log}", READY_TIMEOUT.as_secs())]
    NotReady {
        /// The port it was told.
        port: u16,
        /// Its log file.
        log: PathBuf,
    },
}

/// A running `chromedriver`; ended (with the browsers it started) when dropped.
pub struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    /// Starts `chromedriver` on a free port of 127.0.0.1, its log in `log`; returns once it
    /// accepts connections.
    pub fn start(log: &Path) -> Result<Chromedriver, DriverError> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(DriverError::Port)?
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(DriverError::Spawn)?;
        let mut driver = Chromedriver { child, port };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(DriverError::Exited {
                    status,
                    log: log.to_path_buf(),
                    tail: tail(log),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(driver);
            }
            if Instant::now() >= deadline {
                return Err(DriverError::NotReady {
                    port,
                    log: log.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its WebDriver URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id (also its process group's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        // The group is this child's own (process_group(0)): chromedriver and the browser it ran.
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever of the group is left (the browser's helpers) goes too.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
