//! A stopped session leaves a tombstone for `session.tombstone_retention`,
//! so that `GET /status/{userId}` says who stopped it and why (the user,
//! the Reaper for idleness, a failed start, the reconciler) instead of just
//! `none`; on both stores. Time is a manual clock the tests move.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use vessel::clock::ManualClock;
use vessel::config::Config;
use vessel::reaper::Reaper;
use vessel::reconcile::Reconciler;
use vessel_tests::{RedisServer, TestHost, project_dir, test_config};

/// 2026-12-01T10:00:00Z.
const T0: u64 = 1_796_119_200_000;

/// A host on the embedded store or on `redis`, on a manual clock at `T0`,
/// with no Reaper or reconciler of its own (tests run sweeps and passes),
/// and `tweak` applied to its configuration.
async fn host(
    dir: &Path,
    redis: Option<&RedisServer>,
    tweak: impl FnOnce(&mut Config),
) -> (TestHost, ManualClock) {
    let mut config = test_config(&dir.join("data"), redis.map(RedisServer::url));
    config.reaper.enabled = false;
    tweak(&mut config);
    let clock = ManualClock::new(T0);
    (
        TestHost::start_with_clock(config, clock.clone()).await,
        clock,
    )
}

async fn sweep(host: &TestHost) -> vessel::reaper::SweepReport {
    Reaper::new(host.manager.clone(), host.config.reaper.clone())
        .sweep()
        .await
}

/// The `lastSession` of `user`'s status, checking that the status is
/// `none` and carries a message.
async fn last_session(host: &TestHost, user: &str) -> (Value, String) {
    let status = host.api().status(user).await;
    assert_eq!(status.status, 200, "{:?}", status.body);
    assert_eq!(status.body["status"], "none", "{:?}", status.body);
    let message = status.body["message"].as_str().unwrap_or_default();
    (status.body["lastSession"].clone(), message.to_string())
}

