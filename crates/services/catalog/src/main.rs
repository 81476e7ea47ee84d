use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tailor_runtime::cli::{CallerArgs, ServerArgs};
use tailor_storage::DatabaseArgs;

/// The catalog service.
#[derive(Debug, Parser)]
#[command(name = "tailor-catalog", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TAILOR_CATALOG_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Products to generate on first start.
    #[arg(long, env = "TAILOR_CATALOG_PRODUCTS", default_value_t = 10_000)]
    products: u32,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    callers: CallerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = tailor_catalog::CatalogConfig {
        database: args
            .database
            .database(args.server.data_dir.join("catalog.db")),
        products: args.products,
    };
    tailor_runtime::serve_main(
        "tailor-catalog",
        args.listen,
        &args.server,
        tailor_runtime::Role::Service(&args.callers),
        tailor_catalog::build_server(&config),
    )
    .await
}
