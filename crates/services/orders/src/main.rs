use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tailor_runtime::cli::{CallerArgs, ServerArgs};
use tailor_storage::DatabaseArgs;

/// The orders service.
#[derive(Debug, Parser)]
#[command(name = "tailor-orders", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TAILOR_ORDERS_LISTEN", default_value = "127.0.0.1:50054")]
    listen: SocketAddr,
    /// Milliseconds between two status changes of an order; 0 stops the simulator.
    #[arg(
        long,
        env = "TAILOR_ORDERS_FULFILMENT_STEP_MS",
        default_value_t = 3_000
    )]
    fulfilment_step_ms: u64,
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
    let config = tailor_orders::OrdersConfig {
        database: args
            .database
            .database(args.server.data_dir.join("orders.db")),
        fulfilment_step: Duration::from_millis(args.fulfilment_step_ms),
    };
    // The simulator stops with the process; the server drains on its own signal.
    let simulator = tailor_runtime::CancellationToken::new();
    tailor_runtime::serve_main(
        "tailor-orders",
        args.listen,
        &args.server,
        tailor_runtime::Role::Service(&args.callers),
        tailor_orders::build_server(&config, simulator),
    )
    .await
}
