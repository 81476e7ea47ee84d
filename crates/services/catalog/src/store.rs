//! The catalog's storage interface, its SQLite implementation (here) and
//! its PostgreSQL implementation ([`postgres`]).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;

pub use postgres::PgCatalogStore;

use std::future::Future;
use std::path::Path;
use std::time::Instant;

use prost::Message;
use tailor_fieldmask::FieldMask;
use tailor_proto::catalog::v1::{Category, Product};
use tailor_storage::rusqlite::types::Value;
use tailor_storage::rusqlite::{OptionalExtension, params, params_from_iter};
use tailor_storage::{Migration, PageToken, SqlitePool, SqlitePoolOptions, StorageError};

/// Filters of a product listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this category ("" for all).
    pub category_id: String,
    /// Lower-case words that must all appear in title, brand or tags.
    pub words: Vec<String>,
    /// Only products updated at or after (seconds since the epoch).
    pub updated_since: Option<i64>,
    /// Page size, already validated.
    pub page_size: usize,
    /// The request's page token.
    pub page_token: String,
    /// The fields to answer (`None`: all of them).
    pub fields: Option<FieldMask>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ProductPage {
    /// Products ordered by id.
    pub products: Vec<Product>,
    /// Token of the next page, empty on the last.
    pub next_page_token: String,
    /// Matches across all pages.
    pub total_size: i32,
}

/// What the catalog handlers need from a store.
pub trait CatalogStore: Send + Sync + 'static {
    /// The products among `ids` that exist, in no particular order.
    fn products(
        &self,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<Product>, StorageError>> + Send;
    /// A page of a filtered listing.
    fn list(
        &self,
        filter: ListFilter,
    ) -> impl Future<Output = Result<ProductPage, StorageError>> + Send;
    /// Products of the same category closest in price, with the fields
    /// `fields` selects (all without a mask); `None` for an unknown product.
    fn related(
        &self,
        id: String,
        limit: usize,
        fields: Option<FieldMask>,
    ) -> impl Future<Output = Result<Option<Vec<Product>>, StorageError>> + Send;
    /// Every category with its product count.
    fn categories(&self) -> impl Future<Output = Result<Vec<Category>, StorageError>> + Send;
}

