//! Rate limits and daily quotas per credential, from its plan.
//!
//! Each API key has one token bucket (refilled at the plan's rate, holding
//! at most its burst) and one counter of calls for the current UTC day,
//! kept in one [`Limiter`] per server, so limits are exact whatever the
//! number of connections a partner opens. A call over either limit is
//! answered RESOURCE_EXHAUSTED before any handler or downstream work, with
//! `google.rpc.RetryInfo` saying when to come back (when the bucket holds a
//! token again, or at the next UTC midnight) and, for the quota,
//! `google.rpc.QuotaFailure` naming it.
//!
//! Refusals cost a lock and a few arithmetic operations: a partner that
//! hammers the BFF is turned away cheaply and cannot use up the capacity
//! other partners are served from.
//!
//! Calls without a key (bearer tokens, sessions) and keys without a known
//! plan are not limited here.
//!
//! Each refusal is noted for the access log, which counts it by plan
//! (`tailor_rate_limit_refusals_total`).
//!
//! Quota counts survive restarts when the limiter has a [`QuotaLedger`]:
//! today's counts are loaded when it starts and changed counts are saved
//! every second, so a crash loses at most a second of counting.
//!
//! The table of keys is bounded: a [`Limiter`] holds at most its capacity
//! ([`DEFAULT_CAPACITY`] unless built with [`Limiter::bounded`]) and
//! forgets keys idle for its idle time, so a flood of distinct keys (user
//! names, addresses) costs bounded memory. The table admits and evicts by
//! how often a key is used (TinyLFU), so a flood of one-off keys does not
//! push out the keys that are busy. A key that is forgotten comes back with
//! a full bucket: at most one burst more than the limit, and only after the
//! table overflowed or the key went quiet. With a ledger, the day's count of
//! a forgotten key is kept aside (in a table of the same bound) and
//! restored when the key returns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::notification::RemovalCause;
use moka::sync::Cache;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::context::Identity;
use crate::{HttpRequest, HttpResponse, status_response};

/// What a plan allows one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Sustained calls per second.
    pub per_second: f64,
    /// Calls that may come at once after a quiet spell.
    pub burst: u32,
    /// Calls per UTC day.
    pub daily_quota: u64,
}

impl std::str::FromStr for Plan {
    type Err = String;

    /// `<calls per second>:<burst>:<calls per day>`, as operators write
    /// limits on the command line (`5:10:1000`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: expected <per second>:<burst>:<per day>");
        let parts: Vec<&str> = text.split(':').collect();
        let [per_second, burst, daily_quota] = parts.as_slice() else {
            return Err(bad());
        };
        let plan = Plan {
            per_second: per_second.parse().map_err(|_| bad())?,
            burst: burst.parse().map_err(|_| bad())?,
            daily_quota: daily_quota.parse().map_err(|_| bad())?,
        };
        if !(plan.per_second > 0.0 && plan.per_second.is_finite()) || plan.burst == 0 {
            return Err(bad());
        }
        Ok(plan)
    }
}

impl Plan {
    /// `rate` with no daily quota.
    pub const fn unmetered(rate: Rate) -> Self {
        Plan {
            per_second: rate.per_second,
            burst: rate.burst,
            daily_quota: u64::MAX,
        }
    }
}

/// A token bucket without a daily quota: a limit that recovers by itself,
/// for things a stranger could otherwise use up for a whole day on
/// someone else's behalf (sign-in attempts for a user name).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained calls per second.
    pub per_second: f64,
    /// Calls that may come at once after a quiet spell.
    pub burst: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `<calls per second>:<burst>`, as operators write rates on the
    /// command line (`0.2:5`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: expected <per second>:<burst>");
        let (per_second, burst) = text.split_once(':').ok_or_else(bad)?;
        let rate = Rate {
            per_second: per_second.parse().map_err(|_| bad())?,
            burst: burst.parse().map_err(|_| bad())?,
        };
        if !(rate.per_second > 0.0 && rate.per_second.is_finite()) || rate.burst == 0 {
            return Err(bad());
        }
        Ok(rate)
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bucket is empty; a token is back after `retry_after`.
    Rate {
        /// When to come back.
        retry_after: Duration,
    },
    /// The day's quota is used up; it renews at UTC midnight.
    Quota {
        /// When to come back.
        retry_after: Duration,
        /// The quota.
        limit: u64,
    },
}

