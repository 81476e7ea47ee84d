//! The payload report: bytes on the wire of the same three screens (a list
//! of 20, a product page, placing an order) answered by the web BFF and by
//! the mobile BFF, plain and compressed.
//!
//! Each answer is fetched with a raw HTTP/2 gRPC call so that what is
//! counted is exactly the response body as sent: the length-prefixed
//! message frames, compressed when the server chose to (it says so in
//! `grpc-encoding`). Headers and trailers are left out: they are about the
//! same for both BFFs and shrink further with HPACK.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tailor_proto::{mobile, web};

/// One screen's answer sizes, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenBytes {
    /// The screen.
    pub screen: &'static str,
    /// Web BFF, no compression asked.
    pub web_plain: u64,
    /// Web BFF, gzip accepted.
    pub web_gzip: u64,
    /// Mobile BFF, no compression asked.
    pub mobile_plain: u64,
    /// Mobile BFF, gzip accepted.
    pub mobile_gzip: u64,
    /// Mobile BFF, zstd accepted.
    pub mobile_zstd: u64,
}

impl ScreenBytes {
    /// Mobile plain as a share of web plain.
    pub fn plain_ratio(&self) -> f64 {
        self.mobile_plain as f64 / self.web_plain as f64
    }

    /// The smaller compressed mobile answer as a share of web plain, what
    /// a browser receives over grpc-web.
    pub fn compressed_ratio(&self) -> f64 {
        self.mobile_gzip.min(self.mobile_zstd) as f64 / self.web_plain as f64
    }

    /// The smaller compressed mobile answer as a share of the web answer
    /// compressed with gzip too.
    pub fn compressed_vs_compressed(&self) -> f64 {
        self.mobile_gzip.min(self.mobile_zstd) as f64 / self.web_gzip as f64
    }
}

/// Where to call and as whom.
#[derive(Debug, Clone)]
pub struct Targets {
    /// Web BFF.
    pub web: SocketAddr,
    /// Mobile BFF.
    pub mobile: SocketAddr,
    /// Bearer token for the web BFF.
    pub web_token: String,
    /// Bearer token for the mobile BFF.
    pub mobile_token: String,
}

/// Calls `path` on `address` with `message` and returns the response body
/// length, after checking the call succeeded.
async fn body_bytes(
    address: SocketAddr,
    path: &str,
    message: &impl Message,
    token: &str,
    accept_encoding: Option<&str>,
) -> Result<u64, String> {
    let payload = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"));
    if let Some(encoding) = accept_encoding {
        request = request.header("grpc-accept-encoding", encoding);
    }
    let request = request
        .body(Full::new(Bytes::from(frame)))
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let headers = response.headers().clone();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|s| s.to_str().ok())
        .unwrap_or("missing")
        .to_owned();
    if status != "0" {
        return Err(format!("{path} on {address} failed: grpc-status {status}"));
    }
    Ok(collected.to_bytes().len() as u64)
}

