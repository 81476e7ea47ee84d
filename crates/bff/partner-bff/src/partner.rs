//! `tailor.partner.v1.PartnerService`.

use std::pin::Pin;

use futures_util::Stream;
use tailor_auth::caller;
use tailor_interceptors::input;
use tailor_proto::inventory::v1::BatchGetStockRequest;
use tailor_proto::orders::v1 as orders;
use tailor_proto::partner::v1::partner_service_server::PartnerService;
use tailor_proto::partner::v1::{
    BatchGetAvailabilityRequest, BatchGetAvailabilityResponse, GetOrderRequest, GetOrderResponse,
    ListOrdersRequest, ListOrdersResponse, Order, OrderLine, OrderStatus, PlaceOrderRequest,
    PlaceOrderResponse, ProductAvailability, StreamCatalogFeedRequest, StreamCatalogFeedResponse,
};
use tailor_screens::Downstreams;
use tailor_screens::order::{LineInput, OrderLimits, get_order, list_orders, place_order};
use tonic::{Request, Response, Status};

use crate::feed::catalog_feed;

const MAX_AVAILABILITY_IDS: usize = 500;
const PAGE_SIZES: tailor_screens::PageSize = tailor_screens::PageSize::new(20, 100);
const LIMITS: OrderLimits = OrderLimits {
    max_lines: 100,
    max_quantity: 10_000,
};

/// The partner API over the downstream services.
#[derive(Debug, Clone)]
pub struct Partner {
    downstreams: Downstreams,
}

impl Partner {
    /// Serves from `downstreams`.
    pub fn new(downstreams: Downstreams) -> Self {
        Self { downstreams }
    }
}

fn status(status: i32) -> OrderStatus {
    match orders::OrderStatus::try_from(status).unwrap_or_default() {
        orders::OrderStatus::Unspecified => OrderStatus::Unspecified,
        orders::OrderStatus::Placed => OrderStatus::Placed,
        orders::OrderStatus::Confirmed => OrderStatus::Confirmed,
        orders::OrderStatus::Packed => OrderStatus::Packed,
        orders::OrderStatus::Shipped => OrderStatus::Shipped,
        orders::OrderStatus::Delivered => OrderStatus::Delivered,
        orders::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

fn order(order: orders::Order) -> Order {
    let total = order.total.unwrap_or_default();
    Order {
        id: order.id,
        lines: order
            .lines
            .into_iter()
            .map(|l| OrderLine {
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price_minor: l.unit_price.map_or(0, |p| p.amount_minor),
            })
            .collect(),
        total_minor: total.amount_minor,
        currency_code: total.currency_code,
        status: status(order.status).into(),
        create_time: order.create_time,
    }
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<StreamCatalogFeedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PartnerService for Partner {
    type StreamCatalogFeedStream = FeedStream;

    async fn stream_catalog_feed(
        &self,
        request: Request<StreamCatalogFeedRequest>,
    ) -> Result<Response<Self::StreamCatalogFeedStream>, Status> {
        let request = request.into_inner();
        let feed = catalog_feed(
            self.downstreams.clone(),
            &request.cursor,
            request.updated_since,
        )?;
        Ok(Response::new(Box::pin(feed)))
    }

    async fn batch_get_availability(
        &self,
        request: Request<BatchGetAvailabilityRequest>,
    ) -> Result<Response<BatchGetAvailabilityResponse>, Status> {
        let ids = request.into_inner().product_ids;
        if ids.len() > MAX_AVAILABILITY_IDS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_AVAILABILITY_IDS} product_ids per call"
            )));
        }
        if ids.iter().any(String::is_empty) {
            return Err(Status::invalid_argument(
                "product_ids must not be empty strings",
            ));
        }
        input::each_at_most("product_ids", &ids, input::MAX_ID_CHARS)?;
        let stocks = if ids.is_empty() {
            Vec::new()
        } else {
            self.downstreams
                .inventory
                .clone()
                .batch_get_stock(BatchGetStockRequest {
                    product_ids: ids.clone(),
                })
                .await?
                .into_inner()
                .stocks
        };
        let availabilities = ids
            .into_iter()
            .map(|id| match stocks.iter().find(|s| s.product_id == id) {
                Some(stock) => ProductAvailability {
                    available_units: stock.total_available,
                    ship_days: stock
                        .warehouses
                        .iter()
                        .filter(|w| w.available > 0)
                        .map(|w| w.ship_days)
                        .min()
                        .unwrap_or(0),
                    known: true,
                    product_id: id,
                },
                None => ProductAvailability {
                    product_id: id,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(BatchGetAvailabilityResponse {
            availabilities,
        }))
    }

    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        let customer = caller(&request)?.subject.clone();
        let request = request.into_inner();
        let lines: Vec<LineInput> = request
            .lines
            .into_iter()
            .map(|l| LineInput {
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect();
        let placed = place_order(
            &self.downstreams,
            &customer,
            "partner",
            &request.idempotency_key,
            &lines,
            LIMITS,
            // Each key is limited by its plan before the handler.
            None,
        )
        .await?;
        Ok(Response::new(PlaceOrderResponse {
            order: Some(order(placed.order)),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let customer = caller(&request)?.subject.clone();
        let found = get_order(&self.downstreams, &customer, &request.get_ref().order_id).await?;
        Ok(Response::new(GetOrderResponse {
            order: Some(order(found)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let customer = caller(&request)?.subject.clone();
        let request = request.into_inner();
        let page_size = tailor_screens::page_size(request.page_size, PAGE_SIZES)?;
        let page =
            list_orders(&self.downstreams, &customer, page_size, &request.page_token).await?;
        Ok(Response::new(ListOrdersResponse {
            orders: page.orders.into_iter().map(order).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
