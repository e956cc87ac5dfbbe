//! The request handlers, one per endpoint.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::{ClientAddr, authorize};
use super::error::ApiError;
use super::rate::Exceeded;
use crate::auth::Caller;
use crate::ids::UserId;
use crate::session::{SessionManager, Stopped};
use crate::store::SessionRecord;

/// `POST /start` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRequest {
    /// The user whose workspace to start.
    pub user_id: String,
    /// The absolute path of the project directory to copy into the VM.
    pub project_path: String,
}

/// `POST /stop` and `POST /heartbeat` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRequest {
    /// The user.
    pub user_id: String,
}

/// A session as the API shows it (`GET /status`, and the other answers).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The user.
    pub user_id: String,
    /// `active`, `starting`, `stopping`, or `none`.
    pub status: &'static str,
    /// The VM's id, `null` with status `none`.
    pub vm_id: Option<String>,
    /// The VM's address.
    pub ip: Option<String>,
    /// The public URL.
    pub url: Option<String>,
    /// The last heartbeat, ms since the epoch.
    pub last_heartbeat: Option<u64>,
}

impl SessionView {
    fn of(user: &UserId, record: Option<SessionRecord>) -> SessionView {
        match record {
            Some(record) => SessionView {
                user_id: user.to_string(),
                status: record.status.as_str(),
                vm_id: Some(record.vm_id),
                ip: record.ip,
                url: record.url,
                last_heartbeat: Some(record.last_heartbeat),
            },
            None => SessionView {
                user_id: user.to_string(),
                status: "none",
                vm_id: None,
                ip: None,
                url: None,
                last_heartbeat: None,
            },
        }
    }
}

/// `POST /start` answer: the session, and whether it was already running.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    /// The session.
    #[serde(flatten)]
    pub session: SessionView,
    /// `true` when the session already ran (nothing was created).
    pub reused: bool,
}

/// `POST /stop` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopResponse {
    /// The user.
    pub user_id: String,
    /// `none` when the session is gone, `stopping` when another request is
    /// still stopping it.
    pub status: &'static str,
    /// Whether this request stopped a running session.
    pub stopped: bool,
}

/// `GET /healthz` answer.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// The store's kind and state.
    pub store: StoreHealth,
}

/// The store part of `/healthz`.
#[derive(Debug, Serialize)]
pub struct StoreHealth {
    /// `redis` or `embedded`.
    pub kind: &'static str,
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// The error, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

type Manager = State<Arc<SessionManager>>;

/// `POST /start`: the user's running session, or a new one.
pub async fn start(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Extension(ClientAddr(address)): Extension<ClientAddr>,
    body: Result<Json<StartRequest>, JsonRejection>,
) -> Result<Json<StartResponse>, ApiError> {
    let Json(request) = body?;
    let user = UserId::parse(&request.user_id)?;
    authorize(&caller, &user)?;
    if let Err(exceeded) = state.limiter.check(caller.limit_key().as_deref(), address) {
        state
            .manager
            .metrics()
            .incr("vessel_starts_total", r#"result="rate_limited""#);
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
    let started = state.manager.start(&user, &request.project_path).await?;
    Ok(Json(StartResponse {
        session: SessionView::of(&user, Some(started.record)),
        reused: started.reused,
    }))
}

/// `POST /stop`: stops the user's session; succeeds if there is none.
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
        Stopped::Stopped | Stopped::NotRunning => (StatusCode::OK, "none"),
        Stopped::InProgress => (StatusCode::ACCEPTED, "stopping"),
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

/// `POST /heartbeat`: keeps the user's session alive; 404 without one.
pub async fn heartbeat(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    body: Result<Json<UserRequest>, JsonRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let Json(request) = body?;
    let user = UserId::parse(&request.user_id)?;
    authorize(&caller, &user)?;
    let record = manager.heartbeat(&user).await?;
    Ok(Json(SessionView::of(&user, Some(record))))
}

/// `GET /status/{userId}`: the user's session, or status `none`.
pub async fn status(
    State(manager): Manager,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let user = UserId::parse(&user_id)?;
    authorize(&caller, &user)?;
    let record = manager.status(&user).await?;
    Ok(Json(SessionView::of(&user, record)))
}

/// `GET /healthz`: 200 when the store answers, 503 when it does not.
pub async fn healthz(State(manager): Manager) -> (StatusCode, Json<Health>) {
    let store = manager.store();
    match store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                store: StoreHealth {
                    kind: store.kind(),
                    status: "ok",
                    error: None,
                },
            }),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "degraded",
                store: StoreHealth {
                    kind: store.kind(),
                    status: "unavailable",
                    error: Some(error.to_string()),
                },
            }),
        ),
    }
}

/// `GET /metrics`: this host's counters in the Prometheus text format.
pub async fn metrics(
    State(manager): Manager,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        manager.metrics().render(),
    )
}
