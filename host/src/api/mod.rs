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

pub use error::ApiError;

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
        .with_state(manager)
}
