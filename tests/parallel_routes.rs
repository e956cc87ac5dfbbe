//! Route changes in parallel never fail each other: 50 sessions reaped at
//! once while 50 others start, through a real nginx and a real Caddy. Every
//! change is applied, none is refused, and no other user's route is
//! disturbed. (nginx's check and reload of one change must not overlap
//! another's: the proxy driver's calls take turns, `max_concurrent_calls`.)

use std::collections::BTreeSet;
use std::time::Duration;

use vessel::config::{Config, DirGrant, ExecGrant};
use vessel_tests::proxies::{CaddyServer, NginxLayout, NginxServer, fetch};
use vessel_tests::{RedisServer, TestHost, eventually, plugin, project_dir, test_config, vm_id};

const USERS: usize = 50;

fn config(dir: &std::path::Path, redis: &RedisServer) -> Config {
    let mut config = test_config(&dir.join("data"), Some(redis.url()));
    config.reaper.concurrency = USERS;
    config.reaper.interval = Duration::from_millis(200);
    config
}

/// Starts 50 `old` users, makes them idle, then starts 50 `new` users while
/// the Reaper stops the old ones; returns the new users' URLs.
async fn churn(host: &TestHost, redis: &RedisServer, dir: &std::path::Path) -> Vec<String> {
    let project = project_dir(dir, "p");
    let start_all = |prefix: &'static str| {
        let project = project.clone();
        futures::future::join_all((0..USERS).map(move |i| {
            let api = host.api();
            let project = project.clone();
            async move { api.start(&format!("{prefix}{i}"), &project).await }
        }))
    };
    for answer in start_all("old").await {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    for i in 0..USERS {
        let key = format!("session:old{i}");
        let mut record = redis.get_json(&key).unwrap();
        record["lastHeartbeat"] = serde_json::Value::from(1_000u64);
        redis.set_json(&key, &record);
    }
    let fresh = start_all("new").await;
    let mut urls = Vec::new();
    for answer in &fresh {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        urls.push(answer.body["url"].as_str().unwrap().to_string());
    }
    eventually(
        Duration::from_secs(60),
        "the old sessions to be reaped",
        || async {
            let keys = redis.session_keys();
            (keys.len() == USERS && keys.iter().all(|k| k.starts_with("session:new"))).then_some(())
        },
    )
    .await;
    // Every stop went through: none is left stopping, none was retried.
    for i in 0..USERS {
        let record = redis.get_json(&format!("session:new{i}")).unwrap();
        assert_eq!(record["status"], "active", "{record}");
    }
    let metrics = host.api().get_text("/metrics").await;
    assert!(metrics.contains("vessel_rollbacks_total 0\n"), "{metrics}");
    assert!(
        metrics.contains(&format!("vessel_stops_total{{by=\"reaper_idle\"}} {USERS}")),
        "{metrics}"
    );
    urls
}

/// The route ids the proxy driver lists, which must be exactly the new users'.
async fn assert_routes_are_the_new_users(host: &TestHost) {
    let listed: BTreeSet<String> = host
        .manager
        .proxy()
        .list_routes()
        .await
        .unwrap()
        .into_iter()
        .map(|route| route.route_id)
        .collect();
    let expected: BTreeSet<String> = (0..USERS).map(|i| vm_id(&format!("new{i}"))).collect();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_reaped_and_fifty_started_at_once_through_nginx() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Path);
    let mut config = config(dir.path(), &redis);
    let proxy = &mut config.plugins.proxy;
    proxy.path = plugin("nginx_proxy");
    proxy.grants.dirs = vec![DirGrant {
        host: nginx.routes.clone(),
        guest: "/routes".into(),
        read_only: false,
    }];
    proxy.grants.exec = vec![ExecGrant {
        name: Some("nginx".into()),
        command: nginx.command(),
        env: Default::default(),
        max_timeout: Duration::from_secs(30),
        max_output_bytes: 64 * 1024,
        allow: vessel_tests::example_exec_policy("ignite-nginx.toml", "nginx"),
    }];
    let url_template = format!("http://127.0.0.1:{}/{{user}}/", nginx.port);
    proxy
        .settings
        .insert("url_template".into(), toml::Value::String(url_template));
    let host = TestHost::start(config).await;

    let urls = churn(&host, &redis, dir.path()).await;
    assert_routes_are_the_new_users(&host).await;
    // nginx serves each new route (to a mock VM that answers nothing: 502)
    // and none of the old ones (its own 404), once its last reload is done
    // (nginx -s reload returns before the new workers serve).
    for url in &urls {
        eventually(
            Duration::from_secs(10),
            &format!("nginx to route {url}"),
            || async { (fetch(url, None).await?.0 == 502).then_some(()) },
        )
        .await;
    }
    let old = format!(
        "http://127.0.0.1:{}/{}/",
        nginx.port,
        vessel_tests::public_name("old0")
    );
    assert_eq!(fetch(&old, None).await.unwrap().0, 404);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_reaped_and_fifty_started_at_once_through_caddy() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let caddy = CaddyServer::start(dir.path());
    let mut config = config(dir.path(), &redis);
    let proxy = &mut config.plugins.proxy;
    proxy.path = plugin("caddy_proxy");
    proxy.grants.dirs.clear();
    proxy.grants.http = vec![vessel_tests::example_caddy_grant(&caddy.admin)];
    for (key, value) in [
        ("admin_url", caddy.admin.clone()),
        (
            "url_template",
            format!("http://127.0.0.1:{}/{{user}}/", caddy.port),
        ),
    ] {
        proxy
            .settings
            .insert(key.into(), toml::Value::String(value));
    }
    let host = TestHost::start(config).await;

    churn(&host, &redis, dir.path()).await;
    assert_routes_are_the_new_users(&host).await;
    host.shutdown().await;
}
