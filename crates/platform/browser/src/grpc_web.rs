//! Checks grpc-web requests before translating them, so malformed input gets
//! a clear status instead of a decoder error deep in the stack.
//!
//! The grpc-web protocol has no client streaming: every request body is
//! exactly one length-prefixed message (base64-encoded in the `-text`
//! variants). That makes the body small and bounded, so the guard reads it
//! whole (never more than the limit), decodes it once, checks the framing
//! and passes binary frames on to the translation, with `Accept` naming
//! the format to answer in. What it refuses:
//!
//! | input                                   | status             |
//! |-----------------------------------------|--------------------|
//! | grpc-web with a method other than POST  | INVALID_ARGUMENT (HTTP 405) |
//! | text mode body that is not base64       | INVALID_ARGUMENT   |
//! | fewer than 5 bytes of frame header      | INVALID_ARGUMENT   |
//! | frame longer than the body              | INVALID_ARGUMENT   |
//! | no message, or more than one            | INVALID_ARGUMENT   |
//! | compressed or trailer frame in a request | INVALID_ARGUMENT  |
//! | reserved flag bits set in the frame     | INVALID_ARGUMENT   |
//! | message or body over the size limit     | RESOURCE_EXHAUSTED |
//!
//! Native gRPC (`application/grpc`) passes untouched; below the
//! translation, `tailor_interceptors::message_size` holds both wires to the
//! same bound, which `tailor_runtime::stack` hands this guard too. Other
//! content types never get here: the content-type guard
//! (`tailor_interceptors::protocol`) refuses them first.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tonic::Status;
use tower::{Layer, Service};

use tailor_interceptors::protocol::{Wire, refusal};
use tailor_interceptors::{HttpRequest, HttpResponse};

/// Length of a gRPC frame header: a flags byte and a big-endian u32.
const FRAME_HEADER: usize = 5;

/// Adds [`GrpcWebGuard`] to a stack.
#[derive(Debug, Clone, Copy)]
pub struct GrpcWebGuardLayer {
    max_message_bytes: usize,
}

impl GrpcWebGuardLayer {
    /// Refuses request messages larger than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl<S> Layer<S> for GrpcWebGuardLayer {
    type Service = GrpcWebGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebGuard {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct GrpcWebGuard<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> Service<HttpRequest> for GrpcWebGuard<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // The content-type guard outside has refused what is neither.
        let wire = match Wire::of(request.headers()) {
            Some(wire) if wire.is_grpc_web() => wire,
            _ => return Box::pin(self.inner.call(request)),
        };
        if request.method() != Method::POST {
            let status = Status::invalid_argument(format!(
                "grpc-web calls are POST requests, not {}",
                request.method()
            ));
            return ready(refusal(status, StatusCode::METHOD_NOT_ALLOWED, wire));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max_message = self.max_message_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match read_body(body, max_message, wire).await {
                Ok(bytes) => bytes,
                Err(status) => return Ok(refused(status, wire)),
            };
            let frames = match request_frames(bytes, wire, max_message) {
                Ok(frames) => frames,
                Err(status) => return Ok(refused(status, wire)),
            };
            // Decoded once, here: the translation below gets binary frames
            // and is told in `Accept` which format to answer in.
            let mut parts = parts;
            answer_in_kind(&mut parts.headers, wire);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(Wire::GrpcWeb.response_content_type()),
            );
            let request = HttpRequest::from_parts(parts, tonic::body::Body::new(Full::new(frames)));
            inner.call(request).await
        })
    }
}

/// The translation answers in the format `Accept` names exactly, binary
/// otherwise. Clients that send text without naming a format in `Accept`
/// (or with a list) expect text back: say so in the form it understands.
fn answer_in_kind(headers: &mut http::HeaderMap, wire: Wire) {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = accept.contains("application/grpc-web-text")
        || (wire == Wire::GrpcWebText && !accept.contains("application/grpc-web"));
    let format = if text {
        "application/grpc-web-text"
    } else {
        "application/grpc-web"
    };
    headers.insert(header::ACCEPT, HeaderValue::from_static(format));
}

fn ready(
    response: HttpResponse,
) -> Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>> {
    Box::pin(async move { Ok(response) })
}

fn refused(status: Status, wire: Wire) -> HttpResponse {
    refusal(status, StatusCode::OK, wire)
}

/// The most body bytes a request with one message of `max_message` bytes
/// can need.
fn body_limit(max_message: usize, wire: Wire) -> usize {
    let frame = max_message + FRAME_HEADER;
    match wire {
        // base64 of a frame, padded, plus room for line breaks.
        Wire::GrpcWebText => frame.div_ceil(3) * 4 + 1024,
        _ => frame,
    }
}

async fn read_body(
    body: tonic::body::Body,
    max_message: usize,
    wire: Wire,
) -> Result<Bytes, Status> {
    let too_large = || {
        Status::resource_exhausted(format!(
            "request message is larger than the limit of {max_message} bytes"
        ))
    };
    let collected = Limited::new(body, body_limit(max_message, wire))
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                too_large()
            } else {
                Status::invalid_argument(format!("request body could not be read: {error}"))
            }
        })?;
    Ok(collected.to_bytes())
}

