//! The downstream services a BFF calls, as typed clients over channels that
//! propagate the caller's context.

use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tailor_proto::reviews::v1::reviews_service_client::ReviewsServiceClient;
use tailor_runtime::downstream::{DownstreamChannel, InvalidAddress, channel};

/// Where the downstream services listen; shared by every BFF binary.
#[derive(Debug, Clone, clap::Args)]
pub struct DownstreamArgs {
    /// Catalog service address.
    #[arg(
        long,
        env = "TAILOR_CATALOG_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub catalog_addr: String,
    /// Inventory service address.
    #[arg(
        long,
        env = "TAILOR_INVENTORY_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub inventory_addr: String,
    /// Reviews service address.
    #[arg(
        long,
        env = "TAILOR_REVIEWS_ADDR",
        default_value = "http://127.0.0.1:50053"
    )]
    pub reviews_addr: String,
    /// Orders service address.
    #[arg(
        long,
        env = "TAILOR_ORDERS_ADDR",
        default_value = "http://127.0.0.1:50054"
    )]
    pub orders_addr: String,
}

/// Clients of every downstream service. Cloning is cheap (channels are
/// shared), so handlers clone a client per call.
#[derive(Debug, Clone)]
pub struct Downstreams {
    /// Products, categories.
    pub catalog: CatalogServiceClient<DownstreamChannel>,
    /// Stock and reservations.
    pub inventory: InventoryServiceClient<DownstreamChannel>,
    /// Ratings and reviews.
    pub reviews: ReviewsServiceClient<DownstreamChannel>,
    /// Orders.
    pub orders: OrdersServiceClient<DownstreamChannel>,
}

impl Downstreams {
    /// Lazily connecting clients; `bff` names the calling BFF downstream.
    pub fn connect(args: &DownstreamArgs, bff: &'static str) -> Result<Self, InvalidAddress> {
        Ok(Self {
            catalog: CatalogServiceClient::new(channel(&args.catalog_addr, bff)?),
            inventory: InventoryServiceClient::new(channel(&args.inventory_addr, bff)?),
            reviews: ReviewsServiceClient::new(channel(&args.reviews_addr, bff)?),
            orders: OrdersServiceClient::new(channel(&args.orders_addr, bff)?),
        })
    }
}
