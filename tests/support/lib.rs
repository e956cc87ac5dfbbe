//! What Vessel's end-to-end tests share: real `redis-server` processes on
//! free loopback ports, Vessel hosts (in this process or as the real
//! binary), the built plugins, and readers of the mock plugins' state.
//!
//! Everything here listens on and connects to 127.0.0.1 only.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use vessel::app::App;
use vessel::config::Config;

pub mod hostile_components;
pub mod ignite;
pub mod proxies;
pub mod store_suite;

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// Where `scripts/build-plugins` puts the plugin components.
pub fn plugin_dir() -> PathBuf {
    target_dir().join("wasm32-wasip2").join("plugin")
}

/// The path of a built plugin, e.g. `plugin("mock_vm")`. Panics with the
/// command to run when it has not been built.
pub fn plugin(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (scripts/test does)",
        path.display()
    );
    path
}

/// The compiled-plugin cache all tests share, so each plugin is compiled
/// once per build rather than once per test.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("vessel-test-cache")
}

/// The `vessel` binary built by `cargo build`.
pub fn vessel_binary() -> PathBuf {
    let path = target_dir().join("debug").join("vessel");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build` first (scripts/test does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` process of the test's own, on a free loopback port,
/// killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    appendonly: bool,
}

impl RedisServer {
    /// Starts a server without persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(free_port(), false, tempfile::tempdir().expect("temp dir"))
    }

    /// Starts a server with AOF persistence (`appendfsync always`).
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(free_port(), true, tempfile::tempdir().expect("temp dir"))
    }

    fn start_with(port: u16, appendonly: bool, dir: TempDir) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            appendonly,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--protected-mode", "yes"])
            // Also on a Unix socket that only this user may open, as a
            // Redis on the host's own machine is often reached.
            .arg("--unixsocket")
            .arg(self.socket_path())
            .args(["--unixsocketperm", "700"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.appendonly {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .spawn()
            .expect("redis-server must be installed: run scripts/test, which installs it");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
            .is_ok()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's Unix socket (in its own temporary directory).
    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The server's URL on its Unix socket (`redis+unix:///…`).
    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}", self.socket_path().display())
    }

    /// Stops the server (SIGKILL), as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A synchronous connection for raw commands, as an operator's
    /// `redis-cli` would use.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to the test redis-server")
    }

    /// `GET key` as JSON, if the key exists.
    pub fn get_json(&self, key: &str) -> Option<Value> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection())
            .expect("GET");
        raw.map(|raw| serde_json::from_str(&raw).expect("stored JSON"))
    }

    /// `SET key value`.
    pub fn set_json(&self, key: &str, value: &Value) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value.to_string())
            .query(&mut self.connection())
            .expect("SET");
    }

    /// Every `session:*` key, found with `SCAN` as an operator would.
    pub fn session_keys(&self) -> Vec<String> {
        let mut connection = self.connection();
        let keys: redis::Iter<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg("session:*")
            .arg("COUNT")
            .arg(500)
            .clone()
            .iter(&mut connection)
            .expect("SCAN");
        keys.collect::<Result<_, _>>().expect("SCAN")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The state directory a mock plugin writes to, read as tests need it.
#[derive(Debug, Clone)]
pub struct MockState {
    /// The directory.
    pub dir: PathBuf,
}

impl MockState {
    /// The call record.
    pub fn calls(&self) -> Vec<mock_state::CallRecord> {
        mock_state::read_calls(&self.dir).expect("read the mock's call record")
    }

    /// How many calls of `op` were recorded.
    pub fn count(&self, op: &str) -> usize {
        self.calls().iter().filter(|call| call.op == op).count()
    }

    /// How many calls of `op` on `target` succeeded.
    pub fn count_ok(&self, op: &str, target: &str) -> usize {
        self.calls()
            .iter()
            .filter(|call| call.op == op && call.target == target && call.outcome == "ok")
            .count()
    }

    /// How many times each target had a successful `op`, read in one pass
    /// over the record (for tests with thousands of calls).
    pub fn ok_counts(&self, op: &str) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for call in self.calls() {
            if call.op == op && call.outcome == "ok" {
                *counts.entry(call.target).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The ids of the items (VMs or routes) the mock holds now.
    pub fn items(&self) -> Vec<String> {
        let mut ids: Vec<String> = match std::fs::read_dir(self.dir.join("items")) {
            Ok(dir) => dir
                .filter_map(|entry| entry.ok())
                .filter_map(|entry| {
                    entry
                        .file_name()
                        .to_str()
                        .and_then(|name| name.strip_suffix(".json"))
                        .map(str::to_string)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }

    /// One item's JSON.
    pub fn item(&self, id: &str) -> Option<Value> {
        std::fs::read(self.dir.join("items").join(format!("{id}.json")))
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).expect("item JSON"))
    }

    /// Injects a fault into `op` (see `mock_state::Fault`).
    pub fn inject(&self, op: &str, fault: &str) {
        std::fs::create_dir_all(self.dir.join("faults")).expect("faults dir");
        std::fs::write(self.dir.join("faults").join(op), fault).expect("write fault");
    }

    /// Removes the fault of `op`.
    pub fn clear(&self, op: &str) {
        let _ = std::fs::remove_file(self.dir.join("faults").join(op));
    }
}

/// A configuration for tests: a temporary data directory, the built
/// plugins, the shared compile cache, the mock plugins' state under the data
/// directory, and a fast Reaper that never fires by accident (1 h idle).
pub fn test_config(data_dir: &Path, redis_url: Option<String>) -> Config {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.store.redis_url = redis_url;
    config.plugins.dir = Some(plugin_dir());
    config.plugins.cache_dir = Some(shared_cache_dir());
    config.reaper.interval = Duration::from_millis(200);
    config.reaper.idle_timeout = Duration::from_secs(3600);
    config.session.start_timeout = Duration::from_secs(20);
    config.session.stop_timeout = Duration::from_secs(20);
    config.session.lease = Duration::from_secs(60);
    // Reconciliation lists the drivers at start-up; tests of it turn it on.
    config.reconcile.enabled = false;
    // These tests are about other behaviour; the auth tests turn it on.
    config.auth.mode = vessel::config::AuthMode::None;
    // Projects come from the tests' temporary directories.
    config.session.allow_any_project = true;
    config
}

/// The argument policy of exec grant `name` in the shipped example
/// configuration `file` (under `examples/`), so that tests run the real
/// drivers within the policies operators are told to use.
pub fn example_exec_policy(file: &str, name: &str) -> Vec<vessel::config::ArgForm> {
    let text = std::fs::read_to_string(workspace_dir().join("examples").join(file))
        .expect("an example configuration");
    let config = Config::from_toml(&text).expect("the example parses");
    config
        .plugins
        .vm
        .grants
        .exec
        .iter()
        .chain(&config.plugins.proxy.grants.exec)
        .find(|grant| grant.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{file} has no exec grant {name:?}"))
        .allow
        .clone()
}

/// The HTTP grant of the shipped Caddy example, for the Caddy admin API at
/// `origin` instead of the example's: the methods and paths it allows.
pub fn example_caddy_grant(origin: &str) -> vessel::config::HttpGrant {
    let text = std::fs::read_to_string(workspace_dir().join("examples/ignite-caddy.toml"))
        .expect("the Caddy example configuration");
    let config = Config::from_toml(&text).expect("the example parses");
    match config.plugins.proxy.grants.http.first() {
        Some(vessel::config::HttpGrant::Limited { methods, paths, .. }) => {
            vessel::config::HttpGrant::Limited {
                origin: origin.to_string(),
                methods: methods.clone(),
                paths: paths.clone(),
            }
        }
        other => panic!("the Caddy example grants {other:?}, not a limited grant"),
    }
}

/// The mock VM's state directory under a test configuration.
pub fn mock_vm_state(config: &Config) -> MockState {
    MockState {
        dir: config.expand(&config.plugins.vm.grants.dirs[0].host),
    }
}

/// The mock proxy's state directory under a test configuration.
pub fn mock_proxy_state(config: &Config) -> MockState {
    MockState {
        dir: config.expand(&config.plugins.proxy.grants.dirs[0].host),
    }
}

/// A Vessel host running in this process, on a free loopback port.
pub struct TestHost {
    /// The API's base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// The configuration it runs with.
    pub config: Config,
    /// Its session manager, for direct checks.
    pub manager: Arc<vessel::session::SessionManager>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHost {
    /// Builds and serves a host with `config`.
    pub async fn start(config: Config) -> TestHost {
        let app = App::build(config.clone()).await.expect("build the host");
        TestHost::serve(app, config).await
    }

    /// Builds and serves a host with `config` whose time is `clock`, so a
    /// test can move it (e.g. past an idle timeout) instead of waiting.
    pub async fn start_with_clock(config: Config, clock: vessel::clock::ManualClock) -> TestHost {
        let app = App::build_with(config.clone(), Arc::new(clock), "test-host".to_string())
            .await
            .expect("build the host");
        TestHost::serve(app, config).await
    }

    /// Serves an already built host.
    pub async fn serve(app: App, config: Config) -> TestHost {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let manager = app.manager().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        }));
        TestHost {
            base,
            config,
            manager,
            shutdown: Some(tx),
            served: Some(served),
        }
    }

    /// An API client for this host.
    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// The mock VM's state.
    pub fn vms(&self) -> MockState {
        mock_vm_state(&self.config)
    }

    /// The mock proxy's state.
    pub fn routes(&self) -> MockState {
        mock_proxy_state(&self.config)
    }

    /// Shuts the host down gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("host task").expect("host served");
        }
    }
}

/// A minimal client of Vessel's HTTP API.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

/// An API answer: its status code and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
}

