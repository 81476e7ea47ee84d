//! The inventory's storage interface and its SQLite implementation.

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
            .read(move |conn| {
                let marks = vec!["?"; ids.len()].join(",");
                let mut statement = conn.prepare(&format!(
                    "SELECT product_id, warehouse_id, warehouse_name, ship_days, on_hand, reserved
                     FROM stock WHERE product_id IN ({marks}) ORDER BY product_id, ship_days"
                ))?;
                let rows = statement.query_map(params_from_iter(ids.iter()), |r| {
                    let on_hand: i32 = r.get(4)?;
                    let reserved: i32 = r.get(5)?;
                    Ok((
                        r.get::<_, String>(0)?,
                        WarehouseStock {
                            warehouse_id: r.get(1)?,
                            warehouse_name: r.get(2)?,
                            ship_days: r.get(3)?,
                            on_hand,
                            reserved,
                            available: on_hand - reserved,
                        },
                    ))
                })?;
                let mut stocks: Vec<ProductStock> = Vec::new();
                for row in rows {
                    let (product_id, warehouse) = row?;
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
                Ok(stocks)
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

    #[tokio::test]
    async fn concurrent_retries_of_one_reservation_hold_stock_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteInventoryStore::open(&dir.path().join("inventory.db"), 50)
            .await
            .unwrap();
        let index = (1..=50)
            .find(|i| tailor_seed::stock(*i).iter().any(|w| w.on_hand >= 5))
            .unwrap();
        let id = tailor_seed::product_id(index);
        let before = store.stock(vec![id.clone()]).await.unwrap()[0].total_available;
        let line = ReservationLine {
            product_id: id.clone(),
            quantity: 5,
        };
        let attempts: Vec<_> = (0..20)
            .map(|_| {
                let (store, line) = (store.clone(), line.clone());
                tokio::spawn(
                    async move { store.reserve("rsv-1".into(), vec![line]).await.unwrap() },
                )
            })
            .collect();
        let mut outcomes = Vec::new();
        for attempt in attempts {
            outcomes.push(attempt.await.unwrap());
        }
        let fresh = outcomes
            .iter()
            .filter(|o| matches!(o, ReserveOutcome::Reserved(_, false)))
            .count();
        assert_eq!(fresh, 1);
        let after = store.stock(vec![id.clone()]).await.unwrap()[0].total_available;
        assert_eq!(before - after, 5);
        let too_much = store
            .reserve(
                "rsv-2".into(),
                vec![ReservationLine {
                    product_id: id,
                    quantity: 100_000,
                }],
            )
            .await
            .unwrap();
        assert!(matches!(too_much, ReserveOutcome::Insufficient(_)));
    }

    #[tokio::test]
    async fn a_released_reservation_gives_its_stock_back_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteInventoryStore::open(&dir.path().join("inventory.db"), 50)
            .await
            .unwrap();
        let index = (1..=50)
            .find(|i| tailor_seed::stock(*i).iter().any(|w| w.on_hand >= 3))
            .unwrap();
        let id = tailor_seed::product_id(index);
        let available =
            || async { store.stock(vec![id.clone()]).await.unwrap()[0].total_available };
        let before = available().await;
        let line = ReservationLine {
            product_id: id.clone(),
            quantity: 3,
        };
        store
            .reserve("rsv-1".into(), vec![line.clone()])
            .await
            .unwrap();
        // Another reservation of the same product stays held throughout.
        store
            .reserve(
                "rsv-other".into(),
                vec![ReservationLine {
                    quantity: 1,
                    ..line.clone()
                }],
            )
            .await
            .unwrap();
        assert_eq!(available().await, before - 4);
        // Released twice at once: the stock comes back once.
        let (first, second) =
            tokio::join!(store.release("rsv-1".into()), store.release("rsv-1".into()));
        let released = [first.unwrap(), second.unwrap()];
        assert_eq!(released.iter().filter(|r| **r).count(), 1, "{released:?}");
        assert_eq!(available().await, before - 1);
        assert!(!store.release("rsv-1".into()).await.unwrap());
        assert!(!store.release("never-made".into()).await.unwrap());
        assert_eq!(available().await, before - 1);
        // The id is free again: a retried order holds stock afresh.
        let again = store.reserve("rsv-1".into(), vec![line]).await.unwrap();
        assert!(matches!(again, ReserveOutcome::Reserved(_, false)));
        assert_eq!(available().await, before - 4);
    }
}
