//! Reconciliation makes the drivers agree with the session records: it
//! removes VMs and routes of Vessel's that have no session, cleans up
//! sessions whose VM is gone, restores missing routes, takes over starts
//! whose host died, leaves starts in progress alone, does nothing the
//! second time, survives driver errors, and two hosts reconciling at once
//! do not fight.
//!
//! The drift is made by calling the drivers directly, as a crash, an
//! operator or another tool would leave it.

use std::time::Duration;

use serde_json::json;
use vessel::config::Config;
use vessel::reconcile::{ReconcileReport, Reconciler};
use vessel_tests::{RedisServer, TestHost, eventually, project_dir, route_spec, test_config};

/// A host on Redis with reconciliation configured but not running by
/// itself: tests run passes when they want them.
async fn host(redis: &RedisServer, dir: &std::path::Path) -> (TestHost, Config) {
    let mut config = test_config(&dir.join("data"), Some(redis.url()));
    config.reaper.enabled = false;
    config.session.lease = Duration::from_secs(2);
    (TestHost::start(config.clone()).await, config)
}

async fn pass(host: &TestHost) -> ReconcileReport {
    Reconciler::new(host.manager.clone(), host.config.reconcile.clone())
        .pass()
        .await
        .expect("a reconciliation pass")
}

fn vm_spec(id: &str) -> vessel::plugins::VmSpec {
    vessel::plugins::VmSpec {
        vm_id: id.to_string(),
        name: id.trim_start_matches("vessel-").to_string(),
        image: "img".to_string(),
        cpus: 1,
        memory_mib: 256,
        disk_mib: 1024,
        ports: vec![8080],
        labels: vec![],
    }
}

/// A VM and a route named for a user with no session are removed; a VM
/// not named the way Vessel names them is left alone; every action is
/// counted in `/metrics`.
#[tokio::test]
async fn vms_and_routes_without_a_session_are_removed_and_foreign_ones_kept() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(&redis, dir.path()).await;
    let vm = host.manager.vm();
    vm.create(&vm_spec("vessel-ghost-0")).await.unwrap();
    vm.create(&vm_spec("web-frontend")).await.unwrap();
    host.manager
        .proxy()
        .add_route(&route_spec("ghost", "127.61.0.1", 8080))
        .await
        .unwrap();
    host.manager
        .proxy()
        .add_route(&route_spec("wanderer", "127.61.0.2", 8080))
        .await
        .unwrap();

    let report = pass(&host).await;
    assert_eq!(report.removed_orphan_vms, 1, "{report:?}");
    assert_eq!(report.removed_orphan_routes, 2, "{report:?}");
    assert_eq!(host.vms().items(), vec!["web-frontend".to_string()]);
    assert!(
        host.routes().items().is_empty(),
        "{:?}",
        host.routes().items()
    );
    // The claim the pass held while removing is gone too.
    assert!(redis.session_keys().is_empty());

    let metrics = host.api().get_text("/metrics").await;
    assert_eq!(
        vessel_tests::metric_value(
            &metrics,
            r#"vessel_reconcile_actions_total{action="remove_orphan_vm"}"#
        ),
        1
    );
    assert_eq!(
        vessel_tests::metric_value(
            &metrics,
            r#"vessel_reconcile_actions_total{action="remove_orphan_route"}"#
        ),
        2
    );
    // Idempotent: the second pass finds nothing to do.
    let again = pass(&host).await;
    assert!(!again.acted(), "{again:?}");
    host.shutdown().await;
}

/// An active session whose VM vanished (crashed, removed by hand) is
/// cleaned up: its route and record go, and the user's next start makes a
/// new VM.
#[tokio::test]
async fn a_session_whose_vm_is_gone_is_cleaned_up() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(&redis, dir.path()).await;
    let project = project_dir(dir.path(), "p");
    assert_eq!(host.api().start("lost", &project).await.status, 200);
    assert_eq!(host.api().start("kept", &project).await.status, 200);
    host.manager.vm().remove("vessel-lost-0").await.unwrap();

    let report = pass(&host).await;
    assert_eq!(report.cleaned_lost_sessions, 1, "{report:?}");
    assert_eq!(host.api().status("lost").await.body["status"], "none");
    assert_eq!(host.routes().items(), vec!["vessel-kept-0".to_string()]);
    assert_eq!(host.api().status("kept").await.body["status"], "active");

    let again = host.api().start("lost", &project).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["reused"], false);
    assert!(!pass(&host).await.acted());
    host.shutdown().await;
}

/// A live session whose route was lost (a proxy restarted without its
/// config, a hand edit) gets its route back, to the same VM, and the
/// session is untouched.
#[tokio::test]
async fn a_missing_route_of_a_live_session_is_restored() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(&redis, dir.path()).await;
    let started = host
        .api()
        .start("routed", &project_dir(dir.path(), "p"))
        .await;
    assert_eq!(started.status, 200);
    let before = redis.get_json("session:routed").unwrap();
    host.manager
        .proxy()
        .remove_route("vessel-routed-0")
        .await
        .unwrap();

    let report = pass(&host).await;
    assert_eq!(report.restored_routes, 1, "{report:?}");
    let route = host.routes().item("vessel-routed-0").expect("the route");
    assert_eq!(route["targetIp"], started.body["ip"], "{route}");
    assert_eq!(redis.get_json("session:routed").unwrap(), before);
    assert!(!pass(&host).await.acted());
    host.shutdown().await;
}

