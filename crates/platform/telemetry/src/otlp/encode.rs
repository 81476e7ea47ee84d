//! Spans straight to OTLP protobuf bytes, field by field with prost's
//! wire primitives, without building `opentelemetry-proto` messages first:
//! no `String` per attribute key or value, no cloned resource or scope per
//! span. Every message is written in two passes over the same data, its
//! length first (a length-delimited field needs it up front), then its
//! bytes, in field-number order as prost writes them, so the output equals
//! `prost::Message::encode` of what `opentelemetry-proto`'s
//! `From<SpanData>` conversion builds.
//!
//! Field numbers and enum values follow `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto`.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// `ScopeSpans.spans`: the field every encoded span is framed as.
pub(crate) const SCOPE_SPANS_SPANS: u32 = 2;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const FLAG_IS_REMOTE: u32 = 0x200;

// --- wire primitives: the length a field takes, and writing it -------------

fn len_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn str_field_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        len_field_len(tag, value.len())
    }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn fixed64_field_len(tag: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 8 }
}

fn fixed32_field_len(tag: u32, value: u32) -> usize {
    if value == 0 { 0 } else { key_len(tag) + 4 }
}

fn put_len_prefix(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn put_bytes(tag: u32, value: &[u8], out: &mut Vec<u8>) {
    put_len_prefix(tag, value.len(), out);
    out.extend_from_slice(value);
}

fn put_str(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        put_bytes(tag, value.as_bytes(), out);
    }
}

fn put_varint(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

fn put_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn put_fixed32(tag: u32, value: u32, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Nanoseconds since the Unix epoch; 0 for a time before it.
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

// --- common.v1: AnyValue, ArrayValue, KeyValue, InstrumentationScope -------

/// A value of a kind this encoder does not know yet (the API's enums are
/// non-exhaustive), sent as its text.
fn unknown_text(value: &impl std::fmt::Display) -> String {
    value.to_string()
}

// The bodies of `AnyValue` holding one scalar. Its `value` is a oneof: set,
// it is written even when it holds a default (`false`, `0`, `""`).

fn string_value_len(s: &str) -> usize {
    len_field_len(1, s.len())
}

fn bool_value_len() -> usize {
    key_len(2) + 1
}

fn int_value_len(i: i64) -> usize {
    key_len(3) + encoded_len_varint(i as u64)
}

fn double_value_len() -> usize {
    key_len(4) + 8
}

fn put_string_value(s: &str, out: &mut Vec<u8>) {
    put_bytes(1, s.as_bytes(), out);
}

fn put_bool_value(b: bool, out: &mut Vec<u8>) {
    encode_key(2, WireType::Varint, out);
    encode_varint(u64::from(b), out);
}

fn put_int_value(i: i64, out: &mut Vec<u8>) {
    encode_key(3, WireType::Varint, out);
    encode_varint(i as u64, out);
}

fn put_double_value(f: f64, out: &mut Vec<u8>) {
    encode_key(4, WireType::SixtyFourBit, out);
    out.extend_from_slice(&f.to_bits().to_le_bytes());
}

/// The body of `AnyValue` for `value`.
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::String(s) => string_value_len(s.as_str()),
        Value::Bool(_) => bool_value_len(),
        Value::I64(i) => int_value_len(*i),
        Value::F64(_) => double_value_len(),
        Value::Array(array) => len_field_len(5, array_value_len(array)),
        other => string_value_len(&unknown_text(other)),
    }
}

fn put_any_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(s) => put_string_value(s.as_str(), out),
        Value::Bool(b) => put_bool_value(*b, out),
        Value::I64(i) => put_int_value(*i, out),
        Value::F64(f) => put_double_value(*f, out),
        Value::Array(array) => {
            put_len_prefix(5, array_value_len(array), out);
            put_array_value(array, out);
        }
        other => put_string_value(&unknown_text(other), out),
    }
}

