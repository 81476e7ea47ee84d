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
//! Quota counts survive restarts when the limiter has a [`QuotaLedger`]:
//! today's counts are loaded when it starts and changed counts are saved
//! every second, so a crash loses at most a second of counting.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The limits of every key a server has seen.
#[derive(Debug, Default)]
pub struct Limiter {
    plans: HashMap<String, Plan>,
    keys: Mutex<HashMap<String, KeyState>>,
    /// Counts loaded from the ledger: the day and each key's calls.
    restored: Mutex<(u64, HashMap<String, u64>)>,
}

const DAY_SECS: u64 = 86_400;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Limiter {
    /// Limits keys by the plan their identity names; keys on plans not in
    /// `plans` are not limited.
    pub fn new(plans: HashMap<String, Plan>) -> Self {
        Self {
            plans,
            ..Self::default()
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
        let limiter = Arc::new(Self {
            plans,
            restored: Mutex::new((day, counts)),
            ..Self::default()
        });
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
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter_mut()
            .filter(|(_, state)| state.used_today != state.saved)
            .map(|(key, state)| {
                state.saved = state.used_today;
                (key.clone(), state.day, state.used_today)
            })
            .collect()
    }

    fn restored_count(&self, key: &str, day: u64) -> u64 {
        let restored = self.restored.lock().unwrap_or_else(|e| e.into_inner());
        if restored.0 == day {
            restored.1.get(key).copied().unwrap_or(0)
        } else {
            0
        }
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
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if !keys.contains_key(key) {
            let used = self.restored_count(key, day);
            keys.insert(
                key.to_owned(),
                KeyState {
                    tokens: f64::from(plan.burst),
                    refilled: now,
                    day,
                    used_today: used,
                    saved: used,
                },
            );
        }
        let state = keys.get_mut(key).expect("inserted above");
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
