//! Vessel's configuration: one TOML file, every field with a documented
//! default, and a few environment variables that override it.
//!
//! With no file at all, Vessel runs the embedded default: the API on
//! `127.0.0.1:8080`, sessions in an embedded database under `.vessel/`, and
//! the mock VM and proxy plugins. The README's configuration reference lists
//! the same fields and defaults as this module; keep them in step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod error;
mod plugin_table;
mod print;
mod security;

pub use error::{ConfigError, Origin};
pub use plugin_table::PluginSlot;
pub use print::REDACTED;
pub use security::{AuthConfig, AuthMode, HttpConfig, LimitsConfig, MetricsAccess, Secret};

/// The commented default configuration that `vessel init-config` writes:
/// every field, what it does and its default. It loads to
/// [`Config::default`], and the README's configuration reference shows it
/// verbatim (both are tested).
pub const DEFAULT_FILE: &str = include_str!("default.toml");

/// The most `worker_threads` a configuration may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// The whole configuration.
///
/// Every table and field is optional in a file; what a file leaves out
/// keeps its default, at every level (see [`PluginSlot`] for the plugin
/// tables, whose defaults depend on the component).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens. Default `127.0.0.1:8080`; env `VESSEL_LISTEN`.
    pub listen: SocketAddr,
    /// Where Vessel keeps its own files: the embedded store, the compiled
    /// plugin cache, and the mock plugins' state. Default `.vessel`; env
    /// `VESSEL_DATA_DIR`. `{data_dir}` in grant paths expands to it.
    pub data_dir: PathBuf,
    /// Where sessions are stored.
    pub store: StoreConfig,
    /// What a session's VM looks like and how starting one is bounded.
    pub session: SessionConfig,
    /// The background task that stops abandoned sessions.
    pub reaper: ReaperConfig,
    /// The background task that makes the drivers' VMs and routes agree
    /// with the session records.
    pub reconcile: ReconcileConfig,
    /// How long a shutdown (SIGTERM or SIGINT) waits for requests and
    /// driver calls in flight before the process exits anyway. Starts cut
    /// off by it are finished or undone by another host (or this one, after
    /// a restart) once their lease expires. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How many threads serve the API, the store and the plugin calls.
    /// Default `0`: one per CPU. A host that shares its machine with the
    /// VMs it runs may want fewer, to leave them the rest; plugin calls
    /// (`liveness = "inspect"`, cold starts) gain most from more (see the
    /// README's Performance section). At most 1024.
    pub worker_threads: usize,
    /// The VM and proxy drivers.
    pub plugins: PluginsConfig,
    /// Who may call the API.
    pub auth: AuthConfig,
    /// How the HTTP server protects itself from slow and greedy clients.
    pub http: HttpConfig,
    /// How much one caller may ask.
    pub limits: LimitsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".vessel"),
            store: StoreConfig::default(),
            session: SessionConfig::default(),
            reaper: ReaperConfig::default(),
            reconcile: ReconcileConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            worker_threads: 0,
            plugins: PluginsConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// Where sessions are stored.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A Redis URL (`redis://host:port/db`). When set, sessions live in
    /// Redis under `session:{userId}`, and several hosts may share it. When
    /// unset or empty (the default), the embedded store is used. Env
    /// `VESSEL_REDIS_URL` (empty: the embedded store).
    #[serde(
        deserialize_with = "empty_is_none",
        serialize_with = "print::redacted_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub redis_url: Option<String>,
    /// The embedded store's file. Default `{data_dir}/sessions.redb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_path: Option<PathBuf>,
    /// How long one store request may take before it counts as an outage
    /// (the API then answers 503). Default `2s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::redact::url),
            )
            .field("embedded_path", &self.embedded_path)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            redis_url: None,
            embedded_path: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// What a session's VM looks like and how its lifecycle is bounded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// The image VMs boot from. Default `weaveworks/ignite-ubuntu:latest`.
    pub image: String,
    /// Virtual CPUs per VM. Default `1`.
    pub cpus: u32,
    /// Memory per VM in MiB. Default `1024`.
    pub memory_mib: u32,
    /// Root disk per VM in MiB. Default `4096`.
    pub disk_mib: u32,
    /// Ports the VM serves on; the first is routed and checked for liveness.
    /// Default `[8080]`.
    pub ports: Vec<u16>,
    /// Where the user's project is copied inside the VM. Default `/workspace`.
    pub project_dest: String,
    /// Directories that projects must lie in. `projectPath` is refused
    /// unless it is inside one of them, both as written and once symlinks
    /// and `..` are resolved. Every root must exist (checked at start-up).
    /// Default: empty, which allows no project at all unless
    /// `allow_any_project` is set. Env `VESSEL_PROJECT_ROOTS`
    /// (colon-separated).
    pub project_roots: Vec<PathBuf>,
    /// With no `project_roots`: allow any existing absolute directory the
    /// host can read. For a single-user machine only. Default `false`.
    pub allow_any_project: bool,
    /// What a start does with entries of a project that are not regular
    /// files or directories inside it: symlinks that leave the project (or
    /// point at a directory), devices, FIFOs and sockets. `skip` (default:
    /// left out of the copy, and logged) or `refuse` (the start fails with
    /// 400 `invalid_project_path`). Links to files inside the project are
    /// copied as files.
    pub unsafe_project_entries: UnsafeEntries,
    /// The most bytes of files a project may hold; over it, the start fails
    /// with 413 `project_too_large`. Default `1073741824` (1 GiB).
    pub project_max_bytes: u64,
    /// The most files and directories a project may hold; over it, 413
    /// `project_too_large`. Default `100000`.
    pub project_max_entries: u64,
    /// The longest a cold start (create, copy, route) may take before it is
    /// rolled back and answered 504. Default `120s`.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// The longest a stop (route and VM removal) may take. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// How long one TCP liveness probe waits for a connection. Default
    /// `500ms`.
    #[serde(with = "humantime_serde")]
    pub liveness_timeout: Duration,
    /// How many more probes follow a failed one before the VM driver is
    /// asked whether the VM still runs (a failed probe alone never ends a
    /// session). Default `2`.
    pub liveness_retries: u32,
    /// The pause between probes. Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub liveness_retry_delay: Duration,
    /// The lease of a start or stop in progress. The host doing it renews
    /// it every third of this; when a host dies, its unfinished start or
    /// stop is taken over (by the user's next start, the Reaper or the
    /// reconciler) once this much time has passed without a renewal. All
    /// hosts sharing a store must use the same value. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The most sessions (starting, active or stopping) the whole fleet
    /// holds at once, counted in the store atomically with each start's
    /// claim, so hosts sharing a Redis never exceed it together. A start
    /// over it is answered 429 `at_capacity` and creates nothing. `0` means
    /// no limit. All hosts sharing a store should use the same value.
    /// Default `0`: set it to what your hosts can hold (e.g. their memory
    /// divided by `memory_mib`).
    pub max_sessions: u64,
    /// The longest idle timeout a start may ask for (`idleTimeout` of
    /// `POST /start`); a longer one is answered 400. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub max_idle_timeout: Duration,
    /// The oldest any session may grow: the Reaper stops a session this
    /// long after its start even if heartbeats continue, and a start's
    /// `maxAge` may not ask for more (400). `0s` means no cap (a start may
    /// still ask for a maximum age of its own). Records without `createdAt`
    /// (written by hand) have no age. Default `0s`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long a stopped session's tombstone (who stopped it and why,
    /// shown by `GET /status`) is kept. `0s` writes no tombstones. Default
    /// `24h`.
    #[serde(with = "humantime_serde")]
    pub tombstone_retention: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            image: "weaveworks/ignite-ubuntu:latest".to_string(),
            cpus: 1,
            memory_mib: 1024,
            disk_mib: 4096,
            ports: vec![8080],
            project_dest: "/workspace".to_string(),
            project_roots: Vec::new(),
            allow_any_project: false,
            unsafe_project_entries: UnsafeEntries::Skip,
            project_max_bytes: 1 << 30,
            project_max_entries: 100_000,
            start_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(60),
            liveness_timeout: Duration::from_millis(500),
            liveness_retries: 2,
            liveness_retry_delay: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            max_sessions: 0,
            max_idle_timeout: Duration::from_secs(24 * 60 * 60),
            max_age: Duration::ZERO,
            tombstone_retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What to do with a project entry that is not a regular file or directory
