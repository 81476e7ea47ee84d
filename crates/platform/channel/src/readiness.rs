//! Whether a BFF can do its job: the downstream services it cannot work
//! without (catalog for the web and mobile BFFs, catalog and inventory for
//! the partner BFF) are reachable. A load balancer reading the BFF's health
//! should send its clients elsewhere while they are not, instead of
//! letting every call fail.
//!
//! Each required service is judged every probe interval (1 s) by its
//! circuit ([`Circuit::state`]: open counts as down) and by an active
//! probe: a `grpc.health.v1.Health/Check` of the service's overall status
//! over the same mutual-TLS connection the calls use, with the BFF's
//! certificate (downstream services admit health checks from any BFF
//! certificate, without an identity token). A service down for the grace
//! time (3 s, so one lost probe or a short restart does not flap the BFF's
//! health) makes the BFF not ready; the first good probe makes it ready
//! again. The verdict is a `watch` channel that `tailor-runtime` turns into
//! the BFF's own health (SERVING / NOT_SERVING).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tailor_interceptors::{HttpRequest, HttpResponse};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::breaker::{Circuit, CircuitState};

/// How readiness is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessPolicy {
    /// How long a required service may be down before the BFF is not
    /// ready.
    pub grace: Duration,
    /// How often each required service is probed; also the longest a
    /// probe may take.
    pub probe_every: Duration,
}

impl Default for ReadinessPolicy {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3),
            probe_every: Duration::from_secs(1),
        }
    }
}

/// A required service, as readiness sees it: its circuit and a transport
/// for health checks that goes around the circuit and the bulkhead (a
/// probe must reach the service even while calls are refused).
pub struct Required<T> {
    /// The service's circuit.
    pub circuit: Arc<Circuit>,
    /// Health checks go here.
    pub probe: T,
}

/// Whether the BFF's required downstream services are reachable; cloning
/// shares the verdict. The probes stop when every clone and every
/// [`Readiness::watch`] receiver is gone.
#[derive(Debug, Clone)]
pub struct Readiness {
    receiver: watch::Receiver<bool>,
    /// For a verdict nobody probes: keeps it open while held.
    _fixed: Option<Arc<watch::Sender<bool>>>,
}

impl Readiness {
    /// A verdict that is always ready (a BFF that requires nothing).
    pub fn always() -> Self {
        let (sender, receiver) = watch::channel(true);
        Self {
            receiver,
            _fixed: Some(Arc::new(sender)),
        }
    }

    /// Probes `required` as `policy` says, from now on (on the current
    /// Tokio runtime).
    pub fn monitor<T>(required: Vec<Required<T>>, policy: ReadinessPolicy) -> Self
    where
        T: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + Clone
            + Send
            + 'static,
        T::Future: Send,
    {
        let (sender, receiver) = watch::channel(true);
        tokio::spawn(probe_loop(required, policy, sender));
        Self {
            receiver,
            _fixed: None,
        }
    }

    /// Whether every required service is reachable now.
    pub fn is_ready(&self) -> bool {
        *self.receiver.borrow()
    }

    /// The verdict as it changes.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }
}

async fn probe_loop<T>(
    required: Vec<Required<T>>,
    policy: ReadinessPolicy,
    sender: watch::Sender<bool>,
) where
    T: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    T::Future: Send,
{
    let mut down_since: Vec<Option<Instant>> = vec![None; required.len()];
    // The first probe after one interval: the BFF is still starting.
    let mut ticks =
        tokio::time::interval_at(Instant::now() + policy.probe_every, policy.probe_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = sender.closed() => return,
        }
        let checks = required.iter().map(|service| {
            let probe = service.probe.clone();
            let open = service.circuit.state() == CircuitState::Open;
            let limit = policy.probe_every;
            async move { !open && serving(probe, limit).await }
        });
        let healthy = futures_util::future::join_all(checks).await;
        let now = Instant::now();
        let mut ready = true;
        for ((service, healthy), since) in required.iter().zip(healthy).zip(&mut down_since) {
            if healthy {
                if since.take().is_some() {
                    tracing::info!(
                        service = service.circuit.service(),
                        "required downstream reachable again"
                    );
                }
                continue;
            }
            let since = *since.get_or_insert_with(|| {
                tracing::warn!(
                    service = service.circuit.service(),
                    "required downstream unreachable"
                );
                now
            });
            if now.duration_since(since) >= policy.grace {
                ready = false;
            }
        }
        sender.send_if_modified(|current| {
            let changed = *current != ready;
            if changed {
                tracing::warn!(ready, "readiness changed");
            }
            *current = ready;
            changed
        });
    }
}

/// Whether the service behind `probe` says it serves, within `limit`.
async fn serving<T>(probe: T, limit: Duration) -> bool
where
    T: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Send + 'static,
    T::Future: Send,
{
    let mut client = HealthClient::new(probe);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(
        tokio::time::timeout(limit, check).await,
        Ok(Ok(answer)) if answer.get_ref().status() == ServingStatus::Serving
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BreakerPolicy;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tonic::Status;

    /// A fake downstream health service, up while `up` holds.
    fn health(
        up: Arc<AtomicBool>,
    ) -> impl tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        let (reporter, service) = tonic_health::server::health_reporter();
        tower::service_fn(move |request: HttpRequest| {
            let up = up.load(Ordering::SeqCst);
            let reporter = reporter.clone();
            let mut service = service.clone();
            async move {
                if !up {
                    return Ok(tailor_interceptors::status_response(Status::unavailable(
                        "connection refused",
                    )));
                }
                reporter
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                tower::Service::call(&mut service, request).await
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_required_service_down_for_the_grace_time_makes_the_bff_not_ready_until_it_is_back() {
        let up = Arc::new(AtomicBool::new(true));
        let circuit = Circuit::new("catalog", BreakerPolicy::default());
        let policy = ReadinessPolicy {
            grace: Duration::from_secs(3),
            probe_every: Duration::from_secs(1),
        };
        let readiness = Readiness::monitor(
            vec![Required {
                circuit,
                probe: health(up.clone()),
            }],
            policy,
        );
        let mut watch = readiness.watch();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(readiness.is_ready());

        up.store(false, Ordering::SeqCst);
        let down = Instant::now();
        watch.changed().await.unwrap();
        assert!(!*watch.borrow_and_update());
        let took = down.elapsed();
        assert!(
            took >= policy.grace && took <= policy.grace + 2 * policy.probe_every,
            "not ready after {took:?}"
        );

        up.store(true, Ordering::SeqCst);
        let back = Instant::now();
        watch.changed().await.unwrap();
        assert!(*watch.borrow_and_update());
        assert!(back.elapsed() <= 2 * policy.probe_every);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_counts_as_down_even_when_probes_answer() {
        let circuit = Circuit::new(
            "inventory",
            BreakerPolicy {
                consecutive_failures: 1,
                open_for: Duration::from_secs(3600),
                ..BreakerPolicy::default()
            },
        );
        let readiness = Readiness::monitor(
            vec![Required {
                circuit: circuit.clone(),
                probe: health(Arc::new(AtomicBool::new(true))),
            }],
            ReadinessPolicy {
                grace: Duration::from_secs(2),
                probe_every: Duration::from_secs(1),
            },
        );
        circuit.record_for_test(crate::breaker::Verdict::Failure);
        assert_eq!(circuit.state(), CircuitState::Open);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!readiness.is_ready());
    }
}
