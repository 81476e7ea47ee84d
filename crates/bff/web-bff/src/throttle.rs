//! How sign-in attempts are slowed, so passwords cannot be guessed at
//! speed and strangers cannot shut users out.
//!
//! Every attempt takes a token from two buckets:
//!
//! - **the client address's** (IPv4 address, or IPv6 /64 network), so one
//!   password sprayed over many user names from one place is slowed like
//!   many guesses at one name;
//! - **the user name's**, so guessing one user's password from many places
//!   is slowed too.
//!
//! Both are token buckets that refill by themselves: there is no daily
//! cap, so the worst a stranger can do to a user is keep the name's bucket
//! empty for as long as they keep sending attempts, and the user gets in
//! seconds after they stop. Not even that works against a user who has
//! signed in from the same address before (within [`KNOWN_FOR`]): such a
//! (name, address) pair takes its token from a bucket of its own, with the
//! name's rate, which no one at another address can empty. A user signing
//! in from a new address while their name is under attack waits; that is
//! the price of slowing distributed guessing at all.
//!
//! The address is the TCP peer's: the BFF is reached directly, so no
//! forwarding header is believed.
//!
//! Where the buckets and the known pairs are kept follows the accounts
//! store. With SQLite (one process), in memory: every table here is bounded
//! ([`TABLE_CAPACITY`] entries each, quiet entries forgotten once their
//! bucket would be full again), so a flood of made-up names or addresses
//! costs bounded memory. With PostgreSQL (several replicas), in the shared
//! database ([`tailor_storage::SharedBuckets`]: one row per bucket, each
//! attempt taken atomically; rows forgotten once full again), so the
//! replicas together allow exactly what one process would.
//!
//! Checking a password is deliberately slow (PBKDF2), and an unknown name
//! costs the same as a known one so timing reveals nothing. The hashing is
//! therefore bounded too: at most half the cores hash at once, a few
//! attempts may wait for them, and beyond that an attempt is refused with
//! RESOURCE_EXHAUSTED at once, so a flood cannot starve session look-ups
//! and the rest of the BFF of CPU and threads.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tailor_interceptors::limits::{Limiter, Plan, Rate, Refusal};
use tailor_storage::{BucketRate, Take};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

use crate::accounts::Accounts;

/// How fast sign-in attempts may come.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignInLimits {
    /// Attempts per user name (and per known name-and-address pair).
    pub per_name: Rate,
    /// Attempts per client address, whatever the names.
    pub per_address: Rate,
}

/// Sign-in attempts allowed unless configured: per user name 5 at once,
/// then one every 12 seconds; per client address 20 at once, then one
/// every 3 seconds. A user waits at most a few seconds after a typo or
/// two; guessing is slowed to a crawl.
pub const DEFAULT_SIGN_IN_ATTEMPTS: SignInLimits = SignInLimits {
    per_name: Rate {
        per_second: 1.0 / 12.0,
        burst: 5,
    },
    per_address: Rate {
        per_second: 1.0 / 3.0,
        burst: 20,
    },
};

/// Entries each table holds at most: buckets per name, per address, per
/// known pair, and known pairs.
pub const TABLE_CAPACITY: u64 = 20_000;

/// How long a successful sign-in makes its (name, address) pair known.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Attempts that may wait for a free hasher, per hasher.
const WAITING_PER_HASHER: usize = 4;

/// When to come back after finding every hasher busy.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Sign-in attempt limits and the bound on password hashing; see the
/// module docs.
pub struct SignInThrottle {
    limits: SignInLimits,
    counters: Counters,
    /// One permit per password hash that may run.
    hashers: Arc<Semaphore>,
    /// One permit per attempt running or waiting for a hasher.
    admitted: Arc<Semaphore>,
}

impl std::fmt::Debug for SignInThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInThrottle")
            .field("limits", &self.limits)
            .field("hashers", &self.hashers.available_permits())
            .finish()
    }
}

/// Leave to hash one password; the hasher is free again when it is dropped.
#[derive(Debug)]
pub struct HashingSlot {
    _hasher: OwnedSemaphorePermit,
    _admitted: OwnedSemaphorePermit,
}

/// Where the buckets and known pairs are kept (one per server: the size of
/// the in-memory tables' handles does not matter).
#[allow(clippy::large_enum_variant)]
enum Counters {
    /// In this process: the embedded default.
    InProcess {
        by_address: Limiter,
        by_name: Limiter,
        by_known_pair: Limiter,
        known_pairs: Cache<String, ()>,
    },
    /// In the accounts store every replica shares.
    Shared(Accounts),
}

/// The buckets an attempt draws from, in the order it draws.
enum Bucket {
    Address,
    Name,
    KnownPair,
}

/// What a refused attempt is told.
fn refused(refusal: Refusal, limited: &Bucket, name: &str, from: &str) -> Status {
    match limited {
        Bucket::Address => {
            tracing::warn!(address = %from, "sign-in attempts from one address limited");
            refusal.status("sign-in attempts from this address", "sign-in-address")
        }
        Bucket::Name | Bucket::KnownPair => {
            tracing::warn!(user = %name.escape_debug(), "sign-in attempts for one user limited");
            refusal.status("sign-in attempts for this user", "sign-in-user")
        }
    }
}

