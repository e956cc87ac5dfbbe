//! A failed step of a start undoes the steps before it: no leaked VM, no
//! dangling route, no half record. A failed stop is retried by the Reaper.
//! Failures are injected into the mock plugins at each step.

use std::path::Path;
use std::time::Duration;

use vessel_tests::{TestHost, eventually, project_dir, test_config};

/// A host in `dir` whose leases expire after 1.5 s, so the Reaper takes
/// over abandoned work quickly (yet a start renewing its lease every 0.5 s
/// keeps it on a loaded machine).
async fn host_with_short_leases(dir: &Path) -> TestHost {
    let mut config = test_config(&dir.join("data"), None);
    config.session.lease = Duration::from_millis(1500);
    TestHost::start(config).await
}

/// Injects `fault` into `op` (on the mock VM or proxy), starts a session,
/// and checks the error code and that nothing is left behind; then clears
/// the fault and checks that the user's next start works.
/// The error's message must contain `says`: what failed and how (the
/// driver's own words stay in the log), or for a timeout, the step that
/// was cut off.
async fn start_fails_cleanly(
    op: &str,
    on_proxy: bool,
    fault: &str,
    (code, status, says): (&str, u16, &str),
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    // Long enough for create and copy on a loaded machine, so that a hang
    // in add-route is what the deadline cuts off.
    config.session.start_timeout = Duration::from_secs(4);
    config.session.lease = Duration::from_secs(6);
    let host = TestHost::start(config).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    let mock = if on_proxy { host.routes() } else { host.vms() };
    mock.inject(op, fault);

    let failed = api.start("erin", &project).await;
    assert_eq!(failed.status, status, "{op}: {:?}", failed.body);
    assert_eq!(failed.error_code(), code, "{op}: {:?}", failed.body);
    let message = failed.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{op}: {message:?} lacks {says:?}");
    assert!(host.vms().items().is_empty(), "{op}: leaked VM");
    assert!(host.routes().items().is_empty(), "{op}: dangling route");
    assert_eq!(
        api.status("erin").await.body["status"],
        "none",
        "{op}: half record"
    );

    mock.clear(op);
    let retried = api.start("erin", &project).await;
    assert_eq!(retried.status, 200, "{op}: {:?}", retried.body);
    assert_eq!(host.vms().items().len(), 1);
    assert_eq!(host.routes().items().len(), 1);
    assert!(api.answers().await);
    host.shutdown().await;
}

#[tokio::test]
async fn a_failed_create_leaves_nothing() {
    let error = ("driver_error", 502, "create failed: unavailable");
    start_fails_cleanly("create", false, "unavailable: no capacity", error).await;
}

#[tokio::test]
async fn a_failed_copy_removes_the_vm() {
    let error = ("driver_error", 502, "copy-to failed: failed");
    start_fails_cleanly("copy-to", false, "failed: disk full", error).await;
}

#[tokio::test]
async fn a_failed_route_removes_the_vm() {
    let error = ("driver_error", 502, "add-route failed: failed");
    start_fails_cleanly("add-route", true, "failed: proxy refused", error).await;
}

#[tokio::test]
async fn a_crashing_driver_is_rolled_back_and_the_host_goes_on() {
    let error = ("driver_error", 502, "copy-to crashed");
    start_fails_cleanly("copy-to", false, "trap", error).await;
}

#[tokio::test]
async fn a_start_past_its_deadline_is_rolled_back_with_504() {
    let error = ("timeout", 504, "the proxy driver was adding the route");
    start_fails_cleanly("add-route", true, "hang", error).await;
}

/// The frontend learns what failed and the request's id; the driver's own
/// words (which may hold a tool's output, paths, a backtrace) and any
/// control characters in them reach only the log, as one line, under that id.
#[tokio::test]
async fn the_caller_gets_a_short_error_and_the_log_the_details() {
    let dir = tempfile::tempdir().unwrap();
    let port = vessel_tests::free_port();
    let tables = vessel_tests::mock_vm_table("");
    let config = vessel_tests::host_config_toml(dir.path(), port, "", &tables);
    let host = vessel_tests::HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let mock = vessel_tests::MockState {
        dir: dir.path().join("data/mock-vm"),
    };
    mock.inject(
        "create",
        "unavailable: no capacity left on node 7\nINFO forged: session stopped",
    );
    let failed = host.api().start("fay", &project_dir(dir.path(), "p")).await;
    assert_eq!(failed.status, 502);
    let message = failed.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("create failed: unavailable"), "{message}");
    assert!(!message.contains("node 7"), "{message}");
    let request_id = failed.body["error"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(request_id.starts_with("req-"), "{request_id}");
    vessel_tests::eventually(Duration::from_secs(5), "the detail in the log", || async {
        host.log_text()
            .lines()
            .any(|line| line.contains("node 7") && line.contains(&request_id))
            .then_some(())
    })
    .await;
    let log = host.log_text();
    assert!(
        !log.lines().any(|line| line.starts_with("INFO forged")),
        "a driver forged a log line:\n{log}"
    );
}

