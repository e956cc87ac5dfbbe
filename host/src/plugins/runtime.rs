//! The wasmtime runtime: one engine, components compiled once (or loaded from
//! the compiled cache), and a fresh, limited store for every call.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config as EngineConfig, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::bindings;
use super::cache::{self, CompiledCache};
use super::call_state::{CallState, PluginIdentity};
use super::error::PluginError;
use super::exec::ExecAllowlist;
use super::http::HttpAllowlist;
use super::limits::{self, CallLimiter, CallLimits, LimitRecord};
use crate::config::{Config, PluginConfig};

/// How often the epoch advances; the granularity of call time limits.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine and linker all plugins share. A background thread advances
/// the engine's epoch (which drives call time limits) for as long as any
/// loaded plugin holds the engine.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    /// `None` when the cache directory failed its checks: then every
    /// plugin is compiled at start-up.
    cache: Option<CompiledCache>,
}

impl PluginRuntime {
    /// Creates the engine (async, with epoch interruption) and the linker
    /// with WASI and Vessel's host interfaces. Compiled components are cached
    /// in `cache_dir`, sealed with the key in `<cache_dir>.key` (see
    /// [`cache`](super::cache)).
    ///
    /// A cache directory that cannot be used safely (another user's, one
    /// others may write to, a key others may read) is not used at all: the
    /// host logs why and how to fix it, and compiles its plugins at every
    /// start. The cache only saves start-up time, so it never stops the
    /// host, and never makes it load code it did not compile itself.
    pub fn new(cache_dir: PathBuf) -> Result<PluginRuntime, PluginError> {
        let setup = |reason: String| PluginError::Setup {
            plugin: "runtime".into(),
            reason,
        };
        let mut engine_config = EngineConfig::new();
        engine_config.epoch_interruption(true);
        let engine = Engine::new(&engine_config).map_err(|e| setup(e.to_string()))?;

        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| setup(e.to_string()))?;
        bindings::vm::VmPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| setup(e.to_string()))?;
        super::symlinks::guard(&mut linker).map_err(|e| setup(e.to_string()))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("vessel-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| setup(format!("cannot start the epoch thread: {e}")))?;

        let cache = match CompiledCache::open(&cache_dir) {
            Ok(cache) => Some(cache),
            Err(error) => {
                tracing::warn!(
                    event = "plugin_cache.unused",
                    dir = %cache_dir.display(),
                    %error,
                    "not using the compiled-plugin cache: plugins are compiled at every start"
                );
                None
            }
        };
        Ok(PluginRuntime {
            engine,
            linker,
            cache,
        })
    }

    /// The linker plugins are instantiated with.
    pub(super) fn linker(&self) -> &Linker<CallState> {
        &self.linker
    }

    /// Reads, compiles (or loads from the cache) and prepares the plugin
    /// `role` as configured in `config`.
    pub(super) fn load(
        &self,
        role: &str,
        config: &Config,
        plugin: &PluginConfig,
    ) -> Result<(LoadedPlugin, Component), PluginError> {
        let path = config.plugin_path(plugin);
        let name = format!(
            "{role} ({})",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let load_error = |reason: String| PluginError::Load {
            plugin: role.to_string(),
            path: path.clone(),
            reason,
        };
        let component = self.compile(&path).map_err(load_error)?;
        let settings = plugin
            .settings_as_strings()
            .map_err(|e| load_error(e.to_string()))?;
        let mut dirs = Vec::new();
        for grant in &plugin.grants.dirs {
            let host = config.expand(&grant.host);
            std::fs::create_dir_all(&host).map_err(|e| {
                load_error(format!(
                    "granted directory {} cannot be created: {e}",
                    host.display()
                ))
            })?;
            dirs.push(DirPreopen {
                host,
                guest: grant.guest.clone(),
                read_only: grant.read_only,
            });
        }
        let loaded = LoadedPlugin {
            identity: Arc::new(PluginIdentity {
                name,
                settings,
                exec: {
                    let exec = ExecAllowlist::new(&plugin.grants.exec, &|p| config.expand(p))
                        .map_err(load_error)?;
                    for program in exec.open_programs() {
                        tracing::warn!(
                            plugin = role,
                            program,
                            "exec grant without an argument policy (allow): the plugin may pass it any arguments"
                        );
                    }
                    exec
                },
                http: HttpAllowlist::new(&plugin.grants.http).map_err(load_error)?,
                symlinks: plugin.grants.symlinks,
            }),
            engine: self.engine.clone(),
            dirs,
            network: Arc::new(plugin.grants.network.iter().copied().collect()),
            call_timeout: plugin.call_timeout,
            limits: CallLimits {
                memory_mib: plugin.memory_limit_mib,
                max_handles: usize::try_from(plugin.max_handles).unwrap_or(usize::MAX),
            },
            turns: {
                let default = if role == "proxy" { 1 } else { 0 };
                match plugin.max_concurrent_calls.unwrap_or(default) {
                    0 => None,
                    n => Some(Arc::new(tokio::sync::Semaphore::new(n as usize))),
                }
            },
        };
        Ok((loaded, component))
    }

    /// Compiles the component at `path`, or loads its compiled form from the
    /// cache. The entry's name is the component's SHA-256 together with the
    /// engine's compatibility hash, so a new Vessel never loads stale code;
    /// the cache hands back only entries sealed with its key.
    fn compile(&self, path: &Path) -> Result<Component, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!("cannot read it ({e}); build the plugins with scripts/build-plugins")
        })?;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let name = cache::entry_name(&bytes, engine_hash.finish());
        if let Some(code) = self.cache.as_ref().and_then(|cache| cache.load(&name)) {
            // SAFETY: the cache returns only code sealed with its secret key,
            // checked on these very bytes: code this host's engine (of this
            // configuration, which the name pins) compiled from this source.
            match unsafe { Component::deserialize(&self.engine, &code) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled plugin")
                }
            }
        }
        let started = Instant::now();
        let compiled = self
            .engine
            .precompile_component(&bytes)
            .map_err(|e| format!("it is not a valid component: {e:?}"))?;
        tracing::info!(path = %path.display(), elapsed_ms = started.elapsed().as_millis() as u64, "compiled plugin");
        if let Some(cache) = &self.cache
            && let Err(e) = cache.store(&name, &compiled)
        {
            tracing::warn!(dir = %cache.dir().display(), error = %e, "cannot cache compiled plugin");
        }
        // SAFETY: `compiled` was produced by this engine just now.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| e.to_string())
    }
}

