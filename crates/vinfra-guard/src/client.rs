//! [`GuardClient`]: the agent's side of the guard's control socket (blocking: the agent calls it
//! from `spawn_blocking` or a thread of its own).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::protocol::{
    ChildExit, GuardRefusal, GuardRequest, GuardResponse, GuardStatus, Pet, SpawnSpec,
};

/// Errors of [`GuardClient`].
#[derive(Debug, thiserror::Error)]
pub enum GuardClientError {
    /// Connecting to the control socket failed.
    #[error("connecting to the guard at {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (or a request timed out).
    #[error("talking to the guard")]
    Io(#[from] io::Error),
    /// The guard closed the connection.
    #[error("the guard closed the control connection")]
    Closed,
    /// A line was not JSON of the protocol.
    #[error("bad message from the guard")]
    Json(#[from] serde_json::Error),
    /// The guard refused the request.
    #[error("the guard refused the request")]
    Refused(#[source] GuardRefusal),
    /// The guard answered with a response of the wrong kind.
    #[error("unexpected answer from the guard: {0:?}")]
    Unexpected(Box<GuardResponse>),
}

impl GuardClientError {
    /// The guard's refusal, when it refused.
    pub fn refusal(&self) -> Option<&GuardRefusal> {
        match self {
            GuardClientError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// A connection to a guard's control socket. Requests are answered in order; one connection
/// may be used for all of them (a `spawn` holds it until its child is ready).
#[derive(Debug)]
pub struct GuardClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl GuardClient {
    /// Connects to the control socket at `path`.
    pub fn connect(path: &Path) -> Result<GuardClient, GuardClientError> {
        let stream = UnixStream::connect(path).map_err(|source| GuardClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let writer = stream.try_clone()?;
        Ok(GuardClient {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Connects, retrying every 20 ms until `timeout` has passed (a guard that is starting:
    /// it opens its socket once it holds the lease).
    pub fn connect_within(path: &Path, timeout: Duration) -> Result<GuardClient, GuardClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match GuardClient::connect(path) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Bounds how long one request may wait for the socket (`None`: forever, the default). A
    /// request that times out fails with [`GuardClientError::Io`]; the connection should then
    /// be dropped, as an answer may still arrive.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), GuardClientError> {
        self.writer.set_read_timeout(timeout)?;
        self.writer.set_write_timeout(timeout)?;
        Ok(())
    }

    /// Sends one request and reads its response (a refusal is a response here).
    pub fn request(&mut self, request: &GuardRequest) -> Result<GuardResponse, GuardClientError> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(GuardClientError::Closed);
        }
        Ok(serde_json::from_str(&answer)?)
    }

    /// Sends one request; a refusal is an error.
    fn call(&mut self, request: &GuardRequest) -> Result<GuardResponse, GuardClientError> {
        match self.request(request)? {
            GuardResponse::Refused(r) => Err(GuardClientError::Refused(r)),
            other => Ok(other),
        }
    }

    /// Starts a child and returns its pid once its QMP socket accepts a connection. A child
    /// that exited first, or was not ready in time (then killed), is refused with
    /// [`GuardRefusal::Exited`] or [`GuardRefusal::NotReady`], both with the end of its log.
    pub fn spawn(&mut self, spec: &SpawnSpec) -> Result<u32, GuardClientError> {
        match self.call(&GuardRequest::Spawn(spec.clone()))? {
            GuardResponse::Spawned { pid } => Ok(pid),
            other => Err(GuardClientError::Unexpected(Box::new(other))),
        }
    }

    /// The agent's sign of life (every second).
    pub fn pet(&mut self, pet: &Pet) -> Result<(), GuardClientError> {
        match self.call(&GuardRequest::Pet(pet.clone()))? {
            GuardResponse::Ok => Ok(()),
            other => Err(GuardClientError::Unexpected(Box::new(other))),
        }
    }

    /// The guard's state: lease, children, exits, fencing.
    pub fn status(&mut self) -> Result<GuardStatus, GuardClientError> {
        match self.call(&GuardRequest::Status)? {
            GuardResponse::Status(s) => Ok(*s),
            other => Err(GuardClientError::Unexpected(Box::new(other))),
        }
    }

    /// SIGKILLs the VM's child and returns once it is reaped, with how it ended (`None` when
    /// the VM had no child).
    pub fn kill(&mut self, vm: Uuid) -> Result<Option<ChildExit>, GuardClientError> {
        match self.call(&GuardRequest::Kill { vm })? {
            GuardResponse::Killed { exit } => Ok(exit),
            other => Err(GuardClientError::Unexpected(Box::new(other))),
        }
    }

    /// Ends the guard, its lease written `released`; refused while it has children
    /// ([`GuardRefusal::HasChildren`]).
    pub fn release(&mut self) -> Result<(), GuardClientError> {
        match self.call(&GuardRequest::Release)? {
            GuardResponse::Released => Ok(()),
            other => Err(GuardClientError::Unexpected(Box::new(other))),
        }
    }
}
