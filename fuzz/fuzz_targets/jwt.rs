//! JWT bearer tokens (`tailor_auth::JwtAuthenticator::verify`) against two
//! fixed verifiers: an HS256 secret, and a JWKS naming one P-256 key by
//! `kid`; both want audience `web` and a fixed issuer.
//!
//! Three kinds of input: any text as a token; a good token with a byte
//! changed, cut or added; and tokens minted from arbitrary claims with the
//! right or a wrong key, algorithm or `kid`, whose verdict is compared
//! with a model of the rules (signature by the configured key and
//! algorithm only; `exp` required and not past; `nbf` not ahead; audience
//! and issuer exact; a subject of 1 to 256 characters; a lifetime of at
//! most an hour counted from the earlier of `iat` and now; 5 s leeway).
//!
//! Invariants: no panic; refusals are `Invalid` credentials; an edited
//! token is accepted only if its signed part is unchanged; a minted token
//! is accepted exactly when the model says so, as the subject and scopes
//! it carries.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tailor_auth::{AuthError, JwtAuthenticator, JwtKey};

const SECRET: &[u8] = b"fuzz-secret";
const AUDIENCE: &str = "web";
const ISSUER: &str = "https://id.shop.test";
const KID: &str = "ec-1";
const EC_PRIVATE: &[u8] = include_bytes!("../../crates/platform/auth/testdata/ec-p256.key.pem");
/// The verifier's leeway and maximum lifetime.
const LEEWAY: i64 = 5;
const LIFETIME: i64 = 3600;

static EC: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_ec_pem(EC_PRIVATE).unwrap());

static HS: LazyLock<JwtAuthenticator> = LazyLock::new(|| {
    JwtAuthenticator::new(&JwtKey::Hs256(SECRET.to_vec()), AUDIENCE, Some(ISSUER)).unwrap()
});

