//! Traces, the way in: [`TraceLayer`] continues the W3C trace context a
//! call arrives with (`traceparent`, `tracestate` and `baggage`; grpc-web
//! calls carry them as HTTP headers) or starts a new trace, and runs the
//! call inside a server span named `<package.Service>/<Method>` with the
//! OpenTelemetry RPC attributes (`rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`, `server.address`), the client type, the request
//! id and, for partners, the tenant. Never a credential: no key, token or
//! cookie is read here.
//!
//! The span ends when the call really ends, as the access log's line is
//! written: after the last message of a stream, or when the client goes
//! away (CANCELLED). A status other than OK marks it an error. The span
//! reaches the handler as [`TraceContext`] (and so
//! [`crate::CallContext::trace`]) and is the current OpenTelemetry context
//! while the call's futures and body are polled, so downstream calls
//! (`tailor_channel::Outbound`) and store queries (`tailor-storage`) start
//! their spans as its children.
//!
//! The same layer opens a `tracing` span `call` (target `call_ids`) with
//! the trace id, span id and request id, so every log line written during
//! the call, the access line included, can carry them (JSON logs print
//! it). Health checks and CORS preflights are not calls anyone follows
//! across processes: they pass untraced.
//!
//! This module uses the `opentelemetry` API only. Which tracer provider and
//! propagators are installed (the OTLP exporter, the sampler, the W3C
//! propagators) is decided once per process by `tailor-telemetry`; without
//! them every span here is a no-op.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanKind, Status as SpanStatus, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::access_log::CallNotes;
use crate::context::{RequestId, TraceContext, client_type};
use crate::{HttpRequest, HttpResponse};

/// The instrumentation scope every Tailor span is recorded under.
pub const TRACER_NAME: &str = "tailor";

/// The tracer of the process's installed provider (a no-op one when none
/// is), for layers and channels to keep.
pub fn tracer() -> Arc<BoxedTracer> {
    Arc::new(global::tracer(TRACER_NAME))
}

/// Reads propagation fields from HTTP headers (gRPC metadata).
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes propagation fields into HTTP headers (gRPC metadata).
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The trace context (and baggage) `headers` carry, as the installed
/// propagators read it.
pub fn extract(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// Writes `cx`'s span and baggage into `headers` (`traceparent`,
/// `tracestate`, `baggage`), as the installed propagators write them.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(cx, &mut HeaderInjector(headers))
    });
}

/// `(package.Service, Method)` of a gRPC path `/package.Service/Method`.
fn service_and_method(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The span name and RPC attributes of a call to `path`, as the RPC
/// semantic conventions name them.
pub fn rpc_span_parts(path: &str) -> (String, Vec<KeyValue>) {
    let (service, method) = service_and_method(path);
    let name = path.strip_prefix('/').unwrap_or(path).to_owned();
    let attributes = vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_owned()),
        KeyValue::new("rpc.method", method.to_owned()),
    ];
    (name, attributes)
}

/// Starts a client span for a call to `path` on the downstream `service`,
/// a child of `parent`; returns the context holding it, to inject into the
/// request and end with [`finish`] or [`SpanBody`].
pub fn client_span(tracer: &BoxedTracer, path: &str, service: &str, parent: &Context) -> Context {
    let (name, mut attributes) = rpc_span_parts(path);
    attributes.push(KeyValue::new("server.address", service.to_owned()));
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

/// Ends `cx`'s span with the gRPC status `code` (`None`: the call was
/// abandoned, CANCELLED); any status but OK marks it an error.
pub fn end_span(cx: &Context, code: Option<Code>) {
    let span = cx.span();
    let code = code.unwrap_or(Code::Cancelled);
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
    if code != Code::Ok {
        span.set_status(SpanStatus::error(Cow::Borrowed(code.description())));
    }
    span.end();
}

fn status_of(headers: &HeaderMap) -> Option<Code> {
    Status::from_header_map(headers).map(|s| s.code())
}

/// Ends `cx`'s span with what a call answered, now if the answer carries
/// its status in its headers (or failed), else when its body ends.
pub fn finish<E>(cx: Context, result: Result<HttpResponse, E>) -> Result<HttpResponse, E> {
    match result {
        Ok(response) => Ok(SpanBody::wrap(response, cx, CallEnd::default())),
        Err(error) => {
            end_span(&cx, Some(Code::Unavailable));
            Err(error)
        }
    }
}

/// Adds [`TraceService`] to a stack.
#[derive(Clone)]
pub struct TraceLayer {
    server: &'static str,
    tracer: Arc<BoxedTracer>,
}

impl std::fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceLayer")
            .field("server", &self.server)
            .finish()
    }
}

