//! Hostile input, as a client that means harm (or is badly broken) sends
//! it: malformed gRPC and grpc-web frames, invalid UTF-8 in string fields,
//! metadata by the thousand entries or by the megabyte, absurd page sizes,
//! tokens and cursors, masks no client needs, and clients that stop
//! reading. Every case gets a clear status, asserted by code; no server
//! panics (each keeps answering ordinary calls afterwards, on the same
//! connection where the protocol allows); what a server holds for a
//! client stays bounded.
//!
//! `bounds.rs` covers what this does not repeat: oversized messages on
//! every wire, over-long strings naming their field, 40 KB and 400 KB
//! header blocks, the caps on open streams.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tailor_e2e::grpc_web::{self, Http, Mode};
use tailor_e2e::{Stack, api_key, on_behalf_of};
use tailor_proto::mobile::v1 as mobile;
use tailor_proto::partner::v1 as partner;
use tailor_proto::web::v1 as web;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const WEB_LIST: &str = "/tailor.web.v1.ShopService/ListProducts";
const MOBILE_LIST: &str = "/tailor.mobile.v1.ShopService/ListProducts";
const MOBILE_PAGE: &str = "/tailor.mobile.v1.ShopService/GetProductPage";

/// A gRPC codec that sends and takes message bytes as they are, so a test
/// can send what no generated client would (invalid UTF-8, not protobuf).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

/// One unary call of `path` with the message bytes of `request` over a
/// tonic client on `channel`.
async fn raw_unary(
    channel: tonic::transport::Channel,
    path: &'static str,
    request: tonic::Request<Bytes>,
) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// `message` encoded, with every byte of `placeholder` (which must occur
/// once, inside a string field) replaced by 0xFF: never valid UTF-8.
fn with_invalid_utf8(message: &impl prost::Message, placeholder: &str) -> Bytes {
    let mut bytes = message.encode_to_vec();
    let at = bytes
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_bytes())
        .expect("the placeholder is in the message");
    bytes[at..at + placeholder.len()].fill(0xff);
    Bytes::from(bytes)
}

/// A gRPC frame: a flags byte, the announced length and `payload`.
fn frame_with(flags: u8, announced: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![flags];
    frame.extend_from_slice(&announced.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HTTP/2 connection speaking gRPC by hand, to send frames no gRPC
/// library would.
struct RawH2 {
    address: SocketAddr,
    client: h2::client::SendRequest<Bytes>,
}

/// The status a server answered with.
#[derive(Debug)]
struct Answer {
    code: Code,
    message: String,
    /// How many messages came before the status.
    messages: usize,
}

impl RawH2 {
    async fn connect(address: SocketAddr) -> RawH2 {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        RawH2 { address, client }
    }

    /// Calls `path` with `headers` and the request body `body`, which ends
    /// the stream when `end` (else the stream stays open, as a client that
    /// stalls leaves it); the answer must come within `limit`.
    async fn call(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        end: bool,
        limit: Duration,
    ) -> Answer {
        let mut request = http::Request::post(format!("http://{}{path}", self.address))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let client = self.client.clone();
        let mut client = client.ready().await.unwrap();
        let (response, mut send) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        send.send_data(Bytes::from(body), end).unwrap();
        let answer = tokio::time::timeout(limit, async move {
            let response = response.await.unwrap();
            let (head, mut body) = response.into_parts();
            if let Some(answer) = status_in(&head.headers, 0) {
                return answer;
            }
            let mut data = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            let trailers = body.trailers().await.unwrap().unwrap_or_default();
            status_in(&trailers, count_frames(&data)).expect("a grpc-status in the trailers")
        })
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer within {limit:?}"));
        // Held open until answered, for the cases that stall.
        drop(send);
        answer
    }
}

fn status_in(headers: &http::HeaderMap, messages: usize) -> Option<Answer> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.to_str().unwrap()))
        .unwrap_or_default();
    Some(Answer {
        code: Code::from_i32(code),
        message,
        messages,
    })
}