impl Refusal {
    /// Which limit refused: `rate` or `quota`, as the refusals metric
    /// labels it.
    pub fn limit(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate",
            Refusal::Quota { .. } => "quota",
        }
    }

    /// The status a client sees, with RetryInfo (and QuotaFailure).
    /// `what` names the limited thing for people ("this API key"),
    /// `subject` for programs (`api-key:<id>`).
    pub fn status(&self, what: &str, subject: &str) -> tonic::Status {
        match *self {
            Refusal::Rate { retry_after } => tonic::Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "rate limit of {what} exceeded; retry in {} ms",
                    retry_after.as_millis()
                ),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Refusal::Quota { retry_after, limit } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.add_quota_failure_violation(
                    subject.to_owned(),
                    format!("daily quota of {limit} calls used up; it renews at 00:00 UTC"),
                );
                tonic::Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("daily quota of {limit} calls used up; it renews at 00:00 UTC"),
                    details,
                )
            }
        }
    }
}

#[derive(Debug)]
struct KeyState {
    tokens: f64,
    refilled: Instant,
    day: u64,
    used_today: u64,
    /// `used_today` as last saved to the ledger.
    saved: u64,
}

/// Where quota counts are kept between runs; the partner BFF keeps them in
/// its own store.
pub trait QuotaLedger: Send + Sync + 'static {
    /// The calls each key made on `day` (days since 1970-01-01, UTC).
    fn load(&self, day: u64) -> crate::BoxFuture<'_, Result<HashMap<String, u64>, String>>;
    /// Records `(key, day, calls)` counts, replacing earlier ones.
    fn save(&self, counts: Vec<(String, u64, u64)>) -> crate::BoxFuture<'_, Result<(), String>>;
}

/// Keys a limiter keeps at most unless built with [`Limiter::bounded`]:
/// some tens of megabytes at worst, far more than the keys, users or
/// addresses that are busy at once.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// How long a key may stay quiet before it is forgotten, unless built with
/// [`Limiter::bounded`]: longer than any plan's bucket takes to refill.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

/// The limits of the keys a server has seen lately; see the module docs
/// for what "lately" means.
pub struct Limiter {
    plans: HashMap<String, Plan>,
    keys: Cache<String, Arc<Mutex<KeyState>>>,
    /// The day's counts of keys not in `keys`: loaded from the ledger at
    /// start, and kept aside when a key is forgotten (ledger only). Each
    /// value is `(day, calls)`.
    restored: Cache<String, (u64, u64)>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("plans", &self.plans)
            .field("keys", &self.keys.entry_count())
            .finish()
    }
}

