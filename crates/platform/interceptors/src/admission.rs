//! Fair admission at a downstream service: each calling client type (the
//! BFF a mutual-TLS certificate names: `web`, `mobile`, `partner`) has a
//! [`Share`] of its own, so a flood from one BFF cannot take the others'
//! place.
//!
//! A service runs a bounded number of calls at once, its *slots*: by
//! default two for each CPU it may run on, since its handlers are
//! CPU-bound reads and more calls at once only slow each other down. A
//! call that finds no free slot waits in its client type's queue; when a
//! slot frees, the next call comes from the client type with the fewest
//! calls running, and among equals from the one served longest ago. So a
//! flood from one BFF uses every slot the others leave idle, yet a call
//! from another BFF waits at most for one running call to end, never
//! behind the flood's queue. A share may also cap a client type's running
//! calls. A server that runs each client type on threads of its own
//! (lanes) gives each client type the slots for itself
//! ([`AdmissionLayer::with_slots_per_client_type`]): its calls then wait
//! only for its own.
//!
//! A call that finds its client type's queue full is refused at once with
//! RESOURCE_EXHAUSTED and a `google.rpc.RetryInfo` detail, and costs the
//! service nothing more: the flooding client type gets fast refusals. A
//! waiting call leaves the queue when its deadline passes (the deadline
//! layer above answers it) or its client goes away.
//!
//! A slot is held until the handler has answered (the response head):
//! a server stream's messages afterwards do not hold it, so long watches
//! cannot starve short reads.
//!
//! The layer stands just below the callers layer, which has said which
//! BFF calls ([`CallingClient`]); a call without one (no callers layer)
//! and health and reflection pass untouched. Refusals are noted in the
//! call's [`CallNotes`] so the access log counts them by client type
//! (`tailor.overload.refusals`, reason `admission`) and summarises them
//! instead of writing a line each.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::access_log::CallNotes;
use crate::context::{CLIENT_TYPES, CallingClient, client_type};
use crate::{BoxFuture, HttpRequest, HttpResponse, is_probe, status_response};

/// How long a refused client is told to wait before trying again: a busy
/// service frees places within milliseconds, so a short pause is enough.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The reason admission refusals are counted and summarised under.
pub const REASON: &str = "admission";

/// One client type's part of a service: how many of the slots its calls
/// may hold at once, and how many of its calls may wait for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Calls running at once, at most; `usize::MAX`: as many as there are
    /// slots.
    pub in_flight: usize,
    /// Calls waiting for a slot; beyond, calls are refused.
    pub queue: usize,
}

impl Share {
    /// The default share of every client type: any slot the others leave
    /// idle, and 256 calls waiting (tens of milliseconds of work), enough
    /// for a BFF's own bursts, 128 pages at once calling twice each. A
    /// flood beyond is refused, and waiting costs the service no CPU.
    pub const DEFAULT: Share = Share {
        in_flight: usize::MAX,
        queue: 256,
    };
}

impl Default for Share {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The service's slots and every client type's share, written on the
/// command line as `slots=4,web=16:64,mobile=2:32` (calls at once `:`
/// queue); a client type left out keeps [`Share::DEFAULT`], slots left out
/// are two per CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shares {
    shares: [Share; 4],
    slots: Option<usize>,
}

impl Shares {
    /// The share of `client` (`web`, `mobile`, `partner`, anything else
    /// `unknown`).
    pub fn of(&self, client: &str) -> Share {
        self.shares[index_of(client)]
    }

    /// These shares with `client`'s set to `share`.
    pub fn with(mut self, client: &str, share: Share) -> Self {
        self.shares[index_of(client)] = share;
        self
    }

    /// These shares with `slots` calls running at once.
    pub fn with_slots(mut self, slots: usize) -> Self {
        self.slots = Some(slots.max(1));
        self
    }

