//! The end user a BFF calls for, as a short-lived token the BFF signs with
//! its certificate's key (ES256) for one downstream service: `iss` is the
//! BFF, `aud` the service, `sub` the user (`partner:<tenant>` for partner
//! keys), valid for [`TOKEN_LIFETIME`]. The downstream service verifies it
//! with the public key of the client certificate the call came with, so a
//! token works only from the BFF that signed it, only at the service it was
//! made for, and only for a minute.
//!
//! Both sides keep a bounded cache, so a BFF signs one token per user and
//! service every half minute and a service verifies each token once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tailor_interceptors::context::{AuthMethod, Identity};
use tonic::Status;

use crate::TrustError;
use crate::tls::Peer;

/// The metadata key that carries the identity token.
pub const IDENTITY_HEADER: &str = "x-tailor-identity";

/// How long a signed identity is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime a service accepts (a BFF's clock may differ a little).
const MAX_LIFETIME_SECS: u64 = 300;

/// Entries either cache holds at most; a full cache starts afresh.
const CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type SignedKey = (String, String, Option<String>);

/// Signs the identities a BFF calls downstream services for.
pub struct IdentitySigner {
    issuer: String,
    key: EncodingKey,
    cache: Mutex<HashMap<SignedKey, (String, u64)>>,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl IdentitySigner {
    /// A signer for the BFF `issuer` with its certificate's P-256 key (PEM).
    pub fn new(issuer: &str, key_pem: &[u8]) -> Result<Self, TrustError> {
        let key = EncodingKey::from_ec_pem(key_pem)
            .map_err(|e| TrustError::invalid(format!("{issuer}'s key: {e}")))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            key,
            cache: Mutex::default(),
        })
    }

    /// The BFF this signer speaks for.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token that tells the service `audience` that `identity` is calling.
    pub fn token(&self, audience: &str, identity: &Identity) -> Result<String, Status> {
        let now = unix_now();
        let key = (
            audience.to_owned(),
            identity.subject.clone(),
            identity.tenant.clone(),
        );
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, exp)) = cache.get(&key)
            && *exp > now + TOKEN_LIFETIME.as_secs() / 2
        {
            return Ok(token.clone());
        }
        let exp = now + TOKEN_LIFETIME.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            sub: identity.subject.clone(),
            iat: now,
            exp,
            tenant: identity.tenant.clone(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.issuer.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|error| {
            tracing::error!(%error, "signing an identity token failed");
            Status::internal("internal error")
        })?;
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (token.clone(), exp));
        Ok(token)
    }
}

/// Verifies identity tokens at a downstream service.
#[derive(Debug)]
pub struct IdentityVerifier {
    audience: String,
    cache: Mutex<HashMap<[u8; 32], (Identity, String, u64)>>,
}

fn forged(reason: impl std::fmt::Display) -> Status {
    Status::unauthenticated(format!(
        "the caller's identity token is not valid: {reason}"
    ))
}

impl IdentityVerifier {
    /// A verifier for tokens made for the service `audience`.
    pub fn new(audience: &str) -> Self {
        Self {
            audience: audience.to_owned(),
            cache: Mutex::default(),
        }
    }

    /// The identity `token` asserts, if `caller` (the BFF the client
    /// certificate names, with its `peer` key) signed it for this service.
    pub fn verify(&self, token: &str, caller: &str, peer: &Peer) -> Result<Identity, Status> {
        let now = unix_now();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((identity, issuer, exp)) = cache.get(&digest)
                && *exp > now
            {
                // Signed by `issuer`'s key: valid only on that BFF's connections.
                if issuer != caller {
                    return Err(forged("it was signed by another caller"));
                }
                return Ok(identity.clone());
            }
        }
        let key = peer
            .key()
            .ok_or_else(|| forged("the client certificate has no P-256 key"))?;
        let claims = decode(token, key, &self.audience, caller)?;
        if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME_SECS {
            return Err(forged("its lifetime is too long"));
        }
        let identity = Identity {
            subject: claims.sub,
            tenant: claims.tenant,
            scopes: Vec::new(),
            method: AuthMethod::Delegated,
            key_id: None,
            plan: None,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, _, exp)| *exp > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, (identity.clone(), caller.to_owned(), claims.exp));
        Ok(identity)
    }
}

fn decode(token: &str, key: &DecodingKey, audience: &str, caller: &str) -> Result<Claims, Status> {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[caller]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 5;
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(forged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;

    fn user(subject: &str) -> Identity {
        Identity {
            subject: subject.into(),
            tenant: None,
            scopes: vec![],
            method: AuthMethod::Bearer,
            key_id: None,
            plan: None,
        }
    }

    #[test]
    fn a_token_holds_only_for_its_signer_and_audience() {
        let authority = Authority::generate().unwrap();
        let web = authority.issue("web-bff").unwrap();
        let mobile = authority.issue("mobile-bff").unwrap();
        let signer = IdentitySigner::new("web-bff", web.key_pem.as_bytes()).unwrap();
        let web_peer = Peer::from_pem(&web.cert_pem).unwrap();
        let mobile_peer = Peer::from_pem(&mobile.cert_pem).unwrap();

        let token = signer.token("orders", &user("alice")).unwrap();
        assert_eq!(signer.token("orders", &user("alice")).unwrap(), token);
        let orders = IdentityVerifier::new("orders");
        let identity = orders.verify(&token, "web-bff", &web_peer).unwrap();
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.method, AuthMethod::Delegated);
        // Cached, and still bound to its signer.
        let replayed = orders
            .verify(&token, "mobile-bff", &mobile_peer)
            .unwrap_err();
        assert_eq!(replayed.code(), tonic::Code::Unauthenticated);
        // Not cached: the key of another connection does not verify it.
        let fresh = IdentityVerifier::new("orders");
        let error = fresh
            .verify(&token, "mobile-bff", &mobile_peer)
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unauthenticated);
        // Made for orders, not for catalog.
        let catalog = IdentityVerifier::new("catalog");
        assert!(catalog.verify(&token, "web-bff", &web_peer).is_err());
        // Tampered with.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(
            fresh
                .verify(&parts.join("."), "web-bff", &web_peer)
                .is_err()
        );
    }
}
