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
pub mod background;
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

/// What the handlers and middleware share: one `Arc`, since the router
/// clones its state for every request.
#[derive(Clone)]
pub struct ApiState(Arc<ApiShared>);

impl std::ops::Deref for ApiState {
    type Target = ApiShared;

    fn deref(&self) -> &ApiShared {
        &self.0
    }
}

/// The parts of [`ApiState`].
pub struct ApiShared {
    /// The session manager.
    pub manager: Arc<SessionManager>,
    /// Checks the callers' tokens.
    pub authenticator: Arc<Authenticator>,
    /// The `/start` rate limits.
    pub limiter: Arc<StartLimiter>,
    /// Refusals of starts run in the background, for their event streams.
    pub background: Arc<background::BackgroundOutcomes>,
}

impl ApiState {
    /// The state for a host with `config`, acting through `manager`.
    pub fn new(
        manager: Arc<SessionManager>,
        authenticator: Arc<Authenticator>,
        config: &Config,
    ) -> ApiState {
        ApiState(Arc::new(ApiShared {
            manager,
            authenticator,
            limiter: Arc::new(StartLimiter::new(&config.limits)),
            background: Arc::default(),
        }))
    }
}

impl FromRef<ApiState> for Arc<SessionManager> {
    fn from_ref(state: &ApiState) -> Self {
        state.manager.clone()
    }
}

/// What the one middleware around every request needs.
struct Frame {
    manager: Arc<SessionManager>,
    authenticator: Arc<Authenticator>,
    time_limit: Duration,
}

/// The API's routes. Around them, in one middleware (one layer costs a
/// clone of the routes' service and a boxed future per request, so four
/// layers cost four), from the outside in: the request id
/// ([`request_id`]), the response counter ([`count_responses`]), the
/// request time limit ([`limit_time`]) and the token check
/// ([`auth::authenticate`]); then the body size limit.
pub fn router(state: ApiState, config: &Config) -> Router {
    let frame = Arc::new(Frame {
        manager: state.manager.clone(),
        authenticator: state.authenticator.clone(),
        time_limit: config.request_timeout(),
    });
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
            frame,
            around_every_request,
        ))
        .with_state(state)
}

/// The one middleware: see [`router`].
async fn around_every_request(
    axum::extract::State(frame): axum::extract::State<Arc<Frame>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    request_id::assign(request, |request| {
        count_responses(&frame.manager, request, |request| {
            limit_time(
                frame.time_limit,
                auth::authenticate(&frame.authenticator, request, next),
            )
        })
    })
    .await
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
    limit: Duration,
    handling: impl std::future::Future<Output = axum::response::Response>,
) -> axum::response::Response {
    match tokio::time::timeout(limit, handling).await {
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
async fn count_responses<F, Fut>(
    manager: &SessionManager,
    request: axum::extract::Request,
    inner: F,
) -> axum::response::Response
where
    F: FnOnce(axum::extract::Request) -> Fut,
    Fut: std::future::Future<Output = axum::response::Response>,
{
    let started = std::time::Instant::now();
    let endpoint = endpoint_of(request.uri().path());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = inner(request).await;
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
