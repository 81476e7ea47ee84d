//! Placing, reading and watching orders. Placing is the same safe sequence
//! for every client: current prices from the catalogue, a stock reservation
//! and the order itself, both idempotent on keys derived from the client's
//! idempotency key, so a client retrying after a lost response gets the
//! same order and the same reservation, never a second one.
//!
//! **Compensation.** When the orders service refuses an order, the stock
//! reserved for it is released, so failed orders never drain stock. The
//! reservation is released only when both are sure:
//!
//! - the order was surely not created: the orders service answered with a
//!   refusal it gives before storing anything (INVALID_ARGUMENT,
//!   FAILED_PRECONDITION, NOT_FOUND, RESOURCE_EXHAUSTED). When the outcome
//!   is unknown (the deadline passed, the connection broke or the service
//!   failed: DEADLINE_EXCEEDED, UNAVAILABLE, CANCELLED, anything else) the
//!   order may exist and its stock stays held; the client's retry with the
//!   same idempotency key finds the same reservation and completes or
//!   replays the order;
//! - this call made the reservation (it was not a replay): a replayed
//!   reservation may belong to an order an earlier attempt created, which
//!   a refusal now (for example the key reused for different lines) says
//!   nothing about.
//!
//! **Fair use.** Web and mobile users may place orders at the rate of an
//! [`OrderRate`] (by default [`DEFAULT_ORDER_RATE`]); more are answered
//! RESOURCE_EXHAUSTED with RetryInfo before any downstream call. A retry of
//! the same order (same idempotency key) is not charged twice.

use std::collections::HashSet;
use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest, Sha256};
use tailor_interceptors::input;
use tailor_interceptors::limits::{DEFAULT_CAPACITY, Limiter, Plan, Refusal};
use tailor_proto::catalog::v1::BatchGetProductsRequest;
use tailor_proto::inventory::v1::{
    ReleaseReservationRequest, ReservationLine, ReserveStockRequest,
};
use tailor_proto::orders::v1::{
    CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, OrderLine,
    WatchOrderRequest, WatchOrderResponse,
};
use tonic::{Code, Status, Streaming};

use crate::{Downstreams, Transport};

/// Placing an order has no optional part: prices, the stock reservation
/// and the order itself are all required, and a failure of any of them
/// fails the call with the downstream's status.
pub const PLACE_ORDER: crate::Screen = crate::Screen {
    name: "place order",
    required: &["prices", "reservation", "order"],
    optional: &[],
    optional_timeout: crate::OPTIONAL_PART_TIMEOUT,
};

/// One line as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInput {
    /// The product.
    pub product_id: String,
    /// Units.
    pub quantity: i32,
}

/// What a client type may order in one go.
#[derive(Debug, Clone, Copy)]
pub struct OrderLimits {
    /// Lines per order.
    pub max_lines: usize,
    /// Units per line.
    pub max_quantity: i32,
}

/// A placed order.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    /// The order as stored.
    pub order: Order,
    /// True when an earlier call with the same key had placed it.
    pub replayed: bool,
}

fn validate(key: &str, lines: &[LineInput], limits: OrderLimits) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument(
            "idempotency_key is required so that retries are safe",
        ));
    }
    if key.len() > input::MAX_IDEMPOTENCY_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Status::invalid_argument(
            "idempotency_key must be 1 to 128 printable ASCII characters",
        ));
    }
    if lines.is_empty() {
        return Err(Status::invalid_argument("lines must not be empty"));
    }
    if lines.len() > limits.max_lines {
        return Err(Status::invalid_argument(format!(
            "at most {} lines per order",
            limits.max_lines
        )));
    }
    let mut seen = HashSet::new();
    for line in lines {
        if line.product_id.is_empty() {
            return Err(Status::invalid_argument("lines[].product_id is required"));
        }
        input::id("lines[].product_id", &line.product_id)?;
        if !(1..=limits.max_quantity).contains(&line.quantity) {
            return Err(Status::invalid_argument(format!(
                "lines[].quantity must be between 1 and {}",
                limits.max_quantity
            )));
        }
        if !seen.insert(line.product_id.as_str()) {
            return Err(Status::invalid_argument(format!(
                "product {} appears in more than one line",
                line.product_id
            )));
        }
    }
    Ok(())
}

/// The reservation id for one customer's idempotency key: stable across
/// retries, distinct between customers, within inventory's 128 characters.
fn reservation_id(customer_id: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{customer_id}\u{0}{key}").as_bytes());
    format!("rsv-{}", hex::encode(&digest[..16]))
}

/// How often one customer may place orders unless configured: 10 at
/// once, then one every 10 seconds, 500 a day.
pub const DEFAULT_ORDER_RATE: Plan = Plan {
    per_second: 0.1,
    burst: 10,
    daily_quota: 500,
};

