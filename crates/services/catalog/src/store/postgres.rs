//! [`CatalogStore`] over PostgreSQL: the same tables as SQLite, each
//! product's encoded message beside the columns queries filter on, ids
//! compared byte by byte (`COLLATE "C"`) so pages come in the same order
//! on both engines. Replicas only read; the first to start seeds, under a
//! lock on the table, and the others find it seeded.

use std::time::Instant;

use prost::Message;
use tailor_fieldmask::FieldMask;
use tailor_proto::catalog::v1::{Category, Product};
use tailor_storage::tokio_postgres::types::{ToSql, Type};
use tailor_storage::{
    CopyIn, Migration, PageToken, PgPool, PgPoolOptions, PostgresUrl, StorageError,
};

use super::{
    Bound, CatalogStore, ListFilter, ListSql, ProductPage, decode_selected, list_fingerprint,
    nearest, page_of, search_text,
};

/// The service's schema in a shared database.
pub const SCHEMA: &str = "catalog";

const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        r#"
CREATE TABLE categories (id TEXT COLLATE "C" PRIMARY KEY, name TEXT COLLATE "C" NOT NULL);
CREATE TABLE products (
    id          TEXT COLLATE "C" PRIMARY KEY,
    category_id TEXT COLLATE "C" NOT NULL REFERENCES categories (id),
    search      TEXT NOT NULL,
    price       BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    message     BYTEA NOT NULL
);
CREATE INDEX products_by_category ON products (category_id, id);
CREATE INDEX products_by_price_id ON products (category_id, price, id);
"#,
    ),
    Migration::new(
        2,
        "CREATE INDEX products_by_update_time ON products (update_time, id);",
    ),
];

/// [`CatalogStore`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgCatalogStore {
    pool: PgPool,
}

fn decode(bytes: &[u8], fields: Option<&FieldMask>) -> Result<Product, StorageError> {
    decode_selected(bytes, fields).map_err(|e| StorageError::Corrupt(e.to_string()))
}

impl PgCatalogStore {
    /// Connects to `url` (schema [`SCHEMA`], migrated), seeding `products`
    /// generated products when the catalogue is empty.
    pub async fn connect(url: &PostgresUrl, products: u32) -> Result<Self, StorageError> {
        let pool = PgPool::connect(url, SCHEMA, MIGRATIONS, PgPoolOptions::default()).await?;
        let started = Instant::now();
        let seeded = pool
            .seed_if_empty("products", move |tx| {
                Box::pin(async move {
                    for c in tailor_seed::categories() {
                        tx.execute(
                            "INSERT INTO categories (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            &[&c.id, &c.name],
                        )
                        .await?;
                    }
                    let mut copy = CopyIn::start(
                        tx,
                        "COPY products (id, category_id, search, price, update_time, message)
                         FROM STDIN BINARY",
                        &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8, Type::INT8, Type::BYTEA],
                    )
                    .await?;
                    for index in 1..=products {
                        let p = tailor_seed::product(index);
                        copy.row(&[
                            &p.id,
                            &p.category_id,
                            &search_text(&p),
                            &p.price.as_ref().map_or(0, |m| m.amount_minor),
                            &p.update_time.map_or(0, |t| t.seconds),
                            &p.encode_to_vec(),
                        ])
                        .await?;
                    }
                    copy.finish().await?;
                    Ok(())
                })
            })
            .await?;
        if seeded {
            tracing::info!(
                products,
                seconds = started.elapsed().as_secs_f64(),
                "seeded the catalogue"
            );
        }
        Ok(Self { pool })
    }
}

