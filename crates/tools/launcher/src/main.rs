//! `tailor`: the one command that runs the whole stack on a laptop or CI
//! machine, a helper that mints development tokens, and the health probe
//! of the container image.
//!
//! `tailor up` starts the four downstream services, waits until each
//! reports SERVING on `grpc.health.v1`, starts the three BFFs pointed at
//! them, waits again, serves the built browser app (`clients/web/dist`) next
//! to them, and prints where everything listens with
//! ready-to-paste `grpcurl` and `buf curl` lines. Ctrl-C (or SIGTERM) stops
//! the BFFs first and the downstream services after, each draining its
//! in-flight calls. A process that dies is reported and the others keep
//! running: one failing gateway must not take the rest down.
//!
//! It is a development launcher, not an orchestrator: production runs each
//! binary under its own supervisor.

#![forbid(unsafe_code)]

mod probe;
mod stack;
mod webapp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use tailor_auth::DEVELOPMENT_JWT_SECRET;
use tailor_auth::{Claims, mint_hs256};

#[derive(Debug, Parser)]
#[command(
    name = "tailor",
    version,
    about = "Runs the Tailor stack and mints development tokens"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start all seven servers and wait for Ctrl-C.
    Up(stack::UpArgs),
    /// Create a development certificate authority and a certificate per
    /// server in a directory (`--trust-dir` of every server).
    #[command(subcommand)]
    Trust(Trust),
    /// Ask a server's plaintext admin port whether it is SERVING, once:
    /// exit 0 if so, 1 otherwise, saying why (the container image's
    /// health check).
    Probe(probe::ProbeArgs),
    /// Print a development JWT for the web or mobile BFF.
    Token {
        /// The user the token speaks for.
        #[arg(long, default_value = "demo-user")]
        subject: String,
        /// `tailor-web` or `tailor-mobile`.
        #[arg(long, default_value = "tailor-web")]
        audience: String,
        /// Seconds until it expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// HS256 secret (the BFFs' default development secret unless set).
        #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
        secret: String,
    },
}

#[derive(Debug, Subcommand)]
enum Trust {
    /// Writes `ca.crt`, `ca.key` and `<server>.crt`/`<server>.key` for the
    /// seven servers (0600 files in a 0700 directory); a complete directory
    /// is kept as it is.
    Init {
        /// The directory.
        dir: PathBuf,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::main]
async fn main() -> ExitCode {
    match Args::parse().command {
        Command::Token {
            subject,
            audience,
            ttl,
            secret,
        } => {
            let claims = Claims {
                sub: subject,
                aud: audience,
                exp: now() + ttl,
                iat: now(),
                iss: String::new(),
                scope: String::new(),
            };
            println!("{}", mint_hs256(secret.as_bytes(), &claims));
            ExitCode::SUCCESS
        }
        Command::Trust(Trust::Init { dir }) => {
            match tailor_trust::Authority::ensure_dir(&dir, &stack::PROCESSES) {
                Ok(_) => {
                    println!(
                        "certificates for {} servers in {}",
                        stack::PROCESSES.len(),
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("tailor: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Probe(args) => match args.run().await {
            Ok(()) => {
                println!("SERVING");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("tailor probe: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Up(args) => match stack::up(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tailor: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Where the sibling binaries are: next to this one unless told otherwise.
fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}