impl Answer {
    /// The error code of an error answer.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl Api {
    /// A client for the API at `base`.
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            token: None,
        }
    }

    /// The same client, sending `Authorization: Bearer {token}`.
    pub fn with_token(mut self, token: &str) -> Api {
        self.token = Some(token.to_string());
        self
    }

    /// The same client, sending no token.
    pub fn without_token(mut self) -> Api {
        self.token = None;
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("POST to the host");
        Api::answer(response).await
    }

    /// Reads `GET /sessions/{user}/events` to its end: the server-sent
    /// events as (event name, JSON data), in order, with the answer's
    /// status and content type.
    pub async fn events(&self, user: &str) -> (u16, String, Vec<(String, Value)>) {
        let response = self
            .request(reqwest::Method::GET, &format!("/sessions/{user}/events"))
            .send()
            .await
            .expect("GET the events");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.expect("the event stream ends");
        let mut events = Vec::new();
        for block in text.split("\n\n") {
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((name, serde_json::from_str(&data).expect("JSON event data")));
            }
        }
        (status, content_type, events)
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: &str) -> Answer {
        let response = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST to the host");
        Api::answer(response).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET from the host");
        Api::answer(response).await
    }

    /// `GET path` as text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET from the host")
            .text()
            .await
            .expect("a text body")
    }

    /// `POST /start`.
    pub async fn start(&self, user: &str, project: &Path) -> Answer {
        self.post(
            "/start",
            serde_json::json!({"userId": user, "projectPath": project}),
        )
        .await
    }

    /// `POST /stop`.
    pub async fn stop(&self, user: &str) -> Answer {
        self.post("/stop", serde_json::json!({ "userId": user }))
            .await
    }

    /// `POST /heartbeat`.
    pub async fn heartbeat(&self, user: &str) -> Answer {
        self.post("/heartbeat", serde_json::json!({ "userId": user }))
            .await
    }

    /// `GET /status/{user}`.
    pub async fn status(&self, user: &str) -> Answer {
        self.get(&format!("/status/{user}")).await
    }

    /// Whether the host answers at all (`GET /healthz` returns anything).
    pub async fn answers(&self) -> bool {
        self.client
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok()
    }
}

