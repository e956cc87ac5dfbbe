//! The seed's validation test, end to end, with the seed's own user id
//! `User-A`: the real `vessel` binary with a real Redis, the ignite driver on
//! the (strict) ignite stand-in (VMs that take two seconds to boot and serve
//! HTTP on their 127.61.0.x address), and the nginx driver in front of a
//! real nginx, or the Caddy driver in front of a real Caddy;
//! reconciliation at start-up first removes a VM left over from an earlier
//! run.

use std::time::Duration;

use serde_json::Value;
use vessel_tests::ignite::{FakeIgnite, listening};
use vessel_tests::proxies::{CaddyServer, NginxLayout, NginxServer, fetch};
use vessel_tests::{HostProcess, RedisServer, eventually, free_port, project_dir};

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn toml_table(entries: &std::collections::BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{k} = {v:?}"))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// The proxy in front of the VMs, running, and its driver's config table.
enum Proxy {
    Nginx(NginxServer),
    Caddy(CaddyServer),
}

impl Proxy {
    /// The `[plugins.proxy]` table that drives this proxy.
    fn table(&self) -> String {
        match self {
            Proxy::Nginx(nginx) => format!(
                r#"
[plugins.proxy]
path = "nginx_proxy.wasm"
settings = {{ url_template = "http://127.0.0.1:{port}/{{user}}/" }}

[[plugins.proxy.grants.dirs]]
host = "{routes}"
guest = "/routes"

[[plugins.proxy.grants.exec]]
name = "nginx"
command = {command}
"#,
                port = nginx.port,
                routes = nginx.routes.display(),
                command = toml_list(&nginx.command()),
            ),
            Proxy::Caddy(caddy) => format!(
                r#"
[plugins.proxy]
path = "caddy_proxy.wasm"
settings = {{ admin_url = "{admin}", url_template = "http://127.0.0.1:{port}/{{user}}/" }}

[plugins.proxy.grants]
http = ["{admin}"]
"#,
                admin = caddy.admin,
                port = caddy.port,
            ),
        }
    }

    /// The port public URLs point at.
    fn port(&self) -> u16 {
        match self {
            Proxy::Nginx(nginx) => nginx.port,
            Proxy::Caddy(caddy) => caddy.port,
        }
    }

    /// How many of Vessel's routes the proxy holds, by its own account.
    async fn routes(&self) -> usize {
        match self {
            Proxy::Nginx(nginx) => std::fs::read_dir(&nginx.routes).unwrap().count(),
            Proxy::Caddy(caddy) => {
                let url = format!("{}/config/apps/http/servers/vessel/routes", caddy.admin);
                let (status, body) = fetch(&url, None).await.expect("Caddy's admin API");
                assert_eq!(status, 200, "{body}");
                let routes: Value = serde_json::from_str(&body).unwrap();
                routes.as_array().map_or(0, Vec::len)
            }
        }
    }
}

#[tokio::test]
async fn the_seed_validation_test_on_ignite_and_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = NginxServer::start(&dir.path().join("nginx"), NginxLayout::Path);
    seed_sequence(dir, Proxy::Nginx(nginx)).await;
}

#[tokio::test]
async fn the_seed_validation_test_on_ignite_and_caddy() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = CaddyServer::start(dir.path());
    seed_sequence(dir, Proxy::Caddy(caddy)).await;
}