const DAY_SECS: u64 = 86_400;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Limiter {
    /// Limits keys by the plan their identity names; keys on plans not in
    /// `plans` are not limited. Holds at most [`DEFAULT_CAPACITY`] keys,
    /// each forgotten after [`DEFAULT_IDLE`] without calls.
    pub fn new(plans: HashMap<String, Plan>) -> Self {
        Self::bounded(plans, DEFAULT_CAPACITY, DEFAULT_IDLE)
    }

    /// Like [`Limiter::new`], holding at most `capacity` keys and
    /// forgetting a key after `idle` without calls.
    pub fn bounded(plans: HashMap<String, Plan>, capacity: u64, idle: Duration) -> Self {
        Self::build(plans, capacity, idle, false)
    }

    fn build(plans: HashMap<String, Plan>, capacity: u64, idle: Duration, ledger: bool) -> Self {
        // Yesterday's counts are of no use, so a day and an hour is enough.
        let restored = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(Duration::from_secs(DAY_SECS + 3600))
            .build();
        let mut keys = Cache::builder().max_capacity(capacity).time_to_idle(idle);
        if ledger {
            let aside = restored.clone();
            keys = keys.eviction_listener(
                move |key: Arc<String>, state: Arc<Mutex<KeyState>>, cause: RemovalCause| {
                    if !cause.was_evicted() {
                        return;
                    }
                    let state = state.lock().unwrap_or_else(|e| e.into_inner());
                    if state.used_today > 0 {
                        aside.insert(key.as_ref().clone(), (state.day, state.used_today));
                    }
                },
            );
        }
        Self {
            plans,
            keys: keys.build(),
            restored,
        }
    }

    /// A limiter whose quota counts live in `ledger`: today's are loaded
    /// now, and changes are saved every `every` until the limiter is
    /// dropped.
    pub async fn with_ledger(
        plans: HashMap<String, Plan>,
        ledger: Arc<dyn QuotaLedger>,
        every: Duration,
    ) -> Result<Arc<Self>, String> {
        let day = unix_now() / DAY_SECS;
        let counts = ledger.load(day).await?;
        let limiter = Arc::new(Self::build(plans, DEFAULT_CAPACITY, DEFAULT_IDLE, true));
        for (key, used) in counts {
            limiter.restored.insert(key, (day, used));
        }
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                let changed = limiter.changed_counts();
                drop(limiter);
                if !changed.is_empty()
                    && let Err(error) = ledger.save(changed).await
                {
                    tracing::error!(%error, "saving quota counts failed; retrying later");
                }
            }
        });
        Ok(limiter)
    }

    /// Counts changed since they were last taken, marked as saved.
    fn changed_counts(&self) -> Vec<(String, u64, u64)> {
        self.keys
            .iter()
            .filter_map(|(key, state)| {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                (state.used_today != state.saved).then(|| {
                    state.saved = state.used_today;
                    (key.as_ref().clone(), state.day, state.used_today)
                })
            })
            .collect()
    }

    /// The day's calls of a key not in the table, taken out of `restored`.
    fn restored_count(&self, key: &str, day: u64) -> u64 {
        match self.restored.remove(key) {
            Some((restored_day, used)) if restored_day == day => used,
            _ => 0,
        }
    }

    /// How many keys the table holds now (after pending evictions).
    pub fn len(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one call for `key` on `plan` at `now` (monotonic) and
    /// `unix_secs` (wall clock, for the UTC day).
    pub fn admit_at(
        &self,
        key: &str,
        plan: &Plan,
        now: Instant,
        unix_secs: u64,
    ) -> Result<(), Refusal> {
        let day = unix_secs / DAY_SECS;
        let state = self
            .keys
            .entry_by_ref(key)
            .or_insert_with(|| {
                let used = self.restored_count(key, day);
                Arc::new(Mutex::new(KeyState {
                    tokens: f64::from(plan.burst),
                    refilled: now,
                    day,
                    used_today: used,
                    saved: used,
                }))
            })
            .into_value();
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        if state.day != day {
            state.day = day;
            state.used_today = 0;
            state.saved = u64::MAX;
        }
        if state.used_today >= plan.daily_quota {
            let midnight = (day + 1) * DAY_SECS;
            return Err(Refusal::Quota {
                retry_after: Duration::from_secs(midnight.saturating_sub(unix_secs).max(1)),
                limit: plan.daily_quota,
            });
        }
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * plan.per_second).min(f64::from(plan.burst));
        state.refilled = now;
        if state.tokens < 1.0 {
            let wait = (1.0 - state.tokens) / plan.per_second;
            return Err(Refusal::Rate {
                retry_after: Duration::from_secs_f64(wait).max(Duration::from_millis(1)),
            });
        }
        state.tokens -= 1.0;
        state.used_today += 1;
        Ok(())
    }

    /// Takes one call for `key` on `plan`, now.
    pub fn admit_key(&self, key: &str, plan: &Plan) -> Result<(), Refusal> {
        self.admit_at(key, plan, Instant::now(), unix_now())
    }

    /// Takes one call for the caller, now.
    pub fn admit(&self, identity: &Identity) -> Result<(), Refusal> {
        let (Some(key), Some(plan)) = (&identity.key_id, &identity.plan) else {
            return Ok(());
        };
        let Some(plan) = self.plans.get(plan) else {
            return Ok(());
        };
        self.admit_key(key, plan)
    }
}