fn shared_rate(rate: Rate) -> BucketRate {
    BucketRate {
        per_second: rate.per_second,
        burst: rate.burst,
        daily_quota: None,
    }
}

impl SignInThrottle {
    /// Limits attempts as `limits` say, counting where `accounts` keeps its
    /// data: in this process for SQLite, in the shared database for
    /// PostgreSQL. Half the machine's cores may hash passwords at once.
    pub fn for_accounts(limits: SignInLimits, accounts: &Accounts) -> Self {
        let hashers = Self::default_hashers();
        if accounts.is_shared() {
            Self::shared(limits, accounts.clone(), hashers)
        } else {
            Self::with_bounds(limits, TABLE_CAPACITY, hashers)
        }
    }

    /// Limits attempts as `limits` say, in this process; half the
    /// machine's cores may hash passwords at once.
    pub fn new(limits: SignInLimits) -> Self {
        Self::with_bounds(limits, TABLE_CAPACITY, Self::default_hashers())
    }

    fn default_hashers() -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cores / 2).max(1)
    }

    /// Like [`SignInThrottle::new`] with `capacity` entries per table and
    /// `hashers` hashes at once.
    pub fn with_bounds(limits: SignInLimits, capacity: u64, hashers: usize) -> Self {
        // A bucket quiet for as long as it takes to refill is full, which
        // is what a forgotten bucket is: forgetting it changes nothing.
        let refill = |rate: Rate| {
            Duration::from_secs_f64(f64::from(rate.burst) / rate.per_second)
                .max(Duration::from_secs(1))
        };
        let bucket = |rate| Limiter::bounded(Default::default(), capacity, refill(rate));
        let counters = Counters::InProcess {
            by_address: bucket(limits.per_address),
            by_name: bucket(limits.per_name),
            by_known_pair: bucket(limits.per_name),
            known_pairs: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(KNOWN_FOR)
                .build(),
        };
        Self::with_counters(limits, counters, hashers)
    }

    /// Limits attempts as `limits` say, counting in `accounts`' shared
    /// database (which must be PostgreSQL), with `hashers` hashes at once
    /// in this process.
    pub fn shared(limits: SignInLimits, accounts: Accounts, hashers: usize) -> Self {
        Self::with_counters(limits, Counters::Shared(accounts), hashers)
    }

    fn with_counters(limits: SignInLimits, counters: Counters, hashers: usize) -> Self {
        Self {
            limits,
            counters,
            hashers: Arc::new(Semaphore::new(hashers)),
            admitted: Arc::new(Semaphore::new(hashers * (1 + WAITING_PER_HASHER))),
        }
    }

    /// Takes one attempt at `name` (lower-cased) from `address`, or says
    /// when to come back.
    pub async fn admit(&self, name: &str, address: Option<IpAddr>) -> Result<(), Status> {
        let from = address_key(address);
        let pair = pair_key(name, &from);
        match &self.counters {
            Counters::InProcess {
                by_address,
                by_name,
                by_known_pair,
                known_pairs,
            } => {
                by_address
                    .admit_key(&from, &Plan::unmetered(self.limits.per_address))
                    .map_err(|r| refused(r, &Bucket::Address, name, &from))?;
                let per_name = Plan::unmetered(self.limits.per_name);
                let (limited, taken) = if known_pairs.contains_key(&pair) {
                    (Bucket::KnownPair, by_known_pair.admit_key(&pair, &per_name))
                } else {
                    (Bucket::Name, by_name.admit_key(name, &per_name))
                };
                taken.map_err(|r| refused(r, &limited, name, &from))
            }
            Counters::Shared(accounts) => {
                self.take_shared(
                    accounts,
                    Bucket::Address,
                    &format!("address {from}"),
                    name,
                    &from,
                )
                .await?;
                let known = accounts
                    .is_known_pair(&pair)
                    .await
                    .map_err(tailor_interceptors::error::internal)?;
                if known {
                    self.take_shared(
                        accounts,
                        Bucket::KnownPair,
                        &format!("pair {pair}"),
                        name,
                        &from,
                    )
                    .await
                } else {
                    self.take_shared(accounts, Bucket::Name, &format!("name {name}"), name, &from)
                        .await
                }
            }
        }
    }

    async fn take_shared(
        &self,
        accounts: &Accounts,
        limited: Bucket,
        bucket: &str,
        name: &str,
        from: &str,
    ) -> Result<(), Status> {
        let rate = match limited {
            Bucket::Address => self.limits.per_address,
            Bucket::Name | Bucket::KnownPair => self.limits.per_name,
        };
        let taken = accounts
            .take_attempt(bucket, shared_rate(rate))
            .await
            .ok_or_else(|| tailor_interceptors::error::internal("a SQLite store shares no limits"))?
            .map_err(tailor_interceptors::error::internal)?;
        match taken {
            Take::Admitted => Ok(()),
            Take::Empty { retry_after } | Take::QuotaUsedUp { retry_after } => {
                Err(refused(Refusal::Rate { retry_after }, &limited, name, from))
            }
        }
    }

    /// Leave to hash a password: at once when a hasher is free, after a
    /// short wait when a few attempts are ahead, RESOURCE_EXHAUSTED with
    /// RetryInfo when too many are.
    pub async fn hashing_slot(&self) -> Result<HashingSlot, Status> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("sign-in refused: every password hasher is busy");
            Status::with_error_details(
                tonic::Code::ResourceExhausted,
                format!(
                    "too many sign-ins at once; retry in {} ms",
                    BUSY_RETRY.as_millis()
                ),
                ErrorDetails::with_retry_info(Some(BUSY_RETRY)),
            )
        })?;
        let hasher = self
            .hashers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("sign-in is shutting down"))?;
        Ok(HashingSlot {
            _hasher: hasher,
            _admitted: admitted,
        })
    }

    /// Records that `name` signed in from `address`: strangers elsewhere no
    /// longer slow this pair down (on every replica, when shared).
    pub async fn signed_in(&self, name: &str, address: Option<IpAddr>) {
        let pair = pair_key(name, &address_key(address));
        match &self.counters {
            Counters::InProcess { known_pairs, .. } => known_pairs.insert(pair, ()),
            Counters::Shared(accounts) => {
                if let Err(error) = accounts.remember_pair(&pair, KNOWN_FOR).await {
                    // The sign-in itself succeeded; the pair is merely not
                    // spared the name's bucket next time.
                    tracing::warn!(%error, "remembering a sign-in's address failed");
                }
            }
        }
    }
}

