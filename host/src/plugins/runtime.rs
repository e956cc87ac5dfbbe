//! The wasmtime runtime: one engine, components compiled once (or loaded from
//! the compiled cache), and a fresh, limited store for every call.
//!
//! Every call gets a new instance (nothing a call leaves behind is seen by
//! the next), but what an instance needs is reserved once: the engine uses
//! wasmtime's pooling instance allocator, whose slots (linear memories,
//! tables, instance state and async stacks) are reserved at start-up and
//! reused, with memories reset copy-on-write from the component's image. A
//! call takes one of [`PluginsConfig::call_slots`] slots for its lifetime
//! and waits for one when all are taken. With `call_slots = 0` every call
//! allocates and frees its own, as wasmtime does by default.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::bindings;
use super::cache::{self, CompiledCache};
use super::call_state::{CallState, PluginIdentity};
use super::error::PluginError;
use super::exec::ExecAllowlist;
use super::http::HttpAllowlist;
use super::limits::{self, CallLimiter, CallLimits, LimitRecord};
use crate::config::{Config, FileIo, PluginConfig, PluginsConfig};

/// The bytes of a pooled slot's linear memory kept resident between calls.
const KEEP_RESIDENT_MEMORY: usize = 512 * 1024;

/// The bytes of a pooled slot's tables kept resident between calls.
const KEEP_RESIDENT_TABLE: usize = 16 * 1024;

/// The bytes of a pooled slot's async stack kept resident between calls.
const KEEP_RESIDENT_STACK: usize = 64 * 1024;

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
    /// The pool's slots, one per running call; `None` without a pool.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// The memory limit the pool's slots have room for, in MiB.
    pool_memory_mib: u64,
}

/// How many calls may run at once in pooled slots, and the largest memory
/// any of them may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Calls at once; `0`: no pool.
    pub slots: u32,
    /// The largest memory limit of a plugin that runs in the pool, in MiB:
    /// the address space each memory of a slot reserves.
    pub memory_mib: u64,
}

impl Default for PoolSize {
    fn default() -> PoolSize {
        PoolSize {
            slots: PluginsConfig::DEFAULT_CALL_SLOTS,
            memory_mib: PluginConfig::DEFAULT_MEMORY_LIMIT_MIB,
        }
    }
}

impl PoolSize {
    /// The pool `config` needs: its slots, and room for the larger of its
    /// two plugins' memory limits.
    pub fn of(config: &Config) -> PoolSize {
        PoolSize {
            slots: config.plugins.call_slots,
            memory_mib: config
                .plugins
                .vm
                .memory_limit_mib
                .max(config.plugins.proxy.memory_limit_mib),
        }
    }

    /// The memory limit in bytes, rounded up to whole 64 KiB WebAssembly
    /// pages.
    fn memory_bytes(&self) -> usize {
        let bytes = self.memory_mib.saturating_mul(1024 * 1024);
        usize::try_from(bytes.div_ceil(65536).saturating_mul(65536)).unwrap_or(usize::MAX)
    }
}

