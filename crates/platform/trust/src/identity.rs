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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
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

/// How far a service lets a token's expiry lag its own clock.
const LEEWAY_SECS: u64 = 5;

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
///
/// A token is a JWS in compact form (RFC 7515) with ES256 (RFC 7518): the
/// key is parsed once, and each signature is the fixed 64-byte `r || s`.
pub struct IdentitySigner {
    issuer: String,
    key: EcdsaKeyPair,
    random: SystemRandom,
    /// The encoded protected header, the same for every token.
    header: String,
    cache: Mutex<HashMap<SignedKey, (String, u64)>>,
}

/// A token's protected header.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl IdentitySigner {
    /// A signer for the BFF `issuer` with its certificate's P-256 key
    /// (PKCS #8 PEM).
    pub fn new(issuer: &str, key_pem: &[u8]) -> Result<Self, TrustError> {
        let invalid =
            |e: &dyn std::fmt::Display| TrustError::invalid(format!("{issuer}'s key: {e}"));
        let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem).map_err(|e| invalid(&e))?;
        let random = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &random,
        )
        .map_err(|e| invalid(&format!("not a P-256 key ({e})")))?;
        let header = Header {
            alg: "ES256".to_owned(),
            typ: Some("JWT".to_owned()),
            kid: Some(issuer.to_owned()),
        };
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a header encodes"));
        Ok(Self {
            issuer: issuer.to_owned(),
            key,
            random,
            header,
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
        let token = self.sign(&claims).map_err(|error| {
            tracing::error!(%error, "signing an identity token failed");
            Status::internal("internal error")
        })?;
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (token.clone(), exp));
        Ok(token)
    }

    fn sign(&self, claims: &Claims) -> Result<String, String> {
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut token = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .key
            .sign(&self.random, token.as_bytes())
            .map_err(|e| e.to_string())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
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

/// The claims of `token` if `key` (an uncompressed P-256 point) signed it
/// with ES256 for `audience` as `caller`, and it has not expired.
fn decode(token: &str, key: &[u8], audience: &str, caller: &str) -> Result<Claims, Status> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(forged("it is not a signed token"));
    };
    let part = |text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| forged("it is not base64url"))
    };
    let signed = &token[..header.len() + 1 + payload.len()];
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(signed.as_bytes(), &part(signature)?)
        .map_err(|_| forged("bad signature"))?;
    let header: Header =
        serde_json::from_slice(&part(header)?).map_err(|_| forged("its header is malformed"))?;
    if header.alg != "ES256" {
        return Err(forged("it is not signed with ES256"));
    }
    let claims: Claims = serde_json::from_slice(&part(payload)?)
        .map_err(|_| forged("its claims are malformed or incomplete"))?;
    if claims.aud != audience {
        return Err(forged("it was made for another service"));
    }
    if claims.iss != caller {
        return Err(forged("it was signed by another caller"));
    }
    if claims.exp.saturating_add(LEEWAY_SECS) <= unix_now() {
        return Err(forged("it has expired"));
    }
    Ok(claims)
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

    #[test]
    fn expired_malformed_and_unsigned_tokens_are_refused() {
        let authority = Authority::generate().unwrap();
        let web = authority.issue("web-bff").unwrap();
        let signer = IdentitySigner::new("web-bff", web.key_pem.as_bytes()).unwrap();
        let peer = Peer::from_pem(&web.cert_pem).unwrap();
        let orders = IdentityVerifier::new("orders");
        let claims = |iat: u64, exp: u64| Claims {
            iss: "web-bff".into(),
            aud: "orders".into(),
            sub: "alice".into(),
            iat,
            exp,
            tenant: None,
        };
        let now = unix_now();
        let refused = |token: &str| {
            let status = orders.verify(token, "web-bff", &peer).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{token}");
            status.message().to_owned()
        };

        let live = signer.sign(&claims(now, now + 60)).unwrap();
        assert_eq!(
            orders.verify(&live, "web-bff", &peer).unwrap().subject,
            "alice"
        );
        let expired = signer.sign(&claims(now - 120, now - 60)).unwrap();
        assert!(refused(&expired).contains("expired"));
        let too_long = signer.sign(&claims(now, now + 3600)).unwrap();
        assert!(refused(&too_long).contains("lifetime"));

        // Unsigned ("alg": "none") and truncated or padded tokens.
        let (signed, _) = live.rsplit_once('.').unwrap();
        let (_, payload) = signed.split_once('.').unwrap();
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        for bad in [
            format!("{none}.{payload}."),
            signed.to_owned(),
            format!("{live}.x"),
            format!("{signed}.!!!"),
            String::new(),
        ] {
            refused(&bad);
        }
    }
}