/// inside the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsafeEntries {
    /// Leave it out of the copy and log it.
    #[default]
    Skip,
    /// Fail the start.
    Refuse,
}

/// The Reaper: stops sessions whose heartbeat stopped.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReaperConfig {
    /// Whether the Reaper runs on this host. Default `true`.
    pub enabled: bool,
    /// Time between sweeps. Default `60s`; env `VESSEL_REAPER_INTERVAL`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A session whose last heartbeat is older than this is stopped.
    /// Default `30m`; env `VESSEL_IDLE_TIMEOUT`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Records read per store round trip while sweeping. Default `500`.
    pub batch_size: usize,
    /// Sessions stopped in parallel. Default `8`.
    pub concurrency: usize,
    /// Stop nothing: log (`reaper.would_stop`) and count
    /// (`vessel_reaper_would_stop_total{reason}`) each session a sweep
    /// would stop. Default `false`.
    pub dry_run: bool,
    /// How much lower than request handling the Reaper's CPU priority is:
    /// it runs on a thread of its own whose nice value is raised by this
    /// much (Linux), so that on a busy host requests (and a Redis server
    /// on the same machine) get the CPU first. `0` to `19`; `0` keeps the
    /// host's priority. Default `10`.
    pub nice: i32,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        ReaperConfig {
            enabled: true,
            interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30 * 60),
            batch_size: 500,
            concurrency: 8,
            dry_run: false,
            nice: 10,
        }
    }
}

/// Reconciliation: compares the session records with the VMs the VM driver
/// lists and the routes the proxy driver lists, and repairs what differs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Whether this host reconciles (at start-up and then periodically).
    /// Default `true`. Hosts sharing a Redis take turns through a lock, so
    /// one pass runs at a time.
    pub enabled: bool,
    /// Time between passes after the one at start-up. Default `5m`; env
    /// `VESSEL_RECONCILE_INTERVAL`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How much lower than request handling the reconciler's CPU priority
    /// is, as [`ReaperConfig::nice`]. `0` to `19`. Default `10`.
    pub nice: i32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            enabled: true,
            interval: Duration::from_secs(5 * 60),
            nice: 10,
        }
    }
}

/// The two drivers and where their `.wasm` files are.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(from = "plugin_table::PluginsTable")]
pub struct PluginsConfig {
    /// The directory relative plugin paths resolve against. Default: env
    /// `VESSEL_PLUGIN_DIR`, else `plugins/` beside the `vessel` binary, else
    /// the workspace's build output (`target/wasm32-wasip2/plugin/`), which
    /// is where `scripts/build-plugins` puts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Where compiled plugins are cached between runs. Default
    /// `{data_dir}/cache`; env `VESSEL_PLUGIN_CACHE_DIR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// The VM driver. Default: `mock_vm.wasm` with a state directory (see
    /// [`PluginSlot::defaults`]).
    pub vm: PluginConfig,
    /// The proxy driver. Default: `mock_proxy.wasm` with a state directory.
    pub proxy: PluginConfig,
    /// How many plugin calls may run at once on this host, over both
    /// drivers. Each running call holds one slot of wasmtime's pooling
    /// allocator: the memories, tables, stacks and instance state a call
    /// may use are reserved once at start-up and reused (address space
    /// only, under 1 GiB of it per slot with the default memory limit;
    /// memory is used only while a call runs), so a call starts in
    /// microseconds instead of mapping and unmapping them. More calls wait for a slot; the wait does not count
    /// in their time limit. `0` turns the pool off: every call allocates
    /// its own. Default `64`.
    pub call_slots: u32,
}

impl PluginsConfig {
    /// The default of [`PluginsConfig::call_slots`].
    pub const DEFAULT_CALL_SLOTS: u32 = 64;
    /// The most [`PluginsConfig::call_slots`] a host may have.
    pub const MAX_CALL_SLOTS: u32 = 4096;
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            cache_dir: None,
            vm: PluginSlot::Vm.defaults(None),
            proxy: PluginSlot::Proxy.defaults(None),
            call_slots: PluginsConfig::DEFAULT_CALL_SLOTS,
        }
    }
}

/// Where a plugin's file operations (open, read, write, stat, ...) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileIo {
    /// On the thread running the call, as the plugin asks for them: no
    /// hand-off per operation, so a call doing a dozen small file
    /// operations takes microseconds rather than a thread switch each. An
    /// operation blocks that thread (one of the host's request threads)
    /// while the disk answers, and one operation moves at most the call's
    /// memory limit. The default: right for local disks.
    #[default]
    Inline,
    /// On a pool of threads kept for blocking work: every operation is
    /// handed to it and its answer handed back (some microseconds each),
    /// and a slow disk never holds a request thread. For granted
    /// directories on network filesystems or disks that can stall.
    ThreadPool,
}

/// How a cache hit checks that the session's VM still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Connect to the VM's ip and first port over TCP (no plugin call).
    Tcp,
    /// Ask the VM driver's `inspect` whether the VM is running.
    Inspect,
    /// Trust the record.
    None,
}

