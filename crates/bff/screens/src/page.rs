//! The product page: catalogue (required), stock, review summary, the
//! first reviews and related products (optional), all requested at once so
//! the page takes about as long as its slowest part, not the sum.

use tailor_interceptors::input;
use tailor_proto::catalog::v1::{GetProductRequest, ListRelatedProductsRequest, Product};
use tailor_proto::inventory::v1::{GetStockRequest, ProductStock};
use tailor_proto::reviews::v1::{
    GetReviewSummaryRequest, ListReviewsRequest, Review, ReviewSummary,
};
use tonic::Status;

use crate::{Downstreams, OPTIONAL_PART_TIMEOUT, Part, Screen, Transport};

/// The product page's parts: the product itself is required; stock, the
/// rating summary, the newest reviews and related products are optional.
pub const SCREEN: Screen = Screen {
    name: "product page",
    required: &["product"],
    optional: &["stock", "summary", "reviews", "related"],
    optional_timeout: OPTIONAL_PART_TIMEOUT,
};

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
    /// The product fields a related product's card shows, asked of the
    /// catalog as a read mask (empty: all).
    pub card_fields: &'static [&'static str],
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
pub async fn product_page<C: Transport>(
    downstreams: &Downstreams<C>,
    product_id: &str,
    parts: PageParts,
) -> Result<ProductPage, Status> {
    if product_id.is_empty() {
        return Err(Status::invalid_argument("product_id is required"));
    }
    input::id("product_id", product_id)?;
    let id = || product_id.to_owned();
    let product = async {
        let answer = downstreams
            .catalog
            .clone()
            .get_product(GetProductRequest { id: id() })
            .await?;
        answer
            .into_inner()
            .product
            .ok_or_else(|| Status::not_found(format!("product {product_id} not found")))
    };
    let stock = SCREEN.optional("stock", parts.stock, || async {
        let request = GetStockRequest { product_id: id() };
        let answer = downstreams.inventory.clone().get_stock(request).await?;
        answer
            .into_inner()
            .stock
            .ok_or_else(|| Status::internal("inventory answered without stock"))
    });
    let summary = SCREEN.optional("summary", parts.summary, || async {
        let request = GetReviewSummaryRequest { product_id: id() };
        let answer = downstreams
            .reviews
            .clone()
            .get_review_summary(request)
            .await?;
        answer
            .into_inner()
            .summary
            .ok_or_else(|| Status::internal("reviews answered without a summary"))
    });
    let reviews = SCREEN.optional("reviews", parts.reviews > 0, || async {
        let request = ListReviewsRequest {
            product_id: id(),
            page_size: parts.reviews,
            page_token: String::new(),
        };
        let answer = downstreams.reviews.clone().list_reviews(request).await?;
        Ok(answer.into_inner().reviews)
    });
    let related = SCREEN.optional("related", parts.related > 0, || async {
        let request = ListRelatedProductsRequest {
            product_id: id(),
            page_size: parts.related,
            read_mask: crate::read_mask(parts.card_fields),
        };
        let answer = downstreams
            .catalog
            .clone()
            .list_related_products(request)
            .await?;
        Ok(answer.into_inner().products)
    });
    let (product, stock, summary, reviews, related) =
        tokio::join!(product, stock, summary, reviews, related);
    Ok(ProductPage {
        product: product?,
        stock,
        summary,
        reviews,
        related,
    })
}

#[cfg(test)]
mod tests {
    use tailor_proto::catalog::v1::{GetProductResponse, ListRelatedProductsResponse};
    use tailor_proto::inventory::v1::GetStockResponse;
    use tailor_proto::reviews::v1::{GetReviewSummaryResponse, ListReviewsResponse};
    use tonic::Code;

    use super::*;
    use crate::fake::{FakeDownstreams, FakeService};

    const GET_PRODUCT: &str = "/tailor.catalog.v1.CatalogService/GetProduct";
    const RELATED: &str = "/tailor.catalog.v1.CatalogService/ListRelatedProducts";
    const STOCK: &str = "/tailor.inventory.v1.InventoryService/GetStock";
    const SUMMARY: &str = "/tailor.reviews.v1.ReviewsService/GetReviewSummary";
    const REVIEWS: &str = "/tailor.reviews.v1.ReviewsService/ListReviews";

