//! One structured access-log line per call, through `tracing` (target
//! `access`): method, gRPC status, latency, request id, the server's client
//! type and the caller. The line is written when the call really ends: after
//! the last message of a stream, or when the client goes away (status
//! `cancelled`). [`CallStats`] counts the same outcomes for health checks
//! and tests, and the same moment records the call's metrics
//! ([`crate::metrics`]): its count by status, latency, bytes, the calls in
//! flight, and a rate-limit refusal noted by the limits layer.
//!
//! The layer stands outermost but for the request id, so refusals by every
//! layer inside it (CORS, content type, grpc-web framing, routing, auth,
//! limits) are logged and counted like any other answer. Where an inner
//! layer hides the status from it (grpc-web carries trailers inside the
//! body), the error-mapping layer notes the final status in the call's
//! [`CallNotes`], and so does the auth layer with the caller.
//!
//! A call refused before any work (a rate limit or quota noted by the
//! limits layer, a busy server's admission or shedding, any
//! RESOURCE_EXHAUSTED) is counted like every call but gets no line of its
//! own: it is added to a once-a-second summary per caller and reason
//! ([`crate::refusals`]), so a flood of refusals cannot fill a disk.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::context::{Identity, RequestId};
use crate::metrics::{self, ClientType, ServerMetrics, SlotId};
use crate::refusals::{RefusalLog, Refused};
use crate::{HttpRequest, HttpResponse};

/// Counts of calls by outcome, shared by every connection of a server.
#[derive(Debug, Default)]
pub struct CallStats {
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// The methods the server routes, which metrics name.
    methods: std::sync::OnceLock<Vec<String>>,
}

/// A snapshot of [`CallStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCounts {
    /// Calls received.
    pub started: u64,
    /// Calls that ended with OK.
    pub succeeded: u64,
    /// Calls that ended with another status.
    pub failed: u64,
    /// Calls the client abandoned before they ended.
    pub cancelled: u64,
}

impl CallStats {
    /// The counts once every call received has ended (each logged), or as
    /// they are after five seconds: the last log line of a call may be
    /// written just after its client read the end.
    pub async fn settled(&self) -> CallCounts {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let counts = self.snapshot();
            let ended = counts.succeeded + counts.failed + counts.cancelled;
            if ended >= counts.started || tokio::time::Instant::now() >= deadline {
                return counts;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Names the methods the server routes (full paths): metrics label a
    /// call with its method only when it is one of these (or health or
    /// reflection), so made-up paths cannot grow the series. Takes effect
    /// for access log layers built afterwards; the first naming counts.
    pub fn label_methods(&self, methods: impl IntoIterator<Item = String>) {
        let _ = self.methods.set(methods.into_iter().collect());
    }

    /// The counts now.
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            started: self.started.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }
}

/// What layers below the access log learn about a call that the access log
/// cannot see from where it stands: the final status (grpc-web carries it
/// inside the body) and the authenticated caller. A request extension the
/// access log puts there and reads back; the first note of each counts.
#[derive(Debug, Clone, Default)]
pub struct CallNotes(Arc<Notes>);

#[derive(Debug, Default)]
struct Notes {
    status: std::sync::OnceLock<Code>,
    caller: std::sync::OnceLock<String>,
    via: std::sync::OnceLock<String>,
    refusal: std::sync::OnceLock<(String, &'static str)>,
    overload: std::sync::OnceLock<&'static str>,
}

impl CallNotes {
    /// Notes `code` as the call's status.
    pub fn record_status(&self, code: Code) {
        let _ = self.0.status.set(code);
    }

    /// Notes the authenticated caller.
    pub fn record_caller(&self, subject: &str) {
        let _ = self.0.caller.set(subject.to_owned());
    }

    /// Notes that a `limit` (`rate` or `quota`) of `plan` refused the call,
    /// for the refusals metric; `plan` must be one the limiter knows, so
    /// the label stays bounded.
    pub fn record_refusal(&self, plan: &str, limit: &'static str) {
        let _ = self.0.refusal.set((plan.to_owned(), limit));
    }

    /// Notes that the server refused the call because it was busy:
    /// `reason` is `admission` (the calling client type's share of a
    /// downstream service was full) or `shed` (the server's bound on calls
    /// in flight was reached), for the overload metric and the access
    /// log's refusal summaries.
    pub fn record_overload(&self, reason: &'static str) {
        let _ = self.0.overload.set(reason);
    }

    /// Notes the BFF a downstream call came from, as its client
    /// certificate names it.
    pub fn record_via(&self, client: &str) {
        let _ = self.0.via.set(client.to_owned());
    }

    /// The status noted, if any.
    pub fn status(&self) -> Option<Code> {
        self.0.status.get().copied()
    }

