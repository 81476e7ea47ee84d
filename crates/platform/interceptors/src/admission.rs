//! Fair admission at a downstream service: each calling client type (the
//! BFF a mutual-TLS certificate names: `web`, `mobile`, `partner`) has a
//! [`Share`] of its own, so a flood from one BFF cannot take the others'
//! place.
//!
//! A share is a number of calls handled at once and a bounded queue of
//! calls waiting for one of those places. A call that finds both full is
//! refused at once with RESOURCE_EXHAUSTED and a `google.rpc.RetryInfo`
//! detail, and costs the service nothing more: the flooding client type
//! gets fast refusals while the others' calls keep their own places and
//! never queue behind it. A waiting call leaves the queue when its deadline
//! passes (the deadline layer above answers it) or its client goes away.
//!
//! A place is held until the handler has answered (the response head):
//! a server stream's messages afterwards do not hold it, so long watches
//! cannot starve short reads.
//!
//! The layer stands just below the callers layer, which has said which
//! BFF calls ([`CallingClient`]); a call without one (no callers layer)
//! and health and reflection pass untouched. Refusals are noted in the
//! call's [`CallNotes`] so the access log counts them by client type
//! (`tailor.overload.refusals`, reason `admission`) and summarises them
//! instead of writing a line each.

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::access_log::CallNotes;
use crate::context::{CallingClient, client_type};
use crate::{BoxFuture, HttpRequest, HttpResponse, is_probe, status_response};

/// How long a refused client is told to wait before trying again: a busy
/// service frees places within milliseconds, so a short pause is enough.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The reason admission refusals are counted and summarised under.
pub const REASON: &str = "admission";

/// One client type's part of a service: calls handled at once, and calls
/// that may wait for a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Calls handled at once.
    pub in_flight: usize,
    /// Calls waiting for a place; beyond, calls are refused.
    pub queue: usize,
}

impl Share {
    /// The default share of every client type, sized for a small machine:
    /// eight calls keep two cores busy with SQLite reads, and 256 waiting
    /// (tens of milliseconds of work) take a BFF's own bursts, 128 pages
    /// at once calling twice each, without refusing them. A flood beyond
    /// is refused, and waiting costs the service no CPU: what bounds the
    /// flooding client type's use of it is its eight places.
    pub const DEFAULT: Share = Share {
        in_flight: 8,
        queue: 256,
    };
}

impl Default for Share {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The client types a share may be given to; calls from any other BFF
/// certificate share the `unknown` one.
const CLIENT_TYPES: [&str; 4] = ["web", "mobile", "partner", "unknown"];

/// Every client type's share, written on the command line as
/// `web=16:64,mobile=8:32` (calls at once `:` queue); a client type left
/// out keeps [`Share::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shares([Share; 4]);

impl Shares {
    /// The share of `client` (`web`, `mobile`, `partner`, anything else
    /// `unknown`).
    pub fn of(&self, client: &str) -> Share {
        self.0[index_of(client)]
    }

    /// These shares with `client`'s set to `share`.
    pub fn with(mut self, client: &str, share: Share) -> Self {
        self.0[index_of(client)] = share;
        self
    }
}

fn index_of(client: &str) -> usize {
    CLIENT_TYPES
        .iter()
        .position(|c| *c == client)
        .unwrap_or(CLIENT_TYPES.len() - 1)
}

/// Why a `--admission` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0}: expected <client type>=<calls at once>:<queue>, comma-separated, client types web, mobile, partner, unknown (e.g. web=16:64,mobile=8:32)"
)]
pub struct SharesError(String);

impl FromStr for Shares {
    type Err = SharesError;

