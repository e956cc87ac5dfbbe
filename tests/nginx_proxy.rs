//! The nginx driver against a real nginx: routes reach the VM through
//! nginx, stop reaching it after removal, and a bad route never breaks the
//! routes already served.

use std::time::Duration;

use vessel::config::{DirGrant, ExecGrant};
use vessel::plugins::{DriverError, PluginError};
use vessel_tests::proxies::{FakeVm, NginxLayout, NginxServer, fetch, serves};
use vessel_tests::{eventually, plugin, proxy_driver, route_spec, test_config};

fn nginx_config(
    dir: &std::path::Path,
    nginx: &NginxServer,
    settings: &[(&str, String)],
) -> vessel::config::Config {
    let mut config = test_config(&dir.join("data"), None);
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
    for (key, value) in settings {
        proxy
            .settings
            .insert(key.to_string(), toml::Value::String(value.clone()));
    }
    config
}

#[tokio::test]
async fn a_path_route_reaches_the_vm_until_it_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Path);
    let vm = FakeVm::start("127.61.0.201", "vm-a").await;
    let url_template = format!("http://127.0.0.1:{}/{{user}}/", nginx.port);
    let config = nginx_config(dir.path(), &nginx, &[("url_template", url_template)]);
    let driver = proxy_driver(&config);

    let url = driver
        .add_route(&route_spec("User-A", "127.61.0.201", vm.port))
        .await
        .unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{}/user-a-x/", nginx.port));
    // The prefix is stripped: the VM sees its own paths.
    serves(&format!("{url}index.html"), None, "vm-a /index.html").await;

    let routes = driver.list_routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].route_id, "vessel-user-a-x");
    assert_eq!(routes[0].target_ip, "127.61.0.201");
    assert_eq!(routes[0].target_port, vm.port);
    assert_eq!(routes[0].url, url);

    driver.remove_route("vessel-user-a-x").await.unwrap();
    eventually(Duration::from_secs(10), "the route to be gone", || async {
        match fetch(&format!("{url}index.html"), None).await {
            Some((404, body)) if !body.contains("vm-a") => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(driver.list_routes().await.unwrap().is_empty());
    // Removing again is a success.
    driver.remove_route("vessel-user-a-x").await.unwrap();
    drop(vm);
}

#[tokio::test]
async fn adding_a_route_again_moves_it_to_the_new_target() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Path);
    let first = FakeVm::start("127.61.0.202", "first").await;
    let second = FakeVm::start("127.61.0.203", "second").await;
    let template = format!("http://127.0.0.1:{}/{{user}}/", nginx.port);
    let driver = proxy_driver(&nginx_config(
        dir.path(),
        &nginx,
        &[("url_template", template)],
    ));

    let url = driver
        .add_route(&route_spec("b", "127.61.0.202", first.port))
        .await
        .unwrap();
    serves(&url, None, "first /").await;
    let again = driver
        .add_route(&route_spec("b", "127.61.0.203", second.port))
        .await
        .unwrap();
    assert_eq!(again, url);
    serves(&url, None, "second /").await;
    assert_eq!(driver.list_routes().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_route_never_breaks_the_routes_already_served() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Path);
    let vm = FakeVm::start("127.61.0.204", "good").await;
    let template = format!("http://127.0.0.1:{}/{{user}}/", nginx.port);
    let good = proxy_driver(&nginx_config(
        dir.path(),
        &nginx,
        &[("url_template", template.clone())],
    ));
    let url = good
        .add_route(&route_spec("c", "127.61.0.204", vm.port))
        .await
        .unwrap();
    serves(&url, None, "good /").await;

    // A driver configured for host mode on an nginx that includes routes
    // inside a server block: nginx -t refuses the nested server block.
    let misconfigured = proxy_driver(&nginx_config(
        dir.path(),
        &nginx,
        &[
            ("url_template", template),
            ("mode", "host".to_string()),
            ("server_name_template", "{user}.vessel.test".to_string()),
        ],
    ));
    let refused = misconfigured
        .add_route(&route_spec("d", "127.61.0.204", vm.port))
        .await;
    match refused {
        Err(PluginError::Driver {
            error: DriverError::InvalidInput(message),
            ..
        }) => assert!(
            message.contains("nginx refused the route") && message.contains("not allowed here"),
            "{message}"
        ),
        other => panic!("expected nginx -t to refuse the route, got {other:?}"),
    }
    // The refused file is gone, and the good route is still served after a reload.
    let files: Vec<_> = std::fs::read_dir(&nginx.routes)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, vec!["vessel-vessel-c-0.conf".to_string()]);
    good.remove_route("vessel-nobody-0").await.unwrap();
    serves(&url, None, "good /").await;
}

#[tokio::test]
async fn a_host_route_reaches_the_vm_by_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Host);
    let vm = FakeVm::start("127.61.0.205", "hosted").await;
    let listen_port = vessel_tests::free_port();
    let driver = proxy_driver(&nginx_config(
        dir.path(),
        &nginx,
        &[
            ("mode", "host".to_string()),
            ("listen", format!("127.0.0.1:{listen_port}")),
            ("server_name_template", "{user}.vessel.test".to_string()),
            ("url_template", "http://{user}.vessel.test/".to_string()),
        ],
    ));
    let url = driver
        .add_route(&route_spec("e", "127.61.0.205", vm.port))
        .await
        .unwrap();
    assert_eq!(url, "http://e-0.vessel.test/");
    serves(
        &format!("http://127.0.0.1:{listen_port}/x"),
        Some("e-0.vessel.test"),
        "hosted /x",
    )
    .await;
}

#[tokio::test]
async fn without_the_exec_grant_nginx_cannot_be_run() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Path);
    let mut config = nginx_config(dir.path(), &nginx, &[]);
    config.plugins.proxy.grants.exec.clear();
    let driver = proxy_driver(&config);
    let denied = driver
        .add_route(&route_spec("f", "127.61.0.206", 8080))
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
    // Nothing was left in the routes directory.
    assert_eq!(std::fs::read_dir(&nginx.routes).unwrap().count(), 0);
}
