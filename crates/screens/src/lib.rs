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

pub use downstreams::{DownstreamArgs, Downstreams};

/// AIP-158 page sizes: zero means `default`, larger than `max` is coerced
/// to `max`, negative is INVALID_ARGUMENT.
pub fn page_size(requested: i32, default: i32, max: i32) -> Result<i32, tonic::Status> {
    match requested {
        n if n < 0 => Err(tonic::Status::invalid_argument(
            "page_size must not be negative",
        )),
        0 => Ok(default),
        n => Ok(n.min(max)),
    }
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

    fn from_optional(
        wanted: bool,
        service: &'static str,
        result: Option<Result<T, tonic::Status>>,
    ) -> Self {
        match (wanted, result) {
            (false, _) | (true, None) => Part::Skipped,
            (true, Some(Ok(value))) => Part::Ready(value),
            (true, Some(Err(status))) => {
                tracing::warn!(service, code = ?status.code(), message = status.message(), "optional part degraded");
                Part::Degraded
            }
        }
    }
}

/// The version of an answer: a short digest of its encoded bytes, so an
/// app that presents it back can be told "unchanged" instead of getting
/// the same bytes again. Equal answers (same data, mask and screen) have
/// equal versions.
pub fn version_token(encoded: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(encoded)[..12])
}
