//! Only the BFFs may call the downstream services, and the user a call is
//! made for is what the calling BFF signed, never what a request says.
//! Each attack is tried the way an intruder on the network would: straight
//! at a downstream port, over real sockets.

use std::process::Stdio;
use std::time::Duration;

use tailor_e2e::{Stack, bearer, command, connect, on_behalf_of, trust, web_token};
use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tailor_proto::orders::v1::{CreateOrderRequest, ListOrdersRequest, OrderLine};
use tailor_proto::r#type::v1::Money;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{OrderLineInput, PlaceOrderRequest};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn product() -> GetProductRequest {
    GetProductRequest {
        id: "prod-000001".into(),
    }
}

#[tokio::test]
async fn a_downstream_port_refuses_plaintext_strangers_and_certificates_of_no_bff() {
    let stack = Stack::start().await;
    let (catalog, orders) = (&stack.catalog, &stack.orders);

    // Plaintext to the API port: a gRPC status, not a reset.
    let status = CatalogServiceClient::new(connect(catalog.address).await)
        .get_product(product())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("TLS only"),
        "{}",
        status.message()
    );
    // Health and reflection are not open there either.
    let status = HealthClient::new(connect(orders.address).await)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // TLS that trusts the authority but brings no client certificate.
    let ca = std::fs::read(trust().ca_cert()).unwrap();
    let anonymous = tonic::transport::Endpoint::from_shared(catalog.url())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("catalog"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = CatalogServiceClient::new(anonymous)
        .get_product(product())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("client certificate"),
        "{}",
        status.message()
    );

    // A certificate from the same authority that names no BFF.
    let stranger = catalog.channel_as("stranger").await;
    let status = CatalogServiceClient::new(stranger)
        .get_product(product())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The same call from a BFF's certificate is answered.
    let found = CatalogServiceClient::new(catalog.channel_as("mobile-bff").await)
        .get_product(product())
        .await
        .unwrap();
    assert_eq!(found.into_inner().product.unwrap().id, "prod-000001");
}

