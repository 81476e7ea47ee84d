//! `x-request-id`: accept a well-formed one from the caller or mint one,
//! record it as a request extension, and return it in response metadata.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use tower::{Layer, Service};

use crate::context::RequestId;
use crate::{HttpRequest, HttpResponse};

/// The metadata key.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Adds [`RequestIdService`] to a stack.
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

/// Whether a caller's id is safe to log and pass on: short, printable,
/// no spaces. Anything else is replaced rather than rejected: a request id
/// is a courtesy, not a reason to fail a call.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A fresh id: 128 random bits in hex.
pub fn generate() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl<S> Service<HttpRequest> for RequestIdService<S>
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
        let id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable(v))
            .map(str::to_owned)
            .unwrap_or_else(generate);
        let value = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, value.clone());
        request.extensions_mut().insert(RequestId(id));
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_odd_ones() {
        assert!(acceptable("7f3a-01:web/checkout"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable(&"x".repeat(129)));
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
    }
}
