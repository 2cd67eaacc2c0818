//! The guard's side of the control socket: binding it, accepting connections (one thread each)
//! and answering each request line with the daemon's handler, in order.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use crate::protocol::{GuardRefusal, GuardRequest, GuardResponse};

/// Longest request line accepted; a longer one is refused and the connection closed.
pub const MAX_LINE: u64 = 1 << 20;

/// Binds the control socket at `path` (mode 0600, its directory created). A socket file left
/// by an earlier run is replaced; one a live guard answers on is not
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
                    "another guard answers on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections on `listener` until accepting fails, each on its own thread, answering
/// every request with `handler`; `released` is called after a `released` answer was written.
pub fn serve<H, R>(listener: UnixListener, handler: H, released: R) -> io::Result<()>
where
    H: Fn(GuardRequest) -> GuardResponse + Send + Sync + 'static,
    R: Fn() + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let released = Arc::new(released);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (handler, released) = (handler.clone(), released.clone());
        let spawned = std::thread::Builder::new()
            .name("guard-control-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &*handler, &*released) {
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
/// not a request is refused (the connection stays); a line longer than [`MAX_LINE`] ends the
/// connection after its refusal.
pub fn serve_connection(
    stream: UnixStream,
    handler: &(impl Fn(GuardRequest) -> GuardResponse + ?Sized),
    released: &(impl Fn() + ?Sized),
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
            let refusal = GuardRefusal::BadRequest {
                message: "request line too long".into(),
            };
            write_response(&mut writer, &GuardResponse::Refused(refusal))?;
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<GuardRequest>(&line) {
            Ok(request) => handler(request),
            Err(e) => GuardResponse::Refused(GuardRefusal::BadRequest {
                message: e.to_string(),
            }),
        };
        write_response(&mut writer, &response)?;
        if response == GuardResponse::Released {
            released();
        }
    }
}

fn write_response(writer: &mut UnixStream, response: &GuardResponse) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)
}
