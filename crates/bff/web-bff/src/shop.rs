//! `tailor.web.v1.ShopService`.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tailor_auth::caller;
use tailor_proto::web::v1::shop_service_server::ShopService;
use tailor_proto::web::v1::{
    GetProductPageRequest, GetProductPageResponse, ListProductsRequest, ListProductsResponse,
    PlaceOrderRequest, PlaceOrderResponse, ReviewsSection, WatchOrderRequest, WatchOrderResponse,
};
use tailor_screens::list::{ListParts, ListQuery, product_list};
use tailor_screens::order::{LineInput, OrderLimits, OrderRate, place_order, watch_order};
use tailor_screens::page::{PageParts, product_page};
use tailor_screens::{Downstreams, PageSize};
use tonic::{Request, Response, Status};

use crate::shape;

const PAGE_SIZES: PageSize = PageSize::new(20, 100);
const PAGE_REVIEWS: i32 = 5;
const PAGE_RELATED: i32 = 8;
const LIMITS: OrderLimits = OrderLimits {
    max_lines: 50,
    max_quantity: 99,
};

/// The web shop API over the downstream services.
#[derive(Debug, Clone)]
pub struct WebShop {
    downstreams: Downstreams,
    orders: Arc<OrderRate>,
}

impl WebShop {
    /// Serves from `downstreams`; each user places orders at `orders`.
    pub fn new(downstreams: Downstreams, orders: OrderRate) -> Self {
        Self {
            downstreams,
            orders: Arc::new(orders),
        }
    }
}

type OrderStream = Pin<Box<dyn Stream<Item = Result<WatchOrderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ShopService for WebShop {
    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let request = request.into_inner();
        let query = ListQuery {
            page_size: tailor_screens::page_size(request.page_size, PAGE_SIZES)?,
            page_token: request.page_token,
            category_id: request.category_id,
            query: request.query,
        };
        let parts = ListParts {
            ratings: true,
            stock: true,
            card_fields: shape::CARD_FIELDS,
        };
        let list = product_list(&self.downstreams, query, parts).await?;
        let mut degraded_sections = Vec::new();
        if list.ratings.is_degraded() {
            degraded_sections.push("ratings".to_owned());
        }
        if list.stock.is_degraded() {
            degraded_sections.push("availability".to_owned());
        }
        let ratings = list.ratings.as_ready();
        let stock = list.stock.as_ready();
        let products = list
            .products
            .iter()
            .map(|p| {
                shape::card(
                    p,
                    ratings.and_then(|r| r.get(&p.id)),
                    stock.and_then(|s| s.get(&p.id)),
                )
            })
            .collect();
        Ok(Response::new(ListProductsResponse {
            products,
            next_page_token: list.next_page_token,
            total_size: list.total_size,
            degraded_sections,
        }))
    }

    async fn get_product_page(
        &self,
        request: Request<GetProductPageRequest>,
    ) -> Result<Response<GetProductPageResponse>, Status> {
        let parts = PageParts {
            stock: true,
            summary: true,
            reviews: PAGE_REVIEWS,
            related: PAGE_RELATED,
            card_fields: shape::CARD_FIELDS,
        };
        let page = product_page(&self.downstreams, &request.get_ref().product_id, parts).await?;
        let mut degraded_sections = Vec::new();
        if page.stock.is_degraded() {
            degraded_sections.push("availability".to_owned());
        }
        if page.summary.is_degraded() || page.reviews.is_degraded() {
            degraded_sections.push("reviews".to_owned());
        }
        if page.related.is_degraded() {
            degraded_sections.push("related".to_owned());
        }
        let reviews = match (page.summary, page.reviews) {
            (tailor_screens::Part::Ready(summary), tailor_screens::Part::Ready(reviews)) => {
                Some(ReviewsSection {
                    rating: Some(shape::rating(&summary)),
                    reviews: reviews.into_iter().map(shape::review).collect(),
                })
            }
            _ => None,
        };
        Ok(Response::new(GetProductPageResponse {
            product: Some(shape::details(page.product)),
            availability: page.stock.ready().map(shape::availability),
            reviews,
            related: page
                .related
                .ready()
                .unwrap_or_default()
                .iter()
                .map(|p| shape::card(p, None, None))
                .collect(),
            degraded_sections,
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
            "web",
            &request.idempotency_key,
            &lines,
            LIMITS,
            Some(&self.orders),
        )
        .await?;
        Ok(Response::new(PlaceOrderResponse {
            order: Some(shape::order(placed.order)),
        }))
    }

    type WatchOrderStream = OrderStream;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let customer = caller(&request)?.subject.clone();
        let updates =
            watch_order(&self.downstreams, &customer, &request.get_ref().order_id).await?;
        let stream = updates.map(|update| {
            update.map(|update| WatchOrderResponse {
                order: update.order.map(shape::order),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
