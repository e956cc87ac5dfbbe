//! The API's gate: every request but `/healthz` and `/openapi.json` shows a
//! bearer token, which becomes the request's [`Caller`]; handlers then
//! check that the caller may act on the user it names.

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::server::client_address;
use crate::auth::{AuthError, Authenticator, Caller};
use crate::ids::UserId;

/// Paths anyone may read: load balancers' health checks and the API's own
/// description.
const PUBLIC_PATHS: [&str; 2] = ["/healthz", "/openapi.json"];

/// The client's IP address, as the TCP peer (a load balancer's, when behind
/// one), in every authenticated request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

/// Lets a request through with its [`Caller`] (and [`ClientAddr`]) in its
/// extensions, or
/// answers 401 (no, malformed, expired or badly signed token) or 403
/// (`/metrics` without an operator token where one is needed).
pub async fn authenticate(
    authenticator: &Authenticator,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let metrics = path == "/metrics";
    let peer = client_address(&request).map(|address| address.ip());
    if metrics && authenticator.metrics_open_to(peer) {
        return next.run(request).await;
    }
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let caller = match authenticator.authenticate(authorization) {
        Ok(caller) => caller,
        Err(error) => {
            if let AuthError::Invalid(reason) = &error {
                tracing::info!(event = "auth.refused", %reason, path, "a request's token was refused");
            }
            return ApiError::from(error).into_response();
        }
    };
    if metrics && !caller.is_operator() {
        return ApiError::from(AuthError::Forbidden(
            "/metrics needs an operator token".to_string(),
        ))
        .into_response();
    }
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(ClientAddr(peer));
    next.run(request).await
}

/// Checks that `caller` may act on `user`'s session: 403 if not.
pub fn authorize(caller: &Caller, user: &UserId) -> Result<(), ApiError> {
    if caller.may_act_on(user) {
        Ok(())
    } else {
        Err(AuthError::Forbidden(format!(
            "this token may act on its own user only, not on {user}"
        ))
        .into())
    }
}

/// Checks that `caller` may use the operators' endpoints (`/sessions`): 403
/// for a user token. With authentication off, anyone may.
pub fn require_operator(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(AuthError::Forbidden(format!("{what} needs an operator token")).into())
    }
}
