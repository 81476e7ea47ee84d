//! The web BFF's own store of users and browser sessions: a SQLite file
//! (`web.db`) by default, or the schema `web_bff` of a PostgreSQL database,
//! which every replica of the BFF shares, so a session started on one is
//! accepted by all. There the sign-in limits' buckets and the known
//! (name, address) pairs live too ([`crate::throttle`]), so the replicas
//! together slow guessing as one process would.
//!
//! Passwords are kept as PBKDF2-HMAC-SHA256 with a per-user salt and the
//! iteration count stored beside the hash, so the cost can rise later
//! without invalidating existing users. A sign-in for an unknown user does
//! the same work as one for a known user, so timing does not tell which
//! user names exist. Sessions are kept by the SHA-256 of their handle only.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Sha256;
use subtle::ConstantTimeEq;
use tailor_auth::{BoxFuture, SessionStore, hash_session_handle, new_session_handle};
use tailor_interceptors::context::{AuthMethod, Identity};
use tailor_storage::rusqlite::{OptionalExtension, params};
use tailor_storage::{
    BUCKETS_TABLE, BucketRate, Database, Migration, PgPool, PgPoolOptions, PostgresUrl,
    SharedBuckets, SqlitePool, SqlitePoolOptions, StorageError, Take,
};

/// PBKDF2 rounds for new passwords (the 2023 OWASP figure for HMAC-SHA256).
const ITERATIONS: u32 = 600_000;

/// What can go wrong managing accounts.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// User names are what people type: keep them simple.
    #[error("user name must be 1 to 64 characters of a-z, 0-9, '.', '-' or '_'")]
    InvalidUsername,
    /// Too short to be worth protecting.
    #[error("password must be at least 4 characters")]
    WeakPassword,
    /// Already taken.
    #[error("user {0} already exists")]
    UserExists(String),
}

/// A user who may sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id orders are placed for.
    pub user_id: String,
    /// The name to greet them with.
    pub display_name: String,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Whose.
    pub user: User,
    /// Unix seconds when it ends.
    pub expires_at: i64,
}

/// Users and sessions, in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Accounts {
    engine: Engine,
    session_ttl: Duration,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqlitePool),
    Postgres {
        pool: PgPool,
        buckets: SharedBuckets,
    },
}

/// The BFF's schema in a shared PostgreSQL database.
pub const SCHEMA: &str = "web_bff";

const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    salt          BYTEA NOT NULL,
    password_hash BYTEA NOT NULL,
    iterations    INTEGER NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE TABLE sessions (
    handle_hash  BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
-- (name, address) pairs that signed in, so strangers elsewhere cannot
-- slow them down (crate::throttle)
CREATE TABLE known_sign_ins (
    pair        TEXT PRIMARY KEY,
    known_until BIGINT NOT NULL
);
CREATE INDEX known_sign_ins_until ON known_sign_ins (known_until);
",
    ),
    // The sign-in attempt buckets, shared by the replicas.
    Migration::new(2, BUCKETS_TABLE),
];

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    salt          BLOB NOT NULL,
    password_hash BLOB NOT NULL,
    iterations    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    handle_hash  BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
";

/// The SQLite schema; the first step creates the tables only if missing,
/// so files from before migrations open unchanged.
const SQLITE_MIGRATIONS: &[Migration] = &[Migration::new(1, SQLITE_SCHEMA)];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut hash = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut hash);
    hash
}

/// Runs the deliberately slow hash off the async threads.
async fn derive_blocking(password: &str, salt: Vec<u8>, iterations: u32) -> [u8; 32] {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || derive(&password, &salt, iterations))
        .await
        .unwrap_or([0; 32])
}

