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

/// The client type a server or caller stands for, as every metric series
/// and server span labels it: `web-bff` (or `web`) is `web`, likewise
/// `mobile` and `partner`; anything else is `unknown`. On a BFF pass its
/// own name; on a downstream service, the calling BFF's
/// ([`CallingClient`]).
/// Every client type a call can be counted under: the three BFFs' and
/// `unknown` for any other caller.
pub const CLIENT_TYPES: [&str; 4] = ["web", "mobile", "partner", "unknown"];

pub fn client_type(server_or_caller: &str) -> &'static str {
    match server_or_caller
        .strip_suffix("-bff")
        .unwrap_or(server_or_caller)
    {
        "web" => "web",
        "mobile" => "mobile",
        "partner" => "partner",
        _ => "unknown",
    }
}

/// The OpenTelemetry context of a call: its server span, started by
/// [`crate::trace::TraceLayer`], as a request extension and in
/// [`CallContext::trace`]. Client spans of downstream calls and store spans
/// are its children.
#[derive(Debug, Clone, Default)]
pub struct TraceContext(pub opentelemetry::Context);

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
    /// The call's trace: its server span (an empty context when the call
    /// is not traced).
    pub trace: opentelemetry::Context,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    /// The context of the call being handled on this task, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The deadline of the call being handled on this task, if any,
    /// without copying the rest of its context.
    pub fn current_deadline() -> Option<Deadline> {
        CURRENT.try_with(|c| c.deadline).ok().flatten()
    }

    /// Runs `future` with this context as the current one. Futures joined
    /// inside it (not spawned) see it too, which is how parallel downstream
    /// calls of one screen all carry the same request id and deadline.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

#[cfg(test)]
mod tests {
    use super::client_type;

    #[test]
    fn client_types_come_from_bff_names() {
        assert_eq!(client_type("web-bff"), "web");
        assert_eq!(client_type("mobile-bff"), "mobile");
        assert_eq!(client_type("partner"), "partner");
        assert_eq!(client_type("catalog"), "unknown");
        assert_eq!(client_type(""), "unknown");
    }
}
