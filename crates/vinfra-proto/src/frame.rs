//! Length-prefixed JSON frames over any async byte stream.

use futures::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame accepted, bytes.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Errors on a framed connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// the connection failed
    #[error("connection")]
    Io(#[from] std::io::Error),
    /// a frame was not valid JSON for the expected message
    #[error("malformed message")]
    Json(#[from] serde_json::Error),
    /// the peer closed the connection
    #[error("connection closed by peer")]
    Closed,
}

/// A framed connection carrying JSON messages: send `Out`, receive `In`.
pub struct FramedJson<S> {
    inner: Framed<S, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedJson<S> {
    /// Frames `stream`: a 4-byte length, then that many bytes of JSON, at most [`MAX_FRAME`].
    pub fn new(stream: S) -> Self {
        Self::with_max_frame(stream, MAX_FRAME)
    }

    /// [`FramedJson::new`] with frames of at most `max` bytes (a longer one is an error before
    /// its bytes are read): for a peer not authenticated yet.
    pub fn with_max_frame(stream: S, max: usize) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(max)
            .new_codec();
        FramedJson {
            inner: Framed::new(stream, codec),
        }
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let bytes = serde_json::to_vec(msg)?;
        self.inner.send(bytes::Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Receives one message; [`FrameError::Closed`] at end of stream.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        match self.inner.next().await {
            Some(Ok(bytes)) => Ok(serde_json::from_slice(&bytes)?),
            Some(Err(e)) => Err(e.into()),
            None => Err(FrameError::Closed),
        }
    }

    /// Splits into a sender and a receiver half usable from two tasks.
    pub fn split(self) -> (FrameSender<S>, FrameReceiver<S>) {
        let (sink, stream) = self.inner.split();
        (FrameSender { sink }, FrameReceiver { stream })
    }
}

/// Sending half of a [`FramedJson`].
pub struct FrameSender<S> {
    sink: futures::stream::SplitSink<Framed<S, LengthDelimitedCodec>, bytes::Bytes>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameSender<S> {
    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let bytes = serde_json::to_vec(msg)?;
        self.sink.send(bytes::Bytes::from(bytes)).await?;
        Ok(())
    }
}

/// Receiving half of a [`FramedJson`].
pub struct FrameReceiver<S> {
    stream: futures::stream::SplitStream<Framed<S, LengthDelimitedCodec>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameReceiver<S> {
    /// Receives one message; [`FrameError::Closed`] at end of stream.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        self.recv_with(|bytes| serde_json::from_slice(bytes)).await
    }

    /// Receives one message decoded by `decode` from its JSON bytes (e.g.
    /// [`crate::AgentMessage::from_json`]); [`FrameError::Closed`] at end of stream.
    pub async fn recv_with<T>(
        &mut self,
        decode: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<T, FrameError> {
        match self.stream.next().await {
            Some(Ok(bytes)) => Ok(decode(&bytes)?),
            Some(Err(e)) => Err(e.into()),
            None => Err(FrameError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentCommand, ConsoleMessage};

    #[tokio::test]
    async fn roundtrip_over_a_real_socket_pair() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut a = FramedJson::new(a);
        let mut b = FramedJson::new(b);
        let msg = ConsoleMessage::Request {
            id: 7,
            command: AgentCommand::RebootVm {
                id: uuid::Uuid::nil(),
            },
        };
        a.send(&msg).await.unwrap();
        let got: ConsoleMessage = b.recv().await.unwrap();
        assert_eq!(got, msg);
        drop(a);
        assert!(matches!(
            b.recv::<ConsoleMessage>().await,
            Err(FrameError::Closed)
        ));
    }
}
