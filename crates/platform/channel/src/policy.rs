//! What a BFF allows itself when calling one downstream service: how long
//! an attempt may take, how often reads are retried and how much extra load
//! retries may add, when the circuit opens, how many calls may be in flight,
//! whether reads are hedged and coalesced. Every BFF starts from the same
//! documented defaults ([`CallPolicy::default`]) and changes them per
//! service with `--downstream-policy <service>.<key>=<value>` (repeatable,
//! or comma-separated in `TAILOR_DOWNSTREAM_POLICY`); `*` as the service
//! changes all four. An unknown service, key or value stops the BFF at
//! start-up with a message naming the entry.

use std::collections::HashMap;
use std::time::Duration;

use crate::retry::RetryPolicy;

/// The downstream services a BFF may call, by the names their
/// certificates bear.
pub const SERVICES: [&str; 4] = ["catalog", "inventory", "reviews", "orders"];

/// When a downstream's circuit opens, and how it closes again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Opens when at least this share of the attempts in the window failed
    /// (0.8). Attempts include retries, so a service failing half of its
    /// calls shows more than half failing attempts; the circuit is for a
    /// service that is down or nearly so (a dead one opens it at once by
    /// failures in a row), not for one that retries still carry.
    pub failure_rate: f64,
    /// ... counted over this long a sliding window (10 s) ...
    pub window: Duration,
    /// ... once the window holds at least this many attempts (20).
    pub min_calls: u32,
    /// Opens also after this many failed attempts in a row (10; attempts,
    /// so about three calls that failed every try).
    pub consecutive_failures: u32,
    /// How long it stays open, answering UNAVAILABLE without calling (5 s).
    pub open_for: Duration,
    /// Probe calls let through at once when the open time has passed (3);
    /// the first success closes the circuit, a failure opens it again.
    pub half_open_probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_rate: 0.8,
            window: Duration::from_secs(10),
            min_calls: 20,
            consecutive_failures: 10,
            open_for: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

/// How much extra load retries and hedges may add, counted as work in
/// flight at the service: retries in flight at most this share of the
/// calls in flight, or a small floor, whichever is larger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPolicy {
    /// Retries and hedges in flight allowed per call in flight (0.1: one
    /// for every ten).
    pub ratio: f32,
    /// Retries and hedges in flight allowed whatever the traffic (3), so
    /// a quiet BFF still retries.
    pub min_concurrency: u32,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            min_concurrency: 3,
        }
    }
}

/// Everything a BFF's calls to one downstream service obey.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallPolicy {
    /// Longest time one attempt of a unary call may take (5 s); the
    /// caller's deadline, when shorter, wins. Not applied to streams.
    pub attempt_timeout: Duration,
    /// Attempts and back-off of reads.
    pub retry: RetryPolicy,
    /// The retry budget.
    pub budget: BudgetPolicy,
    /// The circuit breaker.
    pub breaker: BreakerPolicy,
    /// Calls in flight at once (512: two for each of the 256 calls a BFF
    /// admits at once); one more is refused at once.
    pub max_in_flight: usize,
    /// Keep calls in flight within an adaptive window learnt from the
    /// service's answer times, the rest waiting in this BFF (off: at
    /// saturation on a shared machine it costs throughput).
    pub adaptive: bool,
    /// Send a unary read a second time when no answer came for this long
    /// (off by default); the first answer wins.
    pub hedge_after: Option<Duration>,
    /// Identical unary reads in flight at once share one call (on).
    pub coalesce: bool,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            budget: BudgetPolicy::default(),
            breaker: BreakerPolicy::default(),
            max_in_flight: 512,
            adaptive: false,
            hedge_after: None,
            coalesce: true,
        }
    }
}