/// The bucket an address draws from: an IPv4 address (IPv4-mapped IPv6
/// included), or the /64 network of an IPv6 address, since one IPv6
/// client usually holds a whole /64.
fn address_key(address: Option<IpAddr>) -> String {
    match address.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        // Every server records the peer; should one not, such callers
        // share one bucket rather than escape the limit.
        None => "unknown".to_owned(),
    }
}

/// A name from an address; addresses hold no space, so the pair is
/// unambiguous whatever the name.
fn pair_key(name: &str, address: &str) -> String {
    format!("{address} {name}")
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::accounts::conformance::{self, QUICK, STEADY};

    #[tokio::test]
    async fn one_password_sprayed_over_many_names_is_slowed_per_address() {
        let throttle = SignInThrottle::with_bounds(STEADY, 1_000, 1);
        conformance::one_password_sprayed_over_many_names_is_slowed_per_address(&throttle).await;
    }

    #[tokio::test]
    async fn guessing_one_name_from_many_addresses_is_slowed_and_recovers() {
        let throttle = SignInThrottle::with_bounds(QUICK, 1_000, 1);
        conformance::guessing_one_name_from_many_addresses_is_slowed_and_recovers(&throttle).await;
    }

    #[tokio::test]
    async fn a_stranger_cannot_lock_out_a_user_from_where_they_signed_in_before() {
        let throttle = SignInThrottle::with_bounds(STEADY, 1_000, 1);
        conformance::a_stranger_cannot_lock_out_a_user_from_where_they_signed_in_before(&throttle)
            .await;
    }

    #[tokio::test]
    async fn a_flood_of_names_and_addresses_costs_bounded_memory() {
        let throttle = SignInThrottle::with_bounds(QUICK, 500, 1);
        for n in 0..20_000u32 {
            let address = Some(IpAddr::V4(n.into()));
            let _ = throttle.admit(&format!("name-{n}"), address).await;
        }
        let Counters::InProcess {
            by_address,
            by_name,
            ..
        } = &throttle.counters
        else {
            panic!("counts in memory");
        };
        assert!(by_address.len() <= 500, "{}", by_address.len());
        assert!(by_name.len() <= 500, "{}", by_name.len());
    }

    #[tokio::test]
    async fn hashing_waits_briefly_then_refuses_with_retry_info() {
        let throttle = Arc::new(SignInThrottle::with_bounds(QUICK, 1_000, 1));
        let running = throttle.hashing_slot().await.unwrap();
        // A few may wait for the one hasher...
        let waiting: Vec<_> = (0..WAITING_PER_HASHER)
            .map(|_| {
                let throttle = throttle.clone();
                tokio::spawn(async move { throttle.hashing_slot().await.map(drop) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiting.iter().all(|w| !w.is_finished()), "they wait");
        // ... the next is refused at once.
        let status = throttle.hashing_slot().await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.get_details_retry_info().unwrap().retry_delay,
            Some(BUSY_RETRY)
        );
        // The waiting ones hash in turn once the hasher is free.
        drop(running);
        for attempt in waiting {
            attempt.await.unwrap().unwrap();
        }
        throttle.hashing_slot().await.unwrap();
    }
}
