//! [`SwitchClient`]: the agent's side of the control socket.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::{ConnectionSpec, CountersView, FlowsView, Request, Response};

/// Errors of [`SwitchClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to the control socket failed.
    #[error("connecting to the switch at {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (or a request timed out).
    #[error("talking to the switch")]
    Io(#[from] io::Error),
    /// The switch closed the connection.
    #[error("the switch closed the control connection")]
    Closed,
    /// A line was not JSON of the protocol.
    #[error("bad message from the switch")]
    Json(#[from] serde_json::Error),
    /// The switch refused a request.
    #[error("the switch refused request {index} ({}): {message}", json(request))]
    Refused {
        /// Position of the request in the batch.
        index: usize,
        /// The request.
        request: Box<Request>,
        /// The switch's reason.
        message: String,
    },
    /// The switch answered with a response of the wrong kind.
    #[error("unexpected answer from the switch: {0:?}")]
    Unexpected(Box<Response>),
}

/// A request as its JSON line (without the newline), for messages.
pub fn json(request: &Request) -> String {
    serde_json::to_string(request).unwrap_or_else(|_| format!("{request:?}"))
}

/// A connection to a switch's control socket.
///
/// The agent keeps the switch's desired configuration (networks, ports, flood lists, MAC and ARP
/// entries). Whenever it (re)connects, to a switch that may have restarted with an empty
/// configuration, it compares that configuration with [`SwitchClient::config`] and sends what is
/// missing with [`SwitchClient::apply`]; a refused request reports its index.
#[derive(Debug)]
pub struct SwitchClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl SwitchClient {
    /// Connects to the control socket at `path`.
    pub fn connect(path: &Path) -> Result<SwitchClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let writer = stream.try_clone()?;
        Ok(SwitchClient {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Connects, retrying every 20 ms until `timeout` has passed (a switch that is starting).
    pub fn connect_within(path: &Path, timeout: Duration) -> Result<SwitchClient, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match SwitchClient::connect(path) {
                Ok(mut c) => match c.ping() {
                    Ok(()) => return Ok(c),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => {}
                },
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bounds how long one request may wait for the socket (`None`: forever, the default). A
    /// request that times out fails with [`ClientError::Io`]; the connection should then be
    /// dropped, as an answer may still arrive.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.writer.set_read_timeout(timeout)?;
        self.writer.set_write_timeout(timeout)?;
        Ok(())
    }

    /// Sends one request and reads its response.
    pub fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(serde_json::from_str(&answer)?)
    }

    /// Checks that the switch answers.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        match self.request(&Request::Ping)? {
            Response::Pong => Ok(()),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Applies configuration requests in order; stops at the first refusal.
    pub fn apply(&mut self, requests: &[Request]) -> Result<(), ClientError> {
        for (index, request) in requests.iter().enumerate() {
            match self.request(request)? {
                Response::Ok => {}
                Response::Error { message } => {
                    return Err(ClientError::Refused {
                        index,
                        request: Box::new(request.clone()),
                        message,
                    })
                }
                other => return Err(ClientError::Unexpected(Box::new(other))),
            }
        }
        Ok(())
    }

    /// Every counter.
    pub fn counters(&mut self) -> Result<CountersView, ClientError> {
        match self.request(&Request::GetCounters)? {
            Response::Counters(c) => Ok(c),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// The flows counted since the previous take (`take_flows`).
    pub fn take_flows(&mut self) -> Result<FlowsView, ClientError> {
        match self.request(&Request::TakeFlows)? {
            Response::Flows(f) => Ok(f),
            Response::Error { message } => Err(ClientError::Refused {
                index: 0,
                request: Box::new(Request::TakeFlows),
                message,
            }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// A port's tracked connections (`export_connections`), for a migrating VM's new host.
    pub fn export_connections(&mut self, port: u32) -> Result<Vec<ConnectionSpec>, ClientError> {
        match self.request(&Request::ExportConnections { port })? {
            Response::Connections { entries } => Ok(entries),
            Response::Error { message } => Err(ClientError::Refused {
                index: 0,
                request: Box::new(Request::ExportConnections { port }),
                message,
            }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// The configuration the switch holds, as requests that rebuild it.
    pub fn config(&mut self) -> Result<Vec<Request>, ClientError> {
        match self.request(&Request::GetConfig)? {
            Response::Config { requests } => Ok(requests),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }
}