    /// The authenticated caller noted, if any.
    pub fn caller(&self) -> Option<&str> {
        self.0.caller.get().map(String::as_str)
    }

    /// Why a busy server refused the call, if it did.
    pub fn overload(&self) -> Option<&'static str> {
        self.0.overload.get().copied()
    }

    /// The calling BFF noted, if any.
    pub fn via(&self) -> Option<&str> {
        self.0.via.get().map(String::as_str)
    }
}

/// Adds [`AccessLogService`] to a stack.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    server: &'static str,
    stats: Arc<CallStats>,
    metrics: Arc<ServerMetrics>,
    refusals: Arc<RefusalLog>,
}

impl AccessLogLayer {
    /// Logs as `server` (for example `web-bff` or `catalog`), counting into
    /// `stats` and the metrics of `server`, which name the methods given to
    /// [`CallStats::label_methods`].
    pub fn new(server: &'static str, stats: Arc<CallStats>) -> Self {
        let routed = stats
            .methods
            .get()
            .into_iter()
            .flatten()
            .map(String::as_str);
        let metrics = Arc::new(ServerMetrics::new(server, routed));
        Self {
            server,
            stats,
            metrics,
            refusals: RefusalLog::new(server),
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            server: self.server,
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
            refusals: self.refusals.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct AccessLogService<S> {
    inner: S,
    server: &'static str,
    stats: Arc<CallStats>,
    metrics: Arc<ServerMetrics>,
    refusals: Arc<RefusalLog>,
}

/// What is known about a call while it runs; logged once when it ends.
struct CallRecord {
    server: &'static str,
    method: String,
    request_id: String,
    caller: String,
    notes: CallNotes,
    started: Instant,
    stats: Arc<CallStats>,
    metrics: Arc<ServerMetrics>,
    refusals: Arc<RefusalLog>,
    slot: SlotId,
    client_type: &'static str,
    logged: bool,
}

impl CallRecord {
    fn finish(&mut self, code: Option<Code>) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        let latency = self.started.elapsed().as_secs_f64();
        let latency_ms = latency * 1000.0;
        let bound = self.metrics.bound(self.slot);
        bound.active.add(-1);
        bound.duration.record(latency);
        self.metrics
            .count_call(self.slot, code.unwrap_or(Code::Cancelled));
        if let Some((plan, limit)) = self.notes.0.refusal.get() {
            self.metrics.count_refusal(self.client_type, plan, limit);
        }
        let overload = self.notes.0.overload.get().copied();
        if let Some(reason) = overload {
            self.metrics.count_overload(self.client_type, reason);
        }
        let caller = self.notes.0.caller.get().unwrap_or(&self.caller);
        let via = self.notes.0.via.get().map_or("", String::as_str);
        let refused = match (self.notes.0.refusal.get(), overload, code) {
            (Some((_, limit)), _, _) => Some(*limit),
            (None, Some(reason), _) => Some(reason),
            (None, None, Some(Code::ResourceExhausted)) => Some("resource_exhausted"),
            _ => None,
        };
        if let (Some(reason), Some(code)) = (refused, code) {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.refusals.note(Refused {
                caller,
                via,
                reason,
                method: &self.method,
                code,
                request_id: &self.request_id,
            });
            return;
        }
        let status = match code {
            Some(Code::Ok) => {
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                "OK".to_owned()
            }
            Some(code) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                format!("{code:?}")
            }
            None => {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                "cancelled by client".to_owned()
            }
        };
        let quiet = self.method.starts_with("/grpc.health.v1.");
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "access",
                    server = self.server,
                    method = %self.method,
                    status = %status,
                    latency_ms = format_args!("{latency_ms:.2}"),
                    request_id = %self.request_id,
                    // Callers choose these strings: escaped, so a line
                    // break in a token's subject cannot forge a log line.
                    caller = %caller.escape_debug(),
                    via = %via.escape_debug(),
                    "call"
                )
            };
        }
        if quiet {
            line!(debug);
        } else {
            line!(info);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(None);
    }
}

fn status_of(headers: &HeaderMap) -> Option<Code> {
    Status::from_header_map(headers).map(|s| s.code())
}