/// How long a charged order (customer and idempotency key) is remembered,
/// so that its retries are not charged again.
const RETRY_WINDOW: Duration = Duration::from_secs(600);

/// Orders remembered for [`RETRY_WINDOW`] at most.
const REMEMBERED_ORDERS: u64 = 100_000;

/// Orders per customer (see the module docs), one per BFF: a token bucket
/// and a daily quota per customer id, charged once per idempotency key.
/// Both tables are bounded.
pub struct OrderRate {
    plan: Plan,
    customers: Limiter,
    /// The verdict for each (customer, idempotency key) charged lately.
    charged: Cache<String, Result<(), Refusal>>,
}

impl std::fmt::Debug for OrderRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRate")
            .field("plan", &self.plan)
            .finish()
    }
}

impl OrderRate {
    /// Each customer may place orders as `plan` says.
    pub fn new(plan: Plan) -> Self {
        let day = Duration::from_secs(24 * 3600);
        Self {
            plan,
            customers: Limiter::bounded(Default::default(), DEFAULT_CAPACITY, day),
            charged: Cache::builder()
                .max_capacity(REMEMBERED_ORDERS)
                .time_to_live(RETRY_WINDOW)
                .build(),
        }
    }

    /// Takes one order for `customer_id`, unless `idempotency_key` was
    /// charged lately; concurrent retries of one order get one verdict.
    pub fn admit(&self, customer_id: &str, idempotency_key: &str) -> Result<(), Status> {
        let order = format!("{customer_id}\u{0}{idempotency_key}");
        let entry = self
            .charged
            .entry_by_ref(&order)
            .or_insert_with(|| self.customers.admit_key(customer_id, &self.plan));
        let Err(refusal) = *entry.value() else {
            return Ok(());
        };
        // A refused order is not remembered: its retry is charged afresh.
        if entry.is_fresh() {
            self.charged.invalidate(&order);
        }
        tracing::warn!(customer = %customer_id.escape_debug(), "orders limited");
        Err(refusal.status("orders for this user", &format!("orders:{customer_id}")))
    }
}

/// Whether a failed CreateOrder surely stored nothing: a refusal the
/// orders service gives before storing (see the module docs).
fn surely_not_created(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::ResourceExhausted
    )
}

/// Gives the stock of `reservation_id` back; a failure is logged, since the
/// order's own refusal is what the client needs to hear.
async fn release<C: Transport>(downstreams: &Downstreams<C>, reservation_id: &str) {
    let released = downstreams
        .inventory
        .clone()
        .release_reservation(ReleaseReservationRequest {
            reservation_id: reservation_id.to_owned(),
        })
        .await;
    match released {
        Ok(_) => tracing::info!(
            reservation = reservation_id,
            "stock of a refused order released"
        ),
        Err(status) => tracing::warn!(
            reservation = reservation_id,
            code = ?status.code(),
            "releasing the stock of a refused order failed; it stays held"
        ),
    }
}

/// Places an order for `customer_id` through `channel` (`web`, `mobile`,
/// `partner`), charging `rate` when given (web and mobile users; partner
/// keys are limited by their plans before the handler).
pub async fn place_order<C: Transport>(
    downstreams: &Downstreams<C>,
    customer_id: &str,
    channel: &str,
    idempotency_key: &str,
    lines: &[LineInput],
    limits: OrderLimits,
    rate: Option<&OrderRate>,
) -> Result<PlacedOrder, Status> {
    validate(idempotency_key, lines, limits)?;
    if let Some(rate) = rate {
        rate.admit(customer_id, idempotency_key)?;
    }
    let ids = lines.iter().map(|l| l.product_id.clone()).collect();
    let products = downstreams
        .catalog
        .clone()
        .batch_get_products(BatchGetProductsRequest { ids })
        .await?
        .into_inner();
    if let Some(missing) = products.missing_ids.first() {
        return Err(Status::not_found(format!("product {missing} not found")));
    }
    let mut order_lines = Vec::with_capacity(lines.len());
    for line in lines {
        let product = products
            .products
            .iter()
            .find(|p| p.id == line.product_id)
            .ok_or_else(|| Status::not_found(format!("product {} not found", line.product_id)))?;
        order_lines.push(OrderLine {
            product_id: line.product_id.clone(),
            title: product.title.clone(),
            quantity: line.quantity,
            unit_price: product.price.clone(),
        });
    }

    let reservation_id = reservation_id(customer_id, idempotency_key);
    let reserved = downstreams
        .inventory
        .clone()
        .reserve_stock(ReserveStockRequest {
            reservation_id: reservation_id.clone(),
            lines: lines
                .iter()
                .map(|l| ReservationLine {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                })
                .collect(),
        })
        .await?
        .into_inner();

    let created = downstreams
        .orders
        .clone()
        .create_order(CreateOrderRequest {
            customer_id: customer_id.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            lines: order_lines,
            channel: channel.to_owned(),
        })
        .await;
    let created = match created {
        Ok(created) => created.into_inner(),
        Err(status) => {
            if !reserved.replayed && surely_not_created(&status) {
                release(downstreams, &reservation_id).await;
            }
            return Err(status);
        }
    };
    let order = created
        .order
        .ok_or_else(|| Status::unavailable("orders answered without an order"))?;
    Ok(PlacedOrder {
        order,
        replayed: created.replayed,
    })
}

