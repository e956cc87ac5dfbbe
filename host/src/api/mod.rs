//! The HTTP API: routes, handlers and the error shape.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/start` | `{userId, projectPath}` | the session, `reused` |
//! | POST | `/stop` | `{userId}` | `{userId, status, stopped}` |
//! | POST | `/heartbeat` | `{userId}` | the session |
//! | GET | `/status/{userId}` | | the session or status `none` |
//! | GET | `/sessions?status=&limit=&cursor=` | | a page of sessions (operators) |
//! | POST | `/sessions/{userId}/extend` | | the session (operators) |
//! | GET | `/healthz` | | store health |
//! | GET | `/metrics` | | metrics, Prometheus or OpenMetrics text format |
//! | GET | `/openapi.json` | | this API as an OpenAPI 3.1 document |
//!
//! Every endpoint but `/healthz` (and `/openapi.json`) needs a bearer token
//! (see [`crate::auth`]).

pub mod auth;
pub mod error;
pub mod events;
pub mod handlers;
pub mod model;
pub mod openapi;
pub mod rate;
pub mod request_id;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, MatchedPath};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::{FoundBy, UNMATCHED_ROUTE};
use crate::session::SessionManager;

pub use error::{ApiError, ErrorCode};
use rate::StartLimiter;

/// What the handlers and middleware share.
#[derive(Clone)]
pub struct ApiState {
    /// The session manager.
    pub manager: Arc<SessionManager>,
    /// Checks the callers' tokens.
    pub authenticator: Arc<Authenticator>,
    /// The `/start` rate limits.
    pub limiter: Arc<StartLimiter>,
    /// Refusals of starts run in the background, for their event streams.
    pub background: Arc<events::BackgroundOutcomes>,
}

impl ApiState {
    /// The state for a host with `config`, acting through `manager`.
    pub fn new(
        manager: Arc<SessionManager>,
        authenticator: Arc<Authenticator>,
        config: &Config,
    ) -> ApiState {
        ApiState {
            manager,
            authenticator,
            limiter: Arc::new(StartLimiter::new(&config.limits)),
            background: Arc::default(),
        }
    }
}

impl FromRef<ApiState> for Arc<SessionManager> {
    fn from_ref(state: &ApiState) -> Self {
        state.manager.clone()
    }
}

/// The API's routes. Layers, from the outside in: the request id, the
/// response counter, the request time limit, the token check, the body
/// size limit.
pub fn router(state: ApiState, config: &Config) -> Router {
    Router::new()
        .route("/start", post(handlers::start))
        .route("/stop", post(handlers::stop))
        .route("/heartbeat", post(handlers::heartbeat))
        .route("/status/{userId}", get(handlers::status))
        .route("/sessions/{userId}/events", get(events::events))
        .route("/sessions", get(handlers::list_sessions))
        .route("/sessions/{userId}/extend", post(handlers::extend))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            config.http.body_limit_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.authenticator.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout(),
            limit_time,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.manager.clone(),
            count_responses,
        ))
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// A path the API does not have: 404 in the one error shape.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint at {}", uri.path()),
    )
}

/// A method the path does not take: 405 in the one error shape.
async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this endpoint does not take {method}"),
    )
}

/// Answers 408 when a request (reading its body included) takes longer
/// than `http.request_timeout`.
async fn limit_time(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::request_timeout(limit).into_response(),
    }
}

/// Counts every answer by endpoint and status code
/// (`vessel_api_responses_total`), so that outages and driver failures show
/// in `/metrics` and not only in logs, and times it by route template
/// (`vessel_http_request_duration_seconds`). The route is the template the
/// router matched (`/status/{userId}`), never the path, so user ids and
/// arbitrary paths cannot become label values.
async fn count_responses(
    axum::extract::State(manager): axum::extract::State<Arc<SessionManager>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let endpoint = endpoint_of(request.uri().path());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let metrics = manager.metrics();
    metrics.count_response(endpoint, status);
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    metrics.observe_request(route, status, started.elapsed());
    if response.extensions().get::<ErrorCode>() == Some(&ErrorCode("corrupt_record")) {
        metrics.count_corrupt_record(FoundBy::Api);
    }
    response
}

/// The endpoint a path belongs to, without the user id, so that the number
/// of label values stays fixed.
fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/start" => "start",
        "/stop" => "stop",
        "/heartbeat" => "heartbeat",
        "/healthz" => "healthz",
        "/metrics" => "metrics",
        "/sessions" => "sessions",
        _ if path.starts_with("/status/") => "status",
        _ if path.starts_with("/sessions/") && path.ends_with("/extend") => "extend",
        _ => "other",
    }
}
