//! The API's one error type and its JSON shape:
//! `{"error": {"code": "...", "message": "..."}}`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::model::{ErrorDetail, ErrorResponse};
use crate::auth::AuthError;
use crate::ids::InvalidUserId;
use crate::session::SessionError;
use crate::store::StoreError;

/// How long a caller turned away at capacity is asked to wait: about as
/// long as it takes the Reaper and stops to free a place.
const CAPACITY_RETRY_AFTER: Duration = Duration::from_secs(30);

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
    /// A header the answer carries (`WWW-Authenticate`, `Retry-After`).
    pub header: Option<(HeaderName, HeaderValue)>,
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

    /// 429: the caller asked too often, or the fleet is full; retry after
    /// `retry_after`.
    pub fn too_many(code: &'static str, message: String, retry_after: Duration) -> ApiError {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            .with_header(header::RETRY_AFTER, &seconds.to_string())
    }

    /// 408: the request took longer than `http.request_timeout`.
    pub fn request_timeout(limit: Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {limit:?}"),
        )
    }

    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.header = Some((name, value));
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                request_id: super::request_id::current(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than http.body_limit_bytes allows",
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            rejection.body_text(),
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        match error {
            AuthError::Missing => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                .with_header(header::WWW_AUTHENTICATE, r#"Bearer realm="vessel""#),
            AuthError::Invalid(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", message).with_header(
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="vessel", error="invalid_token""#,
                )
            }
            AuthError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
        }
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
            SessionError::InvalidPolicy(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", message)
            }
            SessionError::ProjectTooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "project_too_large", message)
            }
            SessionError::NoSession(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_session", message)
            }
            SessionError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            SessionError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            SessionError::Driver(plugin_error) => {
                // The details (a driver's own words, a tool's standard error,
                // a trap's backtrace) go to the log, under the request's id;
                // the caller gets what failed and how.
                tracing::warn!(event = "driver.error", error = %message, "a driver call failed");
                let short = format!(
                    "{}; the details are in the host's log under this request's id",
                    plugin_error.summary()
                );
                if plugin_error.is_timeout() {
                    ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", short)
                } else {
                    ApiError::new(StatusCode::BAD_GATEWAY, "driver_error", short)
                }
            }
            SessionError::AtCapacity(_) => {
                ApiError::too_many("at_capacity", message, CAPACITY_RETRY_AFTER)
            }
            SessionError::StarterAtCapacity(_) => {
                ApiError::too_many("token_at_capacity", message, CAPACITY_RETRY_AFTER)
            }
            SessionError::Store(store_error) => store_error.into(),
        }
    }
}