/// Why a `--downstream-policy` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not `<service>.<key>=<value>`.
    #[error(
        "downstream policy {entry:?}: expected <service>.<key>=<value>, e.g. catalog.timeout=300ms"
    )]
    Malformed {
        /// The entry as given.
        entry: String,
    },
    /// The service is not one a BFF calls.
    #[error(
        "downstream policy {entry:?}: unknown service {service:?} (expected one of catalog, inventory, reviews, orders or *)"
    )]
    UnknownService {
        /// The entry as given.
        entry: String,
        /// The service named.
        service: String,
    },
    /// The key is not a policy setting.
    #[error("downstream policy {entry:?}: unknown key {key:?} (expected one of {})", KEYS.join(", "))]
    UnknownKey {
        /// The entry as given.
        entry: String,
        /// The key named.
        key: String,
    },
    /// The value does not fit the key.
    #[error("downstream policy {entry:?}: {reason}")]
    Value {
        /// The entry as given.
        entry: String,
        /// What a value must be.
        reason: String,
    },
}

/// Every key `--downstream-policy` takes.
pub const KEYS: [&str; 16] = [
    "timeout",
    "attempts",
    "backoff",
    "max-backoff",
    "retry-budget",
    "retry-min-concurrency",
    "breaker-failure-rate",
    "breaker-window",
    "breaker-min-calls",
    "breaker-consecutive",
    "breaker-open",
    "breaker-probes",
    "max-in-flight",
    "adaptive",
    "hedge",
    "coalesce",
];

/// The policy of each downstream service.
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    by_service: HashMap<&'static str, CallPolicy>,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            by_service: SERVICES
                .iter()
                .map(|service| (*service, CallPolicy::default()))
                .collect(),
        }
    }
}

impl Policies {
    /// The defaults changed by `entries` (`catalog.timeout=300ms`), applied
    /// in order, so a later entry wins.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, PolicyError> {
        let mut policies = Self::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let malformed = || PolicyError::Malformed {
                entry: entry.to_owned(),
            };
            let (name, value) = entry.split_once('=').ok_or_else(malformed)?;
            let (service, key) = name.trim().split_once('.').ok_or_else(malformed)?;
            let targets: Vec<&'static str> = match service {
                "*" => SERVICES.to_vec(),
                named => vec![*SERVICES.iter().find(|s| **s == named).ok_or_else(|| {
                    PolicyError::UnknownService {
                        entry: entry.to_owned(),
                        service: named.to_owned(),
                    }
                })?],
            };
            for target in targets {
                let policy = policies
                    .by_service
                    .get_mut(target)
                    .expect("every service has a policy");
                set(policy, key.trim(), value.trim()).map_err(|reason| match reason {
                    Setting::UnknownKey => PolicyError::UnknownKey {
                        entry: entry.to_owned(),
                        key: key.trim().to_owned(),
                    },
                    Setting::Invalid(reason) => PolicyError::Value {
                        entry: entry.to_owned(),
                        reason,
                    },
                })?;
            }
        }
        Ok(policies)
    }

    /// The policy of `service` (the default for a service not listed).
    pub fn of(&self, service: &str) -> CallPolicy {
        self.by_service.get(service).copied().unwrap_or_default()
    }
}

enum Setting {
    UnknownKey,
    Invalid(String),
}

