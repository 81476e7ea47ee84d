//! Bounds on the strings callers send, the same on every server: a field
//! over its bound is INVALID_ARGUMENT naming the field, before any work,
//! memory or downstream call is spent on it. The message-size layer bounds
//! a whole request; these bound each field within it, so that no single
//! string can be large enough to cost anything (a search over the whole
//! catalogue, a key in a table, a line in a log).
//!
//! Which fields a server checks is decided where it reads its requests
//! (`tailor-screens` for what several BFFs accept, each downstream service
//! for its own contract); the bounds are decided here, once.

use tonic::Status;

/// Ids of products, orders, categories and warehouses. The shop's own are
/// under 32 characters.
pub const MAX_ID_CHARS: usize = 64;

/// Idempotency keys (AIP-155), printable ASCII.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// Opaque page tokens (AIP-158) and feed cursors. Servers hand out tokens
/// of well under 200 characters; a feed cursor wraps a page token.
pub const MAX_TOKEN_CHARS: usize = 1024;

/// Characters a search may hold.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Words a search may hold: a shopper types a few; every word is one more
/// condition over the whole catalogue.
pub const MAX_SEARCH_WORDS: usize = 8;

/// INVALID_ARGUMENT naming `field` when `value` holds more than `max`
/// characters.
pub fn at_most(field: &str, value: &str, max: usize) -> Result<(), Status> {
    // A string of at most `max` bytes holds at most `max` characters:
    // counting is needed only for longer ones.
    if value.len() <= max || value.chars().count() <= max {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "{field} must be at most {max} characters"
    )))
}

/// [`at_most`] for every value of a repeated field, named `field[]`.
pub fn each_at_most(field: &str, values: &[String], max: usize) -> Result<(), Status> {
    for value in values {
        at_most(&format!("{field}[]"), value, max)?;
    }
    Ok(())
}

/// An id: [`MAX_ID_CHARS`].
pub fn id(field: &str, value: &str) -> Result<(), Status> {
    at_most(field, value, MAX_ID_CHARS)
}

/// A page token or cursor: [`MAX_TOKEN_CHARS`].
pub fn token(field: &str, value: &str) -> Result<(), Status> {
    at_most(field, value, MAX_TOKEN_CHARS)
}

/// A search in the field `query`: at most [`MAX_SEARCH_WORDS`] words and
/// [`MAX_SEARCH_CHARS`] characters.
pub fn search(query: &str) -> Result<(), Status> {
    // Words first: they are what a long search usually is too many of,
    // and counting stops at the first word over the bound.
    if query.split_whitespace().nth(MAX_SEARCH_WORDS).is_some() {
        return Err(Status::invalid_argument(format!(
            "query must hold at most {MAX_SEARCH_WORDS} words"
        )));
    }
    at_most("query", query, MAX_SEARCH_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_over_their_bound_are_refused_naming_the_field() {
        assert!(at_most("order_id", "ord-1", 5).is_ok());
        // Characters, not bytes: five letters of two bytes each fit.
        assert!(at_most("order_id", "ééééé", 5).is_ok());
        let status = at_most("order_id", "ord-12", 5).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "order_id must be at most 5 characters");

        let ids = vec!["p1".to_owned(), "p".repeat(MAX_ID_CHARS + 1)];
        let status = each_at_most("product_ids", &ids, MAX_ID_CHARS).unwrap_err();
        assert_eq!(
            status.message(),
            "product_ids[] must be at most 64 characters"
        );
    }

    #[test]
    fn searches_are_bounded_in_words_and_characters() {
        assert!(search("").is_ok());
        assert!(search(&["mug"; 8].join(" ")).is_ok());
        let words = search(&["mug"; 1200].join(" ")).unwrap_err();
        assert_eq!(words.message(), "query must hold at most 8 words");
        let chars = search(&"m".repeat(201)).unwrap_err();
        assert_eq!(chars.message(), "query must be at most 200 characters");
    }
}
