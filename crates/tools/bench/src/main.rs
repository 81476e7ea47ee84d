//! `tailor-bench`: measures a running stack (`tailor up`) from outside, as
//! a client would. Every program runs its targets in one process, one
//! after the other over the same products, so ratios are meaningful on a
//! noisy machine; requests are bounded by flags.
//!
//! - `page`: the web BFF's product page against one direct catalog call.
//! - `grpc-web`: product-page throughput over grpc-web (binary and text)
//!   against native gRPC on the same web BFF.
//! - `payload`: bytes on the wire per screen, web BFF against mobile BFF,
//!   plain and compressed.
//! - `otlp-sink`: a trace receiver for measuring what exporting costs.
//! - `load`: a load generator for one scenario (closed or open loop,
//!   concurrency levels, duration), with each server process's CPU and
//!   peak memory during the run.
//! - `report`: the markdown performance report (and its SVG chart) from
//!   the records `load --record` appended.
//! - `streams`: open order watches and stalled feed readers, and what
//!   they cost a BFF's memory.
//! - `chaos`: a stack of its own under steady web load while faults hit
//!   the other BFFs and the downstream services, against the isolation
//!   targets.

#![forbid(unsafe_code)]

mod chaos;
mod grpc_web;
mod load;
mod page;
mod procs;
mod report;
mod sink;
mod streams;

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
    /// Bytes per screen: web BFF against mobile BFF, plain and compressed.
    Payload(PayloadArgs),
    /// Load one scenario and report throughput, latency percentiles,
    /// errors and each server's CPU and peak memory.
    Load(Box<load::Args>),
    /// The performance report (markdown and an SVG chart) from the
    /// records of `load --record`.
    Report(report::Args),
    /// An OTLP/gRPC trace receiver that counts spans and keeps nothing.
    OtlpSink(sink::Args),
    /// Web pages under steady load while faults hit the rest of the
    /// system: a table per fault, checked against the isolation targets.
    Chaos(chaos::Args),
    /// Long-lived streams a BFF holds: open order watches, stalled
    /// partner feed readers; its memory and CPU while it holds them.
    Streams(Box<streams::Args>),
}

#[derive(Debug, clap::Args)]
struct PayloadArgs {
    /// Web BFF address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    web: std::net::SocketAddr,
    /// Mobile BFF address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    mobile: std::net::SocketAddr,
    /// HS256 secret to mint the user's tokens with (the BFFs' development
    /// secret unless set).
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = tailor_auth::DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
    secret: String,
}

async fn payload(args: PayloadArgs) -> Result<(), String> {
    use tailor_bench::payload::{Targets, measure, table};
    let token = |audience: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = tailor_auth::Claims {
            sub: "payload-report".into(),
            aud: audience.into(),
            exp: now + 600,
            iat: now,
            iss: String::new(),
            scope: String::new(),
        };
        tailor_auth::mint_hs256(args.secret.as_bytes(), &claims)
    };
    let targets = Targets {
        web: args.web,
        mobile: args.mobile,
        web_token: token("tailor-web"),
        mobile_token: token("tailor-mobile"),
    };
    let run = format!("{}", std::process::id());
    let screens = measure(&targets, &run).await?;
    println!("Bytes of the answer's body on the wire (message frames), one call each:");
    println!();
    print!("{}", table(&screens));
    println!();
    let plain = screens.iter().all(|s| s.plain_ratio() <= 0.40);
    let compressed = screens.iter().all(|s| s.compressed_ratio() <= 0.20);
    println!(
        "targets: mobile <= 40% of web uncompressed: {}; mobile compressed <= 20% of web: {}",
        if plain { "met" } else { "MISSED" },
        if compressed { "met" } else { "MISSED" }
    );
    Ok(())
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
        Command::Payload(args) => payload(args).await,
        Command::Load(args) => load::run(*args).await,
        Command::Report(args) => report::run(args).await,
        Command::OtlpSink(args) => sink::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Streams(args) => streams::run(*args).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tailor-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
