//! The switch's side of the control socket: binding it, accepting connections (one thread
//! each) and answering each request line with the daemon's handler. The daemon decides what a
//! request does; this module only frames lines, refuses what does not parse and writes the
//! answers in order.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use crate::protocol::{Request, Response};

/// Longest request line accepted; a longer one is answered with an error and the connection
/// is closed.
pub const MAX_LINE: u64 = 1 << 20;

/// Binds the control socket at `path` (mode 0600, its directory created), replacing a socket
/// file left by an earlier run. Any other file in the way is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections on `listener` until accepting fails, each on its own thread, answering
/// every request with `handler`.
pub fn serve<H>(listener: UnixListener, handler: H) -> io::Result<()>
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let handler = handler.clone();
        let spawned = std::thread::Builder::new()
            .name("switch-control-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &*handler) {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a control connection thread");
        }
    }
    Ok(())
}

/// Answers the requests of one connection in order until the peer closes it. A line that is
/// not a request is answered with [`Response::Error`] (the connection stays); a line longer
/// than [`MAX_LINE`] ends the connection after its error.
pub fn serve_connection(
    stream: UnixStream,
    handler: &(impl Fn(Request) -> Response + ?Sized),
) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            write_response(
                &mut writer,
                &Response::Error {
                    message: "request line too long".into(),
                },
            )?;
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => handler(request),
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        write_response(&mut writer, &response)?;
    }
}

fn write_response(writer: &mut UnixStream, response: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)
}
