use tailor_auth::mint_hs256;
use tailor_e2e::{SECRET, Stack, bearer, claims, web_token};
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{ListProductsRequest, PlaceOrderRequest};
use tonic::Code;

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