/// One plugin: its component, its limits, its settings and its capabilities.
///
/// A file's plugin table is read as `plugin_table::PluginTable`, with every
/// field optional, and merged onto the slot's defaults; a field added here
/// is added there too.
#[derive(Clone, PartialEq, Serialize)]
pub struct PluginConfig {
    /// The component file, absolute or relative to `plugins.dir`. Default:
    /// the slot's mock, `mock_vm.wasm` or `mock_proxy.wasm`. Naming another
    /// component changes the defaults of `liveness` and `grants` (see
    /// [`PluginSlot::defaults`]).
    pub path: PathBuf,
    /// The longest one call may run (wall clock) before it is stopped and
    /// answered as timed out. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// The most linear memory one call may use, in MiB, over all the
    /// memories of all its instances together. Default `64`.
    pub memory_limit_mib: u64,
    /// The most resource handles one call may hold at once: open files and
    /// directories, directory listings, streams, sockets (each is a handle,
    /// and most hold an open file descriptor of the host). Past it the call
    /// is stopped. Default `256`.
    pub max_handles: u32,
    /// The most calls of this plugin that run at once on this host; more
    /// wait their turn. `0` means no limit. Default: no limit for the VM
    /// driver, `1` for the proxy driver, since nginx's check and reload of
    /// one change must not overlap another's (raise it for a proxy whose
    /// backend takes concurrent changes, such as Caddy). `None` (only in a
    /// configuration built in code) means the slot's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u32>,
    /// For the VM driver: how a cache hit checks liveness (`tcp`, `inspect`
    /// or `none`). Default `tcp`; the mock VM's default is `inspect`, since
    /// its addresses serve nothing. Ignored for the proxy driver.
    pub liveness: Liveness,
    /// Where the plugin's file operations run: `inline` (on the call's own
    /// thread; default) or `thread-pool` (handed to a pool of threads, for
    /// granted directories on disks that can stall). See [`FileIo`].
    pub file_io: FileIo,
    /// Plugin-specific settings, handed to the plugin through the `config`
    /// interface as strings (numbers and booleans are written as text).
    /// Default: none.
    #[serde(serialize_with = "print::redacted_map")]
    pub settings: BTreeMap<String, toml::Value>,
    /// What the plugin may do outside its sandbox. Default: the mock's
    /// state directory for the mocks, nothing for any other component.
    pub grants: Grants,
}

/// A value as printed: itself, or `<redacted>`.
struct Shown<'a>(Option<&'a dyn std::fmt::Debug>);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("<redacted>"),
        }
    }
}

/// `entries` as printed: values whose name looks secret are redacted.
fn redacted<V: std::fmt::Debug>(entries: &BTreeMap<String, V>) -> BTreeMap<&str, Shown<'_>> {
    entries
        .iter()
        .map(|(name, value)| {
            let shown =
                (!crate::redact::is_secret_name(name)).then_some(value as &dyn std::fmt::Debug);
            (name.as_str(), Shown(shown))
        })
        .collect()
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("path", &self.path)
            .field("call_timeout", &self.call_timeout)
            .field("memory_limit_mib", &self.memory_limit_mib)
            .field("max_handles", &self.max_handles)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("liveness", &self.liveness)
            .field("file_io", &self.file_io)
            .field("settings", &redacted(&self.settings))
            .field("grants", &self.grants)
            .finish()
    }
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            path: PathBuf::new(),
            call_timeout: Duration::from_secs(60),
            memory_limit_mib: PluginConfig::DEFAULT_MEMORY_LIMIT_MIB,
            max_handles: 256,
            max_concurrent_calls: None,
            liveness: Liveness::Tcp,
            file_io: FileIo::Inline,
            settings: BTreeMap::new(),
            grants: Grants::default(),
        }
    }
}

impl PluginConfig {
    /// The default of [`PluginConfig::memory_limit_mib`].
    pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 64;
    /// The largest [`PluginConfig::memory_limit_mib`]: a 32-bit memory's.
    pub const MAX_MEMORY_LIMIT_MIB: u64 = 4096;

    /// The settings as the strings plugins read.
    pub fn settings_as_strings(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        self.settings
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Datetime(d) => d.to_string(),
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        return Err(ConfigError::Invalid(format!(
                            "plugin setting {key:?} must be a string, number or boolean"
                        )));
                    }
                };
                Ok((key.clone(), text))
            })
            .collect()
    }
}

/// The capabilities granted to one plugin. Nothing else is visible to it:
/// no files, no programs, no network, no environment. Each field a file's
/// grants table leaves out keeps the slot's default; a list given replaces
/// the default list.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Grants {
    /// Host directories the plugin sees (WASI preopens).
    pub dirs: Vec<DirGrant>,
    /// Programs the plugin may run through `process.exec`.
    pub exec: Vec<ExecGrant>,
    /// TCP addresses (`ip:port`) the plugin may connect to directly.
    pub network: Vec<SocketAddr>,
    /// HTTP origins the plugin may send requests to through the `http`
    /// interface: `"http://host:port"` for every method and path, or
    /// `{ origin = "...", methods = [...], paths = [...] }` for some.
    pub http: Vec<HttpGrant>,
    /// Whether the plugin may create symlinks in its granted directories.
    /// Default `false`: a symlink a plugin leaves in a directory that a
    /// privileged program reads (`x.conf -> /etc/shadow` for root nginx)
    /// would reach outside the sandbox.
    pub symlinks: bool,
}

/// One HTTP grant: an origin, or a table limiting it (an unknown key in the
/// table is an error, as everywhere in the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HttpGrant {
    /// Every method and path of an origin, e.g. `"http://127.0.0.1:2019"`.
    Origin(String),
    /// Some methods and path prefixes of an origin.
    Limited {
        /// The origin, `http://host:port`.
        origin: String,
        /// The methods allowed (e.g. `["GET", "POST"]`); empty: any.
        methods: Vec<String>,
        /// The path prefixes allowed (e.g. `["/id/vessel-"]`), matched on the
        /// request's path once `.` and `..` are resolved; empty: any.
        paths: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for HttpGrant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The table form, read on its own so that its unknown keys are
        /// named (an untagged enum would only say that nothing matched).
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Limited {
            origin: String,
            #[serde(default)]
            methods: Vec<String>,
            #[serde(default)]
            paths: Vec<String>,
        }

        struct GrantVisitor;

        impl<'de> serde::de::Visitor<'de> for GrantVisitor {
            type Value = HttpGrant;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    r#"an origin such as "http://127.0.0.1:2019", or a table { origin = "...", methods = [...], paths = [...] }"#,
                )
            }

            fn visit_str<E: serde::de::Error>(self, origin: &str) -> Result<HttpGrant, E> {
                Ok(HttpGrant::Origin(origin.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<HttpGrant, A::Error> {
                let Limited {
                    origin,
                    methods,
                    paths,
                } = Limited::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(HttpGrant::Limited {
                    origin,
                    methods,
                    paths,
                })
            }
        }

        deserializer.deserialize_any(GrantVisitor)
    }
}

