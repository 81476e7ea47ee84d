//! `tailor-bench`: measures a running stack (`tailor up`) from outside, as
//! a client would. `latency` compares the web BFF's product page (catalog +
//! inventory + reviews + related, fetched in parallel) with the floor: one
//! direct catalog `GetProduct` call. Both run in the same process, one
//! after the other, over the same products, so the ratio is meaningful on
//! a noisy machine. Requests are bounded by `--requests`.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::web::v1::GetProductPageRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(name = "tailor-bench", version)]
struct Args {
    /// Web BFF address.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    web: String,
    /// Catalog service address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    catalog: String,
    /// Measured calls per target (after 50 warm-up calls).
    #[arg(long, default_value_t = 500)]
    requests: u32,
    /// Products cycled through (ids 1..=N).
    #[arg(long, default_value_t = 1000)]
    products: u32,
}

struct Summary {
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Summary {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn channel(address: &str) -> Result<Channel, String> {
    tonic::transport::Endpoint::from_shared(address.to_owned())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))
}

fn product(i: u32, products: u32) -> String {
    format!("prod-{:06}", i % products + 1)
}

async fn run(args: Args) -> Result<(), String> {
    let mut web = ShopServiceClient::new(channel(&args.web).await?);
    let mut catalog = CatalogServiceClient::new(channel(&args.catalog).await?);
    let total = args.requests + 50;

    let mut direct = Vec::new();
    for i in 0..total {
        let started = Instant::now();
        catalog
            .get_product(GetProductRequest {
                id: product(i, args.products),
            })
            .await
            .map_err(|e| format!("catalog: {e}"))?;
        if i >= 50 {
            direct.push(started.elapsed());
        }
    }
    let mut page = Vec::new();
    for i in 0..total {
        let started = Instant::now();
        let answer = web
            .get_product_page(GetProductPageRequest {
                product_id: product(i, args.products),
            })
            .await
            .map_err(|e| format!("web BFF: {e}"))?
            .into_inner();
        if !answer.degraded_sections.is_empty() {
            return Err(format!("degraded page: {:?}", answer.degraded_sections));
        }
        if i >= 50 {
            page.push(started.elapsed());
        }
    }
    let (direct, page) = (summarize(direct), summarize(page));
    println!(
        "sequential calls, {} measured each, one client",
        args.requests
    );
    println!("{:<44} {:>12} {:>12} {:>12}", "target", "p50", "p90", "p99");
    println!(
        "{:<44} {:>12} {:>12} {:>12}",
        "catalog GetProduct (direct, the floor)",
        ms(direct.p50),
        ms(direct.p90),
        ms(direct.p99)
    );
    println!(
        "{:<44} {:>12} {:>12} {:>12}",
        "web BFF GetProductPage (5 downstream calls)",
        ms(page.p50),
        ms(page.p90),
        ms(page.p99)
    );
    println!(
        "median ratio page/direct: {:.2}",
        page.p50.as_secs_f64() / direct.p50.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tailor-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
