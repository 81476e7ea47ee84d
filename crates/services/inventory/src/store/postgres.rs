//! [`InventoryStore`] over PostgreSQL, for several replicas of the
//! inventory service on one database.
//!
//! - **No oversell.** Stock is held with a conditional `UPDATE ... WHERE
//!   on_hand - reserved >= quantity`: whichever replica's update reaches a
//!   row second sees the first one's hold and matches nothing when too
//!   little is left, and then looks for another warehouse. A `CHECK
//!   (reserved <= on_hand)` backs it up.
//! - **One hold per reservation id.** The id is claimed first, `ON
//!   CONFLICT DO NOTHING`, in the transaction that holds the stock; a
//!   concurrent retry waits for it and answers with its reservation.
//! - **No deadlocks between reservations.** Lines are held in product
//!   order, so two reservations of the same products lock rows in the same
//!   order.

use prost::Message;
use tailor_proto::inventory::v1::{ProductStock, Reservation, ReservationLine, ReservedLine};
use tailor_storage::tokio_postgres::types::Type;
use tailor_storage::{CopyIn, Migration, PgPool, PgPoolOptions, PostgresUrl, StorageError};

use super::{InventoryStore, ReserveOutcome, group_stock, warehouse};

/// The service's schema in a shared database.
pub const SCHEMA: &str = "inventory";

const MIGRATIONS: &[Migration] = &[Migration::new(
    1,
    "
CREATE TABLE stock (
    product_id     TEXT NOT NULL,
    warehouse_id   TEXT NOT NULL,
    warehouse_name TEXT NOT NULL,
    ship_days      INTEGER NOT NULL,
    on_hand        INTEGER NOT NULL,
    reserved       INTEGER NOT NULL DEFAULT 0 CHECK (reserved <= on_hand),
    PRIMARY KEY (product_id, warehouse_id)
);
CREATE TABLE reservations (id TEXT PRIMARY KEY, message BYTEA NOT NULL);
",
)];

/// How often a line looks for another warehouse after a concurrent
/// reservation took the stock it found.
const HOLD_ATTEMPTS: usize = 8;

/// [`InventoryStore`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgInventoryStore {
    pool: PgPool,
}

fn decode(bytes: &[u8]) -> Result<Reservation, StorageError> {
    Reservation::decode(bytes).map_err(|e| StorageError::Task(e.to_string()))
}

impl PgInventoryStore {
    /// Connects to `url` (schema [`SCHEMA`], migrated), stocking `products`
    /// generated products when the stock is empty.
    pub async fn connect(url: &PostgresUrl, products: u32) -> Result<Self, StorageError> {
        let pool = PgPool::connect(url, SCHEMA, MIGRATIONS, PgPoolOptions::default()).await?;
        pool.seed_if_empty("stock", move |tx| {
            Box::pin(async move {
                let mut copy = CopyIn::start(
                    tx,
                    "COPY stock (product_id, warehouse_id, warehouse_name, ship_days, on_hand)
                     FROM STDIN BINARY",
                    &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT4, Type::INT4],
                )
                .await?;
                for index in 1..=products {
                    let id = tailor_seed::product_id(index);
                    for w in tailor_seed::stock(index) {
                        copy.row(&[
                            &id,
                            &w.warehouse_id,
                            &w.warehouse_name,
                            &w.ship_days,
                            &w.on_hand,
                        ])
                        .await?;
                    }
                }
                copy.finish().await?;
                Ok(())
            })
        })
        .await?;
        Ok(Self { pool })
    }
}

/// Holds `line` in the warehouse with the most available, or says none can
/// serve it.
async fn hold(
    tx: &tailor_storage::tokio_postgres::Transaction<'_>,
    line: &ReservationLine,
) -> Result<Option<String>, StorageError> {
    for _ in 0..HOLD_ATTEMPTS {
        let candidate = tx
            .query_opt(
                "SELECT warehouse_id FROM stock WHERE product_id = $1 AND on_hand - reserved >= $2
                 ORDER BY on_hand - reserved DESC, warehouse_id LIMIT 1",
                &[&line.product_id, &line.quantity],
            )
            .await?;
        let Some(candidate) = candidate else {
            return Ok(None);
        };
        let warehouse_id: String = candidate.get(0);
        // Only if it is still there: another replica may have taken it
        // since the look.
        let held = tx
            .execute(
                "UPDATE stock SET reserved = reserved + $3
                 WHERE product_id = $1 AND warehouse_id = $2 AND on_hand - reserved >= $3",
                &[&line.product_id, &warehouse_id, &line.quantity],
            )
            .await?;
        if held == 1 {
            return Ok(Some(warehouse_id));
        }
    }
    Ok(None)
}

