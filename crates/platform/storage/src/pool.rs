use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::global::BoxedTracer;
use rusqlite::{Connection, OpenFlags};

use crate::{Migration, StorageError, trace};

/// How a pool opens its database.
#[derive(Debug, Clone)]
pub struct SqlitePoolOptions {
    /// Read connections; reads run in parallel in WAL mode.
    pub readers: usize,
    /// How long a statement waits for a lock before failing.
    pub busy_timeout: Duration,
}

impl Default for SqlitePoolOptions {
    fn default() -> Self {
        Self {
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A cloneable handle to one SQLite database file: several read connections
/// and one write connection, each used on a blocking thread.
///
/// Each [`read`](Self::read) and [`write`](Self::write) is a client span
/// `sqlite read` / `sqlite write` (`db.system.name` `sqlite`, `db.namespace`
/// the file's stem), a child of the OpenTelemetry context current where it
/// is awaited (a call's server span), timed from the request for a
/// connection to the end of the work. No SQL text or value is recorded.
#[derive(Clone)]
pub struct SqlitePool {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Vec<Mutex<Connection>>,
    writer: Mutex<Connection>,
    next_reader: AtomicUsize,
    /// `db.namespace` of its spans.
    namespace: String,
    tracer: BoxedTracer,
}

impl std::fmt::Debug for SqlitePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlitePool")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish()
    }
}

impl SqlitePool {
    /// Opens (creating if needed) the database at `path` and applies the
    /// `migrations` it lacks on the write connection before any reader
    /// opens, so the first start creates the tables.
    pub fn open(
        path: &Path,
        options: &SqlitePoolOptions,
        migrations: &[Migration],
    ) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent() {
            crate::private_dir(dir)?;
        }
        crate::private_file(path)?;
        let mut writer = Connection::open(path)?;
        configure(&writer, options)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        crate::migrate_sqlite(&mut writer, migrations)?;
        let readers = (0..options.readers.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn, options)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers,
                writer: Mutex::new(writer),
                next_reader: AtomicUsize::new(0),
                namespace: path
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                tracer: opentelemetry::global::tracer("tailor"),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a read-only closure on one of the read connections.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let span = self.span("read");
        let inner = self.inner.clone();
        let result = run_blocking(move || {
            let index = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = lock(&inner.readers[index]);
            work(&conn)
        })
        .await;
        end_span(&span, &result);
        result
    }

    /// Runs a closure on the single write connection; writes are serialised.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let span = self.span("write");
        let inner = self.inner.clone();
        let result = run_blocking(move || {
            let mut conn = lock(&inner.writer);
            work(&mut conn)
        })
        .await;
        end_span(&span, &result);
        result
    }

    /// Starts the span of one `operation` (`read`, `write`).
    fn span(&self, operation: &'static str) -> Context {
        trace::start(
            &self.inner.tracer,
            "sqlite",
            &self.inner.namespace,
            operation,
        )
    }
}

fn end_span<T>(cx: &Context, result: &Result<T, StorageError>) {
    trace::end(cx, result);
}

impl SqlitePool {
    /// Fills `table` once: when it is empty, runs `fill` in one transaction
    /// on the writer; otherwise leaves the data alone. Returns whether it
    /// filled. This is how services seed on first start and keep their data
    /// on every later one.
    pub async fn seed_if_empty<F>(&self, table: &'static str, fill: F) -> Result<bool, StorageError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StorageError> + Send + 'static,
    {
        self.write(move |conn| {
            let existing: i64 =
                conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            if existing > 0 {
                return Ok(false);
            }
            let tx = conn.transaction()?;
            fill(&tx)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

fn configure(conn: &Connection, options: &SqlitePoolOptions) -> Result<(), StorageError> {
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// A poisoned lock only means another query panicked; the connection itself
/// is still usable, so keep serving.
fn lock(mutex: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn run_blocking<T, F>(work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_visible_to_readers_and_schema_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/store.db");
        let schema = &[Migration::new(
            1,
            "CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)",
        )];
        let pool = SqlitePool::open(&path, &SqlitePoolOptions::default(), schema).unwrap();
        pool.write(|c| Ok(c.execute("INSERT INTO t VALUES (7)", [])?))
            .await
            .unwrap();
        let reopened = SqlitePool::open(&path, &SqlitePoolOptions::default(), schema).unwrap();
        let sum: i64 = reopened
            .read(|c| Ok(c.query_row("SELECT SUM(v) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(sum, 7);
        let denied = reopened
            .read(|c| Ok(c.execute("INSERT INTO t VALUES (1)", [])?))
            .await;
        assert!(
            matches!(denied, Err(StorageError::Sqlite(_))),
            "readers are read-only"
        );
    }
}
