//! The inventory service: stock per product and warehouse, and
//! reservations that hold stock for orders. A reservation is idempotent on
//! its id: the id and the stock it holds are written in one transaction,
//! so a retried reservation never holds stock twice. Releasing one (for an
//! order that was not created) gives the stock back and forgets the id in
//! one transaction too, so the stock comes back once however often it is
//! released.
//!
//! Handlers reach data only through [`InventoryStore`]: a SQLite file by
//! default, or PostgreSQL (schema `inventory`) when configured, where
//! several replicas of the service hold stock from the same rows and never
//! hold more than there is. It knows nothing about orders, prices or
//! clients.

#![forbid(unsafe_code)]

mod store;

use tailor_interceptors::input;
use tailor_proto::inventory::v1::inventory_service_server::{
    InventoryService, InventoryServiceServer,
};
use tailor_proto::inventory::v1::{
    BatchGetStockRequest, BatchGetStockResponse, GetStockRequest, GetStockResponse,
    ReleaseReservationRequest, ReleaseReservationResponse, ReserveStockRequest,
    ReserveStockResponse,
};
use tailor_runtime::GrpcServer;
use tonic::{Request, Response, Status};

#[cfg(feature = "conformance")]
pub use store::conformance;
pub use store::{InventoryStore, PgInventoryStore, ReserveOutcome, SqliteInventoryStore};
pub use tailor_storage::Database;

const MAX_BATCH: usize = 500;

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct InventoryConfig {
    /// The SQLite file, or the PostgreSQL database.
    pub database: Database,
    /// Products stocked on first start.
    pub products: u32,
}

/// What can go wrong in inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Below the store.
    #[error(transparent)]
    Storage(#[from] tailor_storage::StorageError),
    /// A field of the request is wrong; the text names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown product.
    #[error("product {0} not found")]
    NotFound(String),
    /// Not enough stock in any one warehouse.
    #[error("insufficient stock for {0}")]
    InsufficientStock(String),
}

impl From<InventoryError> for Status {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::Storage(e) => tailor_interceptors::error::internal(e),
            InventoryError::InvalidArgument(m) => Status::invalid_argument(m),
            InventoryError::NotFound(_) => Status::not_found(error.to_string()),
            InventoryError::InsufficientStock(_) => Status::failed_precondition(error.to_string()),
        }
    }
}

/// The inventory handlers over a store.
#[derive(Debug, Clone)]
pub struct Inventory<S> {
    store: S,
}

#[tonic::async_trait]
impl<S: InventoryStore> InventoryService for Inventory<S> {
    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<GetStockResponse>, Status> {
        let id = request.into_inner().product_id;
        if id.is_empty() {
            return Err(InventoryError::InvalidArgument("product_id is required".into()).into());
        }
        input::id("product_id", &id)?;
        let stock = self
            .store
            .stock(vec![id.clone()])
            .await
            .map_err(InventoryError::from)?
            .pop()
            .ok_or(InventoryError::NotFound(id))?;
        Ok(Response::new(GetStockResponse { stock: Some(stock) }))
    }

    async fn batch_get_stock(
        &self,
        request: Request<BatchGetStockRequest>,
    ) -> Result<Response<BatchGetStockResponse>, Status> {
        let ids = request.into_inner().product_ids;
        if ids.len() > MAX_BATCH {
            return Err(InventoryError::InvalidArgument(format!(
                "at most {MAX_BATCH} product_ids per call"
            ))
            .into());
        }
        input::each_at_most("product_ids", &ids, input::MAX_ID_CHARS)?;
        let found = self
            .store
            .stock(ids.clone())
            .await
            .map_err(InventoryError::from)?;
        let stocks = ids
            .iter()
            .filter_map(|id| found.iter().find(|s| &s.product_id == id).cloned())
            .collect();
        Ok(Response::new(BatchGetStockResponse { stocks }))
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<ReserveStockResponse>, Status> {
        let request = request.into_inner();
        if request.reservation_id.is_empty() || request.reservation_id.len() > 128 {
            return Err(InventoryError::InvalidArgument(
                "reservation_id must be 1 to 128 characters".into(),
            )
            .into());
        }
        if request.lines.is_empty() {
            return Err(InventoryError::InvalidArgument("lines must not be empty".into()).into());
        }
        for line in &request.lines {
            input::id("lines[].product_id", &line.product_id)?;
        }
        if let Some(line) = request
            .lines
            .iter()
            .find(|l| l.quantity < 1 || l.product_id.is_empty())
        {
            return Err(InventoryError::InvalidArgument(format!(
                "lines[].quantity must be at least 1 and product_id set (got {:?} x {})",
                line.product_id, line.quantity
            ))
            .into());
        }
        match self
            .store
            .reserve(request.reservation_id, request.lines)
            .await
            .map_err(InventoryError::from)?
        {
            ReserveOutcome::Reserved(reservation, replayed) => {
                Ok(Response::new(ReserveStockResponse {
                    reservation: Some(reservation),
                    replayed,
                }))
            }
            ReserveOutcome::Insufficient(product) => {
                Err(InventoryError::InsufficientStock(product).into())
            }
        }
    }

    async fn release_reservation(
        &self,
        request: Request<ReleaseReservationRequest>,
    ) -> Result<Response<ReleaseReservationResponse>, Status> {
        let reservation_id = request.into_inner().reservation_id;
        if reservation_id.is_empty() || reservation_id.len() > 128 {
            return Err(InventoryError::InvalidArgument(
                "reservation_id must be 1 to 128 characters".into(),
            )
            .into());
        }
        let released = self
            .store
            .release(reservation_id.clone())
            .await
            .map_err(InventoryError::from)?;
        if released {
            tracing::info!(reservation = %reservation_id.escape_debug(), "reservation released");
        }
        Ok(Response::new(ReleaseReservationResponse { released }))
    }
}

/// Opens (creating and stocking on first start) the store and returns the
/// inventory server.
pub async fn build_server(config: &InventoryConfig) -> Result<GrpcServer, InventoryError> {
    Ok(match &config.database {
        Database::Sqlite(path) => serve(SqliteInventoryStore::open(path, config.products).await?),
        Database::Postgres(url) => serve(PgInventoryStore::connect(url, config.products).await?),
    })
}

fn serve<S: InventoryStore>(store: S) -> GrpcServer {
    GrpcServer::new("inventory").add_service(InventoryServiceServer::new(Inventory { store }))
}
