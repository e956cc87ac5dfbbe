//! Records bound to their keys: a record under `session:alice` that names
//! another user, or a VM that is not alice's (a bad hand edit, or a write
//! by anyone with access to Redis), never makes Vessel stop, route or
//! remove anything of another user. It is refused as corrupt, logged,
//! counted, and left for the operator.

use std::time::Duration;

use serde_json::{Value, json};
use vessel::reconcile::Reconciler;
use vessel_tests::{RedisServer, TestHost, eventually, project_dir, test_config, vm_id};

#[tokio::test]
async fn a_record_naming_another_users_vm_or_user_is_refused_and_left_alone() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    // An hour without a heartbeat is idle: the Reaper would stop any valid
    // record below.
    config.reaper.idle_timeout = Duration::from_secs(3600);
    let host = TestHost::start(config.clone()).await;
    let api = host.api();

    let bob = api.start("bob", &project_dir(dir.path(), "bob")).await;
    assert_eq!(bob.status, 200, "{:?}", bob.body);
    let bob_record = redis.get_json("session:bob").unwrap();

    // Hand-written records that point at bob's session, all idle for a day.
    let a_day_ago = bob_record["lastHeartbeat"].as_u64().unwrap() - 86_400_000;
    let mut forged = bob_record.clone();
    forged["lastHeartbeat"] = Value::from(a_day_ago);
    let mut alice = forged.clone();
    alice["userId"] = json!("alice"); // alice's key and name, bob's VM
    let mut carol = forged.clone();
    carol["vmId"] = json!(vm_id("carol")); // carol's key and VM, bob's name
    let mut dave = forged.clone();
    dave.as_object_mut().unwrap().remove("userId"); // no name, bob's VM
    let mut bob_case = forged.clone();
    bob_case["userId"] = json!("Bob"); // another user who differs by case
    for (user, record) in [
        ("alice", &alice),
        ("carol", &carol),
        ("dave", &dave),
        ("Bob", &bob_case),
    ] {
        redis.set_json(&format!("session:{user}"), record);
    }

    // Every request on them is refused with the record's own error, and
    // does nothing.
    for user in ["alice", "carol", "dave", "Bob"] {
        let project = project_dir(dir.path(), user);
        for answer in [
            api.stop(user).await,
            api.start(user, &project).await,
            api.heartbeat(user).await,
            api.status(user).await,
        ] {
            assert_eq!(answer.status, 500, "{user}: {:?}", answer.body);
            assert_eq!(answer.error_code(), "corrupt_record", "{user}");
        }
    }

    // The Reaper skips them (and counts them), and a reconciliation pass
    // removes nothing.
    let metrics = eventually(
        Duration::from_secs(10),
        "the Reaper to meet the corrupt records",
        || async {
            let text = api.get_text("/metrics").await;
            let met = vessel_tests::metric_value(
                &text,
                r#"vessel_corrupt_records_total{found_by="reaper"}"#,
            );
            (met > 0).then_some(text)
        },
    )
    .await;
    assert!(
        metrics.contains(r#"vessel_corrupt_records_total{found_by="api"} 16"#),
        "{metrics}"
    );
    let report = Reconciler::new(host.manager.clone(), config.reconcile.clone())
        .pass()
        .await
        .unwrap();
    assert!(!report.acted(), "{report:?}");

    // Bob's session is untouched: his VM, his route, his record.
    assert_eq!(host.vms().items(), vec![vm_id("bob")]);
    assert_eq!(host.routes().items(), vec![vm_id("bob")]);
    assert_eq!(host.vms().count("remove"), 0);
    assert_eq!(host.routes().count("remove-route"), 0);
    assert_eq!(redis.get_json("session:bob").unwrap(), bob_record);
    assert_eq!(api.status("bob").await.body["status"], "active");
    // The bad records are left as they were, for the operator.
    assert_eq!(redis.get_json("session:alice").unwrap(), alice);
    assert_eq!(redis.get_json("session:carol").unwrap(), carol);

    // Once the operator deletes one, its user starts normally.
    let mut conn = redis.connection();
    let _: () = redis::cmd("DEL")
        .arg("session:alice")
        .query(&mut conn)
        .unwrap();
    let started = api.start("alice", &project_dir(dir.path(), "alice")).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(started.body["vmId"], vm_id("alice").as_str());
    host.shutdown().await;
}
