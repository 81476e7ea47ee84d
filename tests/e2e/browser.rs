//! The web BFF as browsers meet it: grpc-web in both wire formats over
//! HTTP/1.1 and HTTP/2, CORS, cookie sessions with their CSRF rule, and
//! malformed input, all on the BFF's own port.

use std::time::Duration;

use http::HeaderValue;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tailor_e2e::grpc_web::{self, Http, Mode};
use tailor_e2e::{Process, Server, Stack, WEB_ORIGIN, bearer, downstream_args, web_token};
use tailor_orders::SqliteOrderStore;
use tailor_proto::orders::v1::orders_service_server::OrdersServiceServer;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{
    GetProductPageRequest, GetProductPageResponse, GetSessionRequest, GetSessionResponse,
    ListProductsRequest, ListProductsResponse, OrderLineInput, OrderStatus, PlaceOrderRequest,
    PlaceOrderResponse, SignInRequest, SignInResponse, SignOutRequest, WatchOrderRequest,
    WatchOrderResponse,
};
use tailor_runtime::{GrpcServer, ServeOptions};
use tonic::Code;

const LIST: &str = "/tailor.web.v1.ShopService/ListProducts";
const PAGE: &str = "/tailor.web.v1.ShopService/GetProductPage";
const PLACE: &str = "/tailor.web.v1.ShopService/PlaceOrder";
const WATCH: &str = "/tailor.web.v1.ShopService/WatchOrder";
const SIGN_IN: &str = "/tailor.web.v1.SessionService/SignIn";
const SIGN_OUT: &str = "/tailor.web.v1.SessionService/SignOut";
const WHO: &str = "/tailor.web.v1.SessionService/GetSession";

fn order(key: &str) -> PlaceOrderRequest {
    PlaceOrderRequest {
        idempotency_key: key.into(),
        lines: vec![OrderLineInput {
            product_id: "prod-000042".into(),
            quantity: 1,
        }],
    }
}

#[tokio::test]
async fn unary_calls_work_in_both_formats_over_both_http_versions() {
    let stack = Stack::start().await;
    let address = stack.web.address;
    for http in [Http::One, Http::Two] {
        for mode in Mode::ALL {
            let list = ListProductsRequest {
                page_size: 3,
                ..Default::default()
            };
            let reply = grpc_web::call(address, http, mode, LIST, &list, &[]).await;
            assert_eq!(reply.code(), Some(Code::Ok), "{http:?} {mode:?}: {reply:?}");
            assert_eq!(
                reply.headers["content-type"],
                mode.content_type(),
                "answers come in the format asked"
            );
            assert!(reply.headers.contains_key("x-request-id"));
            let [page] = &reply.decode::<ListProductsResponse>()[..] else {
                panic!("one message expected: {reply:?}");
            };
            assert_eq!(page.products.len(), 3);
            assert!(!page.next_page_token.is_empty());

            // Without an `Accept` header the answer still comes in the
            // request's format.
            let mut bare = grpc_web::request(
                address,
                LIST,
                mode,
                grpc_web::body(mode, &grpc_web::frame(&list)),
            );
            bare.headers_mut().remove("accept");
            let reply = grpc_web::read(mode, grpc_web::open(address, http, bare).await).await;
            assert_eq!(reply.headers["content-type"], mode.content_type());
            assert_eq!(reply.code(), Some(Code::Ok));

            let wanted = GetProductPageRequest {
                product_id: "prod-000042".into(),
            };
            let reply = grpc_web::call(address, http, mode, PAGE, &wanted, &[]).await;
            let pages = reply.decode::<GetProductPageResponse>();
            assert_eq!(pages[0].product.as_ref().unwrap().id, "prod-000042");
            assert!(pages[0].availability.is_some() && pages[0].reviews.is_some());
        }
    }
}

