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
}

/// The limits of every key a server has seen.
#[derive(Debug)]
pub struct Limiter {
    plans: HashMap<String, Plan>,
    keys: Mutex<HashMap<String, KeyState>>,
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
            keys: Mutex::new(HashMap::new()),
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
        let state = keys.entry(key.to_owned()).or_insert_with(|| KeyState {
            tokens: f64::from(plan.burst),
            refilled: now,
            day,
            used_today: 0,
        });
        if state.day != day {
            state.day = day;
            state.used_today = 0;
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