/// `grpc-message` percent-decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn count_frames(mut data: &[u8]) -> usize {
    let mut frames = 0;
    while data.len() >= 5 {
        let length = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        data = &data[(5 + length).min(data.len())..];
        frames += 1;
    }
    frames
}

/// The message of an INTERNAL status after the error-mapping layer: the
/// request id to quote, nothing of the decoder's own words.
fn assert_scrubbed_internal(answer: &Answer, what: &str) {
    assert_eq!(answer.code, Code::Internal, "{what}: {answer:?}");
    assert!(
        answer.message.starts_with("internal error (request id "),
        "{what}: {answer:?}"
    );
}

fn list_frame() -> Vec<u8> {
    grpc_web::frame(&mobile::ListProductsRequest {
        page_size: 2,
        ..Default::default()
    })
}

#[tokio::test]
async fn malformed_grpc_frames_get_a_clear_status_and_the_connection_keeps_serving() {
    let stack = Stack::start().await;
    let mut h2 = RawH2::connect(stack.mobile.address).await;
    let catalog_before = stack.catalog.stats.snapshot().started;
    let message = mobile::ListProductsRequest {
        page_size: 2,
        ..Default::default()
    };
    let payload = prost::Message::encode_to_vec(&message);
    let len = payload.len() as u32;
    let second = frame_with(0, len, &payload);
    let quick = Duration::from_secs(5);

    // What tonic's decoder refuses is INTERNAL (as the gRPC spec has it for
    // framing errors), its text scrubbed by the error-mapping layer.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let internal: Vec<Case> = vec![
        (
            "length prefix larger than the body",
            vec![],
            frame_with(0, len + 100, &payload),
        ),
        ("truncated frame header", vec![], vec![0, 0, 0]),
        (
            "compressed flag with no compression negotiated",
            vec![],
            frame_with(1, len, &payload),
        ),
        (
            "compressed flag, gzip named, not gzip",
            vec![("grpc-encoding", "gzip")],
            frame_with(1, len, &payload),
        ),
        (
            "reserved flag bits",
            vec![],
            frame_with(0x0a, len, &payload),
        ),
        (
            "garbage after the message",
            vec![],
            [frame_with(0, len, &payload), vec![0xde, 0xad, 0xbe]].concat(),
        ),
        ("no message at all", vec![], vec![]),
        ("not protobuf", vec![], frame_with(0, 6, &[0xff; 6])),
    ];
    for (what, headers, body) in internal {
        let answer = h2.call(MOBILE_LIST, &headers, body, true, quick).await;
        assert_scrubbed_internal(&answer, what);
    }

    // Two messages where a unary call takes one: tonic reads the first and
    // drains the rest, so the call is answered as if it came once.
    let twice = [frame_with(0, len, &payload), second].concat();
    let answer = h2.call(MOBILE_LIST, &[], twice, true, quick).await;
    assert_eq!(answer.code, Code::Ok, "{answer:?}");

    // A frame announcing 4 GiB is refused from its header, at once, while
    // the client holds the stream open and sends nothing more.
    let started = Instant::now();
    let answer = h2
        .call(MOBILE_LIST, &[], frame_with(0, u32::MAX, b""), false, quick)
        .await;
    assert_eq!(answer.code, Code::ResourceExhausted, "{answer:?}");
    assert!(
        answer
            .message
            .ends_with("larger than the limit of 262144 bytes"),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Within the bound but never finished: the caller's deadline ends it.
    let answer = h2
        .call(
            MOBILE_LIST,
            &[("grpc-timeout", "300m")],
            frame_with(0, 200_000, &[0x0a; 10]),
            false,
            quick,
        )
        .await;
    assert_eq!(answer.code, Code::DeadlineExceeded, "{answer:?}");

    // The same connection still serves, and none of it reached the catalog.
    let answer = h2.call(MOBILE_LIST, &[], list_frame(), true, quick).await;
    assert_eq!((answer.code, answer.messages), (Code::Ok, 1), "{answer:?}");
    assert_eq!(
        stack.catalog.stats.snapshot().started,
        catalog_before + 2,
        "only the two well-formed calls reached the catalog"
    );
}

