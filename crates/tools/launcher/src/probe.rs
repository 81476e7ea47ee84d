//! `tailor probe`: one `grpc.health.v1.Health/Check` against a server's
//! plaintext admin port, for container health checks that cannot speak
//! gRPC themselves (Docker's `HEALTHCHECK` runs a command). Kubernetes asks
//! the same port with its native gRPC probes and needs no command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Flags of `tailor probe`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The server's admin address (its `--admin-listen`). An unspecified
    /// host (`0.0.0.0`, `[::]`), as a container listens on, is asked on
    /// loopback.
    #[arg(env = "TAILOR_ADMIN_LISTEN")]
    address: SocketAddr,

    /// The service to ask about (`tailor.web.v1.ShopService`); the empty
    /// default is the whole server. A BFF's health follows the downstream
    /// services it cannot work without.
    #[arg(default_value = "")]
    service: String,

    /// Milliseconds to wait for the answer, connecting included.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

impl ProbeArgs {
    /// Asks once; `Ok` only when the answer is SERVING, otherwise why not.
    pub async fn run(&self) -> Result<(), String> {
        check(
            self.address,
            &self.service,
            Duration::from_millis(self.timeout_ms),
        )
        .await
    }
}

/// Where to ask a server that listens on `address`: the loopback address
/// of the same family when `address` is unspecified.
fn reachable(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

/// `error` and what caused it: tonic's transport error alone says only
/// "transport error".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// One health check of `service` (`""`: the server) on the plaintext
/// admin port at `address`, within `timeout`: `Ok` only for SERVING.
pub async fn check(address: SocketAddr, service: &str, timeout: Duration) -> Result<(), String> {
    let address = reachable(address);
    let what = if service.is_empty() {
        "the server".to_owned()
    } else {
        format!("{service:?}")
    };
    let ask = async {
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {address}: {}", with_causes(&e)))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => format!("{address} does not know {what}"),
                code => format!("{address} answered {code:?}: {}", status.message()),
            })?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            status => Err(format!(
                "{address} reports {} for {what}",
                status.as_str_name()
            )),
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer from {address} within {} ms", timeout.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_host_is_asked_on_loopback_of_its_family() {
        let v4: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(reachable(v4), "127.0.0.1:9000".parse().unwrap());
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(reachable(v6), "[::1]:9000".parse().unwrap());
        let given: SocketAddr = "192.0.2.7:9000".parse().unwrap();
        assert_eq!(reachable(given), given);
    }
}
