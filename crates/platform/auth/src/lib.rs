//! Authentication and scope checks, the same for every client type: the
//! BFF picks an [`Authenticator`] (JWT bearer for web and mobile, API keys
//! for partners) and an [`AuthPolicy`] naming which methods may be called
//! anonymously and which scopes a method needs. The established
//! [`Identity`] travels as a request extension to the handler and, through
//! the call context, to downstream services.
//!
//! Health and reflection are always open: probes and `grpcurl list` must
//! not need credentials.

#![forbid(unsafe_code)]

mod api_key;
mod cli;
mod jwt;
mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderMap;
use tonic::Status;
use tower::{Layer, Service};

pub use api_key::{
    API_KEY_HEADER, ApiKey, ApiKeyAuthenticator, ApiKeyRecord, ApiKeyStore, hash_secret,
};
pub use cli::{DEVELOPMENT_JWT_SECRET, JwtArgs};
pub use jwt::{Claims, DEFAULT_MAX_TOKEN_LIFETIME_SECS, JwtAuthenticator, JwtKey, mint_hs256};
pub use session::{
    CSRF_HEADER, CookiePolicy, SESSION_COOKIE, SessionAuthenticator, SessionStore,
    hash_session_handle, new_session_handle, session_handle,
};

use tailor_interceptors::access_log::CallNotes;
use tailor_interceptors::context::Identity;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};

/// A boxed future, as authenticators that look up stores return.
pub use tailor_interceptors::BoxFuture;

/// Why a call was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The method needs credentials and none came.
    #[error("missing credentials")]
    Missing,
    /// Credentials came and are not acceptable; the reason is safe to show
    /// (it names what is wrong with the token, never what was expected).
    #[error("invalid credentials: {0}")]
    Invalid(&'static str),
    /// Credentials came in a way the server does not trust (a session
    /// cookie without the CSRF header, or from a foreign origin).
    #[error("refused: {0}")]
    Forbidden(&'static str),
    /// Authenticated, but without the scope the method needs.
    #[error("missing scope {0}")]
    MissingScope(String),
    /// The credential store could not be read.
    #[error("credential store unavailable")]
    StoreUnavailable,
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Invalid(_) => {
                Status::unauthenticated(error.to_string())
            }
            AuthError::MissingScope(_) | AuthError::Forbidden(_) => {
                Status::permission_denied(error.to_string())
            }
            AuthError::StoreUnavailable => Status::unavailable(error.to_string()),
        }
    }
}

/// Establishes who is calling from request metadata.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(None)` when the request carries none of the credentials this
    /// authenticator understands; an error when it carries bad ones.
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>>;
}

/// Tries authenticators in order and takes the first that recognises the
/// request's credentials (the web BFF accepts a session cookie or a bearer).
pub struct FirstOf(pub Vec<Arc<dyn Authenticator>>);

impl Authenticator for FirstOf {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            for authenticator in &self.0 {
                if let Some(identity) = authenticator.authenticate(headers).await? {
                    return Ok(Some(identity));
                }
            }
            Ok(None)
        })
    }
}

/// Which methods need what. Methods are full gRPC paths
/// (`/tailor.web.v1.ShopService/PlaceOrder`) or service prefixes ending in
/// `/` (`/tailor.partner.v1.PartnerService/`).
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    anonymous: Vec<String>,
    scopes: HashMap<String, String>,
}

impl AuthPolicy {
    /// Everything needs credentials except health and reflection.
    pub fn new() -> Self {
        Self::default()
    }

    /// `method` may be called without credentials; credentials that are
    /// sent anyway are still checked (a bad token is never ignored).
    pub fn allow_anonymous(mut self, method: impl Into<String>) -> Self {
        self.anonymous.push(method.into());
        self
    }

    /// `method` needs `scope`.
    pub fn require_scope(mut self, method: impl Into<String>, scope: impl Into<String>) -> Self {
        self.scopes.insert(method.into(), scope.into());
        self
    }

    fn matches(pattern: &str, path: &str) -> bool {
        if pattern.ends_with('/') {
            path.starts_with(pattern)
        } else {
            path == pattern
        }
    }

    fn is_anonymous(&self, path: &str) -> bool {
        self.anonymous.iter().any(|p| Self::matches(p, path))
    }

    fn scope_for(&self, path: &str) -> Option<&str> {
        self.scopes.get(path).map(String::as_str)
    }
}

/// Adds [`AuthService`] to a stack.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<dyn Authenticator>,
    policy: Arc<AuthPolicy>,
}

impl AuthLayer {
    /// Authenticates with `authenticator` under `policy`.
    pub fn new(authenticator: Arc<dyn Authenticator>, policy: AuthPolicy) -> Self {
        Self {
            authenticator,
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
            policy: self.policy.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<dyn Authenticator>,
    policy: Arc<AuthPolicy>,
}

impl<S> Service<HttpRequest> for AuthService<S>
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

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        let path = request.uri().path().to_owned();
        if tailor_interceptors::is_probe(&path) {
            return Box::pin(self.inner.call(request));
        }
        // Take the service that was polled ready; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let outcome = authenticator.authenticate(request.headers()).await;
            let identity = match outcome {
                Ok(Some(identity)) => identity,
                Ok(None) if policy.is_anonymous(&path) => return inner.call(request).await,
                Ok(None) => return Ok(status_response(AuthError::Missing.into())),
                Err(error) => return Ok(status_response(error.into())),
            };
            // The access log, outside this layer, names the caller too.
            if let Some(notes) = request.extensions().get::<CallNotes>() {
                notes.record_caller(&identity.subject);
            }
            if let Some(scope) = policy.scope_for(&path)
                && !identity.has_scope(scope)
            {
                return Ok(status_response(
                    AuthError::MissingScope(scope.to_owned()).into(),
                ));
            }
            request.extensions_mut().insert(identity);
            inner.call(request).await
        })
    }
}

/// The caller a handler acts for, as the auth layer established it;
/// UNAUTHENTICATED when the method was reached without credentials.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<&Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .ok_or_else(|| Status::unauthenticated("sign in to call this method"))
}

/// The credential in `authorization: Bearer <token>`, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
