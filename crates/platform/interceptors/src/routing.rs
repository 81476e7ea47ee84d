//! Routing to a known method before anything asks who is calling: a
//! misspelled method is UNIMPLEMENTED for everyone, not UNAUTHENTICATED for
//! those without credentials. The set of methods comes from the contracts
//! of the services a server serves, so it cannot drift from the routes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use tonic::Status;
use tower::{Layer, Service};

use crate::{HttpRequest, HttpResponse, status_response};

/// The full paths (`/pkg.Service/Method`) of every method of `services`
/// (full names, `pkg.Service`) in an encoded `FileDescriptorSet`.
pub fn methods_of(encoded_set: &[u8], services: &[&str]) -> HashSet<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded_set) else {
        return HashSet::new();
    };
    let mut methods = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            let full_name = format!("{}.{}", file.package(), service.name());
            if !services.contains(&full_name.as_str()) {
                continue;
            }
            for method in &service.method {
                methods.insert(format!("/{full_name}/{}", method.name()));
            }
        }
    }
    methods
}

/// Adds [`KnownMethods`] to a stack.
#[derive(Debug, Clone)]
pub struct RoutingLayer {
    methods: Arc<HashSet<String>>,
}

impl RoutingLayer {
    /// Admits calls to `methods` (full paths) and to health and reflection.
    pub fn new(methods: HashSet<String>) -> Self {
        Self {
            methods: Arc::new(methods),
        }
    }
}

impl<S> Layer<S> for RoutingLayer {
    type Service = KnownMethods<S>;
    fn layer(&self, inner: S) -> Self::Service {
        KnownMethods {
            inner,
            methods: self.methods.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct KnownMethods<S> {
    inner: S,
    methods: Arc<HashSet<String>>,
}

impl<S> Service<HttpRequest> for KnownMethods<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let path = request.uri().path();
        if self.methods.contains(path) || crate::is_probe(path) {
            return Box::pin(self.inner.call(request));
        }
        let shown: String = path.chars().take(200).collect();
        let status = Status::unimplemented(format!("method {shown:?} is not served here"));
        Box::pin(async move { Ok(status_response(status)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_methods_of_the_named_services_only() {
        use prost_types::{
            FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto, ServiceDescriptorProto,
        };
        let service = |name: &str, methods: &[&str]| ServiceDescriptorProto {
            name: Some(name.into()),
            method: methods
                .iter()
                .map(|m| MethodDescriptorProto {
                    name: Some((*m).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                package: Some("shop.v1".into()),
                service: vec![
                    service("Shop", &["Get", "Put"]),
                    service("Admin", &["Wipe"]),
                ],
                ..Default::default()
            }],
        };
        let mut methods: Vec<_> = methods_of(&set.encode_to_vec(), &["shop.v1.Shop"])
            .into_iter()
            .collect();
        methods.sort();
        assert_eq!(methods, ["/shop.v1.Shop/Get", "/shop.v1.Shop/Put"]);
    }
}
