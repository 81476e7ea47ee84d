//! [`OrderStore`] over PostgreSQL, for several replicas of the orders
//! service on one database.
//!
//! - **One order per key, across replicas.** The idempotency key is
//!   inserted first, `ON CONFLICT DO NOTHING`, in the transaction that
//!   stores the order. A concurrent retry on another replica waits on the
//!   key's unique index until the first commits, then finds the key taken
//!   and answers with the first order; if the first rolled back, the retry
//!   stores its own.
//! - **Each due order advanced once.** The simulators of all replicas take
//!   due orders with `FOR UPDATE SKIP LOCKED` and re-check the due time
//!   under the lock.
//! - **Every replica's watchers see every change.** Each change is sent
//!   with `pg_notify` in the transaction that makes it (delivered at
//!   commit, in commit order) as `<id> <status> <update time>`; every
//!   replica listens and publishes it to its own watchers.

use std::sync::Arc;
use std::time::Duration;

use tailor_proto::orders::v1::Order;
use tailor_storage::tokio_postgres::GenericClient;
use tailor_storage::{
    Listening, Migration, PageToken, PgPool, PgPoolOptions, PostgresUrl, StorageError,
};
use tokio::sync::{broadcast, mpsc};

use super::{Created, Fulfilment, OrderStore, next_step, now_millis, placed, stored_order};

/// The service's schema in a shared database.
pub const SCHEMA: &str = "orders";

/// The channel (within the schema) changes travel on.
const CHANGES: &str = "changes";

const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "
CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    customer_id        TEXT NOT NULL,
    status             INTEGER NOT NULL,
    create_time        BIGINT NOT NULL,
    update_time        BIGINT NOT NULL,
    next_transition_at BIGINT,
    message            BYTEA NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, create_time DESC, id DESC);
CREATE INDEX orders_due ON orders (next_transition_at) WHERE next_transition_at IS NOT NULL;
CREATE TABLE idempotency_keys (
    customer_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    -- checked at commit: the key is inserted before its order
    order_id    TEXT NOT NULL REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (customer_id, key)
);
",
)];

/// Due orders one simulator tick advances at most.
const ADVANCE_BATCH: i64 = 500;

/// [`OrderStore`] over PostgreSQL, with a change feed fed by every replica.
#[derive(Debug, Clone)]
pub struct PgOrderStore {
    pool: PgPool,
    changes: broadcast::Sender<Order>,
    step: Duration,
    _listening: Arc<Listening>,
}

async fn read(client: &impl GenericClient, id: &str) -> Result<Option<Order>, StorageError> {
    let row = client
        .query_opt(
            "SELECT status, update_time, message FROM orders WHERE id = $1",
            &[&id],
        )
        .await?;
    row.map(|r| stored_order(r.get(0), r.get(1), r.get(2)))
        .transpose()
}

/// Sends `order`'s new state to every replica's watchers when `client`'s
/// transaction commits.
async fn notify(
    client: &impl GenericClient,
    channel: &str,
    id: &str,
    status: i32,
    update_time: i64,
) -> Result<(), StorageError> {
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&channel, &format!("{id} {status} {update_time}")],
        )
        .await?;
    Ok(())
}

/// Publishes each change notified on the database to this replica's
/// watchers, in the order the changes were committed.
async fn publish(
    pool: PgPool,
    mut notified: mpsc::UnboundedReceiver<String>,
    changes: broadcast::Sender<Order>,
) {
    while let Some(payload) = notified.recv().await {
        let mut parts = payload.split(' ');
        let (Some(id), Some(Ok(status)), Some(Ok(updated))) = (
            parts.next(),
            parts.next().map(str::parse::<i32>),
            parts.next().map(str::parse::<i64>),
        ) else {
            tracing::warn!(payload = %payload.escape_debug(), "an order change notification did not parse");
            continue;
        };
        if changes.receiver_count() == 0 {
            continue;
        }
        let id = id.to_owned();
        let message = pool
            .read(|conn| async move {
                let row = conn
                    .query_opt("SELECT message FROM orders WHERE id = $1", &[&id])
                    .await?;
                row.map(|r| stored_order(status, updated, r.get(0)))
                    .transpose()
            })
            .await;
        match message {
            Ok(Some(order)) => {
                let _ = changes.send(order);
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "reading a changed order failed"),
        }
    }
}

impl PgOrderStore {
    /// Connects to `url` (schema [`SCHEMA`], migrated) and listens for
    /// changes (from every replica) before it returns; `step` is the
    /// fulfilment pace.
    pub async fn connect(url: &PostgresUrl, step: Duration) -> Result<Self, StorageError> {
        let pool = PgPool::connect(url, SCHEMA, MIGRATIONS, PgPoolOptions::default()).await?;
        let (changes, _) = broadcast::channel(1024);
        let (notify, notified) = mpsc::unbounded_channel();
        let listening = pool
            .listen(CHANGES, move |payload| {
                let _ = notify.send(payload);
            })
            .await?;
        tokio::spawn(publish(pool.clone(), notified, changes.clone()));
        Ok(Self {
            pool,
            changes,
            step,
            _listening: Arc::new(listening),
        })
    }
}

