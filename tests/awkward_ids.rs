//! One user, one name everywhere: user ids that differ only by case or by
//! `_` versus `-`, ids starting with a digit and the longest id each get
//! their own VM on the (strict) ignite stand-in and their own route on a
//! real nginx or Caddy, in path and in host mode; and no user's URL, in any
//! spelling a proxy may fold, reaches another user's workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use vessel::config::{Config, DirGrant, ExecGrant, Liveness};
use vessel::ids::UserId;
use vessel_tests::ignite::FakeIgnite;
use vessel_tests::proxies::{CaddyServer, NginxLayout, NginxServer, fetch};
use vessel_tests::{TestHost, eventually, plugin, project_dir, test_config};

/// The ids of the table: the seed's `User-A` and its case
/// variants, `_` against `-`, a leading digit, and 48 characters (ending in
/// `-`).
fn awkward_ids() -> Vec<String> {
    let mut ids: Vec<String> = ["User-A", "user-a", "USER-A", "a_b", "a-b", "A_b", "9x"]
        .iter()
        .map(|id| id.to_string())
        .collect();
    let longest = "Long_ID-".repeat(6);
    assert_eq!(longest.len(), 48);
    ids.push(longest);
    ids
}

/// Which proxy, in which mode.
#[derive(Debug, Clone, Copy)]
enum Proxy {
    NginxPath,
    NginxHost,
    CaddyPath,
    CaddyHost,
}

/// A running proxy and where its traffic enters.
struct RunningProxy {
    _nginx: Option<NginxServer>,
    _caddy: Option<CaddyServer>,
    /// The loopback port requests go to.
    port: u16,
    /// Whether users are told apart by host name (sent as the Host header).
    by_host: bool,
}

fn exec_grant(name: &str, command: Vec<String>) -> ExecGrant {
    ExecGrant {
        name: Some(name.into()),
        command,
        env: Default::default(),
        max_timeout: Duration::from_secs(30),
        max_output_bytes: 64 * 1024,
        allow: vessel_tests::example_exec_policy("ignite-nginx.toml", name),
    }
}

fn set(config: &mut Config, key: &str, value: String) {
    config
        .plugins
        .proxy
        .settings
        .insert(key.to_string(), toml::Value::String(value));
}

/// Configures the proxy plugin for `proxy` and starts the real server.
fn start_proxy(dir: &Path, config: &mut Config, proxy: Proxy) -> RunningProxy {
    config.plugins.proxy.grants.dirs.clear();
    match proxy {
        Proxy::NginxPath | Proxy::NginxHost => {
            let host_mode = matches!(proxy, Proxy::NginxHost);
            let layout = if host_mode {
                NginxLayout::Host
            } else {
                NginxLayout::Path
            };
            let nginx = NginxServer::start(&dir.join("nginx"), layout);
            config.plugins.proxy.path = plugin("nginx_proxy");
            config.plugins.proxy.grants.dirs = vec![DirGrant {
                host: nginx.routes.clone(),
                guest: "/routes".into(),
                read_only: false,
            }];
            config.plugins.proxy.grants.exec = vec![exec_grant("nginx", nginx.command())];
            let port = if host_mode {
                let listen = vessel_tests::free_port();
                set(config, "mode", "host".into());
                set(config, "listen", format!("127.0.0.1:{listen}"));
                set(config, "server_name_template", "{user}.vessel.test".into());
                set(config, "url_template", "http://{user}.vessel.test/".into());
                listen
            } else {
                let url = format!("http://127.0.0.1:{}/{{user}}/", nginx.port);
                set(config, "url_template", url);
                nginx.port
            };
            RunningProxy {
                port,
                by_host: host_mode,
                _nginx: Some(nginx),
                _caddy: None,
            }
        }
        Proxy::CaddyPath | Proxy::CaddyHost => {
            let host_mode = matches!(proxy, Proxy::CaddyHost);
            let caddy = CaddyServer::start(dir);
            config.plugins.proxy.path = plugin("caddy_proxy");
            config.plugins.proxy.grants.http =
                vec![vessel_tests::example_caddy_grant(&caddy.admin)];
            set(config, "admin_url", caddy.admin.clone());
            if host_mode {
                set(config, "mode", "host".into());
                set(config, "host_template", "{user}.vessel.test".into());
                set(config, "url_template", "http://{user}.vessel.test/".into());
            } else {
                let url = format!("http://127.0.0.1:{}/{{user}}/", caddy.port);
                set(config, "url_template", url);
            }
            RunningProxy {
                port: caddy.port,
                by_host: host_mode,
                _nginx: None,
                _caddy: Some(caddy),
            }
        }
    }
}

impl RunningProxy {
    /// `GET path` below a session's public `url`, sent to the proxy the way
    /// a browser would reach it.
    async fn get(&self, url: &str, path: &str) -> Option<(u16, String)> {
        if self.by_host {
            let host = url
                .strip_prefix("http://")
                .and_then(|rest| rest.split('/').next())
                .expect("a host-mode URL");
            let target = format!("http://127.0.0.1:{}/{path}", self.port);
            fetch(&target, Some(host)).await
        } else {
            fetch(&format!("{url}{path}"), None).await
        }
    }
}

/// What a user's workspace serves: the README of the project copied in.
fn readme_of(project: &str) -> String {
    format!("project {project}\n")
}

