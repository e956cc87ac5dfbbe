//! The data of one plugin call's store: its WASI context and resource
//! table, its limiter, and the host imports (`process`, `http`, `config`,
//! `log`) it may use.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{config, http, log, process, types};
use super::exec::{ExecAllowlist, ExecError, ExecRequest};
use super::http::{HttpAllowlist, HttpError, HttpRequest};
use super::limits::CallLimiter;

/// The longest log message a plugin may write; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// What every call of one plugin shares: its name, settings and exec grants.
#[derive(Debug)]
pub struct PluginIdentity {
    /// The plugin's role and file, e.g. `vm (mock_vm.wasm)`, for logs.
    pub name: String,
    /// The operator's settings for it.
    pub settings: BTreeMap<String, String>,
    /// The programs it may run.
    pub exec: ExecAllowlist,
    /// The origins it may send HTTP requests to.
    pub http: HttpAllowlist,
    /// Whether it may create symlinks in its granted directories.
    pub symlinks: bool,
}

/// The store data of one call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The call's limiter (the store's `limiter` points here).
    pub limiter: CallLimiter,
    plugin: Arc<PluginIdentity>,
}

impl CallState {
    /// The state for one call of `plugin`, holding at most `max_handles`
    /// host resources at once.
    pub fn new(
        wasi: WasiCtx,
        limiter: CallLimiter,
        max_handles: usize,
        plugin: Arc<PluginIdentity>,
    ) -> CallState {
        // Every resource WASI hands the plugin (a descriptor, a directory
        // stream, an input or output stream, a socket, a pollable) is an
        // entry here; a push past the bound traps with
        // `ResourceTableError::Full`, which the call reports as its handle
        // limit.
        let mut table = ResourceTable::new();
        table.set_max_capacity(max_handles);
        CallState {
            wasi,
            table,
            limiter,
            plugin,
        }
    }

    /// Whether the plugin may create symlinks in its granted directories.
    pub fn symlinks_allowed(&self) -> bool {
        self.plugin.symlinks
    }

    /// The plugin's name, for logs.
    pub fn plugin_name(&self) -> &str {
        &self.plugin.name
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl process::Host for CallState {
    async fn exec(
        &mut self,
        request: process::ExecRequest,
    ) -> Result<process::ExecOutput, types::DriverError> {
        let program = request.program.clone();
        let result = self
            .plugin
            .exec
            .run(ExecRequest {
                program: request.program,
                args: request.args,
                timeout: (request.timeout_ms > 0)
                    .then(|| Duration::from_millis(u64::from(request.timeout_ms))),
                stdin: request.stdin,
            })
            .await;
        match result {
            Ok(outcome) => {
                tracing::debug!(plugin = %self.plugin.name, program = %crate::redact::log_text(&program), exit_code = ?outcome.exit_code, "exec");
                Ok(process::ExecOutput {
                    exit_code: outcome.exit_code,
                    stdout: outcome.stdout,
                    stderr: outcome.stderr,
                    truncated: outcome.truncated,
                })
            }
            Err(error) => {
                tracing::warn!(plugin = %self.plugin.name, program = %crate::redact::log_text(&program),
                    error = %crate::redact::log_text(&error.to_string()), "exec refused or failed");
                Err(match error {
                    ExecError::Denied(_) | ExecError::ArgumentsDenied { .. } => {
                        types::DriverError::Denied(error.to_string())
                    }
                    ExecError::TimedOut { .. } => types::DriverError::TimedOut(error.to_string()),
                    ExecError::Failed { .. } => types::DriverError::Failed(error.to_string()),
                })
            }
        }
    }
}

impl http::Host for CallState {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, types::DriverError> {
        let target = format!("{} {}", request.method, request.url);
        let result = self
            .plugin
            .http
            .send(HttpRequest {
                method: request.method,
                url: request.url,
                headers: request.headers,
                body: request.body,
                timeout: (request.timeout_ms > 0)
                    .then(|| Duration::from_millis(u64::from(request.timeout_ms))),
            })
            .await;
        match result {
            Ok(response) => {
                tracing::debug!(plugin = %self.plugin.name, target = %crate::redact::log_text(&target), status = response.status, "http");
                Ok(http::Response {
                    status: response.status,
                    headers: response.headers,
                    body: response.body,
                })
            }
            Err(error) => {
                tracing::warn!(plugin = %self.plugin.name, target = %crate::redact::log_text(&target),
                    error = %crate::redact::log_text(&error.to_string()), "http refused or failed");
                Err(match error {
                    HttpError::Denied(_) => types::DriverError::Denied(error.to_string()),
                    HttpError::Invalid(_) => types::DriverError::InvalidInput(error.to_string()),
                    HttpError::Unavailable { .. } => {
                        types::DriverError::Unavailable(error.to_string())
                    }
                    HttpError::TimedOut { .. } => types::DriverError::TimedOut(error.to_string()),
                    HttpError::Failed { .. } => types::DriverError::Failed(error.to_string()),
                })
            }
        }
    }
}

impl config::Host for CallState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.plugin.settings.get(&key).cloned()
    }

    async fn entries(&mut self) -> Vec<(String, String)> {
        self.plugin
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = self.plugin.name.as_str();
        // A plugin's text never forges a log line of its own.
        let message = crate::redact::log_text(&message);
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}
