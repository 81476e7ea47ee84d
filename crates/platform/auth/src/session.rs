//! Browser sessions: the browser holds an opaque handle in an HttpOnly
//! cookie, never a token. The server keeps only the SHA-256 of each handle
//! (a leaked store gives no live sessions) and resolves it to an
//! [`Identity`] on every call.
//!
//! Because a browser attaches cookies to any request to the BFF's host, a
//! cookie alone proves nothing about who wrote the request. A call that
//! presents the cookie must therefore also
//! - come from an allowed origin (the `Origin` header browsers set), and
//! - carry [`CSRF_HEADER`], which a cross-site form cannot send and a
//!   cross-site script can only send after a CORS preflight that the
//!   BFF refuses for origins it does not allow.
//!
//! Otherwise the call is refused with PERMISSION_DENIED, even for methods
//! open to anonymous callers. A handle that is unknown or expired counts as
//! no session at all, so a stale cookie never blocks signing in again.

use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::{AuthError, Authenticator, BoxFuture};
use tailor_browser::AllowedOrigins;
use tailor_interceptors::context::{AuthMethod, Identity};

/// The cookie that holds the session handle.
pub const SESSION_COOKIE: &str = "tailor_session";

/// The header cookie-authenticated calls must carry (any non-empty value;
/// the web app sends `1`).
pub const CSRF_HEADER: &str = "x-tailor-csrf";

/// Where sessions live; the web BFF implements it over its store.
pub trait SessionStore: Send + Sync + 'static {
    /// The identity of the live session whose handle hashes to
    /// `handle_hash`, or `None` when it is unknown, ended or expired.
    fn identity<'a>(
        &'a self,
        handle_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<Identity>, String>>;
}

/// A new session handle: 256 random bits, URL-safe.
pub fn new_session_handle() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the store keeps of `handle`.
pub fn hash_session_handle(handle: &str) -> [u8; 32] {
    Sha256::digest(handle.as_bytes()).into()
}

/// The session handle in the request's cookies, if any.
pub fn session_handle(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// How the session cookie is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    /// `Secure`: sent over HTTPS only. Turn off only for plain-HTTP local
    /// development.
    pub secure: bool,
    /// Lifetime in seconds.
    pub max_age_secs: u64,
}

impl CookiePolicy {
    /// The `set-cookie` value that starts a session with `handle`.
    pub fn set(&self, handle: &str) -> String {
        self.format(handle, self.max_age_secs)
    }

    /// The `set-cookie` value that makes the browser forget the session.
    pub fn clear(&self) -> String {
        self.format("", 0)
    }

    fn format(&self, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        )
    }
}

/// Authenticates calls by session cookie, with the origin and CSRF checks
/// described in the module docs.
pub struct SessionAuthenticator {
    store: Arc<dyn SessionStore>,
    origins: AllowedOrigins,
}

impl SessionAuthenticator {
    /// Resolves sessions in `store`; cookies count only from `origins`.
    pub fn new(store: Arc<dyn SessionStore>, origins: AllowedOrigins) -> Self {
        Self { store, origins }
    }
}

impl Authenticator for SessionAuthenticator {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            let Some(handle) = session_handle(headers) else {
                return Ok(None);
            };
            let origin = headers
                .get(http::header::ORIGIN)
                .and_then(|o| o.to_str().ok());
            if !origin.is_some_and(|o| self.origins.allows(o)) {
                return Err(AuthError::Forbidden(
                    "session cookies are accepted only from the web app's origin",
                ));
            }
            if headers.get(CSRF_HEADER).is_none_or(|v| v.is_empty()) {
                return Err(AuthError::Forbidden(
                    "calls with the session cookie must carry the x-tailor-csrf header",
                ));
            }
            let identity = self
                .store
                .identity(&hash_session_handle(handle))
                .await
                .map_err(|error| {
                    tracing::error!(%error, "session store lookup failed");
                    AuthError::StoreUnavailable
                })?;
            Ok(identity.map(|identity| Identity {
                method: AuthMethod::Session,
                ..identity
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Sessions(HashMap<[u8; 32], Identity>);

    impl SessionStore for Sessions {
        fn identity<'a>(
            &'a self,
            handle_hash: &'a [u8; 32],
        ) -> BoxFuture<'a, Result<Option<Identity>, String>> {
            Box::pin(async move { Ok(self.0.get(handle_hash).cloned()) })
        }
    }

    fn authenticator(handle: &str) -> SessionAuthenticator {
        let identity = Identity {
            subject: "alice".into(),
            tenant: None,
            scopes: vec![],
            method: AuthMethod::Bearer,
            key_id: None,
            plan: None,
        };
        let store = Sessions(HashMap::from([(hash_session_handle(handle), identity)]));
        let origins = AllowedOrigins::new(["http://localhost:8080"]).unwrap();
        SessionAuthenticator::new(Arc::new(store), origins)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    #[tokio::test]
    async fn a_live_session_from_the_app_is_the_user() {
        let auth = authenticator("h1");
        let identity = auth
            .authenticate(&headers(&[
                ("cookie", "theme=dark; tailor_session=h1"),
                ("origin", "http://localhost:8080"),
                ("x-tailor-csrf", "1"),
            ]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.method, AuthMethod::Session);
    }

    #[tokio::test]
    async fn cookies_need_the_origin_and_the_csrf_header() {
        let auth = authenticator("h1");
        let cases = [
            headers(&[("cookie", "tailor_session=h1"), ("x-tailor-csrf", "1")]),
            headers(&[
                ("cookie", "tailor_session=h1"),
                ("origin", "http://evil.example"),
                ("x-tailor-csrf", "1"),
            ]),
            headers(&[
                ("cookie", "tailor_session=h1"),
                ("origin", "http://localhost:8080"),
            ]),
        ];
        for case in cases {
            let error = auth.authenticate(&case).await.unwrap_err();
            assert!(matches!(error, AuthError::Forbidden(_)), "{case:?}");
        }
    }

    #[tokio::test]
    async fn unknown_handles_and_no_cookie_are_no_session() {
        let auth = authenticator("h1");
        let stale = headers(&[
            ("cookie", "tailor_session=gone"),
            ("origin", "http://localhost:8080"),
            ("x-tailor-csrf", "1"),
        ]);
        assert_eq!(auth.authenticate(&stale).await.unwrap(), None);
        assert_eq!(auth.authenticate(&HeaderMap::new()).await.unwrap(), None);
    }

    #[test]
    fn cookie_attributes() {
        let policy = CookiePolicy {
            secure: true,
            max_age_secs: 60,
        };
        assert_eq!(
            policy.set("abc"),
            "tailor_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let insecure = CookiePolicy {
            secure: false,
            ..policy
        };
        assert!(
            insecure
                .clear()
                .starts_with("tailor_session=; Path=/; Max-Age=0")
        );
        assert!(!insecure.clear().contains("Secure"));
    }
}
