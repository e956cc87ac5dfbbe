//! The HTTP API: routes, handlers and the error shape.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/start` | `{userId, projectPath}` | the session, `reused` |
//! | POST | `/stop` | `{userId}` | `{userId, status, stopped}` |
//! | POST | `/heartbeat` | `{userId}` | the session |
//! | GET | `/status/{userId}` | | the session or status `none` |
//! | GET | `/healthz` | | store health |
//! | GET | `/metrics` | | counters, Prometheus text format |

pub mod error;
pub mod handlers;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::session::SessionManager;

pub use error::{ApiError, ErrorCode};

/// The largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API's routes over `manager`.
pub fn router(manager: Arc<SessionManager>) -> Router {
    Router::new()
        .route("/start", post(handlers::start))
        .route("/stop", post(handlers::stop))
        .route("/heartbeat", post(handlers::heartbeat))
        .route("/status/{user_id}", get(handlers::status))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            manager.clone(),
            count_responses,
        ))
        .with_state(manager)
}

/// Counts every answer by endpoint and status code
/// (`vessel_api_responses_total`), so that outages and driver failures show
/// in `/metrics` and not only in logs.
async fn count_responses(
    axum::extract::State(manager): axum::extract::State<Arc<SessionManager>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let endpoint = endpoint_of(request.uri().path());
    let response = next.run(request).await;
    let labels = format!(
        "endpoint=\"{endpoint}\",status=\"{}\"",
        response.status().as_u16()
    );
    manager
        .metrics()
        .incr("vessel_api_responses_total", &labels);
    if response.extensions().get::<ErrorCode>() == Some(&ErrorCode("corrupt_record")) {
        manager
            .metrics()
            .incr("vessel_corrupt_records_total", r#"found_by="api""#);
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
        _ if path.starts_with("/status/") => "status",
        _ => "other",
    }
}
