//! A start's progress as server-sent events (`GET /sessions/{userId}/events`)
//! and `POST /start` with `"wait": false`: what a frontend's loading screen
//! is drawn from.

use serde_json::{Value, json};
use vessel::config::Config;
use vessel_tests::{Api, RedisServer, TestHost, project_dir, test_config};

/// The steps of a start, in order.
const STEPS: [&str; 4] = ["claimed", "creating-vm", "copying-project", "adding-route"];

/// A configuration whose mock VM takes `boot_ms` to boot, so that a start
/// is still running when its events are read.
fn slow_boot(dir: &std::path::Path, redis: Option<String>, boot_ms: i64) -> Config {
    let mut config = test_config(&dir.join("data"), redis);
    config
        .plugins
        .vm
        .settings
        .insert("boot_delay_ms".into(), toml::Value::Integer(boot_ms));
    config
}

/// Starts `user` without waiting, and checks the `202` answer.
async fn start_in_background(api: &Api, user: &str, project: &std::path::Path) {
    let accepted = api
        .post(
            "/start",
            json!({"userId": user, "projectPath": project, "wait": false}),
        )
        .await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    assert_eq!(accepted.body["userId"], user);
    assert_eq!(accepted.body["events"], format!("/sessions/{user}/events"));
}

/// Checks the `step` events of a stream: every step begun is ended before
/// the next begins; the steps are a run of [`STEPS`] in order that
/// includes `creating-vm` (the slow one); times never go back. Returns the
/// steps begun.
fn checked_steps(events: &[(String, Value)]) -> Vec<String> {
    let steps: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "step")
        .map(|(_, data)| data)
        .collect();
    assert!(
        steps.len().is_multiple_of(2),
        "every step begun ends: {events:?}"
    );
    let mut begun = Vec::new();
    let mut last_at = 0;
    for pair in steps.chunks(2) {
        let (start, end) = (pair[0], pair[1]);
        assert_eq!(start["state"], "begun", "{events:?}");
        assert_eq!(end["state"], "ended", "{events:?}");
        assert_eq!(start["step"], end["step"], "{events:?}");
        let (started, ended) = (start["at"].as_u64().unwrap(), end["at"].as_u64().unwrap());
        assert!(last_at <= started && started <= ended, "{events:?}");
        last_at = ended;
        begun.push(start["step"].as_str().unwrap().to_string());
    }
    let first = STEPS
        .iter()
        .position(|step| Some(*step) == begun.first().map(String::as_str))
        .unwrap_or_else(|| panic!("an unknown first step: {events:?}"));
    assert_eq!(
        begun,
        STEPS[first..(first + begun.len()).min(STEPS.len())].to_vec(),
        "{events:?}"
    );
    assert!(begun.iter().any(|step| step == "creating-vm"), "{events:?}");
    begun
}

#[tokio::test]
async fn a_cold_start_streams_each_step_then_the_session_on_any_host() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = slow_boot(dir.path(), Some(redis.url()), 600);
    let starting = TestHost::start(config.clone()).await;
    let other = TestHost::start(config).await;
    let project = project_dir(dir.path(), "p");

    start_in_background(&starting.api(), "ada", &project).await;
    // The host that runs the start and one that only shares the store tell
    // the same story.
    let (starting_api, other_api) = (starting.api(), other.api());
    let (here, there) = tokio::join!(starting_api.events("ada"), other_api.events("ada"));
    for (status, content_type, events) in [here, there] {
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let begun = checked_steps(&events);
        assert_eq!(begun.last().map(String::as_str), Some("adding-route"));
        let (name, session) = events.last().unwrap();
        assert_eq!(name, "session", "{events:?}");
        assert_eq!(session["status"], "active");
        assert_eq!(session["userId"], "ada");
        assert!(session["url"].as_str().is_some_and(|url| !url.is_empty()));
        // The last step ends when the session became active.
        let steps: Vec<_> = events.iter().filter(|(name, _)| name == "step").collect();
        assert!(steps.last().unwrap().1["at"].as_u64().unwrap() > 0);
    }

    // Late: the session as it is, at once.
    let (_, _, late) = other.api().events("ada").await;
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].0, "session");
    assert_eq!(late[0].1["status"], "active");
    // Nobody: `none`.
    let (_, _, nobody) = other.api().events("nobody").await;
    assert_eq!(
        nobody,
        vec![("none".to_string(), json!({"userId": "nobody"}))]
    );

    starting.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn a_failed_start_streams_its_steps_then_the_error() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = slow_boot(dir.path(), Some(redis.url()), 600);
    let starting = TestHost::start(config.clone()).await;
    let other = TestHost::start(config).await;
    starting.vms().inject("copy-to", "failed: the disk is full");
    let project = project_dir(dir.path(), "p");

    start_in_background(&starting.api(), "bob", &project).await;
    let (starting_api, other_api) = (starting.api(), other.api());
    let (here, there) = tokio::join!(starting_api.events("bob"), other_api.events("bob"));
    let (_, _, here) = here;
    let (_, _, there) = there;
    for events in [&here, &there] {
        let steps: Vec<(String, Value)> = events
            .iter()
            .filter(|(name, data)| name == "step" && data["step"] != "stopping")
            .cloned()
            .collect();
        // The steps up to the failing copy (a stream that reads the record
        // after the copy failed and was undone sees the steps up to
        // creating-vm); never the route's.
        let begun = checked_steps(&steps);
        assert!(!begun.contains(&"adding-route".to_string()), "{events:?}");
        assert_eq!(events.last().unwrap().0, "error", "{events:?}");
    }
    // The host that ran it knows why; another host knows that it failed.
    assert_eq!(here.last().unwrap().1["error"]["code"], "driver_error");
    assert!(
        here.last().unwrap().1["error"]["requestId"]
            .as_str()
            .is_some_and(|id| id.starts_with("req-")),
        "{here:?}"
    );
    assert_eq!(there.last().unwrap().1["error"]["code"], "start_failed");
    // ... and, from the start's tombstone, why and when.
    let why = &there.last().unwrap().1;
    assert_eq!(why["lastSession"]["reason"], "failed-start", "{why}");
    assert!(
        why["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{why}"
    );
    // Undone: nothing is left.
    assert_eq!(other.api().status("bob").await.body["status"], "none");
    assert!(starting.vms().items().is_empty());

    starting.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn a_background_start_that_cannot_begin_is_answered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.session.max_sessions = 1;
    let host = TestHost::start(config).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    assert_eq!(api.start("first", &project).await.status, 200);

    // Refusals are answered as when waiting: a full fleet, a bad project.
    let background =
        |user: &str, project: &str| json!({"userId": user, "projectPath": project, "wait": false});
    let full = api
        .post("/start", background("second", project.to_str().unwrap()))
        .await;
    assert_eq!(full.status, 429, "{:?}", full.body);
    assert_eq!(full.error_code(), "at_capacity");
    let outside = api
        .post("/start", background("third", "relative/path"))
        .await;
    assert_eq!(outside.status, 400, "{:?}", outside.body);
    // A hit is a hit: the session, at once.
    let hit = api
        .post("/start", background("first", project.to_str().unwrap()))
        .await;
    assert_eq!(hit.status, 200, "{:?}", hit.body);
    assert_eq!(hit.body["reused"], true);
    assert_eq!(hit.body["status"], "active");
    // An id that is not one is refused on the stream too.
    let bad_user = api.get("/sessions/bad%20user/events").await;
    assert_eq!(bad_user.status, 400, "{:?}", bad_user.body);
    host.shutdown().await;
}
