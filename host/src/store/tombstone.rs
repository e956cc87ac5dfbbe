//! The tombstone: a short-lived note, kept after a session stops, of who
//! stopped it and why, so that `GET /status/{userId}` can explain a session
//! that is gone.
//!
//! Tombstones live apart from session records (`vessel:tombstone:{userId}`
//! in Redis, a table of their own in the embedded store), so that sweeps,
//! capacity counts and scans of `session:*` never see them. Each expires
//! after `session.tombstone_retention`; a store keeps at most one per user,
//! the latest.

use serde::{Deserialize, Serialize};

use super::SessionRecord;
use crate::ids::UserId;

/// The longest `detail` a tombstone keeps, in characters.
pub const MAX_DETAIL_CHARS: usize = 200;

/// Who stopped a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stopper {
    /// The user (or an operator for the user), with `POST /stop`.
    User,
    /// The Reaper.
    Reaper,
    /// The reconciler.
    Reconciler,
    /// The host itself, while starting a session (a failed start rolled
    /// back, a VM found gone, an abandoned start taken over).
    Host,
}

/// Why a session was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The user asked for it.
    User,
    /// No heartbeat for longer than the session's idle timeout.
    Idle,
    /// The session was older than its maximum age.
    MaxAge,
    /// Its VM was found gone.
    VmGone,
    /// Its start failed and was rolled back.
    FailedStart,
    /// Its start or stop was abandoned (its host stopped renewing the
    /// lease) and was taken over and undone.
    Abandoned,
}

impl StopReason {
    /// The reason as written in tombstones.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::User => "user",
            StopReason::Idle => "idle",
            StopReason::MaxAge => "max-age",
            StopReason::VmGone => "vm-gone",
            StopReason::FailedStart => "failed-start",
            StopReason::Abandoned => "abandoned",
        }
    }
}

/// Who stopped a session and why: what a stop tells the tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopCause {
    /// Who stopped it.
    pub by: Stopper,
    /// Why.
    pub reason: StopReason,
}

impl StopCause {
    /// A cause.
    pub const fn new(by: Stopper, reason: StopReason) -> StopCause {
        StopCause { by, reason }
    }
}

/// A stopped session, as its tombstone keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    /// The user.
    pub user_id: String,
    /// The VM the session had.
    pub vm_id: String,
    /// When it was stopped (ms since the epoch).
    pub stopped_at: u64,
    /// Who stopped it.
    pub stopped_by: Stopper,
    /// Why.
    pub reason: StopReason,
    /// More about why, for people (e.g. what a failed start was doing);
    /// at most [`MAX_DETAIL_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the session had gone without a heartbeat when it stopped
    /// (ms).
    pub idle_for_ms: u64,
    /// Its last heartbeat (ms since the epoch).
    pub last_heartbeat: u64,
    /// When it was started (ms since the epoch).
    pub created_at: u64,
    /// When the tombstone expires (ms since the epoch); stores use it to
    /// forget it.
    pub expires_at: u64,
}

impl Tombstone {
    /// The tombstone of `record`, stopped at `now_ms` for `cause`, kept for
    /// `retention_ms`.
    pub fn of(
        record: &SessionRecord,
        cause: StopCause,
        detail: Option<String>,
        now_ms: u64,
        retention_ms: u64,
    ) -> Tombstone {
        Tombstone {
            user_id: record.user_id.clone(),
            vm_id: record.vm_id.clone(),
            stopped_at: now_ms,
            stopped_by: cause.by,
            reason: cause.reason,
            detail: detail.map(|text| text.chars().take(MAX_DETAIL_CHARS).collect()),
            idle_for_ms: now_ms.saturating_sub(record.last_heartbeat),
            last_heartbeat: record.last_heartbeat,
            created_at: record.created_at,
            expires_at: now_ms.saturating_add(retention_ms),
        }
    }

    /// Parses a stored tombstone of `user`. A tombstone that cannot be
    /// parsed, names another user or another user's VM is treated as none:
    /// it only explains, and must never explain one user's session with
    /// another's.
    pub fn from_json(bytes: &[u8], user: &UserId) -> Option<Tombstone> {
        serde_json::from_slice::<Tombstone>(bytes)
            .ok()
            .filter(|tombstone| {
                tombstone.user_id == user.as_str() && user.owns_vm_id(&tombstone.vm_id)
            })
    }

    /// The tombstone as stored.
    pub fn to_json(&self) -> String {
        // Strings and numbers only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at <= now_ms
    }

    /// What happened, for people: `stopped at 2026-12-01T10:00:00Z: idle for
    /// 30m`.
    pub fn message(&self) -> String {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.stopped_at);
        let at = humantime_serde::re::humantime::format_rfc3339_seconds(at);
        let why = match self.reason {
            StopReason::User => "stopped by the user".to_string(),
            StopReason::Idle => format!("idle for {}", minutes(self.idle_for_ms)),
            StopReason::MaxAge => format!(
                "reached its maximum age after {}",
                minutes(self.stopped_at.saturating_sub(self.created_at))
            ),
            StopReason::VmGone => "its VM was gone".to_string(),
            StopReason::FailedStart => "its start failed".to_string(),
            StopReason::Abandoned => "its start or stop was abandoned by its host".to_string(),
        };
        let who = match self.stopped_by {
            Stopper::User => "",
            Stopper::Reaper => " (the Reaper)",
            Stopper::Reconciler => " (the reconciler)",
            Stopper::Host => "",
        };
        match &self.detail {
            Some(detail) => format!("stopped at {at}{who}: {why} ({detail})"),
            None => format!("stopped at {at}{who}: {why}"),
        }
    }
}

/// A duration in whole minutes (or seconds, under a minute), for messages.
fn minutes(ms: u64) -> String {
    let seconds = ms / 1000;
    if seconds < 60 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tombstone(reason: StopReason) -> Tombstone {
        Tombstone {
            user_id: "a".into(),
            vm_id: "vessel-a-0".into(),
            stopped_at: 1_796_119_200_000,
            stopped_by: Stopper::Reaper,
            reason,
            detail: None,
            idle_for_ms: 30 * 60_000,
            last_heartbeat: 1_796_117_400_000,
            created_at: 1_796_110_000_000,
            expires_at: 1_796_119_300_000,
        }
    }

    #[test]
    fn the_message_says_when_and_why() {
        assert_eq!(
            tombstone(StopReason::Idle).message(),
            "stopped at 2026-12-01T10:00:00Z (the Reaper): idle for 30 min"
        );
    }

    #[test]
    fn a_tombstone_of_another_user_or_garbage_is_none() {
        let a = UserId::parse("a").unwrap();
        let b = UserId::parse("b").unwrap();
        let json = tombstone(StopReason::User).to_json();
        assert!(Tombstone::from_json(json.as_bytes(), &a).is_some());
        assert!(Tombstone::from_json(json.as_bytes(), &b).is_none());
        assert!(Tombstone::from_json(b"{\"userId\":\"a\"}", &a).is_none());
        assert!(json.contains(r#""stoppedBy":"reaper""#));
    }
}