#[tokio::test]
async fn malformed_grpc_web_frames_are_invalid_argument_in_both_formats_and_versions() {
    let stack = Stack::start().await;
    let address = stack.web.address;
    let list = grpc_web::frame(&web::ListProductsRequest::default());
    let payload = &list[5..];
    let len = payload.len() as u32;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("compressed flag", frame_with(1, len, payload), "compressed"),
        // The fuzz target grpc_web_frames found this one passing the guard.
        (
            "reserved flag bits",
            frame_with(0x0a, len, payload),
            "reserved flag bits",
        ),
        (
            "a trailers frame",
            frame_with(0x80, 0, b""),
            "trailers frame",
        ),
        (
            "garbage after the message",
            [list.clone(), vec![0xde, 0xad, 0xbe]].concat(),
            "more than one message",
        ),
        (
            "two messages",
            [list.clone(), list.clone()].concat(),
            "more than one message",
        ),
        ("an empty body", vec![], "no message"),
    ];
    for http in [Http::One, Http::Two] {
        for mode in Mode::ALL {
            for (what, body, needle) in &cases {
                let request =
                    grpc_web::request(address, WEB_LIST, mode, grpc_web::body(mode, body));
                let reply =
                    grpc_web::read(mode, grpc_web::open(address, http, request).await).await;
                assert_eq!(
                    reply.code(),
                    Some(Code::InvalidArgument),
                    "{what} {http:?} {mode:?}: {reply:?}"
                );
                assert!(
                    reply.message().contains(needle),
                    "{what}: {}",
                    reply.message()
                );
            }
        }
    }
    // base64 with padding inside a piece, or only padding.
    for text in ["AA=A", "====", "AAAAA==="] {
        let request = grpc_web::request(address, WEB_LIST, Mode::Text, text.into());
        let reply = grpc_web::read(
            Mode::Text,
            grpc_web::open(address, Http::One, request).await,
        )
        .await;
        assert_eq!(
            reply.code(),
            Some(Code::InvalidArgument),
            "{text}: {reply:?}"
        );
    }
    let reply = grpc_web::call(
        address,
        Http::Two,
        Mode::Text,
        WEB_LIST,
        &web::ListProductsRequest::default(),
        &[],
    )
    .await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
}

