//! PostgreSQL behind the same store traits as SQLite.
//!
//! A [`PgPool`] holds a few connections to one database, each with its
//! `search_path` set to the store's own schema (the service's name), so
//! several services, and several replicas of one service, share one
//! server without seeing each other's tables. It applies the store's
//! [`Migration`]s at start-up under an advisory lock, so replicas starting
//! together apply them once. Connections are plain TCP or a unix socket
//! (`NoTls`): the database belongs on a private network or the same host.
//!
//! Where SQLite serialises writers, PostgreSQL runs them at once: the
//! stores rely on unique constraints, `INSERT ... ON CONFLICT`, conditional
//! `UPDATE`s and row locks for their guarantees (one order per idempotency
//! key, no stock reserved twice), which hold across processes too.

pub mod buckets;

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::global::BoxedTracer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement, Transaction};

use crate::migrate::check_order;
use crate::{Migration, PostgresUrl, StorageError, trace};

/// A boxed future borrowing a transaction, as [`PgPool::seed_if_empty`]
/// takes its filler.
pub type TxFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send + 'a>>;

/// How a pool connects.
#[derive(Debug, Clone)]
pub struct PgPoolOptions {
    /// Connections open at most; a caller beyond waits for one.
    pub max_connections: usize,
    /// How long opening a connection may take, unless the URL says
    /// (`connect_timeout`).
    pub connect_timeout: Duration,
}

impl Default for PgPoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Statements each connection keeps prepared at most.
const STATEMENT_CACHE: usize = 128;

/// A cloneable handle to a few connections to one PostgreSQL database, in
/// one schema.
///
/// Each [`read`](Self::read) and [`write`](Self::write) is a client span
/// `postgresql read` / `postgresql write` (`db.system.name` `postgresql`,
/// `db.namespace` the schema), a child of the context current where it is
/// awaited, from the request for a connection to the end of the work.
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<Inner>,
}

struct Inner {
    url: PostgresUrl,
    schema: String,
    options: PgPoolOptions,
    idle: Mutex<Vec<Pooled>>,
    slots: Arc<Semaphore>,
    tracer: BoxedTracer,
}

struct Pooled {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("database", &self.inner.url)
            .field("schema", &self.inner.schema)
            .finish()
    }
}

/// One connection taken from a [`PgPool`]; it goes back when dropped
/// (unless it broke). Derefs to [`tokio_postgres::Client`].
pub struct PgConn {
    pooled: Option<Pooled>,
    inner: Arc<Inner>,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("schema", &self.inner.schema)
            .finish()
    }
}

impl Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.pooled.as_ref().expect("held until dropped").client
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.pooled.as_mut().expect("held until dropped").client
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(pooled) = self.pooled.take()
            && !pooled.client.is_closed()
        {
            lock(&self.inner.idle).push(pooled);
        }
    }
}

