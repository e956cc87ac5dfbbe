//! The seed's validation sequence, on the real `vessel` binary with a real
//! Redis and the mock plugins: cold start, cache hit, status, and the Reaper
//! stopping a session whose heartbeat an operator set an hour back.

use std::time::Duration;

use serde_json::Value;
use vessel_tests::{HostProcess, MockState, RedisServer, eventually, free_port, project_dir};

#[tokio::test]
async fn the_seed_validation_sequence_on_mock_plugins() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let project = project_dir(dir.path(), "user-a-project");
    let port = free_port();
    let config = format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[store]
redis_url = "{redis}"

[session]
project_roots = ["{projects}"]

[plugins]
dir = "{plugins}"
cache_dir = "{cache}"

[reaper]
interval = "200ms"
idle_timeout = "30m"
"#,
        data = dir.path().join("data").display(),
        redis = redis.url(),
        projects = dir.path().display(),
        plugins = vessel_tests::plugin_dir().display(),
        cache = vessel_tests::shared_cache_dir().display(),
    );
    let host = HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let api = host.api();
    let vms = MockState {
        dir: dir.path().join("data/mock-vm"),
    };
    let routes = MockState {
        dir: dir.path().join("data/mock-proxy"),
    };

    // 1. Start (cold): a VM is created, the project copied, a route added.
    let cold = api.start("User-A", &project).await;
    assert_eq!(cold.status, 200, "{:?}", cold.body);
    assert_eq!(cold.body["reused"], false);
    assert_eq!(cold.body["status"], "active");
    assert_eq!(cold.body["vmId"], "vessel-user-a-x");
    let url = cold.body["url"].as_str().unwrap().to_string();
    // One name everywhere: lower case and DNS-safe, distinct from user-a's.
    assert_eq!(url, "http://127.0.0.1:8000/user-a-x/");
    let ip = cold.body["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("127.61."), "{ip}");
    let vm = vms.item("vessel-user-a-x").expect("the mock holds the VM");
    // The driver copied the host's staged copy of the project (never the
    // user's directory itself), which is gone once the copy is done.
    let copy = vm["copies"][0].as_str().unwrap().to_string();
    let staged = format!("{}/", dir.path().join("data/staging").display());
    assert!(
        copy.starts_with(&staged) && copy.ends_with(" -> /workspace"),
        "{copy}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/staging"))
            .unwrap()
            .count(),
        0
    );
    assert!(project.exists());
    assert_eq!(routes.items(), vec!["vessel-user-a-x".to_string()]);

    // 2. Start again: the same URL, and no second create (the call record).
    let hit = api.start("User-A", &project).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body["reused"], true);
    assert_eq!(hit.body["url"], url.as_str());
    assert_eq!(vms.count("create"), 1, "{:?}", vms.calls());
    assert_eq!(routes.count("add-route"), 1);

    // 3. Status is active, with the VM's address.
    let status = api.status("User-A").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["status"], "active");
    assert_eq!(status.body["ip"], ip.as_str());
    assert_eq!(status.body["url"], url.as_str());

    // The seed's data contract, as an operator reads it.
    let mut stored = redis.get_json("session:User-A").expect("the session key");
    for field in ["vmId", "ip", "url", "lastHeartbeat"] {
        assert!(stored.get(field).is_some(), "{field} missing in {stored}");
    }

    // 4. An operator sets lastHeartbeat an hour back by hand.
    let an_hour_ago = stored["lastHeartbeat"].as_u64().unwrap() - 3_600_000;
    stored["lastHeartbeat"] = Value::from(an_hour_ago);
    redis.set_json("session:User-A", &stored);

    // Within the reaper interval: VM and route gone from the mocks' own
    // lists, the key deleted, and the Reaper's event logged.
    eventually(
        Duration::from_secs(20),
        "the reaper to stop User-A",
        || async {
            (redis.get_json("session:User-A").is_none()
                && vms.items().is_empty()
                && routes.items().is_empty())
            .then_some(())
        },
    )
    .await;
    assert_eq!(vms.count_ok("remove", "vessel-user-a-x"), 1);
    assert_eq!(routes.count_ok("remove-route", "vessel-user-a-x"), 1);
    eventually(Duration::from_secs(5), "the reaper's log line", || async {
        host.log_text()
            .contains("Reaper killed zombie session for User User-A")
            .then_some(())
    })
    .await;
    assert_eq!(api.status("User-A").await.body["status"], "none");
    // The plugins' own log lines reach the host's log, tagged with the plugin.
    let log = host.log_text();
    assert!(log.contains("created vessel-user-a-x at 127.61."), "{log}");
    assert!(log.contains("mock_vm.wasm"), "{log}");
}