#[tokio::test]
async fn orders_serve_only_the_customer_the_calling_bff_signed_for() {
    let stack = Stack::start().await;
    // A partner order through the partner BFF, as `partner:acme`.
    let mut partner = tailor_proto::partner::v1::partner_service_client::PartnerServiceClient::new(
        stack.partner.channel().await,
    );
    partner
        .place_order(tailor_e2e::api_key(
            &stack.partner_key,
            tailor_proto::partner::v1::PlaceOrderRequest {
                idempotency_key: "zero-trust-1".into(),
                lines: vec![tailor_proto::partner::v1::OrderLine {
                    product_id: "prod-000003".into(),
                    quantity: 1,
                    unit_price_minor: 0,
                }],
            },
        ))
        .await
        .unwrap();
    let mut orders = OrdersServiceClient::new(stack.orders.channel().await);
    let asking_for = |customer: &str| ListOrdersRequest {
        customer_id: customer.into(),
        page_size: 100,
        page_token: String::new(),
    };

    // Each attempt: who signed the identity (none, or a BFF for a service
    // and subject), the customer the request names, the status.
    let attempts = [
        // The attack of the report: name the tenant in the request.
        (None, "partner:acme", Code::Unauthenticated),
        // A web user naming someone else.
        (
            Some(("web-bff", "orders", "alice")),
            "partner:acme",
            Code::PermissionDenied,
        ),
        // The web BFF signing for a partner tenant: not its namespace.
        (
            Some(("web-bff", "orders", "partner:acme")),
            "",
            Code::PermissionDenied,
        ),
        // A token the partner BFF signed, replayed over the web BFF's connection.
        (
            Some(("partner-bff", "orders", "partner:acme")),
            "",
            Code::Unauthenticated,
        ),
        // A token made for the catalog is no good at orders.
        (
            Some(("web-bff", "catalog", "alice")),
            "",
            Code::Unauthenticated,
        ),
    ];
    for (signed, named, expected) in attempts {
        let request = match signed {
            None => tonic::Request::new(asking_for(named)),
            Some((bff, service, subject)) => on_behalf_of(bff, service, subject, asking_for(named)),
        };
        let status = orders.list_orders(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            expected,
            "{signed:?} naming {named:?}: {status:?}"
        );
    }
    // A forged token: well formed, signed by a key of no BFF.
    let mut forged = asking_for("");
    let stranger = tailor_trust::IdentitySigner::new(
        "web-bff",
        &std::fs::read(trust().key("stranger")).unwrap(),
    )
    .unwrap();
    let identity = tailor_interceptors::context::Identity {
        subject: "partner:acme".into(),
        tenant: Some("acme".into()),
        scopes: vec![],
        method: tailor_interceptors::context::AuthMethod::Bearer,
        key_id: None,
        plan: None,
    };
    let mut request = tonic::Request::new(forged.clone());
    request.metadata_mut().insert(
        tailor_trust::IDENTITY_HEADER,
        stranger
            .token("orders", &identity)
            .unwrap()
            .parse()
            .unwrap(),
    );
    let status = orders.list_orders(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The partner BFF's own certificate and token: the tenant's order.
    forged.customer_id.clear();
    let mut as_partner = OrdersServiceClient::new(stack.orders.channel_as("partner-bff").await);
    let listed = as_partner
        .list_orders(on_behalf_of(
            "partner-bff",
            "orders",
            "partner:acme",
            forged,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders.len(), 1);
    assert_eq!(listed.orders[0].customer_id, "partner:acme");
}

#[tokio::test]
async fn an_order_is_stored_for_the_signed_customer_whatever_the_request_says() {
    let stack = Stack::start().await;
    let mut web = ShopServiceClient::new(stack.web.channel().await);
    let placed = web
        .place_order(bearer(
            &web_token("grace"),
            PlaceOrderRequest {
                idempotency_key: "signed-1".into(),
                lines: vec![OrderLineInput {
                    product_id: "prod-000020".into(),
                    quantity: 1,
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let placed = placed.order.unwrap().id;

    // Straight at the orders service, as the web BFF for grace, but the
    // body names another customer: refused, nothing stored for anyone.
    let mut orders = OrdersServiceClient::new(stack.orders.channel().await);
    let line = OrderLine {
        product_id: "prod-000020".into(),
        title: "Mug".into(),
        quantity: 1,
        unit_price: Some(Money {
            currency_code: "EUR".into(),
            amount_minor: 100,
        }),
    };
    let status = orders
        .create_order(on_behalf_of(
            "web-bff",
            "orders",
            "grace",
            CreateOrderRequest {
                customer_id: "henry".into(),
                idempotency_key: "signed-2".into(),
                lines: vec![line],
                channel: "web".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let henry = orders
        .list_orders(on_behalf_of(
            "web-bff",
            "orders",
            "henry",
            ListOrdersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(henry.orders.is_empty(), "{:?}", henry.orders);
    // Grace's order through the web BFF is stored as hers.
    let grace = orders
        .list_orders(on_behalf_of(
            "web-bff",
            "orders",
            "grace",
            ListOrdersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grace.orders.len(), 1);
    assert_eq!(grace.orders[0].id, placed);
    assert_eq!(grace.orders[0].customer_id, "grace");
}

#[tokio::test]
async fn a_service_binary_answers_probes_in_plaintext_on_its_admin_port_only() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut child = command("tailor-catalog")
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--products", "20", "--data-dir", data_dir, "--trust-dir"])
        .arg(&trust().dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut admin) = (None, None);
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, address)) = line.split_once(" listening on ") {
                api = address.trim().parse::<std::net::SocketAddr>().ok();
            }
            if let Some((_, address)) = line.split_once(" admin (plaintext health) on ") {
                admin = address.trim().parse::<std::net::SocketAddr>().ok();
            }
            if api.is_some() && admin.is_some() {
                return;
            }
        }
    })
    .await
    .expect("the catalog announced both ports");
    let (api, admin) = (api.unwrap(), admin.unwrap());

    let serving = HealthClient::new(connect(admin).await)
        .check(HealthCheckRequest {
            service: "tailor.catalog.v1.CatalogService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // The admin port serves nothing but health.
    let status = CatalogServiceClient::new(connect(admin).await)
        .get_product(product())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    // The API port wants mutual TLS.
    let status = CatalogServiceClient::new(connect(api).await)
        .get_product(product())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    child.start_kill().unwrap();
}

#[tokio::test]
async fn a_service_or_bff_without_a_trust_directory_refuses_to_start_and_names_the_flag() {
    let data = tempfile::tempdir().unwrap();
    for (binary, extra) in [
        ("tailor-orders", &[][..]),
        (
            "tailor-mobile-bff",
            &["--jwt-hs256-secret", "e2e-secret"][..],
        ),
    ] {
        let output = command(binary)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary} started: {stderr}");
        assert!(stderr.contains("--trust-dir"), "{binary}: {stderr}");
    }
}

#[tokio::test]
async fn the_readmes_buf_curl_with_the_development_certificates_reaches_a_downstream_service() {
    let stack = Stack::start().await;
    let buf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/buf");
    assert!(buf.exists(), "run `npm ci --prefix tests` first");
    let files = trust();
    let file = |name: &str| files.dir.join(name).to_str().unwrap().to_owned();
    let output = tokio::process::Command::new(&buf)
        // Outside the repository: the schema comes from server reflection.
        .current_dir(std::env::temp_dir())
        .args(["curl", "--protocol", "grpc", "--cacert", &file("ca.crt")])
        .args([
            "--cert",
            &file("web-bff.crt"),
            "--key",
            &file("web-bff.key"),
        ])
        .args(["-d", r#"{"id": "prod-000042"}"#])
        .arg(format!(
            "https://{}/tailor.catalog.v1.CatalogService/GetProduct",
            stack.catalog.address
        ))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("prod-000042"), "{stdout}");
    // Without the client certificate even reflection is refused, so buf
    // cannot learn the schema.
    let output = tokio::process::Command::new(&buf)
        // Outside the repository: the schema comes from server reflection.
        .current_dir(std::env::temp_dir())
        .args(["curl", "--protocol", "grpc", "--cacert", &file("ca.crt")])
        .args(["-d", r#"{"id": "prod-000042"}"#])
        .arg(format!(
            "https://{}/tailor.catalog.v1.CatalogService/GetProduct",
            stack.catalog.address
        ))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("prod-000042"));
}

#[tokio::test]
async fn a_bff_serves_its_public_api_over_tls_when_given_a_certificate() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let files = trust();
    let (cert, key) = (files.cert("mobile-bff"), files.key("mobile-bff"));
    let mobile = tailor_e2e::Process::start_bff(
        "tailor-mobile-bff",
        data.path().to_str().unwrap(),
        &stack.downstream_urls(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
        None,
    )
    .await;
    let ca = std::fs::read(files.ca_cert()).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", mobile.address))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("mobile-bff"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let page = tailor_proto::mobile::v1::shop_service_client::ShopServiceClient::new(channel)
        .list_products(tailor_proto::mobile::v1::ListProductsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.products.len(), 2);
    // Plaintext to the TLS port is answered with why, never served.
    let status = tailor_proto::mobile::v1::shop_service_client::ShopServiceClient::new(
        connect(mobile.address).await,
    )
    .list_products(tailor_proto::mobile::v1::ListProductsRequest::default())
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("TLS only"),
        "{}",
        status.message()
    );
}
