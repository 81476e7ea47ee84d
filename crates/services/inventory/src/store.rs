//! The inventory's storage interface, its SQLite implementation (here) and
//! its PostgreSQL implementation ([`postgres`]).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;

pub use postgres::PgInventoryStore;

use std::future::Future;
use std::path::Path;

use prost::Message;
use tailor_proto::inventory::v1::{
    ProductStock, Reservation, ReservationLine, ReservedLine, WarehouseStock,
};
use tailor_storage::rusqlite::{OptionalExtension, params, params_from_iter};
use tailor_storage::{Migration, SqlitePool, SqlitePoolOptions, StorageError};

/// The result of a reservation attempt.
#[derive(Debug, Clone)]
pub enum ReserveOutcome {
    /// Held (or found held already, `true`).
    Reserved(Reservation, bool),
    /// No warehouse holds enough of this product.
    Insufficient(String),
}

/// What the inventory handlers need from a store.
pub trait InventoryStore: Send + Sync + 'static {
    /// Stock of the products among `ids` that exist.
    fn stock(
        &self,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<ProductStock>, StorageError>> + Send;
    /// Holds stock for `lines`, all or nothing, idempotent on `reservation_id`.
    fn reserve(
        &self,
        reservation_id: String,
        lines: Vec<ReservationLine>,
    ) -> impl Future<Output = Result<ReserveOutcome, StorageError>> + Send;
    /// Gives back the stock held under `reservation_id` and forgets it, in
    /// one step: `true` when stock came back, `false` when none was held
    /// (never reserved, or released before), so it comes back only once.
    fn release(
        &self,
        reservation_id: String,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
}

/// [`InventoryStore`] over SQLite.
#[derive(Debug, Clone)]
pub struct SqliteInventoryStore {
    pool: SqlitePool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock (
    product_id     TEXT NOT NULL,
    warehouse_id   TEXT NOT NULL,
    warehouse_name TEXT NOT NULL,
    ship_days      INTEGER NOT NULL,
    on_hand        INTEGER NOT NULL,
    reserved       INTEGER NOT NULL DEFAULT 0 CHECK (reserved <= on_hand),
    PRIMARY KEY (product_id, warehouse_id)
);
CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, message BLOB NOT NULL);
";

/// The SQLite schema; the first step creates the tables only if missing,
/// so files from before migrations open unchanged.
const SQLITE_MIGRATIONS: &[Migration] = &[Migration::new(1, SCHEMA)];

/// Rows of `(product, warehouse)` ordered by product into each product's
/// stock, as both engines answer.
pub(crate) fn group_stock(
    rows: impl IntoIterator<Item = (String, WarehouseStock)>,
) -> Vec<ProductStock> {
    let mut stocks: Vec<ProductStock> = Vec::new();
    for (product_id, warehouse) in rows {
        match stocks.last_mut() {
            Some(last) if last.product_id == product_id => {
                last.total_available += warehouse.available;
                last.warehouses.push(warehouse);
            }
            _ => stocks.push(ProductStock {
                product_id,
                total_available: warehouse.available,
                warehouses: vec![warehouse],
            }),
        }
    }
    stocks
}

/// A warehouse's row as clients see it.
pub(crate) fn warehouse(
    warehouse_id: String,
    warehouse_name: String,
    ship_days: i32,
    on_hand: i32,
    reserved: i32,
) -> WarehouseStock {
    WarehouseStock {
        warehouse_id,
        warehouse_name,
        ship_days,
        on_hand,
        reserved,
        available: on_hand - reserved,
    }
}

impl SqliteInventoryStore {
    /// Opens the store, stocking `products` generated products when empty.
    pub async fn open(path: &Path, products: u32) -> Result<Self, StorageError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), SQLITE_MIGRATIONS)?;
        pool.seed_if_empty("stock", move |tx| {
            let mut insert = tx.prepare(
                "INSERT INTO stock (product_id, warehouse_id, warehouse_name, ship_days, on_hand)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for index in 1..=products {
                let id = tailor_seed::product_id(index);
                for w in tailor_seed::stock(index) {
                    insert.execute(params![
                        id,
                        w.warehouse_id,
                        w.warehouse_name,
                        w.ship_days,
                        w.on_hand
                    ])?;
                }
            }
            Ok(())
        })
        .await?;
        Ok(Self { pool })
    }
}