#[tokio::test]
async fn invalid_utf8_in_string_fields_is_internal_before_any_downstream_call() {
    let stack = Stack::start().await;
    let before: Vec<_> = stack.servers()[..4]
        .iter()
        .map(|(_, server)| server.stats.snapshot().started)
        .collect();
    const BAD: &str = "PLACEHOLDER";

    let web_list = with_invalid_utf8(
        &web::ListProductsRequest {
            query: BAD.into(),
            ..Default::default()
        },
        BAD,
    );
    let mobile_page = with_invalid_utf8(
        &mobile::GetProductPageRequest {
            product_id: BAD.into(),
            ..Default::default()
        },
        BAD,
    );
    let partner_ids = with_invalid_utf8(
        &partner::BatchGetAvailabilityRequest {
            product_ids: vec!["prod-000001".into(), BAD.into()],
        },
        BAD,
    );
    let calls: Vec<(
        &str,
        tonic::transport::Channel,
        &'static str,
        tonic::Request<Bytes>,
    )> = vec![
        (
            "web query",
            stack.web.channel().await,
            WEB_LIST,
            tonic::Request::new(web_list.clone()),
        ),
        (
            "mobile product_id",
            stack.mobile.channel().await,
            MOBILE_PAGE,
            tonic::Request::new(mobile_page),
        ),
        (
            "partner product_ids[]",
            stack.partner.channel().await,
            "/tailor.partner.v1.PartnerService/BatchGetAvailability",
            api_key(&stack.partner_key, partner_ids),
        ),
    ];
    for (what, channel, path, request) in calls {
        let status = raw_unary(channel, path, request).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
        assert!(
            status.message().starts_with("internal error (request id "),
            "{what}: {status:?}"
        );
    }
    // The same over grpc-web: refused the same way below the translation.
    for mode in Mode::ALL {
        let body = [
            vec![0],
            (web_list.len() as u32).to_be_bytes().to_vec(),
            web_list.to_vec(),
        ]
        .concat();
        let request = grpc_web::request(
            stack.web.address,
            WEB_LIST,
            mode,
            grpc_web::body(mode, &body),
        );
        let reply = grpc_web::read(
            mode,
            grpc_web::open(stack.web.address, Http::One, request).await,
        )
        .await;
        assert_eq!(
            reply.code(),
            Some(Code::Internal),
            "grpc-web {mode:?}: {reply:?}"
        );
    }
    // Nothing reached a downstream service.
    let after: Vec<_> = stack.servers()[..4]
        .iter()
        .map(|(_, server)| server.stats.snapshot().started)
        .collect();
    assert_eq!(before, after);

    // A downstream service refuses it the same way from a BFF.
    let bad_id = with_invalid_utf8(
        &tailor_proto::catalog::v1::GetProductRequest { id: BAD.into() },
        BAD,
    );
    let status = raw_unary(
        stack.catalog.channel().await,
        "/tailor.catalog.v1.CatalogService/GetProduct",
        on_behalf_of("web-bff", "catalog", "shopper", bad_id),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "catalog: {status:?}");
    assert!(status.message().starts_with("internal error"), "{status:?}");

    // And every server still answers.
    let mut web = web::shop_service_client::ShopServiceClient::new(stack.web.channel().await);
    web.list_products(web::ListProductsRequest::default())
        .await
        .unwrap();
}

/// `count` metadata entries `x-hostile-<n>: v` on a mobile list request.
fn with_entries<T>(mut request: tonic::Request<T>, count: usize) -> tonic::Request<T> {
    for n in 0..count {
        let name: tonic::metadata::MetadataKey<tonic::metadata::Ascii> =
            format!("x-hostile-{n}").parse().unwrap();
        request.metadata_mut().insert(name, "v".parse().unwrap());
    }
    request
}

