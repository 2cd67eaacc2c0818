//! The guard's side of the control socket ([`vinfra_control_socket`] frames the lines, one
//! thread per connection): each request answered with the daemon's handler, in order; a
//! `released` answer, once written, ends the guard.

use std::io;
use std::os::unix::net::UnixListener;

pub use vinfra_control_socket::{bind, MAX_LINE};
use vinfra_control_socket::{BadLine, Service};

use crate::protocol::{GuardRefusal, GuardRequest, GuardResponse};

/// The guard's protocol: its handler, and what it calls after a `released` answer.
struct Control<H, R> {
    handler: H,
    released: R,
}

impl<H, R> Service for Control<H, R>
where
    H: Fn(GuardRequest) -> GuardResponse,
    R: Fn(),
{
    type Request = GuardRequest;
    type Response = GuardResponse;

    fn handle(&self, request: GuardRequest) -> GuardResponse {
        (self.handler)(request)
    }

    fn refuse(&self, why: BadLine) -> GuardResponse {
        let message = match why {
            BadLine::TooLong => "request line too long".to_string(),
            BadLine::NotARequest(e) => e.to_string(),
        };
        GuardResponse::Refused(GuardRefusal::BadRequest { message })
    }

    fn answered(&self, response: &GuardResponse) {
        if *response == GuardResponse::Released {
            (self.released)();
        }
    }
}

/// Serves connections on `listener` until accepting fails, each on its own thread, answering
/// every request with `handler`; `released` is called after a `released` answer was written.
pub fn serve<H, R>(listener: UnixListener, handler: H, released: R) -> io::Result<()>
where
    H: Fn(GuardRequest) -> GuardResponse + Send + Sync + 'static,
    R: Fn() + Send + Sync + 'static,
{
    vinfra_control_socket::serve(
        listener,
        Control { handler, released },
        "guard-control-conn",
    )
}