impl TraceLayer {
    /// Traces the calls of `server` (`web-bff`, `catalog`) with the
    /// process's tracer as installed now.
    pub fn new(server: &'static str) -> Self {
        Self {
            server,
            tracer: tracer(),
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            server: self.server,
            tracer: self.tracer.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
    server: &'static str,
    tracer: Arc<BoxedTracer>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for TraceService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceService")
            .field("inner", &self.inner)
            .field("server", &self.server)
            .finish()
    }
}

impl<S> TraceService<S> {
    /// Starts the server span of `request` and notes it in the request.
    fn start(&self, request: &mut HttpRequest) -> (Context, tracing::Span, CallNotes) {
        let parent = extract(request.headers());
        let (name, mut attributes) = rpc_span_parts(request.uri().path());
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        let client = client_type(self.server);
        if client != "unknown" {
            attributes.push(KeyValue::new("tailor.client_type", client));
        }
        attributes.push(KeyValue::new("tailor.request_id", request_id.clone()));
        if let Some(host) = request.uri().host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = request.uri().port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let grpc_web = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web"));
        if grpc_web {
            attributes.push(KeyValue::new("tailor.grpc_web", true));
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(self.tracer.as_ref(), &parent);
        let cx = parent.with_span(span);
        let ids = cx.span().span_context().clone();
        let log = tracing::error_span!(
            target: "call_ids",
            "call",
            trace_id = %ids.trace_id(),
            span_id = %ids.span_id(),
            request_id = %request_id,
        );
        let notes = request
            .extensions()
            .get::<CallNotes>()
            .cloned()
            .unwrap_or_default();
        request.extensions_mut().insert(notes.clone());
        request.extensions_mut().insert(TraceContext(cx.clone()));
        (cx, log, notes)
    }
}

/// Whether a request is left untraced: health probes and CORS preflights.
fn untraced(request: &HttpRequest) -> bool {
    request.method() == http::Method::OPTIONS
        || request.uri().path().starts_with("/grpc.health.v1.")
}

impl<S> Service<HttpRequest> for TraceService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        if untraced(&request) {
            return Box::pin(self.inner.call(request));
        }
        let (cx, log, notes) = self.start(&mut request);
        let future = {
            let _entered = log.enter();
            let _attached = cx.clone().attach();
            self.inner.call(request)
        };
        let end = CallEnd {
            log,
            notes: Some(notes),
        };
        Box::pin(InSpan {
            inner: Some(Box::pin(future)),
            cx: Some(cx),
            end,
        })
    }
}

/// What a server span needs when its call ends: the `tracing` span of the
/// call's log lines, and the notes of layers below (the status grpc-web
/// hides in its body, the calling BFF, the caller).
pub struct CallEnd {
    log: tracing::Span,
    notes: Option<CallNotes>,
}

impl Default for CallEnd {
    /// A client span's end: no log span, no notes.
    fn default() -> Self {
        Self {
            log: tracing::Span::none(),
            notes: None,
        }
    }
}

impl CallEnd {
    fn status(&self) -> Option<Code> {
        self.notes.as_ref().and_then(CallNotes::status)
    }

    fn end(&self, cx: &Context, code: Option<Code>) {
        if let Some(notes) = &self.notes {
            let span = cx.span();
            if let Some(via) = notes.via() {
                span.set_attribute(KeyValue::new("tailor.client_type", client_type(via)));
                span.set_attribute(KeyValue::new("tailor.caller_service", via.to_owned()));
            }
            // A partner's calls are known by tenant; other callers' subjects
            // (user ids) are not span data.
            if let Some(tenant) = notes.caller().and_then(|c| c.strip_prefix("partner:")) {
                span.set_attribute(KeyValue::new("tailor.tenant", tenant.to_owned()));
            }
        }
        end_span(cx, code);
    }
}

