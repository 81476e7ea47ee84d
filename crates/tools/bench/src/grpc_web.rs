//! `tailor-bench grpc-web`: throughput of `GetProductPage` on the web BFF
//! over native gRPC (HTTP/2, one multiplexed connection, as a server-side
//! client would call) and over grpc-web in binary and text form (HTTP/1.1
//! keep-alive connections, one per concurrent caller, as a browser calls a
//! plain-HTTP origin). Each round runs the three targets back to back; the
//! medians over rounds and their ratios to native are printed.
//!
//! Every answer is checked (status in the trailers, message decoded), so a
//! target cannot look fast by failing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tailor_proto::web::v1::{GetProductPageRequest, GetProductPageResponse};

use crate::{channel, ms, product, summarize};

/// Flags of `tailor-bench grpc-web`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Web BFF address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    web: SocketAddr,
    /// Calls per target per round.
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Concurrent callers per target.
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Rounds; figures are medians over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Products cycled through (ids 1..=N).
    #[arg(long, default_value_t = 1000)]
    products: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Native,
    WebBinary,
    WebText,
}

impl Target {
    const ALL: [Target; 3] = [Target::Native, Target::WebBinary, Target::WebText];

    fn label(self) -> &'static str {
        match self {
            Target::Native => "native gRPC (HTTP/2)",
            Target::WebBinary => "grpc-web binary (HTTP/1.1)",
            Target::WebText => "grpc-web text (HTTP/1.1)",
        }
    }
}

/// One round of one target.
struct Round {
    calls_per_sec: f64,
    latencies: Vec<Duration>,
    response_bytes: u64,
}

pub async fn run(args: Args) -> Result<(), String> {
    let native = ShopServiceClient::new(channel(&format!("http://{}", args.web)).await?);
    let per_caller = args.requests.div_ceil(args.concurrency);
    let mut rounds: Vec<(Target, Round)> = Vec::new();
    // Warm-up: connections, caches, page cache of the SQLite files.
    for target in Target::ALL {
        measure(target, &args, &native, 20.min(per_caller)).await?;
    }
    for _ in 0..args.rounds {
        for target in Target::ALL {
            rounds.push((target, measure(target, &args, &native, per_caller).await?));
        }
    }

    println!(
        "GetProductPage on the web BFF at {}: {} calls x {} rounds per target, {} concurrent callers",
        args.web,
        per_caller * args.concurrency,
        args.rounds,
        args.concurrency
    );
    println!(
        "{:<30} {:>12} {:>12} {:>12} {:>14} {:>10}",
        "target", "calls/s", "p50", "p99", "bytes/answer", "vs native"
    );
    let median_rate = |target: Target| {
        let mut rates: Vec<f64> = rounds
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, r)| r.calls_per_sec)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let native_rate = median_rate(Target::Native);
    for target in Target::ALL {
        let measured: Vec<&Round> = rounds
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, r)| r)
            .collect();
        let latencies = measured.iter().flat_map(|r| r.latencies.clone()).collect();
        let calls: u64 = measured.iter().map(|r| r.latencies.len() as u64).sum();
        let bytes: u64 = measured.iter().map(|r| r.response_bytes).sum();
        let summary = summarize(latencies);
        let rate = median_rate(target);
        println!(
            "{:<30} {:>12.0} {:>12} {:>12} {:>14} {:>10.2}",
            target.label(),
            rate,
            ms(summary.p50),
            ms(summary.p99),
            bytes / calls.max(1),
            rate / native_rate
        );
    }
    Ok(())
}

async fn measure(
    target: Target,
    args: &Args,
    native: &ShopServiceClient<tonic::transport::Channel>,
    per_caller: u32,
) -> Result<Round, String> {
    let started = Instant::now();
    let mut callers = Vec::new();
    for caller in 0..args.concurrency {
        let first = caller * per_caller;
        let ids: Vec<String> = (first..first + per_caller)
            .map(|i| product(i, args.products))
            .collect();
        let client = native.clone();
        let web = args.web;
        callers.push(tokio::spawn(async move {
            match target {
                Target::Native => native_calls(client, ids).await,
                Target::WebBinary => web_calls(web, false, ids).await,
                Target::WebText => web_calls(web, true, ids).await,
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut response_bytes = 0;
    for caller in callers {
        let (mut times, bytes) = caller.await.map_err(|e| e.to_string())??;
        latencies.append(&mut times);
        response_bytes += bytes;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Round {
        calls_per_sec: latencies.len() as f64 / elapsed,
        latencies,
        response_bytes,
    })
}

type CallerResult = Result<(Vec<Duration>, u64), String>;

async fn native_calls(
    mut client: ShopServiceClient<tonic::transport::Channel>,
    ids: Vec<String>,
) -> CallerResult {
    let mut times = Vec::with_capacity(ids.len());
    let mut bytes = 0;
    for product_id in ids {
        let started = Instant::now();
        let page = client
            .get_product_page(GetProductPageRequest { product_id })
            .await
            .map_err(|e| format!("native call failed: {e}"))?
            .into_inner();
        times.push(started.elapsed());
        // The message plus its 5-byte frame header, as on the wire.
        bytes += page.encoded_len() as u64 + 5;
    }
    Ok((times, bytes))
}

async fn web_calls(address: SocketAddr, text: bool, ids: Vec<String>) -> CallerResult {
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let content_type = if text {
        "application/grpc-web-text+proto"
    } else {
        "application/grpc-web+proto"
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let mut times = Vec::with_capacity(ids.len());
    let mut bytes = 0;
    for product_id in ids {
        let message = GetProductPageRequest { product_id }.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let body = if text {
            Bytes::from(engine.encode(&frame))
        } else {
            Bytes::from(frame)
        };
        let request = http::Request::post(format!(
            "http://{address}/tailor.web.v1.ShopService/GetProductPage"
        ))
        .header(http::header::HOST, address.to_string())
        .header(http::header::CONTENT_TYPE, content_type)
        .header("x-grpc-web", "1")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
        let started = Instant::now();
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("grpc-web call failed: {e}"))?;
        let raw = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        times.push(started.elapsed());
        bytes += raw.len() as u64;
        let decoded = if text {
            decode_text(&raw)?
        } else {
            raw.to_vec()
        };
        check_answer(&decoded)?;
    }
    Ok((times, bytes))
}

/// Concatenated, separately padded base64 pieces.
pub(crate) fn decode_text(raw: &[u8]) -> Result<Vec<u8>, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    for quad in raw.chunks(4) {
        let mut buf = [0u8; 3];
        let n = engine
            .decode_slice(quad, &mut buf)
            .map_err(|e| format!("answer is not base64: {e}"))?;
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

/// One page message, then trailers saying `grpc-status: 0`.
fn check_answer(mut frames: &[u8]) -> Result<(), String> {
    let mut pages = 0;
    let mut ok = false;
    while frames.len() >= 5 {
        let length = u32::from_be_bytes([frames[1], frames[2], frames[3], frames[4]]) as usize;
        let payload = frames
            .get(5..5 + length)
            .ok_or("answer frame is truncated")?;
        if frames[0] & 0x80 != 0 {
            ok = String::from_utf8_lossy(payload)
                .split("\r\n")
                .any(|line| line.trim() == "grpc-status:0");
        } else {
            GetProductPageResponse::decode(payload).map_err(|e| e.to_string())?;
            pages += 1;
        }
        frames = &frames[5 + length..];
    }
    if pages == 1 && ok {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer: {pages} pages, ok trailers: {ok}"
        ))
    }
}
