//! The session record: the JSON stored under `session:{userId}`.
//!
//! Operators read and edit records by hand, so parsing is lenient where a
//! hand edit is likely (times may be numbers or numeric strings; a record
//! with no `status` is active) and fields it does not know are kept.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::ids::{InvalidUserId, UserId};

/// Why a stored record cannot be used. The record is left as it is, for an
/// operator to fix or delete.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The JSON is malformed or lacks a field Vessel needs.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// The key does not end in a valid user id.
    #[error("its key names {0:?}, which is not a valid user id: {1}")]
    BadKey(String, InvalidUserId),
    /// The record's `userId` is not the user of its key.
    #[error("it names user {0:?}, not the user of its key")]
    OtherUser(String),
    /// The record's `vmId` is not a name of its user's VM.
    #[error("its vmId {found:?} is not a VM of the user of its key (expected {expected:?})")]
    OtherVm {
        /// The `vmId` the record holds.
        found: String,
        /// The VM id Vessel gives the key's user.
        expected: String,
    },
}

/// Where a session is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// A host is creating the VM, copying the project and adding the route.
    Starting,
    /// The VM runs and the route serves it.
    #[default]
    Active,
    /// A host is removing the route and the VM.
    Stopping,
}

impl SessionStatus {
    /// The status as written in records and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::Active => "active",
            SessionStatus::Stopping => "stopping",
        }
    }
}

/// How far a start has gone, written to the record *before* each step
/// begins (write-ahead), so that whoever takes over a start whose host died
/// knows what may exist and must be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartStep {
    /// The user is claimed; nothing has been made yet.
    Claimed,
    /// The VM is being created (it may exist).
    CreatingVm,
    /// The VM exists; the project is being copied in.
    CopyingProject,
    /// The VM exists; the route is being added (it may exist).
    AddingRoute,
}

impl StartStep {
    /// Every step, in order.
    pub const ALL: [StartStep; 4] = [
        StartStep::Claimed,
        StartStep::CreatingVm,
        StartStep::CopyingProject,
        StartStep::AddingRoute,
    ];

    /// The step as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            StartStep::Claimed => "claimed",
            StartStep::CreatingVm => "creating-vm",
            StartStep::CopyingProject => "copying-project",
            StartStep::AddingRoute => "adding-route",
        }
    }

    /// Whether the session's VM may exist once this step has begun.
    pub fn vm_may_exist(self) -> bool {
        self != StartStep::Claimed
    }

    /// Whether the session's route may exist once this step has begun.
    pub fn route_may_exist(self) -> bool {
        self == StartStep::AddingRoute
    }
}

/// A step of a start and when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepBegun {
    /// The step.
    pub step: StartStep,
    /// When it began, in milliseconds since the epoch.
    pub at: u64,
}