/// Decodes a `-text` body: base64 in one piece or in several padded pieces
/// (clients may encode each frame on its own), whitespace ignored.
fn decode_text(text: &[u8]) -> Result<Vec<u8>, Status> {
    let invalid = || Status::invalid_argument("grpc-web-text body is not valid base64");
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !compact.len().is_multiple_of(4) {
        return Err(invalid());
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut decoded = Vec::with_capacity(compact.len() / 4 * 3);
    for quad in compact.chunks_exact(4) {
        let mut out = [0u8; 3];
        let n = engine.decode_slice(quad, &mut out).map_err(|_| invalid())?;
        decoded.extend_from_slice(&out[..n]);
    }
    Ok(decoded)
}

/// What the guard makes of a grpc-web request body read whole: the one
/// binary message frame to hand to the translation (the body itself, or
/// the base64 of a `-text` body decoded), or the status the caller gets.
///
/// Public so that the decoder can be exercised on its own (the fuzz
/// targets in `fuzz/` call it); the guard calls nothing else.
pub fn request_frames(body: Bytes, wire: Wire, max_message_bytes: usize) -> Result<Bytes, Status> {
    let frames = decode_body(body, wire)?;
    check_frames(&frames, max_message_bytes)?;
    Ok(frames)
}

/// The frames of a request body: base64-decoded in text mode.
fn decode_body(body: Bytes, wire: Wire) -> Result<Bytes, Status> {
    match wire {
        Wire::GrpcWebText => decode_text(&body).map(Bytes::from),
        _ => Ok(body),
    }
}

/// Checks that `frames` is exactly one well-formed, uncompressed message
/// frame.
fn check_frames(frames: &[u8], max_message: usize) -> Result<(), Status> {
    if frames.is_empty() {
        return Err(Status::invalid_argument("request holds no message"));
    }
    if frames.len() < FRAME_HEADER {
        return Err(Status::invalid_argument(format!(
            "truncated grpc-web frame: {} bytes, a frame header alone is {FRAME_HEADER}",
            frames.len()
        )));
    }
    let flags = frames[0];
    let length = u32::from_be_bytes([frames[1], frames[2], frames[3], frames[4]]) as usize;
    if flags & 0x80 != 0 {
        return Err(Status::invalid_argument(
            "a request may not carry a trailers frame",
        ));
    }
    if flags & 0x01 != 0 {
        return Err(Status::invalid_argument(
            "compressed request messages are not accepted over grpc-web",
        ));
    }
    // The other bits are reserved: tonic's decoder would refuse them with
    // an INTERNAL status the caller cannot act on.
    if flags != 0 {
        return Err(Status::invalid_argument(format!(
            "grpc-web frame has reserved flag bits set ({flags:#04x})"
        )));
    }
    if length > max_message {
        return Err(Status::resource_exhausted(format!(
            "request message of {length} bytes is larger than the limit of {max_message} bytes"
        )));
    }
    let rest = frames.len() - FRAME_HEADER;
    if length > rest {
        return Err(Status::invalid_argument(format!(
            "grpc-web frame announces {length} bytes but the body holds only {rest}"
        )));
    }
    if rest > length {
        return Err(Status::invalid_argument(
            "request holds more than one message; grpc-web calls send exactly one",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        frame
    }

    fn text(bytes: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    #[test]
    fn one_frame_passes_in_both_modes() {
        let body = frame(b"\x0a\x03abc");
        check_frames(&body, 100).unwrap();
        let decoded = decode_body(text(&body).into(), Wire::GrpcWebText).unwrap();
        assert_eq!(decoded, body);
        // An empty message is a valid frame (all fields default).
        check_frames(&frame(b""), 100).unwrap();
    }

    #[test]
    fn text_may_come_in_separately_padded_pieces() {
        let body = frame(b"hello");
        let (a, b) = body.split_at(4);
        let mut pieces = text(a);
        pieces.extend(text(b));
        pieces.extend(b"\r\n");
        assert_eq!(decode_text(&pieces).unwrap(), body);
    }

    #[test]
    fn malformed_frames_are_named() {
        let cases: Vec<(Vec<u8>, Wire, tonic::Code, &str)> = vec![
            (
                vec![0, 0, 0],
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "truncated",
            ),
            (
                vec![],
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "no message",
            ),
            (
                frame(b"abc")[..6].to_vec(),
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "announces 3 bytes but the body holds only 1",
            ),
            (
                [frame(b"a"), frame(b"b")].concat(),
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "more than one message",
            ),
            (
                frame(&[7; 101]),
                Wire::GrpcWeb,
                tonic::Code::ResourceExhausted,
                "101 bytes",
            ),
            (
                b"AAAA*AAA".to_vec(),
                Wire::GrpcWebText,
                tonic::Code::InvalidArgument,
                "not valid base64",
            ),
            (
                b"AAAAA".to_vec(),
                Wire::GrpcWebText,
                tonic::Code::InvalidArgument,
                "not valid base64",
            ),
            (
                [vec![0x80], frame(b"")[1..].to_vec()].concat(),
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "trailers frame",
            ),
            // Found by the grpc_web_frames fuzz target: a flags byte with
            // only reserved bits set passed the guard, and tonic's decoder
            // then answered INTERNAL.
            (
                vec![0x0a, 0, 0, 0, 0],
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "reserved flag bits set (0x0a)",
            ),
            (
                text(&[0x02, 0, 0, 0, 1, 0x08]),
                Wire::GrpcWebText,
                tonic::Code::InvalidArgument,
                "reserved flag bits",
            ),
            (
                [vec![0x40], frame(b"")[1..].to_vec()].concat(),
                Wire::GrpcWeb,
                tonic::Code::InvalidArgument,
                "reserved flag bits",
            ),
        ];
        for (body, wire, code, needle) in cases {
            let status = decode_body(body.clone().into(), wire)
                .and_then(|frames| check_frames(&frames, 100))
                .unwrap_err();
            assert_eq!(status.code(), code, "{body:?}");
            assert!(
                status.message().contains(needle),
                "{:?} should mention {needle:?}",
                status.message()
            );
        }
    }
}
