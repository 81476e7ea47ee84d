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

/// Calls `path` on `address` with the encoded `payload` and returns the
/// response body length, after checking the call succeeded.
async fn body_bytes(
    address: SocketAddr,
    path: &str,
    payload: Vec<u8>,
    token: &str,
    accept_encoding: Option<&str>,
) -> Result<u64, String> {
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

/// The answer's size for each of `encodings` (`None`: plain), one call
/// each, `message` giving each call's request.
async fn sizes(
    address: SocketAddr,
    path: &str,
    token: &str,
    encodings: &[Option<&str>],
    mut message: impl FnMut() -> Vec<u8>,
) -> Result<Vec<u64>, String> {
    let mut sizes = Vec::with_capacity(encodings.len());
    for encoding in encodings {
        sizes.push(body_bytes(address, path, message(), token, *encoding).await?);
    }
    Ok(sizes)
}

const WEB_ENCODINGS: [Option<&str>; 2] = [None, Some("gzip")];
const MOBILE_ENCODINGS: [Option<&str>; 3] = [None, Some("gzip"), Some("zstd")];

/// Measures one screen: `method` on both BFFs.
async fn screen(
    screen: &'static str,
    targets: &Targets,
    method: &str,
    web: impl FnMut() -> Vec<u8>,
    mobile: impl FnMut() -> Vec<u8>,
) -> Result<ScreenBytes, String> {
    let web = sizes(
        targets.web,
        &format!("/tailor.web.v1.ShopService/{method}"),
        &targets.web_token,
        &WEB_ENCODINGS,
        web,
    )
    .await?;
    let mobile = sizes(
        targets.mobile,
        &format!("/tailor.mobile.v1.ShopService/{method}"),
        &targets.mobile_token,
        &MOBILE_ENCODINGS,
        mobile,
    )
    .await?;
    Ok(ScreenBytes {
        screen,
        web_plain: web[0],
        web_gzip: web[1],
        mobile_plain: mobile[0],
        mobile_gzip: mobile[1],
        mobile_zstd: mobile[2],
    })
}

/// Measures the three screens on both BFFs. `run` makes the order
/// idempotency keys unique across runs against the same stack.
pub async fn measure(targets: &Targets, run: &str) -> Result<Vec<ScreenBytes>, String> {
    const PRODUCT: &str = "prod-000042";
    const ORDER: [(&str, i32); 2] = [(PRODUCT, 1), ("prod-000007", 1)];
    let list = screen(
        "product list (20 cards)",
        targets,
        "ListProducts",
        || {
            web::v1::ListProductsRequest {
                page_size: 20,
                ..Default::default()
            }
            .encode_to_vec()
        },
        || {
            mobile::v1::ListProductsRequest {
                page_size: 20,
                ..Default::default()
            }
            .encode_to_vec()
        },
    )
    .await?;
    let page = screen(
        "product page",
        targets,
        "GetProductPage",
        || {
            web::v1::GetProductPageRequest {
                product_id: PRODUCT.into(),
            }
            .encode_to_vec()
        },
        || {
            mobile::v1::GetProductPageRequest {
                product_id: PRODUCT.into(),
                ..Default::default()
            }
            .encode_to_vec()
        },
    )
    .await?;
    // Every call places its own order: a key per call.
    let (mut web_calls, mut mobile_calls) = (0, 0);
    let order = screen(
        "placing an order (2 lines)",
        targets,
        "PlaceOrder",
        || {
            web::v1::PlaceOrderRequest {
                idempotency_key: {
                    web_calls += 1;
                    format!("payload-report-{run}-web-{web_calls}")
                },
                lines: ORDER
                    .iter()
                    .map(|(id, quantity)| web::v1::OrderLineInput {
                        product_id: (*id).into(),
                        quantity: *quantity,
                    })
                    .collect(),
            }
            .encode_to_vec()
        },
        || {
            mobile::v1::PlaceOrderRequest {
                idempotency_key: {
                    mobile_calls += 1;
                    format!("payload-report-{run}-mobile-{mobile_calls}")
                },
                lines: ORDER
                    .iter()
                    .map(|(id, quantity)| mobile::v1::OrderLineInput {
                        product_id: (*id).into(),
                        quantity: *quantity,
                    })
                    .collect(),
            }
            .encode_to_vec()
        },
    )
    .await?;
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
