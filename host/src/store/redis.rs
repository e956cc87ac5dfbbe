//! The Redis session store: `session:{userId}` holds the record's JSON.
//!
//! Every state change is one Lua script, which Redis runs atomically, so any
//! number of hosts can share one Redis. Scans use `SCAN` in batches (never
//! `KEYS`). The connection is made lazily and re-made after an outage; a
//! request during an outage fails fast with [`StoreError::Unavailable`].

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::{
    HeartbeatOutcome, InsertOutcome, InvalidRecord, ScanPage, SessionRecord, SessionStore,
    StopClaim, StopCondition, StoreError,
};
use crate::ids::UserId;

/// The prefix of session keys, part of the operators' data contract.
pub const KEY_PREFIX: &str = "session:";

/// The Redis key of `user`'s session.
pub fn session_key(user: &str) -> String {
    format!("{KEY_PREFIX}{user}")
}

/// Decodes the record at `key` in Lua: `nil` if there is none, `false` if
/// it is not a JSON object. A record without a string `status` is active.
/// Scripts answer a corrupt record with a `CORRUPT` error reply.
const LUA_PRELUDE: &str = r#"
local function load(key)
  local raw = redis.call('GET', key)
  if not raw then return nil, nil end
  local ok, rec = pcall(cjson.decode, raw)
  if not ok or type(rec) ~= 'table' then return false, raw end
  if type(rec.status) ~= 'string' then rec.status = 'active' end
  return rec, raw
end
local function corrupt(key)
  return redis.error_reply('CORRUPT session record ' .. key .. ' is not a JSON object')
end
"#;

/// ARGV: record JSON. Returns nil if stored, else the existing record.
const INSERT_NEW: &str = r#"
local raw = redis.call('GET', KEYS[1])
if raw then return raw end
redis.call('SET', KEYS[1], ARGV[1])
return false
"#;

/// ARGV: record JSON, owner. Returns 1 if replaced.
const REPLACE_OWNED: &str = r#"
local rec = load(KEYS[1])
if rec == false then return corrupt(KEYS[1]) end
if rec == nil or rec.owner ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#;

/// ARGV: owner. Returns 1 if deleted.
const DELETE_OWNED: &str = r#"
local rec = load(KEYS[1])
if rec == false then return corrupt(KEYS[1]) end
if rec == nil or rec.owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;

/// ARGV: now. Returns nil (missing), {'N', record} (not active) or
/// {'U', record} (updated).
const HEARTBEAT: &str = r#"
local rec, raw = load(KEYS[1])
if rec == nil then return false end
if rec == false then return corrupt(KEYS[1]) end
if rec.status ~= 'active' then return {'N', raw} end
rec.lastHeartbeat = tonumber(ARGV[1])
rec.updatedAt = tonumber(ARGV[1])
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out)
return {'U', out}
"#;

/// ARGV: owner, now. Returns 1 if the lease was renewed.
const RENEW_LEASE: &str = r#"
local rec = load(KEYS[1])
if rec == false then return corrupt(KEYS[1]) end
if rec == nil or rec.owner ~= ARGV[1] or rec.status == 'active' then return 0 end
rec.updatedAt = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(rec))
return 1
"#;

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

/// ARGV: condition (`active`, `idle`, `stuck`), cutoff, owner, now. The
/// same rule as `StopCondition::matches`. Returns the claimed record or nil.
const CLAIM_STOP: &str = r#"
local rec = load(KEYS[1])
if rec == nil then return false end
if rec == false then return corrupt(KEYS[1]) end
local cutoff = tonumber(ARGV[2])
local matched = false
if ARGV[1] == 'active' then
  matched = rec.status == 'active'
elseif ARGV[1] == 'idle' then
  matched = rec.status == 'active' and (tonumber(rec.lastHeartbeat) or 0) < cutoff
elseif ARGV[1] == 'stuck' then
  matched = rec.status ~= 'active' and (tonumber(rec.updatedAt) or 0) < cutoff
end
if not matched then return false end
rec.status = 'stopping'
rec.owner = ARGV[3]
rec.updatedAt = tonumber(ARGV[4])
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out)
return out
"#;

/// The store's scripts, loaded once.
struct Scripts {
    insert_new: Script,
    replace_owned: Script,
    delete_owned: Script,
    heartbeat: Script,
    claim_stop: Script,
    renew_lease: Script,
    try_lock: Script,
    unlock: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let with_prelude = |body: &str| Script::new(&format!("{LUA_PRELUDE}{body}"));
        Scripts {
            insert_new: Script::new(INSERT_NEW),
            replace_owned: with_prelude(REPLACE_OWNED),
            delete_owned: with_prelude(DELETE_OWNED),
            heartbeat: with_prelude(HEARTBEAT),
            claim_stop: with_prelude(CLAIM_STOP),
            renew_lease: with_prelude(RENEW_LEASE),
            try_lock: Script::new(TRY_LOCK),
            unlock: Script::new(UNLOCK),
        }
    }
}

