//! The reviews service: customer ratings and review texts, newest first,
//! and rating summaries kept beside them so a list of cards costs one
//! indexed lookup per product.
//!
//! Handlers reach data only through [`ReviewsStore`]: a SQLite file by
//! default, or PostgreSQL (schema `reviews`) when configured, which
//! replicas share. It knows nothing about products beyond their ids.

#![forbid(unsafe_code)]

mod store;

use tailor_interceptors::input;
use tailor_proto::reviews::v1::reviews_service_server::{ReviewsService, ReviewsServiceServer};
use tailor_proto::reviews::v1::{
    BatchGetReviewSummariesRequest, BatchGetReviewSummariesResponse, GetReviewSummaryRequest,
    GetReviewSummaryResponse, ListReviewsRequest, ListReviewsResponse, ReviewSummary,
};
use tailor_runtime::GrpcServer;
use tailor_storage::PageSize;
use tonic::{Request, Response, Status};

#[cfg(feature = "conformance")]
pub use store::conformance;
pub use store::{PgReviewsStore, ReviewsStore, SqliteReviewsStore};
pub use tailor_storage::Database;

const MAX_BATCH: usize = 500;
const REVIEWS: PageSize = PageSize::new(10, 100);

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct ReviewsConfig {
    /// The SQLite file, or the PostgreSQL database.
    pub database: Database,
    /// Products whose reviews are generated on first start.
    pub products: u32,
}

/// What can go wrong in reviews.
#[derive(Debug, thiserror::Error)]
pub enum ReviewsError {
    /// Below the store.
    #[error(transparent)]
    Storage(#[from] tailor_storage::StorageError),
    /// A field of the request is wrong; the text names it.
    #[error("{0}")]
    InvalidArgument(String),
}

impl From<ReviewsError> for Status {
    fn from(error: ReviewsError) -> Self {
        match error {
            ReviewsError::Storage(e) => match e.client_message() {
                Some(message) => Status::invalid_argument(message),
                None => tailor_interceptors::error::internal(e),
            },
            ReviewsError::InvalidArgument(m) => Status::invalid_argument(m),
        }
    }
}

/// A product without reviews has this summary.
fn empty_summary(product_id: &str) -> ReviewSummary {
    ReviewSummary {
        product_id: product_id.to_owned(),
        review_count: 0,
        average_rating: 0.0,
        rating_histogram: vec![0; 5],
    }
}

/// The reviews handlers over a store.
#[derive(Debug, Clone)]
pub struct Reviews<S> {
    store: S,
}

fn require(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(ReviewsError::InvalidArgument("product_id is required".into()).into());
    }
    input::id("product_id", id)
}

#[tonic::async_trait]
impl<S: ReviewsStore> ReviewsService for Reviews<S> {
    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        let request = request.into_inner();
        require(&request.product_id)?;
        let page_size = REVIEWS.of(request.page_size).map_err(ReviewsError::from)?;
        let (reviews, next_page_token) = self
            .store
            .list(request.product_id, page_size, request.page_token)
            .await
            .map_err(ReviewsError::from)?;
        Ok(Response::new(ListReviewsResponse {
            reviews,
            next_page_token,
        }))
    }

    async fn get_review_summary(
        &self,
        request: Request<GetReviewSummaryRequest>,
    ) -> Result<Response<GetReviewSummaryResponse>, Status> {
        let id = request.into_inner().product_id;
        require(&id)?;
        let summary = self
            .store
            .summaries(vec![id.clone()])
            .await
            .map_err(ReviewsError::from)?
            .pop()
            .unwrap_or_else(|| empty_summary(&id));
        Ok(Response::new(GetReviewSummaryResponse {
            summary: Some(summary),
        }))
    }

    async fn batch_get_review_summaries(
        &self,
        request: Request<BatchGetReviewSummariesRequest>,
    ) -> Result<Response<BatchGetReviewSummariesResponse>, Status> {
        let ids = request.into_inner().product_ids;
        if ids.len() > MAX_BATCH {
            return Err(ReviewsError::InvalidArgument(format!(
                "at most {MAX_BATCH} product_ids per call"
            ))
            .into());
        }
        input::each_at_most("product_ids", &ids, input::MAX_ID_CHARS)?;
        let found = self
            .store
            .summaries(ids.clone())
            .await
            .map_err(ReviewsError::from)?;
        let summaries = ids
            .iter()
            .map(|id| {
                found
                    .iter()
                    .find(|s| &s.product_id == id)
                    .cloned()
                    .unwrap_or_else(|| empty_summary(id))
            })
            .collect();
        Ok(Response::new(BatchGetReviewSummariesResponse { summaries }))
    }
}

/// Opens (creating and seeding on first start) the store and returns the
/// reviews server.
pub async fn build_server(config: &ReviewsConfig) -> Result<GrpcServer, ReviewsError> {
    Ok(match &config.database {
        Database::Sqlite(path) => serve(SqliteReviewsStore::open(path, config.products).await?),
        Database::Postgres(url) => serve(PgReviewsStore::connect(url, config.products).await?),
    })
}

fn serve<S: ReviewsStore>(store: S) -> GrpcServer {
    GrpcServer::new("reviews").add_service(ReviewsServiceServer::new(Reviews { store }))
}
