//! Fault injection for chaos, deadline and retry tests: [`InjectedLatency`]
//! delays every call to a server's own services and [`InjectedUnavailable`]
//! fails some of them (never health or reflection, so probes still see the
//! truth). Off unless a server is started with them; both can be on at once
//! (a slow *and* flaky hop), each its own layer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use crate::{HttpRequest, HttpResponse};

/// Adds [`InjectedLatency`] to a stack.
#[derive(Debug, Clone, Copy)]
pub struct InjectLatencyLayer(pub Duration);

impl<S> Layer<S> for InjectLatencyLayer {
    type Service = InjectedLatency<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InjectedLatency::new(inner, self.0)
    }
}

/// Adds [`InjectedUnavailable`] to a stack; every service it builds shares
/// one count, so "every n-th call" holds across connections.
#[derive(Debug, Clone)]
pub struct InjectUnavailableLayer {
    every: u64,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl InjectUnavailableLayer {
    /// Fails every `every`-th call (0 or 1: every call).
    pub fn new(every: u64) -> Self {
        Self {
            every: every.max(1),
            calls: Default::default(),
        }
    }
}

impl<S> Layer<S> for InjectUnavailableLayer {
    type Service = InjectedUnavailable<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InjectedUnavailable {
            inner,
            every: self.every,
            calls: self.calls.clone(),
        }
    }
}

/// Delays calls by a fixed amount before handing them on.
#[derive(Debug, Clone)]
pub struct InjectedLatency<S> {
    inner: S,
    delay: Duration,
}

impl<S> InjectedLatency<S> {
    /// Delays every call to `inner` by `delay`.
    pub fn new(inner: S, delay: Duration) -> Self {
        Self { inner, delay }
    }
}

impl<S> Service<HttpRequest> for InjectedLatency<S>
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
        if crate::is_probe(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            inner.call(request).await
        })
    }
}

/// Answers UNAVAILABLE instead of serving every `every`-th call (the 2nd,
/// 4th, ... for `every = 2`), like a server shedding load or a flaky hop.
/// Deterministic, so tests can count on it.
#[derive(Debug, Clone)]
pub struct InjectedUnavailable<S> {
    inner: S,
    every: u64,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S> InjectedUnavailable<S> {
    /// Fails every `every`-th call to `inner` (0 or 1: every call).
    pub fn new(inner: S, every: u64) -> Self {
        Self {
            inner,
            every: every.max(1),
            calls: Default::default(),
        }
    }
}

impl<S> Service<HttpRequest> for InjectedUnavailable<S>
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
        if crate::is_probe(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n.is_multiple_of(self.every) {
            let status = tonic::Status::unavailable("injected failure");
            return Box::pin(async move { Ok(crate::status_response(status)) });
        }
        Box::pin(self.inner.call(request))
    }
}