/// The pooling allocator's configuration for `size`: each slot holds
/// everything one call may create within the sandbox's bounds (see
/// [`limits`]), so a call that has a slot never finds the pool exhausted.
/// Each memory reserves address space for the memory limit plus a guard
/// region; what a call touched is returned to the system when its instance
/// is freed.
fn pooling(size: PoolSize) -> PoolingAllocationConfig {
    let slots = size.slots;
    let per_call = |count: usize| u32::try_from(count).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_stacks(slots)
        .total_core_instances(slots.saturating_mul(per_call(limits::MAX_INSTANCES)))
        .total_memories(slots.saturating_mul(per_call(limits::MAX_MEMORIES)))
        .total_tables(slots.saturating_mul(per_call(limits::MAX_TABLES)))
        .max_core_instances_per_component(per_call(limits::MAX_INSTANCES))
        .max_memories_per_component(per_call(limits::MAX_MEMORIES))
        .max_tables_per_component(per_call(limits::MAX_TABLES))
        .max_memories_per_module(per_call(limits::MAX_MEMORIES))
        .max_tables_per_module(per_call(limits::MAX_TABLES))
        .table_elements(limits::MAX_TABLE_ELEMENTS)
        .max_memory_size(size.memory_bytes())
        // Slots used once stay mapped for reuse; keep only as many as
        // calls run at once.
        .max_unused_warm_slots(slots)
        // What a call dirtied is reset in place, up to these sizes (found
        // with the PAGEMAP_SCAN ioctl where the kernel has it, Linux 6.7+),
        // instead of being returned to the system and faulted in again by
        // the next call: that `madvise` and its TLB shoot-downs across
        // threads were the largest part of a short call. It costs at most
        // this much resident memory per slot that has been used.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .async_stack_keep_resident(KEEP_RESIDENT_STACK)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
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
        PluginRuntime::with_pool(cache_dir, PoolSize::default())
    }

    /// The runtime of a host with `config`: its cache directory and a pool
    /// sized for its plugins.
    pub fn for_config(config: &Config) -> Result<PluginRuntime, PluginError> {
        PluginRuntime::with_pool(config.plugin_cache_dir(), PoolSize::of(config))
    }

    /// As [`PluginRuntime::new`], with a pool of `size` (no pool for zero
    /// slots). When the system refuses the pool's address space (a limit on
    /// virtual memory), the host logs it and runs without a pool.
    pub fn with_pool(cache_dir: PathBuf, size: PoolSize) -> Result<PluginRuntime, PluginError> {
        let slots = size.slots;
        let setup = |reason: String| PluginError::Setup {
            plugin: "runtime".into(),
            reason,
        };
        let mut engine_config = EngineConfig::new();
        engine_config.epoch_interruption(true);
        let pooled = (slots > 0)
            .then(|| {
                let mut pooled_config = engine_config.clone();
                // Memories reserve their limit, not 4 GiB each: WebAssembly
                // code then checks bounds explicitly, which costs plugins
                // little, and a slot stays within a few hundred MiB of
                // address space.
                pooled_config
                    .memory_reservation(size.memory_bytes() as u64)
                    .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(size)));
                Engine::new(&pooled_config)
                    .inspect_err(|error| {
                        tracing::warn!(
                            event = "plugin_pool.unused",
                            slots,
                            error = %error,
                            "cannot reserve the plugin call pool: every call allocates its own"
                        )
                    })
                    .ok()
            })
            .flatten();
        let (engine, slots) = match pooled {
            Some(engine) => (
                engine,
                Some(Arc::new(tokio::sync::Semaphore::new(slots as usize))),
            ),
            None => (
                Engine::new(&engine_config).map_err(|e| setup(e.to_string()))?,
                None,
            ),
        };
        let pool_memory_mib = size.memory_mib;

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
            slots,
            pool_memory_mib,
        })
    }

    /// Whether calls run in pooled slots.
    pub fn pooled(&self) -> bool {
        self.slots.is_some()
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
        if self.slots.is_some() && plugin.memory_limit_mib > self.pool_memory_mib {
            return Err(load_error(format!(
                "its memory_limit_mib ({}) is more than the call pool has room for ({} MiB)",
                plugin.memory_limit_mib, self.pool_memory_mib
            )));
        }
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
        let preopens = granted_directories(&dirs, plugin.file_io).map_err(load_error)?;
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
            preopens,
            network: Arc::new(plugin.grants.network.iter().copied().collect()),
            call_timeout: plugin.call_timeout,
            limits: CallLimits {
                memory_mib: plugin.memory_limit_mib,
                max_handles: usize::try_from(plugin.max_handles).unwrap_or(usize::MAX),
            },
            slots: self.slots.clone(),
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
                // Compiling it again would be refused the same way.
                Err(e) if exceeds_pool(&e) => return Err(load_refusal(e)),
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
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(load_refusal)
    }
}

