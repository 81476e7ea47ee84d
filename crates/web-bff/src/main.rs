use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tailor_runtime::cli::{JwtArgs, ServerArgs};
use tailor_screens::{DownstreamArgs, Downstreams};

/// The web BFF: the shop API for browsers.
#[derive(Debug, Parser)]
#[command(name = "tailor-web-bff", version)]
struct Args {
    /// Address to listen on (gRPC over HTTP/2 and HTTP/1.1).
    #[arg(long, env = "TAILOR_WEB_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,

    /// The `aud` claim bearer tokens must carry.
    #[arg(long, env = "TAILOR_WEB_JWT_AUDIENCE", default_value = tailor_web_bff::DEFAULT_AUDIENCE)]
    jwt_audience: String,

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
        let downstreams = Downstreams::connect(&args.downstreams, tailor_web_bff::NAME)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(tailor_web_bff::build_server(downstreams, tokens))
    };
    tailor_runtime::serve_main("tailor-web-bff", args.listen, &args.server, build).await
}
