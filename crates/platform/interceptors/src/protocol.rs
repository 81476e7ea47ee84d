//! Which wire format a request speaks, and the refusal of everything a
//! server does not speak. Every server answers native gRPC
//! (`application/grpc[+proto]`); a BFF that admits browsers also grpc-web
//! (`application/grpc-web[+proto]`, `application/grpc-web-text[+proto]`).
//! Anything else, a form post or a JSON body or no content type at all, is
//! answered HTTP 415 with INVALID_ARGUMENT naming what came, before it
//! reaches a decoder deep in the stack.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{HeaderMap, StatusCode};
use tonic::Status;
use tower::{Layer, Service};

use crate::{HttpRequest, HttpResponse};

/// A request's wire format, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `application/grpc[+proto]`.
    Native,
    /// `application/grpc-web[+proto]`: binary frames.
    GrpcWeb,
    /// `application/grpc-web-text[+proto]`: base64 frames.
    GrpcWebText,
}

impl Wire {
    /// The format `headers` announce; `None` when it is no gRPC format.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/grpc-web-text" | "application/grpc-web-text+proto" => {
                Some(Wire::GrpcWebText)
            }
            "application/grpc-web" | "application/grpc-web+proto" => Some(Wire::GrpcWeb),
            e if e == "application/grpc" || e.starts_with("application/grpc+") => {
                Some(Wire::Native)
            }
            _ => None,
        }
    }

    /// The content type an answer in this format carries.
    pub fn response_content_type(self) -> &'static str {
        match self {
            Wire::GrpcWebText => "application/grpc-web-text+proto",
            Wire::GrpcWeb => "application/grpc-web+proto",
            Wire::Native => "application/grpc",
        }
    }

    /// Whether this is one of the browser formats.
    pub fn is_grpc_web(self) -> bool {
        self != Wire::Native
    }
}

/// An answer that carries only `status`, with the HTTP status a plain HTTP
/// client reads and the content type of `wire`.
pub fn refusal(status: Status, http_status: StatusCode, wire: Wire) -> HttpResponse {
    let mut response = status.into_http::<tonic::body::Body>();
    *response.status_mut() = http_status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wire.response_content_type()),
    );
    response
}

/// Adds [`ContentTypeGuard`] to a stack.
#[derive(Debug, Clone, Copy)]
pub struct ContentTypeLayer {
    grpc_web: bool,
}

impl ContentTypeLayer {
    /// Admits native gRPC, and grpc-web too when `grpc_web` is set.
    pub fn new(grpc_web: bool) -> Self {
        Self { grpc_web }
    }
}

impl<S> Layer<S> for ContentTypeLayer {
    type Service = ContentTypeGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ContentTypeGuard {
            inner,
            grpc_web: self.grpc_web,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ContentTypeGuard<S> {
    inner: S,
    grpc_web: bool,
}

impl<S> Service<HttpRequest> for ContentTypeGuard<S>
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

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let refused = match Wire::of(request.headers()) {
            Some(Wire::Native) => None,
            Some(_) if self.grpc_web => None,
            Some(_) => Some(
                "this server speaks native gRPC (application/grpc) only, not grpc-web".to_owned(),
            ),
            None => {
                let shown = request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
                let accepted = if self.grpc_web {
                    "gRPC (application/grpc) or grpc-web (application/grpc-web[-text][+proto])"
                } else {
                    "gRPC (application/grpc)"
                };
                Some(format!("content-type {shown} is not {accepted}"))
            }
        };
        match refused {
            None => Box::pin(self.inner.call(request)),
            Some(message) => {
                let response = refusal(
                    Status::invalid_argument(message),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Wire::Native,
                );
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    #[test]
    fn formats_are_told_apart_by_their_content_type() {
        assert_eq!(Wire::of(&headers("application/grpc")), Some(Wire::Native));
        assert_eq!(
            Wire::of(&headers("application/grpc+proto")),
            Some(Wire::Native)
        );
        assert_eq!(
            Wire::of(&headers("application/grpc-web")),
            Some(Wire::GrpcWeb)
        );
        assert_eq!(
            Wire::of(&headers("Application/GRPC-Web-Text+proto; charset=utf-8")),
            Some(Wire::GrpcWebText)
        );
        assert_eq!(Wire::of(&headers("application/json")), None);
        assert_eq!(Wire::of(&HeaderMap::new()), None);
    }
}
