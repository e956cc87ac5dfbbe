//! The Redis session store: `session:{userId}` holds the record's JSON.
//!
//! Every state change is a compare-and-set: the record is read, the change
//! is decided in Rust (by the same [`transition`]s as the embedded store),
//! and a Lua script writes it only if the record is still exactly what was
//! read, else the change is decided again on the new record. So any number
//! of hosts can share one Redis, and records are always rewritten by serde:
//! fields Vessel does not know keep their exact values (a Lua JSON round
//! trip would turn `[]` into `{}` and round long numbers). Scans use `SCAN` in batches (never
//! `KEYS`). The connection is made lazily and re-made after an outage; a
//! request during an outage fails fast with [`StoreError::Unavailable`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::transition::{self, Change, Transition};
use super::{
    Capacity, HeartbeatOutcome, InsertOutcome, InvalidRecord, Over, ScanPage, SessionRecord,
    SessionStore, StopClaim, StoreError, Tombstone,
};
use crate::ids::UserId;

/// The prefix of session keys, part of the operators' data contract.
pub const KEY_PREFIX: &str = "session:";

/// The Redis key of `user`'s session.
pub fn session_key(user: &str) -> String {
    format!("{KEY_PREFIX}{user}")
}

/// KEYS: the session, the index of sessions, the index of the starter's
/// sessions. ARGV: `absent` or `equals`, the expected JSON, `set` or `del`,
/// the new JSON, the user id, the fleet capacity (0: none), the session key
/// prefix, the starter's capacity (0: none), `1` if the record has a
/// starter. Applies the change only if the record is absent (or equal to
/// the expected JSON), and keeps the indexes (sets of the user ids that
/// have a record) in step. Returns 1 if it applied the change, 0 if the
/// record changed, 2 if a new record would exceed the fleet's capacity, 3
/// if it would exceed the starter's. At a capacity it first drops index
/// members whose record is gone (deleted by hand), so counts cannot leak.
const COMPARE_AND_SET: &str = r#"
local current = redis.call('GET', KEYS[1])
local function full(set, limit)
  if limit <= 0 or redis.call('SISMEMBER', set, ARGV[5]) == 1 then return false end
  if redis.call('SCARD', set) < limit then return false end
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('EXISTS', ARGV[7] .. member) == 0 then
      redis.call('SREM', set, member)
    end
  end
  return redis.call('SCARD', set) >= limit
end
if ARGV[1] == 'absent' then
  if current then return 0 end
  if ARGV[3] == 'set' then
    if full(KEYS[2], tonumber(ARGV[6])) then return 2 end
    if ARGV[9] == '1' and full(KEYS[3], tonumber(ARGV[8])) then return 3 end
  end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[3] == 'set' then
  redis.call('SET', KEYS[1], ARGV[4])
  redis.call('SADD', KEYS[2], ARGV[5])
  if ARGV[9] == '1' then redis.call('SADD', KEYS[3], ARGV[5]) end
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[5])
  if ARGV[9] == '1' then redis.call('SREM', KEYS[3], ARGV[5]) end
end
return 1
"#;

/// KEYS: the session. ARGV: the time (ms), the user, then the VM ids the
/// user's VM may have. The heartbeat of the common case in one round trip:
/// an active record bound to its key (its `userId` the key's user, its
/// `vmId` one of the user's) gets its top-level `lastHeartbeat` and
/// `updatedAt` set in place, by string surgery rather than re-encoding in
/// Lua (which would reorder and reformat fields Vessel does not know).
///
/// The record is decoded once, for its fields; the surgery then needs no
/// second decode, because it only runs where the text leaves no doubt which
/// occurrence is the top-level one: no `\u` escape anywhere (the only way a
/// key made of letters can be spelled other than literally), so the decoded
/// top-level key is written out literally; the literal `"lastHeartbeat"`
/// (and `"updatedAt"`) occurs exactly once, so that occurrence is it (a
/// look-alike nested in other data, or in a string, makes two); and it is
/// followed by `:`, digits and `,` or `}`, so the digits are its whole value.
/// Returns `{"updated", json}`, `{"missing"}`, or `{"slow"}` for anything
/// else (not active, edited by hand into an unusual shape, corrupt), which
/// the caller decides through the compare-and-set path, with the same
/// rules as every other change.
const HEARTBEAT: &str = r#"
local current = redis.call('GET', KEYS[1])
if not current then return {'missing'} end
local find = string.find
if find(current, '\\u', 1, true) then return {'slow'} end
local ok, record = pcall(cjson.decode, current)
if not ok or type(record) ~= 'table' or record.status ~= 'active' or record.userId ~= ARGV[2]
  or type(record.lastHeartbeat) ~= 'number' or type(record.updatedAt) ~= 'number' then
  return {'slow'}
