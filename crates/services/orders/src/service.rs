//! `tailor.orders.v1.OrdersService`.

use std::pin::Pin;

use futures_util::Stream;
use sha2::{Digest, Sha256};
use tailor_interceptors::context::CallContext;
use tailor_interceptors::input;
use tailor_proto::orders::v1::orders_service_server::OrdersService;
use tailor_proto::orders::v1::{
    CreateOrderRequest, CreateOrderResponse, GetOrderRequest, GetOrderResponse, ListOrdersRequest,
    ListOrdersResponse, Order, OrderStatus, WatchOrderRequest, WatchOrderResponse,
};
use tailor_proto::r#type::v1::Money;
use tailor_storage::PageSize;
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status};

use crate::OrdersError;
use crate::store::OrderStore;

const MAX_LINES: usize = 100;
const ORDERS: PageSize = PageSize::new(20, 100);
const MAX_QUANTITY: i32 = 10_000;
/// Titles are copied from the catalogue, whose are far shorter.
const MAX_TITLE_CHARS: usize = 512;
/// `web`, `mobile`, `partner`.
const MAX_CHANNEL_CHARS: usize = 16;
/// ISO 4217 codes.
const MAX_CURRENCY_CHARS: usize = 3;

/// The orders handlers over a store.
#[derive(Debug, Clone)]
pub struct Orders<S> {
    store: S,
}

impl<S> Orders<S> {
    /// Serves from `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

/// The BFF that speaks for partner tenants: only it may act for a
/// `partner:<tenant>` customer, and it acts for no one else.
const PARTNER_BFF: &str = "partner-bff";

/// The customer a call is for: the user the calling BFF signed for (its
/// identity token, verified against its client certificate), never a
/// request field. A request that names someone else is refused.
fn customer(asked: &str) -> Result<String, Status> {
    let context = CallContext::current().unwrap_or_default();
    let identity = context.identity.ok_or_else(|| {
        Status::unauthenticated("the calling BFF did not say which customer it calls for")
    })?;
    let from_partner_bff = context.calling_client.as_deref() == Some(PARTNER_BFF);
    if identity.subject.starts_with("partner:") != from_partner_bff {
        return Err(Status::permission_denied(
            "partner customers are reached through the partner BFF only",
        ));
    }
    if !asked.is_empty() && asked != identity.subject {
        return Err(Status::permission_denied(
            "customer_id must be the calling customer's own",
        ));
    }
    Ok(identity.subject)
}

fn invalid(message: impl Into<String>) -> OrdersError {
    OrdersError::InvalidArgument(message.into())
}

/// A length check of `tailor_interceptors::input` as an orders error.
fn bounded(check: Result<(), Status>) -> Result<(), OrdersError> {
    check.map_err(|status| invalid(status.message()))
}

/// Validates a request and builds the order it asks for, with the total
/// computed here and the fingerprint that identifies the request: products
/// and quantities, not prices, so a retry after a price change is still the
/// same order.
fn new_order(
    customer_id: String,
    request: &CreateOrderRequest,
) -> Result<(Order, String), OrdersError> {
    let key = &request.idempotency_key;
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "idempotency_key must be 1 to 128 printable ASCII characters",
        ));
    }
    if request.lines.is_empty() || request.lines.len() > MAX_LINES {
        return Err(invalid(format!("lines must hold 1 to {MAX_LINES} lines")));
    }
    bounded(input::at_most(
        "channel",
        &request.channel,
        MAX_CHANNEL_CHARS,
    ))?;
    let mut currency = None;
    let mut total = 0i64;
    let mut hasher = Sha256::new();
    for line in &request.lines {
        if line.product_id.is_empty() {
            return Err(invalid("lines[].product_id is required"));
        }
        bounded(input::id("lines[].product_id", &line.product_id))?;
        bounded(input::at_most(
            "lines[].title",
            &line.title,
            MAX_TITLE_CHARS,
        ))?;
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(invalid(format!(
                "lines[].quantity must be between 1 and {MAX_QUANTITY}"
            )));
        }
        let price = line
            .unit_price
            .as_ref()
            .ok_or_else(|| invalid("lines[].unit_price is required"))?;
        if price.amount_minor < 0 {
            return Err(invalid("lines[].unit_price must not be negative"));
        }
        bounded(input::at_most(
            "lines[].unit_price.currency_code",
            &price.currency_code,
            MAX_CURRENCY_CHARS,
        ))?;
        if *currency.get_or_insert(price.currency_code.as_str()) != price.currency_code {
            return Err(invalid("all lines must be in one currency"));
        }
        // Prices come from a caller: a sum that does not fit is refused,
        // never wrapped into a negative total.
        total = price
            .amount_minor
            .checked_mul(i64::from(line.quantity))
            .and_then(|line_total| total.checked_add(line_total))
            .ok_or_else(|| invalid("the order total is larger than a price can be"))?;
        hasher.update(format!("{}\u{0}{}\u{0}", line.product_id, line.quantity));
    }
    let order = Order {
        id: format!("ord-{}", hex::encode(rand::random::<[u8; 10]>())),
        customer_id,
        lines: request.lines.clone(),
        total: Some(Money {
            currency_code: currency.unwrap_or_default().to_owned(),
            amount_minor: total,
        }),
        status: OrderStatus::Placed as i32,
        channel: request.channel.clone(),
        create_time: None,
        update_time: None,
    };
    Ok((order, hex::encode(hasher.finalize())))
}

