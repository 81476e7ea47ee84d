//! In-process downstream services for the screens' unit tests: each answers
//! the methods it is given with a fixed message or status and records
//! which methods were called, behind the same error naming the real
//! channels use.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tailor_channel::NamedChannel;
use tailor_interceptors::{HttpRequest, HttpResponse, status_response};
use tonic::Status;

use crate::Downstreams;

/// One downstream service's canned answers.
#[derive(Clone, Default)]
pub struct FakeService {
    answers: Arc<HashMap<String, Result<Bytes, Status>>>,
    hangs: Arc<HashSet<String>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FakeService {
    /// Answers `method` (`/pkg.Service/Method`) with `message`.
    pub fn answer(mut self, method: &str, message: impl prost::Message) -> Self {
        Arc::make_mut(&mut self.answers).insert(method.into(), Ok(message.encode_to_vec().into()));
        self
    }

    /// Fails `method` with `status`.
    pub fn fail(mut self, method: &str, status: Status) -> Self {
        Arc::make_mut(&mut self.answers).insert(method.into(), Err(status));
        self
    }

    /// Never answers `method`, like a service that stopped responding.
    pub fn hang(mut self, method: &str) -> Self {
        Arc::make_mut(&mut self.hangs).insert(method.into());
        self
    }

    /// The methods called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl tower::Service<HttpRequest> for FakeService {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let method = request.uri().path().to_owned();
        self.calls.lock().unwrap().push(method.clone());
        if self.hangs.contains(&method) {
            return Box::pin(std::future::pending());
        }
        let response = match self.answers.get(&method) {
            Some(Ok(message)) => {
                let mut frame = Vec::with_capacity(message.len() + 5);
                frame.push(0);
                frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
                frame.extend_from_slice(message);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let frames = futures_util::stream::iter([
                    Ok::<_, Status>(Frame::data(Bytes::from(frame))),
                    Ok(Frame::trailers(trailers)),
                ]);
                let mut response = http::Response::new(tonic::body::Body::new(
                    http_body_util::StreamBody::new(frames),
                ));
                response
                    .headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
                response
            }
            Some(Err(status)) => status_response(status.clone()),
            None => status_response(Status::unimplemented(method)),
        };
        Box::pin(std::future::ready(Ok(response)))
    }
}

/// The four services, each behind a channel named like the real one.
#[derive(Clone, Default)]
pub struct FakeDownstreams {
    pub catalog: FakeService,
    pub inventory: FakeService,
    pub reviews: FakeService,
    pub orders: FakeService,
}

impl FakeDownstreams {
    /// Clients over the fakes.
    pub fn clients(&self) -> Downstreams<NamedChannel<FakeService>> {
        Downstreams::over(
            NamedChannel::new("catalog", self.catalog.clone()),
            NamedChannel::new("inventory", self.inventory.clone()),
            NamedChannel::new("reviews", self.reviews.clone()),
            NamedChannel::new("orders", self.orders.clone()),
        )
    }
}
