//! Downstream data in the web's shape.

use tailor_proto::catalog::v1 as catalog;
use tailor_proto::inventory::v1::ProductStock;
use tailor_proto::orders::v1 as orders;
use tailor_proto::reviews::v1 as reviews;
use tailor_proto::r#type::v1::Money;
use tailor_proto::web::v1::{
    Availability, ImageSource, Order, OrderLine, OrderStatus, Picture, Price, ProductCard,
    ProductDetails, Rating, Review, WarehouseAvailability,
};

/// "€19.99", "$5.00", "12.50 CHF".
pub fn display_money(money: &Money) -> String {
    let major = money.amount_minor / 100;
    let minor = (money.amount_minor % 100).abs();
    match money.currency_code.as_str() {
        "EUR" => format!("€{major}.{minor:02}"),
        "USD" => format!("${major}.{minor:02}"),
        "GBP" => format!("£{major}.{minor:02}"),
        code => format!("{major}.{minor:02} {code}"),
    }
}

pub fn price(money: Option<Money>) -> Option<Price> {
    money.map(|amount| Price {
        display: display_money(&amount),
        amount: Some(amount),
    })
}

pub fn picture(image: &catalog::Image) -> Picture {
    let mut sources: Vec<ImageSource> = image
        .variants
        .iter()
        .map(|v| ImageSource {
            url: v.url.clone(),
            width: v.width,
            height: v.height,
        })
        .collect();
    sources.sort_by_key(|s| s.width);
    Picture {
        alt_text: image.alt_text.clone(),
        sources,
    }
}

pub fn rating(summary: &reviews::ReviewSummary) -> Rating {
    Rating {
        average: (summary.average_rating * 10.0).round() / 10.0,
        count: summary.review_count,
        histogram: summary.rating_histogram.clone(),
    }
}

/// The catalog fields [`card`] reads: what the web BFF asks the catalog
/// for when it shows products as cards.
pub const CARD_FIELDS: &[&str] = &["id", "title", "brand", "category_name", "price", "images"];

pub fn card(
    product: &catalog::Product,
    summary: Option<&reviews::ReviewSummary>,
    stock: Option<&ProductStock>,
) -> ProductCard {
    ProductCard {
        id: product.id.clone(),
        title: product.title.clone(),
        brand: product.brand.clone(),
        category_name: product.category_name.clone(),
        price: price(product.price.clone()),
        picture: product.images.first().map(picture),
        rating: summary.map(rating),
        available_units: stock.map(|s| s.total_available),
    }
}

pub fn details(product: catalog::Product) -> ProductDetails {
    ProductDetails {
        pictures: product.images.iter().map(picture).collect(),
        price: price(product.price),
        id: product.id,
        sku: product.sku,
        title: product.title,
        brand: product.brand,
        category_id: product.category_id,
        category_name: product.category_name,
        description: product.description,
        attributes: product.attributes,
    }
}

fn days(n: i32) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

pub fn availability(stock: ProductStock) -> Availability {
    let mut warehouses: Vec<WarehouseAvailability> = stock
        .warehouses
        .iter()
        .map(|w| WarehouseAvailability {
            warehouse_name: w.warehouse_name.clone(),
            available_units: w.available,
            ship_days: w.ship_days,
        })
        .collect();
    warehouses.sort_by_key(|w| (w.ship_days, -w.available_units));
    let fastest = warehouses
        .iter()
        .find(|w| w.available_units > 0)
        .map(|w| w.ship_days);
    let summary = match (stock.total_available, fastest) {
        (0, _) | (_, None) => "Out of stock".to_owned(),
        (n, Some(d)) if n < 10 => format!("Only {n} left, ships in {}", days(d)),
        (_, Some(d)) => format!("In stock, ships in {}", days(d)),
    };
    Availability {
        total_available_units: stock.total_available,
        warehouses,
        summary,
    }
}

pub fn review(review: reviews::Review) -> Review {
    Review {
        author_name: review.author_name,
        rating: review.rating,
        title: review.title,
        body: review.body,
        helpful_count: review.helpful_count,
        create_time: review.create_time,
    }
}

fn status(status: i32) -> (OrderStatus, &'static str) {
    match orders::OrderStatus::try_from(status).unwrap_or_default() {
        orders::OrderStatus::Unspecified => (OrderStatus::Unspecified, "Unknown"),
        orders::OrderStatus::Placed => (OrderStatus::Placed, "Placed"),
        orders::OrderStatus::Confirmed => (OrderStatus::Confirmed, "Confirmed"),
        orders::OrderStatus::Packed => (OrderStatus::Packed, "Packed"),
        orders::OrderStatus::Shipped => (OrderStatus::Shipped, "Shipped"),
        orders::OrderStatus::Delivered => (OrderStatus::Delivered, "Delivered"),
        orders::OrderStatus::Cancelled => (OrderStatus::Cancelled, "Cancelled"),
    }
}

pub fn order(order: orders::Order) -> Order {
    let (status, label) = status(order.status);
    Order {
        id: order.id,
        lines: order
            .lines
            .into_iter()
            .map(|l| OrderLine {
                product_id: l.product_id,
                title: l.title,
                quantity: l.quantity,
                unit_price: price(l.unit_price),
            })
            .collect(),
        total: price(order.total),
        status: status.into(),
        status_label: label.to_owned(),
        create_time: order.create_time,
        update_time: order.update_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_stock_read_as_a_shopper_expects() {
        let eur = |amount_minor| Money {
            currency_code: "EUR".into(),
            amount_minor,
        };
        assert_eq!(display_money(&eur(1999)), "€19.99");
        assert_eq!(display_money(&eur(5)), "€0.05");
        let chf = Money {
            currency_code: "CHF".into(),
            amount_minor: 1250,
        };
        assert_eq!(display_money(&chf), "12.50 CHF");

        let stock = |available: i32, ship_days| ProductStock {
            product_id: "p".into(),
            total_available: available,
            warehouses: vec![tailor_proto::inventory::v1::WarehouseStock {
                warehouse_id: "wh".into(),
                warehouse_name: "Berlin".into(),
                on_hand: available,
                reserved: 0,
                available,
                ship_days,
            }],
        };
        assert_eq!(availability(stock(0, 1)).summary, "Out of stock");
        assert_eq!(
            availability(stock(3, 2)).summary,
            "Only 3 left, ships in 2 days"
        );
        assert_eq!(
            availability(stock(40, 1)).summary,
            "In stock, ships in 1 day"
        );
    }
}