fn set(policy: &mut CallPolicy, key: &str, value: &str) -> Result<(), Setting> {
    let invalid = |what: &str| Setting::Invalid(format!("{key} must be {what}, not {value:?}"));
    let duration = || parse_duration(value).ok_or_else(|| invalid("a duration like 300ms or 2s"));
    let positive = || {
        value
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("a whole number above 0"))
    };
    let whole = || value.parse::<u32>().map_err(|_| invalid("a whole number"));
    let share = || {
        value
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| invalid("a share between 0 and 1, like 0.1"))
    };
    match key {
        "timeout" => {
            policy.attempt_timeout = non_zero(duration()?).ok_or_else(|| invalid("above 0"))?
        }
        "attempts" => policy.retry.max_attempts = positive()?,
        "backoff" => policy.retry.first_backoff = duration()?,
        "max-backoff" => policy.retry.max_backoff = duration()?,
        "retry-budget" => policy.budget.ratio = share()? as f32,
        "retry-min-concurrency" => policy.budget.min_concurrency = whole()?,
        "breaker-failure-rate" => {
            policy.breaker.failure_rate = share()?;
            if policy.breaker.failure_rate == 0.0 {
                return Err(invalid("a share above 0"));
            }
        }
        "breaker-window" => {
            let window = duration()?;
            if window < Duration::from_secs(1) {
                return Err(invalid("at least 1s"));
            }
            policy.breaker.window = window;
        }
        "breaker-min-calls" => policy.breaker.min_calls = positive()?,
        "breaker-consecutive" => policy.breaker.consecutive_failures = positive()?,
        "breaker-open" => {
            policy.breaker.open_for = non_zero(duration()?).ok_or_else(|| invalid("above 0"))?
        }
        "breaker-probes" => policy.breaker.half_open_probes = positive()?,
        "max-in-flight" => policy.max_in_flight = positive()? as usize,
        "hedge" => {
            policy.hedge_after = match value {
                "off" => None,
                _ => Some(
                    parse_duration(value).ok_or_else(|| invalid("off or a duration like 50ms"))?,
                ),
            }
        }
        "coalesce" => policy.coalesce = on_off(value).ok_or_else(|| invalid("on or off"))?,
        "adaptive" => policy.adaptive = on_off(value).ok_or_else(|| invalid("on or off"))?,
        _ => return Err(Setting::UnknownKey),
    }
    Ok(())
}

fn on_off(value: &str) -> Option<bool> {
    match value {
        "on" | "true" => Some(true),
        "off" | "false" => Some(false),
        _ => None,
    }
}

fn non_zero(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// `300ms`, `2s`.
fn parse_duration(value: &str) -> Option<Duration> {
    if let Some(ms) = value.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(Duration::from_millis);
    }
    value
        .strip_suffix('s')?
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_change_the_defaults_of_the_services_they_name() {
        let policies = Policies::parse(&[
            "catalog.timeout=300ms",
            "*.hedge=50ms",
            "reviews.coalesce=off",
            "orders.max-in-flight=8",
            "inventory.breaker-open=2s",
        ])
        .unwrap();
        let catalog = policies.of("catalog");
        assert_eq!(catalog.attempt_timeout, Duration::from_millis(300));
        assert_eq!(catalog.hedge_after, Some(Duration::from_millis(50)));
        assert!(catalog.coalesce);
        assert!(!policies.of("reviews").coalesce);
        assert_eq!(
            policies.of("reviews").attempt_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(policies.of("orders").max_in_flight, 8);
        assert_eq!(
            policies.of("inventory").breaker.open_for,
            Duration::from_secs(2)
        );
        assert_eq!(Policies::parse::<&str>(&[]).unwrap(), Policies::default());
    }

    #[test]
    fn unknown_services_keys_and_values_are_refused_with_the_entry_named() {
        let error = Policies::parse(&["payments.timeout=1s"]).unwrap_err();
        assert!(
            matches!(error, PolicyError::UnknownService { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("payments"), "{error}");
        let error = Policies::parse(&["catalog.speed=fast"]).unwrap_err();
        assert!(matches!(error, PolicyError::UnknownKey { .. }), "{error}");
        assert!(error.to_string().contains("\"speed\""), "{error}");
        let error = Policies::parse(&["catalog.timeout=soon"]).unwrap_err();
        assert!(matches!(error, PolicyError::Value { .. }), "{error}");
        assert!(
            error.to_string().contains("catalog.timeout=soon"),
            "{error}"
        );
        for bad in [
            "catalog",
            "catalog=1s",
            "catalog.timeout=0ms",
            "catalog.retry-budget=2",
            "catalog.attempts=0",
        ] {
            assert!(Policies::parse(&[bad]).is_err(), "{bad} was accepted");
        }
    }
}
