//! The flags of the BFFs that verify bearer tokens.

use std::path::PathBuf;

use crate::{JwtAuthenticator, JwtKey};

/// The HS256 secret used when none is configured: fine for a laptop, never
/// for production (the BFFs log a warning when they run with it).
pub const DEVELOPMENT_JWT_SECRET: &str = "tailor-development-secret-change-me";

/// How the web and mobile BFFs verify bearer tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtArgs {
    /// HS256 shared secret (ignored when an RS256 public key is given).
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
    pub jwt_hs256_secret: String,

    /// PEM file with the RS256 public key of the token issuer.
    #[arg(long, env = "TAILOR_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// Required `iss` claim, if any.
    #[arg(long, env = "TAILOR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

impl JwtArgs {
    /// A verifier for tokens whose `aud` is `audience`.
    pub fn authenticator(&self, audience: &str) -> Result<JwtAuthenticator, String> {
        let key = match &self.jwt_rs256_public_key {
            Some(path) => JwtKey::Rs256Pem(
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?,
            ),
            None => {
                if self.jwt_hs256_secret == DEVELOPMENT_JWT_SECRET {
                    tracing::warn!("verifying tokens with the built-in development secret");
                }
                JwtKey::Hs256(self.jwt_hs256_secret.as_bytes().to_vec())
            }
        };
        JwtAuthenticator::new(&key, audience, self.jwt_issuer.as_deref())
    }
}
