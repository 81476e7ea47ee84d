//! Rate limits and daily quotas per credential that hold across replicas:
//! the place of [`crate::limits`] (layer 14) when a BFF runs as
//! several processes.
//!
//! The in-process [`Limiter`](crate::limits::Limiter) counts
//! in memory, so two replicas would each admit a key's whole allowance.
//! [`SharedLimitLayer`] asks a [`SharedLimits`] store instead (the partner
//! BFF's key store on PostgreSQL keeps each key's bucket and day count in
//! one row, updated atomically), so all replicas together admit what one
//! process would. It takes the plan from the caller's identity as the
//! in-process layer does, refuses with the same statuses (RetryInfo,
//! QuotaFailure) and notes refusals for the access log the same way. A
//! call it cannot check (the store unreachable) is UNAVAILABLE: a limit
//! that cannot be checked is not waived.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::context::Identity;
use crate::limits::{Plan, Refusal};
use crate::{BoxFuture, HttpRequest, HttpResponse, status_response};
use tower::{Layer, Service};

/// A store of limit counts that every replica shares.
pub trait SharedLimits: Send + Sync + 'static {
    /// Takes one call for the key `key_id` on `plan`: `Ok(Ok(()))` when
    /// admitted, `Ok(Err(refusal))` when over a limit, `Err` when the store
    /// could not say (the text is for the log).
    fn take<'a>(
        &'a self,
        key_id: &'a str,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Result<(), Refusal>, String>>;
}

/// Adds [`SharedLimitService`] to a stack, after authentication.
#[derive(Clone)]
pub struct SharedLimitLayer {
    plans: Arc<HashMap<String, Plan>>,
    limits: Arc<dyn SharedLimits>,
}

impl std::fmt::Debug for SharedLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimitLayer")
            .field("plans", &self.plans)
            .finish()
    }
}

impl SharedLimitLayer {
    /// Limits keys on the `plans` their identities name (others are not
    /// limited), counting in `limits`.
    pub fn new(plans: HashMap<String, Plan>, limits: Arc<dyn SharedLimits>) -> Self {
        Self {
            plans: Arc::new(plans),
            limits,
        }
    }
}

impl<S> Layer<S> for SharedLimitLayer {
    type Service = SharedLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SharedLimitService {
            inner,
            plans: self.plans.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct SharedLimitService<S> {
    inner: S,
    plans: Arc<HashMap<String, Plan>>,
    limits: Arc<dyn SharedLimits>,
}

impl<S> std::fmt::Debug for SharedLimitService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimitService").finish()
    }
}

impl<S> Service<HttpRequest> for SharedLimitService<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let limited = request.extensions().get::<Identity>().and_then(|identity| {
            let key = identity.key_id.clone()?;
            let plan_name = identity.plan.clone()?;
            let plan = *self.plans.get(&plan_name)?;
            Some((key, plan_name, plan))
        });
        let Some((key, plan_name, plan)) = limited else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service answers this call; a fresh clone waits for the
        // next (tower's rule for calling after an await).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let limits = self.limits.clone();
        Box::pin(async move {
            match limits.take(&key, &plan).await {
                Ok(Ok(())) => inner.call(request).await,
                Ok(Err(refusal)) => {
                    if let Some(notes) = request.extensions().get::<crate::access_log::CallNotes>()
                    {
                        notes.record_refusal(&plan_name, refusal.limit());
                    }
                    Ok(status_response(
                        refusal.status("this API key", &format!("api-key:{key}")),
                    ))
                }
                Err(error) => {
                    tracing::error!(%error, "checking a key's limits failed");
                    Ok(status_response(tonic::Status::unavailable(
                        "limits cannot be checked now; retry shortly",
                    )))
                }
            }
        })
    }
}
