//! Deadlines: parse the caller's `grpc-timeout`, record it as a
//! [`Deadline`] extension (which `tailor_channel::Outbound` turns into
//! a cap on every downstream call), and answer `DEADLINE_EXCEEDED` when it
//! passes, both before the response starts and in the middle of a stream.
//!
//! tonic's own server timeout answers CANCELLED; clients retry on
//! DEADLINE_EXCEEDED differently, so Tailor serves with this layer instead.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tower::{Layer, Service};

use crate::context::Deadline;
use crate::{HttpRequest, HttpResponse, status_response};

/// The metadata key.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value: at most eight digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    // ASCII first: the unit is split off by byte, which must not land
    // inside a character.
    if !value.is_ascii() || value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value, truncating so a
/// downstream never gets more time than is left (eight digits at most).
pub fn format_grpc_timeout(duration: Duration) -> String {
    let micros = duration.as_micros().max(1);
    if micros < 100_000_000 {
        format!("{micros}u")
    } else {
        let millis = duration.as_millis();
        if millis < 100_000_000 {
            format!("{millis}m")
        } else {
            format!("{}S", duration.as_secs().min(99_999_999))
        }
    }
}

/// Adds [`DeadlineService`] to a stack.
#[derive(Debug, Clone, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
}

fn expired() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

impl<S> Service<HttpRequest> for DeadlineService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        let received = Instant::now();
        let timeout = match request.headers().get(GRPC_TIMEOUT_HEADER) {
            None => None,
            Some(value) => match value.to_str().ok().and_then(parse_grpc_timeout) {
                Some(timeout) => Some(timeout),
                None => {
                    let status = Status::invalid_argument("malformed grpc-timeout metadata");
                    return Box::pin(async move { Ok(status_response(status)) });
                }
            },
        };
        let Some(timeout) = timeout else {
            let response = self.inner.call(request);
            return Box::pin(response);
        };
        let deadline = received + timeout;
        request.extensions_mut().insert(Deadline(deadline));
        let response = self.inner.call(request);
        Box::pin(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            match tokio::time::timeout_at(deadline, response).await {
                Ok(Ok(response)) => Ok(response.map(|body| {
                    tonic::body::Body::new(DeadlineBody {
                        inner: body,
                        sleep: Box::pin(tokio::time::sleep_until(deadline)),
                        finished: false,
                    })
                })),
                Ok(Err(never)) => match never {},
                Err(_elapsed) => Ok(status_response(expired())),
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends with DEADLINE_EXCEEDED trailers when the
    /// deadline passes before the body is done (a server stream).
    struct DeadlineBody {
        #[pin]
        inner: tonic::body::Body,
        sleep: Pin<Box<tokio::time::Sleep>>,
        finished: bool,
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if frame.is_none() {
                *this.finished = true;
            }
            return Poll::Ready(frame);
        }
        ready!(this.sleep.as_mut().poll(cx));
        *this.finished = true;
        let mut trailers = HeaderMap::new();
        // Encoding our own fixed status cannot fail.
        let _ = expired().add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_garbage() {
        assert_eq!(parse_grpc_timeout("50m"), Some(Duration::from_millis(50)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        // The last two were found by the grpc_timeout fuzz target: a
        // character of several bytes at the end made the split panic.
        for bad in [
            "",
            "m",
            "10",
            "123456789m",
            "-5m",
            "5x",
            "1.5S",
            "5\u{b5}",
            ";9m\0\r\u{a38e3}",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_within_eight_digits_and_never_longer_than_left() {
        assert_eq!(format_grpc_timeout(Duration::from_millis(50)), "50000u");
        assert_eq!(format_grpc_timeout(Duration::ZERO), "1u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(1000)), "1000000m");
        for d in [Duration::from_nanos(1500), Duration::from_secs(200_000)] {
            let text = format_grpc_timeout(d);
            assert!(text.len() <= 9);
            assert!(parse_grpc_timeout(&text).unwrap() <= d.max(Duration::from_micros(1)));
        }
    }
}