/// Sessions in Redis.
pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Duration,
    scripts: Scripts,
}

fn map_error(error: RedisError) -> StoreError {
    let text = error.to_string();
    if let Some(at) = text.find("CORRUPT session record ") {
        let detail = &text[at + "CORRUPT session record ".len()..];
        let key = detail.split_whitespace().next().unwrap_or_default();
        return StoreError::Corrupt {
            user: key.strip_prefix(KEY_PREFIX).unwrap_or(key).to_string(),
            reason: "it is not a JSON object".to_string(),
        };
    }
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
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("invalid Redis URL {url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(map_error)?;
        Ok(RedisStore {
            connection,
            timeout,
            scripts: Scripts::new(),
        })
    }

    /// Runs one request within the store timeout.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis did not answer within {:?}",
                self.timeout
            ))),
        }
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

    async fn insert_new(&self, record: &SessionRecord) -> Result<InsertOutcome, StoreError> {
        let mut conn = self.connection.clone();
        let existing: Option<String> = self
            .bounded(
                self.scripts
                    .insert_new
                    .key(session_key(&record.user_id))
                    .arg(record.to_json())
                    .invoke_async(&mut conn),
            )
            .await?;
        match existing {
            None => Ok(InsertOutcome::Inserted),
            Some(raw) => Ok(InsertOutcome::Exists(parse(&raw, &record.user_id)?)),
        }
    }

    async fn replace_owned(&self, record: &SessionRecord, owner: &str) -> Result<bool, StoreError> {
        let mut conn = self.connection.clone();
        let replaced: i64 = self
            .bounded(
                self.scripts
                    .replace_owned
                    .key(session_key(&record.user_id))
                    .arg(record.to_json())
                    .arg(owner)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(replaced == 1)
    }

    async fn delete_owned(&self, user: &UserId, owner: &str) -> Result<bool, StoreError> {
        let mut conn = self.connection.clone();
        let deleted: i64 = self
            .bounded(
                self.scripts
                    .delete_owned
                    .key(session_key(user.as_str()))
                    .arg(owner)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn heartbeat(&self, user: &UserId, now_ms: u64) -> Result<HeartbeatOutcome, StoreError> {
        let mut conn = self.connection.clone();
        let answer: Option<(String, String)> = self
            .bounded(
                self.scripts
                    .heartbeat
                    .key(session_key(user.as_str()))
                    .arg(now_ms)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(match answer {
            None => HeartbeatOutcome::Missing,
            Some((tag, raw)) if tag == "U" => {
                HeartbeatOutcome::Updated(parse(&raw, user.as_str())?)
            }
            Some((_, raw)) => HeartbeatOutcome::NotActive(parse(&raw, user.as_str())?),
        })
    }

    async fn renew_lease(
        &self,
        user: &UserId,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.connection.clone();
        let renewed: i64 = self
            .bounded(
                self.scripts
                    .renew_lease
                    .key(session_key(user.as_str()))
                    .arg(owner)
                    .arg(now_ms)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(renewed == 1)
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
        let (mode, cutoff) = match claim.condition {
            StopCondition::Active => ("active", 0),
            StopCondition::IdleBefore(cutoff) => ("idle", cutoff),
            StopCondition::StuckBefore(cutoff) => ("stuck", cutoff),
        };
        let mut conn = self.connection.clone();
        let claimed: Option<String> = self
            .bounded(
                self.scripts
                    .claim_stop
                    .key(session_key(user.as_str()))
                    .arg(mode)
                    .arg(cutoff)
                    .arg(&claim.owner)
                    .arg(claim.now_ms)
                    .invoke_async(&mut conn),
            )
            .await?;
        claimed.map(|raw| parse(&raw, user.as_str())).transpose()
    }

    async fn scan(&self, cursor: Option<&str>, batch: usize) -> Result<ScanPage, StoreError> {
        let mut conn = self.connection.clone();
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
        let values: Vec<Option<String>> = self
            .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        for (key, value) in keys.into_iter().zip(values) {
            // A key deleted between SCAN and MGET is simply gone.
            let Some(raw) = value else { continue };
            let user = key.strip_prefix(KEY_PREFIX).unwrap_or(&key);
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
