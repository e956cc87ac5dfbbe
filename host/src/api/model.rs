//! The API's request and answer bodies: the types the handlers read and
//! write, and from which the OpenAPI document (`/openapi.json`) is made.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::UserId;
pub use crate::session::liveness::VmHealth;
use crate::session::{DecidedBy, PolicyLimits, Requested};
use crate::store::{SessionRecord, SessionStatus, StopReason, Stopper, Tombstone};

/// The pattern every user id matches (checked by the host; in the spec so
/// that clients and fuzzers know it).
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$";

/// `POST /start` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRequest {
    /// The user whose workspace to start: 1 to 48 characters of
    /// `[A-Za-z0-9_-]`, starting with a letter or digit; case-sensitive.
    #[schema(example = "User-A", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")]
    pub user_id: String,
    /// The absolute path of the project directory to copy into the VM.
    #[schema(example = "/srv/projects/user-a")]
    pub project_path: String,
    /// `false` to answer at once, `202` with the URL of the start's
    /// progress events (`GET /sessions/{userId}/events`), instead of
    /// waiting for the session. Default `true`.
    #[serde(default = "waits")]
    #[schema(default = true)]
    pub wait: bool,
    /// How long the session may go without a heartbeat before the Reaper
    /// stops it, in milliseconds: 1 up to `session.max_idle_timeout`
    /// (more: 400). Absent: `reaper.idle_timeout`. A start that finds the
    /// session running keeps the running session's policy.
    #[schema(example = 2_700_000, minimum = 1)]
    #[serde(default)]
    pub idle_timeout: Option<u64>,
    /// How long after its start the Reaper stops the session, heartbeats
    /// or not, in milliseconds: 1 up to `session.max_age` when that is set
    /// (more: 400). Absent: `session.max_age` (or no maximum age).
    #[schema(example = 28_800_000, minimum = 1)]
    #[serde(default)]
    pub max_age: Option<u64>,
}

impl StartRequest {
    /// The policy the start asks for.
    pub fn requested(&self) -> Requested {
        Requested {
            idle_timeout_ms: self.idle_timeout,
            max_age_ms: self.max_age,
        }
    }
}

fn waits() -> bool {
    true
}

/// `POST /start` answer with `"wait": false`: the start goes on; its
/// progress is at `events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartAccepted {
    /// The user.
    pub user_id: String,
    /// Where to read the start's progress (server-sent events), relative
    /// to the API's root.
    #[schema(example = "/sessions/User-A/events")]
    pub events: String,
}

/// `POST /stop` and `POST /heartbeat` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRequest {
    /// The user.
    #[schema(example = "User-A", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")]
    pub user_id: String,
}

/// Where a session is, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// The VM runs and the route serves it.
    Active,
    /// A start is creating the VM, copying the project or adding the route.
    Starting,
    /// A stop is removing the route and the VM.
    Stopping,
    /// The user has no session.
    None,
}

impl From<SessionStatus> for SessionState {
    fn from(status: SessionStatus) -> Self {
        match status {
            SessionStatus::Active => SessionState::Active,
            SessionStatus::Starting => SessionState::Starting,
            SessionStatus::Stopping => SessionState::Stopping,
        }
    }
}

/// A session as the API shows it (`GET /status`, and the other answers).
/// Times are milliseconds since the epoch; durations are milliseconds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The user.
    pub user_id: String,
    /// Where the session is.
    pub status: SessionState,
    /// The VM's id (`vessel-{public name}`); `null` with status `none`.
    pub vm_id: Option<String>,
    /// The VM's address; `null` while starting.
    pub ip: Option<String>,
    /// The public URL; `null` while starting.
    pub url: Option<String>,
    /// The last heartbeat, in milliseconds since the epoch.
    pub last_heartbeat: Option<u64>,
    /// Since when the session has been idle: its last heartbeat (ms since
    /// the epoch); `null` with status `none`.
    pub idle_since: Option<u64>,
    /// When the Reaper will stop the active session if nothing changes (no
    /// heartbeat comes): the earlier of `idleSince + policy.idleTimeoutMs`
    /// and its start plus `policy.maxAgeMs`. `null` unless active.
    pub expires_at: Option<u64>,
    /// The limits the Reaper applies to the session; `null` with status
    /// `none`.
    pub policy: Option<PolicyView>,
    /// With status `none`: the user's last session, if it stopped within
    /// `session.tombstone_retention`: who stopped it and why. Absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_session: Option<StoppedView>,
    /// With status `none` and a `lastSession`: what happened, for people,
    /// e.g. `stopped at 2026-12-01T10:00:00Z (the Reaper): idle for 30 min`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The limits a session runs under (`policy` of a session).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// No heartbeat for this long (ms): stopped.
    #[schema(example = 1_800_000)]
    pub idle_timeout_ms: u64,
    /// Older than this (ms, from its start): stopped even with heartbeats;
    /// `null`: no maximum age.
    #[schema(example = 28_800_000)]
    pub max_age_ms: Option<u64>,
    /// Which of the two sets `expiresAt`.
    pub decided_by: PolicyLimit,
}

/// Which limit ends a session first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyLimit {
    /// The idle timeout.
    Idle,
    /// The maximum age.
    MaxAge,
}

