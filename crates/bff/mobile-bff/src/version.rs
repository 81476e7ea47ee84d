//! Answer versions: an app that presents the version of the answer it
//! holds gets `{version, unchanged: true}` (about 30 bytes) instead of the
//! same bytes again.

use prost::Message;
use tailor_proto::mobile::v1::{GetProductPageResponse, ListProductsResponse};

/// The version of an answer: a short digest of its encoded bytes. Equal
/// answers (same data, mask and screen) have equal versions.
pub fn version_token(encoded: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(encoded)[..12])
}

/// An answer that carries a version.
pub trait Versioned: Message + Default {
    /// Sets the answer's version.
    fn set_version(&mut self, version: String);
    /// Marks an empty answer as "what you hold is current".
    fn set_unchanged(&mut self);
}

/// `answer` with its version; only the version, marked unchanged, when the
/// app already holds it (`if_version`).
pub fn versioned<M: Versioned>(mut answer: M, if_version: &str) -> M {
    let version = version_token(&answer.encode_to_vec());
    if version == if_version {
        answer = M::default();
        answer.set_unchanged();
    }
    answer.set_version(version);
    answer
}

macro_rules! versioned_answer {
    ($($message:ty),*) => {$(
        impl Versioned for $message {
            fn set_version(&mut self, version: String) {
                self.version = version;
            }
            fn set_unchanged(&mut self) {
                self.unchanged = true;
            }
        }
    )*};
}

versioned_answer!(ListProductsResponse, GetProductPageResponse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_answer_is_unchanged_and_a_different_one_is_sent() {
        let answer = ListProductsResponse {
            next_page_token: "t".into(),
            ..Default::default()
        };
        let first = versioned(answer.clone(), "");
        assert!(!first.unchanged);
        assert_eq!(first.next_page_token, "t");
        let again = versioned(answer.clone(), &first.version);
        assert!(again.unchanged);
        assert_eq!(again.version, first.version);
        assert!(again.next_page_token.is_empty());
        let other = versioned(
            ListProductsResponse {
                next_page_token: "u".into(),
                ..Default::default()
            },
            &first.version,
        );
        assert!(!other.unchanged);
        assert_ne!(other.version, first.version);
    }
}
