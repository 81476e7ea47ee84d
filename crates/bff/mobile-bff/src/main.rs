use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tailor_auth::JwtArgs;
use tailor_channel::DownstreamArgs;
use tailor_runtime::cli::ServerArgs;
use tailor_screens::Downstreams;

/// The downstream services this BFF cannot work without
/// (a screen without its product is no screen):
/// while one is unreachable, its health says NOT_SERVING.
const REQUIRED_DOWNSTREAMS: &[&str] = &["catalog"];

/// The mobile BFF: the shop API for phone apps.
#[derive(Debug, Parser)]
#[command(name = "tailor-mobile-bff", version)]
struct Args {
    /// Address to listen on (gRPC over HTTP/2 and HTTP/1.1).
    #[arg(long, env = "TAILOR_MOBILE_LISTEN", default_value = "127.0.0.1:8082")]
    listen: SocketAddr,

    /// The `aud` claim bearer tokens must carry.
    #[arg(long, env = "TAILOR_MOBILE_JWT_AUDIENCE", default_value = tailor_mobile_bff::DEFAULT_AUDIENCE)]
    jwt_audience: String,

    /// Orders each user may place, as `<per second>:<burst>:<per day>`
    /// (default 0.1:10:500: 10 at once, then one every 10 s, 500 a day).
    #[arg(long, env = "TAILOR_MOBILE_ORDER_LIMITS")]
    order_limits: Option<tailor_interceptors::limits::Plan>,

    #[command(flatten)]
    jwt: JwtArgs,

    #[command(flatten)]
    downstreams: DownstreamArgs,

    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let build = async {
        let tokens = args.jwt.authenticator(&args.jwt_audience)?;
        let (downstreams, readiness) = Downstreams::connect_with(
            &args.downstreams,
            args.server.mesh_credentials(tailor_mobile_bff::NAME)?,
            REQUIRED_DOWNSTREAMS,
        )?;
        let orders = args
            .order_limits
            .unwrap_or(tailor_screens::order::DEFAULT_ORDER_RATE);
        Ok::<_, String>(
            tailor_mobile_bff::build_server(downstreams, tokens, orders)
                .with_readiness(readiness.watch()),
        )
    };
    tailor_runtime::serve_main(
        "tailor-mobile-bff",
        args.listen,
        &args.server,
        tailor_runtime::Role::Bff,
        build,
    )
    .await
}