/// The value of one series in a `/metrics` text, e.g.
/// `metric_value(&text, r#"vessel_takeovers_total"#)` or with its labels;
/// 0 when the series is absent.
pub fn metric_value(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A configuration file for the real binary: listening on `port`, data
/// under `dir/data`, projects from `dir`, the built plugins and the shared
/// compile cache, and authentication off (unless `tables` has an `[auth]`
/// table: these tests are about other behaviour). `top` is TOML placed
/// first (top-level keys must be in it, before any table), `tables` follows
/// it (`[store]`, `[session]`, `[plugins.vm]`, ...; not `[plugins]`, which
/// this writes).
pub fn host_config_toml(dir: &Path, port: u16, top: &str, tables: &str) -> String {
    let auth = if tables.contains("[auth]") {
        ""
    } else {
        "[auth]\nmode = \"none\"\n"
    };
    let roots = format!("project_roots = [{:?}]\n", dir.display().to_string());
    let tables = if tables.contains("project_roots") {
        tables.to_string()
    } else if tables.contains("[session]\n") {
        tables.replacen("[session]\n", &format!("[session]\n{roots}"), 1)
    } else {
        format!("[session]\n{roots}{tables}")
    };
    format!(
        r#"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
{top}
{auth}
{tables}
[plugins]
dir = "{plugins}"
cache_dir = "{cache}"
"#,
        data = dir.join("data").display(),
        plugins = plugin_dir().display(),
        cache = shared_cache_dir().display(),
    )
}

/// The `[plugins.vm]` table of the mock VM with `settings` (TOML lines such
/// as `call_timeout = "60s"` or `settings = { boot_delay_ms = 50 }`). What
/// it leaves out keeps the mock's defaults: the component, inspect liveness
/// and the state directory.
pub fn mock_vm_table(settings: &str) -> String {
    format!("\n[plugins.vm]\n{settings}\n")
}

/// As [`mock_vm_table`], with the liveness check `liveness` (`inspect`,
/// `tcp` or `none`).
pub fn mock_vm_table_with_liveness(liveness: &str, settings: &str) -> String {
    format!("\n[plugins.vm]\nliveness = \"{liveness}\"\n{settings}\n")
}

/// Whether process `pid` exists and has not exited (a zombie has: it stays
/// in the process table until it is waited for).
pub fn process_is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) => false,
    }
}