/// A directory granted to a plugin.
#[derive(Debug, Clone)]
struct DirPreopen {
    host: PathBuf,
    guest: String,
    read_only: bool,
}

/// A loaded plugin: what each of its calls is given and limited to.
pub(super) struct LoadedPlugin {
    identity: Arc<PluginIdentity>,
    engine: Engine,
    dirs: Vec<DirPreopen>,
    network: Arc<HashSet<SocketAddr>>,
    call_timeout: Duration,
    limits: CallLimits,
    /// Turns for calls when the plugin's calls may not all run at once.
    turns: Option<Arc<tokio::sync::Semaphore>>,
}

impl LoadedPlugin {
    /// The plugin's name for logs and errors.
    pub(super) fn name(&self) -> &str {
        &self.identity.name
    }

    /// Waits for this call's turn, when the plugin's calls may not all run
    /// at once (`max_concurrent_calls`); the turn ends when the permit is
    /// dropped. The wait is not counted in the call's time limit.
    pub(super) async fn turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.turns {
            Some(turns) => turns.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The WASI context of one call: the granted directories, TCP to the
    /// granted addresses only, no UDP, no name lookups, no environment, no
    /// arguments, no stdio.
    fn wasi(&self) -> Result<WasiCtx, PluginError> {
        let mut builder = WasiCtxBuilder::new();
        for dir in &self.dirs {
            let perms = if dir.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| PluginError::Setup {
                    plugin: self.identity.name.clone(),
                    reason: format!("cannot open granted directory {}: {e}", dir.host.display()),
                })?;
        }
        let allowed = self.network.clone();
        builder
            .allow_tcp(!allowed.is_empty())
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let permitted = match usage {
                    SocketAddrUse::TcpConnect => allowed.contains(&addr),
                    // A connect first binds the socket implicitly to the
                    // wildcard address; that alone reaches nothing (and
                    // listening stays denied).
                    SocketAddrUse::TcpBind => {
                        !allowed.is_empty() && addr.ip().is_unspecified() && addr.port() == 0
                    }
                    _ => false,
                };
                Box::pin(async move { permitted })
            });
        Ok(builder.build())
    }

    /// Starts one call of operation `op`: a fresh store with the plugin's
    /// limits, and the watch that classifies how the call ended.
    pub(super) fn begin(
        &self,
        op: &'static str,
    ) -> Result<(Store<CallState>, CallWatch), PluginError> {
        let hit = LimitRecord::default();
        let state = CallState::new(
            self.wasi()?,
            CallLimiter::new(self.limits, hit.clone()),
            self.limits.max_handles,
            self.identity.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // The component model's own handle tables (handles a guest holds,
        // in every instance of the call) get the same bound as the host's
        // resource table (what the handles stand for).
        store.set_max_component_handles(self.limits.max_handles);
        // Wasm code yields to the executor at every epoch tick, so a busy
        // loop never holds a tokio worker; past the deadline it is stopped.
        // The yield is tokio's own, which lets the runtime poll its I/O
        // before resuming the plugin: a plain wake-up would put the plugin
        // straight back in the run queue, and a looping plugin would delay
        // every socket the host serves.
        let deadline = Instant::now() + self.call_timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        Ok((
            store,
            CallWatch {
                plugin: self.identity.name.clone(),
                op,
                timeout: self.call_timeout,
                limits: self.limits,
                hit,
            },
        ))
    }
}

/// Bounds one call in wall-clock time and turns how it ended into a
/// [`PluginError`].
pub(super) struct CallWatch {
    plugin: String,
    op: &'static str,
    timeout: Duration,
    limits: CallLimits,
    hit: LimitRecord,
}

impl CallWatch {
    /// Runs `call` (instantiation and the export call) within the time
    /// limit. The limit covers time spent waiting in host calls too (an
    /// `exec`, a sleep), which epoch interruption alone does not.
    pub(super) async fn run<R>(
        self,
        call: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, PluginError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> PluginError {
        PluginError::TimedOut {
            plugin: self.plugin.clone(),
            op: self.op,
            limit: self.timeout,
        }
    }

    fn classify(&self, error: wasmtime::Error) -> PluginError {
        let limit = self
            .hit
            .get()
            .copied()
            .or_else(|| limits::limit_in_error(&error, &self.limits));
        if let Some(limit) = limit {
            return PluginError::LimitExceeded {
                plugin: self.plugin.clone(),
                op: self.op,
                limit,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return self.timed_out();
        }
        PluginError::Trapped {
            plugin: self.plugin.clone(),
            op: self.op,
            message: format!("{error:?}"),
        }
    }
}
