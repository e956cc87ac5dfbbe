//! Concurrent starts for one user create exactly one VM, on one host and
//! across two hosts sharing one Redis; every caller gets the same session.

use std::collections::HashSet;

use vessel_tests::{RedisServer, TestHost, project_dir, test_config};

async fn starts_create_one_vm(hosts: &[&TestHost], project: &std::path::Path, starts: usize) {
    let requests = (0..starts).map(|i| {
        let api = hosts[i % hosts.len()].api();
        let project = project.to_path_buf();
        async move { api.start("ivy", &project).await }
    });
    let answers = futures::future::join_all(requests).await;
    let mut urls = HashSet::new();
    for answer in &answers {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        urls.insert(answer.body["url"].as_str().unwrap().to_string());
    }
    assert_eq!(urls.len(), 1, "callers got different sessions: {urls:?}");
    let created = answers.iter().filter(|a| a.body["reused"] == false).count();
    assert_eq!(created, 1, "exactly one caller created the session");
    let vms = hosts[0].vms();
    assert_eq!(vms.count("create"), 1, "{:?}", vms.calls());
    assert_eq!(vms.items(), vec!["vessel-ivy-0".to_string()]);
}

#[tokio::test]
async fn fifty_parallel_starts_on_one_host_create_one_vm() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    // A boot that takes a while keeps the starts overlapping.
    config
        .plugins
        .vm
        .settings
        .insert("boot_delay_ms".into(), toml::Value::Integer(300));
    let host = TestHost::start(config).await;
    starts_create_one_vm(&[&host], &project_dir(dir.path(), "p"), 50).await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_hundred_parallel_starts_on_two_hosts_sharing_redis_create_one_vm() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Both hosts drive the same (mock) VM manager and proxy: one data dir.
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    config
        .plugins
        .vm
        .settings
        .insert("boot_delay_ms".into(), toml::Value::Integer(300));
    let first = TestHost::start(config.clone()).await;
    let second = TestHost::start(config).await;
    starts_create_one_vm(&[&first, &second], &project_dir(dir.path(), "p"), 100).await;
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_reapers_stop_each_stale_session_exactly_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    // Start the sessions with the Reapers off, then age them by hand.
    config.reaper.enabled = false;
    let starter = TestHost::start(config.clone()).await;
    let project = project_dir(dir.path(), "p");
    let users: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    for chunk in users.chunks(50) {
        let starts = chunk.iter().map(|user| {
            let api = starter.api();
            let project = project.clone();
            async move { api.start(user, &project).await }
        });
        for answer in futures::future::join_all(starts).await {
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
    }
    starter.shutdown().await;
    for user in &users {
        let key = format!("session:{user}");
        let mut record = redis.get_json(&key).unwrap();
        record["lastHeartbeat"] = serde_json::Value::from(1_000u64);
        redis.set_json(&key, &record);
    }

    config.reaper.enabled = true;
    config.reaper.interval = std::time::Duration::from_millis(100);
    config.reaper.batch_size = 30;
    let first = TestHost::start(config.clone()).await;
    let second = TestHost::start(config).await;
    let vms = first.vms();
    vessel_tests::eventually(
        std::time::Duration::from_secs(60),
        "both reapers to finish",
        // A VM is gone before its remove call is recorded and before the
        // record is deleted: wait for the records, the last step of a stop.
        || async { (redis.session_keys().is_empty() && vms.items().is_empty()).then_some(()) },
    )
    .await;
    let vm_removes = vms.ok_counts("remove");
    let route_removes = first.routes().ok_counts("remove-route");
    for user in &users {
        let vm = vessel_tests::vm_id(user);
        assert_eq!(
            vm_removes.get(&vm),
            Some(&1),
            "{vm} was not removed exactly once"
        );
        assert_eq!(
            route_removes.get(&vm),
            Some(&1),
            "route {vm} not removed exactly once"
        );
    }
    assert_eq!(
        vm_removes.len(),
        users.len(),
        "a remove of a VM that was not a session"
    );
    // The sweeps walked the keys with SCAN in batches, never with KEYS
    // (which blocks Redis for the whole keyspace).
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap();
    assert!(!stats.contains("cmdstat_keys:"), "{stats}");
    first.shutdown().await;
    second.shutdown().await;
}
