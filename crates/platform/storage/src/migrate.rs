//! Schema migrations: a numbered list of SQL per store and engine.
//!
//! Each store lists its migrations in order; a store opening a database
//! applies, in one transaction, those whose numbers the database's
//! `schema_migrations` table does not yet hold, and records them there.
//! Migrations are never edited once released: a change to a schema is a
//! new number. The first migration of every SQLite store creates its tables
//! `IF NOT EXISTS`, so files written before migrations were recorded open
//! unchanged and are recorded as at version 1.

use rusqlite::{Connection, TransactionBehavior};

use crate::StorageError;

/// One step of a store's schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: steps run in ascending order, each once.
    pub version: i64,
    /// The statements, run as one batch.
    pub sql: &'static str,
}

impl Migration {
    /// Step `version` runs `sql`.
    pub const fn new(version: i64, sql: &'static str) -> Self {
        Self { version, sql }
    }
}

/// Refuses a list whose numbers do not ascend: a typo there would apply
/// steps out of order.
pub(crate) fn check_order(migrations: &[Migration]) -> Result<(), StorageError> {
    if migrations.windows(2).any(|w| w[0].version >= w[1].version) {
        return Err(StorageError::Startup(
            "migrations must be numbered in ascending order".to_owned(),
        ));
    }
    Ok(())
}

/// Applies the `migrations` a SQLite database does not have yet, in one
/// immediate transaction (so another process opening the same file waits
/// instead of applying them too).
pub fn migrate_sqlite(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StorageError> {
    check_order(migrations)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let applied: Vec<i64> = {
        let mut statement = tx.prepare("SELECT version FROM schema_migrations")?;
        let rows = statement.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for migration in migrations {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())",
            [migration.version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: Migration = Migration::new(1, "CREATE TABLE IF NOT EXISTS t (a INTEGER)");
    const V2: Migration = Migration::new(2, "ALTER TABLE t ADD COLUMN b INTEGER");

    #[test]
    fn each_step_runs_once_and_files_from_before_migrations_open() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A file written before migrations were recorded.
        conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)")
            .unwrap();
        migrate_sqlite(&mut conn, &[V1]).unwrap();
        migrate_sqlite(&mut conn, &[V1, V2]).unwrap();
        migrate_sqlite(&mut conn, &[V1, V2]).unwrap();
        let (rows, versions): (i64, String) = conn
            .query_row(
                "SELECT (SELECT COUNT(b) + COUNT(a) FROM t),
                        (SELECT group_concat(version) FROM schema_migrations)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, versions.as_str()), (1, "1,2"));
        assert!(migrate_sqlite(&mut conn, &[V2, V1]).is_err());
    }
}
