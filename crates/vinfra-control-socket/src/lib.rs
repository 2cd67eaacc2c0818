//! The server side of a daemon's control socket: JSON requests and answers, one per line, over
//! a Unix socket (the switch's and the guard's). A daemon describes its protocol with a
//! [`Service`] (its request and answer types, what it answers, how it words a refusal); this
//! crate binds the socket, accepts connections (one thread each) and answers each request line
//! in order. It decides nothing about what a request does.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Longest request line a service accepts unless it says otherwise ([`Service::max_line`]); a
/// longer one is refused ([`BadLine::TooLong`]) and the connection closed.
pub const MAX_LINE: u64 = 1 << 20;

/// Why a request line got no answer from the service.
#[derive(Debug)]
pub enum BadLine {
    /// The line is longer than [`MAX_LINE`]; the connection is closed after the refusal.
    TooLong,
    /// The line is not a request (the connection stays).
    NotARequest(serde_json::Error),
}

/// A daemon's protocol on its control socket.
pub trait Service {
    /// A request, one JSON line.
    type Request: DeserializeOwned;
    /// An answer, one JSON line.
    type Response: Serialize;
    /// Answers one request.
    fn handle(&self, request: Self::Request) -> Self::Response;
    /// The answer to a line that is no request.
    fn refuse(&self, why: BadLine) -> Self::Response;
    /// Called once `response` was written to the peer (the default does nothing).
    fn answered(&self, _response: &Self::Response) {}

    /// The longest request line accepted ([`MAX_LINE`] by default).
    fn max_line(&self) -> u64 {
        MAX_LINE
    }
}

/// Binds the control socket at `path` (mode 0600, its directory created). A socket file left
/// by an earlier run is replaced; one a live daemon answers on is not
/// ([`io::ErrorKind::AddrInUse`]), nor any other file.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a live daemon answers on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections on `listener` until accepting fails, each on a thread of its own named
/// `thread`, answering every request with `service`.
pub fn serve<S>(listener: UnixListener, service: S, thread: &str) -> io::Result<()>
where
    S: Service + Send + Sync + 'static,
{
    let service = Arc::new(service);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let service = service.clone();
        let spawned = std::thread::Builder::new()
            .name(thread.to_string())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &*service) {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a control connection thread");
        }
    }
    Ok(())
}

/// Answers the requests of one connection in order until the peer closes it. Blank lines are
/// skipped; a line that is not a request is refused (the connection stays); a line longer than
/// [`Service::max_line`] ends the connection after its refusal.
pub fn serve_connection<S: Service + ?Sized>(stream: UnixStream, service: &S) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let max = service.max_line();
        let n = (&mut reader).take(max).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 >= max {
            write_line(&mut writer, &service.refuse(BadLine::TooLong))?;
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<S::Request>(&line) {
            Ok(request) => service.handle(request),
            Err(e) => service.refuse(BadLine::NotARequest(e)),
        };
        write_line(&mut writer, &response)?;
        service.answered(&response);
    }
}

fn write_line(writer: &mut UnixStream, response: &impl Serialize) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)
}
