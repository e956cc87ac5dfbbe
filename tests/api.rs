//! The HTTP API over the embedded store and the mock plugins: the answers
//! and error shapes a frontend relies on.

use vessel_tests::{TestHost, project_dir, test_config};

async fn host() -> (TestHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("data"), None);
    (TestHost::start(config).await, dir)
}

#[tokio::test]
async fn a_session_lives_from_start_through_heartbeats_to_stop() {
    let (host, dir) = host().await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");

    let started = api.start("alice", &project).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let first_beat = started.body["lastHeartbeat"].as_u64().unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let beat = api.heartbeat("alice").await;
    assert_eq!(beat.status, 200);
    assert_eq!(beat.body["status"], "active");
    assert!(beat.body["lastHeartbeat"].as_u64().unwrap() > first_beat);

    let stopped = api.stop("alice").await;
    assert_eq!(stopped.status, 200);
    assert_eq!(stopped.body["stopped"], true);
    assert_eq!(stopped.body["status"], "none");
    assert!(host.vms().items().is_empty());
    assert!(host.routes().items().is_empty());
    assert_eq!(api.status("alice").await.body["status"], "none");

    // Stop is idempotent, and a heartbeat never brings a session back.
    let again = api.stop("alice").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["stopped"], false);
    let late = api.heartbeat("alice").await;
    assert_eq!(late.status, 404);
    assert_eq!(late.error_code(), "no_session");
    assert_eq!(api.status("alice").await.body["status"], "none");
    host.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (host, dir) = host().await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");

    let cases = [
        (
            api.post(
                "/start",
                serde_json::json!({"userId": "../x", "projectPath": project}),
            )
            .await,
            "invalid_user_id",
        ),
        (
            api.post(
                "/start",
                serde_json::json!({"userId": "", "projectPath": project}),
            )
            .await,
            "invalid_user_id",
        ),
        (
            api.post(
                "/start",
                serde_json::json!({"userId": "a".repeat(49), "projectPath": project}),
            )
            .await,
            "invalid_user_id",
        ),
        (
            api.post(
                "/start",
                serde_json::json!({"userId": "bob", "projectPath": "relative/p"}),
            )
            .await,
            "invalid_project_path",
        ),
        (
            api.post(
                "/start",
                serde_json::json!({"userId": "bob", "projectPath": dir.path().join("missing")}),
            )
            .await,
            "invalid_project_path",
        ),
        (
            api.post("/start", serde_json::json!({"userId": "bob"}))
                .await,
            "invalid_request",
        ),
        (api.post_raw("/start", "{not json").await, "invalid_request"),
        (
            api.post("/heartbeat", serde_json::json!({"userId": "a b"}))
                .await,
            "invalid_user_id",
        ),
        (api.get("/status/a%20b").await, "invalid_user_id"),
    ];
    for (answer, code) in cases {
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.error_code(), code, "{:?}", answer.body);
        assert!(
            !answer.body["error"]["message"].as_str().unwrap().is_empty(),
            "an error says what is wrong"
        );
    }
    // Nothing reached a driver.
    assert!(host.vms().calls().is_empty(), "{:?}", host.vms().calls());
    assert!(host.routes().calls().is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn projects_outside_the_allowed_roots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    let root = dir.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    config.session.project_roots = vec![root.clone()];
    let host = TestHost::start(config).await;
    let api = host.api();

    let outside = project_dir(dir.path(), "elsewhere");
    let refused = api.start("carol", &outside).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_code(), "invalid_project_path");
    let escape = api
        .post(
            "/start",
            serde_json::json!({"userId": "carol", "projectPath": format!("{}/../elsewhere", root.display())}),
        )
        .await;
    assert_eq!(escape.status, 400);
    assert!(host.vms().calls().is_empty());

    let inside = project_dir(&root, "carol");
    assert_eq!(api.start("carol", &inside).await.status, 200);
    host.shutdown().await;
}

#[tokio::test]
async fn a_session_whose_vm_died_is_started_afresh() {
    let (host, dir) = host().await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    assert_eq!(api.start("dora", &project).await.status, 200);

    // The VM disappears behind Vessel's back.
    std::fs::remove_file(host.vms().dir.join("items/vessel-dora-0.json")).unwrap();

    let restarted = api.start("dora", &project).await;
    assert_eq!(restarted.status, 200, "{:?}", restarted.body);
    assert_eq!(restarted.body["reused"], false);
    assert_eq!(host.vms().count_ok("create", "vessel-dora-0"), 2);
    assert_eq!(host.vms().items(), vec!["vessel-dora-0".to_string()]);
    assert_eq!(host.routes().items(), vec!["vessel-dora-0".to_string()]);
    host.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_the_store() {
    let (host, _dir) = host().await;
    let health = host.api().get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["store"]["kind"], "embedded");
    host.shutdown().await;
}
