//! The product page: catalogue (required), stock, review summary, the
//! first reviews and related products (optional), all requested at once so
//! the page takes about as long as its slowest part, not the sum.

use tailor_interceptors::error::downstream;
use tailor_proto::catalog::v1::{GetProductRequest, ListRelatedProductsRequest, Product};
use tailor_proto::inventory::v1::{GetStockRequest, ProductStock};
use tailor_proto::reviews::v1::{
    GetReviewSummaryRequest, ListReviewsRequest, Review, ReviewSummary,
};
use tonic::Status;

use crate::{Downstreams, Part};

/// Which optional parts a page needs; a part not asked for costs no call.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageParts {
    /// Stock per warehouse.
    pub stock: bool,
    /// Rating summary.
    pub summary: bool,
    /// How many of the newest reviews (0: none).
    pub reviews: i32,
    /// How many related products (0: none).
    pub related: i32,
}

/// A product page before a BFF shapes it.
#[derive(Debug, Clone)]
pub struct ProductPage {
    /// The product.
    pub product: Product,
    /// Its stock.
    pub stock: Part<ProductStock>,
    /// Its rating summary.
    pub summary: Part<ReviewSummary>,
    /// Its newest reviews.
    pub reviews: Part<Vec<Review>>,
    /// Related products.
    pub related: Part<Vec<Product>>,
}

/// Assembles the page for `product_id`. Fails only when the product itself
/// cannot be had (NOT_FOUND, or catalog UNAVAILABLE).
pub async fn product_page(
    downstreams: &Downstreams,
    product_id: &str,
    parts: PageParts,
) -> Result<ProductPage, Status> {
    if product_id.is_empty() {
        return Err(Status::invalid_argument("product_id is required"));
    }
    let id = product_id.to_owned();
    let product = async {
        downstreams
            .catalog
            .clone()
            .get_product(GetProductRequest { id: id.clone() })
            .await
    };
    let stock = async {
        if !parts.stock {
            return None;
        }
        let request = GetStockRequest {
            product_id: id.clone(),
        };
        Some(
            downstreams
                .inventory
                .clone()
                .get_stock(request)
                .await
                .and_then(|r| {
                    r.into_inner()
                        .stock
                        .ok_or_else(|| Status::internal("inventory answered without stock"))
                }),
        )
    };
    let summary = async {
        if !parts.summary {
            return None;
        }
        let request = GetReviewSummaryRequest {
            product_id: id.clone(),
        };
        Some(
            downstreams
                .reviews
                .clone()
                .get_review_summary(request)
                .await
                .and_then(|r| {
                    r.into_inner()
                        .summary
                        .ok_or_else(|| Status::internal("reviews answered without a summary"))
                }),
        )
    };
    let reviews = async {
        if parts.reviews <= 0 {
            return None;
        }
        let request = ListReviewsRequest {
            product_id: id.clone(),
            page_size: parts.reviews,
            page_token: String::new(),
        };
        Some(
            downstreams
                .reviews
                .clone()
                .list_reviews(request)
                .await
                .map(|r| r.into_inner().reviews),
        )
    };
    let related = async {
        if parts.related <= 0 {
            return None;
        }
        let request = ListRelatedProductsRequest {
            product_id: id.clone(),
            page_size: parts.related,
        };
        Some(
            downstreams
                .catalog
                .clone()
                .list_related_products(request)
                .await
                .map(|r| r.into_inner().products),
        )
    };
    let (product, stock, summary, reviews, related) =
        tokio::join!(product, stock, summary, reviews, related);
    let product = product
        .map_err(|s| downstream("catalog", s))?
        .into_inner()
        .product
        .ok_or_else(|| Status::not_found(format!("product {product_id} not found")))?;
    Ok(ProductPage {
        product,
        stock: Part::from_optional(parts.stock, "inventory", stock),
        summary: Part::from_optional(parts.summary, "reviews", summary),
        reviews: Part::from_optional(parts.reviews > 0, "reviews", reviews),
        related: Part::from_optional(parts.related > 0, "catalog", related),
    })
}