impl HttpGrant {
    /// The origin granted.
    pub fn origin(&self) -> &str {
        match self {
            HttpGrant::Origin(origin) | HttpGrant::Limited { origin, .. } => origin,
        }
    }
}

impl From<String> for HttpGrant {
    fn from(origin: String) -> Self {
        HttpGrant::Origin(origin)
    }
}

/// One argument list a plugin may append to an exec grant's command (see
/// [`crate::plugins::arg_policy`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgForm {
    /// Positional argument patterns: a literal, `re:REGEX` (the whole
    /// argument matches), or `path:DIR` (an absolute path inside `DIR`;
    /// `{data_dir}` expands).
    pub args: Vec<String>,
    /// Options that may follow, in any order and number: the option, and
    /// the pattern of its value (`""` for an option without one).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A host directory made visible to a plugin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The directory on the host; created if missing. `{data_dir}` expands.
    pub host: PathBuf,
    /// The path the plugin sees it at, e.g. `/state`.
    pub guest: String,
    /// Whether the plugin may only read it. Default `false`.
    #[serde(default)]
    pub read_only: bool,
}

/// One program on a plugin's exec allowlist.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecGrant {
    /// The name the plugin asks for (`process.exec` `program`). Default: the
    /// first element of `command`, so a plugin may also ask by exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The fixed command: an absolute program path and any leading
    /// arguments, e.g. `["/usr/bin/sudo", "-n", "/usr/local/bin/ignite"]`.
    /// The plugin's arguments are appended after it.
    pub command: Vec<String>,
    /// Environment variables the program gets; it gets no others. Default
    /// empty.
    #[serde(default, serialize_with = "print::redacted_map")]
    pub env: BTreeMap<String, String>,
    /// The longest one run may take, whatever the plugin asks. Default `60s`.
    #[serde(default = "default_exec_timeout", with = "humantime_serde")]
    pub max_timeout: Duration,
    /// The most bytes kept of each of stdout and stderr. Default 1 MiB.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// The argument lists the plugin may append (see [`ArgForm`]); a run
    /// matching none is denied. Default: empty, which allows any arguments
    /// (a warning is logged at start-up): set it on every grant of a
    /// privileged program.
    #[serde(default)]
    pub allow: Vec<ArgForm>,
}

impl std::fmt::Debug for ExecGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecGrant")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("env", &redacted(&self.env))
            .field("max_timeout", &self.max_timeout)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("allow", &self.allow)
            .finish()
    }
}

fn default_exec_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_output() -> usize {
    1024 * 1024
}