/// A session whose record changed after the drivers were listed (a start
/// that finished during the pass) is left to the next pass: the listing may
/// predate its route, so restoring it would be a repair of nothing.
#[tokio::test]
async fn a_session_that_changed_during_the_pass_is_left_to_the_next_one() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(&redis, dir.path()).await;
    let project = project_dir(dir.path(), "p");
    assert_eq!(host.api().start("fresh", &project).await.status, 200);
    host.manager
        .proxy()
        .remove_route("vessel-fresh-0")
        .await
        .unwrap();
    // The record reads as written after any listing this pass can take.
    let mut record = redis.get_json("session:fresh").unwrap();
    let written = record["updatedAt"].as_u64().unwrap();
    record["updatedAt"] = json!(written + 3_600_000);
    redis.set_json("session:fresh", &record);

    let report = pass(&host).await;
    assert_eq!(report.changed_during_pass, 1, "{report:?}");
    assert!(!report.acted(), "{report:?}");
    assert!(host.routes().items().is_empty());

    // Once the record predates the listing, the next pass repairs it.
    record["updatedAt"] = json!(written);
    redis.set_json("session:fresh", &record);
    let report = pass(&host).await;
    assert_eq!(report.restored_routes, 1, "{report:?}");
    assert_eq!(host.routes().items(), vec!["vessel-fresh-0".to_string()]);
    host.shutdown().await;
}

/// A start in progress on a live host is adopted (left alone), even though
/// its VM has no active session yet; once that start's lease expires
/// without renewal (its host died), a pass takes it over and undoes it.
#[tokio::test]
async fn starts_in_progress_are_left_alone_and_abandoned_ones_taken_over() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(&redis, dir.path()).await;
    let vms = host.vms();

    // In progress: the VM exists, the copy hangs, the lease is renewed.
    vms.inject("copy-to", "hang");
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    let pending = tokio::spawn(async move { api.start("busy", &project).await });
    eventually(
        Duration::from_secs(10),
        "the start to reach the copy",
        || async {
            let record = redis.get_json("session:busy")?;
            (record["startStep"] == "copying-project").then_some(())
        },
    )
    .await;
    let report = pass(&host).await;
    assert_eq!(report.adopted, 1, "{report:?}");
    assert!(!report.acted(), "{report:?}");
    assert_eq!(vms.items(), vec!["vessel-busy-0".to_string()]);

    // Abandoned: a record held by a dead host since long before the lease,
    // with a VM it had made.
    host.manager
        .vm()
        .create(&vm_spec("vessel-gone-0"))
        .await
        .unwrap();
    let long_ago = 1_000u64;
    redis.set_json(
        "session:gone",
        &json!({
            "userId": "gone", "vmId": "vessel-gone-0", "ip": null, "url": null,
            "lastHeartbeat": long_ago, "status": "starting", "createdAt": long_ago,
            "updatedAt": long_ago, "owner": "dead-host/1", "startStep": "copying-project"
        }),
    );
    let report = pass(&host).await;
    assert_eq!(report.taken_over, 1, "{report:?}");
    assert!(redis.get_json("session:gone").is_none());
    assert!(!vms.items().contains(&"vessel-gone-0".to_string()));
    // The busy start is still its host's: its request is still open, so its
    // lease is still renewed.
    assert!(vms.items().contains(&"vessel-busy-0".to_string()));
    pending.abort();
    vms.clear("copy-to");
    host.shutdown().await;
}

/// A driver that cannot list fails the pass, not the host: the API still
/// answers, the failure is counted, and the next pass repairs the drift.
#[tokio::test]
async fn a_driver_error_fails_the_pass_not_the_host() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, _) = host(&redis, dir.path()).await;
    host.manager
        .vm()
        .create(&vm_spec("vessel-stray-0"))
        .await
        .unwrap();
    host.vms()
        .inject("list-vms", "unavailable: the VM manager is restarting");

    let reconciler = Reconciler::new(host.manager.clone(), host.config.reconcile.clone());
    let error = reconciler.pass().await.unwrap_err();
    assert!(error.to_string().contains("restarting"), "{error}");
    assert_eq!(host.api().get("/healthz").await.status, 200);
    assert_eq!(host.vms().items(), vec!["vessel-stray-0".to_string()]);

    host.vms().clear("list-vms");
    assert_eq!(reconciler.pass().await.unwrap().removed_orphan_vms, 1);
    assert!(host.vms().items().is_empty());
    host.shutdown().await;
}

/// Two hosts reconciling the same drift at the same time remove each
/// orphan exactly once, and a user's start racing the removal of their
/// orphan VM ends with exactly one VM, live and routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_reconciling_at_once_do_not_fight() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (first, config) = host(&redis, dir.path()).await;
    let second = TestHost::start(config).await;
    let orphans: Vec<String> = (0..20).map(|i| format!("vessel-orphan{i}-0")).collect();
    for id in &orphans {
        first.manager.vm().create(&vm_spec(id)).await.unwrap();
    }
    first
        .manager
        .vm()
        .create(&vm_spec("vessel-racer-0"))
        .await
        .unwrap();

    let project = project_dir(dir.path(), "p");
    let api = second.api();
    let (a, b, started) = tokio::join!(pass(&first), pass(&second), async {
        api.start("racer", &project).await
    });
    assert!(a.skipped || b.skipped || a.removed_orphan_vms + b.removed_orphan_vms > 0);
    assert_eq!(started.status, 200, "{:?}", started.body);

    // Whatever the interleaving, a later pass leaves it all consistent.
    pass(&first).await;
    let removes = first.vms().ok_counts("remove");
    for id in &orphans {
        assert_eq!(removes.get(id), Some(&1), "{id} removed other than once");
    }
    assert_eq!(first.vms().items(), vec!["vessel-racer-0".to_string()]);
    assert_eq!(first.routes().items(), vec!["vessel-racer-0".to_string()]);
    assert_eq!(first.api().status("racer").await.body["status"], "active");
    first.shutdown().await;
    second.shutdown().await;
}
