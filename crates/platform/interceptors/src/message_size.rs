//! A bound on every request message a server accepts, the same for native
//! gRPC and for grpc-web (whose calls are translated to native gRPC above
//! this layer), and on the request's metadata.
//!
//! Metadata (the header block) over [`MAX_METADATA_BYTES`] is answered
//! RESOURCE_EXHAUSTED before anything else is done with the call. The
//! transport's own header limits (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`,
//! the HTTP/1.1 read buffer) stand above this bound: between the two a
//! caller gets this clear status; beyond the transport's, the transport
//! refuses on its own (HTTP 431, or a reset).
//!
//! The layer watches the length-prefixed frames of the request body as
//! they arrive (a flags byte and a big-endian u32 length, then the
//! message) and fails the body with RESOURCE_EXHAUSTED as soon as a frame
//! header announces more than the bound: the message is never buffered,
//! and the handler is never called. tonic's decoder hands the body's
//! status to the caller unchanged.
//!
//! A message must also arrive whole within [`MESSAGE_ARRIVAL_TIMEOUT`] of
//! its first byte: a client that stalls in the middle of a message would
//! otherwise hold the part already buffered (up to the bound) for as long
//! as the connection's idle timeout, and many such clients a lot of
//! memory. The body then fails with DEADLINE_EXCEEDED, which tonic hands to
//! the caller, and the buffered part is dropped. Pauses between messages
//! of a client stream are not limited here.
//!
//! The length checked is the length on the wire, compressed or not; what a
//! compressed message may grow to is bounded by tonic's own decoding limit
//! (4 MiB by default), which refuses with RESOURCE_EXHAUSTED too.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tower::{Layer, Service};

use crate::{BoxFuture, HttpRequest, HttpResponse, status_response};

/// The bound of downstream services unless configured otherwise: gRPC's
/// customary 4 MiB, far above what any BFF sends them (an order of 100
/// lines is a few KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The bound of the BFFs unless configured otherwise. Their largest
/// requests (500 product ids for availability, an order of 100 lines, a
/// read mask) are under 16 KiB; a limit far above that only invites
/// abuse.
pub const BFF_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The largest request metadata accepted, counted as HTTP/2 counts a
/// header list (name, value and 32 bytes per field). Tailor's own
/// metadata (a bearer token of at most 8 KiB, a session cookie, a signed
/// identity, ids and deadlines) stays far below it.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// How long one request message may take to arrive, from its first byte
/// to its last: far beyond what any real client needs for the largest
/// message allowed, short enough that stalled clients cannot pile up
/// buffered halves.
pub const MESSAGE_ARRIVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Length of a gRPC frame header: a flags byte and a big-endian u32.
const FRAME_HEADER: usize = 5;

/// Adds [`MessageSize`] to a stack.
#[derive(Debug, Clone, Copy)]
pub struct MessageSizeLayer {
    max_message_bytes: usize,
    arrival_timeout: std::time::Duration,
}

impl MessageSizeLayer {
    /// Refuses request messages longer than `max_message_bytes`, and
    /// messages that take longer than [`MESSAGE_ARRIVAL_TIMEOUT`] to
    /// arrive.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            arrival_timeout: MESSAGE_ARRIVAL_TIMEOUT,
        }
    }

    /// The same layer with another bound on a message's arrival.
    pub fn with_arrival_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.arrival_timeout = timeout;
        self
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageSize {
            inner,
            max_message_bytes: self.max_message_bytes,
            arrival_timeout: self.arrival_timeout,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct MessageSize<S> {
    inner: S,
    max_message_bytes: usize,
    arrival_timeout: std::time::Duration,
}

/// The size of a header list as HTTP/2 counts it (RFC 9113, 6.5.2).
fn metadata_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

impl<S> Service<HttpRequest> for MessageSize<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let metadata = metadata_bytes(request.headers());
        if metadata > MAX_METADATA_BYTES {
            let status = Status::resource_exhausted(format!(
                "request metadata of {metadata} bytes is larger than the limit of \
                 {MAX_METADATA_BYTES} bytes"
            ));
            return Box::pin(async move { Ok(status_response(status)) });
        }
        let max = self.max_message_bytes;
        let arrival_timeout = self.arrival_timeout;
        Box::pin(
            self.inner.call(request.map(|body| {
                tonic::body::Body::new(BoundedFrames::new(body, max, arrival_timeout))
            })),
        )
    }
}