/// One user's session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// The user. Filled in from the key when a hand-written record omits it.
    #[serde(default)]
    pub user_id: String,
    /// The VM's id, `vessel-{public name}` (see [`crate::names`]); records
    /// written by Vessel 0.1 hold `user-{userId}-session`.
    pub vm_id: String,
    /// The VM's address; `null` while starting.
    #[serde(default)]
    pub ip: Option<String>,
    /// The public URL; `null` while starting.
    #[serde(default)]
    pub url: Option<String>,
    /// The last heartbeat, in milliseconds since the epoch.
    #[serde(deserialize_with = "lenient_ms")]
    pub last_heartbeat: u64,
    /// The lifecycle state; a record without one is active.
    #[serde(default)]
    pub status: SessionStatus,
    /// When the session was started (ms since the epoch).
    #[serde(default, deserialize_with = "lenient_ms")]
    pub created_at: u64,
    /// When the status or heartbeat last changed (ms since the epoch).
    #[serde(default, deserialize_with = "lenient_ms")]
    pub updated_at: u64,
    /// The operation that holds the record while it is starting or
    /// stopping (`{hostId}/{n}`); only it may move the record on.
    #[serde(default)]
    pub owner: String,
    /// While starting (and while a start that died is undone): the step the
    /// start has begun. Absent once the session is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_step: Option<StartStep>,
    /// The steps of the session's start, in order, each with the time it
    /// began (ms since the epoch), for the progress a frontend shows
    /// (`GET /sessions/{userId}/events`); kept once the session is active,
    /// as the record of how its start went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_steps: Vec<StepBegun>,
    /// The project directory copied into the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    /// Who started the session, as per-token limits count it (an operator
    /// token's name, `operator:{name}`); absent when nobody is counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The idle timeout the start asked for (ms); absent: the Reaper's
    /// `idle_timeout`. A value that is not a positive integer (a bad hand
    /// edit) counts as absent, and the value is capped by
    /// `session.max_idle_timeout` when used.
    #[serde(
        default,
        deserialize_with = "lenient_policy_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_ms: Option<u64>,
    /// The maximum age the start asked for (ms); absent: `session.max_age`.
    /// A value that is not a positive integer counts as absent, and the
    /// value is capped by `session.max_age` when that is set.
    #[serde(
        default,
        deserialize_with = "lenient_policy_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age_ms: Option<u64>,
    /// Fields Vessel does not know, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SessionRecord {
    /// Whether the session's VM may exist: always, unless the record is of
    /// a start that had not begun creating it.
    pub fn vm_may_exist(&self) -> bool {
        self.start_step.is_none_or(StartStep::vm_may_exist)
    }

    /// Whether the session's route may exist: always, unless the record is
    /// of a start that had not begun adding it.
    pub fn route_may_exist(&self) -> bool {
        self.start_step.is_none_or(StartStep::route_may_exist)
    }

    /// Parses the record stored under the key of `key_user`, and checks that
    /// it is bound to that key: a `userId` it holds is `key_user`'s (it
    /// fills in a missing one), and its `vmId` is a name Vessel gives that
    /// user's VM (see [`UserId::owns_vm_id`]). A record that names another
    /// user, or a VM that is not its user's (a bad hand edit, or a write by
    /// anyone with access to the store), is refused, so that acting on it
    /// can never stop, route or remove another user's session.
    pub fn from_json(bytes: &[u8], key_user: &str) -> Result<SessionRecord, RecordError> {
        let mut record: SessionRecord = serde_json::from_slice(bytes)?;
        let user = UserId::parse(key_user)
            .map_err(|error| RecordError::BadKey(key_user.to_string(), error))?;
        if record.user_id.is_empty() {
            record.user_id = key_user.to_string();
        } else if record.user_id != key_user {
            return Err(RecordError::OtherUser(record.user_id));
        }
        if !user.owns_vm_id(&record.vm_id) {
            return Err(RecordError::OtherVm {
                found: record.vm_id,
                expected: user.vm_id(),
            });
        }
        Ok(record)
    }

    /// The record as stored.
    pub fn to_json(&self) -> String {
        // A record holds only strings, numbers and maps of JSON values, so
        // serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Accepts milliseconds as an integer, a float (as Lua's cjson may write
/// large numbers) or a numeric string (as a hand edit may).
fn lenient_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    let parsed = match &value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Null => Some(0),
        _ => None,
    };
    parsed.ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected milliseconds since the epoch, found {value}"
        ))
    })
}

