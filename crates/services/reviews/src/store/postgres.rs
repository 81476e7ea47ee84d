//! [`ReviewsStore`] over PostgreSQL: the same table as SQLite, ids compared
//! byte by byte (`COLLATE "C"`) so pages come in the same order on both
//! engines. Replicas only read; the first to start seeds, under a lock on
//! the table, and the others find it seeded.

use prost::Message;
use tailor_proto::reviews::v1::{Review, ReviewSummary};
use tailor_storage::tokio_postgres::types::Type;
use tailor_storage::{
    CopyIn, Migration, PageToken, PgPool, PgPoolOptions, PostgresUrl, StorageError,
};

use super::{ReviewsStore, newest_first_page, summarise};

/// The service's schema in a shared database.
pub const SCHEMA: &str = "reviews";

const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        r#"
CREATE TABLE reviews (
    id          TEXT COLLATE "C" PRIMARY KEY,
    product_id  TEXT COLLATE "C" NOT NULL,
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    create_time BIGINT NOT NULL,
    message     BYTEA NOT NULL
);
CREATE INDEX reviews_newest ON reviews (product_id, create_time DESC, id DESC);
"#,
    ),
    // Summaries count a product's reviews by rating from this index alone.
    Migration::new(
        2,
        "CREATE INDEX reviews_by_rating ON reviews (product_id, rating)",
    ),
];

/// [`ReviewsStore`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgReviewsStore {
    pool: PgPool,
}

impl PgReviewsStore {
    /// Connects to `url` (schema [`SCHEMA`], migrated), seeding the
    /// generated reviews of `products` products when there are none.
    pub async fn connect(url: &PostgresUrl, products: u32) -> Result<Self, StorageError> {
        let pool = PgPool::connect(url, SCHEMA, MIGRATIONS, PgPoolOptions::default()).await?;
        pool.seed_if_empty("reviews", move |tx| {
            Box::pin(async move {
                let mut copy = CopyIn::start(
                    tx,
                    "COPY reviews (id, product_id, rating, create_time, message) FROM STDIN BINARY",
                    &[Type::TEXT, Type::TEXT, Type::INT4, Type::INT8, Type::BYTEA],
                )
                .await?;
                for index in 1..=products {
                    for r in tailor_seed::reviews(index) {
                        let time = r.create_time.map_or(0, |t| t.seconds);
                        copy.row(&[&r.id, &r.product_id, &r.rating, &time, &r.encode_to_vec()])
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

impl ReviewsStore for PgReviewsStore {
    async fn list(
        &self,
        product_id: String,
        page_size: usize,
        page_token: String,
    ) -> Result<(Vec<Review>, String), StorageError> {
        let fingerprint = PageToken::fingerprint(&[&product_id]);
        let (time, id) = PageToken::decode_newest_first(&page_token, fingerprint)?;
        self.pool
            .read(|mut conn| async move {
                let statement = conn
                    .prepare_cached(
                        "SELECT create_time, id, message FROM reviews WHERE product_id = $1
                         AND ($3 = '' OR create_time < $2 OR (create_time = $2 AND id < $3))
                         AND create_time <= $2
                         ORDER BY create_time DESC, id DESC LIMIT $4",
                    )
                    .await?;
                let rows = conn
                    .query(
                        &statement,
                        &[&product_id, &time, &id, &((page_size + 1) as i64)],
                    )
                    .await?
                    .iter()
                    .map(|r| {
                        let review = Review::decode(r.get::<_, &[u8]>(2))
                            .map_err(|e| StorageError::Task(e.to_string()))?;
                        Ok((r.get(0), r.get(1), review))
                    })
                    .collect::<Result<Vec<_>, StorageError>>()?;
                Ok(newest_first_page(rows, page_size, fingerprint))
            })
            .await
    }

    async fn summaries(&self, ids: Vec<String>) -> Result<Vec<ReviewSummary>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.pool
            .read(|mut conn| async move {
                let statement = conn
                    .prepare_cached(
                        "SELECT product_id, rating, count(*)::int4 FROM reviews
                         WHERE product_id = ANY($1)
                         GROUP BY product_id, rating ORDER BY product_id",
                    )
                    .await?;
                let rows = conn.query(&statement, &[&ids]).await?;
                Ok(summarise(
                    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))),
                ))
            })
            .await
    }
}
