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
    assert_eq!(vms.items(), vec!["user-ivy-session".to_string()]);
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
async fn fifty_parallel_starts_on_two_hosts_sharing_redis_create_one_vm() {
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
    starts_create_one_vm(&[&first, &second], &project_dir(dir.path(), "p"), 50).await;
    first.shutdown().await;
    second.shutdown().await;
}
