use serde_json::{Value, json};

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
    let huge = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(
        auth.verify(&huge),
        Err(AuthError::Invalid("token too long"))
    );
}

const RSA_PRIVATE: &[u8] = include_bytes!("../../testdata/rsa-2048.key.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../testdata/rsa-2048.pub.pem");
const RSA_WEAK: &[u8] = include_bytes!("../../testdata/rsa-1024.key.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../testdata/ec-p256.key.pem");
const ISSUER: &str = "https://id.shop.test";

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE).unwrap()
}

/// The public half of `key` as a JWKS entry named `kid`, as an identity
/// provider publishes it.
fn jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// The issuer's key set: an RSA key `rsa-1` and a P-256 key `ec-1`.
fn issuer_keys() -> Vec<u8> {
    jwks(&[
        jwk(&rsa(), Algorithm::RS256, "rsa-1"),
        jwk(&ec(), Algorithm::ES256, "ec-1"),
    ])
}

fn verifier() -> JwtAuthenticator {
    JwtAuthenticator::new(&JwtKey::Jwks(issuer_keys()), "web", Some(ISSUER)).unwrap()
}

/// Claims of a good token, valid for ten minutes from now.
fn good_claims() -> Value {
    json!({
        "sub": "user-7",
        "aud": "web",
        "iss": ISSUER,
        "iat": now(),
        "exp": now() + 600,
    })
}

fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn with(changes: Value) -> Value {
    let mut claims = good_claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

#[test]
fn rs256_and_es256_tokens_are_verified_with_the_key_their_kid_names() {
    let auth = verifier();
    let by_rsa = sign(Algorithm::RS256, Some("rsa-1"), &good_claims(), &rsa());
    assert_eq!(auth.verify(&by_rsa).unwrap().subject, "user-7");
    let by_ec = sign(Algorithm::ES256, Some("ec-1"), &good_claims(), &ec());
    assert_eq!(auth.verify(&by_ec).unwrap().subject, "user-7");
}

#[test]
fn the_key_not_the_token_decides_the_algorithm() {
    let auth = verifier();
    let cases = [
        (
            "an unknown kid",
            sign(Algorithm::RS256, Some("rsa-2"), &good_claims(), &rsa()),
            "unknown key",
        ),
        (
            "no kid",
            sign(Algorithm::RS256, None, &good_claims(), &rsa()),
            "names no key",
        ),
        (
            "HS256 with the RSA public key as its secret",
            sign(
                Algorithm::HS256,
                Some("rsa-1"),
                &good_claims(),
                &EncodingKey::from_secret(RSA_PUBLIC),
            ),
            "algorithm not accepted",
        ),
        (
            "ES256 naming the RSA key",
            sign(Algorithm::ES256, Some("rsa-1"), &good_claims(), &ec()),
            "algorithm not accepted",
        ),
        (
            "RS256 naming the EC key",
            sign(Algorithm::RS256, Some("ec-1"), &good_claims(), &rsa()),
            "algorithm not accepted",
        ),
        (
            "signed by the EC key, naming another EC key's kid",
            sign(Algorithm::ES256, Some("ec-1"), &good_claims(), &{
                let other = unpublished_p256();
                EncodingKey::from_ec_pem(other.as_bytes()).unwrap()
            }),
            "bad token signature",
        ),
    ];
    for (what, token, reason) in cases {
        let error = auth.verify(&token).expect_err(what);
        assert!(
            matches!(error, AuthError::Invalid(r) if r.contains(reason)),
            "{what}: {error:?}"
        );
    }
}

/// A valid P-256 key the issuer never published: PKCS#8 of the private
/// scalar 0x1111...11 (no public point stored; the signer derives it).
fn unpublished_p256() -> String {
    let der: Vec<u8> = [
        &[
            0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27,
            0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
        ][..],
        &[0x11; 32][..],
    ]
    .concat();
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

#[test]
fn exp_is_required_nbf_and_iss_are_checked() {
    let auth = verifier();
    let cases = [
        (
            "no exp",
            with(json!({ "exp": null })),
            "lacks a required claim",
        ),
        (
            "nbf in an hour",
            with(json!({ "nbf": now() + 3600 })),
            "not yet valid",
        ),
        (
            "another issuer",
            with(json!({ "iss": "https://id.elsewhere.test" })),
            "wrong issuer",
        ),
        (
            "no issuer",
            with(json!({ "iss": null })),
            "lacks a required claim",
        ),
        ("expired", with(json!({ "exp": now() - 60 })), "expired"),
        (
            "a subject of 1,000 characters",
            with(json!({ "sub": "s".repeat(1000) })),
            "subject too long",
        ),
    ];
    for (what, claims, reason) in cases {
        let token = sign(Algorithm::RS256, Some("rsa-1"), &claims, &rsa());
        let error = auth.verify(&token).expect_err(what);
        assert!(
            matches!(error, AuthError::Invalid(r) if r.contains(reason)),
            "{what}: {error:?}"
        );
    }
    let started = with(json!({ "nbf": now() - 10 }));
    let token = sign(Algorithm::ES256, Some("ec-1"), &started, &ec());
    assert!(auth.verify(&token).is_ok());
}

#[test]
fn tokens_valid_for_longer_than_the_maximum_lifetime_are_refused() {
    let auth = verifier().with_max_lifetime(3600);
    let t = now();
    let refused = [
        ("issued for a day", json!({ "iat": t, "exp": t + 86_400 })),
        (
            "issued for a day, an hour ago",
            json!({ "iat": t - 3600, "exp": t + 82_800 }),
        ),
        (
            "no iat, a day left",
            json!({ "iat": null, "exp": t + 86_400 }),
        ),
        (
            "iat in the future to shorten the count",
            json!({ "iat": t + 86_400, "exp": t + 86_400 + 600 }),
        ),
    ];
    for (what, changes) in refused {
        let token = sign(Algorithm::RS256, Some("rsa-1"), &with(changes), &rsa());
        assert_eq!(
            auth.verify(&token),
            Err(AuthError::Invalid("token lifetime is longer than allowed")),
            "{what}"
        );
    }
    let accepted = [
        ("exactly the maximum", json!({ "iat": t, "exp": t + 3600 })),
        (
            "no iat, half an hour left",
            json!({ "iat": null, "exp": t + 1800 }),
        ),
    ];
    for (what, changes) in accepted {
        let token = sign(Algorithm::ES256, Some("ec-1"), &with(changes), &ec());
        assert!(auth.verify(&token).is_ok(), "{what}");
    }
    // The default applies without configuration too.
    let day = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &with(json!({ "exp": t + 86_400 })),
        &rsa(),
    );
    assert!(verifier().verify(&day).is_err());
}

#[test]
fn a_key_set_loads_the_keys_it_can_use_and_refuses_to_be_weak_or_ambiguous() {
    let usable = jwk(&rsa(), Algorithm::RS256, "rsa-1");
    let mut no_kid = jwk(&ec(), Algorithm::ES256, "x");
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut for_encryption = jwk(&ec(), Algorithm::ES256, "enc-1");
    for_encryption["use"] = json!("enc");
    let secret = json!({ "kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": "c2VjcmV0" });
    let ps256 = {
        let mut key = jwk(&rsa(), Algorithm::RS256, "pss-1");
        key["alg"] = json!("PS256");
        key
    };
    let odd = json!({ "kty": "XYZ", "kid": "odd-1" });
    let mixed = jwks(&[
        no_kid,
        for_encryption,
        secret.clone(),
        ps256,
        odd,
        usable.clone(),
    ]);
    let auth = JwtAuthenticator::new(&JwtKey::Jwks(mixed), "web", Some(ISSUER)).unwrap();
    let Keys::ById(keys) = &auth.keys else {
        panic!("a key set is kept by kid")
    };
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["rsa-1"]);
    // The skipped HMAC key verifies nothing.
    let hs = sign(
        Algorithm::HS256,
        Some("hmac-1"),
        &good_claims(),
        &EncodingKey::from_secret(b"secret"),
    );
    assert!(auth.verify(&hs).is_err());

    let weak = jwk(
        &EncodingKey::from_rsa_pem(RSA_WEAK).unwrap(),
        Algorithm::RS256,
        "weak-1",
    );
    let refusals = [
        (jwks(&[secret]), "no RS256 or ES256"),
        (jwks(&[weak]), "at least 2048 bits"),
        (jwks(&[usable.clone(), usable]), "more than once"),
        (b"{\"keys\": 7}".to_vec(), "not a key set"),
    ];
    for (document, reason) in refusals {
        let error = JwtAuthenticator::new(&JwtKey::Jwks(document), "web", Some(ISSUER))
            .err()
            .expect(reason);
        assert!(error.contains(reason), "{error}");
    }
}
