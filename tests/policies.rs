//! Session policies: a start's own `idleTimeout` and `maxAge` within the
//! operator's maxima, the `session.max_age` cap the Reaper enforces even
//! with heartbeats, the view's `idleSince`/`expiresAt`/`policy`, and a
//! Reaper in `dry_run` that stops nothing. Time is a manual clock the tests
//! move.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use vessel::clock::ManualClock;
use vessel::config::Config;
use vessel::reaper::{Reaper, SweepReport};
use vessel_tests::{RedisServer, TestHost, metric_value, project_dir, test_config};

/// 2026-12-01T10:00:00Z.
const T0: u64 = 1_796_119_200_000;
const MINUTE: u64 = 60_000;

/// A host on a manual clock at `T0` with no Reaper of its own, a default
/// idle timeout of 30 min, and `tweak` applied.
async fn host(
    dir: &Path,
    redis: Option<&RedisServer>,
    tweak: impl FnOnce(&mut Config),
) -> (TestHost, ManualClock) {
    let mut config = test_config(&dir.join("data"), redis.map(RedisServer::url));
    config.reaper.enabled = false;
    config.reaper.idle_timeout = Duration::from_secs(30 * 60);
    config.session.max_idle_timeout = Duration::from_secs(2 * 3600);
    tweak(&mut config);
    let clock = ManualClock::new(T0);
    (
        TestHost::start_with_clock(config, clock.clone()).await,
        clock,
    )
}

async fn sweep(host: &TestHost) -> SweepReport {
    Reaper::new(host.manager.clone(), host.config.reaper.clone())
        .sweep()
        .await
}

async fn start_with(host: &TestHost, user: &str, project: &Path, policy: serde_json::Value) -> u16 {
    let mut body = json!({"userId": user, "projectPath": project});
    if let (Some(body), Some(policy)) = (body.as_object_mut(), policy.as_object()) {
        body.extend(policy.clone());
    }
    let answer = host.api().post("/start", body).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.status
}

/// A session that asked for a short idle timeout is reaped while one on
/// the default is not; the view says when each expires and why.
async fn a_start_sets_its_own_idle_timeout(redis: Option<&RedisServer>) {
    let dir = tempfile::tempdir().unwrap();
    let (host, clock) = host(dir.path(), redis, |_| {}).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    start_with(&host, "short", &project, json!({"idleTimeout": 5 * MINUTE})).await;
    start_with(&host, "long", &project, json!({})).await;

    let short = api.status("short").await.body;
    assert_eq!(short["idleSince"], T0);
    assert_eq!(short["expiresAt"], T0 + 5 * MINUTE);
    assert_eq!(
        short["policy"],
        json!({"idleTimeoutMs": 5 * MINUTE, "maxAgeMs": null, "decidedBy": "idle"})
    );
    assert_eq!(api.status("long").await.body["expiresAt"], T0 + 30 * MINUTE);
    // A start that finds the session running keeps its policy.
    let hit = api
        .post(
            "/start",
            json!({"userId": "short", "projectPath": project, "idleTimeout": 60 * MINUTE}),
        )
        .await;
    assert_eq!(hit.body["reused"], true, "{:?}", hit.body);
    assert_eq!(hit.body["policy"]["idleTimeoutMs"], 5 * MINUTE);

    clock.advance(2 * MINUTE);
    let beat = api.heartbeat("short").await.body;
    assert_eq!(beat["idleSince"], T0 + 2 * MINUTE);
    assert_eq!(beat["expiresAt"], T0 + 7 * MINUTE);

    clock.advance(5 * MINUTE + 1);
    let report = sweep(&host).await;
    assert_eq!(report.reaped, 1, "{report:?}");
    assert_eq!(
        api.status("short").await.body["lastSession"]["reason"],
        "idle"
    );
    assert_eq!(api.status("long").await.body["status"], "active");
    host.shutdown().await;
}

#[tokio::test]
async fn a_start_sets_its_own_idle_timeout_embedded() {
    a_start_sets_its_own_idle_timeout(None).await;
}

#[tokio::test]
async fn a_start_sets_its_own_idle_timeout_redis() {
    let redis = RedisServer::start();
    a_start_sets_its_own_idle_timeout(Some(&redis)).await;
}

