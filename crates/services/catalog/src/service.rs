//! `tailor.catalog.v1.CatalogService`.

use tailor_fieldmask::FieldMask;
use tailor_interceptors::input;
use tailor_proto::catalog::v1::catalog_service_server::CatalogService;
use tailor_proto::catalog::v1::{
    BatchGetProductsRequest, BatchGetProductsResponse, GetProductRequest, GetProductResponse,
    ListCategoriesRequest, ListCategoriesResponse, ListProductsRequest, ListProductsResponse,
    ListRelatedProductsRequest, ListRelatedProductsResponse,
};
use tailor_storage::PageSize;
use tonic::{Request, Response, Status};

use crate::CatalogError;
use crate::store::{CatalogStore, ListFilter};

const MAX_BATCH: usize = 200;
const PRODUCTS: PageSize = PageSize::new(20, 200);
const RELATED: PageSize = PageSize::new(8, 50);

/// The catalog handlers over a store.
#[derive(Debug, Clone)]
pub struct Catalog<S> {
    store: S,
}

impl<S> Catalog<S> {
    /// Serves from `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

/// The product descriptor read masks are checked against.
static PRODUCT: std::sync::LazyLock<prost_reflect::MessageDescriptor> =
    std::sync::LazyLock::new(|| {
        prost_reflect::DescriptorPool::decode(tailor_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set is valid")
            .get_message_by_name("tailor.catalog.v1.Product")
            .expect("the catalog's Product is in the descriptor set")
    });

/// The fields of each product `read_mask` names (`None`: all of them), or
/// INVALID_ARGUMENT naming the path a Product does not have. The store
/// drops the others from the stored bytes before decoding.
fn product_mask(read_mask: Option<prost_types::FieldMask>) -> Result<Option<FieldMask>, Status> {
    let paths = read_mask.map(|m| m.paths).unwrap_or_default();
    let mask = FieldMask::parse(&PRODUCT, &paths)
        .map_err(|e| Status::invalid_argument(format!("read_mask: {e}")))?;
    Ok((!mask.is_all()).then_some(mask))
}

/// The lower-case words of a search, or INVALID_ARGUMENT naming `query`
/// (the bounds are `tailor_interceptors::input`'s, the same the BFFs check).
fn search_words(query: &str) -> Result<Vec<String>, Status> {
    input::search(query)?;
    Ok(query.split_whitespace().map(str::to_lowercase).collect())
}

#[tonic::async_trait]
impl<S: CatalogStore> CatalogService for Catalog<S> {
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(CatalogError::InvalidArgument("id is required".into()).into());
        }
        input::id("id", &id)?;
        let product = self
            .store
            .products(vec![id.clone()])
            .await
            .map_err(CatalogError::from)?
            .pop()
            .ok_or(CatalogError::NotFound(id))?;
        Ok(Response::new(GetProductResponse {
            product: Some(product),
        }))
    }

    async fn batch_get_products(
        &self,
        request: Request<BatchGetProductsRequest>,
    ) -> Result<Response<BatchGetProductsResponse>, Status> {
        let ids = request.into_inner().ids;
        if ids.len() > MAX_BATCH {
            return Err(
                CatalogError::InvalidArgument(format!("at most {MAX_BATCH} ids per call")).into(),
            );
        }
        input::each_at_most("ids", &ids, input::MAX_ID_CHARS)?;
        let mut found = self
            .store
            .products(ids.clone())
            .await
            .map_err(CatalogError::from)?;
        let mut products = Vec::with_capacity(ids.len());
        let mut missing_ids = Vec::new();
        for id in ids {
            match found.iter().position(|p| p.id == id) {
                Some(at) => products.push(found.swap_remove(at)),
                None if products
                    .iter()
                    .any(|p: &tailor_proto::catalog::v1::Product| p.id == id) => {}
                None => missing_ids.push(id),
            }
        }
        Ok(Response::new(BatchGetProductsResponse {
            products,
            missing_ids,
        }))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let request = request.into_inner();
        input::id("category_id", &request.category_id)?;
        let fields = product_mask(request.read_mask)?;
        let filter = ListFilter {
            page_size: PRODUCTS.of(request.page_size).map_err(CatalogError::from)?,
            page_token: request.page_token,
            category_id: request.category_id,
            words: search_words(&request.query)?,
            updated_since: request.updated_since.map(|t| t.seconds),
            fields,
        };
        let page = self.store.list(filter).await.map_err(CatalogError::from)?;
        Ok(Response::new(ListProductsResponse {
            products: page.products,
            next_page_token: page.next_page_token,
            total_size: page.total_size,
        }))
    }

    async fn list_related_products(
        &self,
        request: Request<ListRelatedProductsRequest>,
    ) -> Result<Response<ListRelatedProductsResponse>, Status> {
        let request = request.into_inner();
        if request.product_id.is_empty() {
            return Err(CatalogError::InvalidArgument("product_id is required".into()).into());
        }
        input::id("product_id", &request.product_id)?;
        let limit = RELATED.of(request.page_size).map_err(CatalogError::from)?;
        let fields = product_mask(request.read_mask)?;
        let products = self
            .store
            .related(request.product_id.clone(), limit, fields)
            .await
            .map_err(CatalogError::from)?
            .ok_or(CatalogError::NotFound(request.product_id))?;
        Ok(Response::new(ListRelatedProductsResponse { products }))
    }

    async fn list_categories(
        &self,
        _request: Request<ListCategoriesRequest>,
    ) -> Result<Response<ListCategoriesResponse>, Status> {
        let categories = self.store.categories().await.map_err(CatalogError::from)?;
        Ok(Response::new(ListCategoriesResponse { categories }))
    }
}
