//! Tokens of an identity provider verified with its published keys (a
//! JWKS file): the key a token names with `kid` decides the algorithm, and
//! the token's lifetime is bounded, through the real BFF binaries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tailor_e2e::{Process, SECRET, Stack, bearer};
use tonic::{Code, Status};

const ISSUER: &str = "https://id.shop.test";

/// The key pairs the identity provider of these tests signs with.
fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/platform/auth/testdata")
        .join(name)
}

fn private_key(name: &str, algorithm: Algorithm) -> EncodingKey {
    let pem = std::fs::read(testdata(name)).unwrap();
    match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    }
}

/// The provider's JWKS document as it publishes it: the public halves of
/// an RSA key `rsa-1` and a P-256 key `ec-1`.
fn write_jwks(dir: &Path) -> PathBuf {
    let public = |name, algorithm, kid: &str| {
        let mut jwk = Jwk::from_encoding_key(&private_key(name, algorithm), algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    };
    let document = json!({ "keys": [
        public("rsa-2048.key.pem", Algorithm::RS256, "rsa-1"),
        public("ec-p256.key.pem", Algorithm::ES256, "ec-1"),
    ]});
    let path = dir.join("jwks.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    path
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(audience: &str, lifetime: u64) -> Value {
    json!({
        "sub": "jo",
        "aud": audience,
        "iss": ISSUER,
        "iat": now(),
        "exp": now() + lifetime,
    })
}

fn sign(algorithm: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Asks the web or mobile BFF at `address` for an order that does not
/// exist: NOT_FOUND once the token is accepted, UNAUTHENTICATED before.
async fn watch_missing_order(binary: &str, address: SocketAddr, token: &str) -> Status {
    let channel = tailor_e2e::connect(address).await;
    let outcome = if binary == "tailor-web-bff" {
        use tailor_proto::web::v1::WatchOrderRequest;
        use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
        let request = WatchOrderRequest {
            order_id: "ord-never-placed".into(),
        };
        ShopServiceClient::new(channel)
            .watch_order(bearer(token, request))
            .await
            .map(|_| ())
    } else {
        use tailor_proto::mobile::v1::WatchOrderRequest;
        use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
        let request = WatchOrderRequest {
            order_id: "ord-never-placed".into(),
        };
        ShopServiceClient::new(channel)
            .watch_order(bearer(token, request))
            .await
            .map(|_| ())
    };
    outcome.expect_err("no such order")
}

#[tokio::test]
async fn tokens_are_checked_against_the_jwks_key_their_kid_names() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(dir.path());
    let rsa = private_key("rsa-2048.key.pem", Algorithm::RS256);
    let ec = private_key("ec-p256.key.pem", Algorithm::ES256);
    let rsa_public = std::fs::read(testdata("rsa-2048.pub.pem")).unwrap();
    for (binary, audience) in [
        ("tailor-web-bff", tailor_web_bff::DEFAULT_AUDIENCE),
        ("tailor-mobile-bff", tailor_mobile_bff::DEFAULT_AUDIENCE),
    ] {
        let data = tempfile::tempdir().unwrap();
        // The harness also passes its HS256 secret: the JWKS wins.
        let bff = Process::start_bff(
            binary,
            data.path().to_str().unwrap(),
            &stack.downstream_urls(),
            &["--jwt-jwks", jwks.to_str().unwrap(), "--jwt-issuer", ISSUER],
            &[],
            None,
        )
        .await;

        let ten_minutes = claims(audience, 600);
        for (what, token) in [
            ("RS256", sign(Algorithm::RS256, "rsa-1", &ten_minutes, &rsa)),
            ("ES256", sign(Algorithm::ES256, "ec-1", &ten_minutes, &ec)),
        ] {
            let status = watch_missing_order(binary, bff.address, &token).await;
            assert_eq!(status.code(), Code::NotFound, "{binary} {what}: {status:?}");
        }

        let refused = [
            (
                "an unknown kid",
                sign(Algorithm::RS256, "rsa-2", &ten_minutes, &rsa),
                "unknown key",
            ),
            (
                "a lifetime of a day",
                sign(Algorithm::RS256, "rsa-1", &claims(audience, 86_400), &rsa),
                "lifetime",
            ),
            (
                "HS256 keyed with the RSA public key",
                sign(
                    Algorithm::HS256,
                    "rsa-1",
                    &ten_minutes,
                    &EncodingKey::from_secret(&rsa_public),
                ),
                "algorithm not accepted",
            ),
            (
                "HS256 with the secret the BFF was also given",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &ten_minutes,
                    &EncodingKey::from_secret(SECRET),
                )
                .unwrap(),
                "names no key",
            ),
        ];
        for (what, token, reason) in refused {
            let status = watch_missing_order(binary, bff.address, &token).await;
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{binary}: {what}: {status:?}"
            );
            assert!(
                status.message().contains(reason),
                "{binary}: {what}: {}",
                status.message()
            );
        }
    }
}

#[tokio::test]
async fn a_jwks_without_an_issuer_or_without_usable_keys_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = write_jwks(dir.path());
    let only_secrets = dir.path().join("secrets.json");
    std::fs::write(
        &only_secrets,
        br#"{"keys":[{"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0"}]}"#,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    for (flags, said) in [
        (vec!["--jwt-jwks", jwks.to_str().unwrap()], "--jwt-issuer"),
        (
            vec![
                "--jwt-jwks",
                only_secrets.to_str().unwrap(),
                "--jwt-issuer",
                ISSUER,
            ],
            "no RS256 or ES256",
        ),
    ] {
        let output = tailor_e2e::command("tailor-web-bff")
            .args(["--listen", "127.0.0.1:0"])
            .args(["--data-dir", data.path().to_str().unwrap()])
            .args(&flags)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        assert!(stderr.contains(said), "{flags:?}: {stderr}");
    }
}
