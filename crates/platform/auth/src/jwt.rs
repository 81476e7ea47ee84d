//! JWT bearer tokens for the web and mobile BFFs.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Authenticator, BoxFuture, bearer_token};
use tailor_interceptors::context::{AuthMethod, Identity};

/// The claims Tailor reads. `sub`, `aud` and `exp` are required by the
/// verifier, which names a missing one; they default here only so that
/// their absence is reported as such rather than as a malformed token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    #[serde(default)]
    pub sub: String,
    /// Audience; must match the BFF's configured audience.
    #[serde(default)]
    pub aud: String,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: u64,
    /// Issuer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iss: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// How tokens are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared HMAC secret (HS256).
    Hs256(Vec<u8>),
    /// An RSA public key in PEM (RS256).
    Rs256Pem(Vec<u8>),
    /// A JWKS document (JSON, RFC 7517) of the issuer's public keys: RSA
    /// keys verify RS256, P-256 keys ES256. A token names its key with the
    /// `kid` header; the key, not the token, decides the algorithm.
    Jwks(Vec<u8>),
}

/// The longest token lifetime accepted unless configured otherwise: an
/// hour, so a leaked token is worth little for long.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 3600;

/// Tokens longer than this are refused before any parsing: a real token is
/// well under 2 KiB, and the header-size limits of the transport are far
/// larger.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The longest `sub` accepted: it becomes the customer id of orders and
/// enters logs and downstream metadata.
const MAX_SUBJECT_CHARS: usize = 256;

/// Seconds of clock skew tolerated on `exp`, `nbf` and the lifetime.
const LEEWAY_SECS: u64 = 5;

/// RSA moduli shorter than this are refused when a JWKS is loaded.
const MIN_RSA_BITS: usize = 2048;

/// One key with the one algorithm it verifies.
struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

enum Keys {
    /// A single configured key: every token is checked against it.
    One(Box<Verifier>),
    /// Keys of a JWKS by `kid`.
    ById(HashMap<String, Verifier>),
}

/// Verifies `authorization: Bearer <jwt>`: the signature with the
/// configured key and that key's algorithm only (so `alg: none` and
/// algorithm swaps fail), `exp` (required), `nbf` (when present), audience,
/// issuer when one is configured, and the token's lifetime.
///
/// The lifetime is how long the token is valid for, counted from the
/// earlier of its `iat` and now (from now when `iat` is missing or in the
/// future): a token valid for longer than the configured maximum is
/// refused, however it was issued. A token issued for a day is refused on
/// its first minute as on its last.
pub struct JwtAuthenticator {
    keys: Keys,
    max_lifetime_secs: u64,
}

fn validation(algorithm: Algorithm, audience: &str, issuer: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    if let Some(issuer) = issuer {
        // Checked only when present unless required: a token that
        // leaves `iss` out must not pass an issuer check.
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        validation.set_issuer(&[issuer]);
    }
    validation
}

impl JwtAuthenticator {
    /// A verifier for tokens with audience `audience`, lasting at most
    /// [`DEFAULT_MAX_TOKEN_LIFETIME_SECS`] (see [`Self::with_max_lifetime`]).
    pub fn new(key: &JwtKey, audience: &str, issuer: Option<&str>) -> Result<Self, String> {
        let one = |key, algorithm| {
            Keys::One(Box::new(Verifier {
                key,
                validation: validation(algorithm, audience, issuer),
            }))
        };
        let keys = match key {
            JwtKey::Hs256(secret) => one(DecodingKey::from_secret(secret), Algorithm::HS256),
            JwtKey::Rs256Pem(pem) => one(
                DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RS256 public key: {e}"))?,
                Algorithm::RS256,
            ),
            JwtKey::Jwks(json) => Keys::ById(
                jwks(json)?
                    .into_iter()
                    .map(|(kid, key, algorithm)| {
                        let validation = validation(algorithm, audience, issuer);
                        (kid, Verifier { key, validation })
                    })
                    .collect(),
            ),
        };
        Ok(Self {
            keys,
            max_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        })
    }

