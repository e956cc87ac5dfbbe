//! `GET /sessions/{userId}/events`: the progress of a start, as server-sent
//! events, for a frontend's loading screen.
//!
//! The stream follows the session's record in the store, so it shows a start
//! made by any host sharing the store: each step as it begins and ends
//! (`claimed`, `creating-vm`, `copying-project`, `adding-route`), then the
//! session once it is active, or the error if the start failed, and then it
//! closes. A client that connects in the middle gets the current step first
//! (with the time it began); one that connects when nothing is starting gets
//! the session as it is (`session`, or `none`) at once.
//!
//! Events (each `data` is one JSON object):
//! - `step`: `{"step": "creating-vm", "state": "begun"|"ended", "at": ms}`;
//! - `session`: the session as `GET /status` shows it, when it is active;
//! - `error`: `{"error": {"code", "message"}}`: the start failed (the
//!   record went away before it became active, or a start this host ran in
//!   the background was refused), the store could not be read, or the start
//!   took longer than the stream waits;
//! - `none`: `{"userId"}`: there is no session and no start.
//!
//! Who may read it: whoever may read `GET /status/{userId}` (the user's own
//! token, or an operator's). What it costs: one store read per
//! [`POLL_INTERVAL`] while a start runs, for at most the start and stop
//! timeouts together plus a margin.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;

use super::ApiState;
use super::auth::authorize;
use super::error::ApiError;
use super::model::SessionView;
use crate::auth::Caller;
use crate::ids::UserId;
use crate::store::{SessionRecord, SessionStatus, StartStep, StopReason};

