//! What the layers' unit tests share.

use std::convert::Infallible;
use std::sync::Arc;

use tonic::Status;
use tower::Service;

use crate::{HttpRequest, HttpResponse, status_response};

/// A handler that answers OK once `release` is notified.
pub(crate) fn slow(
    release: Arc<tokio::sync::Notify>,
) -> impl Service<HttpRequest, Response = HttpResponse, Error = Infallible, Future = impl Send + 'static>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |_request: HttpRequest| {
        let release = release.clone();
        async move {
            release.notified().await;
            Ok::<_, Infallible>(status_response(Status::ok("")))
        }
    })
}
