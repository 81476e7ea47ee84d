//! `tailor.mobile.v1.ShopService`.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tailor_auth::caller;
use tailor_interceptors::compression::compress_if_worth_it;
use tailor_interceptors::input;
use tailor_proto::mobile::v1::shop_service_server::ShopService;
use tailor_proto::mobile::v1::{
    GetProductPageRequest, GetProductPageResponse, ListProductsRequest, ListProductsResponse,
    PlaceOrderRequest, PlaceOrderResponse, WatchOrderRequest, WatchOrderResponse,
};
use tailor_screens::list::{ListParts, ListQuery, product_list};
use tailor_screens::order::{LineInput, OrderLimits, OrderRate, place_order, watch_order};
use tailor_screens::page::{PageParts, product_page};
use tailor_screens::{Downstreams, PageSize};
use tonic::{Request, Response, Status};

use crate::version::versioned;
use crate::{mask, shape};

/// Versions this BFF hands out are 24 hex digits; anything much longer
/// cannot match one.
const MAX_VERSION_CHARS: usize = 64;
const PAGE_SIZES: PageSize = PageSize::new(20, 50);
/// Reviews fetched to choose the most helpful from.
const REVIEW_POOL: i32 = 20;
const TOP_REVIEWS: usize = 3;
const RELATED: i32 = 6;
const SHORT_DESCRIPTION_CHARS: usize = 300;
const LIMITS: OrderLimits = OrderLimits {
    max_lines: 50,
    max_quantity: 99,
};

/// The mobile shop API over the downstream services.
#[derive(Debug, Clone)]
pub struct MobileShop {
    downstreams: Downstreams,
    orders: Arc<OrderRate>,
}

impl MobileShop {
    /// Serves from `downstreams`; each user places orders at `orders`.
    pub fn new(downstreams: Downstreams, orders: OrderRate) -> Self {
        Self {
            downstreams,
            orders: Arc::new(orders),
        }
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<WatchOrderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ShopService for MobileShop {
    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        input::at_most(
            "if_version",
            &request.get_ref().if_version,
            MAX_VERSION_CHARS,
        )?;
        let mask = mask::card_mask(
            request.metadata(),
            request.get_ref().read_mask.as_ref(),
            request.get_ref().view,
        )?;
        let screen = shape::screen_for(request.get_ref().screen, request.metadata());
        let request = request.into_inner();
        let query = ListQuery {
            page_size: tailor_screens::page_size(request.page_size, PAGE_SIZES)?,
            page_token: request.page_token,
            category_id: request.category_id,
            query: request.query,
        };
        // Only ask for what the cards will show.
        let parts = ListParts {
            ratings: mask.selects("rating_tenths"),
            stock: mask.selects("stock"),
            card_fields: shape::CARD_FIELDS,
        };
        let list = product_list(&self.downstreams, query, parts).await?;
        let ratings = list.ratings.as_ready();
        let stock = list.stock.as_ready();
        let products = list
            .products
            .iter()
            .map(|p| {
                mask.apply(shape::card(
                    p,
                    ratings.and_then(|r| r.get(&p.id)),
                    stock.and_then(|s| s.get(&p.id)),
                    &screen,
                ))
            })
            .collect();
        let answer = ListProductsResponse {
            products,
            next_page_token: list.next_page_token,
            ..Default::default()
        };
        Ok(compress_if_worth_it(Response::new(versioned(
            answer,
            &request.if_version,
        ))))
    }

    async fn get_product_page(
        &self,
        request: Request<GetProductPageRequest>,
    ) -> Result<Response<GetProductPageResponse>, Status> {
        input::at_most(
            "if_version",
            &request.get_ref().if_version,
            MAX_VERSION_CHARS,
        )?;
        let mask = mask::page_mask(
            request.metadata(),
            request.get_ref().read_mask.as_ref(),
            request.get_ref().view,
        )?;
        let screen = shape::screen_for(request.get_ref().screen, request.metadata());
        let request = request.into_inner();
        // Sections the mask leaves out are never fetched.
        let parts = PageParts {
            stock: mask.selects("stock"),
            summary: mask.selects("rating_tenths") || mask.selects("review_count"),
            reviews: if mask.selects("top_reviews") {
                REVIEW_POOL
            } else {
                0
            },
            related: if mask.selects("related") { RELATED } else { 0 },
            card_fields: shape::CARD_FIELDS,
        };
        let page = product_page(&self.downstreams, &request.product_id, parts).await?;
        let mut degraded_sections = Vec::new();
        if page.stock.is_degraded() {
            degraded_sections.push("stock".to_owned());
        }
        if page.summary.is_degraded() || page.reviews.is_degraded() {
            degraded_sections.push("reviews".to_owned());
        }
        if page.related.is_degraded() {
            degraded_sections.push("related".to_owned());
        }
        let product = page.product;
        let price = product.price.clone().unwrap_or_default();
        let summary = page.summary.ready();
        let mut reviews = page.reviews.ready().unwrap_or_default();
        reviews.sort_by_key(|r| std::cmp::Reverse(r.helpful_count));
        reviews.truncate(TOP_REVIEWS);
        let answer = mask.apply(GetProductPageResponse {
            image_url: shape::image_for(
                product.images.first(),
                screen.width_points as f32,
                &screen,
            ),
            short_description: shape::trim_text(&product.description, SHORT_DESCRIPTION_CHARS),
            stock: shape::stock_state(page.stock.as_ready()).into(),
            rating_tenths: summary
                .as_ref()
                .map_or(0, |s| shape::rating_tenths(s.average_rating)),
            review_count: summary.as_ref().map_or(0, |s| s.review_count),
            top_reviews: reviews.into_iter().map(shape::snippet).collect(),
            related: page
                .related
                .ready()
                .unwrap_or_default()
                .iter()
                .map(|p| shape::card(p, None, None, &screen))
                .collect(),
            degraded_sections: Vec::new(),
            id: product.id,
            title: product.title,
            brand: product.brand,
            price_minor: price.amount_minor,
            currency_code: price.currency_code,
            ..Default::default()
        });
        // Degraded sections are always told, whatever the mask.
        let answer = GetProductPageResponse {
            degraded_sections,
            ..answer
        };
        Ok(compress_if_worth_it(Response::new(versioned(
            answer,
            &request.if_version,
        ))))
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
            "mobile",
            &request.idempotency_key,
            &lines,
            LIMITS,
            Some(&self.orders),
        )
        .await?;
        Ok(compress_if_worth_it(Response::new(PlaceOrderResponse {
            order: Some(shape::order(placed.order)),
        })))
    }

    type WatchOrderStream = StatusStream;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let customer = caller(&request)?.subject.clone();
        let updates =
            watch_order(&self.downstreams, &customer, &request.get_ref().order_id).await?;
        let stream = updates.map(|update| {
            update.map(|update| {
                let order = update.order.unwrap_or_default();
                WatchOrderResponse {
                    order_id: order.id,
                    status: shape::status(order.status).into(),
                }
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
