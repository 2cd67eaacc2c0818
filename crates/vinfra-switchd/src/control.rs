//! The control thread: accepts connections on the control socket and hands each request to the
//! datapath thread (a channel plus a wakeup of its poll loop), then writes the answer.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use mio::Waker;

use crate::datapath::ControlMessage;
use crate::protocol::{Request, Response};

/// Longest request line accepted.
const MAX_LINE: u64 = 1 << 20;

/// Serves connections until accepting fails.
pub(crate) fn serve(
    listener: UnixListener,
    datapath: Sender<ControlMessage>,
    waker: Arc<Waker>,
) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let datapath = datapath.clone();
        let waker = waker.clone();
        let spawned = std::thread::Builder::new()
            .name("switch-control-conn".into())
            .spawn(move || {
                if let Err(e) = connection(stream, &datapath, &waker) {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a control connection thread");
        }
    }
    Ok(())
}

fn connection(
    stream: UnixStream,
    datapath: &Sender<ControlMessage>,
    waker: &Waker,
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
            Ok(request) => submit(request, datapath, waker),
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        write_response(&mut writer, &response)?;
    }
}

fn submit(request: Request, datapath: &Sender<ControlMessage>, waker: &Waker) -> Response {
    let (reply, answer) = mpsc::channel();
    if datapath.send((request, reply)).is_err() {
        return Response::Error {
            message: "the datapath has stopped".into(),
        };
    }
    if let Err(e) = waker.wake() {
        return Response::Error {
            message: format!("waking the datapath: {e}"),
        };
    }
    answer.recv().unwrap_or(Response::Error {
        message: "the datapath has stopped".into(),
    })
}

fn write_response(writer: &mut UnixStream, response: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)
}
