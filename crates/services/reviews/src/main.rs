use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tailor_runtime::cli::{CallerArgs, ServerArgs};
use tailor_storage::DatabaseArgs;

/// The reviews service.
#[derive(Debug, Parser)]
#[command(name = "tailor-reviews", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TAILOR_REVIEWS_LISTEN", default_value = "127.0.0.1:50053")]
    listen: SocketAddr,
    /// Products whose reviews are generated on first start.
    #[arg(long, env = "TAILOR_REVIEWS_PRODUCTS", default_value_t = 10_000)]
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
    let config = tailor_reviews::ReviewsConfig {
        database: args
            .database
            .database(args.server.data_dir.join("reviews.db")),
        products: args.products,
    };
    tailor_runtime::serve_main(
        "tailor-reviews",
        args.listen,
        &args.server,
        tailor_runtime::Role::Service(&args.callers),
        tailor_reviews::build_server(&config),
    )
    .await
}