#[tokio::test]
async fn metadata_by_the_thousand_entries_or_the_megabyte_is_refused_and_the_server_stays_up() {
    use mobile::shop_service_client::ShopServiceClient;
    let stack = Stack::start().await;
    let mut client = ShopServiceClient::new(stack.mobile.channel().await);
    let list = || tonic::Request::new(mobile::ListProductsRequest::default());
    // Each entry counts its name, its value and 32 bytes: 200 are about
    // 9 KB, under the 16 KiB bound; 1,000 are about 47 KB, over it and
    // under the transport's 64 KiB.
    client
        .list_products(with_entries(list(), 200))
        .await
        .unwrap();
    let status = client
        .list_products(with_entries(list(), 1000))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().starts_with("request metadata of"),
        "{status:?}"
    );

    // Beyond the transport's limits the transport refuses on its own, its
    // buffers bounded: 5,000 entries (about 240 KB) get HTTP 431 and no
    // gRPC status; a single 1 MB entry, sent as a run of CONTINUATION
    // frames, costs the client its connection (GOAWAY) long before the
    // block is read whole.
    for (what, entries, value) in [("5,000 entries", 5000, 1), ("one 1 MB entry", 1, 1 << 20)] {
        let names: Vec<String> = (0..entries).map(|n| format!("x-hostile-{n}")).collect();
        let value = "v".repeat(value);
        let mut request =
            http::Request::post(format!("http://{}{MOBILE_LIST}", stack.mobile.address))
                .header("content-type", "application/grpc")
                .header("te", "trailers");
        for name in &names {
            request = request.header(name.as_str(), value.as_str());
        }
        let h2 = RawH2::connect(stack.mobile.address).await;
        let mut sender = h2.client.ready().await.unwrap();
        let (response, _send) = sender
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("refused at once");
        match outcome {
            Ok(response) => {
                assert_eq!(
                    response.status(),
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "{what}"
                );
                assert!(!response.headers().contains_key("grpc-status"), "{what}");
            }
            Err(error) => assert!(error.is_go_away() || error.is_reset(), "{what}: {error}"),
        }
    }
    // grpc-web over HTTP/1.1, as a browser sends it: a head of more than
    // a hundred fields is refused with HTTP 431 before it is read whole.
    let mut request = grpc_web::request(
        stack.web.address,
        WEB_LIST,
        Mode::Binary,
        grpc_web::body(
            Mode::Binary,
            &grpc_web::frame(&web::ListProductsRequest::default()),
        ),
    );
    for n in 0..150 {
        let name: http::HeaderName = format!("x-hostile-{n}").parse().unwrap();
        request.headers_mut().insert(name, "v".parse().unwrap());
    }
    let response = grpc_web::open(stack.web.address, Http::One, request).await;
    assert_eq!(
        response.status(),
        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // Both still answer.
    client.list_products(list()).await.unwrap();
    let reply = grpc_web::call(
        stack.web.address,
        Http::One,
        Mode::Binary,
        WEB_LIST,
        &web::ListProductsRequest::default(),
        &[],
    )
    .await;
    assert_eq!(reply.code(), Some(Code::Ok), "{reply:?}");
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Page tokens no server issued: junk, base64 of junk, the right shape
/// for a query fingerprint no one asked, and the longest accepted length.
fn forged_tokens() -> Vec<(&'static str, String)> {
    let noise: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    vec![
        ("not base64", "%%%not*base64%%%".into()),
        ("base64 of random bytes", b64(&noise)),
        ("base64 of text without the fields", b64(b"hello")),
        (
            "another query's fingerprint",
            b64(b"1|0123456789abcdef|prod-000010"),
        ),
        ("a version from the future", b64(b"9|0000000000000000|x")),
        (
            "a fingerprint out of range",
            b64(b"1|ffffffffffffffffffff|x"),
        ),
        ("1024 characters", "A".repeat(1024)),
    ]
}

#[tokio::test]
async fn absurd_page_sizes_and_forged_page_tokens_get_clear_answers() {
    let stack = Stack::start().await;
    let mut web = web::shop_service_client::ShopServiceClient::new(stack.web.channel().await);
    let mut mobile =
        mobile::shop_service_client::ShopServiceClient::new(stack.mobile.channel().await);
    let mut partner =
        partner::partner_service_client::PartnerServiceClient::new(stack.partner.channel().await);
    let key = stack.partner_key.clone();

    for size in [-1, i32::MIN] {
        let status = web
            .list_products(web::ListProductsRequest {
                page_size: size,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "web {size}");
        assert_eq!(status.message(), "page_size must not be negative");
        let status = mobile
            .list_products(mobile::ListProductsRequest {
                page_size: size,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "mobile {size}");
        let status = partner
            .list_orders(api_key(
                &key,
                partner::ListOrdersRequest {
                    page_size: size,
                    page_token: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "partner {size}");
        assert!(status.message().contains("page_size"), "{status:?}");
    }
    // i32::MAX is served as the largest page.
    let page = web
        .list_products(web::ListProductsRequest {
            page_size: i32::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.products.len(), 100);
    assert!(!page.next_page_token.is_empty());
    let page = mobile
        .list_products(mobile::ListProductsRequest {
            page_size: i32::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.products.len(), 50);
    partner
        .list_orders(api_key(
            &key,
            partner::ListOrdersRequest {
                page_size: i32::MAX,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap();

    // A real token, for a search, used for the whole catalogue.
    let search = web
        .list_products(web::ListProductsRequest {
            page_size: 1,
            query: "mug".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!search.next_page_token.is_empty());
    let mut tokens = forged_tokens();
    tokens.push((
        "a token issued for another query",
        search.next_page_token.clone(),
    ));
    let mut flipped = search.next_page_token.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    tokens.push((
        "a token with one character changed",
        String::from_utf8(flipped).unwrap(),
    ));
    for (what, token) in &tokens {
        let status = web
            .list_products(web::ListProductsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "web, {what}");
        assert_eq!(status.message(), "invalid page_token", "web, {what}");
        let status = mobile
            .list_products(mobile::ListProductsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "mobile, {what}");
        assert_eq!(status.message(), "invalid page_token", "mobile, {what}");
        let status = partner
            .list_orders(api_key(
                &key,
                partner::ListOrdersRequest {
                    page_size: 5,
                    page_token: token.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "partner, {what}");
        assert_eq!(status.message(), "invalid page_token", "partner, {what}");
    }

    // Catalogue feed cursors.
    let mut cursors = forged_tokens();
    cursors.push(("a position past usize", b64(b"99999999999999999999999|")));
    cursors.push(("a negative position", b64(b"-1|")));
    cursors.push((
        "a forged catalogue token",
        b64(format!("0|{}", b64(b"1|0123456789abcdef|x")).as_bytes()),
    ));
    for (what, cursor) in &cursors {
        let status = partner
            .stream_catalog_feed(api_key(
                &key,
                partner::StreamCatalogFeedRequest {
                    cursor: cursor.clone(),
                    updated_since: None,
                },
            ))
            .await;
        let status = match status {
            Err(status) => status,
            Ok(stream) => stream.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "feed, {what}: {status:?}"
        );
        assert!(
            status.message().starts_with("invalid cursor"),
            "feed, {what}: {status:?}"
        );
    }
    // A position far past the end of its page resumes at the next page
    // (the test catalogue's pages hold 100 products).
    let resumed = partner
        .stream_catalog_feed(api_key(
            &key,
            partner::StreamCatalogFeedRequest {
                cursor: b64(b"1000000|"),
                updated_since: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumed.product.unwrap().id, "prod-000101");
}

#[tokio::test]
async fn deep_enormous_and_malformed_read_masks_are_invalid_argument_before_any_downstream_call() {
    use mobile::shop_service_client::ShopServiceClient;
    use tonic::metadata::MetadataValue;
    let stack = Stack::start().await;
    let mut client = ShopServiceClient::new(stack.mobile.channel().await);
    let page = |read_mask: Option<Vec<String>>| {
        tonic::Request::new(mobile::GetProductPageRequest {
            product_id: "prod-000001".into(),
            read_mask: read_mask.map(|paths| prost_types::FieldMask { paths }),
            ..Default::default()
        })
    };
    let with_header = |values: &[&[u8]]| {
        let mut request = page(None);
        for value in values {
            request
                .metadata_mut()
                .append("x-read-mask", MetadataValue::try_from(*value).unwrap());
        }
        request
    };
    let before: Vec<_> = stack.servers()[..4]
        .iter()
        .map(|(_, server)| server.stats.snapshot().started)
        .collect();

    let deep = ["top_reviews"; 10].join(".");
    let very_deep = "a.".repeat(5000);
    let many = "id,".repeat(2000);
    let many_entries = vec![&b"id"[..]; 200];
    let cases: Vec<(&str, tonic::Request<mobile::GetProductPageRequest>, &str)> = vec![
        (
            "into a scalar",
            with_header(&[b"top_reviews.text.length"]),
            "which has no fields",
        ),
        (
            "nested past the message",
            with_header(&[deep.as_bytes()]),
            "unknown field",
        ),
        (
            "10 KB deep",
            with_header(&[very_deep.as_bytes()]),
            "at most 128 characters",
        ),
        (
            "2,000 paths in one value",
            with_header(&[many.as_bytes()]),
            "at most 64 paths",
        ),
        ("200 values", with_header(&many_entries), "at most 64 paths"),
        (
            "not text",
            with_header(&[b"id,\xff\xfe"]),
            "x-read-mask is not valid text",
        ),
        (
            "empty segments",
            with_header(&[b"top_reviews..text"]),
            "malformed",
        ),
        (
            "10,000 paths in the request",
            page(Some(vec!["id".to_owned(); 10_000])),
            "at most 64 paths",
        ),
        (
            "one 100 KB path in the request",
            page(Some(vec!["id".repeat(50_000)])),
            "at most 128 characters",
        ),
        (
            "an unknown path in the request",
            page(Some(vec!["id".into(), "price.amount".into()])),
            "unknown field",
        ),
    ];
    for (what, request, needle) in cases {
        let status = client.get_product_page(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains(needle), "{what}: {status:?}");
        // Names at most one short path: never the mask sent back.
        assert!(
            status.message().len() < 300,
            "{what}: {} bytes",
            status.message().len()
        );
    }
    // The list's mask (of its cards) is held to the same rules.
    let status = client
        .list_products(mobile::ListProductsRequest {
            read_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into(); 65],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let after: Vec<_> = stack.servers()[..4]
        .iter()
        .map(|(_, server)| server.stats.snapshot().started)
        .collect();
    assert_eq!(before, after, "a refused mask costs no downstream call");

    // The same BFF still answers a well-formed mask, trimmed as asked.
    let answer = client
        .get_product_page(with_header(&[b"id,top_reviews.text"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.id, "prod-000001");
    assert!(answer.title.is_empty());
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Product lists asked for in each batch: on one HTTP/2 connection
/// whose streams grant no flow-control window at all (the answers are
/// made, and none can be sent), and over HTTP/1.1 as grpc-web from
/// clients that never read.
const STALLED_HTTP2_PER_BATCH: usize = 8;
/// See [`STALLED_HTTP2_PER_BATCH`].
const STALLED_HTTP1_PER_BATCH: usize = 2;
/// Batches, each made and settled before the next starts.
const BATCHES: usize = 10;

/// Sends a web product list of `page` from a client that will never read
/// its answer: on `client`'s zero-window connection, or on a connection
/// of its own over HTTP/1.1 as grpc-web.
async fn stall(
    address: SocketAddr,
    page: &web::ListProductsRequest,
    http2: &h2::client::SendRequest<Bytes>,
    held: &mut Vec<Box<dyn std::any::Any + Send>>,
    http1: bool,
) {
    use tokio::io::AsyncWriteExt;
    let body = grpc_web::frame(page);
    if http1 {
        let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {WEB_LIST} HTTP/1.1\r\nhost: {address}\r\n\
             content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&body).await.unwrap();
        held.push(Box::new(tcp));
    } else {
        let request = http::Request::post(format!("http://{address}{WEB_LIST}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut client = http2.clone().ready().await.unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        send.send_data(body.into(), true).unwrap();
        held.push(Box::new((response, send)));
    }
}

/// The web BFF (its own process, so that its memory can be read) keeps
/// the answer of a product list nobody reads, and nothing more: its
/// memory grows by about the answers held, and it serves other clients
/// as before.
#[tokio::test]
async fn product_lists_nobody_reads_hold_only_their_own_answers_and_others_are_served() {
    let stack = Stack::start().await;
    let data = tempfile::tempdir().unwrap();
    let web = tailor_e2e::Process::start_bff(
        "tailor-web-bff",
        data.path().to_str().unwrap(),
        &stack.downstream_urls(),
        &[],
        &[],
        None,
    )
    .await;
    let pid = web.child.id().unwrap();
    let full_page = web::ListProductsRequest {
        page_size: 100,
        ..Default::default()
    };
    let mut reader =
        web::shop_service_client::ShopServiceClient::new(tailor_e2e::connect(web.address).await);
    // Warm up, and learn how large one answer is.
    let answer = reader
        .list_products(full_page.clone())
        .await
        .unwrap()
        .into_inner();
    let answer_kib = prost::Message::encoded_len(&answer) as u64 / 1024;
    for _ in 0..5 {
        reader.list_products(full_page.clone()).await.unwrap();
    }
    let tcp = tokio::net::TcpStream::connect(web.address).await.unwrap();
    let (http2, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);

    let mut held = Vec::new();
    let mut made = stack.catalog.stats.settled().await.succeeded;
    let mut rss_after_first = 0;
    for batch in 0..BATCHES {
        for n in 0..STALLED_HTTP2_PER_BATCH + STALLED_HTTP1_PER_BATCH {
            let http1 = n >= STALLED_HTTP2_PER_BATCH;
            stall(web.address, &full_page, &http2, &mut held, http1).await;
        }
        made += (STALLED_HTTP2_PER_BATCH + STALLED_HTTP1_PER_BATCH) as u64;
        let deadline = Instant::now() + Duration::from_secs(20);
        while stack.catalog.stats.snapshot().succeeded < made {
            assert!(
                Instant::now() < deadline,
                "the stalled calls never reached the catalog"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first batch also settles what the allocator keeps for calls
        // in flight at once; count from after it.
        if batch == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            rss_after_first = rss_kib(pid);
        }
    }
    // Others are served while they stall.
    let started = Instant::now();
    reader.list_products(full_page.clone()).await.unwrap();
    let served_in = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stalled_rss = rss_kib(pid);
    let grown = stalled_rss.saturating_sub(rss_after_first);
    let calls = (BATCHES - 1) * (STALLED_HTTP2_PER_BATCH + STALLED_HTTP1_PER_BATCH);
    let answers_kib = answer_kib * calls as u64;
    println!(
        "slow readers: {calls} more stalled product lists of {answer_kib} KiB answers \
         ({answers_kib} KiB) grew the web BFF from {rss_after_first} KiB to {stalled_rss} KiB \
         (+{grown} KiB); another client was served in {served_in:?}"
    );
    assert!(
        grown <= 3 * answers_kib + 4096,
        "{calls} stalled calls holding {answers_kib} KiB of answers grew the BFF by {grown} KiB"
    );
    assert!(served_in < Duration::from_secs(5), "{served_in:?}");
    // Every stalled call was made once: nothing was retried or repeated
    // for a client that does not read.
    assert_eq!(stack.catalog.stats.settled().await.succeeded, made + 1);
    drop(held);
}

/// A catalogue feed whose client grants no flow-control window and reads
/// nothing: the feed fetches its first page and at most the next, while
/// the partner BFF serves other calls; once the client is gone the feed
/// stops asking for pages. (`feed_memory.rs` measures the same with a
/// reader that stalls after one product, on the BFF's own process.)
#[tokio::test]
async fn a_catalogue_feed_nobody_reads_fetches_no_further_than_the_next_page() {
    let stack = Stack::start().await;
    let mut partner =
        partner::partner_service_client::PartnerServiceClient::new(stack.partner.channel().await);
    let pages = || stack.catalog.stats.snapshot().started;
    let base = stack.catalog.stats.settled().await.started;

    let tcp = tokio::net::TcpStream::connect(stack.partner.address)
        .await
        .unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post(format!(
        "http://{}/tailor.partner.v1.PartnerService/StreamCatalogFeed",
        stack.partner.address
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("x-api-key", stack.partner_key.as_str())
    .body(())
    .unwrap();
    let mut client = client.ready().await.unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(
        grpc_web::frame(&partner::StreamCatalogFeedRequest::default()).into(),
        true,
    )
    .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(
        !response.headers().contains_key("grpc-status"),
        "{response:?}"
    );

    // It stalls; the BFF answers another call meanwhile.
    let stalled_since = Instant::now();
    let mut most = 0;
    while stalled_since.elapsed() < Duration::from_millis(800) {
        most = pages() - base;
        assert!(
            most <= 2,
            "{most} catalogue pages fetched for a feed nobody reads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most >= 1, "the first page was fetched");
    partner
        .batch_get_availability(api_key(
            &stack.partner_key,
            partner::BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into()],
            },
        ))
        .await
        .unwrap();

    // The client goes away: the feed asks for nothing more.
    drop((response, send, client));
    connection.abort();
    let gone = stack.catalog.stats.settled().await.started;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.catalog.stats.settled().await.started, gone);
    assert!(gone - base <= 2);
}