    /// Calls the service runs at once: as set, or two for each CPU this
    /// process may run on.
    pub fn slots(&self) -> usize {
        self.slots.unwrap_or_else(|| {
            2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
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
    "{0}: expected slots=<calls at once> and <client type>=<calls at once>:<queue>, comma-separated, client types web, mobile, partner, unknown (e.g. slots=4,web=16:64,mobile=2:32)"
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
            if client == "slots" {
                let slots: usize = share.trim().parse().map_err(|_| invalid())?;
                if slots == 0 {
                    return Err(SharesError(format!(
                        "{part:?}: a service needs at least one slot"
                    )));
                }
                shares = shares.with_slots(slots);
                continue;
            }
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

/// A call waiting for a slot: how to hand it the slot.
#[derive(Debug)]
struct Waiter {
    wake: oneshot::Sender<()>,
}

/// Who runs and who waits, behind one lock: every decision is a few
/// comparisons over four client types.
#[derive(Debug)]
struct Slots {
    slots: usize,
    /// Whether each client type has `slots` of its own (the server runs
    /// each client type on threads of its own) instead of sharing them.
    own_slots: bool,
    shares: [Share; 4],
    running: [usize; 4],
    queues: [VecDeque<Waiter>; 4],
    turns: u64,
    /// When each client type was last handed a slot (in turns).
    served: [u64; 4],
}

impl Slots {
    fn new(shares: Shares, own_slots: bool) -> Self {
        Self {
            slots: shares.slots(),
            own_slots,
            shares: shares.shares,
            running: [0; 4],
            queues: Default::default(),
            turns: 0,
            served: [0; 4],
        }
    }

    fn total(&self) -> usize {
        self.running.iter().sum()
    }

    /// Whether a slot is free for `client`, within its share.
    fn may_run(&self, client: usize) -> bool {
        let busy = if self.own_slots {
            self.running[client]
        } else {
            self.total()
        };
        busy < self.slots && self.running[client] < self.shares[client].in_flight
    }

    /// Counts a call of `client` as running.
    fn start(&mut self, client: usize) {
        self.running[client] += 1;
        self.turns += 1;
        self.served[client] = self.turns;
    }

    /// Hands free slots to waiting calls: the client type with the fewest
    /// running first, among equals the one served longest ago, so a
    /// flood's long queue takes turns with another client type's single
    /// call instead of going ahead of it.
    fn dispatch(&mut self) {
        loop {
            let next = (0..CLIENT_TYPES.len())
                .filter(|&c| self.may_run(c))
                .filter(|&c| !self.queues[c].is_empty())
                .min_by_key(|&c| (self.running[c], self.served[c]));
            let Some(client) = next else {
                return;
            };
            let waiter = self.queues[client].pop_front().expect("a waiter was seen");
            // A caller that gave up is skipped; its slot goes to the next.
            if waiter.wake.send(()).is_ok() {
                self.start(client);
            }
        }
    }
}

/// Gives the slot back when the call ends (or a granted wait is dropped).
struct Running {
    slots: Arc<Mutex<Slots>>,
    client: usize,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().expect("admission lock");
        slots.running[self.client] -= 1;
        slots.dispatch();
    }
}

/// A call in a queue; if it is dropped after its slot was handed over
/// but before it ran, the slot goes back.
struct Queued {
    slots: Arc<Mutex<Slots>>,
    client: usize,
    woken: Option<oneshot::Receiver<()>>,
}

impl Queued {
    async fn until_running(mut self) -> Running {
        let woken = self.woken.as_mut().expect("waited once");
        // The sender lives in the queue until it wakes this call: only
        // a live receiver's sender leaves it without sending.
        woken
            .await
            .expect("a waiting call is woken, never forgotten");
        self.woken = None;
        Running {
            slots: self.slots.clone(),
            client: self.client,
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(mut woken) = self.woken.take() {
            woken.close();
            if woken.try_recv().is_ok() {
                drop(Running {
                    slots: self.slots.clone(),
                    client: self.client,
                });
            }
        }
    }
}

/// Adds [`AdmissionService`] to a stack; every clone shares the same
/// slots, so build one per server.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    server: &'static str,
    /// Who runs and who waits: one table for every client type, or, when
    /// each has slots of its own, one table each, so that one client
    /// type's calls never wait for a lock another's hold (a thread of a
    /// flooded lane descheduled while holding it would hold up every
    /// other lane's calls).
    tables: Arc<[Arc<Mutex<Slots>>]>,
}

impl AdmissionLayer {
    /// Admission to the service `server` (named in refusals) with `shares`.
    pub fn new(server: &'static str, shares: Shares) -> Self {
        Self {
            server,
            tables: Arc::new([Arc::new(Mutex::new(Slots::new(shares, false)))]),
        }
    }

    /// Gives each client type `slots` of its own, for a server that runs
    /// each client type's calls on threads of their own: a call then never
    /// waits for another client type's call to end, only for its own.
    pub fn with_slots_per_client_type(self) -> Self {
        let shares = {
            let table = self.tables[0].lock().expect("admission lock");
            Shares {
                shares: table.shares,
                slots: Some(table.slots),
            }
        };
        Self {
            server: self.server,
            tables: CLIENT_TYPES
                .iter()
                .map(|_| Arc::new(Mutex::new(Slots::new(shares, true))))
                .collect(),
        }
    }

    /// The table `client`'s calls are counted in.
    fn table(&self, client: usize) -> &Arc<Mutex<Slots>> {
        &self.tables[client.min(self.tables.len() - 1)]
    }

    /// Calls of `client` type running now.
    pub fn running(&self, client: &str) -> usize {
        let client = index_of(client);
        self.table(client).lock().expect("admission lock").running[client]
    }

    /// Calls of `client` type waiting now (callers that gave up included
    /// until a slot passes them by).
    pub fn waiting(&self, client: &str) -> usize {
        let client = index_of(client);
        let slots = self.table(client).lock().expect("admission lock");
        slots.queues[client]
            .iter()
            .filter(|w| !w.wake.is_closed())
            .count()
    }

    /// A slot at once, a place in the queue, or `None`: refused.
    fn enter(&self, client: usize) -> Option<Result<Running, Queued>> {
        let table = self.table(client);
        let mut slots = table.lock().expect("admission lock");
        if slots.may_run(client) {
            slots.start(client);
            return Some(Ok(Running {
                slots: table.clone(),
                client,
            }));
        }
        let bound = slots.shares[client].queue;
        let queue = &mut slots.queues[client];
        if queue.len() >= bound {
            // Callers that gave up still hold their place until passed by.
            queue.retain(|w| !w.wake.is_closed());
            if queue.len() >= bound {
                return None;
            }
        }
        let (wake, woken) = oneshot::channel();
        slots.queues[client].push_back(Waiter { wake });
        Some(Err(Queued {
            slots: table.clone(),
            client,
            woken: Some(woken),
        }))
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
        match self.layer.enter(index_of(client)) {
            Some(Ok(running)) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(running);
                    response
                })
            }
            Some(Err(queued)) => {
                // The inner service was made ready for this call; a clone
                // of it is called once a slot is free.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    let running = queued.until_running().await;
                    let response = inner.call(request).await;
                    drop(running);
                    response
                })
            }
            None => {
                if let Some(notes) = request.extensions().get::<CallNotes>() {
                    notes.record_overload(REASON);
                }
                let response = status_response(refusal(self.layer.server, client));
                Box::pin(async move { Ok(response) })
            }
        }
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
        let shares: Shares = "web=16:64, mobile=1:0, slots=3".parse().unwrap();
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
        assert_eq!(shares.slots(), 3);
        assert_eq!(shares.of("partner"), Share::DEFAULT);
        assert_eq!(shares.of("ops"), Share::DEFAULT);
        let defaults = "".parse::<Shares>().unwrap();
        assert_eq!(defaults, Shares::default());
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(defaults.slots(), 2 * cpus);
        for bad in [
            "web", "web=1", "web=a:1", "tv=1:1", "web=0:4", "web=1:-1", "slots=0", "slots=a",
        ] {
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

    async fn until(condition: impl Fn() -> bool) {
        while !condition() {
            tokio::task::yield_now().await;
        }
    }

    const PATH: &str = "/tailor.catalog.v1.CatalogService/GetProduct";

    #[tokio::test]
    async fn with_slots_of_its_own_a_client_type_never_waits_for_anothers_calls() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer =
            AdmissionLayer::new("catalog", "slots=2".parse().unwrap()).with_slots_per_client_type();
        let service = layer.layer(slow(release.clone()));
        // Mobile fills its two slots and queues a third call ...
        let mut calls = Vec::new();
        for _ in 0..3 {
            calls.push(tokio::spawn(
                service.clone().oneshot(call_from("mobile-bff", PATH)),
            ));
        }
        until(|| layer.running("mobile") == 2 && layer.waiting("mobile") == 1).await;
        // ... and two web calls run at once beside them, none waiting.
        for _ in 0..2 {
            calls.push(tokio::spawn(
                service.clone().oneshot(call_from("web-bff", PATH)),
            ));
        }
        until(|| layer.running("web") == 2).await;
        assert_eq!(layer.waiting("web"), 0);
        // A third web call waits for a web slot, not a mobile one.
        calls.push(tokio::spawn(
            service.clone().oneshot(call_from("web-bff", PATH)),
        ));
        until(|| layer.waiting("web") == 1).await;
        assert_eq!(layer.running("mobile"), 2);
        let codes = finish_all(&release, calls).await;
        assert!(codes.iter().all(|c| *c == Code::Ok), "{codes:?}");
    }

    #[tokio::test]
    async fn a_flood_beyond_its_queue_is_refused_and_a_freed_slot_goes_to_another_client_type_first()
     {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = AdmissionLayer::new("catalog", "slots=2,mobile=8:3".parse().unwrap());
        let service = layer.layer(slow(release.clone()));
        // Mobile takes both idle slots, and three of its calls wait ...
        let mut mobile = Vec::new();
        for _ in 0..5 {
            mobile.push(tokio::spawn(
                service.clone().oneshot(call_from("mobile-bff", PATH)),
            ));
            tokio::task::yield_now().await;
        }
        until(|| layer.running("mobile") == 2 && layer.waiting("mobile") == 3).await;
        // ... so the sixth is refused at once, with RetryInfo, and noted.
        let refused_call = call_from("mobile-bff", PATH);
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
        // A web call arrives last, and mobile's health check passes by.
        let web = tokio::spawn(service.clone().oneshot(call_from("web-bff", PATH)));
        until(|| layer.waiting("web") == 1).await;
        let health = tokio::spawn(
            service
                .clone()
                .oneshot(call_from("mobile-bff", "/grpc.health.v1.Health/Check")),
        );
        // One mobile call ends: its slot goes to web, which has none
        // running, ahead of mobile's three earlier calls.
        release.notify_one();
        until(|| layer.running("web") == 1).await;
        assert_eq!(layer.running("mobile"), 1);
        assert_eq!(layer.waiting("mobile"), 3);
        assert_eq!(finish_all(&release, vec![web]).await, [Code::Ok]);
        assert_eq!(finish_all(&release, vec![health]).await, [Code::Ok]);
        // The queued mobile calls are served in the end.
        assert_eq!(finish_all(&release, mobile).await, [Code::Ok; 5]);
        assert_eq!(layer.waiting("mobile"), 0);
        assert_eq!(layer.running("mobile"), 0);
    }

    #[tokio::test]
    async fn with_one_slot_the_flood_and_another_client_type_take_turns() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = AdmissionLayer::new("catalog", "slots=1".parse().unwrap());
        let service = layer.layer(slow(release.clone()));
        let mut mobile = Vec::new();
        for _ in 0..4 {
            mobile.push(tokio::spawn(
                service.clone().oneshot(call_from("mobile-bff", PATH)),
            ));
            tokio::task::yield_now().await;
        }
        until(|| layer.running("mobile") == 1 && layer.waiting("mobile") == 3).await;
        let web = tokio::spawn(service.clone().oneshot(call_from("web-bff", PATH)));
        until(|| layer.waiting("web") == 1).await;
        // Neither has a call running once mobile's ends: web, served
        // longest ago, goes before mobile's older queue.
        release.notify_one();
        until(|| layer.running("web") == 1).await;
        assert_eq!(layer.waiting("mobile"), 3);
        assert_eq!(finish_all(&release, vec![web]).await, [Code::Ok]);
        assert_eq!(finish_all(&release, mobile).await, [Code::Ok; 4]);
    }

    #[tokio::test]
    async fn a_share_caps_a_client_types_running_calls_below_the_slots() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = AdmissionLayer::new("catalog", "slots=4,mobile=1:8".parse().unwrap());
        let service = layer.layer(slow(release.clone()));
        let mobile: Vec<_> = (0..3)
            .map(|_| tokio::spawn(service.clone().oneshot(call_from("mobile-bff", PATH))))
            .collect();
        until(|| layer.running("mobile") == 1 && layer.waiting("mobile") == 2).await;
        // Slots are free, so web runs at once, three calls at a time.
        let web: Vec<_> = (0..3)
            .map(|_| tokio::spawn(service.clone().oneshot(call_from("web-bff", PATH))))
            .collect();
        until(|| layer.running("web") == 3).await;
        assert_eq!(layer.running("mobile"), 1);
        assert_eq!(finish_all(&release, web).await, [Code::Ok; 3]);
        assert_eq!(finish_all(&release, mobile).await, [Code::Ok; 3]);
    }

    #[tokio::test]
    async fn a_call_that_gives_up_waiting_leaves_the_queue_and_never_holds_a_slot() {
        let release = Arc::new(tokio::sync::Notify::new());
        let layer = AdmissionLayer::new("catalog", "slots=1,web=1:1".parse().unwrap());
        let service = layer.layer(slow(release.clone()));
        let first = tokio::spawn(service.clone().oneshot(call_from("web-bff", PATH)));
        until(|| layer.running("web") == 1).await;
        let waiting = tokio::spawn(service.clone().oneshot(call_from("web-bff", PATH)));
        until(|| layer.waiting("web") == 1).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(layer.waiting("web"), 0);
        // The place in the queue is free again, and the slot the caller
        // that gave up would have had goes to the next.
        let next = tokio::spawn(service.clone().oneshot(call_from("web-bff", PATH)));
        until(|| layer.waiting("web") == 1).await;
        assert_eq!(finish_all(&release, vec![first, next]).await, [Code::Ok; 2]);
        assert_eq!(layer.running("web"), 0);
    }
}