async fn seed_sequence(dir: tempfile::TempDir, proxy: Proxy) {
    let redis = RedisServer::start();
    let ignite = FakeIgnite::new(dir.path(), Duration::from_secs(2));
    let project = project_dir(dir.path(), "user-a-project");
    let port = free_port();
    let config = format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[store]
redis_url = "{redis}"

[session]
ports = [{http_port}]
project_roots = ["{projects}"]

[reaper]
interval = "200ms"

[plugins]
dir = "{plugins}"
cache_dir = "{cache}"

[plugins.vm]
path = "ignite_vm.wasm"
liveness = "tcp"

[[plugins.vm.grants.exec]]
name = "ignite"
command = {ignite_command}
env = {ignite_env}

{proxy_table}
"#,
        data = dir.path().join("data").display(),
        redis = redis.url(),
        http_port = ignite.http_port,
        projects = dir.path().display(),
        plugins = vessel_tests::plugin_dir().display(),
        cache = vessel_tests::shared_cache_dir().display(),
        ignite_command = toml_list(&ignite.grant().command),
        ignite_env = toml_table(&ignite.env()),
        proxy_table = proxy.table(),
    );
    // Left over from an earlier run: a VM named the way Vessel names them
    // but with no session, and one that is not Vessel's.
    for name in ["vessel-ghost-0", "web-1"] {
        let (code, out, err) = ignite.run(&["run", "weaveworks/ignite-ubuntu", "--name", name]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let host = HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let api = host.api();

    // 0. Reconciliation at start-up removes the leftover, and only it, and
    // logs why. The log line follows the removal, so both are awaited.
    eventually(
        Duration::from_secs(20),
        "the leftover VM to be removed and the removal logged",
        || async {
            let removed = ignite.ps_names() == ["web-1"];
            (removed && host.log_text().contains("remove_orphan_vm")).then_some(())
        },
    )
    .await;

    // 1. Start User A: the VM boots; the URL answers through the proxy.
    let cold = api.start("User-A", &project).await;
    assert_eq!(cold.status, 200, "{:?}\n{}", cold.body, host.log_text());
    assert_eq!(cold.body["reused"], false);
    let url = cold.body["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("http://127.0.0.1:{}/user-a-x/", proxy.port()));
    let ip = cold.body["ip"].as_str().unwrap().to_string();
    eventually(
        Duration::from_secs(10),
        "the URL to answer through the proxy",
        || async {
            match fetch(&format!("{url}README.md"), None).await {
                Some((200, body)) if body == "project user-a-project\n" => Some(()),
                _ => None,
            }
        },
    )
    .await;

    // 2. Start again: the same URL, and no second `ignite run`. The hit
    // runs no ignite command at all (liveness is a TCP connect).
    let calls_before_hit = ignite.calls().len();
    let hit = api.start("User-A", &project).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.body["reused"], true);
    assert_eq!(hit.body["url"], url.as_str());
    let runs_of_user_a = ignite
        .calls()
        .iter()
        .filter(|call| call[0] == "run" && call.contains(&"vessel-user-a-x".to_string()))
        .count();
    assert_eq!(runs_of_user_a, 1, "{:?}", ignite.calls());
    assert_eq!(
        ignite.calls().len(),
        calls_before_hit,
        "{:?}",
        ignite.calls()
    );

    // 3. Status is active, at the VM's loopback address.
    let status = api.status("User-A").await;
    assert_eq!(status.body["status"], "active");
    assert!(ip.starts_with("127.61.0."), "{ip}");
    assert_eq!(status.body["ip"], ip.as_str());

    // 4. An hour without a heartbeat (set by hand): within the reaper
    // interval the VM is gone from `ignite ps`, its server process is gone,
    // and the route is gone from the proxy.
    let mut stored = redis.get_json("session:User-A").unwrap();
    let an_hour_ago = stored["lastHeartbeat"].as_u64().unwrap() - 3_600_000;
    stored["lastHeartbeat"] = Value::from(an_hour_ago);
    redis.set_json("session:User-A", &stored);
    eventually(
        Duration::from_secs(30),
        "the reaper to stop User-A",
        || async { redis.get_json("session:User-A").is_none().then_some(()) },
    )
    .await;
    assert_eq!(ignite.ps_names(), ["web-1"]);
    // The server's socket closes as its process exits, a moment after rm.
    eventually(
        Duration::from_secs(5),
        "the VM's server to stop",
        || async { (!listening(&ip, ignite.http_port)).then_some(()) },
    )
    .await;
    assert_eq!(proxy.routes().await, 0);
    eventually(
        Duration::from_secs(10),
        "the proxy to stop routing",
        || async {
            match fetch(&format!("{url}README.md"), None).await {
                Some((_, body)) if !body.contains("user-a-project") => Some(()),
                _ => None,
            }
        },
    )
    .await;
    // The Reaper logs its event once the stop is done, so it is awaited too.
    eventually(Duration::from_secs(5), "the reaper's log line", || async {
        host.log_text()
            .contains("Reaper killed zombie session for User User-A")
            .then_some(())
    })
    .await;
}
