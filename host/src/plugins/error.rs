//! Errors of plugin calls, and the one mapping from the WIT error variant.

use std::path::PathBuf;
use std::time::Duration;

use super::bindings::types::DriverError as WitDriverError;
use super::limits::SandboxLimit;

/// An error a driver returned, one case per case of the WIT `driver-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The VM or route does not exist.
    #[error("not found: {}", crate::redact::log_text(.0))]
    NotFound(String),
    /// A VM with that id already exists.
    #[error("already exists: {}", crate::redact::log_text(.0))]
    AlreadyExists(String),
    /// The driver refused the request as malformed.
    #[error("invalid input: {}", crate::redact::log_text(.0))]
    InvalidInput(String),
    /// A capability or the underlying tool refused.
    #[error("denied: {}", crate::redact::log_text(.0))]
    Denied(String),
    /// The underlying tool did not answer in time.
    #[error("timed out: {}", crate::redact::log_text(.0))]
    TimedOut(String),
    /// The underlying system is down; retrying later may work.
    #[error("unavailable: {}", crate::redact::log_text(.0))]
    Unavailable(String),
    /// Anything else.
    #[error("{}", crate::redact::log_text(.0))]
    Failed(String),
}

impl From<WitDriverError> for DriverError {
    fn from(error: WitDriverError) -> Self {
        match error {
            WitDriverError::NotFound(m) => DriverError::NotFound(m),
            WitDriverError::AlreadyExists(m) => DriverError::AlreadyExists(m),
            WitDriverError::InvalidInput(m) => DriverError::InvalidInput(m),
            WitDriverError::Denied(m) => DriverError::Denied(m),
            WitDriverError::TimedOut(m) => DriverError::TimedOut(m),
            WitDriverError::Unavailable(m) => DriverError::Unavailable(m),
            WitDriverError::Failed(m) => DriverError::Failed(m),
        }
    }
}

/// Why a plugin could not be loaded or a call to it failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component could not be read, compiled or linked at start-up.
    #[error("plugin {plugin} cannot be loaded from {path}: {reason}")]
    Load {
        /// The plugin's role (`vm` or `proxy`).
        plugin: String,
        /// Its component file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The call, or the runtime, could not be set up.
    #[error("plugin {plugin} cannot start a call: {reason}")]
    Setup {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        reason: String,
    },
    /// The driver ran and answered with an error.
    #[error("{plugin}.{op}: {error}")]
    Driver {
        /// The plugin.
        plugin: String,
        /// The operation, e.g. `create`.
        op: &'static str,
        /// The driver's error.
        error: DriverError,
    },
    /// The call ran past its wall-clock limit and was stopped.
    #[error("{plugin}.{op} did not finish within its limit of {limit:?} and was stopped")]
    TimedOut {
        /// The plugin.
        plugin: String,
        /// The operation.
        op: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The call ran into a bound of its sandbox (memory, tables,
    /// instances, resource handles) and was stopped.
    #[error("{plugin}.{op} exceeded its limit of {limit} and was stopped")]
    LimitExceeded {
        /// The plugin.
        plugin: String,
        /// The operation.
        op: &'static str,
        /// The bound.
        limit: SandboxLimit,
    },
    /// The plugin crashed (trapped) during the call.
    #[error("{plugin}.{op} crashed: {}", crate::redact::log_text(message))]
    Trapped {
        /// The plugin.
        plugin: String,
        /// The operation.
        op: &'static str,
        /// The trap and its backtrace.
        message: String,
    },
}

impl DriverError {
    /// What kind of error it is, without the driver's words.
    pub fn kind(&self) -> &'static str {
        match self {
            DriverError::NotFound(_) => "not found",
            DriverError::AlreadyExists(_) => "already exists",
            DriverError::InvalidInput(_) => "invalid input",
            DriverError::Denied(_) => "denied",
            DriverError::TimedOut(_) => "timed out",
            DriverError::Unavailable(_) => "unavailable",
            DriverError::Failed(_) => "failed",
        }
    }
}

impl PluginError {
    /// What went wrong, for a frontend: the plugin, the operation and the
    /// kind of failure, without the driver's or the tool's own words (a
    /// tool's standard error, a trap's backtrace), which stay in the log.
    pub fn summary(&self) -> String {
        match self {
            PluginError::Driver { plugin, op, error } => {
                format!("{plugin}.{op} failed: {}", error.kind())
            }
            PluginError::Trapped { plugin, op, .. } => format!("{plugin}.{op} crashed"),
            PluginError::Load { plugin, .. } => format!("plugin {plugin} cannot be loaded"),
            PluginError::Setup { plugin, .. } => format!("plugin {plugin} cannot start a call"),
            PluginError::TimedOut { .. } | PluginError::LimitExceeded { .. } => self.to_string(),
        }
    }

    /// The driver's own error, when the driver answered with one.
    pub fn driver_error(&self) -> Option<&DriverError> {
        match self {
            PluginError::Driver { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the call failed for lack of time (the plugin's limit, or the
    /// driver reporting that its tool timed out).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            PluginError::TimedOut { .. }
                | PluginError::Driver {
                    error: DriverError::TimedOut(_),
                    ..
                }
        )
    }
}
