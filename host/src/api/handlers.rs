//! The request handlers, one per endpoint.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::ApiState;
use super::auth::{ClientAddr, authorize, require_operator};
use super::error::ApiError;
use super::model::{
    ErrorResponse, Health, HealthState, InvalidSession, ListQuery, SessionList, SessionView,
    StartAccepted, StartRequest, StartResponse, StopResponse, StopState, StoreHealth, UserRequest,
};
use super::rate::Exceeded;
use crate::auth::Caller;
use crate::ids::UserId;
use crate::metrics::{Format, StartResult};
use crate::session::listing::{self, Cursor};
use crate::session::{SessionManager, Stopped};
use crate::store::SessionStatus;

type Manager = State<Arc<SessionManager>>;

/// The user's running session, or a new one.
///
/// A hit (the session runs) answers at once with `reused: true`. Otherwise
/// the VM is created, the project copied in and the route added; any
/// failure is rolled back. Concurrent starts for one user, on any host,
/// make one VM and get the same session.
#[utoipa::path(
    post,
    path = "/start",
    tag = "sessions",
    request_body = StartRequest,
    responses(
        (status = 200, description = "The session, running", body = StartResponse),
        (status = 202, description = "With `\"wait\": false`: the start goes on; its progress is at `events` (also the Location header)", body = StartAccepted),
        (status = 400, description = "Malformed body, bad user id, idleTimeout or maxAge over the operator's maximum (session.max_idle_timeout, session.max_age), or a project path that is unusable or outside the roots (or holds unsafe entries the operator refuses); nothing changed", body = ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = ErrorResponse),
        (status = 403, description = "A user token for another user", body = ErrorResponse),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorResponse),
        (status = 409, description = "Another host took the start over", body = ErrorResponse),
        (status = 413, description = "The body is over http.body_limit_bytes (payload_too_large), or the project over session.project_max_bytes or project_max_entries (project_too_large)", body = ErrorResponse),
        (status = 429, description = "The fleet is full (at_capacity), this token holds its maximum of sessions (token_at_capacity), or too many starts (rate_limited); see Retry-After", body = ErrorResponse),
        (status = 500, description = "A corrupt record or a store failure", body = ErrorResponse),
        (status = 502, description = "A driver failed; the start was rolled back", body = ErrorResponse),
        (status = 503, description = "The store is unreachable, or the host is shutting down", body = ErrorResponse),
        (status = 504, description = "The start ran past its deadline and was rolled back", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn start(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Extension(ClientAddr(address)): Extension<ClientAddr>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let user = UserId::parse(&request.user_id)?;
    authorize(&caller, &user)?;
    if let Err(exceeded) = state.limiter.check(caller.limit_key().as_deref(), address) {
        state
            .manager
            .metrics()
            .count_start(StartResult::RateLimited);
        let message = match exceeded {
            Exceeded::Token(_) => "this token made too many starts; retry later",
            Exceeded::Address(_) => "this address made too many starts; retry later",
        };
        return Err(ApiError::too_many(
            "rate_limited",
            message.to_string(),
            exceeded.retry_after(),
        ));
    }
    let starter = caller.starter_key();
    if !request.wait {
        let requested = request.requested();
        return start_in_background(state, user, request.project_path, starter, requested).await;
    }
    let started = state
        .manager
        .start(
            &user,
            &request.project_path,
            starter.as_deref(),
            request.requested(),
        )
        .await?;
    let limits = &state.manager.settings().policy;
    Ok(Json(StartResponse {
        session: SessionView::of(&user, Some(started.record), limits),
        reused: started.reused,
        health: started.health,
    })
    .into_response())
}

/// `POST /start` with `"wait": false`: runs the start in a task of its
/// own and answers `202` with the URL of its events as soon as the start is
/// under way in the store (so that a stream opened on any host sees it). A
/// start that ends before that is answered as when waiting: a hit with the
/// session, a refusal (a bad project, a full fleet, ...) with its error. A
/// failure after the `202` is kept for the events stream of this host.
async fn start_in_background(
    state: ApiState,
    user: UserId,
    project_path: String,
    starter: Option<String>,
    requested: crate::session::Requested,
) -> Result<Response, ApiError> {
    let events = format!("/sessions/{user}/events");
    let background = state.background.clone();
    let running = background.begin(&user);
    let manager = state.manager.clone();
    let request_id = super::request_id::current();
    let starting = user.clone();
    let (underway, told) = tokio::sync::oneshot::channel();
    let mut task = tokio::spawn(super::request_id::carry(async move {
        let outcome = manager
            .start_telling(
                &starting,
                &project_path,
                starter.as_deref(),
                requested,
                Some(underway),
            )
            .await
            .map_err(ApiError::from);
        if let Err(error) = &outcome {
            tracing::info!(user_id = %starting, code = error.code, "background start failed");
            background.failed(
                &starting,
                serde_json::json!({"error": {
                    "code": error.code,
                    "message": &error.message,
                    "requestId": request_id,
                }}),
            );
        }
        drop(running);
        outcome
    }));
    tokio::select! {
        told = told => {
            if told.is_err() {
                // The start ended before it was under way: its own answer.
                return finished(&state, &user, task.await);
            }
        }
        ended = &mut task => return finished(&state, &user, ended),
    }
    let mut headers = HeaderMap::new();
    if let Ok(location) = header::HeaderValue::from_str(&events) {
        headers.insert(header::LOCATION, location);
    }
    Ok((
        StatusCode::ACCEPTED,
        headers,
        Json(StartAccepted {
            user_id: user.to_string(),
            events,
        }),
    )
        .into_response())
}

/// The answer of a background start that ended before it was under way.
fn finished(
    state: &ApiState,
    user: &UserId,
    ended: Result<Result<crate::session::Started, ApiError>, tokio::task::JoinError>,
) -> Result<Response, ApiError> {
    let started = ended.map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the start's task failed: {error}"),
        )
    })??;
    Ok(Json(StartResponse {
        session: SessionView::of(user, Some(started.record), &state.manager.settings().policy),
        reused: started.reused,
        health: started.health,
    })
    .into_response())
}

