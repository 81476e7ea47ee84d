//! CORS for browser apps served from another origin than the BFF.
//!
//! Only origins on the allow-list get a grant; there is no wildcard, because
//! the grant includes credentials (the session cookie). Preflights are
//! answered here, cacheable for [`PREFLIGHT_MAX_AGE_SECS`]. A real request
//! from an origin that is not allowed is refused before any handler runs: a
//! browser would hide the answer anyway, and the call must not have effects.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tonic::Status;
use tower::{Layer, Service};

use tailor_interceptors::{HttpRequest, HttpResponse, status_response};

/// How long browsers may cache a preflight answer (Chromium caps at 7200).
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 7200;

/// Request headers grpc-web clients send, granted in preflights.
pub const ALLOWED_HEADERS: &str = "content-type, x-grpc-web, x-user-agent, grpc-timeout, \
     authorization, x-request-id, traceparent, tracestate, baggage, x-tailor-csrf";

/// Response headers a page's script may read.
pub const EXPOSED_HEADERS: &str = "grpc-status, grpc-message, grpc-status-details-bin, \
     x-request-id, grpc-encoding";

/// Why an origin list was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    /// `*` grants every site the user's cookies; name the origins instead.
    #[error("`*` is not an allowed origin: list the origins of your web apps")]
    Wildcard,
    /// Not of the form `scheme://host[:port]`.
    #[error("{0:?} is not an origin (expected scheme://host[:port], no path)")]
    Malformed(String),
}

/// The origins whose pages may call the BFF with the user's credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Arc<Vec<String>>);

impl fmt::Debug for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl AllowedOrigins {
    /// Parses origins such as `http://localhost:8080`; a trailing `/` is
    /// dropped, everything else must be exact.
    pub fn new<I, S>(origins: I) -> Result<Self, OriginError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for origin in origins {
            let origin = origin.as_ref().trim().trim_end_matches('/');
            if origin.is_empty() {
                continue;
            }
            if origin == "*" {
                return Err(OriginError::Wildcard);
            }
            let Some((scheme, authority)) = origin.split_once("://") else {
                return Err(OriginError::Malformed(origin.to_owned()));
            };
            if !matches!(scheme, "http" | "https")
                || authority.is_empty()
                || authority.contains(['/', '?', '#', '*', ' '])
            {
                return Err(OriginError::Malformed(origin.to_owned()));
            }
            parsed.push(origin.to_ascii_lowercase());
        }
        Ok(Self(Arc::new(parsed)))
    }

    /// Whether `origin` (an `Origin` header value) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The allowed origins.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Adds [`CorsService`] to a stack.
#[derive(Debug, Clone)]
pub struct CorsLayer {
    origins: AllowedOrigins,
}

impl CorsLayer {
    /// Grants exactly `origins`.
    pub fn new(origins: AllowedOrigins) -> Self {
        Self { origins }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = CorsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorsService {
            inner,
            origins: self.origins.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct CorsService<S> {
    inner: S,
    origins: AllowedOrigins,
}

fn vary_origin(response: &mut HttpResponse) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
}

fn preflight(origin: Option<HeaderValue>) -> HttpResponse {
    let mut response = HttpResponse::new(tonic::body::Body::empty());
    vary_origin(&mut response);
    let Some(origin) = origin else {
        *response.status_mut() = StatusCode::FORBIDDEN;
        return response;
    };
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
    );
    response
}

fn grant(response: &mut HttpResponse, origin: HeaderValue) {
    vary_origin(response);
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

impl<S> Service<HttpRequest> for CorsService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let origin = request.headers().get(header::ORIGIN).cloned();
        let allowed = origin
            .as_ref()
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| self.origins.allows(o));
        let is_preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if is_preflight {
            let response = preflight(origin.filter(|_| allowed));
            return Box::pin(async move { Ok(response) });
        }
        match origin {
            // Not a cross-origin browser call: native gRPC, or same origin.
            None => Box::pin(self.inner.call(request)),
            Some(origin) if allowed => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let mut response = call.await?;
                    grant(&mut response, origin);
                    Ok(response)
                })
            }
            Some(_) => {
                let mut response = status_response(Status::permission_denied(
                    "this origin may not call the API",
                ));
                vary_origin(&mut response);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
