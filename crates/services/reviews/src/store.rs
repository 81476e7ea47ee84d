//! The reviews' storage interface, its SQLite implementation (here) and
//! its PostgreSQL implementation ([`postgres`]).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;

pub use postgres::PgReviewsStore;

use std::future::Future;
use std::path::Path;

use prost::Message;
use tailor_proto::reviews::v1::{Review, ReviewSummary};
use tailor_storage::rusqlite::{params, params_from_iter};
use tailor_storage::{Migration, PageToken, SqlitePool, SqlitePoolOptions, StorageError};

/// What the reviews handlers need from a store.
pub trait ReviewsStore: Send + Sync + 'static {
    /// A page of a product's reviews, newest first, and the next page token.
    fn list(
        &self,
        product_id: String,
        page_size: usize,
        page_token: String,
    ) -> impl Future<Output = Result<(Vec<Review>, String), StorageError>> + Send;
    /// Summaries of the products among `ids` that have reviews.
    fn summaries(
        &self,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<ReviewSummary>, StorageError>> + Send;
}

/// [`ReviewsStore`] over SQLite.
#[derive(Debug, Clone)]
pub struct SqliteReviewsStore {
    pool: SqlitePool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reviews (
    id          TEXT PRIMARY KEY,
    product_id  TEXT NOT NULL,
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    create_time INTEGER NOT NULL,
    message     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_newest ON reviews (product_id, create_time DESC, id DESC);
";

/// The SQLite schema; the first step creates the tables only if missing,
/// so files from before migrations open unchanged.
/// Summaries count a product's reviews by rating from this index alone,
/// without reading a review.
const RATINGS: &str =
    "CREATE INDEX IF NOT EXISTS reviews_by_rating ON reviews (product_id, rating)";

const SQLITE_MIGRATIONS: &[Migration] = &[Migration::new(1, SCHEMA), Migration::new(2, RATINGS)];

fn decode(bytes: Vec<u8>) -> tailor_storage::rusqlite::Result<Review> {
    Review::decode(bytes.as_slice()).map_err(|e| {
        tailor_storage::rusqlite::Error::FromSqlConversionFailure(
            0,
            tailor_storage::rusqlite::types::Type::Blob,
            Box::new(e),
        )
    })
}

/// Summaries from `(product, rating, count)` rows ordered by product, as
/// both engines answer.
pub(crate) fn summarise(rows: impl IntoIterator<Item = (String, i32, i32)>) -> Vec<ReviewSummary> {
    let mut summaries: Vec<ReviewSummary> = Vec::new();
    for (product_id, rating, count) in rows {
        if summaries.last().is_none_or(|s| s.product_id != product_id) {
            summaries.push(ReviewSummary {
                product_id,
                review_count: 0,
                average_rating: 0.0,
                rating_histogram: vec![0; 5],
            });
        }
        let summary = summaries.last_mut().expect("just pushed");
        summary.rating_histogram[(rating - 1) as usize] = count;
        summary.review_count += count;
    }
    for s in &mut summaries {
        let stars: i32 = s
            .rating_histogram
            .iter()
            .enumerate()
            .map(|(i, c)| (i as i32 + 1) * c)
            .sum();
        s.average_rating = f64::from(stars) / f64::from(s.review_count);
    }
    summaries
}

/// A page (one more row than a page when there is a next one) of
/// `(time, id, review)` rows, newest first, with the next page's token.
pub(crate) fn newest_first_page(
    mut rows: Vec<(i64, String, Review)>,
    page_size: usize,
    fingerprint: u64,
) -> (Vec<Review>, String) {
    let next = if rows.len() > page_size {
        rows.truncate(page_size);
        let (time, id, _) = rows.last().expect("a full page");
        PageToken::newest_first(fingerprint, *time, id)
    } else {
        String::new()
    };
    (rows.into_iter().map(|(_, _, r)| r).collect(), next)
}

impl SqliteReviewsStore {
    /// Opens the store, seeding the generated reviews when empty.
    pub async fn open(path: &Path, products: u32) -> Result<Self, StorageError> {
        let pool = SqlitePool::open(path, &SqlitePoolOptions::default(), SQLITE_MIGRATIONS)?;
        pool
            .seed_if_empty("reviews", move |tx| {
                let mut insert = tx.prepare(
                    "INSERT INTO reviews (id, product_id, rating, create_time, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for index in 1..=products {
                    for r in tailor_seed::reviews(index) {
                        let time = r.create_time.map_or(0, |t| t.seconds);
                        insert.execute(params![r.id, r.product_id, r.rating, time, r.encode_to_vec()])?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(Self { pool })
    }
}

impl ReviewsStore for SqliteReviewsStore {
    async fn list(
        &self,
        product_id: String,
        page_size: usize,
        page_token: String,
    ) -> Result<(Vec<Review>, String), StorageError> {
        let fingerprint = PageToken::fingerprint(&[&product_id]);
        let (time, id) = PageToken::decode_newest_first(&page_token, fingerprint)?;
        self.pool
            .lookup(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT create_time, id, message FROM reviews WHERE product_id = ?1
                     AND (create_time < ?2 OR (create_time = ?2 AND id < ?3) OR ?3 = '')
                     AND create_time <= ?2
                     ORDER BY create_time DESC, id DESC LIMIT ?4",
                )?;
                let rows = statement.query_map(
                    params![product_id, time, id, (page_size + 1) as i64],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            decode(r.get(2)?)?,
                        ))
                    },
                )?;
                let rows = rows.collect::<Result<Vec<_>, _>>()?;
                Ok(newest_first_page(rows, page_size, fingerprint))
            })
            .await
    }

    async fn summaries(&self, ids: Vec<String>) -> Result<Vec<ReviewSummary>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .lookup(move |conn| {
                let marks = vec!["?"; ids.len()].join(",");
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT product_id, rating, COUNT(*) FROM reviews WHERE product_id IN ({marks})
                     GROUP BY product_id, rating ORDER BY product_id"
                ))?;
                let rows = statement.query_map(params_from_iter(ids.iter()), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i32>(1)?,
                        r.get::<_, i32>(2)?,
                    ))
                })?;
                Ok(summarise(rows.collect::<Result<Vec<_>, _>>()?))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_through_every_review_newest_first_and_summarises_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteReviewsStore::open(&dir.path().join("reviews.db"), conformance::PRODUCTS)
            .await
            .unwrap();
        conformance::pages_through_every_review_newest_first_and_summarises_them(&store).await;
        conformance::every_generated_review_is_seeded_once(&store).await;
    }
}