    /// Refuses tokens valid for longer than `secs` (see the type's docs).
    pub fn with_max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    fn verifier(&self, token: &str) -> Result<&Verifier, AuthError> {
        match &self.keys {
            Keys::One(verifier) => Ok(verifier),
            Keys::ById(keys) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| AuthError::Invalid(reason(e.kind())))?;
                let kid = header
                    .kid
                    .ok_or(AuthError::Invalid("token names no key (kid)"))?;
                keys.get(&kid)
                    .ok_or(AuthError::Invalid("token signed with an unknown key (kid)"))
            }
        }
    }

    /// Verifies one token.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("token too long"));
        }
        let verifier = self.verifier(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
            .map_err(|e| AuthError::Invalid(reason(e.kind())))?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("token has no subject"));
        }
        if claims.sub.chars().count() > MAX_SUBJECT_CHARS {
            return Err(AuthError::Invalid("token subject too long"));
        }
        let now = jsonwebtoken::get_current_timestamp();
        // `iat` 0 is a missing claim; one in the future does not extend
        // the count either.
        let from = if claims.iat == 0 {
            now
        } else {
            claims.iat.min(now)
        };
        if claims.exp.saturating_sub(from) > self.max_lifetime_secs + LEEWAY_SECS {
            return Err(AuthError::Invalid("token lifetime is longer than allowed"));
        }
        Ok(Identity {
            subject: claims.sub,
            tenant: None,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            method: AuthMethod::Bearer,
            key_id: None,
            plan: None,
        })
    }
}

/// The usable keys of a JWKS document: `(kid, key, algorithm)`. Keys this
/// BFF cannot use for signatures (no `kid`, `use` other than `sig`, another
/// algorithm or curve) are skipped with a warning, so an issuer's document
/// that also lists such keys still loads; a usable key that is malformed or
/// too weak, a `kid` listed twice, or no usable key at all is an error.
fn jwks(json: &[u8]) -> Result<Vec<(String, DecodingKey, Algorithm)>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(json).map_err(|e| format!("JWKS is not a key set: {e}"))?;
    let mut usable = Vec::new();
    let mut seen = HashSet::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::warn!(index, %error, "JWKS: skipping a key of a type not understood");
                continue;
            }
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!(
                index,
                "JWKS: skipping a key without kid: tokens could not name it"
            );
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            tracing::warn!(kid, "JWKS: skipping a key not meant for signatures");
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(params), None | Some(KeyAlgorithm::RS256)) => {
                let modulus = URL_SAFE_NO_PAD
                    .decode(params.n.trim_end_matches('='))
                    .map_err(|_| format!("JWKS key {kid}: the RSA modulus is not base64url"))?;
                let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "JWKS key {kid}: RSA keys must have at least {MIN_RSA_BITS} bits"
                    ));
                }
                Algorithm::RS256
            }
            (AlgorithmParameters::EllipticCurve(params), None | Some(KeyAlgorithm::ES256))
                if params.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(kid, "JWKS: skipping a key that is neither RS256 nor ES256");
                continue;
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("JWKS key {kid}: {e}"))?;
        if !seen.insert(kid.clone()) {
            return Err(format!("JWKS lists key {kid} more than once"));
        }
        usable.push((kid, key, algorithm));
    }
    if usable.is_empty() {
        return Err("JWKS holds no RS256 or ES256 signing key with a kid".to_owned());
    }
    Ok(usable)
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidSignature => "bad token signature",
        ErrorKind::InvalidAudience => "token has the wrong audience",
        ErrorKind::InvalidIssuer => "token has the wrong issuer",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm not accepted"
        }
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        _ => "malformed token",
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            match bearer_token(headers) {
                None => Ok(None),
                Some(token) => self.verify(token).map(Some),
            }
        })
    }
}

/// Mints an HS256 token, for development and tests.
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing with a byte secret cannot fail")
}

#[cfg(test)]
mod tests;