fn is_final(status: i32) -> bool {
    status == OrderStatus::Delivered as i32 || status == OrderStatus::Cancelled as i32
}

type OrderStream = Pin<Box<dyn Stream<Item = Result<WatchOrderResponse, Status>> + Send>>;

impl<S: OrderStore + Clone> Orders<S> {
    /// The customer's order, or NOT_FOUND for anyone else's.
    async fn owned(&self, order_id: &str, customer_id: &str) -> Result<Order, OrdersError> {
        if order_id.is_empty() {
            return Err(invalid("order_id is required"));
        }
        bounded(input::id("order_id", order_id))?;
        match self.store.get(order_id.to_owned()).await? {
            Some(order) if order.customer_id == customer_id => Ok(order),
            _ => Err(OrdersError::NotFound(order_id.to_owned())),
        }
    }
}

#[tonic::async_trait]
impl<S: OrderStore + Clone> OrdersService for Orders<S> {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let request = request.into_inner();
        let customer_id = customer(&request.customer_id)?;
        let (order, fingerprint) = new_order(customer_id, &request)?;
        let created = self
            .store
            .create(request.idempotency_key, fingerprint, order)
            .await
            .map_err(OrdersError::from)?
            .ok_or(OrdersError::KeyReused)?;
        Ok(Response::new(CreateOrderResponse {
            order: Some(created.order),
            replayed: created.replayed,
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let request = request.into_inner();
        let customer_id = customer(&request.customer_id)?;
        let order = self.owned(&request.order_id, &customer_id).await?;
        Ok(Response::new(GetOrderResponse { order: Some(order) }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let request = request.into_inner();
        let customer_id = customer(&request.customer_id)?;
        let page_size = ORDERS.of(request.page_size).map_err(OrdersError::from)?;
        let (orders, next_page_token) = self
            .store
            .list(customer_id, page_size, request.page_token)
            .await
            .map_err(OrdersError::from)?;
        Ok(Response::new(ListOrdersResponse {
            orders,
            next_page_token,
        }))
    }

    type WatchOrderStream = OrderStream;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<OrderStream>, Status> {
        let request = request.into_inner();
        // Subscribe before reading, so no change between the two is lost.
        let customer_id = customer(&request.customer_id)?;
        let mut changes = self.store.changes();
        let current = self.owned(&request.order_id, &customer_id).await?;
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut last = current.status;
            let id = current.id.clone();
            if tx
                .send(Ok(WatchOrderResponse {
                    order: Some(current),
                }))
                .await
                .is_err()
                || is_final(last)
            {
                return;
            }
            loop {
                let order = tokio::select! {
                    () = tx.closed() => return,
                    change = changes.recv() => match change {
                        Ok(order) if order.id == id => order,
                        Ok(_) => continue,
                        // Fell behind the feed: the stored state is the truth.
                        Err(broadcast::error::RecvError::Lagged(_)) => match store.get(id.clone()).await {
                            Ok(Some(order)) => order,
                            _ => return,
                        },
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if order.status <= last {
                    continue;
                }
                last = order.status;
                if tx
                    .send(Ok(WatchOrderResponse { order: Some(order) }))
                    .await
                    .is_err()
                    || is_final(last)
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