impl InventoryStore for SqliteInventoryStore {
    async fn stock(&self, ids: Vec<String>) -> Result<Vec<ProductStock>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .lookup(move |conn| {
                let marks = vec!["?"; ids.len()].join(",");
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT product_id, warehouse_id, warehouse_name, ship_days, on_hand, reserved
                     FROM stock WHERE product_id IN ({marks}) ORDER BY product_id, ship_days"
                ))?;
                let rows = statement.query_map(params_from_iter(ids.iter()), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        warehouse(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                    ))
                })?;
                Ok(group_stock(rows.collect::<Result<Vec<_>, _>>()?))
            })
            .await
    }

    async fn reserve(
        &self,
        reservation_id: String,
        lines: Vec<ReservationLine>,
    ) -> Result<ReserveOutcome, StorageError> {
        self.pool
            .write(move |conn| {
                let tx = conn.transaction()?;
                let existing: Option<Vec<u8>> = tx
                    .query_row("SELECT message FROM reservations WHERE id = ?1", params![reservation_id], |r| r.get(0))
                    .optional()?;
                if let Some(bytes) = existing {
                    let reservation = Reservation::decode(bytes.as_slice()).map_err(|e| StorageError::Task(e.to_string()))?;
                    return Ok(ReserveOutcome::Reserved(reservation, true));
                }
                let mut held = Vec::new();
                for line in &lines {
                    let warehouse: Option<String> = tx
                        .query_row(
                            "SELECT warehouse_id FROM stock WHERE product_id = ?1 AND on_hand - reserved >= ?2
                             ORDER BY on_hand - reserved DESC LIMIT 1",
                            params![line.product_id, line.quantity],
                            |r| r.get(0),
                        )
                        .optional()?;
                    let Some(warehouse_id) = warehouse else {
                        // Dropping the transaction rolls back what was held so far.
                        return Ok(ReserveOutcome::Insufficient(line.product_id.clone()));
                    };
                    tx.execute(
                        "UPDATE stock SET reserved = reserved + ?3 WHERE product_id = ?1 AND warehouse_id = ?2",
                        params![line.product_id, warehouse_id, line.quantity],
                    )?;
                    held.push(ReservedLine {
                        product_id: line.product_id.clone(),
                        quantity: line.quantity,
                        warehouse_id,
                    });
                }
                let reservation = Reservation { reservation_id: reservation_id.clone(), lines: held };
                tx.execute(
                    "INSERT INTO reservations (id, message) VALUES (?1, ?2)",
                    params![reservation_id, reservation.encode_to_vec()],
                )?;
                tx.commit()?;
                Ok(ReserveOutcome::Reserved(reservation, false))
            })
            .await
    }

    async fn release(&self, reservation_id: String) -> Result<bool, StorageError> {
        self.pool
            .write(move |conn| {
                let tx = conn.transaction()?;
                let held: Option<Vec<u8>> = tx
                    .query_row(
                        "SELECT message FROM reservations WHERE id = ?1",
                        params![reservation_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(bytes) = held else {
                    return Ok(false);
                };
                let reservation = Reservation::decode(bytes.as_slice())
                    .map_err(|e| StorageError::Task(e.to_string()))?;
                for line in &reservation.lines {
                    // Never below zero, whatever happened to the row since.
                    tx.execute(
                        "UPDATE stock SET reserved = MAX(reserved - ?3, 0)
                         WHERE product_id = ?1 AND warehouse_id = ?2",
                        params![line.product_id, line.warehouse_id, line.quantity],
                    )?;
                }
                tx.execute(
                    "DELETE FROM reservations WHERE id = ?1",
                    params![reservation_id],
                )?;
                tx.commit()?;
                Ok(true)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(dir: &tempfile::TempDir) -> SqliteInventoryStore {
        SqliteInventoryStore::open(&dir.path().join("inventory.db"), conformance::PRODUCTS)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn concurrent_retries_of_one_reservation_hold_stock_once() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_retries_of_one_reservation_hold_stock_once(&open(&dir).await).await;
    }

    #[tokio::test]
    async fn a_released_reservation_gives_its_stock_back_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        conformance::a_released_reservation_gives_its_stock_back_exactly_once(&open(&dir).await)
            .await;
    }

    #[tokio::test]
    async fn concurrent_reservations_never_hold_more_than_the_stock() {
        let dir = tempfile::tempdir().unwrap();
        conformance::concurrent_reservations_never_hold_more_than_the_stock(&open(&dir).await)
            .await;
    }

    #[tokio::test]
    async fn stock_is_seeded_once_and_answered_per_warehouse() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        conformance::stock_is_seeded_and_answered_per_warehouse(&store).await;
        drop(store);
        // Opening again keeps the data (and reservations) as they are.
        conformance::stock_is_seeded_and_answered_per_warehouse(&open(&dir).await).await;
    }
}