impl PgConn {
    /// `sql` prepared on this connection, once per connection: later uses
    /// skip the round trip of preparing it.
    pub async fn prepare_cached(&mut self, sql: &str) -> Result<Statement, StorageError> {
        let pooled = self.pooled.as_mut().expect("held until dropped");
        if let Some(statement) = pooled.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = pooled.client.prepare(sql).await?;
        if pooled.statements.len() >= STATEMENT_CACHE {
            pooled.statements.clear();
        }
        pooled.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A schema name is part of SQL text: only lower-case letters, digits and
/// `_`, starting with a letter.
fn valid_schema(schema: &str) -> bool {
    schema
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && schema.len() <= 63
}

/// The advisory lock that serialises migrations of `schema` (FNV-1a of its
/// name, so every process computes the same key).
fn migration_lock(schema: &str) -> i64 {
    crate::PageToken::fingerprint(&["tailor-migrations", schema]) as i64
}

impl PgPool {
    /// Connects to `url`, creates the schema `schema` if needed and applies
    /// the `migrations` it lacks. A database that cannot be reached or
    /// prepared is an error naming `--database-url` and the server (never
    /// its password), for the server to stop with at start-up.
    pub async fn connect(
        url: &PostgresUrl,
        schema: &str,
        migrations: &[Migration],
        options: PgPoolOptions,
    ) -> Result<Self, StorageError> {
        if !valid_schema(schema) {
            return Err(StorageError::Startup(format!(
                "{schema:?} is not a schema name"
            )));
        }
        check_order(migrations)?;
        let pool = PgPool {
            inner: Arc::new(Inner {
                url: url.clone(),
                schema: schema.to_owned(),
                slots: Arc::new(Semaphore::new(options.max_connections.max(1))),
                options,
                idle: Mutex::new(Vec::new()),
                tracer: opentelemetry::global::tracer("tailor"),
            }),
        };
        let mut conn = pool.get().await.map_err(|e| {
            StorageError::Startup(format!(
                "--database-url: cannot reach PostgreSQL at {url}: {}",
                full_message(&e)
            ))
        })?;
        migrate(&mut conn, schema, migrations).await.map_err(|e| {
            StorageError::Startup(format!(
                "--database-url: preparing schema {schema} in {url} failed: {}",
                full_message(&e)
            ))
        })?;
        Ok(pool)
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The database (without password), for messages.
    pub fn url(&self) -> &PostgresUrl {
        &self.inner.url
    }

    async fn open(
        &self,
    ) -> Result<
        (
            Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        StorageError,
    > {
        let mut config = self.inner.url.config.as_ref().clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.inner.options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name(format!("tailor-{}", self.inner.schema));
        }
        Ok(config.connect(NoTls).await?)
    }

    async fn open_pooled(&self) -> Result<Pooled, StorageError> {
        let (client, connection) = self.open().await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "a PostgreSQL connection ended");
            }
        });
        client
            .batch_execute(&format!("SET search_path TO {}", self.inner.schema))
            .await?;
        Ok(Pooled {
            client,
            statements: HashMap::new(),
        })
    }

    /// A connection: an idle one, or a new one while fewer than the
    /// pool's bound are open; otherwise waits for one to come back.
    pub async fn get(&self) -> Result<PgConn, StorageError> {
        let slot = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?;
        let idle = loop {
            let Some(pooled) = lock(&self.inner.idle).pop() else {
                break None;
            };
            if !pooled.client.is_closed() {
                break Some(pooled);
            }
        };
        let pooled = match idle {
            Some(pooled) => pooled,
            None => self.open_pooled().await?,
        };
        Ok(PgConn {
            pooled: Some(pooled),
            inner: self.inner.clone(),
            _slot: slot,
        })
    }

    /// Runs read-only `work` on a connection, as the span `postgresql
    /// read`.
    pub async fn read<T, F, Fut>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(PgConn) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        self.traced("read", work).await
    }

    /// Runs `work` that writes on a connection, as the span `postgresql
    /// write`. Writes are not serialised: `work` uses a transaction and
    /// constraints where it must not race with other writers.
    pub async fn write<T, F, Fut>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(PgConn) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        self.traced("write", work).await
    }

    async fn traced<T, F, Fut>(&self, operation: &'static str, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(PgConn) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let span: Context = trace::start(
            &self.inner.tracer,
            "postgresql",
            &self.inner.schema,
            operation,
        );
        let result = async { work(self.get().await?).await }.await;
        trace::end(&span, &result);
        result
    }

    /// Fills `table` once: when it is empty, runs `fill` in one transaction
    /// holding a lock on the table, so replicas starting together fill it
    /// once; otherwise leaves the data alone. Returns whether it filled.
    pub async fn seed_if_empty<F>(&self, table: &'static str, fill: F) -> Result<bool, StorageError>
    where
        F: for<'t> FnOnce(&'t Transaction<'t>) -> TxFuture<'t>,
    {
        self.write(|mut conn| async move {
            let tx = conn.transaction().await?;
            tx.batch_execute(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
                .await?;
            let filled = tx
                .query_opt(&format!("SELECT 1 FROM {table} LIMIT 1"), &[])
                .await?
                .is_some();
            if filled {
                return Ok(false);
            }
            fill(&tx).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// The name under which this store's notifications of `topic` travel:
    /// channels are per database, so it carries the schema.
    pub fn channel(&self, topic: &str) -> String {
        format!("{}_{topic}", self.inner.schema)
    }

    /// Delivers the payload of every notification on this store's `topic`
    /// (sent with `pg_notify(channel, payload)` by any process, see
    /// [`PgPool::channel`]) to `deliver`, on a connection of its own.
    /// Returns once listening, so nothing notified afterwards is missed;
    /// when that connection breaks, it reconnects after a second, and what
    /// is notified in between is missed. Stops when the handle is dropped.
    pub async fn listen(
        &self,
        topic: &str,
        deliver: impl Fn(String) + Send + Sync + 'static,
    ) -> Result<Listening, StorageError> {
        let pool = self.clone();
        let channel = self.channel(topic);
        let (ready, listening) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready);
            loop {
                let outcome = pool.listen_once(&channel, &deliver, &mut ready).await;
                if let (Err(error), Some(first)) = (&outcome, ready.take()) {
                    let _ = first.send(Err(StorageError::Startup(format!(
                        "listening on {channel} failed: {error}"
                    ))));
                    return;
                }
                match outcome {
                    Ok(()) => {
                        tracing::warn!(%channel, "the notification connection ended; reconnecting")
                    }
                    Err(error) => {
                        tracing::warn!(%channel, %error, "listening for notifications failed; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        match listening.await {
            Ok(Ok(())) => Ok(Listening { task }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StorageError::Task("the listener ended".to_owned())),
        }
    }

    async fn listen_once(
        &self,
        channel: &str,
        deliver: &(impl Fn(String) + Send + Sync),
        ready: &mut Option<tokio::sync::oneshot::Sender<Result<(), StorageError>>>,
    ) -> Result<(), StorageError> {
        let (client, mut connection) = self.open().await?;
        let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
        // The connection is driven here; its notifications go to the loop
        // below, and it ends when the server or the socket does.
        let drive = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if notices.send(n.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "the notification connection failed");
                        return;
                    }
                }
            }
        });
        let listening = client.batch_execute(&format!("LISTEN {channel}")).await;
        if let Err(error) = listening {
            drive.abort();
            return Err(error.into());
        }
        match ready.take() {
            Some(first) => {
                let _ = first.send(Ok(()));
            }
            None => tracing::info!(%channel, "listening for notifications again"),
        }
        while let Some(payload) = received.recv().await {
            deliver(payload);
        }
        drop(client);
        Ok(())
    }
}

/// A running [`PgPool::listen`]; dropping it stops listening.
#[derive(Debug)]
pub struct Listening {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An error with its causes, for start-up messages.
fn full_message(error: &StorageError) -> String {
    use std::error::Error;
    let mut message = match error {
        // "db error: ..." says less than the server's own message.
        StorageError::Postgres(e) => match e.as_db_error() {
            Some(db) => return db.message().to_owned(),
            None => e.to_string(),
        },
        other => other.to_string(),
    };
    let mut source = match error {
        StorageError::Postgres(e) => e.source(),
        _ => None,
    };
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

async fn migrate(
    conn: &mut PgConn,
    schema: &str,
    migrations: &[Migration],
) -> Result<(), StorageError> {
    let tx = conn.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&migration_lock(schema)],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let applied: Vec<i64> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for migration in migrations {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&migration.version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Rows streamed into a table with `COPY ... FROM STDIN BINARY`, the quick
/// way to seed thousands of rows.
pub struct CopyIn {
    writer: Pin<Box<BinaryCopyInWriter>>,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn").finish()
    }
}

impl CopyIn {
    /// Starts `copy` (`COPY table (columns) FROM STDIN BINARY`) in `tx`,
    /// with the columns' `types`.
    pub async fn start(
        tx: &Transaction<'_>,
        copy: &str,
        types: &[Type],
    ) -> Result<Self, StorageError> {
        let sink = tx.copy_in(copy).await?;
        Ok(Self {
            writer: Box::pin(BinaryCopyInWriter::new(sink, types)),
        })
    }

    /// Sends one row.
    pub async fn row(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), StorageError> {
        Ok(self.writer.as_mut().write(values).await?)
    }

    /// Ends the copy; the rows written.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        Ok(self.writer.as_mut().finish().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["orders", "web_bff", "a1"] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in ["", "Orders", "1a", "a-b", "a;drop", "a b"] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_with_the_flag_and_without_the_password() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url: PostgresUrl = format!("postgres://tailor:hush@127.0.0.1:{port}/shop")
            .parse()
            .unwrap();
        let error = PgPool::connect(&url, "orders", &[], PgPoolOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--database-url: cannot reach PostgreSQL at tailor@127.0.0.1:"),
            "{error}"
        );
        assert!(error.contains("refused"), "{error}");
        assert!(!error.contains("hush"), "{error}");
    }
}