/// One of the customer's orders; NOT_FOUND for anyone else's.
pub async fn get_order<C: Transport>(
    downstreams: &Downstreams<C>,
    customer_id: &str,
    order_id: &str,
) -> Result<Order, Status> {
    if order_id.is_empty() {
        return Err(Status::invalid_argument("order_id is required"));
    }
    input::id("order_id", order_id)?;
    downstreams
        .orders
        .clone()
        .get_order(GetOrderRequest {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
        })
        .await?
        .into_inner()
        .order
        .ok_or_else(|| Status::not_found(format!("order {order_id} not found")))
}

/// A page of the customer's orders.
pub async fn list_orders<C: Transport>(
    downstreams: &Downstreams<C>,
    customer_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListOrdersResponse, Status> {
    input::token("page_token", page_token)?;
    Ok(downstreams
        .orders
        .clone()
        .list_orders(ListOrdersRequest {
            customer_id: customer_id.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        })
        .await?
        .into_inner())
}

/// The status stream of one of the customer's orders; errors inside the
/// stream arrive already named by the orders channel.
pub async fn watch_order<C: Transport>(
    downstreams: &Downstreams<C>,
    customer_id: &str,
    order_id: &str,
) -> Result<Streaming<WatchOrderResponse>, Status> {
    if order_id.is_empty() {
        return Err(Status::invalid_argument("order_id is required"));
    }
    input::id("order_id", order_id)?;
    Ok(downstreams
        .orders
        .clone()
        .watch_order(WatchOrderRequest {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
        })
        .await?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OrderLimits = OrderLimits {
        max_lines: 3,
        max_quantity: 9,
    };

    fn line(id: &str, quantity: i32) -> LineInput {
        LineInput {
            product_id: id.into(),
            quantity,
        }
    }

    #[test]
    fn refuses_unsafe_or_malformed_orders_with_the_field_named() {
        let ok = [line("prod-000001", 2)];
        assert!(validate("k-1", &ok, LIMITS).is_ok());
        let cases: [(&str, Vec<LineInput>, &str); 8] = [
            ("", ok.to_vec(), "idempotency_key"),
            ("has space", ok.to_vec(), "idempotency_key"),
            ("k", vec![], "lines"),
            ("k", vec![line("", 1)], "product_id"),
            ("k", vec![line("p", 10)], "quantity"),
            ("k", vec![line("p", 1), line("p", 2)], "more than one line"),
            (
                "k",
                vec![line(&"p".repeat(65), 1)],
                "lines[].product_id must be at most",
            ),
            (&"k".repeat(129), ok.to_vec(), "idempotency_key"),
        ];
        for (key, lines, needle) in cases {
            let status = validate(key, &lines, LIMITS).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(needle), "{}", status.message());
        }
    }

    #[test]
    fn reservation_ids_are_stable_per_customer_and_key() {
        assert_eq!(reservation_id("u1", "k"), reservation_id("u1", "k"));
        assert_ne!(reservation_id("u1", "k"), reservation_id("u2", "k"));
        assert!(reservation_id(&"x".repeat(500), "k").len() <= 128);
    }

    mod compensation {
        use tailor_proto::catalog::v1::{BatchGetProductsResponse, Product};
        use tailor_proto::inventory::v1::{ReleaseReservationResponse, ReserveStockResponse};
        use tonic_types::StatusExt;

        use super::*;
        use crate::fake::{FakeDownstreams, FakeService};

        const PRODUCTS: &str = "/tailor.catalog.v1.CatalogService/BatchGetProducts";
        const RESERVE: &str = "/tailor.inventory.v1.InventoryService/ReserveStock";
        const RELEASE: &str = "/tailor.inventory.v1.InventoryService/ReleaseReservation";
        const CREATE: &str = "/tailor.orders.v1.OrdersService/CreateOrder";

        /// A shop whose reservation answers `replayed` and whose orders
        /// service fails CreateOrder with `status`.
        fn shop(replayed: bool, status: Status) -> FakeDownstreams {
            FakeDownstreams {
                catalog: FakeService::default().answer(
                    PRODUCTS,
                    BatchGetProductsResponse {
                        products: vec![Product {
                            id: "p1".into(),
                            title: "Thing".into(),
                            ..Default::default()
                        }],
                        missing_ids: vec![],
                    },
                ),
                inventory: FakeService::default()
                    .answer(
                        RESERVE,
                        ReserveStockResponse {
                            reservation: None,
                            replayed,
                        },
                    )
                    .answer(RELEASE, ReleaseReservationResponse { released: true }),
                orders: FakeService::default().fail(CREATE, status),
                ..Default::default()
            }
        }

        async fn place(fakes: &FakeDownstreams) -> Status {
            let lines = [line("p1", 2)];
            place_order(&fakes.clients(), "u1", "web", "k-1", &lines, LIMITS, None)
                .await
                .unwrap_err()
        }

        #[tokio::test]
        async fn a_refused_order_gives_back_the_stock_it_reserved() {
            let refusals = [
                Status::invalid_argument("the order total is larger than a price can be"),
                Status::failed_precondition("idempotency key already used for a different order"),
                Status::not_found("no such product"),
                Status::resource_exhausted("request message too large"),
            ];
            for refusal in refusals {
                let fakes = shop(false, refusal.clone());
                let status = place(&fakes).await;
                assert_eq!(
                    status.code(),
                    refusal.code(),
                    "the client hears the refusal"
                );
                assert_eq!(fakes.inventory.calls(), [RESERVE, RELEASE], "{refusal:?}");
            }
        }

        #[tokio::test]
        async fn an_order_that_may_exist_keeps_its_stock() {
            // Each may come after the order was stored; the channel reads
            // an internal failure as UNAVAILABLE.
            let unknown = [
                Status::unavailable("orders is unavailable"),
                Status::deadline_exceeded("deadline exceeded"),
                Status::cancelled("cancelled"),
                Status::internal("disk I/O error"),
                Status::aborted("conflict"),
                Status::already_exists("order exists"),
            ];
            for outcome in unknown {
                let fakes = shop(false, outcome.clone());
                place(&fakes).await;
                assert_eq!(fakes.inventory.calls(), [RESERVE], "{outcome:?}");
            }
        }

        #[tokio::test]
        async fn a_replayed_reservation_is_never_released() {
            // An earlier attempt made it, and may have made the order too.
            let fakes = shop(true, Status::failed_precondition("key reused"));
            let status = place(&fakes).await;
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(fakes.inventory.calls(), [RESERVE]);
        }

        #[tokio::test]
        async fn a_failed_release_leaves_the_refusal_as_the_answer() {
            let mut fakes = shop(false, Status::invalid_argument("bad order"));
            fakes.inventory = FakeService::default()
                .answer(
                    RESERVE,
                    ReserveStockResponse {
                        reservation: None,
                        replayed: false,
                    },
                )
                .fail(RELEASE, Status::unavailable("inventory is unavailable"));
            let status = place(&fakes).await;
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(status.message(), "bad order");
            assert_eq!(fakes.inventory.calls(), [RESERVE, RELEASE]);
        }

        #[tokio::test]
        async fn orders_over_the_rate_are_refused_before_any_downstream_call() {
            let rate = OrderRate::new(Plan {
                per_second: 0.01,
                burst: 2,
                daily_quota: 100,
            });
            let fakes = shop(false, Status::invalid_argument("bad order"));
            let clients = fakes.clients();
            let lines = [line("p1", 1)];
            let order = |customer: &'static str, key: &'static str| {
                let (clients, lines, rate) = (&clients, &lines, &rate);
                async move {
                    place_order(clients, customer, "web", key, lines, LIMITS, Some(rate))
                        .await
                        .unwrap_err()
                }
            };
            // Two orders pass the limit (and fail downstream) ...
            assert_eq!(order("u1", "a").await.code(), Code::InvalidArgument);
            assert_eq!(order("u1", "b").await.code(), Code::InvalidArgument);
            let calls = fakes.catalog.calls().len();
            // ... the third waits, with RetryInfo, and costs no call.
            let refused = order("u1", "c").await;
            assert_eq!(refused.code(), Code::ResourceExhausted);
            let retry = refused
                .get_details_retry_info()
                .unwrap()
                .retry_delay
                .unwrap();
            assert!(retry > Duration::from_secs(90), "{retry:?}");
            assert_eq!(fakes.catalog.calls().len(), calls);
            // A retry of an order already charged is not charged again ...
            assert_eq!(order("u1", "a").await.code(), Code::InvalidArgument);
            // ... a retry of the refused one still waits ...
            assert_eq!(order("u1", "c").await.code(), Code::ResourceExhausted);
            // ... and other users are not affected.
            assert_eq!(order("u2", "c").await.code(), Code::InvalidArgument);
            // An invalid order is refused as such, uncharged.
            let invalid = place_order(&clients, "u2", "web", "", &lines, LIMITS, Some(&rate)).await;
            assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);
            assert_eq!(order("u2", "d").await.code(), Code::InvalidArgument);
        }
    }
}
