//! The orders' storage interface, its SQLite implementation (here) and its
//! PostgreSQL implementation ([`postgres`]), the change feed and the
//! fulfilment simulator.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;

pub use postgres::PgOrderStore;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use prost_types::Timestamp;
use tailor_proto::orders::v1::{Order, OrderStatus};
use tailor_runtime::CancellationToken;
use tailor_storage::rusqlite::{OptionalExtension, Transaction, params};
use tailor_storage::{Migration, PageToken, SqlitePool, SqlitePoolOptions, StorageError};
use tokio::sync::broadcast;

/// A stored order and whether it was stored by an earlier call.
#[derive(Debug, Clone)]
pub struct Created {
    /// The order as stored.
    pub order: Order,
    /// True when the key had been used for this same order before.
    pub replayed: bool,
}

/// What the orders handlers need from a store.
pub trait OrderStore: Send + Sync + 'static {
    /// Stores `order` unless `customer`'s `key` was used before: then the
    /// earlier order (same `fingerprint`) or `None` (different request).
    fn create(
        &self,
        key: String,
        fingerprint: String,
        order: Order,
    ) -> impl Future<Output = Result<Option<Created>, StorageError>> + Send;
    /// An order by id, whoever it belongs to.
    fn get(
        &self,
        order_id: String,
    ) -> impl Future<Output = Result<Option<Order>, StorageError>> + Send;
    /// A page of a customer's orders, newest first.
    fn list(
        &self,
        customer_id: String,
        page_size: usize,
        page_token: String,
    ) -> impl Future<Output = Result<(Vec<Order>, String), StorageError>> + Send;
    /// Every stored change from now on.
    fn changes(&self) -> broadcast::Receiver<Order>;
}

/// A store whose orders move along by themselves: the fulfilment
/// simulator's side of it.
pub trait Fulfilment: OrderStore + Clone {
    /// Advances every order whose next status is due; publishes each
    /// change. With several replicas on one database, each due order is
    /// advanced by exactly one of them.
    fn advance_due(&self) -> impl Future<Output = Result<usize, StorageError>> + Send;
}

/// [`OrderStore`] over SQLite, with an in-process change feed.
#[derive(Debug, Clone)]
pub struct SqliteOrderStore {
    pool: SqlitePool,
    changes: broadcast::Sender<Order>,
    step: Duration,
}

/// The SQLite schema; the first step creates the tables only if missing,
/// so files from before migrations open unchanged.
const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "
CREATE TABLE IF NOT EXISTS orders (
    id                 TEXT PRIMARY KEY,
    customer_id        TEXT NOT NULL,
    status             INTEGER NOT NULL,
    create_time        INTEGER NOT NULL,
    update_time        INTEGER NOT NULL,
    next_transition_at INTEGER,
    message            BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, create_time DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_due ON orders (next_transition_at) WHERE next_transition_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    customer_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    PRIMARY KEY (customer_id, key)
);
",
)];

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn timestamp(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn read_order(tx: &Transaction<'_>, id: &str) -> Result<Option<Order>, StorageError> {
    read(tx, id)
}

/// The stored message with the status and update time of its columns
/// (which the simulator changes without rewriting the message).
pub(crate) fn stored_order(status: i32, updated: i64, bytes: &[u8]) -> Result<Order, StorageError> {
    let mut order = Order::decode(bytes).map_err(|e| StorageError::Task(e.to_string()))?;
    order.status = status;
    order.update_time = Some(timestamp(updated));
    Ok(order)
}

/// The order as first stored: placed, created and updated `now`.
pub(crate) fn placed(mut order: Order, now: i64) -> Order {
    order.status = OrderStatus::Placed as i32;
    order.create_time = Some(timestamp(now));
    order.update_time = Some(timestamp(now));
    order
}

fn read(
    conn: &tailor_storage::rusqlite::Connection,
    id: &str,
) -> Result<Option<Order>, StorageError> {
    let row: Option<(i32, i64, Vec<u8>)> = conn
        .query_row(
            "SELECT status, update_time, message FROM orders WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(status, updated, bytes)| stored_order(status, updated, &bytes))
        .transpose()
}

impl SqliteOrderStore {
    /// Opens (creating) the store; `step` is the fulfilment pace.
    pub fn open(path: &Path, step: Duration) -> Result<Self, StorageError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), MIGRATIONS)?;
        let (changes, _) = broadcast::channel(1024);
        Ok(Self {
            pool,
            changes,
            step,
        })
    }

    /// Advances every order whose next status is due; publishes each change.
    pub async fn advance_due(&self) -> Result<usize, StorageError> {
        let step = self.step.as_millis() as i64;
        let changed = self
            .pool
            .write(move |conn| {
                let now = now_millis();
                let tx = conn.transaction()?;
                let due: Vec<(String, i32)> = {
                    let mut statement = tx.prepare(
                        "SELECT id, status FROM orders WHERE next_transition_at IS NOT NULL AND next_transition_at <= ?1",
                    )?;
                    let rows = statement.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<Result<_, _>>()?
                };
                let mut changed = Vec::new();
                for (id, status) in due {
                    let (next, due_again) = next_step(status, now, step);
                    tx.execute(
                        "UPDATE orders SET status = ?2, update_time = ?3, next_transition_at = ?4 WHERE id = ?1",
                        params![id, next, now, due_again],
                    )?;
                    if let Some(order) = read_order(&tx, &id)? {
                        changed.push(order);
                    }
                }
                tx.commit()?;
                Ok(changed)
            })
            .await?;
        let count = changed.len();
        for order in changed {
            let _ = self.changes.send(order);
        }
        Ok(count)
    }
}

