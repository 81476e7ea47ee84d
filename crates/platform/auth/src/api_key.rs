//! Partner API keys. A key reads `tk_<key id>_<secret>`; the store keeps
//! the key id and the SHA-256 of the secret, never the secret. The secret is
//! compared in constant time, and an unknown key id costs the same
//! comparison, so timing tells an attacker nothing.

use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Authenticator, BoxFuture};
use tailor_interceptors::context::{AuthMethod, Identity};

/// The metadata key partners send their key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What a store knows about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public part of the key.
    pub key_id: String,
    /// The partner the key belongs to.
    pub tenant: String,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The plan, which later decides rate limits and quotas.
    pub plan: String,
    /// Revoked keys are refused.
    pub revoked: bool,
}

/// Where keys are looked up; the partner BFF implements it over its store.
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The record for `key_id`, if any.
    fn find<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, String>>;
}

/// A freshly generated key: show `token` to the partner once, store the rest.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The whole key as the partner sends it.
    pub token: String,
    /// The public id.
    pub key_id: String,
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
}

impl ApiKey {
    /// Generates a key with 64 bits of id and 256 bits of secret.
    pub fn generate() -> Self {
        let key_id = format!("{:016x}", rand::random::<u64>());
        let secret = hex::encode(rand::random::<[u8; 32]>());
        Self {
            token: format!("tk_{key_id}_{secret}"),
            secret_hash: hash_secret(&secret),
            key_id,
        }
    }

    /// Splits a presented key into id and secret; `None` unless it has the
    /// shape keys are issued in (`tk_`, 16 hex digits, `_`, 64 hex digits),
    /// so a malformed or oversized key is refused before any look-up or
    /// cache entry is spent on it.
    pub fn parse(token: &str) -> Option<(&str, &str)> {
        let rest = token.strip_prefix("tk_")?;
        let (key_id, secret) = rest.split_once('_')?;
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(key_id, 16) && hex(secret, 64)).then_some((key_id, secret))
    }
}

/// SHA-256 of a key's secret part. Secrets are 256 random bits, so a fast
/// hash is enough: there is no dictionary to attack.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Verifies `x-api-key` against an [`ApiKeyStore`].
pub struct ApiKeyAuthenticator {
    store: Arc<dyn ApiKeyStore>,
}

impl ApiKeyAuthenticator {
    /// Verifies against `store`.
    pub fn new(store: Arc<dyn ApiKeyStore>) -> Self {
        Self { store }
    }

    /// Verifies one presented key.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let (key_id, secret) =
            ApiKey::parse(token).ok_or(AuthError::Invalid("malformed API key"))?;
        let record = self
            .store
            .find(key_id)
            .await
            .map_err(|_| AuthError::StoreUnavailable)?;
        let presented = hash_secret(secret);
        let expected = record.as_ref().map_or([0u8; 32], |r| r.secret_hash);
        let matches: bool = presented.ct_eq(&expected).into();
        match record {
            Some(record) if matches && !record.revoked => Ok(Identity {
                subject: format!("partner:{}", record.tenant),
                tenant: Some(record.tenant),
                scopes: record.scopes,
                method: AuthMethod::ApiKey,
                key_id: Some(record.key_id),
                plan: Some(record.plan),
            }),
            Some(record) if matches && record.revoked => Err(AuthError::Invalid("API key revoked")),
            _ => Err(AuthError::Invalid("unknown API key")),
        }
    }
}

impl Authenticator for ApiKeyAuthenticator {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            match headers.get(API_KEY_HEADER) {
                None => Ok(None),
                Some(value) => {
                    let token = value
                        .to_str()
                        .map_err(|_| AuthError::Invalid("malformed API key"))?;
                    self.verify(token).await.map(Some)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapStore(HashMap<String, ApiKeyRecord>);

    impl ApiKeyStore for MapStore {
        fn find<'a>(
            &'a self,
            key_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, String>> {
            Box::pin(async move { Ok(self.0.get(key_id).cloned()) })
        }
    }

    fn record(key: &ApiKey, revoked: bool) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: key.key_id.clone(),
            tenant: "acme".into(),
            secret_hash: key.secret_hash,
            scopes: vec!["catalog.read".into()],
            plan: "standard".into(),
            revoked,
        }
    }

    #[tokio::test]
    async fn verifies_against_stored_hashes() {
        let good = ApiKey::generate();
        let revoked = ApiKey::generate();
        let store = MapStore(HashMap::from([
            (good.key_id.clone(), record(&good, false)),
            (revoked.key_id.clone(), record(&revoked, true)),
        ]));
        let auth = ApiKeyAuthenticator::new(Arc::new(store));
        let identity = auth.verify(&good.token).await.unwrap();
        assert_eq!(identity.subject, "partner:acme");
        assert_eq!(identity.tenant.as_deref(), Some("acme"));

        let wrong_secret = format!("tk_{}_{}", good.key_id, "00".repeat(32));
        assert_eq!(
            auth.verify(&wrong_secret).await,
            Err(AuthError::Invalid("unknown API key"))
        );
        assert_eq!(
            auth.verify(&revoked.token).await,
            Err(AuthError::Invalid("API key revoked"))
        );
        assert_eq!(
            auth.verify(&ApiKey::generate().token).await,
            Err(AuthError::Invalid("unknown API key"))
        );
        assert_eq!(
            auth.verify("sk_live_123").await,
            Err(AuthError::Invalid("malformed API key"))
        );
    }
}
