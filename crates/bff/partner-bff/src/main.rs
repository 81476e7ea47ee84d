use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tailor_channel::DownstreamArgs;
use tailor_partner_bff::KeyStore;
use tailor_runtime::cli::ServerArgs;
use tailor_screens::Downstreams;
use tailor_storage::DatabaseArgs;

/// The downstream services this BFF cannot work without
/// (the feed and availability are the partner API):
/// while one is unreachable, its health says NOT_SERVING.
const REQUIRED_DOWNSTREAMS: &[&str] = &["catalog", "inventory"];

/// The partner BFF: the stable API for third-party integrators.
#[derive(Debug, Parser)]
#[command(name = "tailor-partner-bff", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on.
    #[arg(
        long,
        env = "TAILOR_PARTNER_LISTEN",
        default_value = "127.0.0.1:8083",
        global = true
    )]
    listen: SocketAddr,

    /// Overrides a plan's limits: `<plan>=<calls per second>:<burst>:<calls
    /// per day>`, for example `trial=5:10:1000`; repeatable.
    #[arg(long = "plan-limits", env = "TAILOR_PARTNER_PLAN_LIMITS", value_delimiter = ',', value_parser = tailor_partner_bff::plans::parse_override)]
    plan_limits: Vec<(String, tailor_interceptors::limits::Plan)>,

    #[command(flatten)]
    downstreams: DownstreamArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the partner API (the default).
    Serve,
    /// Manage API keys in the partner BFF's store.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// The partner the key belongs to (a-z, 0-9, '-', '_').
        #[arg(long)]
        tenant: String,
        /// A label for people.
        #[arg(long, default_value = "")]
        name: String,
        /// Comma-separated scopes.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "catalog.read,availability.read,orders.write,orders.read"
        )]
        scopes: Vec<String>,
        /// The plan, which decides rate limit and daily quota: trial (5/s,
        /// burst 10, 1,000 a day), standard (50/s, burst 100, 100,000 a
        /// day) or premium (500/s, burst 1,000, 5,000,000 a day).
        #[arg(long, default_value = "standard")]
        plan: String,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `tk_`).
        key_id: String,
    },
}

async fn keys(store: KeyStore, command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Create {
            tenant,
            name,
            scopes,
            plan,
        } => {
            let (key, info) = store
                .create(&tenant, &name, &scopes, &plan)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "created key {} for tenant {} with scopes {}; it is shown only now:",
                info.key_id,
                info.tenant,
                info.scopes.join(",")
            );
            println!("{}", key.token);
        }
        KeysCommand::List { tenant } => {
            for key in store.list(tenant).await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.key_id,
                    key.tenant,
                    key.plan,
                    key.scopes.join(","),
                    if key.revoked { "revoked" } else { "active" },
                    key.name
                );
            }
        }
        KeysCommand::Revoke { key_id } => {
            store.revoke(&key_id).await.map_err(|e| e.to_string())?;
            eprintln!("revoked {key_id}");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    args.server.init_logging();
    let traces = match tailor_runtime::logging::init_traces(tailor_partner_bff::NAME) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("tailor-partner-bff: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        let database = args
            .database
            .database(args.server.data_dir.join("partner.db"));
        let store = KeyStore::open_database(&database)
            .await
            .map_err(|e| e.to_string())?;
        match args.command {
            Some(Command::Keys(command)) => keys(store, command).await,
            None | Some(Command::Serve) => {
                let (downstreams, readiness) = Downstreams::connect_with(
                    &args.downstreams,
                    args.server.mesh_credentials(tailor_partner_bff::NAME)?,
                    REQUIRED_DOWNSTREAMS,
                )?;
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .map_err(|e| format!("binding {}: {e}", args.listen))?;
                let mut limits = tailor_partner_bff::plans::limits();
                limits.extend(args.plan_limits.clone());
                let mut server = tailor_partner_bff::build_server(downstreams, store, limits)
                    .await?
                    .with_readiness(readiness.watch());
                if let Some(tls) = args.server.public_tls()? {
                    server = server.with_tls(tls);
                }
                server
                    .serve(
                        listener,
                        tailor_runtime::shutdown::on_signal(),
                        args.server.serve_options(),
                    )
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    };
    let outcome = run.await;
    traces.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tailor-partner-bff: {error}");
            ExitCode::FAILURE
        }
    }
}
