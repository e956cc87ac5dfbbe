//! Both session stores pass the same conformance suite: the embedded store
//! on a temporary file, the Redis store against a real `redis-server`.

use std::sync::Arc;
use std::time::Duration;

use vessel::store::embedded::EmbeddedStore;
use vessel::store::redis::RedisStore;
use vessel_tests::RedisServer;
use vessel_tests::store_suite::{self, Store};

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let store: Store =
                        Arc::new(EmbeddedStore::open(&dir.path().join("sessions.redb")).unwrap());
                    store_suite::$check(store).await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let server = RedisServer::start();
                    let store: Store =
                        Arc::new(RedisStore::new(&server.url(), Duration::from_secs(5)).unwrap());
                    store_suite::$check(store).await;
                }
            )*
        }
    };
}

conformance!(
    insert_is_create_once,
    concurrent_inserts_have_one_winner,
    capacity_is_never_exceeded,
    starter_capacity_is_never_exceeded,
    replace_and_delete_need_the_owner,
    heartbeat_updates_only_active_sessions,
    claims_follow_their_conditions,
    claims_race_with_one_winner_and_heartbeats_win_first,
    scan_sees_every_session_once,
    leases_are_renewed_by_their_holder_only,
    locks_have_one_holder_until_they_expire,
);

/// Records an operator wrote or edited by hand in Redis are read, and the
/// fields Vessel does not know survive Vessel's own updates.
#[tokio::test]
async fn redis_reads_hand_edited_records_and_keeps_unknown_fields() {
    use vessel::ids::UserId;
    use vessel::store::{HeartbeatOutcome, SessionStatus, SessionStore};

    let server = RedisServer::start();
    let store = RedisStore::new(&server.url(), Duration::from_secs(5)).unwrap();
    server.set_json(
        "session:ops",
        &serde_json::json!({
            "vmId": "vessel-ops-0",
            "ip": "127.61.0.4",
            "url": "http://127.0.0.1:8000/ops/",
            "lastHeartbeat": "1700000000000",
            "ticket": "OPS-12",
            "tags": [],
            "quota": 12345678901234567u64,
            "ratio": 0.1,
            "meta": {"owner": "team-a", "labels": []}
        }),
    );
    let user = UserId::parse("ops").unwrap();
    let record = store.get(&user).await.unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Active);
    assert_eq!(record.last_heartbeat, 1_700_000_000_000);
    assert_eq!(record.user_id, "ops");

    let updated = match store.heartbeat(&user, 1_800_000_000_000).await.unwrap() {
        HeartbeatOutcome::Updated(updated) => updated,
        other => panic!("expected an update, got {other:?}"),
    };
    assert_eq!(updated.last_heartbeat, 1_800_000_000_000);
    let raw = server.get_json("session:ops").unwrap();
    assert_eq!(raw["lastHeartbeat"], 1_800_000_000_000u64);
    // A claim rewrites the record too; what Vessel does not know keeps its
    // exact value through both (empty arrays stay arrays, long numbers stay
    // exact).
    let claim = vessel::store::StopClaim {
        owner: "h/1".into(),
        now_ms: 1_800_000_000_001,
        condition: vessel::store::StopCondition::Active,
    };
    assert!(store.claim_stop(&user, &claim).await.unwrap().is_some());
    let raw = server.get_json("session:ops").unwrap();
    assert_eq!(raw["status"], "stopping");
    assert_eq!(raw["ticket"], "OPS-12");
    assert_eq!(raw["tags"], serde_json::json!([]));
    assert_eq!(raw["quota"], 12345678901234567u64);
    assert_eq!(raw["ratio"], 0.1);
    assert_eq!(
        raw["meta"],
        serde_json::json!({"owner": "team-a", "labels": []})
    );

    server.set_json("session:broken", &serde_json::json!(["not", "a", "record"]));
    let broken = UserId::parse("broken").unwrap();
    let error = store.heartbeat(&broken, 1).await.unwrap_err();
    assert!(error.to_string().contains("broken"), "{error}");
}

/// The Redis store never uses KEYS: a sweep is SCAN batches.
#[tokio::test]
async fn redis_scans_never_use_keys() {
    use vessel::store::SessionStore;

    let server = RedisServer::start();
    let store: Arc<dyn SessionStore> =
        Arc::new(RedisStore::new(&server.url(), Duration::from_secs(5)).unwrap());
    store_suite::scan_sees_every_session_once(store).await;
    let stats: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.connection())
        .unwrap();
    assert!(stats.contains("cmdstat_scan:"), "{stats}");
    assert!(!stats.contains("cmdstat_keys:"), "KEYS was used:\n{stats}");
}
