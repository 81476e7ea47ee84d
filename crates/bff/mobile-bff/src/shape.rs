//! Downstream data in the phone's shape: one image per screen, minor units,
//! coarse stock, trimmed texts.

use tailor_proto::catalog::v1 as catalog;
use tailor_proto::inventory::v1::ProductStock;
use tailor_proto::mobile::v1::{
    Order, OrderStatus, ProductCard, ReviewSnippet, Screen, StockState,
};
use tailor_proto::orders::v1 as orders;
use tailor_proto::reviews::v1 as reviews;

/// A list row's thumbnail is this many points wide.
const THUMBNAIL_POINTS: f32 = 96.0;
/// The title length a list row shows.
const CARD_TITLE_CHARS: usize = 40;
/// Below this many units stock reads as low.
const LOW_STOCK: i32 = 10;

/// The metadata header a client may describe its screen in instead of the
/// request field: `<width in points>x<density>`, for example `390x3`.
pub const SCREEN_HEADER: &str = "x-screen";

/// The screen in an `x-screen` value.
pub fn parse_screen(value: &str) -> Option<Screen> {
    let (width, density) = value.trim().split_once(['x', 'X'])?;
    Some(Screen {
        width_points: width.trim().parse().ok()?,
        density: density.trim().parse().ok()?,
    })
}

/// The screen a call is for: its request field, else its `x-screen`
/// header, else a common modern phone.
pub fn screen_for(screen: Option<Screen>, metadata: &tonic::metadata::MetadataMap) -> Screen {
    let header = metadata.get(SCREEN_HEADER).and_then(|v| v.to_str().ok());
    screen_or_default(screen, header)
}

/// The request's screen, else the `x-screen` header's, else a common
/// modern phone.
pub fn screen_or_default(screen: Option<Screen>, header: Option<&str>) -> Screen {
    let valid = |s: &Screen| s.width_points > 0 && s.density > 0.0;
    screen
        .filter(valid)
        .or_else(|| header.and_then(parse_screen).filter(valid))
        .unwrap_or(Screen {
            width_points: 390,
            density: 3.0,
        })
}

/// The smallest rendering at least `points` wide on `screen`, else the
/// largest there is.
pub fn image_for(image: Option<&catalog::Image>, points: f32, screen: &Screen) -> String {
    let Some(image) = image else {
        return String::new();
    };
    let needed = (points * screen.density).ceil() as i32;
    let mut variants: Vec<&catalog::ImageVariant> = image.variants.iter().collect();
    variants.sort_by_key(|v| v.width);
    variants
        .iter()
        .find(|v| v.width >= needed)
        .or(variants.last())
        .map(|v| v.url.clone())
        .unwrap_or_default()
}

/// Cuts `text` to at most `max` characters at a word boundary, with "…".
pub fn trim_text(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(1);
    let cut: String = text.chars().take(keep).collect();
    let ends_at_word = text
        .chars()
        .nth(keep)
        .is_some_and(|next| !next.is_alphanumeric());
    let cut = match cut.rfind(' ') {
        Some(space) if !ends_at_word && space > max / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([' ', ',', '.', ';', ':']))
}

/// 4.26 stars → 45 (4.5 stars): ratings rounded to half stars, times ten.
pub fn rating_tenths(average: f64) -> i32 {
    ((average * 2.0).round() * 5.0) as i32
}

pub fn stock_state(stock: Option<&ProductStock>) -> StockState {
    match stock.map(|s| s.total_available) {
        None => StockState::Unspecified,
        Some(0) => StockState::OutOfStock,
        Some(n) if n < LOW_STOCK => StockState::Low,
        Some(_) => StockState::InStock,
    }
}

/// The catalog fields [`card`] reads: what the mobile BFF asks the
/// catalog for when it shows products as cards.
pub const CARD_FIELDS: &[&str] = &["id", "title", "price", "images"];

