//! The orders service. Creating an order is idempotent: the customer's
//! idempotency key is stored in the same transaction as the order, so a
//! retry (even many at once) returns the first order and never makes a
//! second. A built-in fulfilment simulator moves orders from placed to
//! delivered at a configurable pace, driven by a stored due time so it
//! resumes after a restart; every change is published to watchers.
//!
//! Handlers reach data only through [`OrderStore`]: a SQLite file by
//! default, or PostgreSQL (schema `orders`) when configured, where several
//! replicas of the service share the orders, the keys and the change feed.
//! Another customer's order is indistinguishable from one that does not
//! exist.

#![forbid(unsafe_code)]

mod service;
mod store;

use std::time::Duration;

use tailor_proto::orders::v1::orders_service_server::OrdersServiceServer;
use tailor_runtime::{CancellationToken, GrpcServer};
use tonic::Status;

pub use service::Orders;
#[cfg(feature = "conformance")]
pub use store::conformance;
pub use store::{Created, Fulfilment, OrderStore, PgOrderStore, SqliteOrderStore};
pub use tailor_storage::Database;

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// The SQLite file, or the PostgreSQL database.
    pub database: Database,
    /// Time between two status changes; zero stops the simulator.
    pub fulfilment_step: Duration,
}

/// What can go wrong with orders.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// Below the store.
    #[error(transparent)]
    Storage(#[from] tailor_storage::StorageError),
    /// A field of the request is wrong; the text names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such order for this customer.
    #[error("order {0} not found")]
    NotFound(String),
    /// The key was used before for a different order.
    #[error("idempotency key already used for a different order")]
    KeyReused,
}

impl From<OrdersError> for Status {
    fn from(error: OrdersError) -> Self {
        match error {
            OrdersError::Storage(e) => match e.client_message() {
                Some(message) => Status::invalid_argument(message),
                None => tailor_interceptors::error::internal(e),
            },
            OrdersError::InvalidArgument(m) => Status::invalid_argument(m),
            OrdersError::NotFound(_) => Status::not_found(error.to_string()),
            OrdersError::KeyReused => Status::failed_precondition(error.to_string()),
        }
    }
}

/// Opens the store, starts the fulfilment simulator (stopped by `shutdown`)
/// and returns the orders server.
pub async fn build_server(
    config: &OrdersConfig,
    shutdown: CancellationToken,
) -> Result<GrpcServer, OrdersError> {
    let step = config.fulfilment_step;
    Ok(match &config.database {
        Database::Sqlite(path) => serve(SqliteOrderStore::open(path, step)?, step, shutdown),
        Database::Postgres(url) => serve(PgOrderStore::connect(url, step).await?, step, shutdown),
    })
}

fn serve<S: Fulfilment>(store: S, step: Duration, shutdown: CancellationToken) -> GrpcServer {
    if !step.is_zero() {
        tokio::spawn(store::simulate_fulfilment(store.clone(), step, shutdown));
    }
    GrpcServer::new("orders").add_service(OrdersServiceServer::new(Orders::new(store)))
}
