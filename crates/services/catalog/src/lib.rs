//! The catalog service: products, categories, descriptions, image sets and
//! prices. It owns its store (SQLite by default), seeds it from
//! `tailor-seed` on first start, and serves `tailor.catalog.v1`.
//!
//! Handlers reach data only through [`CatalogStore`]: a SQLite file by
//! default, or PostgreSQL (schema `catalog`) when configured, which
//! replicas share; both keep each product as its encoded message next to
//! the columns queries filter on. It knows nothing about BFFs or clients.

#![forbid(unsafe_code)]

mod service;
mod store;

use tailor_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tailor_runtime::GrpcServer;

pub use service::Catalog;
#[cfg(feature = "conformance")]
pub use store::conformance;
pub use store::{CatalogStore, ListFilter, PgCatalogStore, ProductPage, SqliteCatalogStore};
pub use tailor_storage::Database;

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The SQLite file, or the PostgreSQL database.
    pub database: Database,
    /// Products generated on first start.
    pub products: u32,
}

/// What can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Below the store.
    #[error(transparent)]
    Storage(#[from] tailor_storage::StorageError),
    /// A field of the request is wrong; the text names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The product does not exist.
    #[error("product {0} not found")]
    NotFound(String),
}

impl From<CatalogError> for tonic::Status {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Storage(e) => match e.client_message() {
                Some(message) => tonic::Status::invalid_argument(message),
                None => tailor_interceptors::error::internal(e),
            },
            CatalogError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            CatalogError::NotFound(_) => tonic::Status::not_found(error.to_string()),
        }
    }
}

/// Opens (creating and seeding on first start) the store and returns the
/// catalog server.
pub async fn build_server(config: &CatalogConfig) -> Result<GrpcServer, CatalogError> {
    Ok(match &config.database {
        Database::Sqlite(path) => serve(SqliteCatalogStore::open(path, config.products).await?),
        Database::Postgres(url) => serve(PgCatalogStore::connect(url, config.products).await?),
    })
}

fn serve<S: CatalogStore>(store: S) -> GrpcServer {
    GrpcServer::new("catalog").add_service(CatalogServiceServer::new(Catalog::new(store)))
}
