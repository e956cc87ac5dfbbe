//! The embedded session store: a redb database file on the local disk.
//!
//! redb is a pure-Rust, ACID, crash-safe key-value store with serialisable
//! write transactions and no server to run, which is what a single-machine
//! default needs: state survives a restart of the host (or of the machine).
//! Records are stored as the same JSON as in Redis, keyed by user id.
//!
//! Every change is one [`Transition`] applied by the [`writer`] thread, which
//! commits the changes queued meanwhile in one durable write transaction
//! (group commit): each change reads what the ones before it wrote, as if it
//! had a transaction of its own, so every [`SessionStore`] method is atomic;
//! and no caller is answered before the commit holding its change is on
//! disk. Reads use read transactions, which see only committed (durable)
//! data; a point read (a record, a tombstone, the health ping) runs on the
//! caller's thread, as it never waits for a commit and takes microseconds,
//! while scans run on the blocking pool.
//!
//! One database file belongs to one host process; several hosts must share
//! Redis instead.

mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use self::writer::{Job, SessionsTable, Writer};
use super::transition::{self, Change, Transition};
use super::{
    Capacity, HeartbeatOutcome, InsertOutcome, InvalidRecord, Over, ScanPage, SessionRecord,
    SessionStore, StopClaim, StoreError, Tombstone,
};
use crate::ids::UserId;

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// Tombstones of stopped sessions, keyed by user id: a table apart, so
/// that scans and counts of sessions never see them.
const TOMBSTONES: TableDefinition<&str, &[u8]> = TableDefinition::new("tombstones");

/// The most expired tombstones one write prunes, so that pruning a long
/// backlog never makes one stop slow.
const PRUNE_PER_WRITE: usize = 32;

/// Sessions in a local redb database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
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
    /// Opens (creating if needed) the database at `path`, and starts its
    /// writer thread. The file is closed once every clone of the store is
    /// dropped and the writes queued by then are answered.
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
        txn.open_table(TOMBSTONES).map_err(backend)?;
        txn.commit().map_err(backend)?;
        let db = Arc::new(db);
        let writer = Arc::new(Writer::start(db.clone())?);
        Ok(EmbeddedStore { db, writer })
    }

    /// How many write transactions this store has committed since it was
    /// opened. Concurrent changes share commits, so under load this grows
    /// slower than the number of changes; a change that writes nothing
    /// (e.g. a heartbeat of a missing session) commits nothing.
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    /// Runs the point read `f` (one record or none: a read transaction
    /// and a few pages) on the calling thread. redb serves the pages of
    /// recent reads from its own cache, and a read transaction never
    /// waits for a commit's flush (it reads the last commit), so this
    /// takes a few microseconds; on the blocking pool the hand-off to a
    /// thread and back cost several times the read itself. A read of pages
    /// not in the cache reads them from the file, as the local disk this
    /// store is for answers (the operating system's page cache, mostly).
    fn read_now<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.db)
    }

    /// Runs `f` on a blocking thread, as redb's calls block on disk I/O:
    /// for scans, which read many pages, and writes outside the writer.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// Reads `user`'s record, lets `decide` change it or leave it, and
    /// answers once the change is durable.
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
        let (reply, answer) = oneshot::channel();
        self.writer.submit(Box::new(Update {
            user: user.to_string(),
            capacity,
            decide,
            decided: None,
            reply,
        }))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the store's writer dropped a write".into()))?
    }
}

/// What an [`Update`] answers: the transition's answer, or the limit its
/// new record would exceed.
type Answer<T> = Result<Result<T, Over>, StoreError>;

/// One transition on one user's record, as a [`Job`] of the writer.
struct Update<T, F> {
    user: String,
    capacity: Capacity,
    decide: F,
    /// The answer decided when the job was applied.
    decided: Option<Answer<T>>,
    reply: oneshot::Sender<Answer<T>>,
}

