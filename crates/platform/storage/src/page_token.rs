use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::StorageError;

/// AIP-158 page sizes of one listing: zero asks for the default, more than
/// the maximum gets the maximum, a negative size is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    /// What a request that names no size gets.
    pub default: u32,
    /// The most one page holds.
    pub max: u32,
}

impl PageSize {
    /// A listing's sizes.
    pub const fn new(default: u32, max: u32) -> Self {
        Self { default, max }
    }

    /// The size to serve for a request's `page_size`.
    pub fn of(self, requested: i32) -> Result<usize, StorageError> {
        match u32::try_from(requested) {
            Err(_) => Err(StorageError::NegativePageSize),
            Ok(0) => Ok(self.default as usize),
            Ok(n) => Ok(n.min(self.max) as usize),
        }
    }
}

/// The longest page token [`PageToken::decode`] looks at; the same bound
/// as `tailor_interceptors::input::MAX_TOKEN_CHARS`, which the BFFs check.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// An opaque page token (AIP-158): where the next page starts, bound to a
/// fingerprint of the query so a token cannot be replayed against another
/// filter. Clients see URL-safe base64 and must not parse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// Fingerprint of the filters of the query that issued the token.
    pub query: u64,
    /// Keyset position: the sort key of the last item returned.
    pub after: String,
}

impl PageToken {
    /// Encodes the token for a response's `next_page_token`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("1|{:016x}|{}", self.query, self.after))
    }

    /// Decodes a request's `page_token`; an empty string is the first page.
    /// A token issued for another query fingerprint is rejected.
    pub fn decode(token: &str, query: u64) -> Result<Option<PageToken>, StorageError> {
        if token.is_empty() {
            return Ok(None);
        }
        // No token this server issued is anywhere near this long: refuse
        // before decoding what a caller may have made arbitrarily large.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(StorageError::InvalidPageToken);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| StorageError::InvalidPageToken)?;
        let text = String::from_utf8(bytes).map_err(|_| StorageError::InvalidPageToken)?;
        let mut parts = text.splitn(3, '|');
        let (Some("1"), Some(fingerprint), Some(after)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(StorageError::InvalidPageToken);
        };
        let issued_for =
            u64::from_str_radix(fingerprint, 16).map_err(|_| StorageError::InvalidPageToken)?;
        if issued_for != query {
            return Err(StorageError::InvalidPageToken);
        }
        Ok(Some(PageToken {
            query,
            after: after.to_owned(),
        }))
    }

    /// Decodes a token of a newest-first listing whose position is
    /// `(time, id)` of the last item returned; the first page starts at
    /// `(i64::MAX, "")`.
    pub fn decode_newest_first(token: &str, query: u64) -> Result<(i64, String), StorageError> {
        let Some(token) = Self::decode(token, query)? else {
            return Ok((i64::MAX, String::new()));
        };
        let (time, id) = token
            .after
            .split_once(':')
            .ok_or(StorageError::InvalidPageToken)?;
        let time = time.parse().map_err(|_| StorageError::InvalidPageToken)?;
        Ok((time, id.to_owned()))
    }

    /// The token continuing a newest-first listing after `(time, id)`.
    pub fn newest_first(query: u64, time: i64, id: &str) -> String {
        PageToken {
            query,
            after: format!("{time}:{id}"),
        }
        .encode()
    }

    /// A stable fingerprint of a query's filters (FNV-1a, so it does not
    /// change between builds the way `DefaultHasher` may).
    pub fn fingerprint(parts: &[&str]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for byte in part.bytes().chain(std::iter::once(0xff)) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_cap_and_refuse_negatives() {
        let sizes = PageSize::new(20, 100);
        assert_eq!(sizes.of(0).unwrap(), 20);
        assert_eq!(sizes.of(7).unwrap(), 7);
        assert_eq!(sizes.of(i32::MAX).unwrap(), 100);
        assert!(matches!(sizes.of(-1), Err(StorageError::NegativePageSize)));
    }

    #[test]
    fn round_trips_and_rejects_foreign_or_garbled_tokens() {
        let query = PageToken::fingerprint(&["cat-kitchen", "mug"]);
        let token = PageToken {
            query,
            after: "prod-000042".into(),
        };
        let encoded = token.encode();
        assert_eq!(PageToken::decode(&encoded, query).unwrap(), Some(token));
        assert_eq!(PageToken::decode("", query).unwrap(), None);
        let other = PageToken::fingerprint(&["cat-garden", "mug"]);
        assert!(PageToken::decode(&encoded, other).is_err());
        assert!(PageToken::decode("%%%not-base64", query).is_err());
        assert!(PageToken::decode(&URL_SAFE_NO_PAD.encode("2|x|y"), query).is_err());
        // Well formed, for the right query, but longer than any issued.
        let long = PageToken {
            query,
            after: "p".repeat(MAX_TOKEN_BYTES),
        };
        assert!(matches!(
            PageToken::decode(&long.encode(), query),
            Err(StorageError::InvalidPageToken)
        ));
    }
}