/// A stop by the user, an idle reap and a failed start each leave their
/// own tombstone; a new session shows instead of the tombstone.
async fn each_kind_of_stop_is_explained(redis: Option<&RedisServer>) {
    let dir = tempfile::tempdir().unwrap();
    let (host, clock) = host(dir.path(), redis, |_| {}).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");

    // Never started: plain none, no explanation.
    let never = api.status("nobody").await.body;
    assert_eq!(never["status"], "none");
    assert!(never.get("lastSession").is_none() && never.get("message").is_none());

    assert_eq!(api.start("alice", &project).await.status, 200);
    assert_eq!(api.stop("alice").await.status, 200);
    let (stopped, message) = last_session(&host, "alice").await;
    assert_eq!(stopped["stoppedBy"], "user");
    assert_eq!(stopped["reason"], "user");
    assert_eq!(stopped["stoppedAt"], T0);
    assert_eq!(stopped["vmId"], "vessel-alice-0");
    assert_eq!(
        message,
        "stopped at 2026-12-01T10:00:00Z: stopped by the user"
    );

    // Idle: the test configuration's idle timeout is 1 h.
    assert_eq!(api.start("bob", &project).await.status, 200);
    clock.advance(3_600_001);
    let report = sweep(&host).await;
    assert_eq!(report.reaped, 1, "{report:?}");
    let (stopped, message) = last_session(&host, "bob").await;
    assert_eq!(stopped["stoppedBy"], "reaper");
    assert_eq!(stopped["reason"], "idle");
    assert_eq!(stopped["idleForMs"], 3_600_001);
    assert_eq!(stopped["lastHeartbeat"], T0);
    assert_eq!(
        message,
        "stopped at 2026-12-01T11:00:00Z (the Reaper): idle for 60 min"
    );

    // A failed start: what failed, in Vessel's words, not the driver's.
    host.vms().inject("create", "failed: boom at /home/secret");
    assert_eq!(api.start("carol", &project).await.status, 502);
    host.vms().clear("create");
    let (stopped, message) = last_session(&host, "carol").await;
    assert_eq!(stopped["stoppedBy"], "host");
    assert_eq!(stopped["reason"], "failed-start");
    let detail = stopped["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("creating the VM"), "{detail}");
    assert!(
        !detail.contains("secret") && !message.contains("secret"),
        "{detail}"
    );
    assert!(message.contains("its start failed"), "{message}");

    // A new session is shown as it is, without the old explanation.
    let again = api.start("alice", &project).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    let status = api.status("alice").await.body;
    assert_eq!(status["status"], "active");
    assert!(status.get("lastSession").is_none(), "{status}");
    host.shutdown().await;
}

#[tokio::test]
async fn each_kind_of_stop_is_explained_embedded() {
    each_kind_of_stop_is_explained(None).await;
}

#[tokio::test]
async fn each_kind_of_stop_is_explained_redis() {
    let redis = RedisServer::start();
    each_kind_of_stop_is_explained(Some(&redis)).await;
}

/// A tombstone is forgotten once its retention has passed; with a
/// retention of zero none is written.
async fn tombstones_expire(redis: Option<&RedisServer>) {
    let dir = tempfile::tempdir().unwrap();
    let (host, clock) = host(dir.path(), redis, |config| {
        config.session.tombstone_retention = Duration::from_secs(600);
    })
    .await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    assert_eq!(api.start("dave", &project).await.status, 200);
    assert_eq!(api.stop("dave").await.status, 200);
    clock.advance(599_000);
    assert_eq!(last_session(&host, "dave").await.0["reason"], "user");
    clock.advance(2_000);
    let gone = api.status("dave").await.body;
    assert_eq!(gone["status"], "none");
    assert!(
        gone.get("lastSession").is_none() && gone.get("message").is_none(),
        "{gone}"
    );
    host.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host_without_tombstones(dir.path(), redis).await;
    let project = project_dir(dir.path(), "p");
    assert_eq!(host.api().start("erin", &project).await.status, 200);
    assert_eq!(host.api().stop("erin").await.status, 200);
    assert!(
        host.api()
            .status("erin")
            .await
            .body
            .get("lastSession")
            .is_none()
    );
    host.shutdown().await;
}

async fn host_without_tombstones(
    dir: &Path,
    redis: Option<&RedisServer>,
) -> (TestHost, ManualClock) {
    host(dir, redis, |config| {
        config.session.tombstone_retention = Duration::ZERO;
    })
    .await
}

#[tokio::test]
async fn tombstones_expire_embedded() {
    tombstones_expire(None).await;
}

#[tokio::test]
async fn tombstones_expire_redis() {
    let redis = RedisServer::start();
    tombstones_expire(Some(&redis)).await;
}

/// In Redis a tombstone is its own key with the retention as its TTL,
/// outside `session:*`; one that names another user (a hand edit) explains
/// nothing.
#[tokio::test]
async fn redis_tombstones_are_keys_of_their_own_with_a_ttl() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(dir.path(), Some(&redis), |_| {}).await;
    let project = project_dir(dir.path(), "p");
    assert_eq!(host.api().start("frank", &project).await.status, 200);
    assert_eq!(host.api().stop("frank").await.status, 200);
    assert!(
        redis.session_keys().is_empty(),
        "{:?}",
        redis.session_keys()
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("vessel:tombstone:frank")
        .query(&mut redis.connection())
        .unwrap();
    assert!(ttl > 0 && ttl <= 24 * 3_600_000, "{ttl}");

    // Frank's tombstone copied under grace's key, as is and with grace's
    // name: neither explains grace.
    let mut forged = redis.get_json("vessel:tombstone:frank").unwrap();
    redis.set_json("vessel:tombstone:grace", &forged);
    let grace = host.api().status("grace").await.body;
    assert!(grace.get("lastSession").is_none(), "{grace}");
    forged["userId"] = json!("grace");
    redis.set_json("vessel:tombstone:grace", &forged);
    let grace = host.api().status("grace").await.body;
    assert!(grace.get("lastSession").is_none(), "{grace}");
    forged["vmId"] = json!("vessel-grace-0");
    redis.set_json("vessel:tombstone:grace", &forged);
    let grace = host.api().status("grace").await.body;
    assert_eq!(grace["lastSession"]["vmId"], "vessel-grace-0", "{grace}");
    host.shutdown().await;
}

/// A session whose VM the reconciler finds gone is explained as such.
#[tokio::test]
async fn the_reconciler_leaves_a_tombstone_for_a_vm_it_found_gone() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(dir.path(), Some(&redis), |_| {}).await;
    let project = project_dir(dir.path(), "p");
    assert_eq!(host.api().start("lost", &project).await.status, 200);
    host.manager.vm().remove("vessel-lost-0").await.unwrap();
    let report = Reconciler::new(host.manager.clone(), host.config.reconcile.clone())
        .pass()
        .await
        .expect("a reconciliation pass");
    assert_eq!(report.cleaned_lost_sessions, 1, "{report:?}");
    let (stopped, message) = last_session(&host, "lost").await;
    assert_eq!(stopped["stoppedBy"], "reconciler");
    assert_eq!(stopped["reason"], "vm-gone");
    assert!(
        message.ends_with("(the reconciler): its VM was gone"),
        "{message}"
    );
    host.shutdown().await;
}
