//! Session policies: how long a session may go without a heartbeat and how
//! old it may grow, from the operator's limits and what its start asked
//! for; the one place the Reaper and the API both take them from.

use std::time::Duration;

use super::error::SessionError;
use crate::config::Config;
use crate::store::SessionRecord;

/// What a start asked for; either may be absent (the operator's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    /// `idleTimeout`, in ms.
    pub idle_timeout_ms: Option<u64>,
    /// `maxAge`, in ms.
    pub max_age_ms: Option<u64>,
}

/// Which limit ends a session first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// Its idle timeout, counted from its last heartbeat.
    Idle,
    /// Its maximum age, counted from its start.
    MaxAge,
}

/// A session's effective limits and when the Reaper will stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The idle timeout in force (ms).
    pub idle_timeout_ms: u64,
    /// The maximum age in force (ms), if any.
    pub max_age_ms: Option<u64>,
    /// When the Reaper will stop it if nothing changes (ms since the
    /// epoch).
    pub expires_at: u64,
    /// Which limit that is.
    pub decided_by: DecidedBy,
}

/// The operator's limits on sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// The idle timeout of a session whose start asked for none
    /// (`reaper.idle_timeout`), ms.
    pub default_idle_timeout_ms: u64,
    /// The longest idle timeout a start may ask for
    /// (`session.max_idle_timeout`), ms.
    pub max_idle_timeout_ms: u64,
    /// The cap on every session's age (`session.max_age`), ms; `None`: no
    /// cap.
    pub max_age_ms: Option<u64>,
}

impl PolicyLimits {
    /// No limits at all (for views of no session).
    pub const NONE: PolicyLimits = PolicyLimits {
        default_idle_timeout_ms: u64::MAX,
        max_idle_timeout_ms: u64::MAX,
        max_age_ms: None,
    };

    /// The limits in `config`.
    pub fn from_config(config: &Config) -> PolicyLimits {
        let max_age = ms(config.session.max_age);
        PolicyLimits {
            default_idle_timeout_ms: ms(config.reaper.idle_timeout),
            max_idle_timeout_ms: ms(config.session.max_idle_timeout),
            max_age_ms: (max_age > 0).then_some(max_age),
        }
    }

    /// Checks what a start asks for against the limits: each value must be
    /// positive and within its maximum.
    pub fn check(&self, requested: Requested) -> Result<Requested, SessionError> {
        if let Some(idle) = requested.idle_timeout_ms
            && (idle == 0 || idle > self.max_idle_timeout_ms)
        {
            return Err(SessionError::InvalidPolicy(format!(
                "idleTimeout must be between 1 and {} ms (session.max_idle_timeout); got {idle}",
                self.max_idle_timeout_ms
            )));
        }
        if let Some(age) = requested.max_age_ms {
            let most = self.max_age_ms.unwrap_or(u64::MAX);
            if age == 0 || age > most {
                return Err(SessionError::InvalidPolicy(format!(
                    "maxAge must be between 1 and {most} ms (session.max_age); got {age}"
                )));
            }
        }
        Ok(requested)
    }

    /// The idle timeout in force for `record`: its own (capped by the
    /// maximum a start may ask for, so a hand edit cannot make it longer),
    /// or the default.
    pub fn idle_timeout_ms(&self, record: &SessionRecord) -> u64 {
        record
            .idle_timeout_ms
            .map_or(self.default_idle_timeout_ms, |own| {
                own.min(self.max_idle_timeout_ms.max(self.default_idle_timeout_ms))
            })
    }

    /// The maximum age in force for `record`: the shorter of its own and
    /// the cap. A record without `createdAt` (written by hand) has none.
    pub fn max_age_ms(&self, record: &SessionRecord) -> Option<u64> {
        if record.created_at == 0 {
            return None;
        }
        match (record.max_age_ms, self.max_age_ms) {
            (Some(own), Some(cap)) => Some(own.min(cap)),
            (own, cap) => own.or(cap),
        }
    }

    /// Since when `record`'s age counts: its `createdAt`, or its last
    /// heartbeat if that is earlier (a session starts before it beats, so
    /// only a hand edit puts `createdAt` later; then a session that keeps
    /// beating still meets its maximum age).
    pub fn started_at(record: &SessionRecord) -> u64 {
        record.created_at.min(record.last_heartbeat)
    }

    /// Whether `record`'s session is older than its maximum age at `now`.
    pub fn aged_out(&self, record: &SessionRecord, now: u64) -> bool {
        self.max_age_ms(record)
            .is_some_and(|age| now.saturating_sub(PolicyLimits::started_at(record)) > age)
    }

    /// When the Reaper stops `record`'s session if nothing changes, and why.
    pub fn deadline(&self, record: &SessionRecord) -> Deadline {
        let idle_timeout_ms = self.idle_timeout_ms(record);
        let max_age_ms = self.max_age_ms(record);
        let idle_at = record.last_heartbeat.saturating_add(idle_timeout_ms);
        let age_at = max_age_ms.map(|age| PolicyLimits::started_at(record).saturating_add(age));
        let (expires_at, decided_by) = match age_at {
            Some(age_at) if age_at <= idle_at => (age_at, DecidedBy::MaxAge),
            _ => (idle_at, DecidedBy::Idle),
        };
        Deadline {
            idle_timeout_ms,
            max_age_ms,
            expires_at,
            decided_by,
        }
    }
}

/// `duration` in whole milliseconds, saturating.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PolicyLimits {
        PolicyLimits {
            default_idle_timeout_ms: 1_000,
            max_idle_timeout_ms: 10_000,
            max_age_ms: Some(50_000),
        }
    }

    fn record(idle: Option<u64>, age: Option<u64>) -> SessionRecord {
        let mut record = SessionRecord::from_json(
            br#"{"vmId":"vessel-a-0","lastHeartbeat":100000,"createdAt":90000}"#,
            "a",
        )
        .unwrap();
        record.idle_timeout_ms = idle;
        record.max_age_ms = age;
        record
    }

    #[test]
    fn the_earlier_limit_decides() {
        let deadline = limits().deadline(&record(None, None));
        assert_eq!(deadline.expires_at, 101_000);
        assert_eq!(deadline.decided_by, DecidedBy::Idle);
        let deadline = limits().deadline(&record(Some(10_000), Some(5_000)));
        assert_eq!(deadline.expires_at, 95_000);
        assert_eq!(deadline.decided_by, DecidedBy::MaxAge);
    }

    #[test]
    fn hand_edited_values_stay_within_the_caps() {
        let deadline = limits().deadline(&record(Some(u64::MAX), Some(u64::MAX)));
        assert_eq!(deadline.idle_timeout_ms, 10_000);
        assert_eq!(deadline.max_age_ms, Some(50_000));
        assert_eq!(deadline.expires_at, 110_000);
    }

    #[test]
    fn a_created_at_in_the_future_does_not_escape_the_cap() {
        let mut future = record(None, None);
        future.created_at = u64::MAX;
        assert!(limits().aged_out(&future, 150_001));
        assert!(!limits().aged_out(&future, 150_000));
        assert_eq!(limits().deadline(&future).max_age_ms, Some(50_000));
    }

    #[test]
    fn requests_over_the_maxima_are_refused() {
        let ask = |idle, age| {
            limits().check(Requested {
                idle_timeout_ms: idle,
                max_age_ms: age,
            })
        };
        assert!(ask(Some(10_000), Some(50_000)).is_ok());
        assert!(ask(Some(10_001), None).is_err());
        assert!(ask(None, Some(50_001)).is_err());
        assert!(ask(Some(0), None).is_err());
    }
}