    fn from_str(text: &str) -> Result<Self, SharesError> {
        let mut shares = Shares::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let invalid = || SharesError(format!("invalid share {part:?}"));
            let (client, share) = part.split_once('=').ok_or_else(invalid)?;
            let client = client.trim();
            if !CLIENT_TYPES.contains(&client) {
                return Err(SharesError(format!("unknown client type {client:?}")));
            }
            let (in_flight, queue) = share.split_once(':').ok_or_else(invalid)?;
            let in_flight: usize = in_flight.trim().parse().map_err(|_| invalid())?;
            let queue: usize = queue.trim().parse().map_err(|_| invalid())?;
            if in_flight == 0 {
                return Err(SharesError(format!(
                    "{part:?}: a client type needs at least one call at once"
                )));
            }
            shares = shares.with(client, Share { in_flight, queue });
        }
        Ok(shares)
    }
}

/// One client type's places and queue.
#[derive(Debug)]
struct Pool {
    places: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// Leaves the queue however the wait ends (admitted, deadline, client
/// gone).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Adds [`AdmissionService`] to a stack; every clone shares the same
/// places, so build one per server.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    server: &'static str,
    pools: Arc<[Pool; 4]>,
}

impl AdmissionLayer {
    /// Admission to the service `server` (named in refusals) with `shares`.
    pub fn new(server: &'static str, shares: Shares) -> Self {
        let pools = CLIENT_TYPES.map(|client| {
            let share = shares.of(client);
            Pool {
                places: Arc::new(Semaphore::new(share.in_flight)),
                waiting: AtomicUsize::new(0),
                queue: share.queue,
            }
        });
        Self {
            server,
            pools: Arc::new(pools),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct AdmissionService<S> {
    inner: S,
    layer: AdmissionLayer,
}

/// The status a refused call gets.
fn refusal(server: &str, client: &str) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("{server} is busy with {client} calls; retry shortly"),
        ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
    )
}

impl<S> Service<HttpRequest> for AdmissionService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let client = match request.extensions().get::<CallingClient>() {
            Some(CallingClient(name)) if !is_probe(request.uri().path()) => client_type(name),
            _ => return Box::pin(self.inner.call(request)),
        };
        let layer = self.layer.clone();
        let pool_index = index_of(client);
        let pool = &layer.pools[pool_index];
        if let Ok(place) = pool.places.clone().try_acquire_owned() {
            let call = self.inner.call(request);
            return Box::pin(async move {
                let response = call.await;
                drop(place);
                response
            });
        }
        // Take a place in the queue, or be refused; the check and the
        // increment are one step, so the queue never grows past its bound.
        let queued = pool
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < pool.queue).then_some(waiting + 1)
            })
            .is_ok();
        if !queued {
            if let Some(notes) = request.extensions().get::<CallNotes>() {
                notes.record_overload(REASON);
            }
            let response = status_response(refusal(layer.server, client));
            return Box::pin(async move { Ok(response) });
        }
        // The inner service was made ready for this call; a clone of it is
        // called once a place is free.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let pool = &layer.pools[pool_index];
            let place = {
                let _waiting = Waiting(&pool.waiting);
                pool.places
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            };
            let response = inner.call(request).await;
            drop(place);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;
    use tower::ServiceExt;

    use super::*;
    use crate::testing::slow;

    #[test]
    fn shares_parse_from_the_flag_and_default_the_rest() {
        let shares: Shares = "web=16:64, mobile=1:0".parse().unwrap();
        assert_eq!(
            shares.of("web"),
            Share {
                in_flight: 16,
                queue: 64
            }
        );
        assert_eq!(
            shares.of("mobile"),
            Share {
                in_flight: 1,
                queue: 0
            }
        );
        assert_eq!(shares.of("partner"), Share::DEFAULT);
        assert_eq!(shares.of("ops"), Share::DEFAULT);
        assert_eq!("".parse::<Shares>().unwrap(), Shares::default());
        for bad in ["web", "web=1", "web=a:1", "tv=1:1", "web=0:4", "web=1:-1"] {
            assert!(bad.parse::<Shares>().is_err(), "{bad} was accepted");
        }
    }

    fn call_from(bff: &str, path: &str) -> HttpRequest {
        let mut request = http::Request::builder()
            .uri(path)
            .body(tonic::body::Body::empty())
            .unwrap();
        request.extensions_mut().insert(CallNotes::default());
        request
            .extensions_mut()
            .insert(CallingClient(bff.to_owned()));
        request
    }

    fn status(response: &HttpResponse) -> Status {
        Status::from_header_map(response.headers()).expect("a trailers-only status")
    }

    /// Notifies `release` until every call has ended.
    async fn finish_all(
        release: &tokio::sync::Notify,
        calls: Vec<tokio::task::JoinHandle<Result<HttpResponse, Infallible>>>,
    ) -> Vec<Code> {
        let mut codes = Vec::new();
        for call in calls {
            while !call.is_finished() {
                release.notify_waiters();
                tokio::task::yield_now().await;
            }
            codes.push(status(&call.await.unwrap().unwrap()).code());
        }
        codes
    }

    #[tokio::test]
    async fn one_client_types_flood_is_refused_beyond_its_share_while_others_are_admitted() {
        let release = Arc::new(tokio::sync::Notify::new());
        let shares: Shares = "mobile=2:3".parse().unwrap();
        let layer = AdmissionLayer::new("catalog", shares);
        let service = layer.layer(slow(release.clone()));
        let path = "/tailor.catalog.v1.CatalogService/GetProduct";
        // Two in flight and three waiting fill mobile's share ...
        let mut mobile = Vec::new();
        for _ in 0..5 {
            mobile.push(tokio::spawn(
                service.clone().oneshot(call_from("mobile-bff", path)),
            ));
            tokio::task::yield_now().await;
        }
        while layer.pools[index_of("mobile")]
            .waiting
            .load(Ordering::Acquire)
            < 3
        {
            tokio::task::yield_now().await;
        }
        // ... so the sixth is refused at once, with RetryInfo, and noted.
        let refused_call = call_from("mobile-bff", path);
        let notes = refused_call
            .extensions()
            .get::<CallNotes>()
            .unwrap()
            .clone();
        let refused = status(&service.clone().oneshot(refused_call).await.unwrap());
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused.get_details_retry_info().unwrap().retry_delay,
            Some(RETRY_AFTER)
        );
        assert_eq!(notes.overload(), Some(REASON));
        // Web's share is its own: its calls are admitted meanwhile, and so
        // are mobile's health checks.
        let web: Vec<_> = (0..4)
            .map(|_| tokio::spawn(service.clone().oneshot(call_from("web-bff", path))))
            .collect();
        let health = tokio::spawn(
            service
                .clone()
                .oneshot(call_from("mobile-bff", "/grpc.health.v1.Health/Check")),
        );
        assert_eq!(finish_all(&release, web).await, [Code::Ok; 4]);
        assert_eq!(finish_all(&release, vec![health]).await, [Code::Ok]);
        // The queued mobile calls are served in the end.
        assert_eq!(finish_all(&release, mobile).await, [Code::Ok; 5]);
        assert_eq!(
            layer.pools[index_of("mobile")]
                .waiting
                .load(Ordering::Acquire),
            0
        );
        assert_eq!(
            layer.pools[index_of("mobile")].places.available_permits(),
            2
        );
    }

    #[tokio::test]
    async fn a_call_that_gives_up_waiting_leaves_the_queue() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = AdmissionLayer::new("catalog", "web=1:1".parse().unwrap());
        let service = layer.layer(slow(release.clone()));
        let path = "/a.B/C";
        let first = tokio::spawn(service.clone().oneshot(call_from("web-bff", path)));
        while layer.pools[0].places.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let waiting = tokio::spawn(service.clone().oneshot(call_from("web-bff", path)));
        while layer.pools[0].waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(layer.pools[0].waiting.load(Ordering::Acquire), 0);
        // The place in the queue is free again.
        let next = tokio::spawn(service.clone().oneshot(call_from("web-bff", path)));
        while layer.pools[0].waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(finish_all(&release, vec![first, next]).await, [Code::Ok; 2]);
    }
}