/// [`CatalogStore`] over SQLite.
#[derive(Debug, Clone)]
pub struct SqliteCatalogStore {
    pool: SqlitePool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS categories (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id          TEXT PRIMARY KEY,
    category_id TEXT NOT NULL REFERENCES categories (id),
    search      TEXT NOT NULL,
    price       INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    message     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS products_by_category ON products (category_id, id);
CREATE INDEX IF NOT EXISTS products_by_price ON products (category_id, price);
CREATE INDEX IF NOT EXISTS products_by_price_id ON products (category_id, price, id);
";

/// Listings of what changed since a time (the partner feed) count and page
/// through this index instead of every row.
const UPDATE_TIME_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS products_by_update_time ON products (update_time, id);";

/// A listing's values as SQLite binds them.
fn sqlite_values(values: &[Bound]) -> Vec<Value> {
    values
        .iter()
        .map(|value| match value {
            Bound::Text(text) => Value::Text(text.clone()),
            Bound::Integer(n) => Value::Integer(*n),
        })
        .collect()
}

/// The SQLite schema; the first step creates the tables only if missing,
/// so files from before migrations open unchanged.
const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration::new(1, SCHEMA),
    Migration::new(2, UPDATE_TIME_INDEX),
];

/// The `limit` products of `category` nearest in price to `price` (ties by
/// id), `id` excluded, as `(id, rowid)`: the order of `ORDER BY ABS(price -
/// ?), id`, found with two short walks of the `(category_id, price, id)`
/// index instead of sorting the whole category. Each side contributes at
/// most `limit` prices; every product at the farthest price taken on a side
/// is a candidate, so ties at the edge are ordered by id exactly as the
/// full sort would.
fn nearest_by_price(
    conn: &tailor_storage::rusqlite::Connection,
    category: &str,
    id: &str,
    price: i64,
    limit: usize,
) -> tailor_storage::rusqlite::Result<Vec<(String, i64)>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // The farthest price each side needs: the limit-th nearest one.
    let edge = |sql: &str| -> tailor_storage::rusqlite::Result<Option<i64>> {
        conn.prepare_cached(sql)?
            .query_row(params![category, id, price, limit as i64 - 1], |r| r.get(0))
            .optional()
    };
    let below = edge(
        "SELECT price FROM products WHERE category_id = ?1 AND id <> ?2 AND price <= ?3
         ORDER BY price DESC LIMIT 1 OFFSET ?4",
    )?;
    let above = edge(
        "SELECT price FROM products WHERE category_id = ?1 AND id <> ?2 AND price > ?3
         ORDER BY price ASC LIMIT 1 OFFSET ?4",
    )?;
    // Without a limit-th product on a side, that whole side is a candidate.
    let low = below.unwrap_or(i64::MIN);
    let high = above.unwrap_or(i64::MAX);
    // The index holds (category, price, id) and the rowid: no table row is
    // read until the nearest are known.
    let mut statement = conn.prepare_cached(
        "SELECT id, price, rowid FROM products WHERE category_id = ?1 AND id <> ?2
         AND price BETWEEN ?3 AND ?4",
    )?;
    let candidates = statement
        .query_map(params![category, id, low, high], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(nearest(candidates, price, limit))
}

/// The `limit` candidates `(id, price, what)` nearest to `price`, ties by
/// id, as `(id, what)`: the order of `ORDER BY ABS(price - ?), id`.
pub(crate) fn nearest<T>(
    mut candidates: Vec<(String, i64, T)>,
    price: i64,
    limit: usize,
) -> Vec<(String, T)> {
    candidates.sort_by(|(a_id, a, _), (b_id, b, _)| {
        a.abs_diff(price)
            .cmp(&b.abs_diff(price))
            .then_with(|| a_id.cmp(b_id))
    });
    candidates.truncate(limit);
    candidates
        .into_iter()
        .map(|(id, _, what)| (id, what))
        .collect()
}

/// The product stored in column `column` of `row`, with the fields
/// `fields` selects, decoded from SQLite's own copy of the bytes.
fn stored_product(
    row: &tailor_storage::rusqlite::Row<'_>,
    column: usize,
    fields: Option<&FieldMask>,
) -> tailor_storage::rusqlite::Result<Product> {
    decode_selected(row.get_ref(column)?.as_blob()?, fields).map_err(|e| {
        tailor_storage::rusqlite::Error::FromSqlConversionFailure(
            column,
            tailor_storage::rusqlite::types::Type::Blob,
            Box::new(e),
        )
    })
}

/// A stored product with only the fields `fields` selects (all without a
/// mask): the unselected fields are dropped from the stored bytes, so
/// what is not answered is never decoded.
pub(crate) fn decode_selected(
    bytes: &[u8],
    fields: Option<&FieldMask>,
) -> Result<Product, prost::DecodeError> {
    match fields.filter(|mask| !mask.is_all()) {
        Some(mask) => Product::decode(mask.apply_encoded(bytes).as_slice()),
        None => Product::decode(bytes),
    }
}

/// The fingerprint of a listing's filters, which its page tokens carry.
pub(crate) fn list_fingerprint(filter: &ListFilter) -> u64 {
    let since = filter
        .updated_since
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut parts = vec![filter.category_id.as_str(), since.as_str()];
    parts.extend(filter.words.iter().map(String::as_str));
    PageToken::fingerprint(&parts)
}

/// A word as a `LIKE` pattern matching it anywhere; the caller's `%` and
/// `_` are dropped, not interpreted.
fn like_pattern(word: &str) -> String {
    format!("%{}%", word.replace(['%', '_'], ""))
}

/// A value a listing's query binds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Text(String),
    Integer(i64),
}

/// A listing's filters as SQL for either engine: `conditions` holds only
/// the filters asked for, each followed by ` AND `, so that the count and
/// the page go through an index (a condition that is always true, such as
/// `'' = '' OR category_id = ''`, made SQLite read every row for each
/// page); `values` are bound in order, placeholder `n` written by `mark`.
pub(crate) struct ListSql {
    pub conditions: String,
    pub values: Vec<Bound>,
}

