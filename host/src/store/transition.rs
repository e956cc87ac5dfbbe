//! The state changes of a session record, decided in one place for both
//! stores. Each store reads the record, asks a transition what to do with
//! it, and applies the answer atomically: the embedded store inside one
//! write transaction, the Redis store with a compare-and-set that retries
//! when the record changed in between. The rules are therefore the same
//! for both by construction, and records are always rewritten by serde, so
//! fields Vessel does not know keep their exact values.

use super::{HeartbeatOutcome, InsertOutcome, SessionRecord, SessionStatus, StopClaim, StoreError};

/// What a transition does to the stored record.
#[derive(Debug, Clone, PartialEq)]
// Values live for one transition; boxing the record would only add an
// allocation to every store write.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// Leave it as it is.
    Keep,
    /// Store this record.
    Put(SessionRecord),
    /// Delete it.
    Delete,
}

/// A transition: from the current record (if any) to a change and the
/// answer the caller gets. It may be asked again (when a concurrent write
/// won the race), so it must not have effects of its own.
pub trait Transition<A>:
    Fn(Option<SessionRecord>) -> Result<(Change, A), StoreError> + Send + Sync + 'static
{
}

impl<A, F> Transition<A> for F where
    F: Fn(Option<SessionRecord>) -> Result<(Change, A), StoreError> + Send + Sync + 'static
{
}

/// Stores `record` unless there is a record already.
pub fn insert_new(record: SessionRecord) -> impl Transition<InsertOutcome> {
    move |current| {
        Ok(match current {
            Some(existing) => (Change::Keep, InsertOutcome::Exists(existing)),
            None => (Change::Put(record.clone()), InsertOutcome::Inserted),
        })
    }
}

/// Replaces the record with `record` if `owner` holds it.
pub fn replace_owned(record: SessionRecord, owner: String) -> impl Transition<bool> {
    move |current| {
        Ok(match current {
            Some(existing) if existing.owner == owner => (Change::Put(record.clone()), true),
            _ => (Change::Keep, false),
        })
    }
}

/// Deletes the record if `owner` holds it.
pub fn delete_owned(owner: String) -> impl Transition<bool> {
    move |current| {
        Ok(match current {
            Some(existing) if existing.owner == owner => (Change::Delete, true),
            _ => (Change::Keep, false),
        })
    }
}

/// Sets `lastHeartbeat` and `updatedAt` of an active session.
pub fn heartbeat(now_ms: u64) -> impl Transition<HeartbeatOutcome> {
    move |current| {
        Ok(match current {
            None => (Change::Keep, HeartbeatOutcome::Missing),
            Some(record) if record.status != SessionStatus::Active => {
                (Change::Keep, HeartbeatOutcome::NotActive(record))
            }
            Some(mut record) => {
                record.last_heartbeat = now_ms;
                record.updated_at = now_ms;
                (
                    Change::Put(record.clone()),
                    HeartbeatOutcome::Updated(record),
                )
            }
        })
    }
}

/// Renews the lease `owner` holds on a starting or stopping record.
pub fn renew_lease(owner: String, now_ms: u64) -> impl Transition<bool> {
    move |current| {
        Ok(match current {
            Some(mut record) if record.owner == owner && record.status != SessionStatus::Active => {
                record.updated_at = now_ms;
                (Change::Put(record), true)
            }
            _ => (Change::Keep, false),
        })
    }
}

/// Claims the record for stopping if the claim's condition holds.
pub fn claim_stop(claim: StopClaim) -> impl Transition<Option<SessionRecord>> {
    move |current| {
        Ok(match current {
            Some(mut record) if claim.condition.matches(&record) => {
                claim.apply(&mut record);
                (Change::Put(record.clone()), Some(record))
            }
            _ => (Change::Keep, None),
        })
    }
}