impl<T, F> Update<T, F>
where
    F: Transition<T>,
{
    /// Decides the change from the current record without writing, so
    /// that a decision that fails leaves the table as it was.
    fn decide(&self, table: &SessionsTable<'_>) -> Result<Result<(Change, T), Over>, StoreError> {
        let current = match table.get(self.user.as_str()).map_err(backend)? {
            Some(bytes) => Some(parse(bytes.value(), &self.user)?),
            None => None,
        };
        let creating = current.is_none();
        let (change, answer) = (self.decide)(current)?;
        if let (Change::Put(record), true) = (&change, creating)
            && let Some(over) = exceeds(table, record, self.capacity)?
        {
            return Ok(Err(over));
        }
        Ok(Ok((change, answer)))
    }
}

impl<T, F> Job for Update<T, F>
where
    T: Send + 'static,
    F: Transition<T>,
{
    fn apply(&mut self, table: &mut SessionsTable<'_>) -> Result<bool, StoreError> {
        let (change, answer) = match self.decide(table) {
            Ok(Ok(decided)) => decided,
            Ok(Err(over)) => {
                self.decided = Some(Ok(Err(over)));
                return Ok(false);
            }
            Err(refused) => {
                self.decided = Some(Err(refused));
                return Ok(false);
            }
        };
        let wrote = match change {
            Change::Keep => false,
            Change::Put(record) => {
                table
                    .insert(self.user.as_str(), record.to_json().as_bytes())
                    .map_err(backend)?;
                true
            }
            Change::Delete => {
                table.remove(self.user.as_str()).map_err(backend)?;
                true
            }
        };
        self.decided = Some(Ok(Ok(answer)));
        Ok(wrote)
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (self.decided, committed) {
            // A refusal does not depend on the commit.
            (Some(Err(refused)), _) => Err(refused),
            (_, Err(failed)) => Err(failed),
            (Some(decided), Ok(())) => decided,
            (None, Ok(())) => Err(StoreError::Backend("a write was never applied".into())),
        };
        // The caller may have given up waiting; the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// Which limit of `capacity` a new `record` would exceed in `table`, if
/// any. The per-starter count reads every record: the embedded store serves
/// one host, whose sessions number in the thousands at most.
fn exceeds(
    table: &SessionsTable<'_>,
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
        let user = user.as_str();
        self.read_now(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SESSIONS).map_err(backend)?;
            match table.get(user).map_err(backend)? {
                Some(bytes) => parse(bytes.value(), user).map(Some),
                None => Ok(None),
            }
        })
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

    async fn put_tombstone(&self, tombstone: &Tombstone) -> Result<(), StoreError> {
        let key = tombstone.user_id.clone();
        let value = tombstone.to_json();
        // Tombstones only explain, so they skip the writer's batches; redb
        // runs this transaction between two of its commits. It also forgets
        // a few tombstones that expired by the time this one was written.
        let now = tombstone.stopped_at;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(TOMBSTONES).map_err(backend)?;
                let mut expired = Vec::new();
                for entry in table.iter().map_err(backend)? {
                    let (user, stored) = entry.map_err(backend)?;
                    let gone = serde_json::from_slice::<Tombstone>(stored.value())
                        .map_or(true, |stored| stored.expired(now));
                    if gone {
                        expired.push(user.value().to_string());
                        if expired.len() == PRUNE_PER_WRITE {
                            break;
                        }
                    }
                }
                for user in &expired {
                    table.remove(user.as_str()).map_err(backend)?;
                }
                table
                    .insert(key.as_str(), value.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_tombstone(
        &self,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Tombstone>, StoreError> {
        self.read_now(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(TOMBSTONES).map_err(backend)?;
            Ok(table
                .get(user.as_str())
                .map_err(backend)?
                .and_then(|stored| Tombstone::from_json(stored.value(), user))
                .filter(|tombstone| !tombstone.expired(now_ms)))
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read_now(|db| db.begin_read().map(|_| ()).map_err(backend))
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use serde_json::Map;

    use super::writer::{Hold, MAX_BATCH};
    use super::*;
    use crate::store::SessionStatus;

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("a valid test user id")
    }

    fn active(id: &str, at: u64) -> SessionRecord {
        SessionRecord {
            user_id: id.to_string(),
            vm_id: user(id).vm_id(),
            ip: Some("127.61.0.9".into()),
            url: Some("http://127.0.0.1:8000/x/".into()),
            last_heartbeat: at,
            status: SessionStatus::Active,
            created_at: at,
            updated_at: at,
            owner: String::new(),
            start_step: None,
            start_steps: Vec::new(),
            project_path: None,
            started_by: None,
            idle_timeout_ms: None,
            max_age_ms: None,
            extra: Map::new(),
        }
    }

    fn fleet(limit: u64) -> Capacity {
        Capacity {
            fleet: Some(limit),
            per_starter: None,
        }
    }

    /// Polls `write` once, which queues it for the writer, and hands it
    /// back to be awaited.
    fn queued<F: Future + Unpin>(mut write: F) -> F {
        let mut context = Context::from_waker(futures::task::noop_waker_ref());
        assert!(
            matches!(Pin::new(&mut write).poll(&mut context), Poll::Pending),
            "a write was answered while the writer was held"
        );
        write
    }

    fn last_heartbeat(outcome: HeartbeatOutcome) -> u64 {
        match outcome {
            HeartbeatOutcome::Updated(record) => record.last_heartbeat,
            other => panic!("expected an update, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_writes_share_one_commit_and_are_on_disk_once_answered() {
        const USERS: u64 = 100;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        let users: Vec<UserId> = (0..USERS).map(|i| user(&format!("u{i}"))).collect();
        for user in &users {
            store
                .insert_new(&active(user.as_str(), 1), Capacity::NONE)
                .await
                .unwrap();
        }
        // One at a time, each write is committed on its own, at once.
        assert_eq!(store.commits(), USERS);

        let hold = Hold::start(&store.writer);
        let beats: Vec<_> = (0..USERS)
            .zip(&users)
            .map(|(i, user)| queued(store.heartbeat(user, 1_000 + i)))
            .collect();
        hold.release();
        let beats = futures::future::join_all(beats).await;
        for (i, outcome) in (0..USERS).zip(beats) {
            assert_eq!(last_heartbeat(outcome.unwrap()), 1_000 + i);
        }
        assert_eq!(
            store.commits(),
            USERS + 1,
            "{USERS} queued writes, one commit"
        );

        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        for (i, user) in (0..USERS).zip(&users) {
            let record = reopened.get(user).await.unwrap().unwrap();
            assert_eq!(record.last_heartbeat, 1_000 + i, "{user}");
        }
    }

    /// Polls `future` once: its answer, if it had one at once.
    fn poll_once<F: Future>(future: F) -> Option<F::Output> {
        let mut context = Context::from_waker(futures::task::noop_waker_ref());
        match std::pin::pin!(future).poll(&mut context) {
            Poll::Ready(answer) => Some(answer),
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn point_reads_answer_at_once_while_a_write_is_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("sessions.redb")).unwrap();
        store
            .insert_new(&active("alice", 1), Capacity::NONE)
            .await
            .unwrap();
        let alice = user("alice");
        let hold = Hold::start(&store.writer);
        let beat = queued(store.heartbeat(&alice, 2));

        // Polled once, on a thread of its own (a read that waited for the
        // writer would never come back): answered at that first poll, with
        // the last commit's record, not the write in progress.
        let reader = store.clone();
        let (answered, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let alice = user("alice");
            let got = poll_once(reader.get(&alice));
            let pinged = poll_once(reader.ping());
            let _ = answered.send((got, pinged));
        });
        let (got, pinged) = answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the reads did not wait for the writer");
        let got = got.expect("answered at the first poll").unwrap().unwrap();
        assert_eq!(got.last_heartbeat, 1);
        assert!(pinged.expect("answered at the first poll").is_ok());

        hold.release();
        assert_eq!(last_heartbeat(beat.await.unwrap()), 2);
        let now = store.get(&alice).await.unwrap().unwrap();
        assert_eq!(now.last_heartbeat, 2);
    }

    #[tokio::test]
    async fn a_commit_holds_at_most_a_batch_of_writes_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        let solo = user("solo");
        store
            .insert_new(&active("solo", 1), Capacity::NONE)
            .await
            .unwrap();
        let before = store.commits();

        let writes = MAX_BATCH as u64 + 10;
        let hold = Hold::start(&store.writer);
        let beats: Vec<_> = (0..writes)
            .map(|i| queued(store.heartbeat(&solo, 1_000 + i)))
            .collect();
        hold.release();
        for (i, outcome) in (0..writes).zip(futures::future::join_all(beats).await) {
            assert_eq!(last_heartbeat(outcome.unwrap()), 1_000 + i);
        }
        assert_eq!(
            store.commits() - before,
            2,
            "{writes} writes in batches of {MAX_BATCH}"
        );
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        let record = reopened.get(&solo).await.unwrap().unwrap();
        assert_eq!(record.last_heartbeat, 1_000 + writes - 1);
    }

    #[tokio::test]
    async fn writes_in_one_commit_see_the_ones_before_them_and_a_refusal_spoils_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(SESSIONS)
                .unwrap()
                .insert("broken", b"not a record".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .insert_new(&active("ann", 1), Capacity::NONE)
            .await
            .unwrap();
        let before = store.commits();
        let (ann, bea, cy, broken) = (user("ann"), user("bea"), user("cy"), user("broken"));

        let (bea_new, cy_early, cy_late) = (active("bea", 10), active("cy", 10), active("cy", 40));

        let hold = Hold::start(&store.writer);
        // Two records are stored: room for one more.
        let bea_in = queued(store.insert_new(&bea_new, fleet(3)));
        let cy_full = queued(store.insert_new(&cy_early, fleet(3)));
        let refused = queued(store.heartbeat(&broken, 20));
        let bea_beat = queued(store.heartbeat(&bea, 30));
        let ann_gone = queued(store.delete_owned(&ann, ""));
        let cy_in = queued(store.insert_new(&cy_late, fleet(3)));
        let ann_beat = queued(store.heartbeat(&ann, 50));
        hold.release();

        assert_eq!(bea_in.await.unwrap(), InsertOutcome::Inserted);
        assert_eq!(cy_full.await.unwrap(), InsertOutcome::Full);
        assert!(
            matches!(refused.await, Err(StoreError::Corrupt { ref user, .. }) if user == "broken")
        );
        assert_eq!(last_heartbeat(bea_beat.await.unwrap()), 30);
        assert!(ann_gone.await.unwrap());
        assert_eq!(cy_in.await.unwrap(), InsertOutcome::Inserted);
        assert_eq!(ann_beat.await.unwrap(), HeartbeatOutcome::Missing);
        assert_eq!(store.commits() - before, 1);

        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(reopened.get(&ann).await.unwrap(), None);
        let bea_now = reopened.get(&bea).await.unwrap().unwrap();
        assert_eq!(bea_now.last_heartbeat, 30);
        assert_eq!(reopened.get(&cy).await.unwrap(), Some(cy_late));
        assert!(matches!(
            reopened.get(&broken).await,
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn writes_that_change_nothing_commit_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("sessions.redb")).unwrap();
        let before = store.commits();
        assert_eq!(
            store.heartbeat(&user("nobody"), 5).await.unwrap(),
            HeartbeatOutcome::Missing
        );
        assert!(!store.delete_owned(&user("nobody"), "h/1").await.unwrap());
        assert_eq!(store.commits(), before);
        store
            .insert_new(&active("some", 1), Capacity::NONE)
            .await
            .unwrap();
        assert_eq!(store.commits(), before + 1);
    }
}
