//! Retries of downstream reads on transient failures, within the caller's
//! deadline.
//!
//! Which calls may be retried is read from the contracts, not listed by
//! hand: a method whose descriptor says `idempotency_level =
//! NO_SIDE_EFFECTS` (a read) is retried when the call fails to connect or
//! answers UNAVAILABLE. `IDEMPOTENT` is not enough: such a method changes
//! state, and whether repeating it is safe is its caller's decision, made
//! with an idempotency key. Every other method, and every write in
//! particular, is sent exactly once: making a write safe to repeat is the
//! job of its idempotency key, decided by the caller, never by a retry
//! policy underneath it.
//!
//! A retry waits a short, growing, jittered pause and only happens when the
//! caller's deadline leaves room for it; the last failure is returned as it
//! came. Each retry is counted by target service (`rpc_client_retries_total`).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tower::{Service, ServiceExt};

use tailor_interceptors::context::CallContext;

use crate::metrics::DownstreamMetrics;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            first_backoff: Duration::from_millis(20),
        }
    }
}

/// The full paths (`/pkg.Service/Method`) of the methods an encoded
/// `FileDescriptorSet` marks as reads (`NO_SIDE_EFFECTS`).
pub fn read_methods(encoded_set: &[u8]) -> HashSet<String> {
    use prost_types::method_options::IdempotencyLevel;
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded_set) else {
        return HashSet::new();
    };
    let mut methods = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let level = method
                    .options
                    .as_ref()
                    .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                        o.idempotency_level()
                    });
                if level == IdempotencyLevel::NoSideEffects {
                    methods.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods
}

/// Wraps a downstream channel with retries of idempotent calls.
#[derive(Debug, Clone)]
pub struct RetryReads<S> {
    inner: S,
    methods: Arc<HashSet<String>>,
    policy: RetryPolicy,
    metrics: Option<Arc<DownstreamMetrics>>,
}

impl<S> RetryReads<S> {
    /// Retries the calls of `inner` to `methods` as `policy` says.
    pub fn new(inner: S, methods: Arc<HashSet<String>>, policy: RetryPolicy) -> Self {
        Self {
            inner,
            methods,
            policy,
            metrics: None,
        }
    }

    /// Counts every retry in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<DownstreamMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Whether an answer is worth another try: a trailers-only UNAVAILABLE.
fn unavailable(response: &HttpResponse) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"14")
}

impl<S> Service<HttpRequest> for RetryReads<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if !self.methods.contains(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // A unary request is one small message: keep it to send again.
            let body: Bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(status) => return Ok(status_response(status)),
            };
            let deadline = CallContext::current().and_then(|c| c.deadline);
            let mut backoff = policy.first_backoff;
            let mut attempt = 1;
            loop {
                let mut request = HttpRequest::new(tonic::body::Body::new(Full::new(body.clone())));
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = parts.uri.clone();
                *request.version_mut() = parts.version;
                *request.headers_mut() = parts.headers.clone();
                let outcome = match inner.ready().await {
                    Ok(ready) => ready.call(request).await,
                    Err(error) => Err(error),
                };
                let transient = match &outcome {
                    Ok(response) => unavailable(response),
                    Err(_) => true,
                };
                // Jitter: up to half the pause again, so retries from many
                // callers do not arrive together.
                let pause = backoff + backoff.mul_f64(rand::random::<f64>() / 2.0);
                let room = deadline.is_none_or(|d| d.remaining() > pause * 2);
                if !transient || attempt >= policy.max_attempts || !room {
                    return outcome;
                }
                tracing::debug!(
                    method = %parts.uri.path(),
                    attempt,
                    "retrying an idempotent call after a transient failure"
                );
                if let Some(metrics) = &metrics {
                    metrics.retried(parts.uri.path());
                }
                tokio::time::sleep(pause).await;
                backoff *= 2;
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_methods_the_contract_marks_as_reads_are_retried() {
        use prost_types::method_options::IdempotencyLevel;
        use prost_types::{
            FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto, MethodOptions,
            ServiceDescriptorProto,
        };
        let method = |name: &str, level: Option<IdempotencyLevel>| MethodDescriptorProto {
            name: Some(name.into()),
            options: level.map(|level| MethodOptions {
                idempotency_level: Some(level as i32),
                ..Default::default()
            }),
            ..Default::default()
        };
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                package: Some("shop.v1".into()),
                service: vec![ServiceDescriptorProto {
                    name: Some("Shop".into()),
                    method: vec![
                        method("Get", Some(IdempotencyLevel::NoSideEffects)),
                        method("Put", Some(IdempotencyLevel::Idempotent)),
                        method("Create", None),
                        method("Pay", Some(IdempotencyLevel::IdempotencyUnknown)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let methods = read_methods(&set.encode_to_vec());
        let mut listed: Vec<_> = methods.into_iter().collect();
        listed.sort();
        assert_eq!(listed, ["/shop.v1.Shop/Get"], "only reads are retried");
    }
}