impl CatalogStore for PgCatalogStore {
    async fn products(&self, ids: Vec<String>) -> Result<Vec<Product>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .read(|mut conn| async move {
                let statement = conn
                    .prepare_cached("SELECT message FROM products WHERE id = ANY($1)")
                    .await?;
                conn.query(&statement, &[&ids])
                    .await?
                    .iter()
                    .map(|r| decode(r.get(0), None))
                    .collect()
            })
            .await
    }

    async fn list(&self, filter: ListFilter) -> Result<ProductPage, StorageError> {
        let fingerprint = list_fingerprint(&filter);
        let after = PageToken::decode(&filter.page_token, fingerprint)?
            .map(|t| t.after)
            .unwrap_or_default();
        self.pool
            .read(|conn| async move {
                let mark = |n: usize| format!("${n}");
                let mut sql = ListSql::new(&filter, mark);
                let filters = sql.conditions.clone();
                let after = sql.after(after, mark);
                let values: Vec<&(dyn ToSql + Sync)> = sql
                    .values
                    .iter()
                    .map(|value| match value {
                        Bound::Text(text) => text as &(dyn ToSql + Sync),
                        Bound::Integer(n) => n,
                    })
                    .collect();
                // The count binds every value but the last (`after`).
                let (_, filtered) = values.split_last().expect("after is bound");
                let total: i64 = conn
                    .query_one(
                        &format!("SELECT count(*) FROM products WHERE {filters}TRUE"),
                        filtered,
                    )
                    .await?
                    .get(0);
                let sql = format!(
                    "SELECT message FROM products WHERE {filters}id > {after} ORDER BY id LIMIT {}",
                    filter.page_size + 1
                );
                let products = conn
                    .query(&sql, &values)
                    .await?
                    .iter()
                    .map(|r| decode(r.get(0), filter.fields.as_ref()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(page_of(products, filter.page_size, fingerprint, total))
            })
            .await
    }

    async fn related(
        &self,
        id: String,
        limit: usize,
        fields: Option<FieldMask>,
    ) -> Result<Option<Vec<Product>>, StorageError> {
        self.pool
            .read(|mut conn| async move {
                let Some(row) = conn
                    .query_opt("SELECT category_id, price FROM products WHERE id = $1", &[&id])
                    .await?
                else {
                    return Ok(None);
                };
                if limit == 0 {
                    return Ok(Some(Vec::new()));
                }
                let (category, price): (String, i64) = (row.get(0), row.get(1));
                // The index walk of the SQLite store: the limit-th nearest
                // price on each side bounds the candidates.
                let offset = limit as i64 - 1;
                let below = conn
                    .prepare_cached(
                        "SELECT price FROM products WHERE category_id = $1 AND id <> $2 AND price <= $3
                         ORDER BY price DESC LIMIT 1 OFFSET $4",
                    )
                    .await?;
                let above = conn
                    .prepare_cached(
                        "SELECT price FROM products WHERE category_id = $1 AND id <> $2 AND price > $3
                         ORDER BY price ASC LIMIT 1 OFFSET $4",
                    )
                    .await?;
                let low = conn
                    .query_opt(&below, &[&category, &id, &price, &offset])
                    .await?
                    .map_or(i64::MIN, |r| r.get(0));
                let high = conn
                    .query_opt(&above, &[&category, &id, &price, &offset])
                    .await?
                    .map_or(i64::MAX, |r| r.get(0));
                let candidates = conn
                    .prepare_cached(
                        "SELECT id, price FROM products WHERE category_id = $1 AND id <> $2
                         AND price BETWEEN $3 AND $4",
                    )
                    .await?;
                let candidates = conn
                    .query(&candidates, &[&category, &id, &low, &high])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), ()))
                    .collect();
                let ids: Vec<String> = nearest(candidates, price, limit)
                    .into_iter()
                    .map(|(id, ())| id)
                    .collect();
                let messages = conn
                    .prepare_cached("SELECT id, message FROM products WHERE id = ANY($1)")
                    .await?;
                let mut found = conn
                    .query(&messages, &[&ids])
                    .await?
                    .iter()
                    .map(|r| Ok((r.get::<_, String>(0), decode(r.get(1), fields.as_ref())?)))
                    .collect::<Result<std::collections::HashMap<_, _>, StorageError>>()?;
                Ok(Some(ids.iter().filter_map(|id| found.remove(id)).collect()))
            })
            .await
    }

    async fn categories(&self) -> Result<Vec<Category>, StorageError> {
        self.pool
            .read(|conn| async move {
                let rows = conn
                    .query(
                        "SELECT c.id, c.name, count(p.id)::int4 FROM categories c
                         LEFT JOIN products p ON p.category_id = c.id
                         GROUP BY c.id, c.name ORDER BY c.name",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| Category {
                        id: r.get(0),
                        name: r.get(1),
                        product_count: r.get(2),
                    })
                    .collect())
            })
            .await
    }
}
