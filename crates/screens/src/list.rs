//! The product list / search screen: one catalogue page, then ratings and
//! stock for exactly those products, fetched concurrently.

use std::collections::HashMap;

use tailor_interceptors::error::downstream;
use tailor_proto::catalog::v1::{ListProductsRequest, Product};
use tailor_proto::inventory::v1::{BatchGetStockRequest, ProductStock};
use tailor_proto::reviews::v1::{BatchGetReviewSummariesRequest, ReviewSummary};
use tonic::Status;

use crate::{Downstreams, Part};

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
pub async fn product_list(
    downstreams: &Downstreams,
    query: ListQuery,
    parts: ListParts,
) -> Result<ProductList, Status> {
    if query.page_size < 0 {
        return Err(Status::invalid_argument("page_size must not be negative"));
    }
    let page = downstreams
        .catalog
        .clone()
        .list_products(ListProductsRequest {
            page_size: query.page_size,
            page_token: query.page_token,
            category_id: query.category_id,
            query: query.query,
            updated_since: None,
        })
        .await
        .map_err(|s| downstream("catalog", s))?
        .into_inner();
    let ids: Vec<String> = page.products.iter().map(|p| p.id.clone()).collect();

    let ratings = async {
        if !parts.ratings || ids.is_empty() {
            return None;
        }
        let request = BatchGetReviewSummariesRequest {
            product_ids: ids.clone(),
        };
        Some(
            downstreams
                .reviews
                .clone()
                .batch_get_review_summaries(request)
                .await
                .map(|r| {
                    r.into_inner()
                        .summaries
                        .into_iter()
                        .map(|s| (s.product_id.clone(), s))
                        .collect::<HashMap<_, _>>()
                }),
        )
    };
    let stock = async {
        if !parts.stock || ids.is_empty() {
            return None;
        }
        let request = BatchGetStockRequest {
            product_ids: ids.clone(),
        };
        Some(
            downstreams
                .inventory
                .clone()
                .batch_get_stock(request)
                .await
                .map(|r| {
                    r.into_inner()
                        .stocks
                        .into_iter()
                        .map(|s| (s.product_id.clone(), s))
                        .collect::<HashMap<_, _>>()
                }),
        )
    };
    let (ratings, stock) = tokio::join!(ratings, stock);
    let empty = ids.is_empty();
    Ok(ProductList {
        products: page.products,
        next_page_token: page.next_page_token,
        total_size: page.total_size,
        ratings: if empty && parts.ratings {
            Part::Ready(HashMap::new())
        } else {
            Part::from_optional(parts.ratings, "reviews", ratings)
        },
        stock: if empty && parts.stock {
            Part::Ready(HashMap::new())
        } else {
            Part::from_optional(parts.stock, "inventory", stock)
        },
    })
}
