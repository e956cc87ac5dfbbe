//! [`MeteredStore`]: a session store that counts its failures by operation
//! (`vessel_store_errors_total`), wrapped around the store a host opened so
//! that every request the manager, the API, the Reaper and the reconciler
//! make is counted, whichever store it is.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Capacity, HeartbeatOutcome, InsertOutcome, ScanPage, SessionRecord, SessionStore, StopClaim,
    StoreError, Tombstone,
};
use crate::ids::UserId;
use crate::metrics::Metrics;

/// A store whose failed requests are counted in a host's metrics.
pub struct MeteredStore {
    inner: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// `inner`, counting its failures in `metrics`.
    pub fn new(inner: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    /// Counts `result`'s error, if any, as one of `operation`.
    fn counted<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Err(error) = &result {
            self.metrics.count_store_error(operation, error);
        }
        result
    }
}

#[async_trait]
impl SessionStore for MeteredStore {
    async fn get(&self, user: &UserId) -> Result<Option<SessionRecord>, StoreError> {
        self.counted("get", self.inner.get(user).await)
    }

    async fn insert_new(
        &self,
        record: &SessionRecord,
        capacity: Capacity,
    ) -> Result<InsertOutcome, StoreError> {
        self.counted("insert_new", self.inner.insert_new(record, capacity).await)
    }

    async fn replace_owned(&self, record: &SessionRecord, owner: &str) -> Result<bool, StoreError> {
        self.counted(
            "replace_owned",
            self.inner.replace_owned(record, owner).await,
        )
    }

    async fn delete_owned(&self, user: &UserId, owner: &str) -> Result<bool, StoreError> {
        self.counted("delete_owned", self.inner.delete_owned(user, owner).await)
    }

    async fn heartbeat(&self, user: &UserId, now_ms: u64) -> Result<HeartbeatOutcome, StoreError> {
        self.counted("heartbeat", self.inner.heartbeat(user, now_ms).await)
    }

    async fn renew_lease(
        &self,
        user: &UserId,
        owner: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.counted(
            "renew_lease",
            self.inner.renew_lease(user, owner, now_ms).await,
        )
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        self.counted("try_lock", self.inner.try_lock(name, holder, ttl_ms).await)
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.counted("unlock", self.inner.unlock(name, holder).await)
    }

    async fn claim_stop(
        &self,
        user: &UserId,
        claim: &StopClaim,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.counted("claim_stop", self.inner.claim_stop(user, claim).await)
    }

    async fn scan(&self, cursor: Option<&str>, batch: usize) -> Result<ScanPage, StoreError> {
        self.counted("scan", self.inner.scan(cursor, batch).await)
    }

    async fn put_tombstone(&self, tombstone: &Tombstone) -> Result<(), StoreError> {
        self.counted("put_tombstone", self.inner.put_tombstone(tombstone).await)
    }

    async fn get_tombstone(
        &self,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<Tombstone>, StoreError> {
        self.counted(
            "get_tombstone",
            self.inner.get_tombstone(user, now_ms).await,
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.counted("ping", self.inner.ping().await)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