/// Whether loading a component failed because the pool checked its
/// structure against the bounds of one call as it loaded it.
fn exceeds_pool(error: &wasmtime::Error) -> bool {
    error.to_string().contains("pooling allocator")
}

/// Why a compiled component could not be loaded, in the words of a load
/// error.
fn load_refusal(error: wasmtime::Error) -> String {
    if exceeds_pool(&error) {
        format!("it exceeds the sandbox's bounds on one call: {error}")
    } else {
        error.to_string()
    }
}

/// A directory granted to a plugin.
#[derive(Debug, Clone)]
struct DirPreopen {
    host: PathBuf,
    guest: String,
    read_only: bool,
}

/// The WASI filesystem context of a plugin's granted directories, opened
/// once, when the plugin is loaded; every call gets a copy, which shares
/// the open handles. The grant is the directory that was there at load:
/// replacing it on the host, or putting a symlink in its place, does not
/// redirect a running host's plugin. Sharing a handle between calls is
/// safe: WASI uses a directory handle only as the base of `*at` system
/// calls, and reading a directory's entries opens a handle of its own.
fn granted_directories(dirs: &[DirPreopen], file_io: FileIo) -> Result<WasiFilesystemCtx, String> {
    let mut builder = WasiCtxBuilder::new();
    // Before the preopens: each directory takes the setting when added.
    builder.allow_blocking_current_thread(file_io == FileIo::Inline);
    for dir in dirs {
        let perms = if dir.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| {
                format!(
                    "granted directory {} cannot be opened: {e}",
                    dir.host.display()
                )
            })?;
    }
    Ok(builder.build().filesystem().clone())
}

/// A loaded plugin: what each of its calls is given and limited to.
pub(super) struct LoadedPlugin {
    identity: Arc<PluginIdentity>,
    engine: Engine,
    /// The granted directories, open (see [`granted_directories`]).
    preopens: WasiFilesystemCtx,
    network: Arc<HashSet<SocketAddr>>,
    call_timeout: Duration,
    limits: CallLimits,
    /// Turns for calls when the plugin's calls may not all run at once.
    turns: Option<Arc<tokio::sync::Semaphore>>,
    /// The runtime's pooled call slots, shared by every plugin.
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// What a running call holds: its turn among the plugin's calls, if they
/// take turns, and its slot of the pool. Dropped after the call's store.
pub(super) struct CallTurn {
    _turn: Option<tokio::sync::OwnedSemaphorePermit>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl LoadedPlugin {
    /// The plugin's name for logs and errors.
    pub(super) fn name(&self) -> &str {
        &self.identity.name
    }

    /// Waits for this call's turn, when the plugin's calls may not all run
    /// at once (`max_concurrent_calls`), then for a slot of the pool; both
    /// end when the returned value is dropped. The waits are not counted in
    /// the call's time limit.
    pub(super) async fn turn(&self) -> CallTurn {
        let turn = match &self.turns {
            Some(turns) => turns.clone().acquire_owned().await.ok(),
            None => None,
        };
        let slot = match &self.slots {
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        CallTurn {
            _turn: turn,
            _slot: slot,
        }
    }

    /// The WASI context of one call: the granted directories (opened at
    /// load, with file operations where the plugin's `file_io` says), TCP
    /// to the granted addresses only, no UDP, no name lookups, no
    /// environment, no arguments, no stdio.
    fn wasi(&self) -> WasiCtx {
        let mut builder = WasiCtxBuilder::new();
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
        let mut wasi = builder.build();
        *wasi.filesystem() = self.preopens.clone();
        wasi
    }

    /// Starts one call of operation `op`: a fresh store with the plugin's
    /// limits, and the watch that classifies how the call ended.
    pub(super) fn begin(
        &self,
        op: &'static str,
    ) -> Result<(Store<CallState>, CallWatch), PluginError> {
        let hit = LimitRecord::default();
        let state = CallState::new(
            self.wasi(),
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