/// Follows the framing of a body across arbitrary chunk boundaries.
#[derive(Debug)]
struct FrameReader {
    max: usize,
    header: [u8; FRAME_HEADER],
    /// Bytes of the current frame header seen so far.
    header_seen: usize,
    /// Bytes of the current message still to come.
    message_left: usize,
}

impl FrameReader {
    fn new(max: usize) -> Self {
        Self {
            max,
            header: [0; FRAME_HEADER],
            header_seen: 0,
            message_left: 0,
        }
    }

    /// Whether part of a message (or of its header) has arrived and the
    /// rest has not.
    fn in_message(&self) -> bool {
        self.header_seen > 0 || self.message_left > 0
    }

    /// Takes the next chunk of the body; an error once a frame announces
    /// a message over the bound.
    fn read(&mut self, mut chunk: &[u8]) -> Result<(), Status> {
        while !chunk.is_empty() {
            if self.message_left > 0 {
                let n = self.message_left.min(chunk.len());
                self.message_left -= n;
                chunk = &chunk[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.header_seen).min(chunk.len());
            self.header[self.header_seen..self.header_seen + n].copy_from_slice(&chunk[..n]);
            self.header_seen += n;
            chunk = &chunk[n..];
            if self.header_seen == FRAME_HEADER {
                self.header_seen = 0;
                let [_, a, b, c, d] = self.header;
                let length = u32::from_be_bytes([a, b, c, d]) as usize;
                if length > self.max {
                    return Err(Status::resource_exhausted(format!(
                        "request message of {length} bytes is larger than the limit of {} bytes",
                        self.max
                    )));
                }
                self.message_left = length;
            }
        }
        Ok(())
    }
}

/// A request body whose frames are checked as they pass.
struct BoundedFrames {
    inner: tonic::body::Body,
    frames: FrameReader,
    arrival_timeout: std::time::Duration,
    /// When the message under way must have arrived whole.
    arrival: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl BoundedFrames {
    fn new(inner: tonic::body::Body, max: usize, arrival_timeout: std::time::Duration) -> Self {
        Self {
            inner,
            frames: FrameReader::new(max),
            arrival_timeout,
            arrival: None,
        }
    }
}

impl Body for BoundedFrames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {
                if let Some(arrival) = this.arrival.as_mut() {
                    ready!(arrival.as_mut().poll(cx));
                    this.arrival = None;
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "a request message did not arrive whole within {} s of its first byte",
                        this.arrival_timeout.as_secs_f64()
                    )))));
                }
                return Poll::Pending;
            }
        };
        if let Some(data) = frame.data_ref() {
            if let Err(status) = this.frames.read(data.chunk()) {
                return Poll::Ready(Some(Err(status)));
            }
            if !this.frames.in_message() {
                this.arrival = None;
            } else if this.arrival.is_none() {
                this.arrival = Some(Box::pin(tokio::time::sleep(this.arrival_timeout)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    fn frame(length: usize) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&(length as u32).to_be_bytes());
        frame.extend(std::iter::repeat_n(7, length));
        frame
    }

    #[test]
    fn frames_within_the_bound_pass_however_the_body_is_cut() {
        let body = [frame(10), frame(0), frame(100)].concat();
        for cut in [1, 2, 3, 5, 7, 64, body.len()] {
            let mut reader = FrameReader::new(100);
            for chunk in body.chunks(cut) {
                reader.read(chunk).unwrap();
            }
            assert_eq!((reader.header_seen, reader.message_left), (0, 0));
        }
    }

    #[test]
    fn a_frame_over_the_bound_is_refused_from_its_header_alone() {
        // The second message announces 101 bytes; only its header arrives.
        let body = [frame(100), frame(101)[..FRAME_HEADER].to_vec()].concat();
        for cut in [1, 4, 6, body.len()] {
            let mut reader = FrameReader::new(100);
            let status = body
                .chunks(cut)
                .find_map(|chunk| reader.read(chunk).err())
                .expect("refused");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert_eq!(
                status.message(),
                "request message of 101 bytes is larger than the limit of 100 bytes"
            );
        }
    }

    #[tokio::test]
    async fn metadata_over_the_bound_is_refused_before_the_call() {
        use tower::ServiceExt;
        let handler = tower::service_fn(|_: HttpRequest| async {
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let service = MessageSizeLayer::new(1024).layer(handler);
        let call = |padding: usize| {
            http::Request::builder()
                .uri("/shop.v1.Shop/List")
                .header("x-padding", "p".repeat(padding))
                .body(tonic::body::Body::empty())
                .unwrap()
        };
        let answer = service.clone().oneshot(call(1000)).await.unwrap();
        assert!(answer.headers().get("grpc-status").is_none());
        let answer = service.oneshot(call(40_000)).await.unwrap();
        let status = Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .starts_with("request metadata of 40041 bytes"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn the_body_fails_with_the_status_tonic_passes_on() {
        let huge = frame(5000)[..FRAME_HEADER + 10].to_vec();
        let body = BoundedFrames::new(
            tonic::body::Body::new(http_body_util::Full::new(Bytes::from(huge))),
            4096,
            MESSAGE_ARRIVAL_TIMEOUT,
        );
        let error = tonic::body::Body::new(body).collect().await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    }

    /// A request body whose chunks a test sends through a channel.
    struct Sent(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Sent {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    /// A body sending each of `parts` after its pause (seconds), then
    /// ending, or stalling for ever when `stall`.
    fn sent(parts: Vec<(u64, Vec<u8>)>, stall: bool) -> BoundedFrames {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for (pause, part) in parts {
                tokio::time::sleep(Duration::from_secs(pause)).await;
                tx.send(Bytes::from(part)).await.unwrap();
            }
            if stall {
                tx.closed().await;
            }
        });
        BoundedFrames::new(
            tonic::body::Body::new(Sent(rx)),
            4096,
            MESSAGE_ARRIVAL_TIMEOUT,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_stalls_halfway_fails_after_the_arrival_timeout() {
        let message = frame(1000);
        let body = sent(vec![(1, message[..500].to_vec())], true);
        let began = tokio::time::Instant::now();
        let error = tokio::time::timeout(
            Duration::from_secs(60),
            tonic::body::Body::new(body).collect(),
        )
        .await
        .expect("the stalled body fails")
        .unwrap_err();
        assert_eq!(error.code(), tonic::Code::DeadlineExceeded);
        // Counted from the message's first byte, not from the call's start.
        assert_eq!(
            began.elapsed(),
            Duration::from_secs(1) + MESSAGE_ARRIVAL_TIMEOUT
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_but_whole_messages_and_pauses_between_messages_pass() {
        // Each message arrives in two halves 6 s apart: within the bound.
        // Between the messages the client waits 30 s: not a message's time.
        let (first, second) = (frame(1000), frame(1000));
        let body = sent(
            vec![
                (0, first[..500].to_vec()),
                (6, first[500..].to_vec()),
                (30, second[..3].to_vec()),
                (6, second[3..].to_vec()),
            ],
            false,
        );
        let bytes = tonic::body::Body::new(body)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(bytes.len(), 2 * 1005);
    }
}
