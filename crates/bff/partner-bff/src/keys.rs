//! The partner BFF's own store of API keys. A key's secret is never stored:
//! only its SHA-256, next to the key id, tenant, scopes and plan.
//!
//! The store is a SQLite file (`partner.db`) by default, or the schema
//! `partner_bff` of a PostgreSQL database, which every replica of the BFF
//! shares: then each key's token bucket and daily count live there too
//! ([`SharedLimits`]), so the replicas together admit what one process
//! would, exactly.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tailor_auth::{ApiKey, ApiKeyRecord, ApiKeyStore, BoxFuture};
use tailor_interceptors::limits::{Plan, QuotaLedger, Refusal};
use tailor_interceptors::shared_limits::SharedLimits;
use tailor_storage::rusqlite::{OptionalExtension, params};
use tailor_storage::{
    BUCKETS_TABLE, BucketRate, Database, Migration, PgPool, PgPoolOptions, PostgresUrl,
    SharedBuckets, SqlitePool, SqlitePoolOptions, StorageError, Take,
};

/// The scopes a key can carry.
pub mod scopes {
    /// Read the catalogue feed.
    pub const CATALOG_READ: &str = "catalog.read";
    /// Read availability.
    pub const AVAILABILITY_READ: &str = "availability.read";
    /// Place orders.
    pub const ORDERS_WRITE: &str = "orders.write";
    /// Read the tenant's orders.
    pub const ORDERS_READ: &str = "orders.read";
    /// Every scope.
    pub const ALL: [&str; 4] = [CATALOG_READ, AVAILABILITY_READ, ORDERS_WRITE, ORDERS_READ];
}

/// What can go wrong managing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A scope that does not exist.
    #[error("unknown scope {0:?} (known: {known})", known = scopes::ALL.join(", "))]
    UnknownScope(String),
    /// A plan that does not exist.
    #[error("unknown plan {0:?} (known: {known})", known = crate::plans::ALL.join(", "))]
    UnknownPlan(String),
    /// A tenant name that is empty or has odd characters.
    #[error("tenant must be 1 to 64 characters of a-z, 0-9, '-' or '_'")]
    InvalidTenant,
    /// No key with that id.
    #[error("no key with id {0}")]
    NoSuchKey(String),
}

/// One key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public id.
    pub key_id: String,
    /// Owner.
    pub tenant: String,
    /// Human label.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Plan.
    pub plan: String,
    /// Whether revoked.
    pub revoked: bool,
}

/// How long a looked-up key is trusted without reading the store again.
/// A key revoked through this store is dropped at once; one revoked by
/// another process (the `keys revoke` command) stops working within this.
const CACHE_TTL: Duration = Duration::from_secs(2);

/// Look-ups the cache holds at most, found and not found alike. Key ids
/// are 16 hex digits (checked before any look-up), so this is well under a
/// few megabytes; past it, the look-ups used least are dropped.
const CACHE_CAPACITY: u64 = 10_000;

/// The key store, with a short-lived, bounded cache of lookups so a
/// partner's every call (and every refused call of a flood) does not cost a
/// database read, and a flood of made-up key ids costs bounded memory.
#[derive(Clone)]
pub struct KeyStore {
    engine: Engine,
    /// A key id's record, or `None` when the store has no such key.
    cache: Cache<String, Option<ApiKeyRecord>>,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqlitePool),
    Postgres {
        pool: PgPool,
        buckets: SharedBuckets,
    },
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("engine", &self.engine)
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

/// The BFF's schema in a shared PostgreSQL database.
pub const SCHEMA: &str = "partner_bff";

const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    scopes      TEXT NOT NULL,
    plan        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);
CREATE TABLE quota_usage (
    key_id TEXT NOT NULL,
    day    BIGINT NOT NULL,
    used   BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);
",
    ),
    // Each key's token bucket and day count, shared by the replicas.
    Migration::new(2, BUCKETS_TABLE),
];

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    scopes      TEXT NOT NULL,
    plan        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);
CREATE TABLE IF NOT EXISTS quota_usage (
    key_id TEXT NOT NULL,
    day    INTEGER NOT NULL,
    used   INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
);
";

