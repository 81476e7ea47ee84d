//! The downstream services a BFF calls, as typed clients. In a running BFF
//! each client sits on a [`ServiceChannel`] (context propagation, call
//! policies, errors named by service); the screens are generic over the transport so
//! their rules (what degrades, what fails the screen) can be tested
//! against in-process fakes, without sockets.

use std::convert::Infallible;

use tailor_channel::{Caller, ChannelError, Connected, DownstreamArgs, Readiness, ServiceChannel};
use tailor_interceptors::{HttpRequest, HttpResponse};
use tailor_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tailor_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use tailor_proto::orders::v1::orders_service_client::OrdersServiceClient;
use tailor_proto::reviews::v1::reviews_service_client::ReviewsServiceClient;

/// What the clients of the screens can run on: a cloneable service that
/// answers every call with a response, failures included as statuses.
pub trait Transport:
    tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Transport for T where
    T: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Clients of every downstream service. Cloning is cheap (channels are
/// shared), so handlers clone a client per call.
#[derive(Debug, Clone)]
pub struct Downstreams<C = ServiceChannel> {
    /// Products, categories.
    pub catalog: CatalogServiceClient<C>,
    /// Stock and reservations.
    pub inventory: InventoryServiceClient<C>,
    /// Ratings and reviews.
    pub reviews: ReviewsServiceClient<C>,
    /// Orders.
    pub orders: OrdersServiceClient<C>,
}

impl Downstreams {
    /// Lazily connecting clients, over mutual TLS as the BFF `caller`,
    /// with the call policies `args` give.
    pub fn connect(args: &DownstreamArgs, caller: &Caller) -> Result<Self, ChannelError> {
        Ok(Self::of(&args.connect(caller)?))
    }

    fn of(connected: &Connected) -> Self {
        Self::over(
            connected.catalog.channel.clone(),
            connected.inventory.channel.clone(),
            connected.reviews.channel.clone(),
            connected.orders.channel.clone(),
        )
    }

    /// Lazily connecting clients for the BFF with `credentials` (from the
    /// stack's trust directory), and its readiness judged by the services
    /// `--required-downstreams` names or else `required` (the BFF's own
    /// list); the error says what failed.
    pub fn connect_with(
        args: &DownstreamArgs,
        credentials: tailor_channel::MeshCredentials,
        required: &[&str],
    ) -> Result<(Self, Readiness), String> {
        let caller = Caller::new(credentials).map_err(|e| e.to_string())?;
        let connected = args.connect(&caller).map_err(|e| e.to_string())?;
        let readiness = connected
            .readiness(args, required)
            .map_err(|e| e.to_string())?;
        Ok((Self::of(&connected), readiness))
    }
}

impl<C: Transport> Downstreams<C> {
    /// Clients over the given transports, one per service.
    pub fn over(catalog: C, inventory: C, reviews: C, orders: C) -> Self {
        Self {
            catalog: CatalogServiceClient::new(catalog),
            inventory: InventoryServiceClient::new(inventory),
            reviews: ReviewsServiceClient::new(reviews),
            orders: OrdersServiceClient::new(orders),
        }
    }
}