impl Config {
    /// Reads `path` (or the defaults when `None`), applies the environment
    /// overrides from `env`, and checks the result. Every error names the
    /// file (with line and column where the parser knows them) or the
    /// variable to change.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })?;
                Config::from_toml(&text).map_err(|e| ConfigError::parse(path, &text, &e))?
            }
            None => Config::default(),
        };
        let set = std::cell::RefCell::new(Vec::new());
        config.apply_env(|name: &str| {
            let value = env(name);
            if value.is_some() {
                set.borrow_mut().push(name.to_string());
            }
            value
        })?;
        config.validate().map_err(|error| match error {
            ConfigError::Invalid(message) => ConfigError::InvalidIn {
                origin: Origin {
                    file: path.map(Path::to_path_buf),
                    env: set.take(),
                },
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses a configuration from TOML text, without environment overrides.
    /// What the text leaves out keeps its default; an unknown key is an
    /// error.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(value) = env("VESSEL_LISTEN") {
            self.listen = value.parse().map_err(|e| ConfigError::Env {
                name: "VESSEL_LISTEN",
                value: value.clone(),
                reason: format!("{e}"),
            })?;
        }
        if let Some(value) = env("VESSEL_DATA_DIR") {
            self.data_dir = PathBuf::from(value);
        }
        if let Some(value) = env("VESSEL_REDIS_URL") {
            self.store.redis_url = (!value.is_empty()).then_some(value);
        }
        if let Some(value) = env("VESSEL_PLUGIN_DIR") {
            self.plugins.dir = Some(PathBuf::from(value));
        }
        if let Some(value) = env("VESSEL_PLUGIN_CACHE_DIR") {
            self.plugins.cache_dir = Some(PathBuf::from(value));
        }
        if let Some(value) = env("VESSEL_REAPER_INTERVAL") {
            self.reaper.interval = env_duration("VESSEL_REAPER_INTERVAL", &value)?;
        }
        if let Some(value) = env("VESSEL_RECONCILE_INTERVAL") {
            self.reconcile.interval = env_duration("VESSEL_RECONCILE_INTERVAL", &value)?;
        }
        if let Some(value) = env("VESSEL_IDLE_TIMEOUT") {
            self.reaper.idle_timeout = env_duration("VESSEL_IDLE_TIMEOUT", &value)?;
        }
        if let Some(value) = env("VESSEL_PROJECT_ROOTS") {
            self.session.project_roots = value
                .split(':')
                .filter(|root| !root.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(value) = env("VESSEL_AUTH_MODE") {
            self.auth.mode = match value.as_str() {
                "token" => AuthMode::Token,
                "none" => AuthMode::None,
                _ => {
                    return Err(ConfigError::Env {
                        name: "VESSEL_AUTH_MODE",
                        value,
                        reason: "must be token or none".into(),
                    });
                }
            };
        }
        if let Some(value) = env("VESSEL_SIGNING_KEYS") {
            self.auth.signing_keys = value
                .split(',')
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(Secret::new)
                .collect();
        }
        if let Some(value) = env("VESSEL_OPERATOR_TOKEN") {
            self.auth.operator_token = (!value.is_empty()).then(|| Secret::new(value));
        }
        Ok(())
    }

    /// Checks the values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.worker_threads > MAX_WORKER_THREADS {
            return invalid(format!(
                "worker_threads = {} is more than {MAX_WORKER_THREADS}; 0 means one per CPU",
                self.worker_threads
            ));
        }
        if self.session.ports.is_empty() {
            return invalid(
                "session.ports is empty: name at least one port, e.g. ports = [8080]".into(),
            );
        }
        if self.session.cpus == 0 || self.session.memory_mib == 0 {
            return invalid(
                "session.cpus and session.memory_mib must be at least 1 (defaults 1 and 1024)"
                    .into(),
            );
        }
        if !self.session.project_dest.starts_with('/') {
            return invalid(format!(
                "session.project_dest ({:?}) must be an absolute path, e.g. \
                 project_dest = \"/workspace\"",
                self.session.project_dest
            ));
        }
        if self.session.lease < Duration::from_millis(300) {
            return invalid(format!(
                "session.lease ({:?}) must be at least 300ms, since it is renewed every third \
                 of it; write e.g. lease = \"30s\" (the default)",
                self.session.lease
            ));
        }
        if self
            .auth
            .signing_keys
            .iter()
            .any(|key| key.expose().len() < 32)
        {
            return invalid(
                "auth.signing_keys: every key must be at least 32 bytes; make one with \
                 `openssl rand -hex 32`"
                    .into(),
            );
        }
        if self
            .auth
            .operator_token
            .as_ref()
            .is_some_and(|token| token.expose().len() < 32)
        {
            return invalid(
                "auth.operator_token must be at least 32 characters; make one with \
                 `openssl rand -hex 32`, or leave it out"
                    .into(),
            );
        }
        let longest_start = self.session.start_timeout + self.session.stop_timeout;
        if let Some(limit) = self.http.request_timeout
            && limit <= longest_start
        {
            return invalid(format!(
                "http.request_timeout ({limit:?}) must exceed session.start_timeout + \
                 session.stop_timeout ({longest_start:?}), or starts would be cut off; raise \
                 it, or leave it out for that sum plus 30s"
            ));
        }
        if self.http.max_connections == 0
            || self.http.body_limit_bytes == 0
            || self.http.header_read_timeout.is_zero()
        {
            return invalid(
                "http.max_connections, http.body_limit_bytes and http.header_read_timeout \
                 must be positive (defaults 1024, 65536 and \"10s\")"
                    .into(),
            );
        }
        for root in &self.session.project_roots {
            if !root.is_absolute() {
                return invalid(format!(
                    "session.project_roots: {} must be an absolute path",
                    root.display()
                ));
            }
            if !root.is_dir() {
                return invalid(format!(
                    "session.project_roots: {} is not an existing directory (a root that \
                     does not exist would silently allow nothing, or later something else)",
                    root.display()
                ));
            }
        }
        if self.reconcile.interval.is_zero() {
            return invalid(
                "reconcile.interval must be positive, e.g. interval = \"5m\" (the default); \
                 to turn reconciliation off write enabled = false"
                    .into(),
            );
        }
        for (name, nice) in [
            ("reaper.nice", self.reaper.nice),
            ("reconcile.nice", self.reconcile.nice),
        ] {
            if !(0..=crate::background::MAX_NICE).contains(&nice) {
                return invalid(format!(
                    "{name} = {nice} is outside 0..={} (default 10; 0 keeps the host's priority)",
                    crate::background::MAX_NICE
                ));
            }
        }
        if self.reaper.interval.is_zero() || self.reaper.batch_size == 0 {
            return invalid(
                "reaper.interval and reaper.batch_size must be positive (defaults \"60s\" and \
                 500); to turn the Reaper off write enabled = false"
                    .into(),
            );
        }
        if self.plugins.call_slots > PluginsConfig::MAX_CALL_SLOTS {
            return invalid(format!(
                "plugins.call_slots must be at most {} (or 0 for no pool)",
                PluginsConfig::MAX_CALL_SLOTS
            ));
        }
        for (role, plugin) in [("vm", &self.plugins.vm), ("proxy", &self.plugins.proxy)] {
            if plugin.memory_limit_mib > PluginConfig::MAX_MEMORY_LIMIT_MIB {
                return invalid(format!(
                    "plugins.{role}.memory_limit_mib must be at most {} (4 GiB, a 32-bit memory)",
                    PluginConfig::MAX_MEMORY_LIMIT_MIB
                ));
            }
            if plugin.path.as_os_str().is_empty() {
                return invalid(format!(
                    "plugins.{role}.path is empty: name the component's .wasm file, or leave \
                     the line out for the mock"
                ));
            }
            if plugin.memory_limit_mib == 0
                || plugin.call_timeout.is_zero()
                || plugin.max_handles == 0
            {
                return invalid(format!(
                    "plugins.{role}.memory_limit_mib, max_handles and call_timeout must be \
                     positive (defaults 64, 256 and \"60s\")"
                ));
            }
            if let Err(ConfigError::Invalid(reason)) = plugin.settings_as_strings() {
                return invalid(format!("plugins.{role}.settings: {reason}"));
            }
            for grant in &plugin.grants.exec {
                match grant.command.first() {
                    Some(program) if Path::new(program).is_absolute() => {}
                    _ => {
                        return invalid(format!(
                            "plugins.{role}.grants.exec: command must start with an absolute \
                             program path, e.g. [\"/usr/bin/sudo\", \"-n\", ...], got {:?}",
                            grant.command
                        ));
                    }
                }
            }
            for grant in &plugin.grants.http {
                if let Err(reason) = crate::plugins::http::HttpRule::new(grant) {
                    return invalid(format!("plugins.{role}.grants.http: {reason}"));
                }
            }
            for grant in &plugin.grants.exec {
                let expand = |path: &Path| self.expand(path);
                if let Err(reason) =
                    crate::plugins::arg_policy::ArgPolicy::new(&grant.allow, &expand)
                {
                    return invalid(format!("plugins.{role}.grants.exec.allow: {reason}"));
                }
            }
            for dir in &plugin.grants.dirs {
                if let Some(why) = self.holds_own_files(&dir.host) {
                    return invalid(format!(
                        "plugins.{role}.grants.dirs: {} {why}: a plugin granted it could read \
                         Vessel's keys or change what Vessel loads or copies",
                        dir.host.display()
                    ));
                }
                if !dir.guest.starts_with('/') {
                    return invalid(format!(
                        "plugins.{role}.grants.dirs: guest path {:?} must be absolute, e.g. \
                         guest = \"/state\"",
                        dir.guest
                    ));
                }
            }
        }
        Ok(())
    }

    /// The longest one request may take: `http.request_timeout`, or by
    /// default the longest start and stop plus 30 seconds.
    pub fn request_timeout(&self) -> Duration {
        self.http.request_timeout.unwrap_or(
            self.session.start_timeout + self.session.stop_timeout + Duration::from_secs(30),
        )
    }

    /// Why a directory granted at `host` would expose Vessel's own files
    /// (the data directory with its keys and store, the compiled-plugin
    /// cache, the staged projects), if it would.
    fn holds_own_files(&self, host: &Path) -> Option<&'static str> {
        let granted = absolute(&self.expand(host));
        if absolute(&self.data_dir).starts_with(&granted) {
            Some("is Vessel's data directory or holds it")
        } else if granted.starts_with(absolute(&self.plugin_cache_dir())) {
            Some("is inside the compiled-plugin cache")
        } else if granted.starts_with(self.staging_dir()) {
            Some("is inside the staging area of projects")
        } else {
            None
        }
    }

    /// Expands `{data_dir}` at the start of a configured path.
    pub fn expand(&self, path: &Path) -> PathBuf {
        match path.to_str().and_then(|p| p.strip_prefix("{data_dir}")) {
            Some(rest) => self.data_dir.join(rest.trim_start_matches('/')),
            None => path.to_path_buf(),
        }
    }

    /// The embedded store's file.
    pub fn embedded_store_path(&self) -> PathBuf {
        match &self.store.embedded_path {
            Some(path) => self.expand(path),
            None => self.data_dir.join("sessions.redb"),
        }
    }

    /// Where staged copies of projects are made: `{data_dir}/staging`, as
    /// an absolute path whatever `data_dir` is, since drivers are given
    /// paths under it and cannot know the host's working directory.
    pub fn staging_dir(&self) -> PathBuf {
        absolute(&self.data_dir.join("staging"))
    }

    /// The compiled-plugin cache directory.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        match &self.plugins.cache_dir {
            Some(path) => self.expand(path),
            None => self.data_dir.join("cache"),
        }
    }

    /// Where a plugin's component file is: `path` if absolute, else under
    /// the plugin directory (see [`PluginsConfig::dir`]).
    pub fn plugin_path(&self, plugin: &PluginConfig) -> PathBuf {
        let path = self.expand(&plugin.path);
        if path.is_absolute() {
            return path;
        }
        match &self.plugins.dir {
            Some(dir) => self.expand(dir).join(path),
            None => default_plugin_dirs()
                .into_iter()
                .map(|dir| dir.join(&path))
                .find(|candidate| candidate.exists())
                .unwrap_or(path),
        }
    }
}

