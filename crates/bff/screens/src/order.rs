//! Placing, reading and watching orders. Placing is the same safe sequence
//! for every client: current prices from the catalogue, a stock reservation
//! and the order itself, both idempotent on keys derived from the client's
//! idempotency key, so a client retrying after a lost response gets the
//! same order and the same reservation, never a second one.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use tailor_interceptors::input;
use tailor_proto::catalog::v1::BatchGetProductsRequest;
use tailor_proto::inventory::v1::{ReservationLine, ReserveStockRequest};
use tailor_proto::orders::v1::{
    CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, OrderLine,
    WatchOrderRequest, WatchOrderResponse,
};
use tonic::{Status, Streaming};

use crate::{Downstreams, Transport};

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

/// Places an order for `customer_id` through `channel` (`web`, `mobile`,
/// `partner`).
pub async fn place_order<C: Transport>(
    downstreams: &Downstreams<C>,
    customer_id: &str,
    channel: &str,
    idempotency_key: &str,
    lines: &[LineInput],
    limits: OrderLimits,
) -> Result<PlacedOrder, Status> {
    validate(idempotency_key, lines, limits)?;
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

    downstreams
        .inventory
        .clone()
        .reserve_stock(ReserveStockRequest {
            reservation_id: reservation_id(customer_id, idempotency_key),
            lines: lines
                .iter()
                .map(|l| ReservationLine {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                })
                .collect(),
        })
        .await?;

    let created = downstreams
        .orders
        .clone()
        .create_order(CreateOrderRequest {
            customer_id: customer_id.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            lines: order_lines,
            channel: channel.to_owned(),
        })
        .await?
        .into_inner();
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
}
