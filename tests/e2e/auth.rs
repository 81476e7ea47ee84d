use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tailor_auth::{Claims, mint_hs256};
use tailor_e2e::{Process, SECRET, Stack, bearer, claims, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{ListProductsRequest, PlaceOrderRequest};
use tonic::{Code, Status};

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn every_kind_of_bad_token_is_unauthenticated() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let good = web_token("erin");
    let payload = good.split('.').nth(1).unwrap();

    let mut expired_claims = claims("erin", tailor_web_bff::DEFAULT_AUDIENCE);
    expired_claims.exp -= 7200;
    let alg_none = format!("{}.{payload}.", base64url(br#"{"alg":"none","typ":"JWT"}"#));
    let cases = [
        ("alg none", alg_none),
        (
            "bad signature",
            mint_hs256(b"someone-elses-secret", &claims("erin", "tailor-web")),
        ),
        ("expired", mint_hs256(SECRET, &expired_claims)),
        (
            "wrong audience",
            mint_hs256(SECRET, &claims("erin", "tailor-mobile")),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in cases {
        for protected in [true, false] {
            let status = if protected {
                web.place_order(bearer(&token, PlaceOrderRequest::default()))
                    .await
                    .unwrap_err()
            } else {
                web.list_products(bearer(&token, ListProductsRequest::default()))
                    .await
                    .unwrap_err()
            };
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{what} (protected: {protected})"
            );
        }
    }
    // The good token passes the auth layer (and fails later, on the empty order).
    let status = web
        .place_order(bearer(&good, PlaceOrderRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn request_ids_are_kept_or_minted_and_returned() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let mut request = tonic::Request::new(ListProductsRequest {
        page_size: 1,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "checkout-7f3a".parse().unwrap());
    let response = web.list_products(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "checkout-7f3a"
    );

    let response = web
        .list_products(ListProductsRequest::default())
        .await
        .unwrap();
    let minted = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(minted.len(), 32);

    let status = web
        .place_order(PlaceOrderRequest::default())
        .await
        .unwrap_err();
    assert!(
        status.metadata().get("x-request-id").is_some(),
        "errors carry the id too"
    );
}

/// An RSA key pair made with the `openssl` command for one test: the
/// private key signs tokens as an identity provider would, the public key
/// is what the BFF is given.
struct RsaKey {
    private: PathBuf,
    public: PathBuf,
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command makes the RS256 test keys");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

impl RsaKey {
    fn generate(dir: &Path, name: &str) -> RsaKey {
        let private = dir.join(format!("{name}.key.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let (private_arg, public_arg) = (private.to_str().unwrap(), public.to_str().unwrap());
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ]
            .into_iter()
            .chain(["-out", private_arg])
            .collect::<Vec<_>>(),
            b"",
        );
        openssl(
            &["pkey", "-in", private_arg, "-pubout", "-out", public_arg],
            b"",
        );
        RsaKey { private, public }
    }

    /// An RS256 token (RSASSA-PKCS1-v1_5 with SHA-256) over `claims`.
    fn sign(&self, claims: &Claims) -> String {
        let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = base64url(&serde_json::to_vec(claims).unwrap());
        let input = format!("{header}.{payload}");
        let signature = openssl(
            &[
                "dgst",
                "-sha256",
                "-binary",
                "-sign",
                self.private.to_str().unwrap(),
            ],
            input.as_bytes(),
        );
        format!("{input}.{}", base64url(&signature))
    }
}

const ISSUER: &str = "https://id.shop.test";

/// Places an order on the web or mobile BFF `binary` at `address` with
/// `token`, as its client would; the order's id.
async fn place_order(binary: &str, address: SocketAddr, token: &str) -> Result<String, Status> {
    let (product_id, quantity) = ("prod-000042".to_owned(), 1);
    let idempotency_key = "rs256-checkout".to_owned();
    let channel = tailor_e2e::connect(address).await;
    let order = if binary == "tailor-web-bff" {
        use tailor_proto::web::v1::OrderLineInput;
        let request = PlaceOrderRequest {
            idempotency_key,
            lines: vec![OrderLineInput {
                product_id,
                quantity,
            }],
        };
        let placed = ShopServiceClient::new(channel)
            .place_order(bearer(token, request))
            .await?;
        placed.into_inner().order.map(|order| order.id)
    } else {
        use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
        use tailor_proto::mobile::v1::{OrderLineInput, PlaceOrderRequest};
        let request = PlaceOrderRequest {
            idempotency_key,
            lines: vec![OrderLineInput {
                product_id,
                quantity,
            }],
        };
        let placed = ShopServiceClient::new(channel)
            .place_order(bearer(token, request))
            .await?;
        placed.into_inner().order.map(|order| order.id)
    };
    Ok(order.expect("an order in the answer"))
}

/// The web and mobile BFF binaries, each with its token audience.
const JWT_BFFS: [(&str, &str); 2] = [
    ("tailor-web-bff", tailor_web_bff::DEFAULT_AUDIENCE),
    ("tailor-mobile-bff", tailor_mobile_bff::DEFAULT_AUDIENCE),
];

/// `binary` started as an operator would with an identity provider's
/// public key and issuer, over the downstream services of `stack`.
async fn start_with_rs256(binary: &str, stack: &Stack, public_key: &Path, data: &Path) -> Process {
    Process::start(
        binary,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--catalog-addr",
            &stack.catalog.url(),
            "--inventory-addr",
            &stack.inventory.url(),
            "--reviews-addr",
            &stack.reviews.url(),
            "--orders-addr",
            &stack.orders.url(),
            "--jwt-rs256-public-key",
            public_key.to_str().unwrap(),
            "--jwt-issuer",
            ISSUER,
            // The secret HS256 tokens would be checked with, were no RS256
            // key given.
            "--jwt-hs256-secret",
            std::str::from_utf8(SECRET).unwrap(),
        ],
    )
    .await
}

/// Claims for `subject` and `audience` from `issuer` (none when empty).
fn issued(subject: &str, audience: &str, issuer: &str) -> Claims {
    Claims {
        iss: issuer.to_owned(),
        ..claims(subject, audience)
    }
}

#[tokio::test]
async fn rs256_tokens_of_the_configured_key_and_issuer_are_the_only_ones_accepted() {
    let stack = Stack::start().await;
    let keys = tempfile::tempdir().unwrap();
    let issuer_key = RsaKey::generate(keys.path(), "issuer");
    let other_key = RsaKey::generate(keys.path(), "other");
    for (binary, audience) in JWT_BFFS {
        let data = tempfile::tempdir().unwrap();
        let bff = start_with_rs256(binary, &stack, &issuer_key.public, data.path()).await;

        let good = issuer_key.sign(&issued("ivy", audience, ISSUER));
        place_order(binary, bff.address, &good)
            .await
            .unwrap_or_else(|status| panic!("{binary}: a token of the issuer: {status:?}"));

        let refused = [
            (
                "signed with another key",
                other_key.sign(&issued("ivy", audience, ISSUER)),
                "bad token signature",
            ),
            (
                "HS256 with the BFF's secret",
                mint_hs256(SECRET, &issued("ivy", audience, ISSUER)),
                "algorithm not accepted",
            ),
            (
                "from another issuer",
                issuer_key.sign(&issued("ivy", audience, "https://id.elsewhere.test")),
                "wrong issuer",
            ),
        ];
        for (what, token, reason) in refused {
            let status = place_order(binary, bff.address, &token)
                .await
                .expect_err(what);
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
async fn with_an_issuer_configured_a_token_without_iss_is_unauthenticated() {
    let stack = Stack::start().await;
    let keys = tempfile::tempdir().unwrap();
    let issuer_key = RsaKey::generate(keys.path(), "issuer");
    for (binary, audience) in JWT_BFFS {
        let data = tempfile::tempdir().unwrap();
        let bff = start_with_rs256(binary, &stack, &issuer_key.public, data.path()).await;
        let unissued = issuer_key.sign(&issued("ivy", audience, ""));
        let status = place_order(binary, bff.address, &unissued)
            .await
            .expect_err("a token naming no issuer is refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{binary}: {status:?}");
    }
}

#[tokio::test]
async fn a_bff_without_a_configured_key_refuses_to_start_unless_told_it_is_development() {
    for binary in ["tailor-web-bff", "tailor-mobile-bff"] {
        let data = tempfile::tempdir().unwrap();
        let data = data.path().to_str().unwrap();
        let start = |extra: &[&str]| {
            let mut command = tailor_e2e::command(binary);
            command
                .args(["--listen", "127.0.0.1:0", "--data-dir", data])
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            command
        };
        // No key at all, or the public development secret given as if it
        // were a real one: no start, and the message names the flags.
        for extra in [
            &[][..],
            &["--jwt-hs256-secret", tailor_auth::DEVELOPMENT_JWT_SECRET],
        ] {
            let output = start(extra).output().await.unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{binary} {extra:?} started");
            assert!(stderr.contains("--jwt-hs256-secret"), "{binary}: {stderr}");
            assert!(stderr.contains("--dev-secrets"), "{binary}: {stderr}");
        }
        // With the development switch it starts, and says what it does.
        let log = tempfile::NamedTempFile::new().unwrap();
        let process = tailor_e2e::Process::start_with(
            binary,
            &["--data-dir", data],
            &[("TAILOR_DEV_SECRETS", "1")],
            Some(log.path()),
        )
        .await;
        let health = tonic_health::pb::health_client::HealthClient::new(
            tailor_e2e::connect(process.address).await,
        )
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
        assert!(health.is_ok(), "{binary}: {health:?}");
        let said = std::fs::read_to_string(log.path()).unwrap();
        assert!(said.contains("development secret"), "{binary}: {said}");
    }
}
