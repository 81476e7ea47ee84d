//! The storage foundation of the downstream services and the BFFs' own
//! stores.
//!
//! Each service owns its store and describes it as a trait of its own
//! (`CatalogStore`, `OrderStore`, ...) with an implementation per engine;
//! this crate supplies what those implementations share:
//!
//! - [`Database`]: where a store lives, chosen at start-up by
//!   `--database-url` ([`DatabaseArgs`]): an embedded SQLite file in the
//!   data directory (the default), or a schema of its own in a PostgreSQL
//!   database, so several services and several replicas of one service can
//!   share one server;
//! - [`SqlitePool`]: a small pool that runs blocking SQLite work on tokio's
//!   blocking threads, with one writer connection (SQLite admits one writer
//!   at a time; serialising writes here turns "database is locked" into a
//!   queue);
//! - [`PgPool`]: a small pool of PostgreSQL connections, each set to the
//!   store's schema, with cached statements, notifications
//!   ([`PgPool::listen`]) and token buckets shared by every process that
//!   uses the database ([`SharedBuckets`]);
//! - [`Migration`]s: a numbered list of SQL per store and engine, applied
//!   in one transaction and recorded in a `schema_migrations` table;
//! - opaque page tokens and page sizes (AIP-158).
//!
//! It knows nothing about products or orders and nothing about gRPC: errors
//! are [`StorageError`], which each service maps to a status in one place.

#![forbid(unsafe_code)]

mod database;
mod migrate;
mod page_token;
mod pool;
pub mod postgres;
mod trace;

pub use database::{Database, DatabaseArgs, PostgresUrl};
pub use migrate::{Migration, migrate_sqlite};
pub use page_token::{MAX_TOKEN_BYTES, PageSize, PageToken};
pub use pool::{SqlitePool, SqlitePoolOptions};
pub use postgres::buckets::{BUCKETS_TABLE, BucketRate, SharedBuckets, Take};
pub use postgres::{CopyIn, Listening, PgConn, PgPool, PgPoolOptions, TxFuture};
pub use rusqlite;
pub use tokio_postgres;

/// Creates `dir` (and its parents) readable by its owner only; an existing
/// directory is left as it is.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `path` if missing and makes it readable and writable by its
/// owner only: stores hold password hashes, key hashes and orders. SQLite
/// gives its `-wal` and `-shm` files the same mode.
pub fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// What can go wrong below a service's store trait.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite reported an error; its text stays in logs, never in a status.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error; its text stays in logs, never in a
    /// status.
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The configured database could not be reached or prepared at
    /// start-up; the text names the flag and the server (never a password).
    #[error("{0}")]
    Startup(String),
    /// The data directory or database file could not be prepared.
    #[error("storage io: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking task running the query panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
    /// Stored bytes did not decode as the message they should hold.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A page token did not decode or belongs to another query.
    #[error("invalid page_token")]
    InvalidPageToken,
    /// A negative page size.
    #[error("page_size must not be negative")]
    NegativePageSize,
}

impl StorageError {
    /// The message for the caller when the error is about its request (a
    /// bad page token or size); `None` when it is the store's own failure,
    /// whose text belongs in the log only.
    pub fn client_message(&self) -> Option<&'static str> {
        match self {
            StorageError::InvalidPageToken => Some("invalid page_token"),
            StorageError::NegativePageSize => Some("page_size must not be negative"),
            _ => None,
        }
    }

    /// Whether PostgreSQL refused the work because of a concurrent
    /// transaction (serialization failure or deadlock), so running it again
    /// is the answer.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, StorageError::Postgres(e)
            if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED))
    }
}