end
local owned = false
for i = 3, #ARGV do
  if record.vmId == ARGV[i] then owned = true end
end
if not owned then return {'slow'} end
local function once(key)
  local at = find(current, key, 1, true)
  if not at or find(current, key, at + 1, true) then return nil end
  return at
end
local beat = once('"lastHeartbeat"')
local stamp = once('"updatedAt"')
if not beat or not stamp then return {'slow'} end
-- The value's last digit + 1: the ',' or '}' after it.
local _, beat_end = find(current, '^:%d+[,}]', beat + 15)
local _, stamp_end = find(current, '^:%d+[,}]', stamp + 11)
if not beat_end or not stamp_end then return {'slow'} end
local now = ARGV[1]
local stamped
if beat < stamp then
  stamped = string.sub(current, 1, beat + 15) .. now .. string.sub(current, beat_end, stamp + 11)
    .. now .. string.sub(current, stamp_end)
else
  stamped = string.sub(current, 1, stamp + 11) .. now .. string.sub(current, stamp_end, beat + 15)
    .. now .. string.sub(current, beat_end)
end
redis.call('SET', KEYS[1], stamped)
return {'updated', stamped}
"#;

/// The set of user ids that have a session record: how the capacity is
/// counted without scanning. Not a session key (`SCAN session:*` never sees
/// it). Sweeps add the users they find, so records written by hand are
/// counted too.
pub const INDEX_KEY: &str = "vessel:sessions";

/// The set of user ids whose session one starter (`startedBy`) started.
pub fn starter_index_key(starter: &str) -> String {
    format!("{INDEX_KEY}:by:{starter}")
}

/// How many times a change is decided again after losing a race before the
/// store gives up (only under extreme contention on one user).
const MAX_ATTEMPTS: usize = 100;

/// KEYS: the lock. ARGV: holder, ttl in ms. Returns 1 if the holder has it.
const TRY_LOCK: &str = r#"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"#;

/// KEYS: the lock. ARGV: holder. Deletes the lock if the holder has it.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// The prefix of lock keys (not sessions: `SCAN session:*` never sees them).
pub const LOCK_PREFIX: &str = "vessel:lock:";

/// The prefix of tombstone keys, `vessel:tombstone:{userId}`: outside
/// `session:*`, so that scans and counts of sessions never see them.
pub const TOMBSTONE_PREFIX: &str = "vessel:tombstone:";

/// The store's scripts, loaded once.
struct Scripts {
    compare_and_set: Script,
    heartbeat: Script,
    try_lock: Script,
    unlock: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            compare_and_set: Script::new(COMPARE_AND_SET),
            heartbeat: Script::new(HEARTBEAT),
            try_lock: Script::new(TRY_LOCK),
            unlock: Script::new(UNLOCK),
        }
    }
}

/// Sessions in Redis.
pub struct RedisStore {
    connection: ConnectionManager,
    /// Scans (a Reaper sweep, a reconciliation pass, a listing) read on a
    /// connection of their own: a page's large reply never holds up the
    /// answer to a request queued behind it on the shared connection.
    /// (Whoever first uses a connection spawns its reader; for background
    /// work that is a thread at the host's priority, see
    /// [`crate::background`].)
    scan_connection: ConnectionManager,
    timeout: Duration,
    scripts: Scripts,
    /// Whether the last request reached Redis, so that an outage is logged
    /// once when it begins and once when it ends, not per request.
    reachable: AtomicBool,
}

fn map_error(error: RedisError) -> StoreError {
    let text = error.to_string();
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        StoreError::Unavailable(error.to_string())
    } else {
        // Redis answers LOADING while it replays its AOF after a restart.
        if text.contains("LOADING") || text.contains("busy loading") {
            StoreError::Unavailable(text)
        } else {
            StoreError::Backend(text)
        }
    }
}

fn parse(raw: &str, user: &str) -> Result<SessionRecord, StoreError> {
    SessionRecord::from_json(raw.as_bytes(), user).map_err(|e| StoreError::Corrupt {
        user: user.to_string(),
        reason: e.to_string(),
    })
}

