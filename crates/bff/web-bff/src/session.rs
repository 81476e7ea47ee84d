//! `tailor.web.v1.SessionService`: browser sign-in with an HttpOnly cookie.

use std::sync::Arc;

use tailor_auth::{CookiePolicy, caller, hash_session_handle, session_handle};
use tailor_interceptors::error::internal;
use tailor_proto::web::v1::session_service_server::SessionService;
use tailor_proto::web::v1::{
    GetSessionRequest, GetSessionResponse, Session, SignInRequest, SignInResponse, SignOutRequest,
    SignOutResponse,
};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::accounts::{self, Accounts};
use crate::throttle::{SignInLimits, SignInThrottle};

/// Longest user name and password a sign-in may present.
const MAX_USERNAME_CHARS: usize = 64;
const MAX_PASSWORD_BYTES: usize = 1024;

/// Sign-in, sign-out and "who am I" for the browser app.
#[derive(Debug, Clone)]
pub struct WebSessions {
    accounts: Accounts,
    cookie: CookiePolicy,
    throttle: Arc<SignInThrottle>,
}

impl WebSessions {
    /// Sessions in `accounts`, cookies set as `cookie` says, sign-in
    /// attempts limited per user name and per client address as `limits`
    /// say ([`crate::throttle`]), counted where `accounts` keeps its data.
    pub fn new(accounts: Accounts, cookie: CookiePolicy, limits: SignInLimits) -> Self {
        Self {
            throttle: Arc::new(SignInThrottle::for_accounts(limits, &accounts)),
            accounts,
            cookie,
        }
    }

    fn with_cookie<T>(&self, message: T, value: &str) -> Result<Response<T>, Status> {
        let mut response = Response::new(message);
        let value = MetadataValue::try_from(value).map_err(internal)?;
        response.metadata_mut().insert("set-cookie", value);
        Ok(response)
    }
}

fn shape(session: accounts::Session) -> Session {
    Session {
        user_id: session.user.user_id,
        display_name: session.user.display_name,
        expire_time: Some(prost_types::Timestamp {
            seconds: session.expires_at,
            nanos: 0,
        }),
    }
}

/// The hash of the session handle in the call's cookie.
fn presented_handle(metadata: &MetadataMap) -> Option<[u8; 32]> {
    let headers = metadata.clone().into_headers();
    session_handle(&headers).map(hash_session_handle)
}

#[tonic::async_trait]
impl SessionService for WebSessions {
    async fn sign_in(
        &self,
        request: Request<SignInRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        let address = request.remote_addr().map(|a| a.ip());
        let SignInRequest { username, password } = request.into_inner();
        if username.is_empty() || password.is_empty() {
            return Err(Status::invalid_argument(
                "username and password are required",
            ));
        }
        // Checked before any limiter entry or password hashing is spent on
        // them: names are at most 64 characters when users are added.
        if username.chars().count() > MAX_USERNAME_CHARS {
            return Err(Status::invalid_argument(format!(
                "username must be at most {MAX_USERNAME_CHARS} characters"
            )));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Status::invalid_argument(format!(
                "password must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let account = username.to_lowercase();
        self.throttle.admit(&account, address).await?;
        let hashing = self.throttle.hashing_slot().await?;
        let verified = self.accounts.verify(&username, &password).await;
        drop(hashing);
        let user = verified
            .map_err(internal)?
            .ok_or_else(|| Status::unauthenticated("wrong user name or password"))?;
        self.throttle.signed_in(&account, address).await;
        let (handle, session) = self.accounts.start_session(user).await.map_err(internal)?;
        tracing::info!(user = %session.user.user_id.escape_debug(), "signed in");
        self.with_cookie(
            SignInResponse {
                session: Some(shape(session)),
            },
            &self.cookie.set(&handle),
        )
    }

    async fn sign_out(
        &self,
        request: Request<SignOutRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        if let Some(hash) = presented_handle(request.metadata()) {
            self.accounts.end_session(hash).await.map_err(internal)?;
        }
        self.with_cookie(SignOutResponse {}, &self.cookie.clear())
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        caller(&request)?;
        let no_session = || Status::unauthenticated("no browser session: sign in first");
        let hash = presented_handle(request.metadata()).ok_or_else(no_session)?;
        let session = self
            .accounts
            .session(hash)
            .await
            .map_err(internal)?
            .ok_or_else(no_session)?;
        Ok(Response::new(GetSessionResponse {
            session: Some(shape(session)),
        }))
    }
}
