//! `tailor-mobile-example`: what a phone app does against the mobile BFF,
//! built on the stubs generated from `proto/`, printing the bytes each
//! screen cost on the wire (response bodies, compressed as the server sent
//! them).
//!
//! 1. The product list (20 cards, BASIC view: what a list row shows).
//! 2. The first product's screen, then the same screen again with the
//!    version the app holds: the answer is "unchanged".
//! 3. Placing an order whose response is lost on the way (the app never
//!    sees it), then the retry with the same idempotency key: the same
//!    order comes back, none is placed twice.
//! 4. Watching the order's status until it is final.

#![forbid(unsafe_code)]

mod counting;

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tailor_auth::{Claims, mint_hs256};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient;
use tailor_proto::mobile::v1::{
    GetProductPageRequest, ListProductsRequest, OrderLineInput, OrderStatus, PlaceOrderRequest,
    ProductView, Screen, WatchOrderRequest,
};
use tonic::codec::CompressionEncoding;

use crate::counting::{Counted, CountingChannel};

#[derive(Debug, Parser)]
#[command(name = "tailor-mobile-example", version)]
struct Args {
    /// Mobile BFF address.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    mobile: String,
    /// The signed-in user.
    #[arg(long, default_value = "phone-user")]
    user: String,
    /// HS256 secret to mint the user's token with (the BFFs' development
    /// secret unless set); a real app gets its token from the identity
    /// provider.
    #[arg(long, env = "TAILOR_JWT_HS256_SECRET", default_value = tailor_auth::DEVELOPMENT_JWT_SECRET, hide_default_value = true)]
    secret: String,
}

fn token(args: &Args) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: args.user.clone(),
        aud: "tailor-mobile".into(),
        exp: now + 3600,
        iat: now,
        iss: String::new(),
        scope: String::new(),
    };
    mint_hs256(args.secret.as_bytes(), &claims)
}

fn signed_in<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .expect("a JWT is a valid header value");
    request.metadata_mut().insert("authorization", value);
    request.set_timeout(Duration::from_secs(5));
    request
}

fn line(screen: &str, counted: &Counted, detail: &str) {
    println!("{screen:<38} {:>6} bytes   {detail}", counted.take());
}

async fn run(args: Args) -> Result<(), String> {
    let channel = tonic::transport::Endpoint::from_shared(args.mobile.clone())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.mobile))?;
    let (channel, counted) = CountingChannel::new(channel);
    let mut shop = ShopServiceClient::new(channel)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip);
    let token = token(&args);
    let phone = Some(Screen {
        width_points: 390,
        density: 3.0,
    });
    let status = |e: tonic::Status| format!("{:?}: {}", e.code(), e.message());

    let list = shop
        .list_products(ListProductsRequest {
            page_size: 20,
            screen: phone,
            view: ProductView::Basic.into(),
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner();
    let first = list.products.first().ok_or("the list is empty")?.clone();
    line(
        "list (20 cards, BASIC view)",
        &counted,
        &format!("{} cards, first: {}", list.products.len(), first.title),
    );

    let page_request = GetProductPageRequest {
        product_id: first.id.clone(),
        screen: phone,
        ..Default::default()
    };
    let page = shop
        .get_product_page(page_request.clone())
        .await
        .map_err(status)?
        .into_inner();
    line(
        "product screen",
        &counted,
        &format!(
            "{} reviews shown, stock {:?}, version {}{}",
            page.top_reviews.len(),
            page.stock(),
            page.version,
            not_available(&page.degraded_sections)
        ),
    );
    let again = shop
        .get_product_page(GetProductPageRequest {
            if_version: page.version.clone(),
            ..page_request
        })
        .await
        .map_err(status)?
        .into_inner();
    line(
        "product screen, reopened",
        &counted,
        if again.unchanged {
            "unchanged: the app shows what it has"
        } else {
            "changed: the app redraws"
        },
    );

    let key = format!(
        "{}-{}",
        args.user,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let order = || PlaceOrderRequest {
        idempotency_key: key.clone(),
        lines: vec![OrderLineInput {
            product_id: first.id.clone(),
            quantity: 1,
        }],
    };
    // The first answer is lost on the way: the order exists, the app does
    // not know. It retries with the same key.
    let lost = shop
        .place_order(signed_in(&token, order()))
        .await
        .map_err(status)?
        .into_inner()
        .order
        .ok_or("no order in the answer")?;
    counted.take();
    let placed = shop
        .place_order(signed_in(&token, order()))
        .await
        .map_err(status)?
        .into_inner()
        .order
        .ok_or("no order in the answer")?;
    if placed.id != lost.id {
        return Err(format!(
            "the retry placed a second order: {} and {}",
            lost.id, placed.id
        ));
    }
    line(
        "place order (retry after lost answer)",
        &counted,
        &format!("same order {}: placed once", placed.id),
    );

    let mut updates = shop
        .watch_order(signed_in(
            &token,
            WatchOrderRequest {
                order_id: placed.id.clone(),
            },
        ))
        .await
        .map_err(status)?
        .into_inner();
    let mut statuses = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), updates.message()).await {
            Ok(Ok(Some(update))) => statuses.push(update.status()),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(status(e)),
            Err(_) => break,
        }
        if matches!(
            statuses.last(),
            Some(OrderStatus::Delivered | OrderStatus::Cancelled)
        ) {
            break;
        }
    }
    let shown: Vec<String> = statuses.iter().map(|s| format!("{s:?}")).collect();
    line("order status (stream)", &counted, &shown.join(" -> "));
    Ok(())
}

/// What a screen says of the parts the BFF could not get: the app shows the
/// rest and names what is missing, instead of failing the screen.
fn not_available(sections: &[String]) -> String {
    if sections.is_empty() {
        String::new()
    } else {
        format!(" (not available right now: {})", sections.join(", "))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tailor-mobile-example: {error}");
            ExitCode::FAILURE
        }
    }
}