pub fn card(
    product: &catalog::Product,
    summary: Option<&reviews::ReviewSummary>,
    stock: Option<&ProductStock>,
    screen: &Screen,
) -> ProductCard {
    let price = product.price.clone().unwrap_or_default();
    ProductCard {
        id: product.id.clone(),
        title: trim_text(&product.title, CARD_TITLE_CHARS),
        price_minor: price.amount_minor,
        currency_code: price.currency_code,
        thumbnail_url: image_for(product.images.first(), THUMBNAIL_POINTS, screen),
        rating_tenths: summary.map_or(0, |s| rating_tenths(s.average_rating)),
        stock: stock_state(stock).into(),
    }
}

pub fn snippet(review: reviews::Review) -> ReviewSnippet {
    ReviewSnippet {
        author_name: review.author_name,
        rating: review.rating,
        text: trim_text(&review.body, 200),
    }
}

pub fn status(status: i32) -> OrderStatus {
    match orders::OrderStatus::try_from(status).unwrap_or_default() {
        orders::OrderStatus::Unspecified => OrderStatus::Unspecified,
        orders::OrderStatus::Placed => OrderStatus::Placed,
        orders::OrderStatus::Confirmed => OrderStatus::Confirmed,
        orders::OrderStatus::Packed => OrderStatus::Packed,
        orders::OrderStatus::Shipped => OrderStatus::Shipped,
        orders::OrderStatus::Delivered => OrderStatus::Delivered,
        orders::OrderStatus::Cancelled => OrderStatus::Cancelled,
    }
}

pub fn order(order: orders::Order) -> Order {
    let total = order.total.unwrap_or_default();
    Order {
        item_count: order.lines.iter().map(|l| l.quantity).sum(),
        id: order.id,
        status: status(order.status).into(),
        total_minor: total.amount_minor,
        currency_code: total.currency_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> catalog::Image {
        catalog::Image {
            alt_text: String::new(),
            variants: [2048, 160, 640, 320, 1280]
                .into_iter()
                .map(|width| catalog::ImageVariant {
                    url: format!("{width}w"),
                    width,
                    height: width,
                })
                .collect(),
        }
    }

    #[test]
    fn picks_the_smallest_image_that_is_sharp_on_the_screen() {
        let phone = screen_or_default(None, None);
        assert_eq!(image_for(Some(&image()), THUMBNAIL_POINTS, &phone), "320w");
        let old_phone = Screen {
            width_points: 320,
            density: 1.0,
        };
        assert_eq!(
            image_for(Some(&image()), THUMBNAIL_POINTS, &old_phone),
            "160w"
        );
        assert_eq!(image_for(Some(&image()), 390.0, &phone), "1280w");
        let tablet = Screen {
            width_points: 1024,
            density: 2.0,
        };
        assert_eq!(image_for(Some(&image()), 1024.0, &tablet), "2048w");
        assert_eq!(image_for(None, 96.0, &phone), "");
    }

    #[test]
    fn the_screen_comes_from_the_request_then_the_header_then_a_default() {
        let field = Screen {
            width_points: 768,
            density: 2.0,
        };
        assert_eq!(screen_or_default(Some(field), Some("320x1")), field);
        let header = screen_or_default(None, Some("320x1.5"));
        assert_eq!((header.width_points, header.density), (320, 1.5));
        let fallback = screen_or_default(None, Some("wide"));
        assert_eq!((fallback.width_points, fallback.density), (390, 3.0));
        assert_eq!(screen_or_default(None, Some("0x2")).width_points, 390);
    }

    #[test]
    fn trims_text_at_words_and_rounds_ratings_to_half_stars() {
        assert_eq!(trim_text("short", 40), "short");
        let trimmed = trim_text("Nordhavn Stoneware Coffee Mug, 350 ml, Matte Sage", 30);
        assert!(trimmed.chars().count() <= 30, "{trimmed}");
        assert_eq!(trimmed, "Nordhavn Stoneware Coffee Mug…");
        assert_eq!(rating_tenths(4.26), 45);
        assert_eq!(rating_tenths(4.24), 40);
        assert_eq!(rating_tenths(0.0), 0);
        assert_eq!(stock_state(None), StockState::Unspecified);
    }
}