/// The SQLite schema; the first step creates the tables only if missing,
/// so files from before migrations open unchanged.
const SQLITE_MIGRATIONS: &[Migration] = &[Migration::new(1, SQLITE_SCHEMA)];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl KeyStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, KeyStoreError> {
        Self::open_with_cache(path, CACHE_CAPACITY)
    }

    fn open_with_cache(path: &Path, capacity: u64) -> Result<Self, KeyStoreError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), SQLITE_MIGRATIONS)?;
        Ok(Self::with_engine(Engine::Sqlite(pool), capacity))
    }

    /// Connects to the PostgreSQL database at `url` (schema [`SCHEMA`],
    /// migrated), where every replica keeps its keys and limits.
    pub async fn connect(url: &PostgresUrl) -> Result<Self, KeyStoreError> {
        let pool =
            PgPool::connect(url, SCHEMA, POSTGRES_MIGRATIONS, PgPoolOptions::default()).await?;
        let buckets = SharedBuckets::new(pool.clone());
        Ok(Self::with_engine(
            Engine::Postgres { pool, buckets },
            CACHE_CAPACITY,
        ))
    }

    /// The store in `database`: [`open`](Self::open) or
    /// [`connect`](Self::connect).
    pub async fn open_database(database: &Database) -> Result<Self, KeyStoreError> {
        match database {
            Database::Sqlite(path) => Self::open(path),
            Database::Postgres(url) => Self::connect(url).await,
        }
    }

    fn with_engine(engine: Engine, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(CACHE_TTL)
            .build();
        Self { engine, cache }
    }

    /// The limits every replica shares, when the store is in PostgreSQL;
    /// `None` for SQLite, whose single process counts in memory.
    pub fn shared_limits(&self) -> Option<Arc<dyn SharedLimits>> {
        match self.engine {
            Engine::Sqlite(_) => None,
            Engine::Postgres { .. } => Some(Arc::new(self.clone())),
        }
    }

    /// Creates a key; the returned token is the only time the secret exists
    /// outside the partner's hands.
    pub async fn create(
        &self,
        tenant: &str,
        name: &str,
        scopes: &[String],
        plan: &str,
    ) -> Result<(ApiKey, KeyInfo), KeyStoreError> {
        let tenant_ok = (1..=64).contains(&tenant.len())
            && tenant
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !tenant_ok {
            return Err(KeyStoreError::InvalidTenant);
        }
        if let Some(unknown) = scopes.iter().find(|s| !scopes::ALL.contains(&s.as_str())) {
            return Err(KeyStoreError::UnknownScope(unknown.clone()));
        }
        if !crate::plans::ALL.contains(&plan) {
            return Err(KeyStoreError::UnknownPlan(plan.to_owned()));
        }
        let key = ApiKey::generate();
        let info = KeyInfo {
            key_id: key.key_id.clone(),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            scopes: scopes.to_vec(),
            plan: plan.to_owned(),
            revoked: false,
        };
        let row = info.clone();
        let hash = key.secret_hash.to_vec();
        match &self.engine {
            Engine::Sqlite(pool) => {
                pool.write(move |conn| {
                    conn.execute(
                        "INSERT INTO api_keys (key_id, tenant, name, secret_hash, scopes, plan, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![row.key_id, row.tenant, row.name, hash, row.scopes.join(" "), row.plan, now()],
                    )?;
                    Ok(())
                })
                .await?
            }
            Engine::Postgres { pool, .. } => {
                pool.write(|conn| async move {
                    conn.execute(
                        "INSERT INTO api_keys (key_id, tenant, name, secret_hash, scopes, plan, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[&row.key_id, &row.tenant, &row.name, &hash, &row.scopes.join(" "), &row.plan, &now()],
                    )
                    .await?;
                    Ok(())
                })
                .await?
            }
        }
        Ok((key, info))
    }

    /// Every key, optionally of one tenant.
    pub async fn list(&self, tenant: Option<String>) -> Result<Vec<KeyInfo>, KeyStoreError> {
        const LIST: &str = "SELECT key_id, tenant, name, scopes, plan, revoked_at IS NOT NULL
                            FROM api_keys WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, created_at";
        let info = |key_id, tenant, name, scopes: String, plan, revoked| KeyInfo {
            key_id,
            tenant,
            name,
            scopes: split_scopes(&scopes),
            plan,
            revoked,
        };
        Ok(match &self.engine {
            Engine::Sqlite(pool) => {
                pool.read(move |conn| {
                    // SQLite spells the parameter `?1`; the text is otherwise the same.
                    let mut statement =
                        conn.prepare(&LIST.replace("$1::text", "?1").replace("$1", "?1"))?;
                    let rows = statement.query_map(params![tenant], |row| {
                        Ok(info(
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                        ))
                    })?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Engine::Postgres { pool, .. } => {
                pool.read(|conn| async move {
                    let rows = conn.query(LIST, &[&tenant]).await?;
                    Ok(rows
                        .iter()
                        .map(|row| {
                            info(
                                row.get(0),
                                row.get(1),
                                row.get(2),
                                row.get(3),
                                row.get(4),
                                row.get(5),
                            )
                        })
                        .collect())
                })
                .await?
            }
        })
    }

    /// Revokes a key; calls with it fail from now on (through another
    /// replica's cache, within [`CACHE_TTL`]).
    pub async fn revoke(&self, key_id: &str) -> Result<(), KeyStoreError> {
        let id = key_id.to_owned();
        let changed = match &self.engine {
            Engine::Sqlite(pool) => {
                pool.write(move |conn| {
                    Ok(conn.execute(
                        "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                        params![id, now()],
                    )? as u64)
                })
                .await?
            }
            Engine::Postgres { pool, .. } => {
                pool.write(|conn| async move {
                    Ok(conn
                        .execute(
                            "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
                            &[&id, &now()],
                        )
                        .await?)
                })
                .await?
            }
        };
        self.cache.invalidate(key_id);
        if changed == 0 && !self.list(None).await?.iter().any(|k| k.key_id == key_id) {
            return Err(KeyStoreError::NoSuchKey(key_id.to_owned()));
        }
        Ok(())
    }

    async fn record(&self, key_id: String) -> Result<Option<ApiKeyRecord>, StorageError> {
        const RECORD: &str =
            "SELECT key_id, tenant, secret_hash, scopes, plan, revoked_at IS NOT NULL
                              FROM api_keys WHERE key_id = $1";
        let record = |key_id, tenant, hash: Vec<u8>, scopes: String, plan, revoked| ApiKeyRecord {
            key_id,
            tenant,
            secret_hash: hash.try_into().unwrap_or([0; 32]),
            scopes: split_scopes(&scopes),
            plan,
            revoked,
        };
        match &self.engine {
            Engine::Sqlite(pool) => {
                pool.read(move |conn| {
                    Ok(conn
                        .query_row(&RECORD.replace("$1", "?1"), params![key_id], |row| {
                            Ok(record(
                                row.get(0)?,
                                row.get(1)?,
                                row.get(2)?,
                                row.get(3)?,
                                row.get(4)?,
                                row.get(5)?,
                            ))
                        })
                        .optional()?)
                })
                .await
            }
            Engine::Postgres { pool, .. } => {
                pool.read(|mut conn| async move {
                    let statement = conn.prepare_cached(RECORD).await?;
                    let row = conn.query_opt(&statement, &[&key_id]).await?;
                    Ok(row.map(|row| {
                        record(
                            row.get(0),
                            row.get(1),
                            row.get(2),
                            row.get(3),
                            row.get(4),
                            row.get(5),
                        )
                    }))
                })
                .await
            }
        }
    }
}

fn split_scopes(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

impl ApiKeyStore for KeyStore {
    fn find<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, String>> {
        Box::pin(async move {
            if let Some(record) = self.cache.get(key_id) {
                return Ok(record);
            }
            let record = self.record(key_id.to_owned()).await.map_err(|e| {
                tracing::error!(error = %e, "reading the key store failed");
                "key store unavailable".to_owned()
            })?;
            self.cache.insert(key_id.to_owned(), record.clone());
            Ok(record)
        })
    }
}

/// Each key's token bucket and day count in PostgreSQL, one row per key
/// taken from atomically, so every replica draws from the same allowance.
impl SharedLimits for KeyStore {
    fn take<'a>(
        &'a self,
        key_id: &'a str,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Result<(), Refusal>, String>> {
        Box::pin(async move {
            let Engine::Postgres { buckets, .. } = &self.engine else {
                return Err("a SQLite key store keeps no shared limits".to_owned());
            };
            let rate = BucketRate {
                per_second: plan.per_second,
                burst: plan.burst,
                daily_quota: (plan.daily_quota != u64::MAX).then_some(plan.daily_quota),
            };
            let taken = buckets
                .take(&format!("key {key_id}"), rate)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match taken {
                Take::Admitted => Ok(()),
                Take::Empty { retry_after } => Err(Refusal::Rate { retry_after }),
                Take::QuotaUsedUp { retry_after } => Err(Refusal::Quota {
                    retry_after,
                    limit: plan.daily_quota,
                }),
            })
        })
    }
}

/// Each key's calls per UTC day, so daily quotas outlive restarts of a
/// BFF that counts in memory.
impl QuotaLedger for KeyStore {
    fn load(&self, day: u64) -> BoxFuture<'_, Result<HashMap<String, u64>, String>> {
        const LOAD: &str = "SELECT key_id, used FROM quota_usage WHERE day = $1";
        let day = day as i64;
        Box::pin(async move {
            let counts = match &self.engine {
                Engine::Sqlite(pool) => {
                    pool.read(move |conn| {
                        let mut statement = conn.prepare(&LOAD.replace("$1", "?1"))?;
                        let rows = statement.query_map(params![day], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
                        })?;
                        Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
                    })
                    .await
                }
                Engine::Postgres { pool, .. } => {
                    pool.read(|conn| async move {
                        let rows = conn.query(LOAD, &[&day]).await?;
                        Ok(rows
                            .iter()
                            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
                            .collect())
                    })
                    .await
                }
            };
            counts.map_err(|e| e.to_string())
        })
    }

    fn save(&self, counts: Vec<(String, u64, u64)>) -> BoxFuture<'_, Result<(), String>> {
        const SAVE: &str = "INSERT INTO quota_usage (key_id, day, used) VALUES ($1, $2, $3)
                            ON CONFLICT (key_id, day) DO UPDATE SET used = excluded.used";
        // Yesterday and before are of no use to the limiter.
        const FORGET: &str = "DELETE FROM quota_usage WHERE day < $1";
        let counts: Vec<(String, i64, i64)> = counts
            .into_iter()
            .map(|(key, day, used)| (key, day as i64, used as i64))
            .collect();
        let yesterday = counts
            .iter()
            .map(|(_, day, _)| *day)
            .max()
            .map(|today| today - 1);
        Box::pin(async move {
            let saved = match &self.engine {
                Engine::Sqlite(pool) => {
                    pool.write(move |conn| {
                        let tx = conn.transaction()?;
                        let sqlite = |sql: &str| sql.replace('$', "?");
                        for (key_id, day, used) in &counts {
                            tx.execute(&sqlite(SAVE), params![key_id, day, used])?;
                        }
                        if let Some(yesterday) = yesterday {
                            tx.execute(&sqlite(FORGET), params![yesterday])?;
                        }
                        tx.commit()?;
                        Ok(())
                    })
                    .await
                }
                Engine::Postgres { pool, .. } => {
                    pool.write(|mut conn| async move {
                        let tx = conn.transaction().await?;
                        for (key_id, day, used) in &counts {
                            tx.execute(SAVE, &[key_id, day, used]).await?;
                        }
                        if let Some(yesterday) = yesterday {
                            tx.execute(FORGET, &[&yesterday]).await?;
                        }
                        tx.commit().await?;
                        Ok(())
                    })
                    .await
                }
            };
            saved.map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use tailor_auth::{ApiKeyAuthenticator, AuthError};

    use super::*;

    #[tokio::test]
    async fn keys_are_stored_hashed_verified_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partner.db");
        let store = KeyStore::open(&path).unwrap();
        let key = conformance::keys_verify_list_and_revoke(&store).await;
        let raw = std::fs::read(&path).unwrap();
        let secret = key.token.rsplit('_').next().unwrap();
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret must never reach the database file"
        );
        assert!(store.shared_limits().is_none(), "SQLite counts in memory");
    }

    #[tokio::test]
    async fn quota_counts_are_kept_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(&dir.path().join("partner.db")).unwrap();
        conformance::quota_counts_are_kept_per_day(&store).await;
    }

    #[tokio::test]
    async fn a_flood_of_unknown_key_ids_stays_within_the_cache_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open_with_cache(&dir.path().join("partner.db"), 500).unwrap();
        let all: Vec<String> = scopes::ALL.iter().map(|s| s.to_string()).collect();
        let (key, _) = store
            .create("acme", "test", &all, "standard")
            .await
            .unwrap();
        let auth = ApiKeyAuthenticator::new(std::sync::Arc::new(store.clone()));
        for n in 0..5_000u64 {
            let bogus = format!("tk_{n:016x}_{}", "ab".repeat(32));
            assert_eq!(
                auth.verify(&bogus).await,
                Err(AuthError::Invalid("unknown API key"))
            );
            if n % 100 == 0 {
                auth.verify(&key.token).await.unwrap();
            }
        }
        store.cache.run_pending_tasks();
        let held = store.cache.entry_count();
        assert!(held <= 500, "{held} look-ups held");
        // The real key still works, and a revocation is seen at once.
        auth.verify(&key.token).await.unwrap();
        store.revoke(&key.key_id).await.unwrap();
        assert_eq!(
            auth.verify(&key.token).await,
            Err(AuthError::Invalid("API key revoked"))
        );
    }
}
