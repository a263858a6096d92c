//! Streams in both directions: request chunks in and result chunks out on the serving side,
//! a chunk writer and a result stream on the requesting side.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use chinwag_session::Charge;
use chinwag_wire::{Message, RequestId};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::RpcError;
use crate::peer::{Peer, Pending, Reply};

/// The chunks of a request, as a streaming handler reads them. A single request (`r`) is a
/// stream of one chunk; a stream request (`s`) yields its first chunk and then every part
/// (`p`) until the requestor ends it.
///
/// Every chunk counts in the connection's in-flight byte budget (see
/// [`RpcConfig::max_in_flight_bytes`](crate::RpcConfig::max_in_flight_bytes)) for as long as
/// the stream lives.
#[derive(Debug)]
pub struct RequestStream {
    first: Option<Bytes>,
    rx: Option<mpsc::Receiver<(Bytes, Charge)>>,
    charge: Charge,
}

impl RequestStream {
    pub(crate) fn single(payload: Bytes, charge: Charge) -> Self {
        RequestStream {
            first: Some(payload),
            rx: None,
            charge,
        }
    }

    pub(crate) fn streamed(
        first: Bytes,
        charge: Charge,
        rx: mpsc::Receiver<(Bytes, Charge)>,
    ) -> Self {
        RequestStream {
            first: Some(first),
            rx: Some(rx),
            charge,
        }
    }

    /// The next chunk; `None` when the request ended (or the connection closed).
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(f) = self.first.take() {
            return Some(f);
        }
        let (chunk, charge) = self.rx.as_mut()?.recv().await?;
        self.charge.absorb(charge);
        Some(chunk)
    }

    /// The payload of a single request (`r`), taken at once; `None` for a stream request.
    pub(crate) fn take_single(&mut self) -> Option<Bytes> {
        if self.rx.is_none() {
            self.first.take()
        } else {
            None
        }
    }

    /// The bytes charged so far (the first chunk and the parts taken), leaving the stream with
    /// none: the server keeps them until the answer has been written.
    pub(crate) fn take_charge(&mut self) -> Charge {
        std::mem::take(&mut self.charge)
    }
}

/// Where a streaming handler writes its result chunks (gotalk `S` parts). The stream is ended
/// for it when the handler returns `Ok`.
#[derive(Debug)]
pub struct ResultSink {
    peer: Peer,
    id: RequestId,
    parts: u64,
}

impl ResultSink {
    pub(crate) fn new(peer: Peer, id: RequestId) -> Self {
        ResultSink { peer, id, parts: 0 }
    }

    /// Sends one result chunk. Empty chunks are skipped (an empty part would end the stream).
    ///
    /// # Errors
    ///
    /// The connection closed or its send queue refused the chunk.
    pub async fn send(&mut self, chunk: impl Into<Bytes>) -> Result<(), RpcError> {
        let payload = chunk.into();
        if payload.is_empty() {
            return Ok(());
        }
        self.parts += 1;
        // An answer: it waits for room (never dropped); one that cannot be queued in time
        // closes the connection.
        self.peer
            .send_reply(
                &Message::StreamResult {
                    id: self.id,
                    payload,
                },
                None,
            )
            .await
    }

    /// Sends one result chunk as JSON.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), or the value cannot be encoded as JSON.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RpcError> {
        let v = serde_json::to_vec(value).map_err(RpcError::json)?;
        self.send(v).await
    }

    /// How many chunks were sent.
    pub fn parts(&self) -> u64 {
        self.parts
    }
}

/// Writes the chunks of a stream request (gotalk `p` parts); [`end`](Self::end) finishes it.
/// Dropping it without `end` ends the stream too (best effort).
#[derive(Debug)]
pub struct StreamWriter {
    peer: Peer,
    id: RequestId,
    ended: bool,
}