/// The operator token in a host's start-up banner (the indented line after
/// "An operator token"), if it printed one.
pub fn startup_token(log: &str) -> Option<String> {
    let mut lines = log.lines();
    lines.find(|line| line.contains("An operator token"))?;
    lines
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
}

/// The real `vessel` binary, run as a child process with a config file.
pub struct HostProcess {
    child: Option<Child>,
    /// The API's base URL.
    pub base: String,
    /// Where its standard output and error go.
    pub log: PathBuf,
    /// The operator token the host printed at start-up, when it made its
    /// own signing key (the default setup).
    pub token: Option<String>,
}

impl HostProcess {
    /// Writes `config_toml` to `dir/vessel.toml` and runs `vessel serve`
    /// with it, logging to `dir/<log_name>`; waits until `/healthz` answers.
    pub async fn start(dir: &Path, config_toml: &str, port: u16, log_name: &str) -> HostProcess {
        HostProcess::start_binary(&vessel_binary(), dir, config_toml, port, log_name).await
    }

    /// As [`HostProcess::start`], running the `vessel` binary at `binary`
    /// (e.g. a release build).
    pub async fn start_binary(
        binary: &Path,
        dir: &Path,
        config_toml: &str,
        port: u16,
        log_name: &str,
    ) -> HostProcess {
        let config_path = dir.join("vessel.toml");
        std::fs::write(&config_path, config_toml).expect("write the config");
        let log = dir.join(log_name);
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("VESSEL_CONFIG")
            .env("VESSEL_LOG", "info,wasmtime=warn,cranelift=warn")
            .stdout(out)
            .stderr(err)
            .current_dir(dir)
            .spawn()
            .expect("spawn vessel");
        let mut host = HostProcess {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            token: None,
        };
        let api = host.api();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api.answers().await {
            assert!(
                Instant::now() < deadline,
                "vessel did not come up; its log:\n{}",
                host.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        host.token = startup_token(&host.log_text());
        host
    }

    /// An API client for this host, with its start-up operator token if it
    /// printed one.
    pub fn api(&self) -> Api {
        let api = Api::new(&self.base);
        match &self.token {
            Some(token) => api.with_token(token),
            None => api,
        }
    }

    /// Everything the host has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().ok()?;
        self.child = None;
        status.code()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A project directory with one file, for starts.
pub fn project_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(dir.join("README.md"), format!("project {name}\n")).expect("project file");
    dir
}

/// Loads the proxy driver configured in `config.plugins.proxy`.
pub fn proxy_driver(config: &Config) -> vessel::plugins::ProxyDriver {
    let runtime = vessel::plugins::PluginRuntime::new(shared_cache_dir()).expect("runtime");
    vessel::plugins::ProxyDriver::load(&runtime, config).expect("load the proxy driver")
}

/// The id Vessel gives `user`'s session VM and route (`vessel-{name}`).
pub fn vm_id(user: &str) -> String {
    vessel::ids::UserId::parse(user)
        .expect("a valid test user id")
        .vm_id()
}

/// The public name Vessel gives `user` in URLs and host names.
pub fn public_name(user: &str) -> String {
    vessel::ids::UserId::parse(user)
        .expect("a valid test user id")
        .public_name()
}

/// A route for `user` to `ip:port`, named as Vessel names it.
pub fn route_spec(user: &str, ip: &str, port: u16) -> vessel::plugins::RouteSpec {
    vessel::plugins::RouteSpec {
        route_id: vm_id(user),
        name: public_name(user),
        user_id: user.to_string(),
        target_ip: ip.to_string(),
        target_port: port,
    }
}
