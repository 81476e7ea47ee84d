//! Partner API keys (`tailor_auth::ApiKey::parse` and
//! `ApiKeyAuthenticator`): any `x-api-key` value against a store holding
//! one known key and one revoked key.
//!
//! Invariants: no panic; a key parses only in the shape keys are issued
//! in (`tk_`, 16 hex digits, `_`, 64 hex digits), and its parts put back
//! together are the key; a key is accepted exactly when it is the known
//! key, byte for byte; every refusal is an `Invalid` credential, never a
//! store failure.

#![no_main]

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tailor_auth::{
    API_KEY_HEADER, ApiKey, ApiKeyAuthenticator, ApiKeyRecord, ApiKeyStore, AuthError,
    Authenticator, BoxFuture, hash_secret,
};

const KNOWN_ID: &str = "0123456789abcdef";
const KNOWN_SECRET: &str = "5f2b9c0e7a1d4e3f8b6a0c9d2e1f7a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
const REVOKED_ID: &str = "fedcba9876543210";

struct Store;

impl ApiKeyStore for Store {
    fn find<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, String>> {
        let record = |key_id: &str, revoked| ApiKeyRecord {
            key_id: key_id.to_owned(),
            tenant: "acme".into(),
            secret_hash: hash_secret(KNOWN_SECRET),
            scopes: vec!["catalog.read".into()],
            plan: "standard".into(),
            revoked,
        };
        let found = match key_id {
            KNOWN_ID => Some(record(KNOWN_ID, false)),
            REVOKED_ID => Some(record(REVOKED_ID, true)),
            _ => None,
        };
        Box::pin(async move { Ok(found) })
    }
}

static AUTH: LazyLock<ApiKeyAuthenticator> =
    LazyLock::new(|| ApiKeyAuthenticator::new(Arc::new(Store)));

/// The store answers at once, so one poll finishes every verification.
fn now<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("verification waited on a store that answers at once"),
    }
}

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    /// Any header value.
    Raw(&'a [u8]),
    /// The known key with one byte changed, cut or extended.
    Edited { at: u16, byte: u8, cut: bool },
    /// A key in the issued shape from arbitrary parts.
    Parts { id: String, secret: String },
}

fn check(token: &str) {
    let known = format!("tk_{KNOWN_ID}_{KNOWN_SECRET}");
    if let Some((id, secret)) = ApiKey::parse(token) {
        assert_eq!(format!("tk_{id}_{secret}"), token);
        assert!(id.len() == 16 && secret.len() == 64);
        assert!(
            id.bytes()
                .chain(secret.bytes())
                .all(|b| b.is_ascii_hexdigit())
        );
    }
    match now(AUTH.verify(token)) {
        Ok(identity) => {
            assert_eq!(token, known, "only the known key is accepted");
            assert_eq!(identity.subject, "partner:acme");
        }
        Err(AuthError::Invalid(_)) => assert_ne!(token, known),
        Err(other) => panic!("{other:?}"),
    }
}

fuzz_target!(|input: Input<'_>| {
    match input {
        Input::Raw(bytes) => {
            if let Ok(token) = std::str::from_utf8(bytes) {
                check(token);
            }
            // Through the header, as the authenticator layer sees it.
            let Ok(value) = HeaderValue::from_bytes(bytes) else {
                return;
            };
            let mut headers = HeaderMap::new();
            headers.insert(API_KEY_HEADER, value);
            match now(AUTH.authenticate(&headers)) {
                Ok(Some(identity)) => assert_eq!(identity.subject, "partner:acme"),
                Ok(None) => panic!("a key was sent"),
                Err(AuthError::Invalid(_)) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        Input::Edited { at, byte, cut } => {
            let mut key = format!("tk_{KNOWN_ID}_{KNOWN_SECRET}").into_bytes();
            let at = usize::from(at) % (key.len() + 1);
            if cut {
                key.truncate(at);
            } else if at == key.len() {
                key.push(byte);
            } else {
                key[at] = byte;
            }
            if let Ok(token) = String::from_utf8(key) {
                check(&token);
            }
        }
        Input::Parts { id, secret } => check(&format!("tk_{id}_{secret}")),
    }
});
