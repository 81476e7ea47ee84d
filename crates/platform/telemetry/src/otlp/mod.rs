//! Spans out over OTLP/gRPC, cheaply: [`OtlpSpanProcessor`] encodes each
//! span as it ends straight into OTLP protobuf bytes (module `encode`) and
//! appends them to a shared buffer; an exporter thread sends the buffer,
//! wrapped in one `ExportTraceServiceRequest` with the process's resource
//! and the spans' scopes (each encoded once), as one unary
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` call.
//!
//! Why not the SDK's `BatchSpanProcessor` with `opentelemetry-otlp`'s
//! exporter: that path queues every `SpanData`, then converts it into
//! `opentelemetry-proto` structs (a `String` per attribute key and value,
//! the resource and scope cloned) and only then encodes them; allocation
//! and copying dominated its cost. Here a span costs one encoding pass into
//! a reused per-thread buffer and one copy under a short lock.
//!
//! Bounded, never blocking: beyond `OTEL_BSP_MAX_QUEUE_SIZE` spans, or
//! [`MAX_BUFFERED_BYTES`], an ending span is dropped and counted
//! ([`ExportStats::dropped`]). The exporter sends every
//! `OTEL_BSP_SCHEDULE_DELAY` (1 s by default), and as soon as
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans or [`EXPORT_AT_BYTES`] are
//! waiting. A failed export is logged once per run of failures and its
//! spans are dropped: never retried, so a missing collector costs no
//! memory. `force_flush` and `shutdown` export what is buffered and wait
//! for the answer.
//!
//! The exporter thread runs its own single-threaded Tokio runtime, so
//! flushing works from any thread, a runtime's worker included, and the
//! serving runtime never runs export work.

mod config;
mod encode;
mod exporter;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

pub use config::ExportConfig;
use encode::EncodedResource;
use exporter::{Command, Exporter};

/// Buffered span bytes at most; beyond, spans are dropped. Keeps every
/// request under the 4 MiB a gRPC server accepts by default.
pub const MAX_BUFFERED_BYTES: usize = 3 * 1024 * 1024;
/// Buffered span bytes that wake the exporter before its schedule.
pub const EXPORT_AT_BYTES: usize = 1024 * 1024;

/// A span processor exporting over OTLP/gRPC (see the module docs).
#[derive(Debug)]
pub struct OtlpSpanProcessor {
    shared: Arc<Shared>,
    exporter: Exporter,
}

/// What the processor and its exporter thread share.
#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Rung when the buffer passes the export batch size.
    wake: tokio::sync::Notify,
    resource: Mutex<Arc<EncodedResource>>,
    closed: AtomicBool,
    max_queue_size: usize,
    max_export_batch_size: usize,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Spans waiting for export, grouped by instrumentation scope.
#[derive(Debug, Default)]
struct Pending {
    scopes: Vec<ScopeBuffer>,
    spans: usize,
    bytes: usize,
    /// Whether the exporter has been woken for this buffer already.
    woken: bool,
}

/// One scope's encoded spans and the `ScopeSpans` fields around them.
#[derive(Debug)]
struct ScopeBuffer {
    scope: InstrumentationScope,
    head: Vec<u8>,
    tail: Vec<u8>,
    spans: Vec<u8>,
}

impl Pending {
    fn push(&mut self, scope: &InstrumentationScope, span: &[u8]) {
        let index = match self.scopes.iter().position(|s| &s.scope == scope) {
            Some(index) => index,
            None => {
                self.scopes.push(ScopeBuffer {
                    scope: scope.clone(),
                    head: encode::scope_spans_head(scope),
                    tail: encode::scope_spans_tail(scope),
                    spans: Vec::new(),
                });
                self.scopes.len() - 1
            }
        };
        self.scopes[index].spans.extend_from_slice(span);
        self.spans += 1;
        self.bytes += span.len();
    }

    /// Empties the buffer, keeping its scopes and its allocations.
    fn clear(&mut self) {
        for scope in &mut self.scopes {
            scope.spans.clear();
        }
        self.spans = 0;
        self.bytes = 0;
        self.woken = false;
    }
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic elsewhere while holding the lock leaves whole spans or
        // none: the buffer is still sound.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resource(&self) -> Arc<EncodedResource> {
        self.resource
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

thread_local! {
    /// Where a span is encoded before it is copied under the lock; reused.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer grown past this by one large span is given back.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Runs `f` with this thread's empty scratch buffer, or with a new one
/// while a thread's locals are being torn down.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut f = Some(f);
    let reused = SCRATCH.try_with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        scratch.clear();
        let result = (f.take()?)(&mut scratch);
        if scratch.capacity() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        Some(result)
    });
    match (reused, f) {
        (Ok(Some(result)), _) => result,
        (_, Some(f)) => f(&mut Vec::new()),
        (_, None) => unreachable!("the scratch closure ran but returned nothing"),
    }
}

impl OtlpSpanProcessor {
    /// A processor exporting as `config` says; starts its exporter thread.
    /// The endpoint is connected to lazily, at the first export.
    pub fn new(config: ExportConfig) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: tokio::sync::Notify::new(),
            resource: Mutex::new(Arc::new(EncodedResource::new(
                &Resource::builder_empty().build(),
            ))),
            closed: AtomicBool::new(false),
            max_queue_size: config.max_queue_size,
            max_export_batch_size: config.max_export_batch_size,
            counts: Counts::default(),
        });
        let exporter = Exporter::start(shared.clone(), config)?;
        Ok(OtlpSpanProcessor { shared, exporter })
    }

    /// A processor configured by the standard environment variables
    /// ([`ExportConfig::from_env`]).
    pub fn from_env() -> Result<Self, String> {
        Self::new(ExportConfig::from_env()?)
    }

    /// What the processor has done so far.
    pub fn stats(&self) -> ExportStats {
        ExportStats(self.shared.clone())
    }

    /// Asks the exporter thread to export what is buffered and waits, at
    /// most `timeout`, for the answer.
    fn export_now(&self, shutdown: bool, timeout: Duration) -> OTelSdkResult {
        let (done, answered) = std::sync::mpsc::channel();
        let command = if shutdown {
            Command::Shutdown(done)
        } else {
            Command::Flush(done)
        };
        self.exporter
            .send(command)
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match answered.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(
                OTelSdkError::InternalFailure("the span exporter thread stopped".into()),
            ),
        }
    }
}

impl SpanProcessor for OtlpSpanProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Relaxed) {
            shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let wake = with_scratch(|scratch| {
            encode::encode_span(&span, scratch);
            let mut pending = shared.pending();
            if pending.spans >= shared.max_queue_size
                || pending.bytes + scratch.len() > MAX_BUFFERED_BYTES
            {
                shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            pending.push(&span.instrumentation_scope, scratch);
            let full =
                pending.spans >= shared.max_export_batch_size || pending.bytes >= EXPORT_AT_BYTES;
            let wake = full && !pending.woken;
            pending.woken |= wake;
            wake
        });
        if wake {
            shared.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.export_now(false, self.exporter.timeout() + Duration::from_secs(1))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shared.closed.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.export_now(true, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self
            .shared
            .resource
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(EncodedResource::new(resource));
    }
}

/// Counts of an [`OtlpSpanProcessor`]'s spans, readable while it runs.
#[derive(Debug, Clone)]
pub struct ExportStats(Arc<Shared>);

impl ExportStats {
    /// Spans the receiver accepted.
    pub fn exported(&self) -> u64 {
        self.0.counts.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped because the buffer was full or the processor shut.
    pub fn dropped(&self) -> u64 {
        self.0.counts.dropped.load(Ordering::Relaxed)
    }

    /// Spans lost with failed exports, or rejected by the receiver.
    pub fn failed(&self) -> u64 {
        self.0.counts.failed.load(Ordering::Relaxed)
    }
}
