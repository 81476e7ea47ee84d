//! `tailor-bench`: measures a running stack (`tailor up`) from outside, as
//! a client would. Every program runs its targets in one process, one
//! after the other over the same products, so ratios are meaningful on a
//! noisy machine; requests are bounded by flags.
//!
//! - `page`: the web BFF's product page against one direct catalog call.
//! - `grpc-web`: product-page throughput over grpc-web (binary and text)
//!   against native gRPC on the same web BFF.

#![forbid(unsafe_code)]

mod grpc_web;
mod page;

use std::time::Duration;

use clap::{Parser, Subcommand};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(name = "tailor-bench", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Product page latency against the direct catalog call.
    Page(page::Args),
    /// Product page throughput: grpc-web (binary, text) against native gRPC.
    GrpcWeb(grpc_web::Args),
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let outcome = match Args::parse().command {
        Command::Page(args) => page::run(args).await,
        Command::GrpcWeb(args) => grpc_web::run(args).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tailor-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
