//! The control thread: serves the control socket ([`vinfra_switch_control::server`]) and hands
//! each request to the datapath thread (a channel plus a wakeup of its poll loop), then waits
//! for the answer.

use std::io;
use std::os::unix::net::UnixListener;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use mio::Waker;
use vinfra_switch_control::{server, Request, Response};

use crate::datapath::ControlMessage;

/// Serves connections until accepting fails.
pub(crate) fn serve(
    listener: UnixListener,
    datapath: Sender<ControlMessage>,
    waker: Arc<Waker>,
) -> io::Result<()> {
    server::serve(listener, move |request| submit(request, &datapath, &waker))
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