/// Measures the three screens on both BFFs. `run` makes the order
/// idempotency keys unique across runs against the same stack.
pub async fn measure(targets: &Targets, run: &str) -> Result<Vec<ScreenBytes>, String> {
    let web_list = web::v1::ListProductsRequest {
        page_size: 20,
        ..Default::default()
    };
    let mobile_list = mobile::v1::ListProductsRequest {
        page_size: 20,
        ..Default::default()
    };
    let web_page = web::v1::GetProductPageRequest {
        product_id: "prod-000042".into(),
    };
    let mobile_page = mobile::v1::GetProductPageRequest {
        product_id: "prod-000042".into(),
        ..Default::default()
    };
    let line = |product: &str| (product.to_owned(), 1);
    let web_order = |key: String| web::v1::PlaceOrderRequest {
        idempotency_key: key,
        lines: [line("prod-000042"), line("prod-000007")]
            .into_iter()
            .map(|(product_id, quantity)| web::v1::OrderLineInput {
                product_id,
                quantity,
            })
            .collect(),
    };
    let mobile_order = |key: String| mobile::v1::PlaceOrderRequest {
        idempotency_key: key,
        lines: [line("prod-000042"), line("prod-000007")]
            .into_iter()
            .map(|(product_id, quantity)| mobile::v1::OrderLineInput {
                product_id,
                quantity,
            })
            .collect(),
    };
    let web_shop = "/tailor.web.v1.ShopService/";
    let mobile_shop = "/tailor.mobile.v1.ShopService/";
    let (w, m) = (targets.web, targets.mobile);
    let (wt, mt) = (targets.web_token.as_str(), targets.mobile_token.as_str());

    let list = ScreenBytes {
        screen: "product list (20 cards)",
        web_plain: body_bytes(w, &format!("{web_shop}ListProducts"), &web_list, wt, None).await?,
        web_gzip: body_bytes(
            w,
            &format!("{web_shop}ListProducts"),
            &web_list,
            wt,
            Some("gzip"),
        )
        .await?,
        mobile_plain: body_bytes(
            m,
            &format!("{mobile_shop}ListProducts"),
            &mobile_list,
            mt,
            None,
        )
        .await?,
        mobile_gzip: body_bytes(
            m,
            &format!("{mobile_shop}ListProducts"),
            &mobile_list,
            mt,
            Some("gzip"),
        )
        .await?,
        mobile_zstd: body_bytes(
            m,
            &format!("{mobile_shop}ListProducts"),
            &mobile_list,
            mt,
            Some("zstd"),
        )
        .await?,
    };
    let page = ScreenBytes {
        screen: "product page",
        web_plain: body_bytes(w, &format!("{web_shop}GetProductPage"), &web_page, wt, None).await?,
        web_gzip: body_bytes(
            w,
            &format!("{web_shop}GetProductPage"),
            &web_page,
            wt,
            Some("gzip"),
        )
        .await?,
        mobile_plain: body_bytes(
            m,
            &format!("{mobile_shop}GetProductPage"),
            &mobile_page,
            mt,
            None,
        )
        .await?,
        mobile_gzip: body_bytes(
            m,
            &format!("{mobile_shop}GetProductPage"),
            &mobile_page,
            mt,
            Some("gzip"),
        )
        .await?,
        mobile_zstd: body_bytes(
            m,
            &format!("{mobile_shop}GetProductPage"),
            &mobile_page,
            mt,
            Some("zstd"),
        )
        .await?,
    };
    let key = |n: u32| format!("payload-report-{run}-{n}");
    let place = "PlaceOrder";
    let order = ScreenBytes {
        screen: "placing an order (2 lines)",
        web_plain: body_bytes(
            w,
            &format!("{web_shop}{place}"),
            &web_order(key(1)),
            wt,
            None,
        )
        .await?,
        web_gzip: body_bytes(
            w,
            &format!("{web_shop}{place}"),
            &web_order(key(2)),
            wt,
            Some("gzip"),
        )
        .await?,
        mobile_plain: body_bytes(
            m,
            &format!("{mobile_shop}{place}"),
            &mobile_order(key(3)),
            mt,
            None,
        )
        .await?,
        mobile_gzip: body_bytes(
            m,
            &format!("{mobile_shop}{place}"),
            &mobile_order(key(4)),
            mt,
            Some("gzip"),
        )
        .await?,
        mobile_zstd: body_bytes(
            m,
            &format!("{mobile_shop}{place}"),
            &mobile_order(key(5)),
            mt,
            Some("zstd"),
        )
        .await?,
    };
    Ok(vec![list, page, order])
}

/// The report as a Markdown table.
pub fn table(screens: &[ScreenBytes]) -> String {
    let mut out = String::from(
        "| screen | web | web gzip | mobile | mobile gzip | mobile zstd | mobile / web | mobile compressed / web | mobile compressed / web gzip |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in screens {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0}% | {:.0}% | {:.0}% |\n",
            s.screen,
            s.web_plain,
            s.web_gzip,
            s.mobile_plain,
            s.mobile_gzip,
            s.mobile_zstd,
            100.0 * s.plain_ratio(),
            100.0 * s.compressed_ratio(),
            100.0 * s.compressed_vs_compressed(),
        ));
    }
    out
}
