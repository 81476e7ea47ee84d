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
pub use tailor_storage::PageSize;

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

/// Fetches an optional `section` of a screen when `wanted`: no call when it
/// is not, [`Part::Degraded`] when the call fails: logged, counted by
/// section (`tailor_degraded_parts_total`), and an event `tailor.degraded`
/// (with the section and the status code) on the call's server span. The screen's required parts are awaited with `?` instead.
pub async fn optional<T, F>(
    section: &'static str,
    wanted: bool,
    call: impl FnOnce() -> F,
) -> Part<T>
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    if !wanted {
        return Part::Skipped;
    }
    match call().await {
        Ok(value) => Part::Ready(value),
        Err(status) => {
            tracing::warn!(section, code = ?status.code(), message = status.message(), "optional part degraded");
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
            Part::Degraded
        }
    }
}
