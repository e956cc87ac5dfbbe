//! Errors of session operations, as the API maps them to status codes.

use crate::plugins::PluginError;
use crate::store::StoreError;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The request names something unusable (e.g. a project path outside
    /// the allowed roots). Nothing was changed.
    #[error("{0}")]
    InvalidInput(String),
    /// The policy a start asked for (`idleTimeout`, `maxAge`) is over the
    /// operator's maximum; nothing was changed.
    #[error("{0}")]
    InvalidPolicy(String),
    /// The project is over `session.project_max_bytes` or
    /// `project_max_entries`; nothing was kept.
    #[error("{0}")]
    ProjectTooLarge(String),
    /// The user has no session (or it is being stopped).
    #[error("{0}")]
    NoSession(String),
    /// The session is in a state that does not allow the operation now.
    #[error("{0}")]
    Conflict(String),
    /// A driver failed; what the operation made was rolled back.
    #[error("{0}")]
    Driver(#[from] PluginError),
    /// The operation ran past its deadline; what it made was rolled back.
    #[error("{0}")]
    Timeout(String),
    /// The fleet holds `session.max_sessions` sessions already; nothing
    /// was created.
    #[error("{0}")]
    AtCapacity(String),
    /// The starter (an operator token) holds its maximum of sessions;
    /// nothing was created.
    #[error("{0}")]
    StarterAtCapacity(String),
    /// The session store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}
