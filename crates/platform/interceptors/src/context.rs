//! The context of one call, as the layers establish it for the handler and
//! for every downstream call the handler makes.

use std::time::Instant;

/// Who is calling, as authentication established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (JWT `sub`) or `partner:<tenant>` for an API key.
    pub subject: String,
    /// The partner tenant, for API keys.
    pub tenant: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// How the caller proved it.
    pub method: AuthMethod,
    /// The credential's own id (an API key's id), which rate limits and
    /// quotas are kept by.
    pub key_id: Option<String>,
    /// The credential's plan, which decides its limits.
    pub plan: Option<String>,
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT bearer token.
    Bearer,
    /// A partner API key.
    ApiKey,
    /// A session established by the server (for example a web cookie).
    Session,
    /// Signed by the BFF that called, for the user it called for (on a
    /// downstream service).
    Delegated,
}

impl AuthMethod {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Session => "session",
            AuthMethod::Delegated => "delegated",
        }
    }
}

impl Identity {
    /// Whether the identity holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// On a downstream service: the BFF that called, as its client
/// certificate names it (`web-bff`), as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallingClient(pub String);

/// The request id of a call (`x-request-id`), as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The instant a call must be answered by, from its `grpc-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// What is left of it now, zero once passed.
    pub fn remaining(&self) -> std::time::Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Everything a handler's downstream calls must carry on: set for the
/// duration of a call by [`crate::propagate::ContextLayer`], read by
/// `tailor_channel::Outbound`.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The request id.
    pub request_id: Option<String>,
    /// The deadline.
    pub deadline: Option<Deadline>,
    /// The authenticated caller: on a BFF, the client; on a downstream
    /// service, the user the calling BFF signed for.
    pub identity: Option<Identity>,
    /// On a downstream service: the BFF that called.
    pub calling_client: Option<String>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    /// The context of the call being handled on this task, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with this context as the current one. Futures joined
    /// inside it (not spawned) see it too, which is how parallel downstream
    /// calls of one screen all carry the same request id and deadline.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}