impl ListSql {
    pub(crate) fn new(filter: &ListFilter, mark: fn(usize) -> String) -> Self {
        let mut sql = ListSql {
            conditions: String::new(),
            values: Vec::new(),
        };
        if !filter.category_id.is_empty() {
            sql.and(
                "category_id =",
                Bound::Text(filter.category_id.clone()),
                mark,
            );
        }
        if let Some(since) = filter.updated_since {
            sql.and("update_time >=", Bound::Integer(since), mark);
        }
        for word in &filter.words {
            sql.and("search LIKE", Bound::Text(like_pattern(word)), mark);
        }
        sql
    }

    fn and(&mut self, test: &str, value: Bound, mark: fn(usize) -> String) {
        self.values.push(value);
        let placeholder = mark(self.values.len());
        self.conditions
            .push_str(&format!("{test} {placeholder} AND "));
    }

    /// Binds `after` as the next value and returns its placeholder.
    pub(crate) fn after(&mut self, after: String, mark: fn(usize) -> String) -> String {
        self.values.push(Bound::Text(after));
        mark(self.values.len())
    }
}

/// The page out of `products` (one more than a page when there is a
/// next one), with the token of the next page.
pub(crate) fn page_of(
    mut products: Vec<Product>,
    page_size: usize,
    fingerprint: u64,
    total: i64,
) -> ProductPage {
    let next_page_token = if products.len() > page_size {
        products.truncate(page_size);
        PageToken {
            query: fingerprint,
            after: products.last().map(|p| p.id.clone()).unwrap_or_default(),
        }
        .encode()
    } else {
        String::new()
    };
    ProductPage {
        products,
        next_page_token,
        total_size: total as i32,
    }
}

/// What a product's words are searched in: title, brand and tags, lower
/// case.
pub(crate) fn search_text(product: &Product) -> String {
    format!(
        "{} {} {}",
        product.title,
        product.brand,
        product.tags.join(" ")
    )
    .to_lowercase()
}

