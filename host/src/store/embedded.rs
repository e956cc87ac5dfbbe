//! The embedded session store: a redb database file on the local disk.
//!
//! redb is a pure-Rust, ACID, crash-safe key-value store with serialisable
//! write transactions and no server to run, which is what a single-machine
//! default needs: state survives a restart of the host (or of the machine),
//! and every [`SessionStore`] method is one write transaction, hence atomic.
//! Records are stored as the same JSON as in Redis, keyed by user id.
//!
//! One database file belongs to one host process; several hosts must share
//! Redis instead.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::transition::{self, Change, Transition};
use super::{
    Capacity, HeartbeatOutcome, InsertOutcome, InvalidRecord, Over, ScanPage, SessionRecord,
    SessionStore, StopClaim, StoreError,
};
use crate::ids::UserId;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// Sessions in a local redb database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn parse(bytes: &[u8], user: &str) -> Result<SessionRecord, StoreError> {
    SessionRecord::from_json(bytes, user).map_err(|e| StoreError::Corrupt {
        user: user.to_string(),
        reason: e.to_string(),
    })
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let db = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(SESSIONS).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    /// Runs `f` on a blocking thread, as redb's calls block on disk I/O.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// Reads `user`'s record in a write transaction, lets `decide` change it
    /// or leave it, and commits.
    async fn update<T: Send + 'static>(
        &self,
        user: &str,
        decide: impl Transition<T>,
    ) -> Result<T, StoreError> {
        self.update_within(user, Capacity::NONE, decide)
            .await?
            .map_err(|_| StoreError::Backend("a limit applied without a capacity".into()))
    }

    /// As [`EmbeddedStore::update`]; a change that would create a record
    /// beyond `capacity` is not made, and says which limit it would exceed.
    async fn update_within<T: Send + 'static>(
        &self,
        user: &str,
        capacity: Capacity,
        decide: impl Transition<T>,
    ) -> Result<Result<T, Over>, StoreError> {
        let user = user.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let answer = {
                let mut table = txn.open_table(SESSIONS).map_err(backend)?;
                let current = match table.get(user.as_str()).map_err(backend)? {
                    Some(bytes) => Some(parse(bytes.value(), &user)?),
                    None => None,
                };
                let creating = current.is_none();
                let (change, answer) = decide(current)?;
                if let (Change::Put(record), true) = (&change, creating)
                    && let Some(over) = exceeds(&table, record, capacity)?
                {
                    return Ok(Err(over));
                }
                match change {
                    Change::Keep => {}
                    Change::Put(record) => {
                        table
                            .insert(user.as_str(), record.to_json().as_bytes())
                            .map_err(backend)?;
                    }
                    Change::Delete => {
                        table.remove(user.as_str()).map_err(backend)?;
                    }
                }
                answer
            };
            txn.commit().map_err(backend)?;
            Ok(Ok(answer))
        })
        .await
    }
}

/// Which limit of `capacity` a new `record` would exceed in `table`, if
/// any. The per-starter count reads every record: the embedded store serves
/// one host, whose sessions number in the thousands at most.
fn exceeds(
    table: &redb::Table<&str, &[u8]>,
    record: &SessionRecord,
    capacity: Capacity,
) -> Result<Option<Over>, StoreError> {
    if let Some(limit) = capacity.fleet
        && table.len().map_err(backend)? >= limit
    {
        return Ok(Some(Over::Fleet));
    }
    if let (Some(limit), Some(starter)) = (capacity.per_starter, &record.started_by) {
        let mut held = 0;
        for entry in table.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            let stored: serde_json::Value =
                serde_json::from_slice(value.value()).unwrap_or_default();
            if stored["startedBy"].as_str() == Some(starter.as_str()) {
                held += 1;
            }
        }
        if held >= limit {
            return Ok(Some(Over::Starter));
        }
    }
    Ok(None)
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn get(&self, user: &UserId) -> Result<Option<SessionRecord>, StoreError> {
        let user = user.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SESSIONS).map_err(backend)?;
            match table.get(user.as_str()).map_err(backend)? {
                Some(bytes) => parse(bytes.value(), &user).map(Some),
                None => Ok(None),
            }
        })
        .await
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
        self.update(user.as_str(), transition::heartbeat(now_ms))
            .await
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

    async fn try_lock(&self, _name: &str, _holder: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        // The database file is locked by this process: no other host can
        // share it, so this host always holds every lock.
        Ok(true)
    }

    async fn unlock(&self, _name: &str, _holder: &str) -> Result<(), StoreError> {
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
        let cursor = cursor.map(str::to_string);
        let batch = batch.max(1);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SESSIONS).map_err(backend)?;
            let range = match &cursor {
                Some(after) => table.range::<&str>((
                    std::ops::Bound::Excluded(after.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => table.range::<&str>(..),
            }
            .map_err(backend)?;
            let mut page = ScanPage::default();
            let mut last = None;
            let mut count = 0;
            for entry in range {
                let (key, value) = entry.map_err(backend)?;
                let user = key.value().to_string();
                match parse(value.value(), &user) {
                    Ok(record) => page.records.push(record),
                    Err(e) => page.invalid.push(InvalidRecord {
                        key: user.clone(),
                        reason: e.to_string(),
                    }),
                }
                last = Some(user);
                count += 1;
                if count == batch {
                    break;
                }
            }
            page.next = if count == batch { last } else { None };
            Ok(page)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(backend))
            .await
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
