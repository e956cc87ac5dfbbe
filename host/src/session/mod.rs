//! Sessions: the [`SessionManager`] that starts, stops and tracks them.
//!
//! - [`manager`] — start, stop, heartbeat, status, and the Reaper's stop.
//! - [`policy`] — idle timeouts and maximum ages, and when they end a session.
//! - [`project`] — validation of project paths.
//! - [`listing`] — operators' paged listing of every session.
//! - [`error`] — [`SessionError`].

pub mod error;
pub mod listing;
pub mod liveness;
pub mod manager;
pub mod policy;
pub mod project;
pub mod staging;

pub use error::SessionError;
pub use manager::{SessionManager, SessionSettings, Started, Stopped, default_host_id};
pub use policy::{Deadline, DecidedBy, PolicyLimits, Requested};