impl Fulfilment for PgOrderStore {
    async fn advance_due(&self) -> Result<usize, StorageError> {
        let step = self.step.as_millis() as i64;
        let channel = self.pool.channel(CHANGES);
        self.pool
            .write(|mut conn| async move {
                let now = now_millis();
                let tx = conn.transaction().await?;
                let due = tx
                    .query(
                        "SELECT id, status FROM orders
                         WHERE next_transition_at <= $1
                         ORDER BY next_transition_at LIMIT $2
                         FOR UPDATE SKIP LOCKED",
                        &[&now, &ADVANCE_BATCH],
                    )
                    .await?;
                for row in &due {
                    let id: &str = row.get(0);
                    let (next, due_again) = next_step(row.get(1), now, step);
                    tx.execute(
                        "UPDATE orders SET status = $2, update_time = $3, next_transition_at = $4
                         WHERE id = $1",
                        &[&id, &next, &now, &due_again],
                    )
                    .await?;
                    notify(&tx, &channel, id, next, now).await?;
                }
                tx.commit().await?;
                Ok(due.len())
            })
            .await
    }
}

impl OrderStore for PgOrderStore {
    async fn create(
        &self,
        key: String,
        fingerprint: String,
        order: Order,
    ) -> Result<Option<Created>, StorageError> {
        let step = self.step.as_millis() as i64;
        let channel = self.pool.channel(CHANGES);
        self.pool
            .write(|mut conn| async move {
                let tx = conn.transaction().await?;
                // Waits for a concurrent transaction holding the same key,
                // then inserts nothing if that one committed.
                let claimed = tx
                    .execute(
                        "INSERT INTO idempotency_keys (customer_id, key, fingerprint, order_id)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, key) DO NOTHING",
                        &[&order.customer_id, &key, &fingerprint, &order.id],
                    )
                    .await?;
                if claimed == 0 {
                    let earlier = tx
                        .query_one(
                            "SELECT fingerprint, order_id FROM idempotency_keys
                             WHERE customer_id = $1 AND key = $2",
                            &[&order.customer_id, &key],
                        )
                        .await?;
                    let stored: &str = earlier.get(0);
                    if stored != fingerprint {
                        return Ok(None);
                    }
                    let order = read(&tx, earlier.get(1))
                        .await?
                        .ok_or_else(|| StorageError::Task("key without order".into()))?;
                    return Ok(Some(Created {
                        order,
                        replayed: true,
                    }));
                }
                let now = now_millis();
                let order = placed(order, now);
                let due = (step > 0).then_some(now + step);
                tx.execute(
                    "INSERT INTO orders (id, customer_id, status, create_time, update_time, next_transition_at, message)
                     VALUES ($1, $2, $3, $4, $4, $5, $6)",
                    &[
                        &order.id,
                        &order.customer_id,
                        &order.status,
                        &now,
                        &due,
                        &prost::Message::encode_to_vec(&order),
                    ],
                )
                .await?;
                notify(&tx, &channel, &order.id, order.status, now).await?;
                tx.commit().await?;
                Ok(Some(Created {
                    order,
                    replayed: false,
                }))
            })
            .await
    }

    async fn get(&self, order_id: String) -> Result<Option<Order>, StorageError> {
        self.pool
            .read(|conn| async move { read(&*conn, &order_id).await })
            .await
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
            .read(|mut conn| async move {
                let statement = conn
                    .prepare_cached(
                        "SELECT id, create_time, status, update_time, message FROM orders
                         WHERE customer_id = $1
                         AND ($3 = '' OR create_time < $2 OR (create_time = $2 AND id < $3))
                         ORDER BY create_time DESC, id DESC LIMIT $4",
                    )
                    .await?;
                let rows = conn
                    .query(
                        &statement,
                        &[&customer_id, &time, &id, &((page_size + 1) as i64)],
                    )
                    .await?;
                let next = if rows.len() > page_size {
                    let last = &rows[page_size - 1];
                    PageToken::newest_first(fingerprint, last.get(1), last.get(0))
                } else {
                    String::new()
                };
                let orders = rows
                    .iter()
                    .take(page_size)
                    .map(|r| stored_order(r.get(2), r.get(3), r.get(4)))
                    .collect::<Result<_, _>>()?;
                Ok((orders, next))
            })
            .await
    }

    fn changes(&self) -> broadcast::Receiver<Order> {
        self.changes.subscribe()
    }
}