/// Stops the user's session: removes the route, the VM and the record.
/// Stopping a user without a session succeeds.
#[utoipa::path(
    post,
    path = "/stop",
    tag = "sessions",
    request_body = UserRequest,
    responses(
        (status = 200, description = "The session is gone", body = StopResponse),
        (status = 202, description = "Another request is still stopping it", body = StopResponse),
        (status = 400, description = "Malformed body or bad user id", body = ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = ErrorResponse),
        (status = 403, description = "A user token for another user", body = ErrorResponse),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorResponse),
        (status = 413, description = "The body is over http.body_limit_bytes", body = ErrorResponse),
        (status = 500, description = "A corrupt record or a store failure", body = ErrorResponse),
        (status = 502, description = "A driver failed; the Reaper retries the stop", body = ErrorResponse),
        (status = 503, description = "The store is unreachable, or the host is shutting down", body = ErrorResponse),
        (status = 504, description = "The stop ran past its deadline; the Reaper retries it", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn stop(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    body: Result<Json<UserRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<StopResponse>), ApiError> {
    let Json(request) = body?;
    let user = UserId::parse(&request.user_id)?;
    authorize(&caller, &user)?;
    let outcome = manager.stop(&user).await?;
    let (code, status) = match outcome {
        Stopped::Stopped | Stopped::NotRunning => (StatusCode::OK, StopState::None),
        Stopped::InProgress => (StatusCode::ACCEPTED, StopState::Stopping),
    };
    Ok((
        code,
        Json(StopResponse {
            user_id: user.to_string(),
            status,
            stopped: outcome == Stopped::Stopped,
        }),
    ))
}

/// Keeps the user's session alive: sets its `lastHeartbeat` to now. Never
/// creates or revives a session.
#[utoipa::path(
    post,
    path = "/heartbeat",
    tag = "sessions",
    request_body = UserRequest,
    responses(
        (status = 200, description = "The session, with its new lastHeartbeat", body = SessionView),
        (status = 400, description = "Malformed body or bad user id", body = ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = ErrorResponse),
        (status = 403, description = "A user token for another user", body = ErrorResponse),
        (status = 404, description = "The user has no session (or it is being stopped)", body = ErrorResponse),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorResponse),
        (status = 409, description = "The session is still starting", body = ErrorResponse),
        (status = 413, description = "The body is over http.body_limit_bytes", body = ErrorResponse),
        (status = 500, description = "A corrupt record or a store failure", body = ErrorResponse),
        (status = 503, description = "The store is unreachable, or the host is shutting down", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn heartbeat(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    body: Result<Json<UserRequest>, JsonRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let Json(request) = body?;
    let user = UserId::parse(&request.user_id)?;
    authorize(&caller, &user)?;
    let record = manager.heartbeat(&user).await?;
    let limits = &manager.settings().policy;
    Ok(Json(SessionView::of(&user, Some(record), limits)))
}

/// The user's session, or status `none`; a session that stopped within
/// `session.tombstone_retention` is explained (`lastSession`, `message`).
#[utoipa::path(
    get,
    path = "/status/{userId}",
    tag = "sessions",
    params(("userId" = String, Path, description = "The user", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")),
    responses(
        (status = 200, description = "The session, or status none (with lastSession and message if it stopped recently)", body = SessionView),
        (status = 400, description = "Bad user id", body = ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = ErrorResponse),
        (status = 403, description = "A user token for another user", body = ErrorResponse),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorResponse),
        (status = 500, description = "A corrupt record or a store failure", body = ErrorResponse),
        (status = 503, description = "The store is unreachable, or the host is shutting down", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn status(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let Path(user_id) = user_id?;
    let user = UserId::parse(&user_id)?;
    authorize(&caller, &user)?;
    let limits = &manager.settings().policy;
    if let Some(record) = manager.status(&user).await? {
        return Ok(Json(SessionView::of(&user, Some(record), limits)));
    }
    // Only the user's own tombstone: it is read by the key of the user the
    // caller was authorized for, and one naming another user is ignored.
    Ok(Json(match manager.tombstone(&user).await? {
        Some(tombstone) => SessionView::stopped(&user, tombstone),
        None => SessionView::of(&user, None, limits),
    }))
}

/// The most entries one `GET /sessions` page may hold.
pub const MAX_LIST_LIMIT: usize = listing::MAX_LIMIT;

/// The entries a `GET /sessions` page holds when the caller names no limit.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Every session, a page at a time, optionally only those with one status;
/// operators only.
///
/// Follow `nextCursor` until it is `null` to see every session once. The
/// store is read in batches without blocking it, so sessions started or
/// stopped during the listing may or may not appear.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    params(
        ("status" = Option<String>, Query, description = "Only sessions with this status: active, starting or stopping"),
        ("limit" = Option<u32>, Query, description = "The most entries in the page, 1 to 1000; 100 by default", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "The previous page's nextCursor; none for the first page"),
    ),
    responses(
        (status = 200, description = "One page of sessions", body = SessionList),
        (status = 400, description = "A bad status, limit or cursor, or an unknown parameter", body = ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = ErrorResponse),
        (status = 403, description = "Not an operator token", body = ErrorResponse),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorResponse),
        (status = 500, description = "A store failure", body = ErrorResponse),
        (status = 503, description = "The store is unreachable, or the host is shutting down", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn list_sessions(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    require_operator(&caller, "listing sessions")?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })?;
    let status = query.status.as_deref().map(parse_status).transpose()?;
    let limit = query.limit.as_deref().map(parse_limit).transpose()?;
    let store = manager.store();
    let cursor = match query.cursor.as_deref() {
        Some(text) => Cursor::decode(text, store.kind()).map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", error.to_string())
        })?,
        None => Cursor::default(),
    };
    let page = listing::list(
        store.as_ref(),
        status,
        limit.unwrap_or(DEFAULT_LIST_LIMIT),
        cursor,
    )
    .await?;
    let sessions = page
        .sessions
        .into_iter()
        .map(|record| SessionView::of_record(record, &manager.settings().policy))
        .collect();
    Ok(Json(SessionList {
        sessions,
        next_cursor: page.next.map(|cursor| cursor.encode()),
        invalid: page
            .invalid
            .into_iter()
            .map(|entry| InvalidSession {
                user_id: entry.user_id,
                error: entry.error,
            })
            .collect(),
    }))
}

/// The status filter of `GET /sessions`.
fn parse_status(text: &str) -> Result<SessionStatus, ApiError> {
    match text {
        "active" => Ok(SessionStatus::Active),
        "starting" => Ok(SessionStatus::Starting),
        "stopping" => Ok(SessionStatus::Stopping),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_status",
            "status must be active, starting or stopping",
        )),
    }
}

