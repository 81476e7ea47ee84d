//! The web BFF's own store of users and browser sessions (`web.db`).
//!
//! Passwords are kept as PBKDF2-HMAC-SHA256 with a per-user salt and the
//! iteration count stored beside the hash, so the cost can rise later
//! without invalidating existing users. A sign-in for an unknown user does
//! the same work as one for a known user, so timing does not tell which
//! user names exist. Sessions are kept by the SHA-256 of their handle only.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Sha256;
use subtle::ConstantTimeEq;
use tailor_auth::{BoxFuture, SessionStore, hash_session_handle, new_session_handle};
use tailor_interceptors::context::{AuthMethod, Identity};
use tailor_storage::rusqlite::{OptionalExtension, params};
use tailor_storage::{Migration, SqlitePool, SqlitePoolOptions, StorageError};

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

/// Users and sessions over SQLite.
#[derive(Debug, Clone)]
pub struct Accounts {
    pool: SqlitePool,
    session_ttl: Duration,
}

const SCHEMA: &str = "
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
const SQLITE_MIGRATIONS: &[Migration] = &[Migration::new(1, SCHEMA)];

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
    /// Opens (creating) the store at `path`; sessions last `session_ttl`.
    pub fn open(path: &Path, session_ttl: Duration) -> Result<Self, AccountError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), SQLITE_MIGRATIONS)?;
        Ok(Self { pool, session_ttl })
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
        let hash = derive_blocking(password, salt.clone(), ITERATIONS).await;
        let user = User {
            user_id: format!("user-{username}"),
            display_name: if display_name.is_empty() {
                username.to_owned()
            } else {
                display_name.to_owned()
            },
        };
        let (name, row) = (username.to_owned(), user.clone());
        let inserted = self
            .pool
            .write(move |conn| {
                Ok(conn.execute(
                    "INSERT OR IGNORE INTO users
                     (username, user_id, display_name, salt, password_hash, iterations, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        name,
                        row.user_id,
                        row.display_name,
                        salt,
                        hash.to_vec(),
                        ITERATIONS,
                        now()
                    ],
                )?)
            })
            .await?;
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
        let name = username.to_owned();
        let row = self
            .pool
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT user_id, display_name, salt, password_hash, iterations
                         FROM users WHERE username = ?1",
                        params![name],
                        |row| {
                            Ok((
                                User {
                                    user_id: row.get(0)?,
                                    display_name: row.get(1)?,
                                },
                                row.get::<_, Vec<u8>>(2)?,
                                row.get::<_, Vec<u8>>(3)?,
                                row.get::<_, u32>(4)?,
                            ))
                        },
                    )
                    .optional()?)
            })
            .await?;
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
        let hash = hash_session_handle(&handle);
        let started = now();
        let session = Session {
            user,
            expires_at: started + self.session_ttl.as_secs() as i64,
        };
        let row = session.clone();
        self.pool
            .write(move |conn| {
                conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![started])?;
                conn.execute(
                    "INSERT INTO sessions (handle_hash, user_id, display_name, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        hash.to_vec(),
                        row.user.user_id,
                        row.user.display_name,
                        started,
                        row.expires_at
                    ],
                )?;
                Ok(())
            })
            .await?;
        Ok((handle, session))
    }

    /// The live session behind `handle_hash`.
    pub async fn session(&self, handle_hash: [u8; 32]) -> Result<Option<Session>, StorageError> {
        self.pool
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT user_id, display_name, expires_at FROM sessions
                         WHERE handle_hash = ?1 AND expires_at > ?2",
                        params![handle_hash.to_vec(), now()],
                        |row| {
                            Ok(Session {
                                user: User {
                                    user_id: row.get(0)?,
                                    display_name: row.get(1)?,
                                },
                                expires_at: row.get(2)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }

    /// Ends the session behind `handle_hash`, if it exists.
    pub async fn end_session(&self, handle_hash: [u8; 32]) -> Result<(), StorageError> {
        self.pool
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM sessions WHERE handle_hash = ?1",
                    params![handle_hash.to_vec()],
                )?;
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
        let user = accounts.add_user("ada", "Ada", "lovelace").await.unwrap();
        assert_eq!(user.user_id, "user-ada");
        assert_eq!(
            accounts.verify("ada", "lovelace").await.unwrap(),
            Some(user)
        );
        assert_eq!(accounts.verify("ada", "Lovelace").await.unwrap(), None);
        assert_eq!(accounts.verify("bob", "lovelace").await.unwrap(), None);
        let file = std::fs::read(dir.path().join("web.db")).unwrap();
        assert!(!file.windows(8).any(|w| w == b"lovelace"));
        assert!(matches!(
            accounts.add_user("ada", "", "other").await,
            Err(AccountError::UserExists(_))
        ));
        assert!(matches!(
            accounts.add_user("Ada Lovelace", "", "other").await,
            Err(AccountError::InvalidUsername)
        ));
    }

    #[tokio::test]
    async fn sessions_start_resolve_and_end() {
        let (_dir, accounts) = open();
        let user = accounts.add_user("ada", "", "lovelace").await.unwrap();
        let (handle, session) = accounts.start_session(user.clone()).await.unwrap();
        let hash = hash_session_handle(&handle);
        assert_eq!(accounts.session(hash).await.unwrap(), Some(session));
        let identity = accounts.identity(&hash).await.unwrap().unwrap();
        assert_eq!(identity.subject, "user-ada");
        accounts.end_session(hash).await.unwrap();
        assert_eq!(accounts.session(hash).await.unwrap(), None);
        assert_eq!(accounts.identity(&hash).await.unwrap(), None);
    }
}