/// A stopped session, from its tombstone (`lastSession` of a status).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoppedView {
    /// The VM it had.
    pub vm_id: String,
    /// When it stopped (ms since the epoch).
    pub stopped_at: u64,
    /// Who stopped it: `user`, `reaper`, `reconciler` or `host` (the host
    /// itself, during a start).
    #[schema(value_type = String, example = "reaper")]
    pub stopped_by: Stopper,
    /// Why: `user`, `idle`, `max-age`, `vm-gone`, `failed-start` or
    /// `abandoned` (its host died mid-start or mid-stop).
    #[schema(value_type = String, example = "idle")]
    pub reason: StopReason,
    /// More about why, e.g. what a failed start was doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long it had gone without a heartbeat when it stopped (ms).
    pub idle_for_ms: u64,
    /// Its last heartbeat (ms since the epoch).
    pub last_heartbeat: u64,
}

impl SessionView {
    /// The view of a stored `record`, named by the user it holds, under
    /// `limits`.
    pub fn of_record(record: SessionRecord, limits: &PolicyLimits) -> SessionView {
        let deadline = limits.deadline(&record);
        SessionView {
            user_id: record.user_id,
            status: record.status.into(),
            expires_at: (record.status == SessionStatus::Active).then_some(deadline.expires_at),
            policy: Some(PolicyView {
                idle_timeout_ms: deadline.idle_timeout_ms,
                max_age_ms: deadline.max_age_ms,
                decided_by: match deadline.decided_by {
                    DecidedBy::Idle => PolicyLimit::Idle,
                    DecidedBy::MaxAge => PolicyLimit::MaxAge,
                },
            }),
            vm_id: Some(record.vm_id),
            ip: record.ip,
            url: record.url,
            last_heartbeat: Some(record.last_heartbeat),
            idle_since: Some(record.last_heartbeat),
            last_session: None,
            message: None,
        }
    }

    /// The view of `user`'s `record`, or of no session, under `limits`.
    pub fn of(user: &UserId, record: Option<SessionRecord>, limits: &PolicyLimits) -> SessionView {
        match record {
            Some(record) => SessionView {
                user_id: user.to_string(),
                ..SessionView::of_record(record, limits)
            },
            None => SessionView {
                user_id: user.to_string(),
                status: SessionState::None,
                vm_id: None,
                ip: None,
                url: None,
                last_heartbeat: None,
                idle_since: None,
                expires_at: None,
                policy: None,
                last_session: None,
                message: None,
            },
        }
    }

    /// The view of `user` with no session, explained by `tombstone`.
    pub fn stopped(user: &UserId, tombstone: Tombstone) -> SessionView {
        let mut view = SessionView::of(user, None, &PolicyLimits::NONE);
        view.message = Some(tombstone.message());
        view.last_session = Some(StoppedView {
            vm_id: tombstone.vm_id,
            stopped_at: tombstone.stopped_at,
            stopped_by: tombstone.stopped_by,
            reason: tombstone.reason,
            detail: tombstone.detail,
            idle_for_ms: tombstone.idle_for_ms,
            last_heartbeat: tombstone.last_heartbeat,
        });
        view
    }
}

/// `GET /sessions` query. Every field is read as text and checked by the
/// handler, so that a bad value is named in the one error shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `active`, `starting` or `stopping`; none: every session.
    pub status: Option<String>,
    /// The most entries in the page: 1 to 1000, 100 by default.
    pub limit: Option<String>,
    /// A `nextCursor` from the previous page; none: the first page.
    pub cursor: Option<String>,
}

/// A stored entry `GET /sessions` could not read as a session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvalidSession {
    /// The user its key names.
    pub user_id: String,
    /// What is wrong with it.
    pub error: String,
}

/// `GET /sessions` answer: one page of sessions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    /// The sessions of this page (as `GET /status` shows them).
    pub sessions: Vec<SessionView>,
    /// Where the next page starts (pass it as `cursor`); `null` when the
    /// listing is complete. A page may hold fewer than `limit` entries, even
    /// none, and still have a next one.
    pub next_cursor: Option<String>,
    /// Stored entries that could not be read, whatever the filter; they
    /// count toward `limit`.
    pub invalid: Vec<InvalidSession>,
}

/// `POST /start` answer: the session, whether it was already running, and
/// what the start found out about its VM.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    /// The session.
    #[serde(flatten)]
    pub session: SessionView,
    /// `true` when the session already ran (nothing was created).
    pub reused: bool,
    /// `ok`; `unresponsive` (the VM runs but its dev server did not answer:
    /// tell the user, and retry); `unknown` (the VM driver could not be
    /// asked; the session is kept); `unchecked` (`liveness = "none"`).
    pub health: VmHealth,
}

/// Where a stopped session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StopState {
    /// The session is gone (or there was none).
    None,
    /// Another request is still stopping it.
    Stopping,
}

/// `POST /stop` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopResponse {
    /// The user.
    pub user_id: String,
    /// `none` when the session is gone, `stopping` when another request is
    /// still stopping it.
    pub status: StopState,
    /// Whether this request stopped a running session.
    pub stopped: bool,
}

/// Whether a part of the host works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// It works.
    Ok,
    /// The host serves, but its store does not answer.
    Degraded,
    /// The store does not answer.
    Unavailable,
}

/// `GET /healthz` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: HealthState,
    /// The store's kind and state.
    pub store: StoreHealth,
}

/// The store part of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreHealth {
    /// `redis` or `embedded`.
    #[schema(example = "redis")]
    pub kind: String,
    /// `ok` or `unavailable`.
    pub status: HealthState,
    /// The error, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code, e.g. `invalid_user_id`.
    #[schema(example = "invalid_user_id")]
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// The request's id (also in the `x-request-id` header): the host's log
    /// has the details under it.
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "req-3f9a2c1b5e7d4a60")]
    pub request_id: Option<String>,
}
