//! A channel that counts the response body bytes it receives: what a phone
//! pays for on its data plan (message frames as sent, compressed or not).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::transport::Channel;

/// The bytes counted since the last [`Counted::take`].
#[derive(Debug, Clone, Default)]
pub struct Counted(Arc<AtomicU64>);

impl Counted {
    /// The count, reset to zero.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// [`Channel`] with counted responses.
#[derive(Debug, Clone)]
pub struct CountingChannel {
    inner: Channel,
    counted: Counted,
}

impl CountingChannel {
    /// Counts what arrives over `inner`.
    pub fn new(inner: Channel) -> (Self, Counted) {
        let counted = Counted::default();
        (
            Self {
                inner,
                counted: counted.clone(),
            },
            counted,
        )
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for CountingChannel {
    type Response = http::Response<CountingBody>;
    type Error = tonic::transport::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = self.inner.call(request);
        let counted = self.counted.clone();
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|inner| CountingBody { inner, counted }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that adds its data frames to a [`Counted`].
    pub struct CountingBody {
        #[pin]
        inner: tonic::body::Body,
        counted: Counted,
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.counted
                .0
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