#[tokio::test]
async fn errors_arrive_as_grpc_status_in_both_formats() {
    let stack = Stack::start().await;
    for mode in Mode::ALL {
        let missing = GetProductPageRequest {
            product_id: "prod-999999".into(),
        };
        let reply = grpc_web::call(stack.web.address, Http::One, mode, PAGE, &missing, &[]).await;
        assert_eq!(reply.http_status, 200);
        assert_eq!(reply.code(), Some(Code::NotFound), "{reply:?}");
        assert!(
            reply.message().contains("prod-999999"),
            "{}",
            reply.message()
        );

        let bad = ListProductsRequest {
            page_size: -1,
            ..Default::default()
        };
        let reply = grpc_web::call(stack.web.address, Http::One, mode, LIST, &bad, &[]).await;
        assert_eq!(reply.code(), Some(Code::InvalidArgument), "{reply:?}");

        let reply =
            grpc_web::call(stack.web.address, Http::One, mode, PLACE, &order("x"), &[]).await;
        assert_eq!(reply.code(), Some(Code::Unauthenticated), "{reply:?}");
    }
}

/// One grpc-web answer read frame by frame, as a browser's fetch reader sees
/// it arrive: each message is available as soon as its bytes are.
struct LiveReply {
    mode: Mode,
    body: hyper::body::Incoming,
    /// Received text-format bytes not yet making a whole base64 quad.
    text: Vec<u8>,
    /// Decoded bytes not yet making a whole frame.
    frames: Vec<u8>,
}

/// What a grpc-web answer delivers next.
#[derive(Debug)]
enum Next {
    Message(WatchOrderResponse),
    Trailers(http::HeaderMap),
    End,
}