impl<S> Service<HttpRequest> for AccessLogService<S>
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
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        // A layer above (the trace layer) may have put the notes there
        // already, to read them too.
        let notes = request
            .extensions()
            .get::<CallNotes>()
            .cloned()
            .unwrap_or_default();
        request.extensions_mut().insert(notes.clone());
        let caller = request
            .extensions()
            .get::<Identity>()
            .map(|i| i.subject.clone())
            .unwrap_or_default();
        let client_type = self
            .metrics
            .client_type(request.extensions().get::<ClientType>());
        let grpc_web = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web"));
        let slot = self
            .metrics
            .slot(request.uri().path(), client_type, grpc_web);
        let bound = self.metrics.bound(slot);
        bound.active.add(1);
        let request_size = bound.request_size.clone();
        let request = request.map(|inner| {
            tonic::body::Body::new(CountedBody {
                inner,
                bytes: request_size,
            })
        });
        let mut record = CallRecord {
            server: self.server,
            method: request.uri().path().to_owned(),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(|id| id.0.clone())
                .unwrap_or_default(),
            caller,
            notes: notes.clone(),
            started: Instant::now(),
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
            refusals: self.refusals.clone(),
            slot,
            client_type,
            logged: false,
        };
        let response = self.inner.call(request);
        let server = self.server;
        Box::pin(async move {
            let response = metrics::scope(server, client_type, response).await?;
            if let Some(code) = status_of(response.headers()) {
                record.finish(Some(code));
                return Ok(response);
            }
            Ok(response.map(|inner| {
                tonic::body::Body::new(LoggedBody {
                    inner,
                    record: Some(record),
                    notes,
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    struct LoggedBody {
        #[pin]
        inner: tonic::body::Body,
        record: Option<CallRecord>,
        notes: CallNotes,
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        if let (Some(Ok(frame)), Some(record)) = (&frame, this.record.as_ref())
            && let Some(data) = frame.data_ref()
        {
            let bound = record.metrics.bound(record.slot);
            bound.response_size.add(data.len() as u64);
        }
        let code = match &frame {
            Some(Ok(frame)) => match frame.trailers_ref() {
                Some(trailers) => Some(status_of(trailers).unwrap_or(Code::Ok)),
                // The server may stop polling once the body says it ended
                // (grpc-web's trailers are its last data frame).
                None if this.inner.is_end_stream() => Some(this.notes.status().unwrap_or(Code::Ok)),
                None => None,
            },
            Some(Err(status)) => Some(status.code()),
            None => Some(this.notes.status().unwrap_or(Code::Ok)),
        };
        if let Some(code) = code
            && let Some(mut record) = this.record.take()
        {
            record.finish(Some(code));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that counts its bytes as they are read.
    struct CountedBody {
        #[pin]
        inner: tonic::body::Body,
        bytes: opentelemetry::metrics::BoundCounter<u64>,
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.bytes.add(data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;

    /// Everything the test's subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// The partner BFF's limits layer refusing every call of `acme`'s key,
    /// but for one that the handler answers.
    fn limited(
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, Infallible>> + Send {
        let notes = request.extensions().get::<CallNotes>().cloned().unwrap();
        notes.record_caller("partner:acme");
        let admitted = request.uri().path() == "/a.B/Admitted";
        if !admitted {
            notes.record_refusal("free", "rate");
        }
        async move {
            Ok(crate::status_response(if admitted {
                Status::ok("")
            } else {
                Status::resource_exhausted("rate limit")
            }))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_refusals_is_a_couple_of_summary_lines_that_count_them_all() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let stats = Arc::new(CallStats::default());
        let service =
            AccessLogLayer::new("partner-bff", stats.clone()).layer(tower::service_fn(limited));
        let request = |path: &str| {
            http::Request::builder()
                .uri(path)
                .body(tonic::body::Body::empty())
                .unwrap()
        };
        for _ in 0..10_000 {
            service
                .clone()
                .oneshot(request("/a.B/Refused"))
                .await
                .unwrap();
        }
        service
            .clone()
            .oneshot(request("/a.B/Admitted"))
            .await
            .unwrap();
        // The summaries are written within a second.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let lines = captured.lines();
        let summaries: Vec<&String> = lines.iter().filter(|l| l.contains("refusals=")).collect();
        assert!(
            (1..=2).contains(&summaries.len()),
            "{} summary lines: {lines:#?}",
            summaries.len()
        );
        let total: u64 = summaries
            .iter()
            .map(|line| {
                let count = line.split("refusals=").nth(1).unwrap();
                count.split(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(total, 10_000);
        assert!(
            summaries
                .iter()
                .all(|l| l.contains("reason=\"rate\"") && l.contains("partner:acme"))
        );
        // The admitted call has its own line, and nothing else was written.
        let admitted: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("/a.B/Admitted"))
            .collect();
        assert_eq!(admitted.len(), 1, "{lines:#?}");
        assert_eq!(lines.len(), summaries.len() + 1, "{lines:#?}");
        // Every call is still counted.
        let counts = stats.snapshot();
        assert_eq!(counts.started, 10_001);
        assert_eq!((counts.failed, counts.succeeded), (10_000, 1));
    }
}