/// The body of `ArrayValue`: `values` (1), each an `AnyValue`.
fn array_value_len(array: &Array) -> usize {
    match array {
        Array::Bool(values) => values.len() * len_field_len(1, bool_value_len()),
        Array::I64(values) => values
            .iter()
            .map(|i| len_field_len(1, int_value_len(*i)))
            .sum(),
        Array::F64(values) => values.len() * len_field_len(1, double_value_len()),
        Array::String(values) => values
            .iter()
            .map(|s| len_field_len(1, string_value_len(s.as_str())))
            .sum(),
        other => len_field_len(1, string_value_len(&unknown_text(other))),
    }
}

fn put_array_value(array: &Array, out: &mut Vec<u8>) {
    match array {
        Array::Bool(values) => {
            for b in values {
                put_len_prefix(1, bool_value_len(), out);
                put_bool_value(*b, out);
            }
        }
        Array::I64(values) => {
            for i in values {
                put_len_prefix(1, int_value_len(*i), out);
                put_int_value(*i, out);
            }
        }
        Array::F64(values) => {
            for f in values {
                put_len_prefix(1, double_value_len(), out);
                put_double_value(*f, out);
            }
        }
        Array::String(values) => {
            for s in values {
                put_len_prefix(1, string_value_len(s.as_str()), out);
                put_string_value(s.as_str(), out);
            }
        }
        other => {
            let text = unknown_text(other);
            put_len_prefix(1, string_value_len(&text), out);
            put_string_value(&text, out);
        }
    }
}

/// The body of `KeyValue`: `key` (1), `value` (2, always set).
fn key_value_len(kv: &KeyValue) -> usize {
    str_field_len(1, kv.key.as_str()) + len_field_len(2, any_value_len(&kv.value))
}

fn put_key_value(kv: &KeyValue, out: &mut Vec<u8>) {
    put_str(1, kv.key.as_str(), out);
    put_len_prefix(2, any_value_len(&kv.value), out);
    put_any_value(&kv.value, out);
}

/// A repeated `KeyValue` field `tag`.
fn attributes_len<'a>(tag: u32, attributes: impl IntoIterator<Item = &'a KeyValue>) -> usize {
    attributes
        .into_iter()
        .map(|kv| len_field_len(tag, key_value_len(kv)))
        .sum()
}

fn put_attributes<'a>(
    tag: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
    out: &mut Vec<u8>,
) {
    for kv in attributes {
        put_len_prefix(tag, key_value_len(kv), out);
        put_key_value(kv, out);
    }
}

/// The body of `InstrumentationScope`: `name` (1), `version` (2),
/// `attributes` (3).
fn scope_len(scope: &InstrumentationScope) -> usize {
    str_field_len(1, scope.name())
        + str_field_len(2, scope.version().unwrap_or_default())
        + attributes_len(3, scope.attributes())
}

fn put_scope(scope: &InstrumentationScope, out: &mut Vec<u8>) {
    put_str(1, scope.name(), out);
    put_str(2, scope.version().unwrap_or_default(), out);
    put_attributes(3, scope.attributes(), out);
}

/// The start of a `ScopeSpans` body, before its spans: `scope` (1).
pub(crate) fn scope_spans_head(scope: &InstrumentationScope) -> Vec<u8> {
    let len = scope_len(scope);
    let mut out = Vec::with_capacity(len_field_len(1, len));
    put_len_prefix(1, len, &mut out);
    put_scope(scope, &mut out);
    out
}

/// The end of a `ScopeSpans` body, after its spans: `schema_url` (3).
pub(crate) fn scope_spans_tail(scope: &InstrumentationScope) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(3, scope.schema_url().unwrap_or_default(), &mut out);
    out
}

// --- resource.v1 -----------------------------------------------------------

/// The process's part of every request: the `Resource` (attributes only)
/// and the resource's schema URL, encoded once.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedResource {
    /// `Resource` body: `attributes` (1).
    pub(crate) resource: Vec<u8>,
    /// `ResourceSpans.schema_url` (3), as a whole field, or empty.
    pub(crate) schema_url: Vec<u8>,
}