impl RedisStore {
    /// A store for `url`. No connection is made yet: the first request
    /// connects, so a host can start while Redis is down. Each request is
    /// bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            let shown = crate::redact::url(url);
            StoreError::Backend(format!("invalid Redis URL {shown:?}: {e}"))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = client
            .get_connection_manager_lazy(config.clone())
            .map_err(map_error)?;
        let scan_connection = client
            .get_connection_manager_lazy(config)
            .map_err(map_error)?;
        Ok(RedisStore {
            connection,
            scan_connection,
            timeout,
            scripts: Scripts::new(),
            reachable: AtomicBool::new(true),
        })
    }

    /// Runs one request within the store timeout.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {:?}",
                self.timeout
            ))),
        };
        match &result {
            Err(StoreError::Unavailable(reason)) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(event = "store.unavailable", %reason,
                        "Redis is unreachable: requests answer 503 until it returns");
                }
            }
            _ => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!(event = "store.recovered", "Redis is reachable again");
                }
            }
        }
        result
    }

    /// Reads `user`'s record, lets `decide` change it, and writes the change
    /// if the record is still as read; otherwise decides again on the new
    /// record. An answer that changes nothing stands on the record as read.
    async fn update<A>(&self, user: &str, decide: impl Transition<A>) -> Result<A, StoreError> {
        self.update_within(user, Capacity::NONE, decide)
            .await?
            .map_err(|_| StoreError::Backend("a limit applied without a capacity".into()))
    }

    /// As [`RedisStore::update`]; a change that would create a record
    /// beyond `capacity` is not made, and says which limit it would exceed.
    async fn update_within<A>(
        &self,
        user: &str,
        capacity: Capacity,
        decide: impl Transition<A>,
    ) -> Result<Result<A, Over>, StoreError> {
        let key = session_key(user);
        for _ in 0..MAX_ATTEMPTS {
            let mut conn = self.connection.clone();
            let raw: Option<String> = self
                .bounded(redis::cmd("GET").arg(&key).query_async(&mut conn))
                .await?;
            let current = raw.as_deref().map(|raw| parse(raw, user)).transpose()?;
            let current_starter = current.as_ref().and_then(|r| r.started_by.clone());
            let (change, answer) = decide(current)?;
            // The starter index the written record belongs to (or the
            // deleted one belonged to).
            let (action, new, starter) = match change {
                Change::Keep => return Ok(Ok(answer)),
                Change::Put(record) => ("set", record.to_json(), record.started_by),
                Change::Delete => ("del", String::new(), current_starter),
            };
            let (mode, expected) = match &raw {
                None => ("absent", ""),
                Some(raw) => ("equals", raw.as_str()),
            };
            let applied: i64 = self
                .bounded(
                    self.scripts
                        .compare_and_set
                        .key(&key)
                        .key(INDEX_KEY)
                        .key(starter_index_key(starter.as_deref().unwrap_or("")))
                        .arg(mode)
                        .arg(expected)
                        .arg(action)
                        .arg(new)
                        .arg(user)
                        .arg(capacity.fleet.unwrap_or(0))
                        .arg(KEY_PREFIX)
                        .arg(capacity.per_starter.unwrap_or(0))
                        .arg(if starter.is_some() { "1" } else { "0" })
                        .invoke_async(&mut conn),
                )
                .await?;
            match applied {
                1 => return Ok(Ok(answer)),
                2 => return Ok(Err(Over::Fleet)),
                3 => return Ok(Err(Over::Starter)),
                _ => {}
            }
            // Another writer changed the record in between: decide again.
            tokio::task::yield_now().await;
        }
        Err(StoreError::Backend(format!(
            "the record of {user} changed under {MAX_ATTEMPTS} attempts in a row; try again"
        )))
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn get(&self, user: &UserId) -> Result<Option<SessionRecord>, StoreError> {
        let mut conn = self.connection.clone();
        let raw: Option<String> = self
            .bounded(
                redis::cmd("GET")
                    .arg(session_key(user.as_str()))
                    .query_async(&mut conn),
            )
            .await?;
        raw.map(|raw| parse(&raw, user.as_str())).transpose()
    }

    async fn insert_new(
        &self,
        record: &SessionRecord,
        capacity: Capacity,
    ) -> Result<InsertOutcome, StoreError> {
        let user = record.user_id.clone();
        let answer = self
            .update_within(&user, capacity, transition::insert_new(record.clone()))
            .await?;
        Ok(answer.unwrap_or_else(Over::outcome))
    }

    async fn replace_owned(&self, record: &SessionRecord, owner: &str) -> Result<bool, StoreError> {
        let user = record.user_id.clone();
        self.update(
            &user,
            transition::replace_owned(record.clone(), owner.to_string()),
        )
        .await
    }

    async fn delete_owned(&self, user: &UserId, owner: &str) -> Result<bool, StoreError> {
        self.update(user.as_str(), transition::delete_owned(owner.to_string()))
            .await
    }

    async fn heartbeat(&self, user: &UserId, now_ms: u64) -> Result<HeartbeatOutcome, StoreError> {
        let mut conn = self.connection.clone();
        let answer: Vec<String> = self
            .bounded(
                self.scripts
                    .heartbeat
                    .key(session_key(user.as_str()))
                    .arg(now_ms)
                    .arg(user.as_str())
                    .arg(user.vm_id())
                    .arg(user.legacy_vm_id())
                    .invoke_async(&mut conn),
            )
            .await?;
        match answer.first().map(String::as_str) {
            Some("missing") => Ok(HeartbeatOutcome::Missing),
            Some("updated") => {
                let raw = answer.get(1).map(String::as_str).unwrap_or_default();
                Ok(HeartbeatOutcome::Updated(parse(raw, user.as_str())?))
            }
            // Anything unusual: the general path, with its rules.
            _ => {
                self.update(user.as_str(), transition::heartbeat(now_ms))
                    .await
            }
        }
    }

    async fn renew_lease(
        &self,
        user: &UserId,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.update(
            user.as_str(),
            transition::renew_lease(owner.to_string(), now_ms),
        )
        .await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let mut conn = self.connection.clone();
        let held: i64 = self
            .bounded(
                self.scripts
                    .try_lock
                    .key(format!("{LOCK_PREFIX}{name}"))
                    .arg(holder)
                    .arg(ttl_ms.max(1))
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(held == 1)
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.connection.clone();
        let _: i64 = self
            .bounded(
                self.scripts
                    .unlock
                    .key(format!("{LOCK_PREFIX}{name}"))
                    .arg(holder)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn claim_stop(
        &self,
        user: &UserId,
        claim: &StopClaim,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.update(user.as_str(), transition::claim_stop(claim.clone()))
            .await
    }

    async fn scan(&self, cursor: Option<&str>, batch: usize) -> Result<ScanPage, StoreError> {
        let mut conn = self.scan_connection.clone();
        let (next, keys): (String, Vec<String>) = self
            .bounded(
                redis::cmd("SCAN")
                    .arg(cursor.unwrap_or("0"))
                    .arg("MATCH")
                    .arg(format!("{KEY_PREFIX}*"))
                    .arg("COUNT")
                    .arg(batch.max(1))
                    .query_async(&mut conn),
            )
            .await?;
        let mut page = ScanPage {
            next: (next != "0").then_some(next),
            ..ScanPage::default()
        };
        if keys.is_empty() {
            return Ok(page);
        }
        // The records and the index in one round trip. Every scanned user
        // joins the index, so that records written by hand (or before the
        // index existed) count toward the capacity; one whose record is
        // deleted between SCAN and MGET is dropped again by the next insert
        // that finds the store full.
        let users: Vec<&str> = keys
            .iter()
            .map(|key| key.strip_prefix(KEY_PREFIX).unwrap_or(key))
            .collect();
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(&keys);
        pipe.cmd("SADD").arg(INDEX_KEY).arg(&users).ignore();
        let (values,): (Vec<Option<String>>,) = self.bounded(pipe.query_async(&mut conn)).await?;
        for ((key, user), value) in keys.iter().zip(&users).zip(values) {
            // A key deleted between SCAN and MGET is simply gone.
            let Some(raw) = value else { continue };
            match parse(&raw, user) {
                Ok(record) => page.records.push(record),
                Err(e) => page.invalid.push(InvalidRecord {
                    key: key.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        Ok(page)
    }

    async fn put_tombstone(&self, tombstone: &Tombstone) -> Result<(), StoreError> {
        let mut conn = self.connection.clone();
        // Redis forgets it once its retention has passed on Redis's clock;
        // a read also checks `expiresAt` against the host's.
        let ttl_ms = tombstone
            .expires_at
            .saturating_sub(tombstone.stopped_at)
            .max(1);
        let _: () = self
            .bounded(
                redis::cmd("SET")
                    .arg(format!("{TOMBSTONE_PREFIX}{}", tombstone.user_id))
                    .arg(tombstone.to_json())
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn get_tombstone(
        &self,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Tombstone>, StoreError> {
        let mut conn = self.connection.clone();
        let raw: Option<String> = self
            .bounded(
                redis::cmd("GET")
                    .arg(format!("{TOMBSTONE_PREFIX}{user}"))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(raw
            .and_then(|raw| Tombstone::from_json(raw.as_bytes(), user))
            .filter(|tombstone| !tombstone.expired(now_ms)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection.clone();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
