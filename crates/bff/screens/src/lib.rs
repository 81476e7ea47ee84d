//! The screens every BFF serves, assembled from downstream data but not yet
//! shaped for any client: a product list with ratings and stock, a product
//! page from catalogue + stock + reviews + related products fetched
//! concurrently, placing an order (prices, reservation, idempotent create)
//! and watching it.
//!
//! Each BFF decides which parts it wants ([`page::PageParts`]) and maps the
//! result into its own messages. Required parts fail the screen; optional
//! parts that fail come back as [`Part::Degraded`] so the BFF can answer a
//! partial page marked as such. This crate knows nothing about web,
//! mobile or partner shapes, and nothing about authentication: the caller
//! passes the customer id it established.

#![forbid(unsafe_code)]

pub mod downstreams;
pub mod list;
pub mod order;
pub mod page;

#[cfg(test)]
mod fake;

pub use downstreams::{Downstreams, Transport};

/// A read mask of `fields`, or none (everything) when there are none.
fn read_mask(fields: &[&str]) -> Option<prost_types::FieldMask> {
    (!fields.is_empty()).then(|| prost_types::FieldMask {
        paths: fields.iter().map(|f| (*f).to_owned()).collect(),
    })
}
pub use tailor_storage::PageSize;

use std::future::Future;
use std::time::Duration;

/// The page size to ask for, as [`PageSize::of`] decides it, or
/// INVALID_ARGUMENT.
pub fn page_size(requested: i32, sizes: PageSize) -> Result<i32, tonic::Status> {
    sizes
        .of(requested)
        .map(|n| n as i32)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

/// One optional part of a screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<T> {
    /// Not asked for; no downstream call was made.
    Skipped,
    /// Asked for, but its downstream failed; the screen is partial.
    Degraded,
    /// Here it is.
    Ready(T),
}

impl<T> Part<T> {
    /// The value, if ready.
    pub fn ready(self) -> Option<T> {
        match self {
            Part::Ready(value) => Some(value),
            _ => None,
        }
    }

    /// The value by reference, if ready.
    pub fn as_ready(&self) -> Option<&T> {
        match self {
            Part::Ready(value) => Some(value),
            _ => None,
        }
    }

    /// Whether the part's downstream failed.
    pub fn is_degraded(&self) -> bool {
        matches!(self, Part::Degraded)
    }
}

/// How long a screen waits for an optional part before answering without
/// it: long enough for a healthy downstream under load (a read takes a few
/// milliseconds), short enough that a slow service costs the page at most
/// this much.
pub const OPTIONAL_PART_TIMEOUT: Duration = Duration::from_millis(250);

/// What a screen is made of, declared once per screen beside its code:
/// the parts it cannot be answered without (their failure fails the
/// screen, with the downstream's status), and the parts it may be answered
/// without, marked degraded (their failure, or no answer within
/// `optional_timeout`, leaves them out).
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    /// The screen's name in logs.
    pub name: &'static str,
    /// Parts the screen fails without.
    pub required: &'static [&'static str],
    /// Parts the screen may answer without.
    pub optional: &'static [&'static str],
    /// How long the screen waits for each optional part.
    pub optional_timeout: Duration,
}

impl Screen {
    /// Fetches the optional `section` of this screen when `wanted`: no call
    /// when it is not; [`Part::Degraded`] when the call fails or has not
    /// answered within the screen's `optional_timeout` (the call is then
    /// abandoned, which cancels it downstream). A degraded part is logged,
    /// counted by section (`tailor_degraded_parts_total`), and an event
    /// `tailor.degraded` (with the section and the status code) on the
    /// call's server span. The screen's required parts are awaited with
    /// `?` instead.
    pub async fn optional<T, F>(
        &self,
        section: &'static str,
        wanted: bool,
        call: impl FnOnce() -> F,
    ) -> Part<T>
    where
        F: Future<Output = Result<T, tonic::Status>>,
    {
        debug_assert!(
            self.optional.contains(&section),
            "{section} is not declared an optional part of the {}",
            self.name
        );
        if !wanted {
            return Part::Skipped;
        }
        let answer = match tokio::time::timeout(self.optional_timeout, call()).await {
            Ok(answer) => answer,
            Err(_elapsed) => Err(tonic::Status::deadline_exceeded(format!(
                "{section} did not answer within {} ms",
                self.optional_timeout.as_millis()
            ))),
        };
        match answer {
            Ok(value) => Part::Ready(value),
            Err(status) => {
                degraded(self.name, section, &status);
                Part::Degraded
            }
        }
    }
}

/// Reports the degraded `section` of `screen`: a log line, the metric,
/// and an event on the call's span.
fn degraded(screen: &'static str, section: &'static str, status: &tonic::Status) {
    tracing::warn!(screen, section, code = ?status.code(), message = status.message(), "optional part degraded");
    tailor_interceptors::metrics::degraded(section);
    if let Some(call) = tailor_interceptors::CallContext::current() {
        use opentelemetry::trace::TraceContextExt;
        call.trace.span().add_event(
            "tailor.degraded",
            vec![
                opentelemetry::KeyValue::new("tailor.section", section),
                opentelemetry::KeyValue::new("rpc.grpc.status_code", status.code() as i64),
            ],
        );
    }
}
