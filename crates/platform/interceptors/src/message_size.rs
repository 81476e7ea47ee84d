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

/// Length of a gRPC frame header: a flags byte and a big-endian u32.
const FRAME_HEADER: usize = 5;

/// Adds [`MessageSize`] to a stack.
#[derive(Debug, Clone, Copy)]
pub struct MessageSizeLayer {
    max_message_bytes: usize,
}

impl MessageSizeLayer {
    /// Refuses request messages longer than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageSize {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct MessageSize<S> {
    inner: S,
    max_message_bytes: usize,
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
        Box::pin(self.inner.call(request.map(|body| {
            tonic::body::Body::new(BoundedFrames {
                inner: body,
                frames: FrameReader::new(max),
            })
        })))
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
}

impl Body for BoundedFrames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = this.frames.read(data.chunk())
        {
            return Poll::Ready(Some(Err(status)));
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
        let body = BoundedFrames {
            inner: tonic::body::Body::new(http_body_util::Full::new(Bytes::from(huge))),
            frames: FrameReader::new(4096),
        };
        let error = tonic::body::Body::new(body).collect().await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    }
}