impl EncodedResource {
    /// Encodes `resource`'s attributes and schema URL.
    pub(crate) fn new(resource: &Resource) -> Self {
        let attributes: Vec<KeyValue> = resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let mut encoded = Vec::with_capacity(attributes_len(1, &attributes));
        put_attributes(1, &attributes, &mut encoded);
        let mut schema_url = Vec::new();
        put_str(
            3,
            resource.schema_url().unwrap_or_default(),
            &mut schema_url,
        );
        EncodedResource {
            resource: encoded,
            schema_url,
        }
    }
}

// --- trace.v1: Span, Event, Link, Status ------------------------------------

/// `SpanKind` as the proto numbers it.
fn kind_number(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// `Status.StatusCode` and the message only an error carries.
fn status_parts(status: &Status) -> (u64, &str) {
    match status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    }
}

/// The body of `Status`: `message` (2), `code` (3).
fn status_len(status: &Status) -> usize {
    let (code, message) = status_parts(status);
    str_field_len(2, message) + varint_field_len(3, code)
}

fn put_status(status: &Status, out: &mut Vec<u8>) {
    let (code, message) = status_parts(status);
    put_str(2, message, out);
    put_varint(3, code, out);
}

/// W3C trace flags with the OTLP bits saying whether the parent (or a
/// link's span) is remote.
fn span_flags(is_remote: bool, trace_flags: u8) -> u32 {
    let mut flags = u32::from(trace_flags) | FLAG_HAS_IS_REMOTE;
    if is_remote {
        flags |= FLAG_IS_REMOTE;
    }
    flags
}

/// The body of `Span.Event`: `time_unix_nano` (1), `name` (2),
/// `attributes` (3), `dropped_attributes_count` (4).
fn event_len(event: &opentelemetry::trace::Event) -> usize {
    fixed64_field_len(1, nanos(event.timestamp))
        + str_field_len(2, &event.name)
        + attributes_len(3, &event.attributes)
        + varint_field_len(4, u64::from(event.dropped_attributes_count))
}

fn put_event(event: &opentelemetry::trace::Event, out: &mut Vec<u8>) {
    put_fixed64(1, nanos(event.timestamp), out);
    put_str(2, &event.name, out);
    put_attributes(3, &event.attributes, out);
    put_varint(4, u64::from(event.dropped_attributes_count), out);
}

/// The trace state header; allocates only when there is one (a caller
/// sent `tracestate`).
fn trace_state_header(context: &SpanContext) -> String {
    context.trace_state().header()
}

/// The body of `Span.Link`: `trace_id` (1), `span_id` (2), `trace_state`
/// (3), `attributes` (4), `dropped_attributes_count` (5), `flags` (6).
fn link_len(link: &opentelemetry::trace::Link, trace_state: &str) -> usize {
    let context = &link.span_context;
    len_field_len(1, 16)
        + len_field_len(2, 8)
        + str_field_len(3, trace_state)
        + attributes_len(4, &link.attributes)
        + varint_field_len(5, u64::from(link.dropped_attributes_count))
        + fixed32_field_len(
            6,
            span_flags(context.is_remote(), context.trace_flags().to_u8()),
        )
}

fn put_link(link: &opentelemetry::trace::Link, trace_state: &str, out: &mut Vec<u8>) {
    let context = &link.span_context;
    put_bytes(1, &context.trace_id().to_bytes(), out);
    put_bytes(2, &context.span_id().to_bytes(), out);
    put_str(3, trace_state, out);
    put_attributes(4, &link.attributes, out);
    put_varint(5, u64::from(link.dropped_attributes_count), out);
    put_fixed32(
        6,
        span_flags(context.is_remote(), context.trace_flags().to_u8()),
        out,
    );
}