impl Accounts {
    /// Opens (creating) the SQLite store at `path`; sessions last
    /// `session_ttl`.
    pub fn open(path: &Path, session_ttl: Duration) -> Result<Self, AccountError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), SQLITE_MIGRATIONS)?;
        Ok(Self {
            engine: Engine::Sqlite(pool),
            session_ttl,
        })
    }

    /// Connects to the PostgreSQL database at `url` (schema [`SCHEMA`],
    /// migrated), which every replica shares; sessions last `session_ttl`.
    pub async fn connect(url: &PostgresUrl, session_ttl: Duration) -> Result<Self, AccountError> {
        let pool =
            PgPool::connect(url, SCHEMA, POSTGRES_MIGRATIONS, PgPoolOptions::default()).await?;
        let buckets = SharedBuckets::new(pool.clone());
        Ok(Self {
            engine: Engine::Postgres { pool, buckets },
            session_ttl,
        })
    }

    /// The store in `database`: [`open`](Self::open) or
    /// [`connect`](Self::connect).
    pub async fn open_database(
        database: &Database,
        session_ttl: Duration,
    ) -> Result<Self, AccountError> {
        match database {
            Database::Sqlite(path) => Self::open(path, session_ttl),
            Database::Postgres(url) => Self::connect(url, session_ttl).await,
        }
    }

    /// Whether every replica shares this store (PostgreSQL), and with it
    /// the sign-in limits.
    pub fn is_shared(&self) -> bool {
        matches!(self.engine, Engine::Postgres { .. })
    }

    /// Adds a user; its id is `user-<username>`.
    pub async fn add_user(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<User, AccountError> {
        let valid = (1..=64).contains(&username.len())
            && username.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        if !valid {
            return Err(AccountError::InvalidUsername);
        }
        if password.chars().count() < 4 {
            return Err(AccountError::WeakPassword);
        }
        let salt = rand::random::<[u8; 16]>().to_vec();
        let hash = derive_blocking(password, salt.clone(), ITERATIONS)
            .await
            .to_vec();
        let user = User {
            user_id: format!("user-{username}"),
            display_name: if display_name.is_empty() {
                username.to_owned()
            } else {
                display_name.to_owned()
            },
        };
        let (name, row) = (username.to_owned(), user.clone());
        let inserted = match &self.engine {
            Engine::Sqlite(pool) => {
                pool.write(move |conn| {
                    Ok(conn.execute(
                        "INSERT OR IGNORE INTO users
                         (username, user_id, display_name, salt, password_hash, iterations, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![name, row.user_id, row.display_name, salt, hash, ITERATIONS, now()],
                    )? as u64)
                })
                .await?
            }
            Engine::Postgres { pool, .. } => {
                pool.write(|conn| async move {
                    Ok(conn
                        .execute(
                            "INSERT INTO users
                             (username, user_id, display_name, salt, password_hash, iterations, created_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                            &[&name, &row.user_id, &row.display_name, &salt, &hash, &(ITERATIONS as i32), &now()],
                        )
                        .await?)
                })
                .await?
            }
        };
        if inserted == 0 {
            return Err(AccountError::UserExists(username.to_owned()));
        }
        Ok(user)
    }

    /// The user, when `password` is theirs.
    pub async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, StorageError> {
        const FIND: &str = "SELECT user_id, display_name, salt, password_hash, iterations
                            FROM users WHERE username = $1";
        let name = username.to_owned();
        let row: Option<(User, Vec<u8>, Vec<u8>, u32)> = match &self.engine {
            Engine::Sqlite(pool) => {
                pool.read(move |conn| {
                    Ok(conn
                        .query_row(&FIND.replace("$1", "?1"), params![name], |row| {
                            Ok((
                                User {
                                    user_id: row.get(0)?,
                                    display_name: row.get(1)?,
                                },
                                row.get(2)?,
                                row.get(3)?,
                                row.get(4)?,
                            ))
                        })
                        .optional()?)
                })
                .await?
            }
            Engine::Postgres { pool, .. } => {
                pool.read(|mut conn| async move {
                    let statement = conn.prepare_cached(FIND).await?;
                    let row = conn.query_opt(&statement, &[&name]).await?;
                    Ok(row.map(|row| {
                        (
                            User {
                                user_id: row.get(0),
                                display_name: row.get(1),
                            },
                            row.get(2),
                            row.get(3),
                            row.get::<_, i32>(4).max(1) as u32,
                        )
                    }))
                })
                .await?
            }
        };
        let Some((user, salt, stored, iterations)) = row else {
            // Same cost as a real check, so response time reveals nothing.
            derive_blocking(password, vec![0; 16], ITERATIONS).await;
            return Ok(None);
        };
        let presented = derive_blocking(password, salt, iterations).await;
        Ok(bool::from(presented.ct_eq(&stored[..])).then_some(user))
    }

    /// Starts a session for `user`; returns the handle (for the cookie,
    /// never stored) and the session.
    pub async fn start_session(&self, user: User) -> Result<(String, Session), StorageError> {
        let handle = new_session_handle();
        let hash = hash_session_handle(&handle).to_vec();
        let started = now();
        let session = Session {
            user,
            expires_at: started + self.session_ttl.as_secs() as i64,
        };
        let row = session.clone();
        const FORGET: &str = "DELETE FROM sessions WHERE expires_at <= $1";
        const START: &str =
            "INSERT INTO sessions (handle_hash, user_id, display_name, created_at, expires_at)
                             VALUES ($1, $2, $3, $4, $5)";
        match &self.engine {
            Engine::Sqlite(pool) => {
                pool.write(move |conn| {
                    conn.execute(&FORGET.replace('$', "?"), params![started])?;
                    conn.execute(
                        &START.replace('$', "?"),
                        params![
                            hash,
                            row.user.user_id,
                            row.user.display_name,
                            started,
                            row.expires_at
                        ],
                    )?;
                    Ok(())
                })
                .await?
            }
            Engine::Postgres { pool, .. } => {
                pool.write(|conn| async move {
                    conn.execute(FORGET, &[&started]).await?;
                    conn.execute(
                        START,
                        &[
                            &hash,
                            &row.user.user_id,
                            &row.user.display_name,
                            &started,
                            &row.expires_at,
                        ],
                    )
                    .await?;
                    Ok(())
                })
                .await?
            }
        }
        Ok((handle, session))
    }

    /// The live session behind `handle_hash`.
    pub async fn session(&self, handle_hash: [u8; 32]) -> Result<Option<Session>, StorageError> {
        const FIND: &str = "SELECT user_id, display_name, expires_at FROM sessions
                            WHERE handle_hash = $1 AND expires_at > $2";
        let session = |user_id, display_name, expires_at| Session {
            user: User {
                user_id,
                display_name,
            },
            expires_at,
        };
        let hash = handle_hash.to_vec();
        match &self.engine {
            Engine::Sqlite(pool) => {
                pool.read(move |conn| {
                    Ok(conn
                        .query_row(&FIND.replace('$', "?"), params![hash, now()], |row| {
                            Ok(session(row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()?)
                })
                .await
            }
            Engine::Postgres { pool, .. } => {
                pool.read(|mut conn| async move {
                    let statement = conn.prepare_cached(FIND).await?;
                    let row = conn.query_opt(&statement, &[&hash, &now()]).await?;
                    Ok(row.map(|row| session(row.get(0), row.get(1), row.get(2))))
                })
                .await
            }
        }
    }

    /// Ends the session behind `handle_hash`, if it exists.
    pub async fn end_session(&self, handle_hash: [u8; 32]) -> Result<(), StorageError> {
        const END: &str = "DELETE FROM sessions WHERE handle_hash = $1";
        let hash = handle_hash.to_vec();
        match &self.engine {
            Engine::Sqlite(pool) => {
                pool.write(move |conn| {
                    conn.execute(&END.replace('$', "?"), params![hash])?;
                    Ok(())
                })
                .await
            }
            Engine::Postgres { pool, .. } => {
                pool.write(|conn| async move {
                    conn.execute(END, &[&hash]).await?;
                    Ok(())
                })
                .await
            }
        }
    }

    /// Takes a sign-in attempt from the shared bucket `bucket`; `None` when
    /// the store is SQLite, whose single process counts in memory.
    pub(crate) async fn take_attempt(
        &self,
        bucket: &str,
        rate: BucketRate,
    ) -> Option<Result<Take, StorageError>> {
        match &self.engine {
            Engine::Sqlite(_) => None,
            Engine::Postgres { buckets, .. } => Some(buckets.take(bucket, rate).await),
        }
    }

    /// Whether the (name, address) `pair` signed in within its time; always
    /// false on SQLite (its process remembers pairs itself).
    pub(crate) async fn is_known_pair(&self, pair: &str) -> Result<bool, StorageError> {
        let Engine::Postgres { pool, .. } = &self.engine else {
            return Ok(false);
        };
        let pair = pair.to_owned();
        pool.read(|mut conn| async move {
            let statement = conn
                .prepare_cached("SELECT 1 FROM known_sign_ins WHERE pair = $1 AND known_until > $2")
                .await?;
            Ok(conn
                .query_opt(&statement, &[&pair, &now()])
                .await?
                .is_some())
        })
        .await
    }

    /// Remembers that `pair` signed in, for `known_for`; forgets pairs whose
    /// time is up. Nothing on SQLite.
    pub(crate) async fn remember_pair(
        &self,
        pair: &str,
        known_for: Duration,
    ) -> Result<(), StorageError> {
        let Engine::Postgres { pool, .. } = &self.engine else {
            return Ok(());
        };
        let pair = pair.to_owned();
        let until = now() + known_for.as_secs() as i64;
        pool.write(|conn| async move {
            conn.execute(
                "INSERT INTO known_sign_ins (pair, known_until) VALUES ($1, $2)
                 ON CONFLICT (pair) DO UPDATE SET known_until = excluded.known_until",
                &[&pair, &until],
            )
            .await?;
            conn.execute(
                "DELETE FROM known_sign_ins WHERE known_until <= $1",
                &[&now()],
            )
            .await?;
            Ok(())
        })
        .await
    }
}

impl SessionStore for Accounts {
    fn identity<'a>(
        &'a self,
        handle_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<Identity>, String>> {
        Box::pin(async move {
            let session = self
                .session(*handle_hash)
                .await
                .map_err(|e| e.to_string())?;
            Ok(session.map(|s| Identity {
                subject: s.user.user_id,
                tenant: None,
                scopes: Vec::new(),
                method: AuthMethod::Session,
                key_id: None,
                plan: None,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("web.db"), Duration::from_secs(60)).unwrap();
        (dir, accounts)
    }

    #[tokio::test]
    async fn passwords_verify_and_are_not_stored() {
        let (dir, accounts) = open();
        conformance::passwords_verify_and_names_are_checked(&accounts).await;
        let file = std::fs::read(dir.path().join("web.db")).unwrap();
        assert!(!file.windows(8).any(|w| w == b"lovelace"));
        assert!(!accounts.is_shared());
    }

    #[tokio::test]
    async fn sessions_start_resolve_and_end() {
        let (_dir, accounts) = open();
        conformance::sessions_start_resolve_and_end(&accounts).await;
    }
}
