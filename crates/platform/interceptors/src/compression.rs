//! Response compression that never inflates. Servers enable gzip and zstd
//! (negotiated by tonic from `grpc-accept-encoding`; requests in either are
//! accepted); these helpers keep small messages plain, where compression
//! headers and dictionaries would cost more bytes than they save.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tower::Service;

use crate::HttpRequest;

/// Messages smaller than this are sent uncompressed.
pub const COMPRESS_ABOVE_BYTES: usize = 256;

/// Turns compression off for `response` when its message is small.
pub fn compress_if_worth_it<T: prost::Message>(
    mut response: tonic::Response<T>,
) -> tonic::Response<T> {
    if response.get_ref().encoded_len() < COMPRESS_ABOVE_BYTES {
        response.disable_compression();
    }
    response
}

/// Wraps a generated server so the responses of the named server-streaming
/// methods are never compressed: their messages are all small (status
/// updates), and tonic decides a stream's compression once, for every
/// message, from the request's `grpc-accept-encoding`.
#[derive(Debug, Clone)]
pub struct PlainStreams<S> {
    inner: S,
    methods: &'static [&'static str],
}

impl<S> PlainStreams<S> {
    /// `methods` are full paths (`/tailor.mobile.v1.ShopService/WatchOrder`).
    pub fn new(inner: S, methods: &'static [&'static str]) -> Self {
        Self { inner, methods }
    }
}

impl<S: NamedService> NamedService for PlainStreams<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<HttpRequest> for PlainStreams<S>
where
    S: Service<HttpRequest, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        if self.methods.contains(&request.uri().path()) {
            request.headers_mut().remove("grpc-accept-encoding");
        }
        self.inner.call(request)
    }
}
