//! [`CallerLayer`]: a downstream service's admission. Only a BFF, named by
//! the client certificate of the connection, may call; the user it calls
//! for comes from the identity token that BFF signed, never from the
//! request.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tailor_interceptors::access_log::CallNotes;
use tailor_interceptors::context::CallingClient;
use tailor_interceptors::{BoxFuture, HttpRequest, HttpResponse, status_response};
use tonic::Status;
use tower::{Layer, Service};

use crate::identity::{IDENTITY_HEADER, IdentityVerifier};
use crate::tls::Connection;

/// Admits calls from the allowed BFFs only; see the module docs.
#[derive(Debug, Clone)]
pub struct CallerLayer {
    server: &'static str,
    allowed: Arc<[String]>,
    verifier: Arc<IdentityVerifier>,
}

impl CallerLayer {
    /// Admission to the service `server` for the clients `allowed`
    /// (certificate names, `web-bff`).
    pub fn new(server: &'static str, allowed: impl IntoIterator<Item = String>) -> Self {
        Self {
            server,
            allowed: allowed.into_iter().collect(),
            verifier: Arc::new(IdentityVerifier::new(server)),
        }
    }
}

impl<S> Layer<S> for CallerLayer {
    type Service = CallerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`CallerLayer`].
#[derive(Debug, Clone)]
pub struct CallerService<S> {
    inner: S,
    layer: CallerLayer,
}

impl CallerLayer {
    /// Who calls, or why the call is refused.
    fn admit(&self, request: &mut HttpRequest) -> Result<(), Status> {
        let peer = match request.extensions().get::<Connection>() {
            Some(Connection::Tls(Some(peer))) => peer.clone(),
            Some(Connection::Tls(None)) => {
                return Err(Status::unauthenticated(
                    "a client certificate is required: only the BFFs may call this service",
                ));
            }
            Some(Connection::Plaintext) | None => {
                return Err(Status::unauthenticated(
                    "this port accepts mutual TLS only (plaintext health checks are served on the admin port)",
                ));
            }
        };
        let Some(caller) = peer.named(&self.allowed) else {
            return Err(Status::permission_denied(format!(
                "only the BFFs may call {}",
                self.server
            )));
        };
        let notes = request.extensions().get::<CallNotes>().cloned();
        if let Some(notes) = &notes {
            notes.record_via(caller);
        }
        let token = request
            .headers()
            .get(IDENTITY_HEADER)
            .map(|v| {
                v.to_str().map_err(|_| {
                    Status::unauthenticated("the caller's identity token is not valid")
                })
            })
            .transpose()?;
        if let Some(token) = token {
            let identity = self.verifier.verify(token, caller, &peer)?;
            if let Some(notes) = &notes {
                notes.record_caller(&identity.subject);
            }
            request.extensions_mut().insert(identity);
        }
        request
            .extensions_mut()
            .insert(CallingClient(caller.to_owned()));
        Ok(())
    }
}

impl<S> Service<HttpRequest> for CallerService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        match self.layer.admit(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(async move { Ok(status_response(status)) }),
        }
    }
}