impl Fulfilment for SqliteOrderStore {
    async fn advance_due(&self) -> Result<usize, StorageError> {
        SqliteOrderStore::advance_due(self).await
    }
}

/// The status after `status`, and when the one after that is due (none
/// once delivered).
pub(crate) fn next_step(status: i32, now: i64, step: i64) -> (i32, Option<i64>) {
    let next = status + 1;
    (
        next,
        (next < OrderStatus::Delivered as i32).then_some(now + step),
    )
}

/// Moves orders along until `shutdown`.
pub async fn simulate_fulfilment<S: Fulfilment>(
    store: S,
    step: Duration,
    shutdown: CancellationToken,
) {
    let tick = (step / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {
                if let Err(error) = store.advance_due().await {
                    tracing::error!(%error, "advancing orders failed");
                }
            }
        }
    }
}

impl OrderStore for SqliteOrderStore {
    async fn create(
        &self,
        key: String,
        fingerprint: String,
        order: Order,
    ) -> Result<Option<Created>, StorageError> {
        let step = self.step.as_millis() as i64;
        let created = self
            .pool
            .write(move |conn| {
                let tx = conn.transaction()?;
                let earlier: Option<(String, String)> = tx
                    .query_row(
                        "SELECT fingerprint, order_id FROM idempotency_keys WHERE customer_id = ?1 AND key = ?2",
                        params![order.customer_id, key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((stored, order_id)) = earlier {
                    if stored != fingerprint {
                        return Ok(None);
                    }
                    let order = read_order(&tx, &order_id)?.ok_or_else(|| StorageError::Task("key without order".into()))?;
                    return Ok(Some(Created { order, replayed: true }));
                }
                let now = now_millis();
                let order = placed(order, now);
                let due = (step > 0).then_some(now + step);
                tx.execute(
                    "INSERT INTO orders (id, customer_id, status, create_time, update_time, next_transition_at, message)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                    params![order.id, order.customer_id, order.status, now, due, order.encode_to_vec()],
                )?;
                tx.execute(
                    "INSERT INTO idempotency_keys (customer_id, key, fingerprint, order_id) VALUES (?1, ?2, ?3, ?4)",
                    params![order.customer_id, key, fingerprint, order.id],
                )?;
                tx.commit()?;
                Ok(Some(Created { order, replayed: false }))
            })
            .await?;
        if let Some(Created {
            order,
            replayed: false,
        }) = &created
        {
            let _ = self.changes.send(order.clone());
        }
        Ok(created)
    }

    async fn get(&self, order_id: String) -> Result<Option<Order>, StorageError> {
        self.pool.read(move |conn| read(conn, &order_id)).await
    }

    async fn list(
        &self,
        customer_id: String,
        page_size: usize,
        page_token: String,
    ) -> Result<(Vec<Order>, String), StorageError> {
        let fingerprint = PageToken::fingerprint(&[&customer_id]);
        let (time, id) = PageToken::decode_newest_first(&page_token, fingerprint)?;
        self.pool
            .read(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT id, create_time FROM orders WHERE customer_id = ?1
                     AND (?3 = '' OR create_time < ?2 OR (create_time = ?2 AND id < ?3))
                     ORDER BY create_time DESC, id DESC LIMIT ?4",
                )?;
                let ids = statement
                    .query_map(
                        params![customer_id, time, id, (page_size + 1) as i64],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                let next = if ids.len() > page_size {
                    let (id, time) = &ids[page_size - 1];
                    PageToken::newest_first(fingerprint, *time, id)
                } else {
                    String::new()
                };
                let mut orders = Vec::new();
                for (id, _) in ids.iter().take(page_size) {
                    orders.extend(read(conn, id)?);
                }
                Ok((orders, next))
            })
            .await
    }

    fn changes(&self) -> broadcast::Receiver<Order> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> SqliteOrderStore {
        SqliteOrderStore::open(&dir.path().join("orders.db"), Duration::from_millis(1)).unwrap()
    }

    #[tokio::test]
    async fn keys_replay_conflict_survive_reopen_and_the_simulator_delivers() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        conformance::keys_replay_conflict_and_the_simulator_delivers(&store).await;
        drop(store);
        let reopened = open(&dir);
        let stored = reopened.get("ord-1".into()).await.unwrap().unwrap();
        assert_eq!(stored.status, OrderStatus::Delivered as i32);
        let (anns, next) = reopened
            .list("ann".into(), 10, String::new())
            .await
            .unwrap();
        assert_eq!(anns.len(), 1);
        assert!(next.is_empty());
    }

    #[tokio::test]
    async fn concurrent_retries_of_one_key_store_one_order() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_retries_of_one_key_store_one_order(&open(&dir)).await;
    }

    #[tokio::test]
    async fn orders_page_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        conformance::orders_page_newest_first(&open(&dir)).await;
    }
}
