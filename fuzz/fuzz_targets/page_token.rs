//! Page tokens and page sizes (`tailor_storage::page_token`): any token a
//! caller sends, against any query fingerprint.
//!
//! Invariants: no panic; a token decodes only for the query it was issued
//! for, and what it decodes to encodes into a token that decodes to the
//! same again; every token the server issues (within the length bound)
//! decodes to what was encoded; newest-first positions round-trip; a page
//! size is refused exactly when negative and never exceeds the maximum.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tailor_storage::{MAX_TOKEN_BYTES, PageSize, PageToken};

#[derive(Debug, Arbitrary)]
struct Input {
    /// What a caller sends as `page_token`.
    token: String,
    query: u64,
    /// What the server would put in a token it issues.
    after: String,
    time: i64,
    page_size: i32,
    default: u32,
    max: u32,
}

fuzz_target!(|input: Input| {
    let query = input.query;
    if let Ok(Some(token)) = PageToken::decode(&input.token, query) {
        assert_eq!(token.query, query);
        let again = token.encode();
        if again.len() <= MAX_TOKEN_BYTES {
            assert_eq!(PageToken::decode(&again, query).unwrap(), Some(token));
        }
    }
    if let Ok((time, id)) = PageToken::decode_newest_first(&input.token, query)
        && !input.token.is_empty()
    {
        let again = PageToken::newest_first(query, time, &id);
        if again.len() <= MAX_TOKEN_BYTES {
            assert_eq!(
                PageToken::decode_newest_first(&again, query).unwrap(),
                (time, id)
            );
        }
    }
    // Another query's fingerprint never accepts it.
    if !input.token.is_empty() {
        let other = query.wrapping_add(1);
        let decoded = PageToken::decode(&input.token, query);
        let elsewhere = PageToken::decode(&input.token, other);
        assert!(!(matches!(decoded, Ok(Some(_))) && matches!(elsewhere, Ok(Some(_)))));
    }

    // What the server issues comes back as it went.
    let issued = PageToken {
        query,
        after: input.after.clone(),
    };
    let encoded = issued.encode();
    let decoded = PageToken::decode(&encoded, query);
    if encoded.len() <= MAX_TOKEN_BYTES {
        assert_eq!(decoded.unwrap(), Some(issued));
    } else {
        assert!(decoded.is_err());
    }
    let newest = PageToken::newest_first(query, input.time, &input.after);
    if newest.len() <= MAX_TOKEN_BYTES {
        assert_eq!(
            PageToken::decode_newest_first(&newest, query).unwrap(),
            (input.time, input.after.clone())
        );
    }
    let _ = PageToken::fingerprint(&[&input.token, &input.after]);

    let sizes = PageSize::new(input.default.min(input.max), input.max);
    match sizes.of(input.page_size) {
        Ok(size) => {
            assert!(input.page_size >= 0);
            assert!(size as u64 <= u64::from(input.max));
        }
        Err(_) => assert!(input.page_size < 0),
    }
});