/// The call's future, polled inside its spans; ends the span when dropped
/// unanswered.
struct InSpan<F> {
    inner: Option<Pin<Box<F>>>,
    cx: Option<Context>,
    end: CallEnd,
}

impl<F> Future for InSpan<F>
where
    F: Future<Output = Result<HttpResponse, Infallible>>,
{
    type Output = Result<HttpResponse, Infallible>;

    fn poll(mut self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (Some(inner), Some(cx)) = (this.inner.as_mut(), this.cx.as_ref()) else {
            return Poll::Pending;
        };
        let result = {
            let _entered = this.end.log.enter();
            let _attached = cx.clone().attach();
            std::task::ready!(inner.as_mut().poll(task))
        };
        this.inner = None;
        let cx = this.cx.take().expect("polled after the answer");
        let end = std::mem::take(&mut this.end);
        Poll::Ready(result.map(|response| SpanBody::wrap(response, cx, end)))
    }
}

impl<F> Drop for InSpan<F> {
    fn drop(&mut self) {
        if let Some(cx) = self.cx.take() {
            // The client went away before the answer: what the layers below
            // log on the way out belongs to this call.
            let _entered = self.end.log.enter();
            let _attached = cx.clone().attach();
            self.inner = None;
            self.end.end(&cx, None);
        }
    }
}

/// A response body that ends its call's span with the call: at its
/// trailers, at its end, on an error, or CANCELLED when dropped before.
pub struct SpanBody {
    inner: Option<tonic::body::Body>,
    cx: Option<Context>,
    end: CallEnd,
}

impl SpanBody {
    /// `response`, ending `cx`'s span now when its headers carry the
    /// status (a trailers-only answer), else when its body ends.
    pub fn wrap(response: HttpResponse, cx: Context, end: CallEnd) -> HttpResponse {
        if let Some(code) = status_of(response.headers()) {
            let _entered = end.log.enter();
            end.end(&cx, Some(code));
            return response;
        }
        response.map(|inner| {
            tonic::body::Body::new(SpanBody {
                inner: Some(inner),
                cx: Some(cx),
                end,
            })
        })
    }
}

impl Body for SpanBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        task: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let _entered = this.end.log.enter();
        let attached = this.cx.as_ref().map(|cx| cx.clone().attach());
        let frame = std::task::ready!(Pin::new(&mut *inner).poll_frame(task));
        let code = match &frame {
            Some(Ok(frame)) => match frame.trailers_ref() {
                Some(trailers) => Some(status_of(trailers).unwrap_or(Code::Ok)),
                // grpc-web's trailers are its last data frame.
                None if inner.is_end_stream() => Some(this.end.status().unwrap_or(Code::Ok)),
                None => None,
            },
            Some(Err(status)) => Some(status.code()),
            None => Some(this.end.status().unwrap_or(Code::Ok)),
        };
        drop(attached);
        if let Some(code) = code
            && let Some(cx) = this.cx.take()
        {
            this.end.end(&cx, Some(code));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for SpanBody {
    fn drop(&mut self) {
        let _entered = self.end.log.enter();
        if let Some(cx) = self.cx.take() {
            let _attached = cx.clone().attach();
            // The layers below write their last words (the access line)
            // as the body goes; inside the call's spans.
            self.inner = None;
            self.end.end(&cx, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_attributes_follow_the_rpc_conventions() {
        let (name, attributes) = rpc_span_parts("/tailor.web.v1.ShopService/GetProductPage");
        assert_eq!(name, "tailor.web.v1.ShopService/GetProductPage");
        let get = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(
            get("rpc.service").as_deref(),
            Some("tailor.web.v1.ShopService")
        );
        assert_eq!(get("rpc.method").as_deref(), Some("GetProductPage"));
    }

    #[test]
    fn headers_carry_propagation_fields_both_ways() {
        let mut headers = HeaderMap::new();
        HeaderInjector(&mut headers).set("traceparent", "00-abc-def-01".to_owned());
        HeaderInjector(&mut headers).set("bad key", "x".to_owned());
        let extractor = HeaderExtractor(&headers);
        assert_eq!(extractor.get("traceparent"), Some("00-abc-def-01"));
        assert_eq!(extractor.keys(), vec!["traceparent"]);
    }
}
