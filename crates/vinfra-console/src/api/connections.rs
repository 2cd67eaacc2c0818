//! The API server's connections: how many are served at once and how long one may sit idle.
//!
//! [`LimitedAcceptor`] wraps the server's acceptor (it runs before the TLS handshake). At most
//! `max` connections are served at once; a connection past that waits for a slot, up to the
//! wait given, and at most `max` connections wait at a time: a connection past those is closed
//! at once, and one whose wait ends without a slot is closed then. A slow client (slowloris)
//! thus never keeps a normal one out for longer than the header timeout that ends it, and a
//! flood of connections costs at most `2 × max` file descriptors.
//!
//! Each served connection is an [`IdleStream`]: with no request in flight ([`CountRequests`]
//! counts them) and no byte read or written for the idle timeout, its next read is the end of
//! the stream, so the server closes it. HTTP/1.1 has hyper's header timeout for that; this also
//! ends an idle HTTP/2 connection, and one whose client stopped reading an answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Why a connection was not served.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionLimitError {
    /// Every slot is taken and as many connections wait already.
    #[error("connection limit reached ({max} served, {max} waiting)")]
    Full {
        /// The limit.
        max: usize,
    },
    /// No slot freed up while the connection waited.
    #[error("no connection slot freed up within {0:?}")]
    WaitedTooLong(Duration),
}

impl From<ConnectionLimitError> for std::io::Error {
    fn from(e: ConnectionLimitError) -> Self {
        std::io::Error::other(e)
    }
}

/// Caps the connections served at once (see the module's documentation).
#[derive(Clone)]
pub struct LimitedAcceptor<A> {
    inner: A,
    max: usize,
    served: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    wait: Duration,
    idle: Duration,
}

impl<A> LimitedAcceptor<A> {
    /// At most `max` connections served (at least 1), as many waiting up to `wait`; a served
    /// connection idle for `idle` is closed. `inner` runs once the connection has its slot.
    pub fn new(inner: A, max: usize, wait: Duration, idle: Duration) -> Self {
        let max = max.max(1);
        LimitedAcceptor {
            inner,
            max,
            served: Arc::new(Semaphore::new(max)),
            waiting: Arc::new(Semaphore::new(max)),
            wait,
            idle,
        }
    }

    /// Connections served now.
    pub fn served(&self) -> usize {
        self.max - self.served.available_permits()
    }

    async fn slot(
        served: Arc<Semaphore>,
        waiting: Arc<Semaphore>,
        max: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, ConnectionLimitError> {
        if let Ok(p) = served.clone().try_acquire_owned() {
            return Ok(p);
        }
        let Ok(_waiting) = waiting.try_acquire_owned() else {
            return Err(ConnectionLimitError::Full { max });
        };
        match tokio::time::timeout(wait, served.acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            // The semaphore is never closed; either way the connection is not served.
            _ => Err(ConnectionLimitError::WaitedTooLong(wait)),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<I, S, A> Accept<I, S> for LimitedAcceptor<A>
where
    I: Send + 'static,
    S: Send + 'static,
    A: Accept<I, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    A::Stream: Send,
{
    type Stream = IdleStream<A::Stream>;
    type Service = CountRequests<A::Service>;
    type Future = BoxFuture<std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let (served, waiting) = (self.served.clone(), self.waiting.clone());
        let (max, wait, idle) = (self.max, self.wait, self.idle);
        let inner = self.inner.clone();
        Box::pin(async move {
            let permit = Self::slot(served, waiting, max, wait).await?;
            let (stream, service) = inner.accept(stream, service).await?;
            let in_flight = Arc::new(AtomicUsize::new(0));
            Ok((
                IdleStream {
                    inner: stream,
                    idle,
                    sleep: Box::pin(tokio::time::sleep(idle)),
                    in_flight: in_flight.clone(),
                    _permit: permit,
                },
                CountRequests {
                    inner: service,
                    in_flight,
                },
            ))
        })
    }
}

/// A served connection: holds its slot, and ends when idle (see the module's documentation).
pub struct IdleStream<T> {
    inner: T,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    in_flight: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
}

impl<T> IdleStream<T> {
    fn moved(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.idle);
    }

    /// True when the connection has been idle too long; otherwise the timer is armed again.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return true;
            }
            // A request is being answered: the connection is not idle.
            self.moved();
        }
        false
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(r)
            }
            // Nothing read: the end of the stream when the connection has been idle too long.
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.idle_expired(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client reads nothing",
            ))),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a connection's requests in flight (from the call to the response's head), so that
/// a request taking long to answer does not count as idle.
#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> tower::Service<R> for CountRequests<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.in_flight.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}