/// The page size of `GET /sessions`: 1 to [`MAX_LIST_LIMIT`].
fn parse_limit(text: &str) -> Result<usize, ApiError> {
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIST_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            format!("limit must be a whole number from 1 to {MAX_LIST_LIMIT}"),
        )),
    }
}

/// Keeps any user's session alive on the user's behalf: sets its
/// `lastHeartbeat` to now, as `POST /heartbeat` does; operators only.
#[utoipa::path(
    post,
    path = "/sessions/{userId}/extend",
    tag = "sessions",
    params(("userId" = String, Path, description = "The user", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")),
    responses(
        (status = 200, description = "The session, with its new lastHeartbeat", body = SessionView),
        (status = 400, description = "Bad user id", body = ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = ErrorResponse),
        (status = 403, description = "Not an operator token", body = ErrorResponse),
        (status = 404, description = "The user has no session (or it is being stopped)", body = ErrorResponse),
        (status = 408, description = "The request took longer than http.request_timeout", body = ErrorResponse),
        (status = 409, description = "The session is still starting", body = ErrorResponse),
        (status = 500, description = "A corrupt record or a store failure", body = ErrorResponse),
        (status = 503, description = "The store is unreachable, or the host is shutting down", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn extend(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionView>, ApiError> {
    require_operator(&caller, "extending another user's session")?;
    let Path(user_id) = user_id?;
    let user = UserId::parse(&user_id)?;
    let record = manager.heartbeat(&user).await?;
    Ok(Json(SessionView::of(
        &user,
        Some(record),
        &manager.settings().policy,
    )))
}

/// Whether the host and its store answer; needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The host and its store answer", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    ),
    security(())
)]
pub async fn healthz(State(manager): Manager) -> (StatusCode, Json<Health>) {
    let store = manager.store();
    match store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: HealthState::Ok,
                store: StoreHealth {
                    kind: store.kind().to_string(),
                    status: HealthState::Ok,
                    error: None,
                },
            }),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthState::Degraded,
                store: StoreHealth {
                    kind: store.kind().to_string(),
                    status: HealthState::Unavailable,
                    error: Some(error.to_string()),
                },
            }),
        ),
    }
}

/// This host's metrics, in the Prometheus text format, or OpenMetrics for
/// a scraper whose `Accept` header asks for it. Open to clients on loopback
/// by default (`auth.metrics`); others need an operator token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics", content(
            (String = "text/plain"),
            (String = "application/openmetrics-text"),
        )),
        (status = 401, description = "A token is needed and none (or a bad one) was sent", body = ErrorResponse),
        (status = 403, description = "Not an operator token", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn metrics(
    State(manager): Manager,
    headers: HeaderMap,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        manager.metrics().render(format),
    )
}

/// This API's OpenAPI 3.1 description; needs no token.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
    security(())
)]
pub async fn openapi() -> (
    [(axum::http::header::HeaderName, &'static str); 1],
    &'static str,
) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
}
