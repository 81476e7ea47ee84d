//! The flags of the BFFs that verify bearer tokens.

use std::path::PathBuf;

use crate::jwt::DEFAULT_MAX_TOKEN_LIFETIME_SECS;
use crate::{JwtAuthenticator, JwtKey};

/// The HS256 secret of development stacks (`tailor up`, `tailor token`).
/// It is in the source, so anyone can mint tokens with it: a BFF uses it
/// only when started with `--dev-secrets`, and says so at every start.
pub const DEVELOPMENT_JWT_SECRET: &str = "tailor-development-secret-change-me";

/// How the web and mobile BFFs verify bearer tokens. One key must be
/// configured; there is no silent default. When several are given, the
/// JWKS wins over the RS256 key, which wins over the HS256 secret.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    /// HS256 shared secret (ignored when a JWKS or an RS256 public key is
    /// given).
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// PEM file with the RS256 public key of the token issuer (ignored
    /// when a JWKS is given).
    #[arg(long, env = "TAILOR_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// JWKS file (JSON) with the issuer's public keys: RSA keys verify
    /// RS256, P-256 keys ES256, chosen by the token's `kid`. Needs
    /// --jwt-issuer.
    #[arg(long, env = "TAILOR_JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,

    /// Required `iss` claim, if any (required with --jwt-jwks).
    #[arg(long, env = "TAILOR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Longest token lifetime accepted, in seconds: `exp` counted from the
    /// earlier of `iat` and now (from now without `iat`).
    #[arg(long, env = "TAILOR_JWT_MAX_LIFETIME_SECS", default_value_t = DEFAULT_MAX_TOKEN_LIFETIME_SECS)]
    pub jwt_max_lifetime_secs: u64,

    /// Development only: with no key configured, verify tokens with the
    /// built-in development secret (a warning is logged at every start).
    #[arg(long, env = "TAILOR_DEV_SECRETS", value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_secrets: bool,
}

impl JwtArgs {
    /// A verifier for tokens whose `aud` is `audience`; an error naming the
    /// flags when no key is configured (or only the development secret,
    /// without `--dev-secrets`).
    pub fn authenticator(&self, audience: &str) -> Result<JwtAuthenticator, String> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        if let Some(path) = &self.jwt_jwks {
            if self.jwt_issuer.is_none() {
                return Err(
                    "--jwt-jwks needs --jwt-issuer (TAILOR_JWT_ISSUER): keys of an \
                            identity provider verify tokens it issued, and only those"
                        .to_owned(),
                );
            }
            let key = JwtKey::Jwks(read(path)?);
            return Ok(
                JwtAuthenticator::new(&key, audience, self.jwt_issuer.as_deref())
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .with_max_lifetime(self.jwt_max_lifetime_secs),
            );
        }
        let key = match (&self.jwt_rs256_public_key, &self.jwt_hs256_secret) {
            (Some(path), _) => JwtKey::Rs256Pem(read(path)?),
            (None, Some(secret)) if secret != DEVELOPMENT_JWT_SECRET => {
                JwtKey::Hs256(secret.as_bytes().to_vec())
            }
            (None, _) if self.dev_secrets => {
                tracing::warn!(
                    "--dev-secrets: verifying tokens with the built-in development secret; \
                     anyone who reads the source can mint tokens for this BFF"
                );
                JwtKey::Hs256(DEVELOPMENT_JWT_SECRET.as_bytes().to_vec())
            }
            (None, Some(_)) => {
                return Err("--jwt-hs256-secret is the public development secret; \
                            configure a real one, or pass --dev-secrets for development"
                    .to_owned());
            }
            (None, None) => {
                return Err("no key to verify tokens with: set --jwt-jwks \
                            (TAILOR_JWT_JWKS), --jwt-rs256-public-key \
                            (TAILOR_JWT_RS256_PUBLIC_KEY) or --jwt-hs256-secret \
                            (TAILOR_JWT_HS256_SECRET); --dev-secrets uses the built-in \
                            development secret"
                    .to_owned());
            }
        };
        Ok(
            JwtAuthenticator::new(&key, audience, self.jwt_issuer.as_deref())?
                .with_max_lifetime(self.jwt_max_lifetime_secs),
        )
    }
}
