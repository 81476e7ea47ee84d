//! The catalogue feed: a server stream that fetches one catalogue page at a
//! time, only when the client has taken the previous one, so a slow reader
//! never makes the BFF hold the catalogue in memory. Every message carries a
//! cursor (the catalogue page token the message's page was fetched with,
//! plus the position within that page) from which a new feed resumes right
//! after that product.

use std::collections::VecDeque;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::Stream;
use tailor_interceptors::{CallContext, input};
use tailor_proto::catalog::v1::{ListProductsRequest, Product};
use tailor_proto::partner::v1::{FeedProduct, StreamCatalogFeedResponse};
use tailor_screens::Downstreams;
use tonic::{Code, Status};

/// Products fetched per downstream page.
const FEED_PAGE_SIZE: i32 = 100;

/// Where a feed starts: a catalogue page token and how many of that page's
/// products were already delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    page_token: String,
    delivered: usize,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.delivered, self.page_token))
    }

    fn decode(text: &str) -> Result<Cursor, Status> {
        let invalid = || Status::invalid_argument("invalid cursor");
        if text.is_empty() {
            return Ok(Cursor {
                page_token: String::new(),
                delivered: 0,
            });
        }
        input::token("cursor", text)?;
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (delivered, page_token) = text.split_once('|').ok_or_else(invalid)?;
        Ok(Cursor {
            delivered: delivered.parse().map_err(|_| invalid())?,
            page_token: page_token.to_owned(),
        })
    }
}

fn feed_product(product: Product) -> FeedProduct {
    let price = product.price.unwrap_or_default();
    FeedProduct {
        image_urls: product
            .images
            .iter()
            .filter_map(|image| image.variants.iter().max_by_key(|v| v.width))
            .map(|v| v.url.clone())
            .collect(),
        id: product.id,
        sku: product.sku,
        title: product.title,
        brand: product.brand,
        category_id: product.category_id,
        description: product.description,
        price_minor: price.amount_minor,
        currency_code: price.currency_code,
        update_time: product.update_time,
    }
}

struct FeedState {
    downstreams: Downstreams,
    context: CallContext,
    updated_since: Option<prost_types::Timestamp>,
    /// The token of the next page to fetch; `None` after the last page.
    next: Option<Cursor>,
    buffered: VecDeque<StreamCatalogFeedResponse>,
    first_fetch: bool,
}

impl FeedState {
    async fn fetch(&mut self, cursor: Cursor) -> Result<(), Status> {
        let request = ListProductsRequest {
            page_size: FEED_PAGE_SIZE,
            page_token: cursor.page_token.clone(),
            updated_since: self.updated_since,
            ..Default::default()
        };
        let mut catalog = self.downstreams.catalog.clone();
        // The stream is polled outside the handler, so the call's context
        // is re-entered for each page.
        let page = self
            .context
            .clone()
            .scope(catalog.list_products(request))
            .await
            .map_err(|status| {
                if self.first_fetch && status.code() == Code::InvalidArgument {
                    Status::invalid_argument(
                        "invalid cursor: it must come from a feed with the same updated_since",
                    )
                } else {
                    status
                }
            })?
            .into_inner();
        self.first_fetch = false;
        for (index, product) in page.products.into_iter().enumerate() {
            if index < cursor.delivered {
                continue;
            }
            let resume = Cursor {
                page_token: cursor.page_token.clone(),
                delivered: index + 1,
            };
            self.buffered.push_back(StreamCatalogFeedResponse {
                product: Some(feed_product(product)),
                cursor: resume.encode(),
            });
        }
        self.next = (!page.next_page_token.is_empty()).then_some(Cursor {
            page_token: page.next_page_token,
            delivered: 0,
        });
        Ok(())
    }
}

/// The feed from `cursor` on.
pub fn catalog_feed(
    downstreams: Downstreams,
    cursor: &str,
    updated_since: Option<prost_types::Timestamp>,
) -> Result<impl Stream<Item = Result<StreamCatalogFeedResponse, Status>> + Send + 'static, Status>
{
    let state = FeedState {
        downstreams,
        context: CallContext::current().unwrap_or_default(),
        updated_since,
        next: Some(Cursor::decode(cursor)?),
        buffered: VecDeque::new(),
        first_fetch: true,
    };
    Ok(futures_util::stream::try_unfold(
        state,
        |mut state| async move {
            loop {
                if let Some(message) = state.buffered.pop_front() {
                    return Ok(Some((message, state)));
                }
                let Some(cursor) = state.next.take() else {
                    return Ok(None);
                };
                state.fetch(cursor).await?;
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            page_token: "MXwwMDAwfHByb2Qt".into(),
            delivered: 37,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert_eq!(Cursor::decode("").unwrap().delivered, 0);
        for bad in ["!!!", "bm8tc2VwYXJhdG9y", "eHx5"] {
            assert_eq!(
                Cursor::decode(bad).unwrap_err().code(),
                Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