/// The places a `vessel` binary looks for plugins when no directory is
/// configured: beside itself, then the workspace's plugin build output
/// (the binary is `target/<profile>/vessel`, plugins are in
/// `target/wasm32-wasip2/plugin/`).
/// `path` made absolute against the working directory and normalised
/// (`.` and `..` resolved by name); only normalised when there is no
/// working directory.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .map(|p| crate::paths::normalize(&p))
        .unwrap_or_else(|_| crate::paths::normalize(path))
}

fn default_plugin_dirs() -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    let mut dirs = vec![exe_dir.join("plugins")];
    // Test binaries live one level deeper, in target/<profile>/deps.
    for up in [exe_dir.parent(), exe_dir.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
    {
        dirs.push(up.join("wasm32-wasip2").join("plugin"));
    }
    dirs
}

/// Reads an optional string, taking an empty one for none, as the
/// environment variables do (`redis_url = ""` means the embedded store).
fn empty_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|value| !value.is_empty()))
}

fn env_duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime_serde::re::humantime::parse_duration(value).map_err(|e| ConfigError::Env {
        name,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_defaults_are_the_documented_embedded_setup() {
        let config = Config::load(None, no_env).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.store.redis_url, None);
        assert_eq!(config.reaper.interval, Duration::from_secs(60));
        assert_eq!(config.reaper.idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.plugins.vm.path, PathBuf::from("mock_vm.wasm"));
        assert_eq!(config.plugins.vm.liveness, Liveness::Inspect);
        assert_eq!(
            config.expand(&config.plugins.vm.grants.dirs[0].host),
            PathBuf::from(".vessel/mock-vm")
        );
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let config = Config::from_toml(
            r#"
            listen = "127.0.0.1:9999"
            [reaper]
            interval = "2s"
            [plugins.vm]
            path = "/opt/vessel/ignite_vm.wasm"
            call_timeout = "5m"
            settings = { boot_delay_ms = 250, image_pull = true }
            [[plugins.vm.grants.exec]]
            name = "ignite"
            command = ["/usr/bin/sudo", "-n", "/usr/local/bin/ignite"]
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.reaper.interval, Duration::from_secs(2));
        assert_eq!(config.reaper.idle_timeout, Duration::from_secs(1800));
        assert_eq!(config.plugins.vm.call_timeout, Duration::from_secs(300));
        let settings = config.plugins.vm.settings_as_strings().unwrap();
        assert_eq!(settings["boot_delay_ms"], "250");
        assert_eq!(settings["image_pull"], "true");
        assert_eq!(
            config.plugins.vm.grants.exec[0].max_timeout,
            Duration::from_secs(60)
        );
        // The proxy keeps its default.
        assert_eq!(config.plugins.proxy.path, PathBuf::from("mock_proxy.wasm"));
    }

    #[test]
    fn environment_variables_override_the_file() {
        let env = |name: &str| match name {
            "VESSEL_REDIS_URL" => Some("redis://127.0.0.1:6390".to_string()),
            "VESSEL_REAPER_INTERVAL" => Some("250ms".to_string()),
            "VESSEL_LISTEN" => Some("127.0.0.1:0".to_string()),
            _ => None,
        };
        let config = Config::load(None, env).unwrap();
        assert_eq!(
            config.store.redis_url.as_deref(),
            Some("redis://127.0.0.1:6390")
        );
        assert_eq!(config.reaper.interval, Duration::from_millis(250));
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn the_example_configs_in_the_repository_load() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        // Their project roots (/srv/projects) do not exist here.
        let roots = std::env::temp_dir().display().to_string();
        let env = |name: &str| (name == "VESSEL_PROJECT_ROOTS").then(|| roots.clone());
        for name in ["ignite-nginx.toml", "ignite-caddy.toml"] {
            let config = Config::load(Some(&examples.join(name)), env)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                config.plugins.vm.path,
                PathBuf::from("ignite_vm.wasm"),
                "{name}"
            );
            assert_eq!(config.plugins.vm.grants.exec[0].command[0], "/usr/bin/sudo");
            assert!(config.store.redis_url.is_some());
        }
    }

    /// One secret for every secret field, so that the printed file can be
    /// completed by putting it back wherever it says `<redacted>`.
    const SECRET: &str = "hunter2-hunter2-hunter2-hunter2-hunter2";

    fn config_with_secrets() -> Config {
        Config::from_toml(&format!(
            r#"
            [store]
            redis_url = "redis://:{SECRET}@127.0.0.1:6379/0"
            [auth]
            signing_keys = ["{SECRET}"]
            operator_token = "{SECRET}"
            [plugins.proxy]
            settings = {{ admin_token = "{SECRET}", mode = "path", port = 2019 }}
            [[plugins.proxy.grants.exec]]
            command = ["/usr/bin/tool"]
            env = {{ API_KEY = "{SECRET}", PATH = "/usr/bin" }}
            [[plugins.proxy.grants.exec.allow]]
            args = ["list"]
            options = {{ "--name" = "re:[a-z]+" }}
            [plugins.proxy.grants]
            http = ["http://127.0.0.1:2019", {{ origin = "http://127.0.0.1:2020", methods = ["GET"] }}]
            network = ["127.0.0.1:5432"]
            "#
        ))
        .unwrap()
    }

    #[test]
    fn check_config_output_holds_no_secret() {
        let config = config_with_secrets();
        let printed = config.to_toml().unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redis://:<redacted>@127.0.0.1:6379/0"));
        assert!(
            printed.contains(r#"PATH = "/usr/bin""#) && printed.contains(r#"mode = "path""#),
            "non-secret values stay: {printed}"
        );
        // Nor does the debug form, which logs may show.
        let debug = format!("{config:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn a_unix_socket_urls_password_is_not_printed_either() {
        let config = Config::from_toml(&format!(
            "[store]\nredis_url = \"redis+unix:///run/redis/redis.sock?db=1&pass={SECRET}\"\n"
        ))
        .unwrap();
        let printed = config.to_toml().unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redis+unix:///run/redis/redis.sock?db=1&pass=<redacted>"));
        let debug = format!("{config:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        // Put back, it loads as it was.
        let loaded = Config::from_toml(&printed.replace(REDACTED, SECRET)).unwrap();
        assert_eq!(loaded, config);
    }

    #[test]
    fn check_config_output_loads_back_once_the_secrets_are_put_back() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let example = |name: &str| {
            let text = std::fs::read_to_string(examples.join(name)).unwrap();
            Config::from_toml(&text).unwrap()
        };
        for config in [
            Config::default(),
            config_with_secrets(),
            example("ignite-nginx.toml"),
            example("ignite-caddy.toml"),
        ] {
            let printed = config.to_toml().unwrap();
            let completed = printed.replace(REDACTED, SECRET);
            let loaded =
                Config::from_toml(&completed).unwrap_or_else(|e| panic!("{e}\nin:\n{printed}"));
            assert_eq!(loaded, config, "printed:\n{printed}");
        }
    }

    #[test]
    fn check_config_output_says_what_unset_fields_mean() {
        let printed = Config::default().to_toml().unwrap();
        for note in [
            "[store]\n# redis_url is unset: sessions are kept in the embedded store",
            "# embedded_path is unset: {data_dir}/sessions.redb (.vessel/sessions.redb)",
            "# request_timeout is unset: session.start_timeout + session.stop_timeout + 30s \
             (3m 30s)",
            "# cache_dir is unset: {data_dir}/cache (.vessel/cache)",
        ] {
            assert!(printed.contains(note), "{note:?} in:\n{printed}");
        }
    }

    #[test]
    fn worker_threads_are_bounded() {
        let config = Config::from_toml("worker_threads = 2").unwrap();
        assert_eq!(config.worker_threads, 2);
        config.validate().unwrap();
        let error = Config::from_toml("worker_threads = 100000")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("worker_threads"), "{error}");
    }

    #[test]
    fn the_default_file_loads_to_the_defaults() {
        assert_eq!(Config::from_toml(DEFAULT_FILE).unwrap(), Config::default());
    }

    #[test]
    fn the_readme_shows_the_default_file() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
                .unwrap();
        assert!(
            readme.contains(&format!("```toml\n{DEFAULT_FILE}```")),
            "README.md's configuration reference must be host/src/config/default.toml, verbatim"
        );
    }

    #[test]
    fn every_table_keeps_what_it_does_not_set() {
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 16] = [
            ("shutdown_grace = \"1s\"", |c| {
                c.shutdown_grace = Duration::from_secs(1)
            }),
            ("[store]\ntimeout = \"5s\"", |c| {
                c.store.timeout = Duration::from_secs(5)
            }),
            ("[session]\ncpus = 2", |c| c.session.cpus = 2),
            ("[reaper]\nenabled = false", |c| c.reaper.enabled = false),
            ("[reconcile]\nenabled = false", |c| {
                c.reconcile.enabled = false
            }),
            ("[auth]\nmode = \"none\"", |c| c.auth.mode = AuthMode::None),
            ("[http]\nmax_connections = 10", |c| {
                c.http.max_connections = 10
            }),
            ("[limits]\nexempt_loopback = false", |c| {
                c.limits.exempt_loopback = false
            }),
            ("[plugins]\ndir = \"/opt/p\"", |c| {
                c.plugins.dir = Some(PathBuf::from("/opt/p"))
            }),
            ("[plugins.vm]\nliveness = \"tcp\"", |c| {
                c.plugins.vm.liveness = Liveness::Tcp
            }),
            ("[plugins.proxy]\ncall_timeout = \"5s\"", |c| {
                c.plugins.proxy.call_timeout = Duration::from_secs(5)
            }),
            ("[plugins.vm]\npath = \"/opt/vessel/mock_vm.wasm\"", |c| {
                c.plugins.vm.path = PathBuf::from("/opt/vessel/mock_vm.wasm")
            }),
            ("[plugins.vm.grants]\nsymlinks = true", |c| {
                c.plugins.vm.grants.symlinks = true
            }),
            ("[plugins.proxy.grants]\nnetwork = [\"127.0.0.1:1\"]", |c| {
                c.plugins.proxy.grants.network = vec![SocketAddr::from(([127, 0, 0, 1], 1))]
            }),
            (
                "[[plugins.vm.grants.exec]]\ncommand = [\"/bin/true\"]",
                |c| {
                    c.plugins.vm.grants.exec.push(ExecGrant {
                        name: None,
                        command: vec!["/bin/true".into()],
                        env: BTreeMap::new(),
                        max_timeout: Duration::from_secs(60),
                        max_output_bytes: 1 << 20,
                        allow: Vec::new(),
                    })
                },
            ),
            (
                "[plugins.vm.grants]\nhttp = [{ origin = \"http://127.0.0.1:1\" }]",
                |c| {
                    c.plugins.vm.grants.http = vec![HttpGrant::Limited {
                        origin: "http://127.0.0.1:1".into(),
                        methods: Vec::new(),
                        paths: Vec::new(),
                    }]
                },
            ),
        ];
        for (text, change) in cases {
            let mut expected = Config::default();
            change(&mut expected);
            let loaded = Config::from_toml(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(loaded, expected, "{text}");
            loaded.validate().unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn a_partial_plugin_table_keeps_its_slots_defaults() {
        let config = Config::from_toml("[plugins.vm]\nliveness = \"tcp\"\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.plugins.vm.path, PathBuf::from("mock_vm.wasm"));
        assert_eq!(
            config.plugins.vm.grants.dirs,
            Config::default().plugins.vm.grants.dirs
        );
        assert_eq!(config.plugins.vm.grants.dirs[0].guest, "/state");

        // The proxy's calls take turns unless the file says otherwise.
        let config = Config::from_toml("[plugins.proxy]\nmemory_limit_mib = 32\n").unwrap();
        assert_eq!(config.plugins.proxy.max_concurrent_calls, Some(1));
        assert_eq!(config.plugins.vm.max_concurrent_calls, Some(0));
        assert_eq!(
            config.plugins.proxy.grants.dirs[0].host,
            PathBuf::from("{data_dir}/mock-proxy")
        );
    }

    #[test]
    fn another_component_is_granted_nothing_it_did_not_ask_for() {
        let config = Config::from_toml(
            r#"
            [plugins.vm]
            path = "ignite_vm.wasm"
            [[plugins.vm.grants.exec]]
            command = ["/usr/local/bin/ignite"]
            [plugins.proxy]
            path = "/opt/vessel/nginx_proxy.wasm"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        let vm = &config.plugins.vm;
        assert!(vm.grants.dirs.is_empty(), "{:?}", vm.grants);
        assert_eq!(vm.grants.exec.len(), 1);
        assert_eq!(vm.liveness, Liveness::Tcp);
        // The limits are the slot's, whatever the component.
        assert_eq!(vm.call_timeout, Duration::from_secs(60));
        assert_eq!(vm.max_concurrent_calls, Some(0));
        let proxy = &config.plugins.proxy;
        assert_eq!(proxy.grants, Grants::default());
        assert_eq!(proxy.max_concurrent_calls, Some(1));
    }

    #[test]
    fn an_empty_redis_url_or_operator_token_is_unset() {
        let config =
            Config::from_toml("[store]\nredis_url = \"\"\n[auth]\noperator_token = \"\"\n")
                .unwrap();
        config.validate().unwrap();
        assert_eq!(config.store.redis_url, None);
        assert_eq!(config.auth.operator_token, None);
    }

    /// The error of loading `text` from a file named `vessel.toml`.
    fn load_error(text: &str) -> (PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vessel.toml");
        std::fs::write(&path, text).unwrap();
        let error = Config::load(Some(&path), no_env).unwrap_err().to_string();
        (path, error)
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file_line_and_column() {
        let cases = [
            ("listen_x = 1", 1, 1, "listen_x", "`listen`"),
            (
                "[session]\ncpus = 1\nimage_x = \"a\"",
                3,
                1,
                "image_x",
                "`image`",
            ),
            (
                "[plugins.vm]\nliveness_x = \"tcp\"",
                2,
                1,
                "liveness_x",
                "`liveness`",
            ),
            (
                "[plugins.proxy.grants]\n  dirz = []",
                2,
                3,
                "dirz",
                "`dirs`",
            ),
            (
                "[[plugins.vm.grants.exec]]\ncommand = [\"/bin/true\"]\ntimeout = \"1s\"",
                3,
                1,
                "timeout",
                "`max_timeout`",
            ),
            (
                "[plugins.vm.grants]\ndirs = [{ host = \"/x\", guest = \"/y\", ro = true }]",
                2,
                38,
                "ro",
                "`read_only`",
            ),
            (
                "[plugins.vm.grants]\nhttp = [{ origin = \"http://a:1\", method = [] }]",
                2,
                34,
                "method",
                "`methods`",
            ),
            (
                "[[plugins.vm.grants.exec]]\ncommand = [\"/bin/true\"]\n\
                 [[plugins.vm.grants.exec.allow]]\nargz = []",
                4,
                1,
                "argz",
                "`args`",
            ),
        ];
        for (text, line, column, key, suggestion) in cases {
            let (path, error) = load_error(text);
            let expected = format!(
                "{}:{line}:{column}: unknown field `{key}`, expected ",
                path.display()
            );
            assert!(error.starts_with(&expected), "{text:?}: {error}");
            assert!(error.contains(suggestion), "{text:?}: {error}");
        }
    }

    #[test]
    fn an_invalid_value_names_the_file_and_says_what_to_write() {
        let (path, error) = load_error("[session]\nports = []\n");
        assert_eq!(
            error,
            format!(
                "{}: session.ports is empty: name at least one port, e.g. ports = [8080]",
                path.display()
            )
        );
        let (path, error) = load_error("[plugins.vm]\npath = \"\"\n");
        assert!(
            error.starts_with(&format!("{}: plugins.vm.path", path.display())),
            "{error}"
        );

        let env = |name: &str| (name == "VESSEL_REAPER_INTERVAL").then(|| "0s".to_string());
        let error = Config::load(None, env).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "the default configuration (no config file), with VESSEL_REAPER_INTERVAL from \
                 the environment: reaper.interval"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_grant_of_vessels_own_files_is_a_configuration_error() {
        for host in [
            "{data_dir}",
            "{data_dir}/..",
            "/",
            "{data_dir}/cache",
            "{data_dir}/staging/x",
        ] {
            let mut config = Config::default();
            config.plugins.proxy.grants.dirs[0].host = PathBuf::from(host);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("could read Vessel's keys"), "{host}: {err}");
        }
        // The mocks' own state directories under data_dir are fine.
        Config::default().validate().unwrap();
    }

    #[test]
    fn the_staging_dir_is_absolute_even_when_the_data_dir_is_not() {
        let config = Config {
            data_dir: PathBuf::from("rel/./data"),
            ..Config::default()
        };
        let staging = config.staging_dir();
        assert!(staging.is_absolute(), "{staging:?}");
        assert!(staging.ends_with("rel/data/staging"), "{staging:?}");
    }

    #[test]
    fn a_missing_project_root_is_a_configuration_error() {
        let env = |name: &str| {
            (name == "VESSEL_PROJECT_ROOTS").then(|| "/nonexistent-vessel-root".to_string())
        };
        let err = Config::load(None, env).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-vessel-root"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let env = |name: &str| (name == "VESSEL_IDLE_TIMEOUT").then(|| "soon".to_string());
        let err = Config::load(None, env).unwrap_err();
        assert!(err.to_string().contains("VESSEL_IDLE_TIMEOUT"), "{err}");

        assert!(Config::from_toml("unknown_field = 1").is_err());

        let mut config = Config::default();
        config.session.lease = Duration::from_millis(10);
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("session.lease")
        );

        for section in ["reaper", "reconcile"] {
            for nice in [-1, 20] {
                let config = Config::from_toml(&format!("[{section}]\nnice = {nice}")).unwrap();
                let error = config.validate().unwrap_err().to_string();
                assert!(
                    error.contains(&format!("{section}.nice = {nice}")) && error.contains("0..=19"),
                    "{error}"
                );
            }
        }
        let config = Config::from_toml("[reaper]\nnice = 0").unwrap();
        assert_eq!(config.reaper.nice, 0);
        config.validate().unwrap();

        let mut config = Config::default();
        config.plugins.vm.grants.exec.push(ExecGrant {
            name: None,
            command: vec!["ignite".into()],
            env: BTreeMap::new(),
            max_timeout: default_exec_timeout(),
            max_output_bytes: default_max_output(),
            allow: Vec::new(),
        });
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
    }
}
