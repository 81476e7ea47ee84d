//! `tailor-bench page`: the web BFF's product page (catalog + inventory +
//! reviews + related, fetched in parallel) against the floor, one direct
//! catalog `GetProduct` call, sequentially over the same products.

use std::time::Instant;

use tailor_proto::catalog::v1::GetProductRequest;
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::web::v1::GetProductPageRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;

use crate::{channel, ms, product, summarize};

/// Flags of `tailor-bench page`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Web BFF address.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    web: String,
    /// Catalog service address (mutual TLS).
    #[arg(long, default_value = "127.0.0.1:50051")]
    catalog: String,
    /// The stack's trust directory: the direct catalog calls are made with
    /// the web BFF's certificate, as the BFF makes them.
    #[arg(long, env = "TAILOR_TRUST_DIR", default_value = "data/trust")]
    trust_dir: std::path::PathBuf,
    /// Measured calls per target (after 50 warm-up calls).
    #[arg(long, default_value_t = 500)]
    requests: u32,
    /// Products cycled through (ids 1..=N).
    #[arg(long, default_value_t = 1000)]
    products: u32,
}

pub async fn run(args: Args) -> Result<(), String> {
    let mut web = ShopServiceClient::new(channel(&args.web).await?);
    let credentials = tailor_trust::MeshCredentials::load(
        &tailor_trust::TrustFiles::new(&args.trust_dir),
        "web-bff",
    )
    .map_err(|e| e.to_string())?;
    let catalog = tonic::transport::Endpoint::from_shared(format!("https://{}", args.catalog))
        .map_err(|e| e.to_string())?
        .tls_config(credentials.client_tls("catalog"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("catalog at {}: {e}", args.catalog))?;
    let mut catalog = CatalogServiceClient::new(catalog);
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