/// Adds [`LimitService`] to a stack, after authentication.
#[derive(Debug, Clone)]
pub struct LimitLayer {
    limiter: Arc<Limiter>,
}

impl LimitLayer {
    /// Limits with `limiter`, shared by every connection.
    pub fn new(limiter: Arc<Limiter>) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = LimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LimitService<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S> Service<HttpRequest> for LimitService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if let Some(identity) = request.extensions().get::<Identity>()
            && let Err(refusal) = self.limiter.admit(identity)
        {
            if let (Some(notes), Some(plan)) = (
                request.extensions().get::<crate::access_log::CallNotes>(),
                &identity.plan,
            ) {
                notes.record_refusal(plan, refusal.limit());
            }
            let key = identity.key_id.clone().unwrap_or_default();
            let response =
                status_response(refusal.status("this API key", &format!("api-key:{key}")));
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: Plan = Plan {
        per_second: 10.0,
        burst: 5,
        daily_quota: 100,
    };

    #[test]
    fn the_burst_passes_then_the_rate_rules() {
        let limiter = Limiter::new(HashMap::new());
        let start = Instant::now();
        for _ in 0..5 {
            limiter.admit_at("k", &PLAN, start, 1_000).unwrap();
        }
        let Err(Refusal::Rate { retry_after }) = limiter.admit_at("k", &PLAN, start, 1_000) else {
            panic!("the sixth call at once is over the burst");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // 100 ms later one token is back, and only one.
        let later = start + Duration::from_millis(100);
        limiter.admit_at("k", &PLAN, later, 1_000).unwrap();
        assert!(limiter.admit_at("k", &PLAN, later, 1_000).is_err());
        // Another key has its own bucket.
        limiter.admit_at("other", &PLAN, later, 1_000).unwrap();
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_capacity() {
        let limiter = Limiter::bounded(HashMap::new(), 1_000, DEFAULT_IDLE);
        let start = Instant::now();
        // A busy key: its bucket is empty when the flood begins.
        for _ in 0..5 {
            limiter.admit_at("busy", &PLAN, start, 1_000).unwrap();
        }
        for n in 0..50_000 {
            let _ = limiter.admit_at(&format!("stranger-{n}"), &PLAN, start, 1_000);
            if n % 1_000 == 0 {
                // The busy key keeps calling, so it is worth keeping.
                let _ = limiter.admit_at("busy", &PLAN, start, 1_000);
            }
        }
        assert!(limiter.len() <= 1_000, "{} keys kept", limiter.len());
        assert!(
            limiter.admit_at("busy", &PLAN, start, 1_000).is_err(),
            "the busy key's empty bucket outlived the flood"
        );
    }

    #[test]
    fn quiet_keys_are_forgotten_with_full_buckets() {
        let limiter = Limiter::bounded(HashMap::new(), 1_000, Duration::from_millis(50));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.admit_at("k", &PLAN, start, 1_000).unwrap();
        }
        assert!(limiter.admit_at("k", &PLAN, start, 1_000).is_err());
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(limiter.len(), 0, "the quiet key is gone");
    }

    #[test]
    fn rates_parse_as_operators_write_them_and_have_no_daily_quota() {
        let rate: Rate = "0.5:3".parse().unwrap();
        assert_eq!(
            rate,
            Rate {
                per_second: 0.5,
                burst: 3
            }
        );
        assert_eq!(Plan::unmetered(rate).daily_quota, u64::MAX);
        for bad in ["", "1", "1:2:3", "0:3", "1:0", "x:1", "inf:1"] {
            let error = bad.parse::<Rate>().unwrap_err();
            assert!(error.contains("<per second>:<burst>"), "{error}");
        }
    }

    /// A ledger in memory.
    #[derive(Default)]
    struct Ledger {
        saved: Mutex<HashMap<(String, u64), u64>>,
    }

    impl QuotaLedger for Ledger {
        fn load(&self, day: u64) -> crate::BoxFuture<'_, Result<HashMap<String, u64>, String>> {
            let saved = self.saved.lock().unwrap();
            let counts = saved
                .iter()
                .filter(|((_, d), _)| *d == day)
                .map(|((key, _), used)| (key.clone(), *used))
                .collect();
            Box::pin(async move { Ok(counts) })
        }

        fn save(
            &self,
            counts: Vec<(String, u64, u64)>,
        ) -> crate::BoxFuture<'_, Result<(), String>> {
            let mut saved = self.saved.lock().unwrap();
            for (key, day, used) in counts {
                saved.insert((key, day), used);
            }
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn quota_counts_outlive_the_limiter_through_its_ledger() {
        let ledger = Arc::new(Ledger::default());
        let plan = Plan {
            daily_quota: 5,
            ..PLAN
        };
        let every = Duration::from_millis(20);
        let first = Limiter::with_ledger(HashMap::new(), ledger.clone(), every)
            .await
            .unwrap();
        for _ in 0..3 {
            first.admit_key("k", &plan).unwrap();
        }
        tokio::time::sleep(every * 5).await;
        drop(first);
        // A restarted server knows the day's three calls.
        let second = Limiter::with_ledger(HashMap::new(), ledger, every)
            .await
            .unwrap();
        second.admit_key("k", &plan).unwrap();
        second.admit_key("k", &plan).unwrap();
        assert!(matches!(
            second.admit_key("k", &plan),
            Err(Refusal::Quota { limit: 5, .. })
        ));
        second.admit_key("fresh", &plan).unwrap();
    }

    #[test]
    fn a_forgotten_key_keeps_its_days_count_when_counts_are_kept() {
        let plan = Plan {
            daily_quota: 4,
            ..PLAN
        };
        // As `with_ledger` builds it, but quick to forget.
        let limiter = Limiter::build(HashMap::new(), 1_000, Duration::from_millis(50), true);
        for _ in 0..3 {
            limiter.admit_key("k", &plan).unwrap();
        }
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(limiter.len(), 0, "forgotten");
        limiter.admit_key("k", &plan).unwrap();
        assert!(matches!(
            limiter.admit_key("k", &plan),
            Err(Refusal::Quota { limit: 4, .. })
        ));
    }

    #[test]
    fn the_daily_quota_ends_the_day_and_renews_at_midnight() {
        let limiter = Limiter::new(HashMap::new());
        let plan = Plan {
            daily_quota: 3,
            ..PLAN
        };
        let noon = 10 * DAY_SECS + DAY_SECS / 2;
        let mut now = Instant::now();
        for _ in 0..3 {
            now += Duration::from_secs(1);
            limiter.admit_at("k", &plan, now, noon).unwrap();
        }
        now += Duration::from_secs(1);
        let refusal = limiter.admit_at("k", &plan, now, noon).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Quota {
                retry_after: Duration::from_secs(DAY_SECS / 2),
                limit: 3
            }
        );
        let status = refusal.status("this API key", "api-key:k");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.get_details_retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(DAY_SECS / 2))
        );
        assert!(status.get_details_quota_failure().is_some());
        limiter.admit_at("k", &plan, now, 11 * DAY_SECS).unwrap();
    }
}
