//! The product list / search screen: one catalogue page, then ratings and
//! stock for exactly those products, fetched concurrently.

use std::collections::HashMap;

use tailor_interceptors::input;
use tailor_proto::catalog::v1::{ListProductsRequest, Product};
use tailor_proto::inventory::v1::{BatchGetStockRequest, ProductStock};
use tailor_proto::reviews::v1::{BatchGetReviewSummariesRequest, ReviewSummary};
use tonic::Status;

use crate::{Downstreams, OPTIONAL_PART_TIMEOUT, Part, Screen, Transport};

/// The product list's parts: the catalogue page is required; ratings and
/// stock per product are optional.
pub const SCREEN: Screen = Screen {
    name: "product list",
    required: &["products"],
    optional: &["ratings", "stock"],
    optional_timeout: OPTIONAL_PART_TIMEOUT,
};

/// What the client asked to see.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Cards per page; the BFF caps it for its client.
    pub page_size: i32,
    /// Opaque token from the previous page.
    pub page_token: String,
    /// Category filter.
    pub category_id: String,
    /// Search words.
    pub query: String,
}

/// Which optional parts a list needs.
#[derive(Debug, Clone, Copy)]
pub struct ListParts {
    /// Rating summaries per product.
    pub ratings: bool,
    /// Stock per product.
    pub stock: bool,
    /// The product fields a card shows, asked of the catalog as a read
    /// mask (empty: all).
    pub card_fields: &'static [&'static str],
}

/// One page of the list, with its optional parts keyed by product id.
#[derive(Debug, Clone)]
pub struct ProductList {
    /// The page's products in catalogue order.
    pub products: Vec<Product>,
    /// Token for the next page.
    pub next_page_token: String,
    /// Matches across all pages.
    pub total_size: i32,
    /// Rating summaries.
    pub ratings: Part<HashMap<String, ReviewSummary>>,
    /// Stock.
    pub stock: Part<HashMap<String, ProductStock>>,
}

/// Assembles one page of the product list.
pub async fn product_list<C: Transport>(
    downstreams: &Downstreams<C>,
    query: ListQuery,
    parts: ListParts,
) -> Result<ProductList, Status> {
    if query.page_size < 0 {
        return Err(Status::invalid_argument("page_size must not be negative"));
    }
    input::token("page_token", &query.page_token)?;
    input::id("category_id", &query.category_id)?;
    input::search(&query.query)?;
    let page = downstreams
        .catalog
        .clone()
        .list_products(ListProductsRequest {
            page_size: query.page_size,
            page_token: query.page_token,
            category_id: query.category_id,
            query: query.query,
            updated_since: None,
            read_mask: crate::read_mask(parts.card_fields),
        })
        .await?
        .into_inner();
    let ids: Vec<String> = page.products.iter().map(|p| p.id.clone()).collect();
    // An empty page needs no ratings or stock: nothing to ask for.
    let any = !ids.is_empty();
    let ratings = SCREEN.optional("ratings", parts.ratings, || async {
        if !any {
            return Ok(HashMap::new());
        }
        let request = BatchGetReviewSummariesRequest {
            product_ids: ids.clone(),
        };
        let answer = downstreams
            .reviews
            .clone()
            .batch_get_review_summaries(request)
            .await?;
        Ok(by_product(answer.into_inner().summaries, |s| &s.product_id))
    });
    let stock = SCREEN.optional("stock", parts.stock, || async {
        if !any {
            return Ok(HashMap::new());
        }
        let request = BatchGetStockRequest {
            product_ids: ids.clone(),
        };
        let answer = downstreams
            .inventory
            .clone()
            .batch_get_stock(request)
            .await?;
        Ok(by_product(answer.into_inner().stocks, |s| &s.product_id))
    });
    let (ratings, stock) = tokio::join!(ratings, stock);
    Ok(ProductList {
        products: page.products,
        next_page_token: page.next_page_token,
        total_size: page.total_size,
        ratings,
        stock,
    })
}

fn by_product<T>(items: Vec<T>, id: impl Fn(&T) -> &String) -> HashMap<String, T> {
    items
        .into_iter()
        .map(|item| (id(&item).clone(), item))
        .collect()
}

#[cfg(test)]
mod tests {
    use tailor_proto::catalog::v1::ListProductsResponse;
    use tailor_proto::inventory::v1::BatchGetStockResponse;

    use super::*;
    use crate::fake::{FakeDownstreams, FakeService};

    const LIST: &str = "/tailor.catalog.v1.CatalogService/ListProducts";
    const STOCKS: &str = "/tailor.inventory.v1.InventoryService/BatchGetStock";
    const SUMMARIES: &str = "/tailor.reviews.v1.ReviewsService/BatchGetReviewSummaries";
    const BOTH: ListParts = ListParts {
        ratings: true,
        stock: true,
        card_fields: &[],
    };

    #[tokio::test]
    async fn an_empty_page_asks_for_no_ratings_or_stock() {
        let fakes = FakeDownstreams {
            catalog: FakeService::default().answer(LIST, ListProductsResponse::default()),
            ..Default::default()
        };
        let list = product_list(&fakes.clients(), ListQuery::default(), BOTH)
            .await
            .unwrap();
        assert!(list.products.is_empty());
        assert_eq!(list.ratings, Part::Ready(HashMap::new()));
        assert_eq!(list.stock, Part::Ready(HashMap::new()));
        assert!(fakes.reviews.calls().is_empty());
        assert!(fakes.inventory.calls().is_empty());
    }

    #[tokio::test]
    async fn failing_ratings_degrade_the_list_and_stock_is_keyed_by_product() {
        let product = |id: &str| Product {
            id: id.into(),
            ..Default::default()
        };
        let fakes = FakeDownstreams {
            catalog: FakeService::default().answer(
                LIST,
                ListProductsResponse {
                    products: vec![product("p1"), product("p2")],
                    ..Default::default()
                },
            ),
            inventory: FakeService::default().answer(
                STOCKS,
                BatchGetStockResponse {
                    stocks: vec![ProductStock {
                        product_id: "p2".into(),
                        ..Default::default()
                    }],
                },
            ),
            reviews: FakeService::default().fail(SUMMARIES, Status::unknown("reset by peer")),
            ..Default::default()
        };
        let list = product_list(&fakes.clients(), ListQuery::default(), BOTH)
            .await
            .unwrap();
        assert_eq!(list.products.len(), 2);
        assert!(list.ratings.is_degraded());
        let stock = list.stock.as_ready().unwrap();
        assert!(stock.contains_key("p2") && !stock.contains_key("p1"));
    }
}