async fn each_user_reaches_only_their_own_workspace(proxy: Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let mut config = test_config(&dir.path().join("data"), None);
    config.plugins.vm.path = plugin("ignite_vm");
    config.plugins.vm.liveness = Liveness::Tcp;
    config.plugins.vm.grants.dirs.clear();
    config.plugins.vm.grants.exec = vec![ignite.grant()];
    config.session.ports = vec![ignite.http_port];
    let running = start_proxy(dir.path(), &mut config, proxy);
    let host = TestHost::start(config).await;
    let api = host.api();

    // Every user starts a workspace holding a project of their own.
    let ids = awkward_ids();
    let mut urls = BTreeMap::new();
    let mut vm_ids = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let project = project_dir(dir.path(), &format!("project-{i}"));
        let started = api.start(id, &project).await;
        assert_eq!(started.status, 200, "{proxy:?} {id}: {:?}", started.body);
        let vm_id = started.body["vmId"].as_str().unwrap().to_string();
        let url = started.body["url"].as_str().unwrap().to_string();
        assert_eq!(vm_id, UserId::parse(id).unwrap().vm_id(), "{id}");
        assert!(vm_ids.insert(vm_id), "{id} shares a VM name");
        urls.insert(id.clone(), (url, format!("project-{i}")));
    }
    // No two URLs are equal, even ignoring case.
    let folded: BTreeSet<String> = urls.values().map(|(u, _)| u.to_lowercase()).collect();
    assert_eq!(folded.len(), ids.len(), "{urls:?}");

    // Ignite holds one VM per user, named as the host said, with the exact
    // id in its label.
    let mut names = ignite.ps_names();
    names.sort();
    assert_eq!(names, vm_ids.iter().cloned().collect::<Vec<_>>());
    for id in &ids {
        let vm_id = UserId::parse(id).unwrap().vm_id();
        let (code, out, err) = ignite.run(&["inspect", "vm", &vm_id]);
        assert_eq!(code, 0, "{out}{err}");
        let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(inspected["metadata"]["labels"]["vessel.user"], id.as_str());
    }

    // Each URL serves its own user's project, and no spelling of it that a
    // proxy might fold to another name serves anyone else's.
    for (id, (url, project)) in &urls {
        let own = readme_of(project);
        eventually(
            Duration::from_secs(10),
            &format!("{proxy:?}: {url} to serve {id}'s project"),
            || async {
                (running.get(url, "README.md").await == Some((200, own.clone()))).then_some(())
            },
        )
        .await;
        for variant in [url.to_uppercase(), url.to_lowercase()] {
            let variant = variant.replacen("HTTP://", "http://", 1);
            if let Some((200, body)) = running.get(&variant, "README.md").await {
                assert_eq!(body, own, "{proxy:?}: {variant} reached another workspace");
            }
        }
    }

    // The drivers' listings map back to the exact users, without a lookup.
    let listed_vms: BTreeSet<String> = host
        .manager
        .vm()
        .list_vms()
        .await
        .unwrap()
        .iter()
        .filter_map(|vm| UserId::from_vm_id(&vm.vm_id))
        .map(|user| user.to_string())
        .collect();
    let listed_routes: BTreeSet<String> = host
        .manager
        .proxy()
        .list_routes()
        .await
        .unwrap()
        .iter()
        .filter_map(|route| UserId::from_vm_id(&route.route_id))
        .map(|user| user.to_string())
        .collect();
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(listed_vms, all);
    assert_eq!(listed_routes, all);

    // Stopping User-A stops User-A only: its case variants keep serving.
    let stopped = api.stop("User-A").await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    assert_eq!(stopped.body["stopped"], true);
    for id in ["user-a", "USER-A"] {
        let (url, project) = &urls[id];
        assert_eq!(
            running.get(url, "README.md").await,
            Some((200, readme_of(project))),
            "{proxy:?}: {id} after User-A stopped"
        );
        assert_eq!(api.status(id).await.body["status"], "active");
    }
    assert!(!ignite.ps_names().contains(&"vessel-user-a-x".to_string()));
    // User-A's URL, now without a route, reaches nobody's workspace (in
    // nginx host mode, the driver's catch-all server answers it).
    let (gone_url, _) = &urls["User-A"];
    let others: Vec<String> = urls.values().map(|(_, p)| readme_of(p)).collect();
    eventually(
        Duration::from_secs(10),
        &format!("{proxy:?}: {gone_url} to stop serving"),
        || async {
            match running.get(gone_url, "README.md").await {
                Some((200, body)) if others.contains(&body) => None,
                _ => Some(()),
            }
        },
    )
    .await;
    for _ in 0..5 {
        if let Some((200, body)) = running.get(gone_url, "README.md").await {
            assert!(
                !others.contains(&body),
                "{proxy:?}: {gone_url} served {body:?}"
            );
        }
    }
    host.shutdown().await;
}

#[tokio::test]
async fn awkward_ids_on_ignite_and_nginx_in_path_mode() {
    each_user_reaches_only_their_own_workspace(Proxy::NginxPath).await;
}

#[tokio::test]
async fn awkward_ids_on_ignite_and_nginx_in_host_mode() {
    each_user_reaches_only_their_own_workspace(Proxy::NginxHost).await;
}

#[tokio::test]
async fn awkward_ids_on_ignite_and_caddy_in_path_mode() {
    each_user_reaches_only_their_own_workspace(Proxy::CaddyPath).await;
}

#[tokio::test]
async fn awkward_ids_on_ignite_and_caddy_in_host_mode() {
    each_user_reaches_only_their_own_workspace(Proxy::CaddyHost).await;
}
