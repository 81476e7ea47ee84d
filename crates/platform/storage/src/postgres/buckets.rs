//! Token buckets and daily counts kept in PostgreSQL, so every replica of a
//! BFF draws from the same bucket.
//!
//! A bucket is one row. Taking a token is one statement, `INSERT ... ON
//! CONFLICT DO UPDATE ... RETURNING`, which refills the row from the time
//! elapsed on the database server's clock (`now()`), counts the call
//! against the day's quota (UTC days of that clock) and takes the token,
//! or refuses and says why. PostgreSQL locks the row for the statement, so
//! callers in any number of processes are served one at a time per bucket:
//! together they admit exactly what one process would (the burst, the rate
//! over time, the day's quota), with no tolerance to state beyond the
//! refill of the time between two statements.
//!
//! Rows are forgotten once they say nothing a fresh bucket would not (the
//! bucket full again and, for a daily quota, the day over), by a sweep at
//! most once a minute per process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::PgPool;
use crate::StorageError;

/// The table [`SharedBuckets`] keeps its rows in, for a store's migrations
/// (in the store's own schema).
pub const BUCKETS_TABLE: &str = "
CREATE TABLE limit_buckets (
    bucket       TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refilled_at  DOUBLE PRECISION NOT NULL,
    day          BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    admitted     BOOLEAN NOT NULL,
    forget_after DOUBLE PRECISION NOT NULL
);
CREATE INDEX limit_buckets_forget ON limit_buckets (forget_after);
";

/// What one bucket allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Tokens the bucket holds at most (and at first).
    pub burst: u32,
    /// Calls per UTC day, if limited.
    pub daily_quota: Option<u64>,
}

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Take {
    /// Taken.
    Admitted,
    /// The bucket is empty; a token is back after `retry_after`.
    Empty {
        /// When to come back.
        retry_after: Duration,
    },
    /// The day's quota is used up; it renews at the next UTC midnight.
    QuotaUsedUp {
        /// When to come back.
        retry_after: Duration,
    },
}

const DAY_SECS: f64 = 86_400.0;

/// How often a process deletes forgotten rows.
const SWEEP_EVERY: u64 = 60;

/// Token buckets in a store's `limit_buckets` table ([`BUCKETS_TABLE`]).
#[derive(Debug, Clone)]
pub struct SharedBuckets {
    pool: PgPool,
    last_sweep: Arc<AtomicU64>,
}

/// `{today}`: the calls already counted today; `{refilled}`: the tokens
/// after the refill; `{admit}`: whether this call is taken.
const TODAY: &str = "(CASE WHEN b.day = excluded.day THEN b.used ELSE 0 END)";
const REFILLED: &str =
    "LEAST($2::float8, b.tokens + GREATEST(0, excluded.refilled_at - b.refilled_at) * $6::float8)";

fn take_sql() -> String {
    let admit = format!("({TODAY} < $3::bigint AND {REFILLED} >= 1)");
    format!(
        "INSERT INTO limit_buckets AS b (bucket, tokens, refilled_at, day, used, admitted, forget_after)
         SELECT $1, $2::float8 - 1, c.now, floor(c.now / 86400)::bigint, 1, true,
                GREATEST(c.now + $4::float8,
                         CASE WHEN $5::bool THEN (floor(c.now / 86400) + 1) * 86400 ELSE 0 END)
         FROM (SELECT extract(epoch FROM now())::float8 AS now) c
         ON CONFLICT (bucket) DO UPDATE SET
             tokens = {REFILLED} - CASE WHEN {admit} THEN 1 ELSE 0 END,
             used = {TODAY} + CASE WHEN {admit} THEN 1 ELSE 0 END,
             admitted = {admit},
             day = excluded.day,
             refilled_at = GREATEST(b.refilled_at, excluded.refilled_at),
             forget_after = excluded.forget_after
         RETURNING admitted, tokens, used, refilled_at, day"
    )
}

impl SharedBuckets {
    /// Buckets in `pool`'s schema, whose migrations created
    /// [`BUCKETS_TABLE`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            last_sweep: Arc::new(AtomicU64::new(unix_now())),
        }
    }

    /// Takes one token from `bucket` (created full on first use) at `rate`.
    pub async fn take(&self, bucket: &str, rate: BucketRate) -> Result<Take, StorageError> {
        self.sweep_now_and_then();
        if rate.daily_quota == Some(0) {
            let now = unix_now() as f64;
            return Ok(Take::QuotaUsedUp {
                retry_after: until_midnight(now),
            });
        }
        if rate.burst == 0 || !(rate.per_second > 0.0 && rate.per_second.is_finite()) {
            return Err(StorageError::Task(format!("unusable bucket rate {rate:?}")));
        }
        let burst = f64::from(rate.burst);
        let quota = rate
            .daily_quota
            .map_or(i64::MAX, |q| i64::try_from(q).unwrap_or(i64::MAX));
        let seconds_to_full = burst / rate.per_second;
        let metered = rate.daily_quota.is_some();
        let bucket = bucket.to_owned();
        let row = self
            .pool
            .write(|mut conn| async move {
                let statement = conn.prepare_cached(&take_sql()).await?;
                Ok(conn
                    .query_one(
                        &statement,
                        &[
                            &bucket,
                            &burst,
                            &quota,
                            &seconds_to_full,
                            &metered,
                            &rate.per_second,
                        ],
                    )
                    .await?)
            })
            .await?;
        let admitted: bool = row.get(0);
        let tokens: f64 = row.get(1);
        let used: i64 = row.get(2);
        let now: f64 = row.get(3);
        if admitted {
            return Ok(Take::Admitted);
        }
        if used >= quota {
            return Ok(Take::QuotaUsedUp {
                retry_after: until_midnight(now),
            });
        }
        let wait = ((1.0 - tokens) / rate.per_second).max(0.001);
        Ok(Take::Empty {
            retry_after: Duration::from_secs_f64(wait),
        })
    }

    /// Deletes the rows a fresh bucket would replace unchanged; how many.
    pub async fn sweep(&self) -> Result<u64, StorageError> {
        self.pool
            .write(|conn| async move {
                Ok(conn
                    .execute(
                        "DELETE FROM limit_buckets WHERE forget_after < extract(epoch FROM now())",
                        &[],
                    )
                    .await?)
            })
            .await
    }

    /// Starts a [`sweep`](Self::sweep) in the background when the last one
    /// of this process is a minute old.
    fn sweep_now_and_then(&self) {
        let now = unix_now();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last + SWEEP_EVERY
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let buckets = self.clone();
        tokio::spawn(async move {
            if let Err(error) = buckets.sweep().await {
                tracing::warn!(%error, "forgetting full limit buckets failed");
            }
        });
    }
}

fn until_midnight(now: f64) -> Duration {
    let midnight = ((now / DAY_SECS).floor() + 1.0) * DAY_SECS;
    Duration::from_secs_f64((midnight - now).max(1.0))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
