//! The switch's side of the control socket ([`vinfra_control_socket`] binds it, frames the
//! lines, one thread per connection): each request line answered with the daemon's handler,
//! in order. The daemon decides what a request does; a line that is not a request is answered
//! with [`Response::Error`].

use std::io;
use std::os::unix::net::UnixListener;

pub use vinfra_control_socket::bind;
use vinfra_control_socket::{BadLine, Service};

/// The longest request line the switch takes: 64 MiB. A port's firewall is one line, and a
/// rule naming a large remote group lists every member's address (about 30 bytes each), so
/// the control socket's default of 1 MiB would refuse the rules of a NIC whose groups name a
/// few thousand addresses.
pub const MAX_LINE: u64 = 64 << 20;

use crate::protocol::{Request, Response};

/// The switch's protocol around the daemon's handler.
struct Control<H>(H);

impl<H: Fn(Request) -> Response> Service for Control<H> {
    type Request = Request;
    type Response = Response;

    fn handle(&self, request: Request) -> Response {
        (self.0)(request)
    }

    fn max_line(&self) -> u64 {
        MAX_LINE
    }

    fn refuse(&self, why: BadLine) -> Response {
        let message = match why {
            BadLine::TooLong => "request line too long".to_string(),
            BadLine::NotARequest(e) => format!("bad request: {e}"),
        };
        Response::Error { message }
    }
}

/// Serves connections on `listener` until accepting fails, each on its own thread, answering
/// every request with `handler`.
pub fn serve<H>(listener: UnixListener, handler: H) -> io::Result<()>
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    vinfra_control_socket::serve(listener, Control(handler), "switch-control-conn")
}
