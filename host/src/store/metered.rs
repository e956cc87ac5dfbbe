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

/// The operations of a session store, as `vessel_store_errors_total`
/// names them: one per [`SessionStore`] request.
pub const OPERATIONS: [&str; 13] = [
    "get",
    "insert_new",
    "replace_owned",
    "delete_owned",
    "heartbeat",
    "renew_lease",
    "try_lock",
    "unlock",
    "claim_stop",
    "scan",
    "put_tombstone",
    "get_tombstone",
    "ping",
];

/// A store whose failed requests are counted in a host's metrics.
pub struct MeteredStore {
    inner: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// `inner`, counting its failures in `metrics` (which serves each
    /// operation's counters from the start, at 0).
    pub fn new(inner: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> MeteredStore {
        metrics.expect_store_operations(&OPERATIONS);
        MeteredStore { inner, metrics }
    }

    /// Counts `result`'s error, if any, as one of `operation`.
    fn counted<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        debug_assert!(OPERATIONS.contains(&operation), "{operation} is not listed");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Format;
    use crate::store::{StopCause, StopCondition, StopReason, Stopper};

    /// A store every request of which fails as unreachable.
    struct Unreachable;

    fn down<T>() -> Result<T, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    #[async_trait]
    impl SessionStore for Unreachable {
        async fn get(&self, _: &UserId) -> Result<Option<SessionRecord>, StoreError> {
            down()
        }
        async fn insert_new(
            &self,
            _: &SessionRecord,
            _: Capacity,
        ) -> Result<InsertOutcome, StoreError> {
            down()
        }
        async fn replace_owned(&self, _: &SessionRecord, _: &str) -> Result<bool, StoreError> {
            down()
        }
        async fn delete_owned(&self, _: &UserId, _: &str) -> Result<bool, StoreError> {
            down()
        }
        async fn heartbeat(&self, _: &UserId, _: u64) -> Result<HeartbeatOutcome, StoreError> {
            down()
        }
        async fn renew_lease(&self, _: &UserId, _: &str, _: u64) -> Result<bool, StoreError> {
            down()
        }
        async fn try_lock(&self, _: &str, _: &str, _: u64) -> Result<bool, StoreError> {
            down()
        }
        async fn unlock(&self, _: &str, _: &str) -> Result<(), StoreError> {
            down()
        }
        async fn claim_stop(
            &self,
            _: &UserId,
            _: &StopClaim,
        ) -> Result<Option<SessionRecord>, StoreError> {
            down()
        }
        async fn scan(&self, _: Option<&str>, _: usize) -> Result<ScanPage, StoreError> {
            down()
        }
        async fn put_tombstone(&self, _: &Tombstone) -> Result<(), StoreError> {
            down()
        }
        async fn get_tombstone(&self, _: &UserId, _: u64) -> Result<Option<Tombstone>, StoreError> {
            down()
        }
        async fn ping(&self) -> Result<(), StoreError> {
            down()
        }
        fn kind(&self) -> &'static str {
            "unreachable"
        }
    }

    fn served(metrics: &Metrics, operation: &str, error: &str) -> Option<u64> {
        let series =
            format!("vessel_store_errors_total{{operation=\"{operation}\",error=\"{error}\"}} ");
        let text = metrics.render(Format::PrometheusText);
        let line = text.lines().find(|line| line.starts_with(&series))?;
        line[series.len()..].parse().ok()
    }

    #[tokio::test]
    async fn every_operation_is_served_at_zero_then_counted_under_its_name() {
        let metrics = Arc::new(Metrics::new());
        let store = MeteredStore::new(Arc::new(Unreachable), metrics.clone());
        for operation in OPERATIONS {
            for error in ["unavailable", "corrupt", "backend"] {
                assert_eq!(
                    served(&metrics, operation, error),
                    Some(0),
                    "{operation} {error}"
                );
            }
        }

        let user = UserId::parse("alice").unwrap();
        let json = format!(
            r#"{{"vmId":"{}","ip":"127.61.0.1","url":"http://127.0.0.1/","lastHeartbeat":1}}"#,
            user.vm_id()
        );
        let record = SessionRecord::from_json(json.as_bytes(), "alice").unwrap();
        let claim = StopClaim {
            owner: "o".into(),
            now_ms: 2,
            condition: StopCondition::Active,
        };
        let tombstone = Tombstone::of(
            &record,
            StopCause::new(Stopper::User, StopReason::User),
            None,
            2,
            1,
        );
        assert!(store.get(&user).await.is_err());
        assert!(store.insert_new(&record, Capacity::NONE).await.is_err());
        assert!(store.replace_owned(&record, "o").await.is_err());
        assert!(store.delete_owned(&user, "o").await.is_err());
        assert!(store.heartbeat(&user, 2).await.is_err());
        assert!(store.renew_lease(&user, "o", 2).await.is_err());
        assert!(store.try_lock("l", "o", 1).await.is_err());
        assert!(store.unlock("l", "o").await.is_err());
        assert!(store.claim_stop(&user, &claim).await.is_err());
        assert!(store.scan(None, 10).await.is_err());
        assert!(store.put_tombstone(&tombstone).await.is_err());
        assert!(store.get_tombstone(&user, 2).await.is_err());
        assert!(store.ping().await.is_err());
        for operation in OPERATIONS {
            assert_eq!(
                served(&metrics, operation, "unavailable"),
                Some(1),
                "{operation}"
            );
            assert_eq!(
                served(&metrics, operation, "backend"),
                Some(0),
                "{operation}"
            );
        }
    }
}
