use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tailor_e2e::{Stack, all_scopes, api_key};
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::partner::v1::{
    BatchGetAvailabilityRequest, GetOrderRequest, ListOrdersRequest, OrderLine, PlaceOrderRequest,
    StreamCatalogFeedRequest,
};
use tonic::Code;

/// How long the partner BFF trusts a looked-up key (the README: "a key
/// revoked with the `keys revoke` command stops working within that").
const KEY_CACHE: Duration = Duration::from_secs(2);
/// Room for a loaded machine on top of a promised time.
const MARGIN: Duration = Duration::from_secs(2);

/// Revokes `key_id` in the partner store under `data_dir` with the
/// `keys revoke` command, as an operator would.
async fn revoke_with_cli(data_dir: &Path, key_id: &str) {
    let output = tailor_e2e::command("tailor-partner-bff")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["keys", "revoke", key_id])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains(&format!("revoked {key_id}")), "{said}");
}

#[tokio::test]
async fn the_feed_streams_the_whole_catalogue_and_resumes_from_a_cursor() {
    let stack = Stack::start().await;
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let key = &stack.partner_key;
    let all: Vec<_> = partner
        .stream_catalog_feed(api_key(key, StreamCatalogFeedRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), tailor_e2e::PRODUCTS as usize);
    let ids: Vec<&str> = all
        .iter()
        .map(|m| m.product.as_ref().unwrap().id.as_str())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by id, each once"
    );
    let first = all[0].product.as_ref().unwrap();
    assert!(!first.image_urls.is_empty() && first.price_minor > 0);

    // Drop the connection after 150 products, resume from the last cursor.
    let cut = 150;
    let resumed: Vec<_> = partner
        .stream_catalog_feed(api_key(
            key,
            StreamCatalogFeedRequest {
                cursor: all[cut - 1].cursor.clone(),
                updated_since: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .map(|m| m.unwrap().product.unwrap().id)
        .collect()
        .await;
    assert_eq!(resumed.len(), all.len() - cut);
    assert_eq!(resumed[0], ids[cut]);

    let bad = partner
        .stream_catalog_feed(api_key(
            key,
            StreamCatalogFeedRequest {
                cursor: "%%garbage".into(),
                updated_since: None,
            },
        ))
        .await;
    let status = match bad {
        Err(status) => status,
        Ok(stream) => stream.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn availability_answers_per_requested_id() {
    let stack = Stack::start().await;
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let ids = vec![
        "prod-000001".to_owned(),
        "prod-999999".to_owned(),
        "prod-000300".to_owned(),
    ];
    let answer = partner
        .batch_get_availability(api_key(
            &stack.partner_key,
            BatchGetAvailabilityRequest {
                product_ids: ids.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<&str> = answer
        .availabilities
        .iter()
        .map(|a| a.product_id.as_str())
        .collect();
    assert_eq!(got, ids);
    assert!(answer.availabilities[0].known);
    assert!(!answer.availabilities[1].known);
    assert!(answer.availabilities[2].known);

    let too_many = partner
        .batch_get_availability(api_key(
            &stack.partner_key,
            BatchGetAvailabilityRequest {
                product_ids: (0..501).map(|i| format!("prod-{i:06}")).collect(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn partners_see_only_their_own_orders() {
    let stack = Stack::start().await;
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let acme = &stack.partner_key;
    let (globex, _) = stack
        .keys
        .create("globex", "e2e", &all_scopes(), "standard")
        .await
        .unwrap();
    let order = partner
        .place_order(api_key(
            acme,
            PlaceOrderRequest {
                idempotency_key: "po-1001".into(),
                lines: vec![OrderLine {
                    product_id: "prod-000003".into(),
                    quantity: 5,
                    unit_price_minor: 0,
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(
        order.lines[0].unit_price_minor > 0,
        "the price is the catalogue's"
    );
    assert_eq!(order.total_minor, order.lines[0].unit_price_minor * 5);

    let own = partner
        .get_order(api_key(
            acme,
            GetOrderRequest {
                order_id: order.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(own.id, order.id);
    let listed = partner
        .list_orders(api_key(acme, ListOrdersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders.len(), 1);

    let foreign = partner
        .get_order(api_key(
            &globex.token,
            GetOrderRequest {
                order_id: order.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert!(!foreign.message().contains("acme"));
    let globex_list = partner
        .list_orders(api_key(&globex.token, ListOrdersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(globex_list.orders.is_empty());
}

#[tokio::test]
async fn keys_are_checked_for_existence_revocation_and_scope() {
    let stack = Stack::start().await;
    let mut partner = PartnerServiceClient::new(stack.partner.channel().await);
    let request = || BatchGetAvailabilityRequest {
        product_ids: vec!["prod-000001".into()],
    };
    let missing = partner.batch_get_availability(request()).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let unknown = partner
        .batch_get_availability(api_key(
            "tk_0123456789abcdef_00000000000000000000000000000000",
            request(),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let (reader, _) = stack
        .keys
        .create(
            "initech",
            "catalogue only",
            &["catalog.read".into()],
            "standard",
        )
        .await
        .unwrap();
    let denied = partner
        .batch_get_availability(api_key(&reader.token, request()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("availability.read"));

    // Revocation as an operator does it: the `keys revoke` command, a
    // process of its own on the BFF's store. The BFF trusts a looked-up key
    // for 2 s, so it may still accept the key right after, must refuse it
    // within those 2 s, and refuses it from then on.
    let (revoked_key, revoked_info) = stack
        .keys
        .create("umbrella", "to be revoked", &all_scopes(), "standard")
        .await
        .unwrap();
    let call = || {
        let mut partner = partner.clone();
        let request = api_key(&revoked_key.token, request());
        async move { partner.batch_get_availability(request).await }
    };
    call().await.expect("the key works before it is revoked");
    revoke_with_cli(stack.dir.path(), &revoked_info.key_id).await;
    let revoked_at = Instant::now();
    let right_after = match call().await {
        Ok(_) => "still accepted from the cache",
        Err(status) if status.code() == Code::Unauthenticated => "already refused",
        Err(status) => panic!("right after revocation: {status:?}"),
    };
    let revoked = loop {
        match call().await {
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < KEY_CACHE + MARGIN,
                    "the revoked key is still accepted {:?} after `keys revoke`",
                    revoked_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                break status;
            }
        }
    };
    let refused_after = revoked_at.elapsed();
    // From then on, through a whole cache lifetime and the next read of
    // the store, every call is refused.
    let refused_since = Instant::now();
    let mut refusals = 0;
    while refused_since.elapsed() < KEY_CACHE + Duration::from_millis(300) {
        let status = call().await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "revocation by command: right after, {right_after}; refused after {refused_after:?}, \
         then {refusals} calls refused"
    );
    let seen: HashSet<_> = [missing.message(), unknown.message(), revoked.message()]
        .into_iter()
        .collect();
    assert_eq!(seen.len(), 3, "each refusal says what is wrong");
}
