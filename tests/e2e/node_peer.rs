//! The benchmark's Node.js peer of the web BFF (`crates/tools/bench/node-peer`):
//! the same contract over the same downstream services, so its answers must
//! be the Rust web BFF's, byte for byte, or the comparison of the two
//! measures different work.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::{Buf, BufMut};
use prost::Message;
use tailor_e2e::{Stack, trust};
use tailor_proto::web::v1::{GetProductPageRequest, GetProductPageResponse};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

const PAGE: &str = "/tailor.web.v1.ShopService/GetProductPage";

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/tools/bench/node-peer")
}

/// The Node peer as a child process, killed when dropped.
struct NodePeer {
    address: String,
    _child: tokio::process::Child,
}

impl NodePeer {
    /// Starts `node src/main.js` over `stack`'s downstream services and
    /// waits for its "listening on" line.
    async fn start(stack: &Stack) -> NodePeer {
        let dir = peer_dir();
        let node = std::process::Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "node is not on PATH: the Node peer test needs Node.js 20 or later"
        );
        for needed in [
            "node_modules/@connectrpc/connect-node",
            "src/gen/tailor/web/v1/shop_pb.js",
        ] {
            assert!(
                dir.join(needed).exists(),
                "{} is missing: run `npm ci --prefix crates/tools/bench/node-peer` \
                 (installs the packages and generates the stubs; tests/run.sh does it)",
                dir.join(needed).display()
            );
        }
        let [catalog, inventory, reviews, _] = stack.downstream_urls();
        let mut child = tokio::process::Command::new("node")
            .arg("src/main.js")
            .current_dir(&dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--trust-dir")
            .arg(&trust().dir)
            .args(["--catalog-addr", &catalog])
            .args(["--inventory-addr", &inventory])
            .args(["--reviews-addr", &reviews])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, address)) = line.split_once(" listening on ") {
                    return Some(address.trim().to_owned());
                }
            }
            None
        })
        .await
        .expect("the Node peer did not start within 30 s");
        let Some(address) = listening else {
            let mut said = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut said).await;
            panic!("the Node peer exited before listening:\n{said}");
        };
        // Keep both pipes drained so the peer never blocks on a full one.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        NodePeer {
            address,
            _child: child,
        }
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

/// Messages as they travel: the request encoded by the caller, the answer
/// handed back undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// The product page of `product_id` as the bytes of its answer.
async fn page_bytes(channel: &Channel, product_id: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let request = GetProductPageRequest {
        product_id: product_id.to_owned(),
    };
    let answer = grpc
        .unary(
            tonic::Request::new(request.encode_to_vec()),
            http::uri::PathAndQuery::from_static(PAGE),
            Raw,
        )
        .await?;
    Ok(answer.into_inner())
}

#[tokio::test]
async fn the_node_peer_answers_product_pages_byte_for_byte_as_the_rust_web_bff() {
    let stack = Stack::start().await;
    let peer = NodePeer::start(&stack).await;
    let (rust, node) = (stack.web.channel().await, peer.channel().await);

    // Every 15th product of the 300: sold out, low and plentiful stock,
    // no reviews and many.
    let mut summaries = std::collections::BTreeSet::new();
    let mut reviewed = (0, 0);
    for index in (1..=tailor_e2e::PRODUCTS).step_by(15) {
        let id = format!("prod-{index:06}");
        let expected = page_bytes(&rust, &id).await.unwrap();
        let answered = page_bytes(&node, &id).await.unwrap();
        let page = GetProductPageResponse::decode(&expected[..]).unwrap();
        if answered != expected {
            let node_page = GetProductPageResponse::decode(&answered[..]).unwrap();
            assert_eq!(node_page, page, "{id}: the Node peer's page differs");
            panic!("{id}: equal pages, encoded differently by the Node peer");
        }
        assert!(page.degraded_sections.is_empty(), "{id}: {page:?}");
        assert_eq!(page.related.len(), 8, "{id}");
        let availability = page.availability.unwrap().summary;
        summaries.insert(availability.split(' ').next().unwrap().to_owned());
        match page.reviews.unwrap().reviews.len() {
            0 => reviewed.0 += 1,
            _ => reviewed.1 += 1,
        }
    }
    assert_eq!(
        summaries,
        ["In", "Only", "Out"].map(String::from).into(),
        "the sample covers every kind of availability"
    );
    assert!(
        reviewed.0 > 0 && reviewed.1 > 0,
        "the sample has pages with and without reviews: {reviewed:?}"
    );

    // Refusals: the same code and message.
    let long = "p".repeat(65);
    for id in ["prod-999999", "", long.as_str()] {
        let expected = page_bytes(&rust, id).await.unwrap_err();
        let answered = page_bytes(&node, id).await.unwrap_err();
        assert_eq!(
            (answered.code(), answered.message()),
            (expected.code(), expected.message()),
            "{id:?}"
        );
    }

    // Without the reviews service, both leave the reviews out and say so.
    stack.reviews.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = page_bytes(&rust, "prod-000042").await.unwrap();
    let answered = page_bytes(&node, "prod-000042").await.unwrap();
    let page = GetProductPageResponse::decode(&expected[..]).unwrap();
    assert_eq!(page.degraded_sections, ["reviews"]);
    assert_eq!(
        GetProductPageResponse::decode(&answered[..]).unwrap(),
        page,
        "a degraded page"
    );
    assert_eq!(answered, expected, "the degraded page, byte for byte");
}