static JWKS: LazyLock<JwtAuthenticator> = LazyLock::new(|| {
    let mut jwk = Jwk::from_encoding_key(&EC, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(KID.to_owned());
    let set = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
    JwtAuthenticator::new(&JwtKey::Jwks(set), AUDIENCE, Some(ISSUER)).unwrap()
});

#[derive(Debug, Arbitrary)]
enum Signing {
    Hs256,
    Hs256WrongSecret,
    Hs384,
    Es256,
    Es256Kid(String),
    Es256NoKid,
}

#[derive(Debug, Arbitrary)]
enum Text {
    Right,
    Other(String),
    Missing,
    /// A list holding the right value, which the claims cannot take.
    List,
}

#[derive(Debug, Arbitrary)]
struct Minted {
    signing: Signing,
    sub: Option<String>,
    aud: Text,
    iss: Text,
    /// Seconds from now.
    exp: Option<i16>,
    iat: Option<i16>,
    nbf: Option<i16>,
    scope: Option<String>,
    extra: Option<(String, String)>,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(String),
    Edited { at: u16, byte: u8, how: u8 },
    Minted(Minted),
}

fn verify(auth: &JwtAuthenticator, token: &str) -> Option<tailor_interceptors::Identity> {
    match auth.verify(token) {
        Ok(identity) => Some(identity),
        Err(AuthError::Invalid(_)) => None,
        Err(other) => panic!("{other:?}"),
    }
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn text(value: &Text, right: &str) -> Option<Value> {
    match value {
        Text::Right => Some(json!(right)),
        Text::Other(other) => Some(json!(other)),
        Text::Missing => None,
        Text::List => Some(json!([right])),
    }
}

fn sign(signing: &Signing, claims: &Value) -> String {
    let (algorithm, key, kid) = match signing {
        Signing::Hs256 => (Algorithm::HS256, EncodingKey::from_secret(SECRET), None),
        Signing::Hs256WrongSecret => (Algorithm::HS256, EncodingKey::from_secret(b"guess"), None),
        Signing::Hs384 => (Algorithm::HS384, EncodingKey::from_secret(SECRET), None),
        Signing::Es256 => (Algorithm::ES256, EC.clone(), Some(KID.to_owned())),
        Signing::Es256Kid(kid) => (Algorithm::ES256, EC.clone(), Some(kid.clone())),
        Signing::Es256NoKid => (Algorithm::ES256, EC.clone(), None),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Whether the verifiers should accept `minted` (times are offsets from
/// now), or `None` when the answer depends on which second the check runs
/// in.
fn model(minted: &Minted) -> Option<bool> {
    let mut ok = true;
    let near = |value: i64, edge: i64| (value - edge).abs() <= 2;
    ok &= matches!(&minted.sub, Some(sub) if !sub.is_empty() && sub.chars().count() <= 256);
    ok &= match &minted.aud {
        Text::Right => true,
        Text::Other(other) => other == AUDIENCE,
        Text::Missing | Text::List => false,
    };
    ok &= match &minted.iss {
        Text::Right => true,
        Text::Other(other) => other == ISSUER,
        Text::Missing | Text::List => false,
    };
    let Some(exp) = minted.exp.map(i64::from) else {
        return Some(false);
    };
    if near(exp, -LEEWAY) {
        return None;
    }
    ok &= exp >= -LEEWAY;
    if let Some(nbf) = minted.nbf.map(i64::from) {
        if near(nbf, LEEWAY) {
            return None;
        }
        ok &= nbf <= LEEWAY;
    }
    // A lifetime counted from the earlier of `iat` and now.
    let from = minted.iat.map_or(0, |iat| i64::from(iat).min(0));
    let lifetime = exp - from;
    if near(lifetime, LIFETIME + LEEWAY) {
        return None;
    }
    ok &= lifetime <= LIFETIME + LEEWAY;
    Some(ok)
}

fn minted(minted: Minted) {
    let now = now();
    let mut claims = Map::new();
    if let Some((name, value)) = &minted.extra {
        claims.insert(name.clone(), json!(value));
    }
    if let Some(sub) = &minted.sub {
        claims.insert("sub".into(), json!(sub));
    }
    if let Some(aud) = text(&minted.aud, AUDIENCE) {
        claims.insert("aud".into(), aud);
    }
    if let Some(iss) = text(&minted.iss, ISSUER) {
        claims.insert("iss".into(), iss);
    }
    for (name, offset) in [
        ("exp", minted.exp),
        ("iat", minted.iat),
        ("nbf", minted.nbf),
    ] {
        if let Some(offset) = offset {
            claims.insert(name.into(), json!(now + i64::from(offset)));
        }
    }
    if let Some(scope) = &minted.scope {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some((name, _)) = &minted.extra
        && ["sub", "aud", "iss", "exp", "iat", "nbf", "scope"].contains(&name.as_str())
    {
        // The extra claim was overwritten or would be read as a standard one.
        return;
    }
    let token = sign(&minted.signing, &Value::Object(claims));
    let hs = verify(&HS, &token);
    let jwks = verify(&JWKS, &token);
    let Some(valid) = model(&minted) else {
        return;
    };
    // Tokens over 8 KiB are refused unread.
    let valid = valid && token.len() <= 8 * 1024;
    let hs_signed = matches!(minted.signing, Signing::Hs256);
    let ec_signed = match &minted.signing {
        Signing::Es256 => true,
        Signing::Es256Kid(kid) => kid == KID,
        _ => false,
    };
    assert_eq!(
        hs.is_some(),
        valid && hs_signed,
        "HS256 verifier: {minted:?}"
    );
    assert_eq!(
        jwks.is_some(),
        valid && ec_signed,
        "JWKS verifier: {minted:?}"
    );
    if let Some(identity) = hs.or(jwks) {
        assert_eq!(Some(&identity.subject), minted.sub.as_ref());
        let scopes: Vec<String> = minted
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(identity.scopes, scopes);
    }
}

/// A good token with one edit: accepted only if the signed part (header
/// and claims) is untouched and the signature decodes to the same bytes.
fn edited(at: u16, byte: u8, how: u8) {
    let now = now();
    let claims = json!({
        "sub": "user-1", "aud": AUDIENCE, "iss": ISSUER,
        "exp": now + 60, "iat": now, "scope": "orders",
    });
    for (signing, auth) in [(Signing::Hs256, &*HS), (Signing::Es256, &*JWKS)] {
        let good = sign(&signing, &claims);
        let mut bytes = good.clone().into_bytes();
        let at = usize::from(at) % (bytes.len() + 1);
        match how % 3 {
            0 => bytes.truncate(at),
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
        let Ok(token) = String::from_utf8(bytes) else {
            continue;
        };
        if token == good || verify(auth, &token).is_none() {
            continue;
        }
        let signed = |t: &str| t.rsplit_once('.').map(|(signed, _)| signed.to_owned());
        assert_eq!(signed(&token), signed(&good), "{token:?} accepted");
        let signature = |t: &str| URL_SAFE_NO_PAD.decode(t.rsplit_once('.').unwrap().1);
        assert_eq!(
            signature(&token).unwrap(),
            signature(&good).unwrap(),
            "{token:?} accepted with another signature"
        );
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(token) => {
            for auth in [&*HS, &*JWKS] {
                if let Some(identity) = verify(auth, &token) {
                    assert!(!identity.subject.is_empty());
                    assert!(identity.subject.chars().count() <= 256);
                }
            }
        }
        Input::Edited { at, byte, how } => edited(at, byte, how),
        Input::Minted(m) => minted(m),
    }
});
