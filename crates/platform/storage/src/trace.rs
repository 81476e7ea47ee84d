//! The client span of each unit of store work, for both engines.

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{SpanKind, Status as SpanStatus, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};

use crate::StorageError;

/// Starts the span `<system> <operation>` (`sqlite read`, `postgresql
/// write`) as a child of the current context: taken on the caller's task,
/// since the work may run where that context is not current. No SQL text
/// or value is recorded.
pub(crate) fn start(
    tracer: &BoxedTracer,
    system: &'static str,
    namespace: &str,
    operation: &'static str,
) -> Context {
    let parent = Context::current();
    let span = tracer
        .span_builder(format!("{system} {operation}"))
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", system),
            KeyValue::new("db.system", system),
            KeyValue::new("db.namespace", namespace.to_owned()),
            KeyValue::new("db.operation.name", operation),
        ])
        .start_with_context(tracer, &parent);
    parent.with_span(span)
}

/// Ends the span, marked failed with the kind of failure only (a message
/// may quote the data).
pub(crate) fn end<T>(cx: &Context, result: &Result<T, StorageError>) {
    let span = cx.span();
    if let Err(error) = result {
        let kind = match error {
            StorageError::Sqlite(_) => "sqlite",
            StorageError::Postgres(_) => "postgresql",
            _ => "storage",
        };
        span.set_attribute(KeyValue::new("error.type", kind));
        span.set_status(SpanStatus::error(kind));
    }
    span.end();
}
