//! The Caddy driver against a real Caddy: routes are added, moved and
//! removed live through the admin API, over the host's `http` capability
//! granted for the admin origin only.

use std::time::Duration;

use vessel::plugins::{DriverError, PluginError};
use vessel_tests::proxies::{CaddyServer, FakeVm, fetch, serves};
use vessel_tests::{eventually, plugin, proxy_driver, route_spec, test_config};

fn caddy_config(dir: &std::path::Path, caddy: &CaddyServer) -> vessel::config::Config {
    let mut config = test_config(&dir.join("data"), None);
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
            .insert(key.to_string(), toml::Value::String(value));
    }
    config
}

#[tokio::test]
async fn routes_are_added_moved_and_removed_live() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = CaddyServer::start(dir.path());
    let first = FakeVm::start("127.61.0.211", "first").await;
    let second = FakeVm::start("127.61.0.212", "second").await;
    let driver = proxy_driver(&caddy_config(dir.path(), &caddy));

    let url = driver
        .add_route(&route_spec("User-A", "127.61.0.211", first.port))
        .await
        .unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{}/user-a-x/", caddy.port));
    serves(&format!("{url}app.js"), None, "first /app.js").await;

    let routes = driver.list_routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].route_id, "vessel-user-a-x");
    assert_eq!(routes[0].target_ip, "127.61.0.211");
    assert_eq!(routes[0].url, url);

    // Adding it again is an upsert: the same URL, the new target.
    let moved = driver
        .add_route(&route_spec("User-A", "127.61.0.212", second.port))
        .await
        .unwrap();
    assert_eq!(moved, url);
    serves(&format!("{url}app.js"), None, "second /app.js").await;
    assert_eq!(driver.list_routes().await.unwrap().len(), 1);

    // A second user's route lives beside it.
    let other = driver
        .add_route(&route_spec("User-B", "127.61.0.211", first.port))
        .await
        .unwrap();
    serves(&other, None, "first /").await;
    serves(&url, None, "second /").await;

    driver.remove_route("vessel-user-a-x").await.unwrap();
    eventually(Duration::from_secs(10), "the route to be gone", || async {
        match fetch(&format!("{url}app.js"), None).await {
            Some((_, body)) if !body.contains("second") => Some(()),
            _ => None,
        }
    })
    .await;
    serves(&other, None, "first /").await;
    assert_eq!(driver.list_routes().await.unwrap().len(), 1);
    // Removing again is a success.
    driver.remove_route("vessel-user-a-x").await.unwrap();
}

#[tokio::test]
async fn the_admin_api_is_reachable_only_through_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = CaddyServer::start(dir.path());
    let mut config = caddy_config(dir.path(), &caddy);
    // Granted some other origin, not Caddy's.
    config.plugins.proxy.grants.http = vec!["http://127.0.0.1:1".to_string().into()];
    let driver = proxy_driver(&config);
    let denied = driver
        .add_route(&route_spec("c", "127.61.0.213", 8080))
        .await;
    assert!(
        matches!(
            denied,
            Err(PluginError::Driver {
                error: DriverError::Denied(_),
                ..
            })
        ),
        "{denied:?}"
    );
}

#[tokio::test]
async fn a_caddy_that_is_down_is_reported_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = CaddyServer::start(dir.path());
    let config = caddy_config(dir.path(), &caddy);
    drop(caddy);
    let driver = proxy_driver(&config);
    let down = driver
        .add_route(&route_spec("d", "127.61.0.214", 8080))
        .await;
    assert!(
        matches!(
            down,
            Err(PluginError::Driver {
                error: DriverError::Unavailable(_),
                ..
            })
        ),
        "{down:?}"
    );
}