impl SqliteCatalogStore {
    /// Opens the store, seeding `products` generated products when empty.
    pub async fn open(path: &Path, products: u32) -> Result<Self, StorageError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), SQLITE_MIGRATIONS)?;
        let started = Instant::now();
        let seeded = pool
            .seed_if_empty("products", move |tx| {
                let mut category =
                    tx.prepare("INSERT OR IGNORE INTO categories (id, name) VALUES (?1, ?2)")?;
                for c in tailor_seed::categories() {
                    category.execute(params![c.id, c.name])?;
                }
                let mut insert = tx.prepare(
                    "INSERT INTO products (id, category_id, search, price, update_time, message)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for index in 1..=products {
                    let p = tailor_seed::product(index);
                    insert.execute(params![
                        p.id,
                        p.category_id,
                        search_text(&p),
                        p.price.as_ref().map_or(0, |m| m.amount_minor),
                        p.update_time.map_or(0, |t| t.seconds),
                        p.encode_to_vec()
                    ])?;
                }
                Ok(())
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

impl CatalogStore for SqliteCatalogStore {
    async fn products(&self, ids: Vec<String>) -> Result<Vec<Product>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .lookup(move |conn| {
                let mut statement = if ids.len() == 1 {
                    conn.prepare_cached("SELECT message FROM products WHERE id = ?1")?
                } else {
                    let marks = vec!["?"; ids.len()].join(",");
                    conn.prepare_cached(&format!(
                        "SELECT message FROM products WHERE id IN ({marks})"
                    ))?
                };
                let rows = statement
                    .query_map(params_from_iter(ids.iter()), |r| stored_product(r, 0, None))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn list(&self, filter: ListFilter) -> Result<ProductPage, StorageError> {
        let fingerprint = list_fingerprint(&filter);
        let after = PageToken::decode(&filter.page_token, fingerprint)?.map(|t| t.after);
        self.pool
            .read(move |conn| {
                let mark = |n: usize| format!("?{n}");
                let mut sql = ListSql::new(&filter, mark);
                let filters = sql.conditions.clone();
                let count = format!("SELECT COUNT(*) FROM products WHERE {filters}TRUE");
                let total: i64 = conn.query_row(&count, params_from_iter(sqlite_values(&sql.values)), |r| r.get(0))?;
                let after = sql.after(after.unwrap_or_default(), mark);
                let sql_text = format!(
                    "SELECT id, message FROM products WHERE {filters}id > {after} ORDER BY id LIMIT {}",
                    filter.page_size + 1
                );
                let values = sqlite_values(&sql.values);
                let mut statement = conn.prepare(&sql_text)?;
                let products = statement
                    .query_map(params_from_iter(values), |r| {
                        stored_product(r, 1, filter.fields.as_ref())
                    })?
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
            .lookup(move |conn| {
                let Some((category, price)) = conn
                    .prepare_cached("SELECT category_id, price FROM products WHERE id = ?1")?
                    .query_row(params![id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()?
                else {
                    return Ok(None);
                };
                let nearest = nearest_by_price(conn, &category, &id, price, limit)?;
                let mut statement =
                    conn.prepare_cached("SELECT message FROM products WHERE rowid = ?1")?;
                let products = nearest
                    .iter()
                    .map(|(_, rowid)| {
                        statement
                            .query_row(params![rowid], |r| stored_product(r, 0, fields.as_ref()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(products))
            })
            .await
    }

    async fn categories(&self) -> Result<Vec<Category>, StorageError> {
        self.pool
            .read(|conn| {
                let mut statement = conn.prepare(
                    "SELECT c.id, c.name, COUNT(p.id) FROM categories c
                     LEFT JOIN products p ON p.category_id = c.id GROUP BY c.id ORDER BY c.name",
                )?;
                let rows = statement.query_map([], |r| {
                    Ok(Category {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        product_count: r.get(2)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index walk picks what the whole-category sort picked, edge ties
    /// included.
    #[tokio::test]
    async fn related_products_are_the_nearest_in_price_as_a_full_sort_orders_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteCatalogStore::open(&dir.path().join("catalog.db"), 3_000)
            .await
            .unwrap();
        let mismatches = store
            .pool
            .read(|conn| {
                let mut full = conn.prepare(
                    "SELECT id FROM products WHERE category_id = ?1 AND id <> ?2
                     ORDER BY ABS(price - ?3), id LIMIT ?4",
                )?;
                let mut mismatches = Vec::new();
                for index in (1..=3_000).step_by(7) {
                    let id = tailor_seed::product(index).id;
                    let (category, price): (String, i64) = conn.query_row(
                        "SELECT category_id, price FROM products WHERE id = ?1",
                        params![id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    for limit in [0, 1, 4, 12, 500] {
                        let expected = full
                            .query_map(params![category, id, price, limit as i64], |r| {
                                r.get::<_, String>(0)
                            })?
                            .collect::<Result<Vec<_>, _>>()?;
                        let found: Vec<String> =
                            nearest_by_price(conn, &category, &id, price, limit)?
                                .into_iter()
                                .map(|(id, _)| id)
                                .collect();
                        if found != expected {
                            mismatches.push((id.clone(), limit, expected, found));
                        }
                    }
                }
                Ok(mismatches)
            })
            .await
            .unwrap();
        assert!(mismatches.is_empty(), "{:?}", mismatches.first());
    }

    async fn seeded(dir: &tempfile::TempDir) -> SqliteCatalogStore {
        SqliteCatalogStore::open(&dir.path().join("catalog.db"), conformance::PRODUCTS)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_catalogue_is_seeded_once() {
        let dir = tempfile::tempdir().unwrap();
        conformance::the_catalogue_is_seeded_once(&seeded(&dir).await).await;
        // Opening again seeds nothing more.
        conformance::the_catalogue_is_seeded_once(&seeded(&dir).await).await;
    }

    #[tokio::test]
    async fn listings_filter_and_page() {
        let dir = tempfile::tempdir().unwrap();
        conformance::listings_filter_and_page(&seeded(&dir).await).await;
    }

    #[tokio::test]
    async fn related_products_are_the_nearest_in_price() {
        let dir = tempfile::tempdir().unwrap();
        conformance::related_products_are_the_nearest_in_price(&seeded(&dir).await).await;
    }
}