/// `session.max_age` stops a session however often it beats; a start's
/// shorter `maxAge` stops it sooner.
async fn max_age_is_enforced_despite_heartbeats(redis: Option<&RedisServer>) {
    let dir = tempfile::tempdir().unwrap();
    let (host, clock) = host(dir.path(), redis, |config| {
        config.session.max_age = Duration::from_secs(60 * 60);
    })
    .await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    start_with(&host, "capped", &project, json!({})).await;
    start_with(&host, "brief", &project, json!({"maxAge": 20 * MINUTE})).await;
    let brief = api.status("brief").await.body;
    assert_eq!(brief["expiresAt"], T0 + 20 * MINUTE);
    assert_eq!(brief["policy"]["decidedBy"], "max-age");
    assert_eq!(brief["policy"]["maxAgeMs"], 20 * MINUTE);

    for _ in 0..6 {
        clock.advance(10 * MINUTE + 1);
        for user in ["capped", "brief"] {
            let _ = api.heartbeat(user).await;
        }
        sweep(&host).await;
        if clock_past(&clock, 20 * MINUTE) {
            assert_eq!(api.status("brief").await.body["status"], "none");
        }
        if !clock_past(&clock, 60 * MINUTE) {
            assert_eq!(api.status("capped").await.body["status"], "active");
        }
    }
    let capped = api.status("capped").await.body;
    assert_eq!(capped["lastSession"]["reason"], "max-age", "{capped}");
    assert_eq!(capped["lastSession"]["stoppedBy"], "reaper");
    let message = capped["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("reached its maximum age after 60 min"),
        "{message}"
    );
    assert_eq!(
        api.status("brief").await.body["lastSession"]["reason"],
        "max-age"
    );
    let metrics = api.get_text("/metrics").await;
    assert_eq!(
        metric_value(&metrics, r#"vessel_stops_total{by="reaper_max_age"}"#),
        2
    );
    host.shutdown().await;
}

fn clock_past(clock: &ManualClock, ms: u64) -> bool {
    use vessel::clock::Clock;
    clock.now_ms() > T0 + ms
}

#[tokio::test]
async fn max_age_is_enforced_despite_heartbeats_embedded() {
    max_age_is_enforced_despite_heartbeats(None).await;
}

#[tokio::test]
async fn max_age_is_enforced_despite_heartbeats_redis() {
    let redis = RedisServer::start();
    max_age_is_enforced_despite_heartbeats(Some(&redis)).await;
}

/// Values over the operator's maxima, zero, or not a number of
/// milliseconds are refused with 400 and start nothing.
#[tokio::test]
async fn policies_over_the_maxima_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(dir.path(), None, |config| {
        config.session.max_age = Duration::from_secs(3600);
    })
    .await;
    let project = project_dir(dir.path(), "p");
    for (policy, code) in [
        (
            json!({"idleTimeout": 2 * 60 * MINUTE + 1}),
            "invalid_policy",
        ),
        (json!({"maxAge": 60 * MINUTE + 1}), "invalid_policy"),
        (json!({"idleTimeout": 0}), "invalid_policy"),
        (json!({"idleTimeout": "45m"}), "invalid_request"),
        (json!({"maxAge": -1}), "invalid_request"),
    ] {
        let mut body = json!({"userId": "greedy", "projectPath": project});
        body.as_object_mut()
            .unwrap()
            .extend(policy.as_object().unwrap().clone());
        let answer = host.api().post("/start", body).await;
        assert_eq!(answer.status, 400, "{policy}: {:?}", answer.body);
        assert_eq!(answer.error_code(), code, "{policy}: {:?}", answer.body);
    }
    let over = host
        .api()
        .post(
            "/start",
            json!({"userId": "greedy", "projectPath": project, "idleTimeout": 3 * 60 * MINUTE}),
        )
        .await;
    let message = over.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("session.max_idle_timeout"), "{message}");
    assert!(host.vms().items().is_empty());
    assert_eq!(host.api().status("greedy").await.body["status"], "none");
    host.shutdown().await;
}

/// A Reaper in `dry_run` stops nothing but counts what it would stop.
#[tokio::test]
async fn a_dry_run_reaper_stops_nothing_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (host, clock) = host(dir.path(), None, |config| {
        config.reaper.dry_run = true;
        config.session.max_age = Duration::from_secs(2 * 3600);
    })
    .await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    // One session past its maximum age though it beats, one idle past its
    // own short timeout though young.
    start_with(&host, "old", &project, json!({})).await;
    clock.advance(70 * MINUTE);
    start_with(&host, "idle", &project, json!({"idleTimeout": MINUTE})).await;
    clock.advance(61 * MINUTE);
    let _ = api.heartbeat("old").await;
    let report = sweep(&host).await;
    assert_eq!(report.would_stop, 2, "{report:?}");
    assert_eq!(report.reaped + report.aged_out, 0, "{report:?}");
    for user in ["idle", "old"] {
        assert_eq!(api.status(user).await.body["status"], "active");
    }
    assert_eq!(host.vms().items().len(), 2);
    let metrics = api.get_text("/metrics").await;
    for reason in ["idle", "max_age"] {
        let series = format!(r#"vessel_reaper_would_stop_total{{reason="{reason}"}}"#);
        assert_eq!(metric_value(&metrics, &series), 1, "{series}");
    }
    host.shutdown().await;
}

/// Hand-edited policy values that make no sense fall back to the
/// operator's defaults, and none can outlive the `session.max_age` cap or
/// the `session.max_idle_timeout` maximum.
#[tokio::test]
async fn hand_edited_policies_cannot_make_a_session_immortal() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, clock) = host(dir.path(), Some(&redis), |config| {
        config.session.max_age = Duration::from_secs(4 * 3600);
    })
    .await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    for user in ["huge", "text", "negative"] {
        start_with(&host, user, &project, json!({})).await;
    }
    let edit = |user: &str, idle: serde_json::Value, age: serde_json::Value| {
        let key = format!("session:{user}");
        let mut record = redis.get_json(&key).unwrap();
        record["idleTimeoutMs"] = idle;
        record["maxAgeMs"] = age;
        redis.set_json(&key, &record);
    };
    edit("huge", json!(u64::MAX), json!(u64::MAX));
    edit("text", json!("forever"), json!("forever"));
    edit("negative", json!(-5), json!(-5));

    // The default idle timeout (30 min) applies to text and negative; the
    // huge one is capped at session.max_idle_timeout (2 h).
    assert_eq!(api.status("text").await.body["expiresAt"], T0 + 30 * MINUTE);
    assert_eq!(
        api.status("huge").await.body["expiresAt"],
        T0 + 120 * MINUTE
    );
    clock.advance(31 * MINUTE);
    let report = sweep(&host).await;
    assert_eq!(report.reaped, 2, "{report:?}");
    assert_eq!(api.status("huge").await.body["status"], "active");

    // Kept beating, the huge one still ends at the 4 h cap.
    for _ in 0..5 {
        clock.advance(60 * MINUTE);
        let _ = api.heartbeat("huge").await;
        sweep(&host).await;
    }
    let huge = api.status("huge").await.body;
    assert_eq!(huge["lastSession"]["reason"], "max-age", "{huge}");
    host.shutdown().await;
}
