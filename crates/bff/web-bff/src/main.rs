use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tailor_auth::CookiePolicy;
use tailor_auth::JwtArgs;
use tailor_browser::{AllowedOrigins, BrowserAccess, DEFAULT_MAX_REQUEST_BYTES};
use tailor_channel::DownstreamArgs;
use tailor_runtime::cli::ServerArgs;
use tailor_screens::Downstreams;
use tailor_storage::DatabaseArgs;
use tailor_web_bff::{Accounts, DEFAULT_SIGN_IN_ATTEMPTS, SignInLimits, WebOptions};

/// The downstream services this BFF cannot work without
/// (a page without its product is no page):
/// while one is unreachable, its health says NOT_SERVING.
const REQUIRED_DOWNSTREAMS: &[&str] = &["catalog"];

/// The web BFF: the shop API for browsers (gRPC and grpc-web on one port).
#[derive(Debug, Parser)]
#[command(name = "tailor-web-bff", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on (gRPC and grpc-web, HTTP/2 and HTTP/1.1).
    #[arg(long, env = "TAILOR_WEB_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,

    /// The `aud` claim bearer tokens must carry.
    #[arg(long, env = "TAILOR_WEB_JWT_AUDIENCE", default_value = tailor_web_bff::DEFAULT_AUDIENCE)]
    jwt_audience: String,

    /// Origins of web apps that may call with the user's cookie
    /// (comma-separated, exact `scheme://host:port`; `*` is refused).
    #[arg(
        long = "cors-origin",
        env = "TAILOR_WEB_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:8080,http://127.0.0.1:8080"
    )]
    cors_origins: Vec<String>,

    /// Set the session cookie without `Secure`, for a web app served over
    /// plain HTTP during local development.
    #[arg(long, env = "TAILOR_WEB_INSECURE_COOKIES")]
    insecure_cookies: bool,

    /// Seconds a browser session lasts.
    #[arg(long, env = "TAILOR_WEB_SESSION_TTL_SECS", default_value_t = 12 * 3600)]
    session_ttl_secs: u64,

    /// Largest request message accepted, grpc-web and native gRPC alike,
    /// in bytes.
    #[arg(long, env = "TAILOR_WEB_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,

    /// Sign-in attempts allowed per user name, as `<per second>:<burst>`
    /// (default 0.0833:5: 5 at once, then one every 12 s). There is no
    /// daily cap: a stranger could use it to lock a user out for the day.
    #[arg(long, env = "TAILOR_WEB_SIGN_IN_LIMITS")]
    sign_in_limits: Option<tailor_interceptors::limits::Rate>,

    /// Sign-in attempts allowed per client address whatever the user names,
    /// as `<per second>:<burst>` (default 0.333:20: 20 at once, then one
    /// every 3 s).
    #[arg(long, env = "TAILOR_WEB_SIGN_IN_ADDRESS_LIMITS")]
    sign_in_address_limits: Option<tailor_interceptors::limits::Rate>,

    /// Orders each user may place, as `<per second>:<burst>:<per day>`
    /// (default 0.1:10:500: 10 at once, then one every 10 s, 500 a day).
    #[arg(long, env = "TAILOR_WEB_ORDER_LIMITS")]
    order_limits: Option<tailor_interceptors::limits::Plan>,

    #[command(flatten)]
    jwt: JwtArgs,

    #[command(flatten)]
    downstreams: DownstreamArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the web API (the default).
    Serve,
    /// Manage the users who may sign in from the browser.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user; the password is read from standard input.
    Add {
        /// The name to sign in with (a-z, 0-9, '.', '-', '_').
        username: String,
        /// The name to greet the user with (defaults to the user name).
        #[arg(long, default_value = "")]
        display_name: String,
    },
}

fn read_password() -> Result<String, String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

async fn users(accounts: Accounts, command: UsersCommand) -> Result<(), String> {
    match command {
        UsersCommand::Add {
            username,
            display_name,
        } => {
            let password = read_password()?;
            let user = accounts
                .add_user(&username, &display_name, &password)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("added {username} ({})", user.user_id);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let database = args.database.database(args.server.data_dir.join("web.db"));
    let session_ttl = Duration::from_secs(args.session_ttl_secs);
    let open_accounts = || async {
        Accounts::open_database(&database, session_ttl)
            .await
            .map_err(|e| e.to_string())
    };
    if let Some(Command::Users(command)) = args.command {
        args.server.init_logging();
        let done = match open_accounts().await {
            Ok(accounts) => users(accounts, command).await,
            Err(error) => Err(error),
        };
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tailor-web-bff: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let build = async {
        let tokens = args.jwt.authenticator(&args.jwt_audience)?;
        let origins = AllowedOrigins::new(&args.cors_origins).map_err(|e| e.to_string())?;
        let (downstreams, readiness) = Downstreams::connect_with(
            &args.downstreams,
            args.server.mesh_credentials(tailor_web_bff::NAME)?,
            REQUIRED_DOWNSTREAMS,
        )?;

        if args.insecure_cookies {
            tracing::warn!("session cookies are set without Secure (plain-HTTP development)");
        }
        let options = WebOptions {
            browser: BrowserAccess {
                origins,
                max_request_bytes: args.max_request_bytes,
            },
            cookie: CookiePolicy {
                secure: !args.insecure_cookies,
                max_age_secs: args.session_ttl_secs,
            },
            sign_in_attempts: SignInLimits {
                per_name: args
                    .sign_in_limits
                    .unwrap_or(DEFAULT_SIGN_IN_ATTEMPTS.per_name),
                per_address: args
                    .sign_in_address_limits
                    .unwrap_or(DEFAULT_SIGN_IN_ATTEMPTS.per_address),
            },
            orders_per_user: args
                .order_limits
                .unwrap_or(tailor_screens::order::DEFAULT_ORDER_RATE),
        };
        Ok::<_, String>(
            tailor_web_bff::build_server(downstreams, tokens, open_accounts().await?, options)
                .with_readiness(readiness.watch()),
        )
    };
    tailor_runtime::serve_main(
        "tailor-web-bff",
        args.listen,
        &args.server,
        tailor_runtime::Role::Bff,
        build,
    )
    .await
}