impl InventoryStore for PgInventoryStore {
    async fn stock(&self, ids: Vec<String>) -> Result<Vec<ProductStock>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .read(|mut conn| async move {
                let statement = conn
                    .prepare_cached(
                        "SELECT product_id, warehouse_id, warehouse_name, ship_days, on_hand, reserved
                         FROM stock WHERE product_id = ANY($1) ORDER BY product_id, ship_days",
                    )
                    .await?;
                let rows = conn.query(&statement, &[&ids]).await?;
                Ok(group_stock(rows.iter().map(|r| {
                    (
                        r.get(0),
                        warehouse(r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)),
                    )
                })))
            })
            .await
    }

    async fn reserve(
        &self,
        reservation_id: String,
        lines: Vec<ReservationLine>,
    ) -> Result<ReserveOutcome, StorageError> {
        self.pool
            .write(|mut conn| async move {
                let tx = conn.transaction().await?;
                let claimed = tx
                    .execute(
                        "INSERT INTO reservations (id, message) VALUES ($1, '')
                         ON CONFLICT (id) DO NOTHING",
                        &[&reservation_id],
                    )
                    .await?;
                if claimed == 0 {
                    let row = tx
                        .query_one(
                            "SELECT message FROM reservations WHERE id = $1",
                            &[&reservation_id],
                        )
                        .await?;
                    return Ok(ReserveOutcome::Reserved(decode(row.get(0))?, true));
                }
                let mut order: Vec<usize> = (0..lines.len()).collect();
                order.sort_by(|a, b| lines[*a].product_id.cmp(&lines[*b].product_id));
                let mut warehouses = vec![String::new(); lines.len()];
                for index in order {
                    match hold(&tx, &lines[index]).await? {
                        Some(warehouse_id) => warehouses[index] = warehouse_id,
                        // Dropping the transaction gives back what was held
                        // so far, and the claim.
                        None => {
                            return Ok(ReserveOutcome::Insufficient(
                                lines[index].product_id.clone(),
                            ));
                        }
                    }
                }
                let reservation = Reservation {
                    reservation_id: reservation_id.clone(),
                    lines: lines
                        .iter()
                        .zip(warehouses)
                        .map(|(line, warehouse_id)| ReservedLine {
                            product_id: line.product_id.clone(),
                            quantity: line.quantity,
                            warehouse_id,
                        })
                        .collect(),
                };
                tx.execute(
                    "UPDATE reservations SET message = $2 WHERE id = $1",
                    &[&reservation_id, &reservation.encode_to_vec()],
                )
                .await?;
                tx.commit().await?;
                Ok(ReserveOutcome::Reserved(reservation, false))
            })
            .await
    }

    async fn release(&self, reservation_id: String) -> Result<bool, StorageError> {
        self.pool
            .write(|mut conn| async move {
                let tx = conn.transaction().await?;
                // A concurrent release waits here, then deletes nothing.
                let Some(row) = tx
                    .query_opt(
                        "DELETE FROM reservations WHERE id = $1 RETURNING message",
                        &[&reservation_id],
                    )
                    .await?
                else {
                    return Ok(false);
                };
                let mut reservation = decode(row.get(0))?;
                reservation
                    .lines
                    .sort_by(|a, b| a.product_id.cmp(&b.product_id));
                for line in &reservation.lines {
                    // Never below zero, whatever happened to the row since.
                    tx.execute(
                        "UPDATE stock SET reserved = GREATEST(reserved - $3, 0)
                         WHERE product_id = $1 AND warehouse_id = $2",
                        &[&line.product_id, &line.warehouse_id, &line.quantity],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            })
            .await
    }
}
