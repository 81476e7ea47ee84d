//! JWT bearer tokens for the web and mobile BFFs.

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Authenticator, BoxFuture, bearer_token};
use tailor_interceptors::context::{AuthMethod, Identity};

/// The claims Tailor reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Audience; must match the BFF's configured audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
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
}

/// Verifies `authorization: Bearer <jwt>`: signature with the configured
/// key and algorithm only (so `alg: none` and algorithm swaps fail), expiry,
/// audience, and issuer when one is configured.
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
}

impl JwtAuthenticator {
    /// A verifier for tokens with audience `audience`.
    pub fn new(key: &JwtKey, audience: &str, issuer: Option<&str>) -> Result<Self, String> {
        let (key, algorithm) = match key {
            JwtKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            JwtKey::Rs256Pem(pem) => (
                DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RS256 public key: {e}"))?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 5;
        if let Some(issuer) = issuer {
            // Checked only when present unless required: a token that
            // leaves `iss` out must not pass an issuer check.
            validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
            validation.set_issuer(&[issuer]);
        }
        Ok(Self { key, validation })
    }

    /// Verifies one token.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(reason(e.kind())))?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("token has no subject"));
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
mod tests {
    use super::*;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(aud: &str, exp: u64) -> Claims {
        Claims {
            sub: "user-1".into(),
            aud: aud.into(),
            exp,
            iat: now(),
            iss: String::new(),
            scope: "orders".into(),
        }
    }

    #[test]
    fn accepts_good_tokens_and_names_what_is_wrong_with_bad_ones() {
        let secret = b"s3cret".to_vec();
        let auth = JwtAuthenticator::new(&JwtKey::Hs256(secret.clone()), "web", None).unwrap();
        let good = mint_hs256(&secret, &claims("web", now() + 60));
        let identity = auth.verify(&good).unwrap();
        assert_eq!(identity.subject, "user-1");
        assert!(identity.has_scope("orders"));

        let expired = mint_hs256(&secret, &claims("web", now() - 600));
        assert_eq!(
            auth.verify(&expired),
            Err(AuthError::Invalid("token expired"))
        );
        let other_aud = mint_hs256(&secret, &claims("mobile", now() + 60));
        assert_eq!(
            auth.verify(&other_aud),
            Err(AuthError::Invalid("token has the wrong audience"))
        );
        let forged = mint_hs256(b"not-the-secret", &claims("web", now() + 60));
        assert_eq!(
            auth.verify(&forged),
            Err(AuthError::Invalid("bad token signature"))
        );
        // {"alg":"none","typ":"JWT"} with the good payload and no signature.
        let payload = good.split('.').nth(1).unwrap();
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(matches!(auth.verify(&unsigned), Err(AuthError::Invalid(_))));
        assert!(matches!(auth.verify("garbage"), Err(AuthError::Invalid(_))));
    }
}