    const EVERYTHING: PageParts = PageParts {
        stock: true,
        summary: true,
        reviews: 3,
        related: 2,
        card_fields: &[],
    };

    fn product(id: &str) -> Product {
        Product {
            id: id.into(),
            title: format!("Product {id}"),
            ..Default::default()
        }
    }

    fn healthy() -> FakeDownstreams {
        FakeDownstreams {
            catalog: FakeService::default()
                .answer(
                    GET_PRODUCT,
                    GetProductResponse {
                        product: Some(product("p1")),
                    },
                )
                .answer(
                    RELATED,
                    ListRelatedProductsResponse {
                        products: vec![product("p2"), product("p3")],
                    },
                ),
            inventory: FakeService::default().answer(
                STOCK,
                GetStockResponse {
                    stock: Some(ProductStock {
                        product_id: "p1".into(),
                        ..Default::default()
                    }),
                },
            ),
            reviews: FakeService::default()
                .answer(
                    SUMMARY,
                    GetReviewSummaryResponse {
                        summary: Some(ReviewSummary {
                            product_id: "p1".into(),
                            review_count: 4,
                            ..Default::default()
                        }),
                    },
                )
                .answer(REVIEWS, ListReviewsResponse::default()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_failing_reviews_service_degrades_its_parts_and_keeps_the_rest() {
        let mut fakes = healthy();
        fakes.reviews = FakeService::default()
            .fail(SUMMARY, Status::internal("no such table: summaries"))
            .fail(
                REVIEWS,
                Status::unavailable("connection refused 10.0.0.7:50053"),
            );
        let page = product_page(&fakes.clients(), "p1", EVERYTHING)
            .await
            .unwrap();
        assert_eq!(page.product.id, "p1");
        assert!(page.summary.is_degraded());
        assert!(page.reviews.is_degraded());
        assert_eq!(page.stock.as_ready().unwrap().product_id, "p1");
        assert_eq!(page.related.as_ready().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_service_that_does_not_answer_degrades_its_part_after_the_optional_timeout() {
        let mut fakes = healthy();
        fakes.inventory = FakeService::default().hang(STOCK);
        let started = std::time::Instant::now();
        let page = product_page(&fakes.clients(), "p1", EVERYTHING)
            .await
            .unwrap();
        assert!(page.stock.is_degraded());
        assert_eq!(page.summary.as_ready().unwrap().review_count, 4);
        assert!(started.elapsed() >= SCREEN.optional_timeout);
    }

    #[tokio::test]
    async fn a_failing_catalog_fails_the_page_naming_the_service_only() {
        let mut fakes = healthy();
        fakes.catalog = FakeService::default().fail(
            GET_PRODUCT,
            Status::internal("sqlite: disk I/O error at /var/lib/catalog.db"),
        );
        let status = product_page(&fakes.clients(), "p1", EVERYTHING)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "catalog is unavailable");
    }

    #[tokio::test]
    async fn an_unknown_product_is_not_found_as_the_catalog_said() {
        let mut fakes = healthy();
        fakes.catalog =
            FakeService::default().fail(GET_PRODUCT, Status::not_found("product p9 not found"));
        let status = product_page(&fakes.clients(), "p9", EVERYTHING)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "product p9 not found");
    }

    #[tokio::test]
    async fn parts_not_asked_for_cost_no_call() {
        let fakes = healthy();
        let parts = PageParts {
            stock: true,
            ..Default::default()
        };
        let page = product_page(&fakes.clients(), "p1", parts).await.unwrap();
        assert_eq!(page.summary, Part::Skipped);
        assert_eq!(page.reviews, Part::Skipped);
        assert_eq!(page.related, Part::Skipped);
        assert!(fakes.reviews.calls().is_empty());
        assert_eq!(fakes.catalog.calls(), [GET_PRODUCT]);
        assert_eq!(fakes.inventory.calls(), [STOCK]);
    }

    #[tokio::test]
    async fn an_empty_id_is_refused_before_any_call() {
        let fakes = healthy();
        let status = product_page(&fakes.clients(), "", EVERYTHING)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(fakes.catalog.calls().is_empty());
    }
}
