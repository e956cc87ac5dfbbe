//! Both session stores pass the same conformance suite: the embedded store
//! on a temporary file, the Redis store against a real `redis-server`, on
//! its TCP port and on its Unix socket.

use std::sync::Arc;
use std::time::Duration;

use vessel::store::embedded::EmbeddedStore;
use vessel::store::redis::RedisStore;
use vessel_tests::RedisServer;
use vessel_tests::store_suite::{self, Store};

/// The suite's checks against the Redis store on a fresh server, reached
/// at the URL its method `$url` names.
macro_rules! on_redis {
    ($module:ident, $url:ident, $($check:ident),*) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let server = RedisServer::start();
                    let store: Store =
                        Arc::new(RedisStore::new(&server.$url(), Duration::from_secs(5)).unwrap());
                    store_suite::$check(store).await;
                }
            )*
        }
    };
}

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
        on_redis!(redis, url, $($check),*);
        // The same store over Redis's Unix socket (`redis+unix://`).
        on_redis!(redis_unix, unix_url, $($check),*);
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
    tombstones_are_per_user_and_expire,
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

/// A heartbeat on a record as Vessel writes it is one round trip (one
/// script call, no GET), changes the two times and nothing else (fields
/// Vessel does not know keep their exact values), and a record bound to
/// another user's VM is refused without being touched.
#[tokio::test]
async fn redis_heartbeats_take_one_round_trip_and_touch_nothing_else() {
    use vessel::ids::UserId;
    use vessel::store::{Capacity, HeartbeatOutcome, SessionStatus, SessionStore};

    let server = RedisServer::start();
    let store = RedisStore::new(&server.url(), Duration::from_secs(5)).unwrap();
    let record = store_suite::record("fast", SessionStatus::Active, "", 10);
    store.insert_new(&record, Capacity::NONE).await.unwrap();
    let mut raw = server.get_json("session:fast").unwrap();
    raw["ticket"] = serde_json::json!("OPS-1");
    raw["quota"] = serde_json::json!(12345678901234567u64);
    raw["tags"] = serde_json::json!([]);
    server.set_json("session:fast", &raw);

    let calls = |name: &str| {
        let mut conn = server.connection();
        let info: String = ::redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let user = UserId::parse("fast").unwrap();
    store.heartbeat(&user, 2_000).await.unwrap(); // loads the script
    // Commands a script runs count too: one round trip is one EVALSHA
    // whose script reads once; the general path would add a GET of its own
    // and a second script.
    let (gets, scripts) = (calls("get"), calls("evalsha"));
    let updated = match store.heartbeat(&user, 3_000).await.unwrap() {
        HeartbeatOutcome::Updated(updated) => updated,
        other => panic!("expected an update, got {other:?}"),
    };
    assert_eq!(calls("get"), gets + 1, "a heartbeat read the record first");
    assert_eq!(calls("evalsha"), scripts + 1);
    assert_eq!((updated.last_heartbeat, updated.updated_at), (3_000, 3_000));
    let after = server.get_json("session:fast").unwrap();
    assert_eq!(after["lastHeartbeat"], 3_000);
    assert_eq!(after["updatedAt"], 3_000);
    assert_eq!(after["quota"], 12345678901234567u64);
    assert_eq!(after["tags"], serde_json::json!([]));
    assert_eq!(after["ticket"], "OPS-1");

    // Look-alike fields nested in an operator's own data are never the
    // ones a heartbeat changes: the heartbeat still lands on the record's.
    let mut nested = after.clone();
    nested["audit"] = serde_json::json!({"lastHeartbeat": 1, "updatedAt": 1, "status": "active"});
    server.set_json("session:fast", &nested);
    store.heartbeat(&user, 5_000).await.unwrap();
    let beaten = server.get_json("session:fast").unwrap();
    assert_eq!(beaten["lastHeartbeat"], 5_000);
    assert_eq!(beaten["audit"], nested["audit"]);

    // Hand-written spellings the text surgery cannot place (the top-level
    // key escaped, or spaced out) beside a literal look-alike nested in
    // other data: the heartbeat still lands on the record's own fields.
    let text = serde_json::to_string(&after).unwrap();
    for spelled in [
        r#""last\u0048eartbeat":"#,
        r#""lastHeartbeat" : "#,
        r#""lastHeartbeat":  "#,
    ] {
        let edited = text.replacen(r#""lastHeartbeat":"#, spelled, 1).replacen(
            '{',
            r#"{"audit":{"lastHeartbeat":1,"updatedAt":1},"#,
            1,
        );
        assert_ne!(edited, text);
        let mut conn = server.connection();
        let () = ::redis::cmd("SET")
            .arg("session:fast")
            .arg(&edited)
            .query(&mut conn)
            .unwrap();
        store.heartbeat(&user, 6_000).await.unwrap();
        let beaten = server.get_json("session:fast").unwrap();
        assert_eq!(beaten["lastHeartbeat"], 6_000, "{edited}");
        assert_eq!(beaten["updatedAt"], 6_000, "{edited}");
        assert_eq!(beaten["audit"]["lastHeartbeat"], 1, "{edited}");
        assert_eq!(beaten["audit"]["updatedAt"], 1, "{edited}");
    }

    // A copy of another user's record under mallory's key: refused, untouched.
    let mut forged = after.clone();
    forged["userId"] = serde_json::json!("mallory");
    server.set_json("session:mallory", &forged);
    let mallory = UserId::parse("mallory").unwrap();
    let error = store.heartbeat(&mallory, 4_000).await.unwrap_err();
    assert!(error.to_string().contains("mallory"), "{error}");
    assert_eq!(server.get_json("session:mallory").unwrap(), forged);
}