impl LiveReply {
    fn new(mode: Mode, response: http::Response<hyper::body::Incoming>) -> Self {
        assert_eq!(response.status(), 200);
        LiveReply {
            mode,
            body: response.into_body(),
            text: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// The next message or trailers frame, or the end of the body; fails
    /// the test if nothing comes within `limit`.
    async fn next(&mut self, limit: Duration, what: &str) -> Next {
        tokio::time::timeout(limit, self.read())
            .await
            .unwrap_or_else(|_| panic!("nothing arrived within {limit:?}: {what}"))
    }

    async fn read(&mut self) -> Next {
        loop {
            if let Some(next) = self.take_frame() {
                return next;
            }
            let Some(frame) = self.body.frame().await else {
                assert!(
                    self.frames.is_empty() && self.text.is_empty(),
                    "the body ended inside a frame"
                );
                return Next::End;
            };
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            match self.mode {
                Mode::Binary => self.frames.extend_from_slice(&data),
                Mode::Text => {
                    self.text.extend_from_slice(&data);
                    let whole = self.text.len() / 4 * 4;
                    let quads: Vec<u8> = self.text.drain(..whole).collect();
                    self.frames.extend(grpc_web::decode_text(&quads));
                }
            }
        }
    }

    fn take_frame(&mut self) -> Option<Next> {
        let header = self.frames.get(..5)?;
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if self.frames.len() < 5 + length {
            return None;
        }
        let frame: Vec<u8> = self.frames.drain(..5 + length).collect();
        let (messages, trailers) = grpc_web::parse_frames(&frame);
        Some(match &messages[..] {
            [message] => Next::Message(prost::Message::decode(message.clone()).unwrap()),
            [] => Next::Trailers(trailers),
            _ => unreachable!("one frame holds one message"),
        })
    }
}

/// Moves every due order one status on, as the fulfilment simulator would
/// on its next tick; returns once an order has moved.
async fn fulfil_one_step(store: &SqliteOrderStore) {
    loop {
        match store.advance_due().await.unwrap() {
            0 => tokio::time::sleep(Duration::from_millis(1)).await,
            1 => return,
            n => panic!("{n} orders moved; only the watched one is under way"),
        }
    }
}

#[tokio::test]
async fn order_status_streams_live_over_grpc_web() {
    // Orders whose fulfilment only this test moves: an order changes status
    // when `fulfil_one_step` says so and never on its own. Each status must
    // reach the browser while the order stays where it is, so a web BFF that
    // answered only once the stream was complete would never answer at all.
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let store =
        SqliteOrderStore::open(&data.path().join("orders.db"), Duration::from_millis(1)).unwrap();
    let orders = GrpcServer::new("orders").add_service(OrdersServiceServer::new(
        tailor_orders::Orders::new(store.clone()),
    ));
    let orders = Server::start_service(orders, ServeOptions::default()).await;
    let args = downstream_args(
        &stack.catalog.url(),
        &stack.inventory.url(),
        &stack.reviews.url(),
        &orders.url(),
    );
    let (web, _mobile, _partner) =
        tailor_e2e::start_bffs(&args, stack.keys.clone(), stack.accounts.clone()).await;
    // Generous: the answer to a call on loopback, never a step of the order.
    let limit = Duration::from_secs(20);
    let token = web_token("dora");
    let auth = format!("Bearer {token}");
    let lifecycle = [
        OrderStatus::Placed,
        OrderStatus::Confirmed,
        OrderStatus::Packed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ];
    for (n, (http, mode)) in [(Http::One, Mode::Text), (Http::Two, Mode::Binary)]
        .into_iter()
        .enumerate()
    {
        let reply = grpc_web::call(
            web.address,
            http,
            mode,
            PLACE,
            &order(&format!("stream-{n}")),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
        let placed = reply.decode::<PlaceOrderResponse>()[0]
            .order
            .clone()
            .unwrap();
        let watch = WatchOrderRequest {
            order_id: placed.id.clone(),
        };
        // Every call before the watch has ended (and been counted).
        web.stats.settled().await;
        let mut request = grpc_web::request(
            web.address,
            WATCH,
            mode,
            grpc_web::body(mode, &grpc_web::frame(&watch)),
        );
        request
            .headers_mut()
            .insert("authorization", HeaderValue::from_str(&auth).unwrap());
        let response = tokio::time::timeout(limit, grpc_web::open(web.address, http, request))
            .await
            .expect("the watch answers while the order is still placed");
        let mut reply = LiveReply::new(mode, response);

        for status in lifecycle {
            let what = format!("{http:?} {mode:?}: {status:?} while the order stays there");
            let Next::Message(update) = reply.next(limit, &what).await else {
                panic!("{what}: expected the update, the stream ended");
            };
            let update = update.order.unwrap();
            assert_eq!(update.id, placed.id);
            assert_eq!(update.status(), status, "{what}");
            assert!(!update.status_label.is_empty());
            if status != OrderStatus::Delivered {
                // The stream is open: the order cannot move on (nor the
                // stream end) until the test moves it.
                assert!(!reply.body.is_end_stream(), "{what}");
                let counts = web.stats.snapshot();
                let ended = counts.succeeded + counts.failed + counts.cancelled;
                assert_eq!(
                    counts.started - ended,
                    1,
                    "{what}: the watch is still running on the BFF: {counts:?}"
                );
                fulfil_one_step(&store).await;
            }
        }
        // Delivered is final: the stream ends with OK right after it.
        let what = format!("{http:?} {mode:?}: the trailers after delivery");
        let Next::Trailers(trailers) = reply.next(limit, &what).await else {
            panic!("{what}: expected trailers");
        };
        assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
        assert!(matches!(reply.next(limit, &what).await, Next::End));
    }
    let counts = web.stats.settled().await;
    assert_eq!((counts.succeeded, counts.failed), (4, 0), "{counts:?}");
}

#[tokio::test]
async fn a_dead_orders_service_ends_the_browser_stream_with_a_status() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    // Orders as a process we can crash; a slow fulfilment keeps the order live.
    let mut orders = Process::start(
        "tailor-orders",
        &["--data-dir", dir, "--fulfilment-step-ms", "600000"],
    )
    .await;
    let args = downstream_args(
        &stack.catalog.url(),
        &stack.inventory.url(),
        &stack.reviews.url(),
        &orders.url(),
    );
    let (web, _mobile, _partner) =
        tailor_e2e::start_bffs(&args, stack.keys.clone(), stack.accounts.clone()).await;
    let token = web_token("erin");
    let mut client = ShopServiceClient::connect(web.url()).await.unwrap();
    let placed = client
        .place_order(bearer(&token, order("dead-upstream")))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let watch = WatchOrderRequest {
        order_id: placed.id,
    };
    let mut request = grpc_web::request(
        web.address,
        WATCH,
        Mode::Text,
        grpc_web::body(Mode::Text, &grpc_web::frame(&watch)),
    );
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let response = grpc_web::open(web.address, Http::One, request).await;
    let (_, mut body) = response.into_parts();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let (messages, _) = grpc_web::parse_frames(&grpc_web::decode_text(&first));
    assert_eq!(messages.len(), 1, "the current state comes first");

    orders.crash().await;
    let rest = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the stream ends instead of hanging")
        .unwrap()
        .to_bytes();
    let (_, trailers) = grpc_web::parse_frames(&grpc_web::decode_text(&rest));
    let code = trailers["grpc-status"].to_str().unwrap();
    assert_eq!(
        code,
        (Code::Unavailable as i32).to_string(),
        "trailers: {trailers:?}"
    );
    // The status travelled inside the grpc-web body, past the access log:
    // it is still counted as the failure it was (place order: one success).
    let counts = web.stats.settled().await;
    assert_eq!((counts.succeeded, counts.failed), (1, 1), "{counts:?}");
}

#[tokio::test]
async fn cors_grants_allowed_origins_only() {
    let stack = Stack::start().await;
    let preflight = |origin: &str| {
        http::Request::options(format!("http://{}{LIST}", stack.web.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,x-user-agent,grpc-timeout,authorization,x-request-id,traceparent,x-tailor-csrf",
            )
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let allowed = grpc_web::open(stack.web.address, Http::One, preflight(WEB_ORIGIN)).await;
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], WEB_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-max-age"], "7200");
    let granted = headers["access-control-allow-headers"].to_str().unwrap();
    for header in [
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "authorization",
        "x-request-id",
        "traceparent",
        "tracestate",
        "baggage",
    ] {
        assert!(granted.contains(header), "{header} not in {granted}");
    }
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let refused = grpc_web::open(
        stack.web.address,
        Http::One,
        preflight("http://evil.example"),
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // A real call from the app's origin exposes the gRPC headers.
    let list = ListProductsRequest::default();
    let reply = grpc_web::call(
        stack.web.address,
        Http::One,
        Mode::Binary,
        LIST,
        &list,
        &[("origin", WEB_ORIGIN)],
    )
    .await;
    assert_eq!(reply.code(), Some(Code::Ok));
    assert_eq!(reply.headers["access-control-allow-origin"], WEB_ORIGIN);
    let exposed = reply.headers["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for header in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }
    // From any other origin the call is refused and gets no grant.
    let reply = grpc_web::call(
        stack.web.address,
        Http::One,
        Mode::Binary,
        LIST,
        &list,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(reply.code(), Some(Code::PermissionDenied));
    assert!(!reply.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn cookie_sessions_sign_in_authorise_and_sign_out() {
    let stack = Stack::start().await;
    stack
        .accounts
        .add_user("ada", "Ada", "lovelace")
        .await
        .unwrap();
    let web = stack.web.address;
    let browser = [("origin", WEB_ORIGIN), ("x-tailor-csrf", "1")];
    let call = |path: &'static str, message: Vec<u8>, headers: Vec<(&'static str, String)>| async move {
        let mut request = grpc_web::request(web, path, Mode::Binary, message.into());
        for (name, value) in headers {
            request
                .headers_mut()
                .append(name, HeaderValue::from_str(&value).unwrap());
        }
        grpc_web::read(Mode::Binary, grpc_web::open(web, Http::One, request).await).await
    };
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        extra.iter().map(|(n, v)| (*n, v.to_string())).collect()
    };

    let wrong = SignInRequest {
        username: "ada".into(),
        password: "babbage".into(),
    };
    let reply = call(SIGN_IN, grpc_web::frame(&wrong), with(&browser)).await;
    assert_eq!(reply.code(), Some(Code::Unauthenticated));
    assert!(!reply.headers.contains_key("set-cookie"));

    let right = SignInRequest {
        username: "ada".into(),
        password: "lovelace".into(),
    };
    let reply = call(SIGN_IN, grpc_web::frame(&right), with(&browser)).await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
    let session = reply.decode::<SignInResponse>()[0].session.clone().unwrap();
    assert_eq!(session.user_id, "user-ada");
    assert_eq!(session.display_name, "Ada");
    let set_cookie = reply.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("tailor_session=") && cookie.len() > 40);

    // No cookie: not signed in.
    let reply = call(PLACE, grpc_web::frame(&order("c1")), with(&browser)).await;
    assert_eq!(reply.code(), Some(Code::Unauthenticated));
    // Cookie without the CSRF header, or from another origin: refused.
    let no_csrf = with(&[("origin", WEB_ORIGIN), ("cookie", &cookie)]);
    let reply = call(PLACE, grpc_web::frame(&order("c1")), no_csrf).await;
    assert_eq!(reply.code(), Some(Code::PermissionDenied), "{reply:?}");
    assert!(
        reply.message().contains("x-tailor-csrf"),
        "{}",
        reply.message()
    );
    let no_origin = with(&[("x-tailor-csrf", "1"), ("cookie", &cookie)]);
    let reply = call(PLACE, grpc_web::frame(&order("c1")), no_origin).await;
    assert_eq!(reply.code(), Some(Code::PermissionDenied));
    // With both: the order is the session user's.
    let signed_in = with(&[
        ("origin", WEB_ORIGIN),
        ("x-tailor-csrf", "1"),
        ("cookie", &cookie),
    ]);
    let reply = call(PLACE, grpc_web::frame(&order("c1")), signed_in.clone()).await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
    let placed = reply.decode::<PlaceOrderResponse>()[0]
        .order
        .clone()
        .unwrap();
    let reply = call(
        WHO,
        grpc_web::frame(&GetSessionRequest {}),
        signed_in.clone(),
    )
    .await;
    assert_eq!(
        reply.decode::<GetSessionResponse>()[0]
            .session
            .as_ref()
            .unwrap()
            .user_id,
        "user-ada"
    );
    // The order is ada's: a bearer token for ada sees it, anyone else does not.
    let mut client = ShopServiceClient::connect(stack.web.url()).await.unwrap();
    let watch = || WatchOrderRequest {
        order_id: placed.id.clone(),
    };
    assert!(
        client
            .watch_order(bearer(&web_token("user-ada"), watch()))
            .await
            .is_ok()
    );
    let other = client.watch_order(bearer(&web_token("bob"), watch())).await;
    assert_eq!(other.unwrap_err().code(), Code::NotFound);

    // Sign-out clears the cookie and kills the session server-side.
    let reply = call(
        SIGN_OUT,
        grpc_web::frame(&SignOutRequest {}),
        signed_in.clone(),
    )
    .await;
    assert_eq!(reply.code(), Some(Code::Ok));
    assert!(
        reply.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let reply = call(PLACE, grpc_web::frame(&order("c2")), signed_in.clone()).await;
    assert_eq!(
        reply.code(),
        Some(Code::Unauthenticated),
        "the old cookie is dead"
    );
    let reply = call(WHO, grpc_web::frame(&GetSessionRequest {}), signed_in).await;
    assert_eq!(reply.code(), Some(Code::Unauthenticated));
}

#[tokio::test]
async fn password_guessing_is_slowed_per_user_with_retry_info() {
    let stack = Stack::start().await;
    stack
        .accounts
        .add_user("ada", "", "lovelace")
        .await
        .unwrap();
    let mut sessions = tailor_proto::web::v1::session_service_client::SessionServiceClient::new(
        stack.web.channel().await,
    );
    let guess = |user: &str, password: &str| SignInRequest {
        username: user.into(),
        password: password.into(),
    };
    for n in 0..5 {
        let error = sessions
            .sign_in(guess("ada", &format!("guess-{n}")))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unauthenticated);
    }
    // The sixth try, even with the right password, waits.
    let error = sessions
        .sign_in(guess("ADA", "lovelace"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    use tonic_types::StatusExt;
    let retry = error.get_details_retry_info().unwrap().retry_delay.unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(12),
        "{retry:?}"
    );
    // Other users are not affected.
    let error = sessions.sign_in(guess("bob", "x")).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn malformed_grpc_web_input_gets_a_clear_status_and_the_server_stays_up() {
    let stack = Stack::start().await;
    let web = stack.web.address;
    let list = grpc_web::frame(&ListProductsRequest::default());
    let mut oversized = vec![0u8];
    oversized.extend_from_slice(&(70_000u32).to_be_bytes());
    oversized.extend(std::iter::repeat_n(0x0a, 70_000));
    let cases: Vec<(&str, Mode, bytes::Bytes, Code, &str)> = vec![
        (
            "truncated frame",
            Mode::Binary,
            list[..3].to_vec().into(),
            Code::InvalidArgument,
            "truncated",
        ),
        (
            "invalid base64",
            Mode::Text,
            "AAAA!!!!".into(),
            Code::InvalidArgument,
            "base64",
        ),
        (
            "frame longer than the body",
            Mode::Binary,
            [&[0u8, 0, 0, 0, 50][..], b"short"].concat().into(),
            Code::InvalidArgument,
            "announces 50 bytes",
        ),
        (
            "oversized message",
            Mode::Binary,
            oversized.into(),
            Code::ResourceExhausted,
            "limit",
        ),
        (
            "oversized message, text",
            Mode::Text,
            grpc_web::body(Mode::Text, &[vec![0, 0, 1, 0, 1], vec![1; 65_537]].concat()),
            Code::ResourceExhausted,
            "limit",
        ),
    ];
    for (what, mode, body, code, needle) in cases {
        let request = grpc_web::request(web, LIST, mode, body);
        let reply = grpc_web::read(mode, grpc_web::open(web, Http::One, request).await).await;
        assert_eq!(reply.code(), Some(code), "{what}: {reply:?}");
        assert!(
            reply.message().contains(needle),
            "{what}: {}",
            reply.message()
        );
    }

    // Line breaks in base64 are tolerated, as decoders commonly do.
    let mut wrapped = grpc_web::body(Mode::Text, &list).to_vec();
    wrapped.extend_from_slice(b"\r\n");
    let request = grpc_web::request(web, LIST, Mode::Text, wrapped.into());
    let reply = grpc_web::read(Mode::Text, grpc_web::open(web, Http::One, request).await).await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");

    let wrong_type = http::Request::post(format!("http://{web}{LIST}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let response = grpc_web::open(web, Http::One, wrong_type).await;
    assert_eq!(response.status(), 415);
    assert_eq!(response.headers()["grpc-status"], "3");

    // Still serving, and nothing half-done was recorded.
    let reply = grpc_web::call(
        web,
        Http::One,
        Mode::Binary,
        LIST,
        &ListProductsRequest::default(),
        &[],
    )
    .await;
    assert_eq!(reply.code(), Some(Code::Ok));
}
