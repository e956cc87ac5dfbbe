//! Session storage: the [`SessionStore`] trait and its two implementations,
//! Redis ([`redis::RedisStore`]) for one or many hosts, and an embedded
//! database ([`embedded::EmbeddedStore`]) for one machine; and
//! [`metered::MeteredStore`], which counts either one's failures.
//!
//! Every method that moves a session from one state to another is atomic in
//! the store, so that several requests, Reapers or hosts racing on one user
//! cannot both win: one creator per user, heartbeats that never resurrect a
//! stopped session, and stops that are claimed before they are carried out.

pub mod embedded;
pub mod metered;
pub mod record;
pub mod redis;
pub mod tombstone;
pub mod transition;

use async_trait::async_trait;

pub use record::{RecordError, SessionRecord, SessionStatus, StartStep, StepBegun};
pub use tombstone::{StopCause, StopReason, Stopper, Tombstone};

use crate::ids::UserId;

/// Why a store request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time. The request
    /// may be retried; the host keeps trying to reconnect.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be parsed (e.g. after a bad hand edit).
    #[error("the session record of {user} is not valid ({reason}); fix or delete it")]
    Corrupt {
        /// The user whose record it is.
        user: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other store failure.
    #[error("session store error: {0}")]
    Backend(String),
}

/// The answer to [`SessionStore::insert_new`].
#[derive(Debug, Clone, PartialEq)]
// Short-lived; boxing the record would only add an allocation to a start.
#[allow(clippy::large_enum_variant)]
pub enum InsertOutcome {
    /// The record was stored; the caller owns the session's start.
    Inserted,
    /// A record already exists (returned as stored).
    Exists(SessionRecord),
    /// There was no record, but the store holds as many sessions as the
    /// fleet's capacity allows; nothing was stored.
    Full,
    /// There was no record, but the starter holds as many sessions as its
    /// own limit allows; nothing was stored.
    StarterFull,
}

/// Which limit a new record would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// [`Capacity::fleet`].
    Fleet,
    /// [`Capacity::per_starter`].
    Starter,
}

impl Over {
    /// The answer an insert gives for it.
    pub(crate) fn outcome(self) -> InsertOutcome {
        match self {
            Over::Fleet => InsertOutcome::Full,
            Over::Starter => InsertOutcome::StarterFull,
        }
    }
}

/// The limits a new record must fit in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// The most records the store may hold.
    pub fleet: Option<u64>,
    /// The most records with the new record's `startedBy` the store may
    /// hold (only for a record that has one).
    pub per_starter: Option<u64>,
}

impl Capacity {
    /// No limit at all.
    pub const NONE: Capacity = Capacity {
        fleet: None,
        per_starter: None,
    };
}

/// The answer to [`SessionStore::heartbeat`].
#[derive(Debug, Clone, PartialEq)]
pub enum HeartbeatOutcome {
    /// The session was active; its `lastHeartbeat` is now the given time.
    Updated(SessionRecord),
    /// The session exists but is starting or stopping; nothing changed.
    NotActive(SessionRecord),
    /// There is no session.
    Missing,
}

/// Which sessions a stop claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCondition {
    /// An active session (a user's stop).
    Active,
    /// The active session started at this time (`createdAt`) and no other:
    /// a start that found its VM gone ends that session, never one that
    /// replaced it meanwhile.
    ActiveCreatedAt(u64),
    /// An active session whose `lastHeartbeat` is before this time (the
    /// Reaper's idle sweep).
    IdleBefore(u64),
    /// A starting or stopping session whose `updatedAt` is before this time:
    /// its holder stopped renewing its lease (the host died), or its stop
    /// failed and waits for a retry.
    StuckBefore(u64),
}

impl StopCondition {
    /// Whether `record` may be claimed under this condition. The embedded
    /// store applies this directly; the Redis store's claim script is the
    /// same rule in Lua.
    pub fn matches(self, record: &SessionRecord) -> bool {
        match self {
            StopCondition::Active => record.status == SessionStatus::Active,
            StopCondition::ActiveCreatedAt(created_at) => {
                record.status == SessionStatus::Active && record.created_at == created_at
            }
            StopCondition::IdleBefore(cutoff) => {
                record.status == SessionStatus::Active && record.last_heartbeat < cutoff
            }
            StopCondition::StuckBefore(cutoff) => {
                record.status != SessionStatus::Active && record.updated_at < cutoff
            }
        }
    }
}

