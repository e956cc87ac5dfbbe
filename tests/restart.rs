//! Vessel forgets nothing across restarts of itself, and survives restarts
//! of Redis: sessions stay active, outages answer 503, and service comes
//! back by itself.

use std::time::Duration;

use vessel_tests::{
    HostProcess, MockState, RedisServer, TestHost, eventually, free_port, project_dir, test_config,
};

fn config_toml(dir: &std::path::Path, port: u16, store: &str) -> String {
    vessel_tests::host_config_toml(dir, port, "", store)
}

async fn session_survives_a_host_restart(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let project = project_dir(dir.path(), "p");
    let port = free_port();
    let config = config_toml(dir.path(), port, store);
    let vms = MockState {
        dir: dir.path().join("data/mock-vm"),
    };

    let mut first = HostProcess::start(dir.path(), &config, port, "first.log").await;
    let started = first.api().start("jo", &project).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    // SIGTERM: a clean exit that leaves sessions running.
    assert_eq!(first.terminate(), Some(0), "{}", first.log_text());
    assert_eq!(vms.items(), vec!["vessel-jo-0".to_string()]);

    let second = HostProcess::start(dir.path(), &config, port, "second.log").await;
    let status = second.api().status("jo").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["status"], "active");
    assert_eq!(status.body["url"], started.body["url"]);
    let again = second.api().start("jo", &project).await;
    assert_eq!(again.body["reused"], true);
    assert_eq!(vms.count("create"), 1);
}

#[tokio::test]
async fn a_session_survives_a_host_restart_on_the_embedded_store() {
    session_survives_a_host_restart("").await;
}

#[tokio::test]
async fn a_session_survives_a_host_restart_on_redis() {
    let redis = RedisServer::start();
    session_survives_a_host_restart(&format!("[store]\nredis_url = \"{}\"\n", redis.url())).await;
}

#[tokio::test]
async fn a_redis_outage_answers_503_and_service_returns_by_itself() {
    let mut redis = RedisServer::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    config.store.timeout = Duration::from_millis(500);
    let host = TestHost::start(config).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    assert_eq!(api.start("kim", &project).await.status, 200);

    redis.stop();
    for answer in [
        api.status("kim").await,
        api.heartbeat("kim").await,
        api.start("kim", &project).await,
        api.stop("kim").await,
    ] {
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert_eq!(answer.error_code(), "store_unavailable");
    }
    let health = api.get("/healthz").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.body["store"]["status"], "unavailable");

    redis.restart();
    let status = eventually(
        Duration::from_secs(20),
        "service after the outage",
        || async {
            let answer = api.status("kim").await;
            (answer.status == 200).then_some(answer)
        },
    )
    .await;
    // The session was not lost (Redis persists with AOF).
    assert_eq!(status.body["status"], "active");
    assert_eq!(api.heartbeat("kim").await.status, 200);
    assert_eq!(host.vms().count("create"), 1);
    host.shutdown().await;
}

#[tokio::test]
async fn a_host_starts_while_redis_is_down_and_serves_once_it_is_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    config.store.timeout = Duration::from_millis(500);
    let host = TestHost::start(config).await;
    let api = host.api();
    assert_eq!(api.status("lee").await.status, 503);

    redis.restart();
    eventually(Duration::from_secs(20), "the store to come up", || async {
        (api.status("lee").await.status == 200).then_some(())
    })
    .await;
    let started = api.start("lee", &project_dir(dir.path(), "p")).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    host.shutdown().await;
}
