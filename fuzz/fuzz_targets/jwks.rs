//! JWKS documents (`JwtKey::Jwks`), which a BFF reads from its operator's
//! file at start: any bytes, and key sets assembled from arbitrary key
//! parameters so that the key checks are reached.
//!
//! Invariants: no panic; a document either loads or is refused with a
//! message, never both; a loaded verifier refuses a garbage token.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tailor_auth::{JwtAuthenticator, JwtKey};

#[derive(Debug, Arbitrary)]
struct Key {
    kty: Option<String>,
    kid: Option<String>,
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    /// RSA modulus and exponent, EC coordinates: raw bytes, base64url'd
    /// (or given as text, which may be anything).
    n: Option<Vec<u8>>,
    e: Option<Vec<u8>>,
    x: Option<Vec<u8>>,
    y: Option<Vec<u8>>,
    text: Option<(String, String)>,
}

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Raw(&'a [u8]),
    Keys(Vec<Key>),
}

fn document(keys: &[Key]) -> Vec<u8> {
    use base64::Engine;
    let b64 = |bytes: &Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let keys: Vec<Value> = keys
        .iter()
        .map(|key| {
            let mut object = Map::new();
            let mut put = |name: &str, value: Option<Value>| {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            };
            put("kty", key.kty.as_ref().map(|v| json!(v)));
            put("kid", key.kid.as_ref().map(|v| json!(v)));
            put("use", key.usage.as_ref().map(|v| json!(v)));
            put("alg", key.alg.as_ref().map(|v| json!(v)));
            put("crv", key.crv.as_ref().map(|v| json!(v)));
            put("n", key.n.as_ref().map(|v| json!(b64(v))));
            put("e", key.e.as_ref().map(|v| json!(b64(v))));
            put("x", key.x.as_ref().map(|v| json!(b64(v))));
            put("y", key.y.as_ref().map(|v| json!(b64(v))));
            if let Some((name, value)) = &key.text {
                put(name, Some(json!(value)));
            }
            Value::Object(object)
        })
        .collect();
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fuzz_target!(|input: Input<'_>| {
    let bytes = match input {
        Input::Raw(bytes) => bytes.to_vec(),
        Input::Keys(keys) => document(&keys),
    };
    match JwtAuthenticator::new(&JwtKey::Jwks(bytes), "web", None) {
        Ok(verifier) => {
            assert!(
                verifier
                    .verify("eyJhbGciOiJFUzI1NiIsImtpZCI6ImEifQ.e30.AAAA")
                    .is_err()
            );
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