/// The body of `Span`, fields 1 to 16 in number order.
fn span_len(span: &SpanData, trace_state: &str) -> usize {
    let has_parent = span.parent_span_id != SpanId::INVALID;
    let events: usize = span
        .events
        .iter()
        .map(|e| len_field_len(11, event_len(e)))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|l| len_field_len(13, link_len(l, &trace_state_header(&l.span_context))))
        .sum();
    len_field_len(1, 16)
        + len_field_len(2, 8)
        + str_field_len(3, trace_state)
        + if has_parent { len_field_len(4, 8) } else { 0 }
        + str_field_len(5, &span.name)
        + varint_field_len(6, kind_number(&span.span_kind))
        + fixed64_field_len(7, nanos(span.start_time))
        + fixed64_field_len(8, nanos(span.end_time))
        + attributes_len(9, &span.attributes)
        + varint_field_len(10, u64::from(span.dropped_attributes_count))
        + events
        + varint_field_len(12, u64::from(span.events.dropped_count))
        + links
        + varint_field_len(14, u64::from(span.links.dropped_count))
        + len_field_len(15, status_len(&span.status))
        + fixed32_field_len(
            16,
            span_flags(
                span.parent_span_is_remote,
                span.span_context.trace_flags().to_u8(),
            ),
        )
}

/// Appends `span` to `out` as one `ScopeSpans.spans` field: its key, its
/// length and the `Span` message.
pub(crate) fn encode_span(span: &SpanData, out: &mut Vec<u8>) {
    let trace_state = trace_state_header(&span.span_context);
    let len = span_len(span, &trace_state);
    out.reserve(len_field_len(SCOPE_SPANS_SPANS, len));
    put_len_prefix(SCOPE_SPANS_SPANS, len, out);

    let context = &span.span_context;
    put_bytes(1, &context.trace_id().to_bytes(), out);
    put_bytes(2, &context.span_id().to_bytes(), out);
    put_str(3, &trace_state, out);
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(4, &span.parent_span_id.to_bytes(), out);
    }
    put_str(5, &span.name, out);
    put_varint(6, kind_number(&span.span_kind), out);
    put_fixed64(7, nanos(span.start_time), out);
    put_fixed64(8, nanos(span.end_time), out);
    put_attributes(9, &span.attributes, out);
    put_varint(10, u64::from(span.dropped_attributes_count), out);
    for event in span.events.iter() {
        put_len_prefix(11, event_len(event), out);
        put_event(event, out);
    }
    put_varint(12, u64::from(span.events.dropped_count), out);
    for link in span.links.iter() {
        let trace_state = trace_state_header(&link.span_context);
        put_len_prefix(13, link_len(link, &trace_state), out);
        put_link(link, &trace_state, out);
    }
    put_varint(14, u64::from(span.links.dropped_count), out);
    put_len_prefix(15, status_len(&span.status), out);
    put_status(&span.status, out);
    put_fixed32(
        16,
        span_flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
        out,
    );
}

// --- collector.trace.v1: the request ----------------------------------------

/// One scope's spans of a batch: what [`scope_spans_head`] and
/// [`scope_spans_tail`] give, and the spans as [`encode_span`] framed them.
pub(crate) struct ScopePart<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) spans: &'a [u8],
    pub(crate) tail: &'a [u8],
}

impl ScopePart<'_> {
    fn body_len(&self) -> usize {
        self.head.len() + self.spans.len() + self.tail.len()
    }
}

/// An `ExportTraceServiceRequest` holding one `ResourceSpans` (1) with
/// `resource` (1), a `ScopeSpans` (2) per scope and the schema URL (3).
pub(crate) fn export_request(resource: &EncodedResource, scopes: &[ScopePart<'_>]) -> Vec<u8> {
    let resource_spans_len = len_field_len(1, resource.resource.len())
        + scopes
            .iter()
            .map(|s| len_field_len(2, s.body_len()))
            .sum::<usize>()
        + resource.schema_url.len();
    let mut out = Vec::with_capacity(len_field_len(1, resource_spans_len));
    put_len_prefix(1, resource_spans_len, &mut out);
    put_bytes(1, &resource.resource, &mut out);
    for scope in scopes {
        put_len_prefix(2, scope.body_len(), &mut out);
        out.extend_from_slice(scope.head);
        out.extend_from_slice(scope.spans);
        out.extend_from_slice(scope.tail);
    }
    out.extend_from_slice(&resource.schema_url);
    out
}