/// A request to take a session for stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopClaim {
    /// The claiming operation's owner token.
    pub owner: String,
    /// The current time, written as `updatedAt`.
    pub now_ms: u64,
    /// Which sessions may be taken.
    pub condition: StopCondition,
}

impl StopClaim {
    /// The record after a successful claim.
    pub fn apply(&self, record: &mut SessionRecord) {
        record.status = SessionStatus::Stopping;
        record.owner = self.owner.clone();
        record.updated_at = self.now_ms;
    }
}

/// A record that could not be parsed during a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRecord {
    /// The store key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One batch of a scan over all sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanPage {
    /// The records of this batch.
    pub records: Vec<SessionRecord>,
    /// Records that could not be parsed.
    pub invalid: Vec<InvalidRecord>,
    /// Where the next batch starts; `None` when the scan is complete.
    pub next: Option<String>,
}

/// Where sessions are stored. Implementations must make each method atomic
/// with respect to every other method, across all hosts sharing the store.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The session of `user`, if any.
    async fn get(&self, user: &UserId) -> Result<Option<SessionRecord>, StoreError>;

    /// Stores `record` unless `record.user_id` has a session already, or
    /// the store holds as many sessions as `capacity` allows (in all, or
    /// started by `record.started_by`). The counts and the insert are one
    /// atomic step across all hosts sharing the store, so concurrent starts
    /// never exceed a capacity together.
    async fn insert_new(
        &self,
        record: &SessionRecord,
        capacity: Capacity,
    ) -> Result<InsertOutcome, StoreError>;

    /// Replaces the session with `record` if the stored one is held by
    /// `owner`. Returns whether it did.
    async fn replace_owned(&self, record: &SessionRecord, owner: &str) -> Result<bool, StoreError>;

    /// Deletes the session of `user` if it is held by `owner`. Returns
    /// whether it did.
    async fn delete_owned(&self, user: &UserId, owner: &str) -> Result<bool, StoreError>;

    /// Sets `lastHeartbeat` (and `updatedAt`) of an active session to
    /// `now_ms`. Never creates a record and never touches one that is
    /// starting or stopping.
    async fn heartbeat(&self, user: &UserId, now_ms: u64) -> Result<HeartbeatOutcome, StoreError>;

    /// Renews the lease of the start or stop that `owner` holds on `user`'s
    /// session: sets `updatedAt` to `now_ms` if the record is starting or
    /// stopping and held by `owner`. Returns whether it did; `false` means
    /// the operation was taken over (or the record is gone).
    async fn renew_lease(
        &self,
        user: &UserId,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Takes the lock `name` for `holder` for `ttl_ms`, or extends it if
    /// `holder` has it already. Returns whether `holder` has it now. Used so
    /// that one host at a time reconciles; a store for one host always
    /// grants it.
    async fn try_lock(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError>;

    /// Releases the lock `name` if `holder` has it.
    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Takes the session of `user` for stopping if `claim.condition` holds:
    /// marks it `stopping`, held by `claim.owner`, and returns it. `None`
    /// if there is no session or the condition does not hold.
    async fn claim_stop(
        &self,
        user: &UserId,
        claim: &StopClaim,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Reads one batch of about `batch` sessions starting at `cursor`
    /// (`None` for the first batch), without blocking the store.
    async fn scan(&self, cursor: Option<&str>, batch: usize) -> Result<ScanPage, StoreError>;

    /// Keeps `tombstone` as the latest stopped session of its user until
    /// its `expiresAt`, replacing any earlier one. Tombstones are kept
    /// apart from session records: no scan, count or claim sees them.
    async fn put_tombstone(&self, tombstone: &Tombstone) -> Result<(), StoreError>;

    /// The latest tombstone of `user` that has not expired at `now_ms`.
    async fn get_tombstone(
        &self,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Tombstone>, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short name for logs and `/healthz` (`redis` or `embedded`).
    fn kind(&self) -> &'static str;
}
