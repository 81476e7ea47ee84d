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
        checkpoint(&writer)?;
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

    /// Runs a read-only closure on one of the read connections, on a
    /// blocking thread, in one read transaction: every statement of the
    /// closure sees the same snapshot.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let span = self.span("read");
        let result = self.read_blocking(work).await;
        end_span(&span, &result);
        result
    }

    /// Runs a read of a few rows found by key (a point read, a short walk
    /// of an index) like [`read`](Self::read), but on the calling thread
    /// when a read connection is free at once: such a read takes
    /// microseconds, less than handing it to a blocking thread and back
    /// (two thread wake-ups). When every reader is busy it waits on a
    /// blocking thread as [`read`](Self::read) does, never on this one.
    /// A read that may scan many rows belongs in [`read`](Self::read).
    pub async fn lookup<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let span = self.span("read");
        let result = match self.read_here(work) {
            Ok(result) => result,
            Err(work) => self.read_blocking(work).await,
        };
        end_span(&span, &result);
        result
    }

    /// Runs `work` on this thread if a read connection is free, or hands
    /// it back.
    fn read_here<T, F>(&self, work: F) -> Result<Result<T, StorageError>, F>
    where
        F: FnOnce(&Connection) -> Result<T, StorageError>,
    {
        let readers = &self.inner.readers;
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        let free = (0..readers.len())
            .find_map(|offset| readers[(start + offset) % readers.len()].try_lock().ok());
        match free {
            Some(conn) => Ok(in_snapshot(&conn, work)),
            None => Err(work),
        }
    }

    async fn read_blocking<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let index = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = lock(&inner.readers[index]);
            in_snapshot(&conn, work)
        })
        .await
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
            checkpoint(conn)?;
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

/// Moves everything in the write-ahead log into the database file and
/// empties the log. Readers look up every page they read in the log first
/// and read it from there while it holds a copy; after a seed the log
/// holds the whole database, and every read would search it.
fn checkpoint(conn: &Connection) -> Result<(), StorageError> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Runs `work` in one read transaction on `conn`. A transaction left open
/// by a closure that panicked on this connection is rolled back first.
fn in_snapshot<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    if !conn.is_autocommit() {
        conn.prepare_cached("ROLLBACK")?.execute([])?;
    }
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = work(conn);
    // A read transaction changed nothing: ending it only lets the snapshot go.
    conn.prepare_cached("COMMIT")?.execute([])?;
    result
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

    fn one_reader(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqlitePoolOptions {
            readers: 1,
            ..SqlitePoolOptions::default()
        };
        let schema = &[Migration::new(
            1,
            "CREATE TABLE IF NOT EXISTS t (v INTEGER)",
        )];
        SqlitePool::open(&dir.path().join("store.db"), &options, schema).unwrap()
    }

    /// A lookup with every reader busy waits for one on a blocking thread
    /// and answers once it is free, without holding up the caller's thread.
    #[tokio::test(flavor = "current_thread")]
    #[expect(
        clippy::await_holding_lock,
        reason = "the test holds the only reader on purpose while the lookup waits"
    )]
    async fn a_lookup_waits_for_a_busy_reader_off_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let pool = one_reader(&dir);
        let held = lock(&pool.inner.readers[0]);
        let lookup = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.lookup(|c| Ok(c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0))?))
                    .await
            }
        });
        // The only thread of this runtime is free while the lookup waits.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!lookup.is_finished());
        drop(held);
        assert_eq!(lookup.await.unwrap().unwrap(), 7);
        // With the reader free it answers here.
        let here = pool
            .lookup(|c| Ok(c.query_row("SELECT 8", [], |r| r.get::<_, i64>(0))?))
            .await;
        assert_eq!(here.unwrap(), 8);
    }

    /// A read that panics leaves its transaction open on its connection;
    /// the next read on it still answers, from a fresh snapshot.
    #[tokio::test]
    async fn a_read_that_panicked_does_not_leave_its_snapshot_behind() {
        let dir = tempfile::tempdir().unwrap();
        let pool = one_reader(&dir);
        let failed = pool
            .read(|_| -> Result<(), StorageError> { panic!("a query that panics") })
            .await;
        assert!(matches!(failed, Err(StorageError::Task(_))));
        pool.write(|c| Ok(c.execute("INSERT INTO t VALUES (5)", [])?))
            .await
            .unwrap();
        let seen: i64 = pool
            .lookup(|c| Ok(c.query_row("SELECT SUM(v) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(seen, 5);
    }

    /// After a seed the log is empty: readers find every page in the
    /// database file instead of searching the log for it.
    #[tokio::test]
    async fn seeding_leaves_the_log_empty() {
        let dir = tempfile::tempdir().unwrap();
        let pool = one_reader(&dir);
        let seeded = pool
            .seed_if_empty("t", |tx| {
                for v in 0..5_000 {
                    tx.execute("INSERT INTO t VALUES (?1)", [v])?;
                }
                Ok(())
            })
            .await
            .unwrap();
        assert!(seeded);
        let log = std::fs::metadata(dir.path().join("store.db-wal")).unwrap();
        assert_eq!(log.len(), 0, "the log after seeding");
        let count: i64 = pool
            .lookup(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count, 5_000);
    }
}