impl StreamWriter {
    pub(crate) fn new(peer: Peer, id: RequestId) -> Self {
        StreamWriter {
            peer,
            id,
            ended: false,
        }
    }

    /// Sends one chunk. Empty chunks are skipped (an empty part ends the stream).
    ///
    /// # Errors
    ///
    /// The stream was ended, the connection closed, or the send queue refused the chunk.
    pub async fn write(&mut self, chunk: impl Into<Bytes>) -> Result<(), RpcError> {
        if self.ended {
            return Err(RpcError::StreamEnded);
        }
        let payload = chunk.into();
        if payload.is_empty() {
            return Ok(());
        }
        self.peer
            .send_msg(&Message::StreamReqPart {
                id: self.id,
                payload,
            })
            .await
    }

    /// Ends the request stream.
    ///
    /// # Errors
    ///
    /// The connection closed or the send queue refused the end marker.
    pub async fn end(mut self) -> Result<(), RpcError> {
        self.ended = true;
        self.peer
            .send_msg(&Message::StreamReqPart {
                id: self.id,
                payload: Bytes::new(),
            })
            .await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.ended {
            self.peer.try_send_msg(&Message::StreamReqPart {
                id: self.id,
                payload: Bytes::new(),
            });
        }
    }
}

/// The result of a request as a stream of chunks: one chunk for a single result (`R`), every
/// part for a streamed result (`S`), then `None`. An error result ends it with `Err`.
///
/// Implements [`futures_core::Stream`]; [`next`](Self::next) is the same without a trait
/// import. Dropping it forgets the request (late parts are ignored).
#[derive(Debug)]
pub struct ResultStream {
    pending: Pending,
    first: Option<Reply>,
    done: bool,
}

impl ResultStream {
    pub(crate) fn new(pending: Pending) -> Self {
        ResultStream {
            pending,
            first: None,
            done: false,
        }
    }

    pub(crate) fn with_first(pending: Pending, first: Reply) -> Self {
        ResultStream {
            pending,
            first: Some(first),
            done: false,
        }
    }

    /// The next chunk, `Some(Err)` for an error result or a lost connection, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, RpcError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Collects every chunk into one value, bounded by the payload limit.
    ///
    /// # Errors
    ///
    /// An error result, a lost connection, or more than the limit.
    pub async fn collect(mut self) -> Result<Bytes, RpcError> {
        let limit = self.pending.peer.config().wire.max_payload as usize;
        let mut chunks = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            total += chunk.len();
            if total > limit {
                return Err(RpcError::TooLarge {
                    limit: limit as u64,
                });
            }
            chunks.push(chunk);
        }
        // One chunk (a single result) is returned without a copy.
        if chunks.len() == 1 {
            return Ok(chunks.pop().unwrap_or_default());
        }
        let mut out = bytes::BytesMut::with_capacity(total);
        for c in chunks {
            out.extend_from_slice(&c);
        }
        Ok(out.freeze())
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RpcError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let reply = match self.first.take() {
            Some(first) => Some(first),
            None => match self.pending.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            },
        };
        Poll::Ready(match reply {
            None => {
                self.done = true;
                Some(Err(self.pending.peer.closed_error()))
            }
            Some(Reply::Part(b)) => Some(Ok(b)),
            Some(Reply::Single(b)) => {
                // One chunk, then the end.
                self.done = true;
                Some(Ok(b))
            }
            Some(Reply::End) => {
                self.done = true;
                None
            }
            Some(Reply::Error(t)) => {
                self.done = true;
                Some(Err(RpcError::Remote { message: t }))
            }
            Some(Reply::Retry { wait, text }) => {
                // A stream request cannot be replayed: its chunks are gone.
                self.done = true;
                Some(Err(RpcError::Overloaded {
                    attempts: 1,
                    wait,
                    message: text,
                }))
            }
        })
    }
}

impl futures_core::Stream for ResultStream {
    type Item = Result<Bytes, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }
}