#[tokio::test]
async fn a_failed_stop_is_retried_by_the_reaper_until_it_succeeds() {
    // Each step of a stop: the route first, then the VM.
    for (op, on_proxy) in [("remove-route", true), ("remove", false)] {
        failed_stop_is_retried(op, on_proxy).await;
    }
}

async fn failed_stop_is_retried(op: &str, on_proxy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_short_leases(dir.path()).await;
    let api = host.api();
    assert_eq!(
        api.start("gus", &project_dir(dir.path(), "p")).await.status,
        200
    );
    let mock = if on_proxy { host.routes() } else { host.vms() };

    mock.inject(op, "unavailable: hypervisor busy");
    let failed = api.stop("gus").await;
    assert_eq!(failed.status, 502, "{op}: {:?}", failed.body);
    // The session is held as stopping, not lost: the VM still exists.
    assert_eq!(api.status("gus").await.body["status"], "stopping", "{op}");
    assert_eq!(host.vms().items().len(), 1, "{op}");

    // The Reaper keeps retrying while the driver fails...
    eventually(Duration::from_secs(10), "a retried removal", || async {
        (mock.count(op) >= 2).then_some(())
    })
    .await;
    assert_eq!(api.status("gus").await.body["status"], "stopping", "{op}");

    // ...and finishes the stop once it works.
    mock.clear(op);
    eventually(Duration::from_secs(10), "the stop to complete", || async {
        (api.status("gus").await.body["status"] == "none").then_some(())
    })
    .await;
    assert!(host.vms().items().is_empty(), "{op}");
    assert!(host.routes().items().is_empty(), "{op}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_failed_rollback_is_finished_by_the_reaper() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_short_leases(dir.path()).await;
    let api = host.api();
    host.routes().inject("add-route", "failed: proxy refused");
    host.vms().inject("remove", "unavailable: hypervisor busy");

    let failed = api.start("hal", &project_dir(dir.path(), "p")).await;
    assert_eq!(failed.status, 502);
    // The VM could not be removed: the record keeps it tracked as stopping.
    assert_eq!(host.vms().items().len(), 1);
    assert_eq!(api.status("hal").await.body["status"], "stopping");

    host.vms().clear("remove");
    host.routes().clear("add-route");
    eventually(
        Duration::from_secs(10),
        "the reaper to finish the rollback",
        || async {
            (host.vms().items().is_empty() && api.status("hal").await.body["status"] == "none")
                .then_some(())
        },
    )
    .await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_start_abandoned_by_a_dead_host_is_cleaned_up_by_the_reaper() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_short_leases(dir.path()).await;
    let api = host.api();
    // A start got as far as a VM and a route, then its host died: the
    // record says `starting`, held by an owner that will never come back.
    assert_eq!(
        api.start("ida", &project_dir(dir.path(), "p")).await.status,
        200
    );
    let store = host.manager.store().clone();
    let user = vessel::ids::UserId::parse("ida").unwrap();
    let mut record = store.get(&user).await.unwrap().unwrap();
    let owner = record.owner.clone();
    record.status = vessel::store::SessionStatus::Starting;
    record.owner = "dead-host/1".into();
    assert!(store.replace_owned(&record, &owner).await.unwrap());

    eventually(
        Duration::from_secs(10),
        "the reaper to clean the abandoned start",
        || async { (api.status("ida").await.body["status"] == "none").then_some(()) },
    )
    .await;
    assert!(host.vms().items().is_empty());
    assert!(host.routes().items().is_empty());
    // The user's next start works.
    assert_eq!(
        api.start("ida", &project_dir(dir.path(), "p")).await.status,
        200
    );
    host.shutdown().await;
}
