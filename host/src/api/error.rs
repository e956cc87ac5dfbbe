//! The API's one error type and its JSON shape:
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ids::InvalidUserId;
use crate::session::SessionError;
use crate::store::StoreError;

/// The code of an error answer, kept in the response's extensions so that
/// middleware (the metrics) can see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// An API error: a status code, a stable machine-readable code, and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code, e.g. `invalid_user_id`.
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// The answer to a request the host cut off at the end of its shutdown
    /// grace: 503, so the caller retries (on another host, or this one once
    /// it is back). A start cut off this way is finished or undone by
    /// whichever host takes over its lease.
    pub fn shutting_down(grace: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            format!(
                "this host is shutting down and could not finish the request within its \
                 {grace:?} grace; retry it"
            ),
        )
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        )
    }
}

impl From<InvalidUserId> for ApiError {
    fn from(error: InvalidUserId) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_user_id",
            error.to_string(),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                error.to_string(),
            ),
            StoreError::Corrupt { .. } => {
                tracing::warn!(event = "record.corrupt", %error, "refused to act on a corrupt session record");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_record",
                    error.to_string(),
                )
            }
            StoreError::Backend(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                error.to_string(),
            ),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let message = error.to_string();
        match error {
            SessionError::InvalidInput(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_project_path", message)
            }
            SessionError::NoSession(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_session", message)
            }
            SessionError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            SessionError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            SessionError::Driver(plugin_error) if plugin_error.is_timeout() => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            SessionError::Driver(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "driver_error", message)
            }
            SessionError::Store(store_error) => store_error.into(),
        }
    }
}