/// How often the stream reads the record while a start runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Streams the progress of `userId`'s start as server-sent events.
#[utoipa::path(
    get,
    path = "/sessions/{userId}/events",
    tag = "sessions",
    params(("userId" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "A text/event-stream of `step` events (`{\"step\", \"state\": \"begun\"|\"ended\", \"at\"}`), then `session` (the active session, as /status shows it), `error` (`{\"error\": {\"code\", \"message\"}}`) or `none`, then the end of the stream", content_type = "text/event-stream", body = ProgressEvent),
        (status = 400, description = "Bad user id", body = super::model::ErrorResponse),
        (status = 401, description = "No, malformed, expired or badly signed token", body = super::model::ErrorResponse),
        (status = 403, description = "A user token for another user", body = super::model::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Path(user) = path?;
    let user = UserId::parse(&user)?;
    authorize(&caller, &user)?;
    let settings = state.manager.settings();
    let deadline = Instant::now() + settings.start_timeout + settings.stop_timeout + MARGIN;
    let watch = Watch {
        state,
        user,
        seen: None,
        pending: Vec::new(),
        finished: false,
        deadline,
        first: true,
    };
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One event of the progress stream, as the OpenAPI document describes
/// the stream's items.
#[derive(utoipa::ToSchema)]
pub struct ProgressEvent {
    /// `step`, `session`, `error` or `none`.
    #[schema(example = "step")]
    pub event: ProgressEventName,
    /// The event's JSON object, as text.
    #[schema(example = r#"{"step":"creating-vm","state":"begun","at":1796108911984}"#)]
    pub data: String,
}

/// The names of the progress stream's events.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Described, not built: events are written as text.
#[schema(rename_all = "lowercase")]
pub enum ProgressEventName {
    /// A step begun or ended.
    Step,
    /// The active session; the last event.
    Session,
    /// The start failed (or could not be followed); the last event.
    Error,
    /// No session and no start; the only event.
    None,
}

/// What the stream waits past the start and stop timeouts: a start's own
/// deadline covers its rollback too, so this is only slack.
const MARGIN: Duration = Duration::from_secs(30);

/// The state of one event stream.
struct Watch {
    state: ApiState,
    user: UserId,
    /// The step last told as begun, with its time.
    seen: Option<(String, u64)>,
    /// Events decided but not sent yet, in order.
    pending: Vec<Event>,
    /// Whether the final event has been decided.
    finished: bool,
    deadline: Instant,
    /// Whether the record has not been read yet.
    first: bool,
}

impl Watch {
    /// The next event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.pending.is_empty() {
                return Some(self.pending.remove(0));
            }
            if self.finished {
                return None;
            }
            if !self.first {
                if Instant::now() >= self.deadline {
                    self.finish(error_event(
                        "timeout",
                        "the start did not finish while this stream waited; read GET /status",
                    ));
                    continue;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            let first = std::mem::replace(&mut self.first, false);
            match self.state.manager.status(&self.user).await {
                Err(error) => {
                    let error = ApiError::from(error);
                    self.finish(error_event(error.code, &error.message));
                }
                Ok(None) if !first => self.ended_without_session().await,
                Ok(record) => self.observe(record, first),
            }
        }
    }

    /// Decides the events `record` calls for. On the first read only the
    /// current step is told; after it, every step the record shows begun
    /// since, in order, each ending the one before it.
    fn observe(&mut self, record: Option<SessionRecord>, first: bool) {
        let now = self.state.manager.clock().now_ms();
        match record {
            Some(record) if record.status == SessionStatus::Active => {
                if !first {
                    // The steps it went through since the last read.
                    self.tell_steps(&record, now, false);
                }
                self.end_step(record.updated_at.max(self.seen_at()));
                let limits = &self.state.manager.settings().policy;
                let view = SessionView::of(&self.user, Some(record), limits);
                self.finish(json_event("session", &view));
            }
            Some(record) if record.status == SessionStatus::Starting => {
                self.tell_steps(&record, now, first);
            }
            Some(record) => {
                // A failed start being undone (after the steps it got to),
                // or a stop.
                if !first {
                    self.tell_steps(&record, now, false);
                }
                if self.seen.as_ref().map(|(step, _)| step.as_str()) != Some("stopping") {
                    self.begin_step("stopping".to_string(), now);
                }
            }
            None => {
                if let Some(refusal) = self.state.background.take(&self.user) {
                    self.end_step(now);
                    self.finish(json_event("error", &refusal));
                } else if first {
                    self.finish(json_event("none", &json!({"userId": self.user.as_str()})));
                } else {
                    self.end_step(now);
                    self.finish(error_event(
                        "start_failed",
                        "the start failed and was undone; the host's log has the cause under the start's request id",
                    ));
                }
            }
        }
    }

    /// The end of a stream whose start went away before it became active:
    /// this host's own record of a background start's failure, else the
    /// tombstone the start left (why it stopped, from any host), else that
    /// it failed.
    async fn ended_without_session(&mut self) {
        let now = self.state.manager.clock().now_ms();
        self.end_step(now);
        // A start this host runs in the background deletes its record while
        // it is undone, before it knows the error it ends with: wait for it.
        let wait = self.deadline.saturating_duration_since(Instant::now());
        if let Some(refusal) = self
            .state
            .background
            .take_when_ended(&self.user, wait)
            .await
        {
            self.finish(json_event("error", &refusal));
            return;
        }
        let tombstone = self
            .state
            .manager
            .store()
            .get_tombstone(&self.user, now)
            .await
            .ok()
            .flatten();
        match tombstone {
            Some(tombstone) => {
                let code = if tombstone.reason == StopReason::FailedStart {
                    "start_failed"
                } else {
                    "stopped"
                };
                let view = SessionView::stopped(&self.user, tombstone);
                self.finish(json_event(
                    "error",
                    &json!({
                        "error": {"code": code, "message": view.message},
                        "lastSession": view.last_session,
                    }),
                ));
            }
            None => self.finish(error_event(
                "start_failed",
                "the start failed and was undone; the host's log has the cause under the start's request id",
            )),
        }
    }

    /// Tells the steps `record` shows begun and not told yet, in order (on
    /// the `first` read, only the current one).
    fn tell_steps(&mut self, record: &SessionRecord, now: u64, first: bool) {
        let mut steps: Vec<(String, u64)> = record
            .start_steps
            .iter()
            .map(|begun| (begun.step.as_str().to_string(), begun.at))
            .collect();
        if steps.is_empty() {
            if record.status != SessionStatus::Starting {
                return;
            }
            // A record written without its steps (by hand, or by an older
            // host): its current step, as first seen.
            let step = record.start_step.map_or("claimed", StartStep::as_str);
            steps.push((step.to_string(), now));
        }
        let unseen = match &self.seen {
            _ if first => steps.len() - 1,
            Some((seen, at)) => steps
                .iter()
                .position(|(step, begun)| step == seen && begun == at)
                .map_or(steps.len(), |told| told + 1),
            None => 0,
        };
        for (step, at) in steps.into_iter().skip(unseen) {
            self.begin_step(step, at);
        }
    }

    /// Tells `step` as begun at `at`, ending the one before it.
    fn begin_step(&mut self, step: String, at: u64) {
        self.end_step(at);
        self.pending.push(json_event(
            "step",
            &json!({"step": step, "state": "begun", "at": at}),
        ));
        self.seen = Some((step, at));
    }

    /// The time the step last told began, or 0.
    fn seen_at(&self) -> u64 {
        self.seen.as_ref().map_or(0, |(_, at)| *at)
    }

    /// Tells the step last begun as ended at `at`.
    fn end_step(&mut self, at: u64) {
        if let Some((step, _)) = self.seen.take() {
            self.pending.push(json_event(
                "step",
                &json!({"step": step, "state": "ended", "at": at}),
            ));
        }
    }

    /// Queues the final event.
    fn finish(&mut self, event: Event) {
        self.pending.push(event);
        self.finished = true;
    }
}

/// An event named `name` whose data is `value` as JSON.
fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

/// An `error` event with the API's error shape.
fn error_event(code: &str, message: &str) -> Event {
    json_event(
        "error",
        &json!({"error": {"code": code, "message": message}}),
    )
}