/// Reads a policy duration in milliseconds: a positive integer (or a
/// numeric string, as a hand edit may write). Anything else (zero, a
/// negative number, a fraction, text) is read as absent, so that a bad
/// hand edit falls back to the operator's defaults rather than making the
/// record unreadable (which would hide it from the Reaper).
fn lenient_policy_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(match &value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .filter(|ms| *ms > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_written_seed_record_parses_as_active() {
        let record = SessionRecord::from_json(
            br#"{"vmId":"user-a-session","ip":"127.61.0.1","url":"http://x/","lastHeartbeat":"1700000000000","note":"by hand"}"#,
            "a",
        )
        .unwrap();
        assert_eq!(record.user_id, "a");
        assert_eq!(record.status, SessionStatus::Active);
        assert_eq!(record.last_heartbeat, 1_700_000_000_000);
        assert_eq!(record.extra["note"], "by hand");
        // Unknown fields survive a round trip.
        assert!(record.to_json().contains(r#""note":"by hand""#));
    }

    #[test]
    fn the_start_step_says_what_may_exist() {
        let mut record = SessionRecord::from_json(
            br#"{"vmId":"vessel-a-0","lastHeartbeat":1,"status":"starting","startStep":"copying-project"}"#,
            "a",
        )
        .unwrap();
        assert_eq!(record.start_step, Some(StartStep::CopyingProject));
        assert!(record.vm_may_exist() && !record.route_may_exist());
        record.start_step = Some(StartStep::Claimed);
        assert!(!record.vm_may_exist() && !record.route_may_exist());
        assert!(record.to_json().contains(r#""startStep":"claimed""#));
        // An active record (no step) may hold both.
        record.start_step = None;
        assert!(record.vm_may_exist() && record.route_may_exist());
        assert!(!record.to_json().contains("startStep"));
    }

    #[test]
    fn bad_policy_values_read_as_absent() {
        for value in ["-5", "0", "\"soon\"", "1.5", "null", "{}"] {
            let json = format!(
                r#"{{"vmId":"vessel-a-0","lastHeartbeat":1,"idleTimeoutMs":{value},"maxAgeMs":{value}}}"#
            );
            let record = SessionRecord::from_json(json.as_bytes(), "a").unwrap();
            assert_eq!(record.idle_timeout_ms, None, "{value}");
            assert_eq!(record.max_age_ms, None, "{value}");
        }
        let record = SessionRecord::from_json(
            br#"{"vmId":"vessel-a-0","lastHeartbeat":1,"idleTimeoutMs":"60000","maxAgeMs":18446744073709551615}"#,
            "a",
        )
        .unwrap();
        assert_eq!(record.idle_timeout_ms, Some(60_000));
        assert_eq!(record.max_age_ms, Some(u64::MAX));
    }

    #[test]
    fn floats_from_lua_are_read_as_milliseconds() {
        let record = SessionRecord::from_json(
            br#"{"userId":"a","vmId":"vessel-a-0","lastHeartbeat":1.7e12,"status":"stopping"}"#,
            "a",
        )
        .unwrap();
        assert_eq!(record.last_heartbeat, 1_700_000_000_000);
        assert_eq!(record.status, SessionStatus::Stopping);
    }

    #[test]
    fn a_record_without_a_heartbeat_or_with_a_bad_one_is_refused() {
        assert!(SessionRecord::from_json(br#"{"vmId":"vessel-a-0"}"#, "a").is_err());
        assert!(
            SessionRecord::from_json(br#"{"vmId":"vessel-a-0","lastHeartbeat":"soon"}"#, "a")
                .is_err()
        );
        assert!(SessionRecord::from_json(b"not json", "a").is_err());
    }

    #[test]
    fn the_seed_fields_are_written_with_the_seed_names() {
        let record = SessionRecord {
            user_id: "a".into(),
            vm_id: "vessel-a-0".into(),
            ip: Some("127.61.0.1".into()),
            url: Some("http://127.0.0.1:8000/a/".into()),
            last_heartbeat: 5,
            status: SessionStatus::Active,
            created_at: 1,
            updated_at: 5,
            owner: String::new(),
            start_step: None,
            start_steps: Vec::new(),
            project_path: None,
            started_by: None,
            idle_timeout_ms: None,
            max_age_ms: None,
            extra: Map::new(),
        };
        let json: Value = serde_json::from_str(&record.to_json()).unwrap();
        for field in ["vmId", "ip", "url", "lastHeartbeat", "status", "userId"] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["lastHeartbeat"], 5);
    }

    #[test]
    fn a_record_is_bound_to_the_user_of_its_key() {
        let parse = |json: &str, key: &str| SessionRecord::from_json(json.as_bytes(), key);
        // Its own VM, under the current name or the one Vessel 0.1 wrote.
        assert!(parse(r#"{"vmId":"vessel-alice-0","lastHeartbeat":1}"#, "alice").is_ok());
        assert!(
            parse(
                r#"{"vmId":"user-alice-session","lastHeartbeat":1}"#,
                "alice"
            )
            .is_ok()
        );
        assert!(
            parse(
                r#"{"userId":"alice","vmId":"vessel-alice-0","lastHeartbeat":1}"#,
                "alice"
            )
            .is_ok()
        );
        // Another user's name or VM, or a key that is no user id: refused.
        assert!(matches!(
            parse(r#"{"userId":"bob","vmId":"vessel-alice-0","lastHeartbeat":1}"#, "alice"),
            Err(RecordError::OtherUser(user)) if user == "bob"
        ));
        for vm in [
            "vessel-bob-0",
            "user-bob-session",
            "vessel-alice-1",
            "",
            "vessel-alice-0 ",
        ] {
            let json = format!(r#"{{"vmId":"{vm}","lastHeartbeat":1}}"#);
            assert!(
                matches!(parse(&json, "alice"), Err(RecordError::OtherVm { .. })),
                "{vm}"
            );
        }
        // The same user spelled in another case is another user.
        assert!(parse(r#"{"vmId":"vessel-alice-0","lastHeartbeat":1}"#, "Alice").is_err());
        assert!(matches!(
            parse(r#"{"vmId":"vessel-a-0","lastHeartbeat":1}"#, "a.b"),
            Err(RecordError::BadKey(..))
        ));
    }
}
