//! Sessions: the [`SessionManager`] that starts, stops and tracks them.
//!
//! - [`manager`] — start, stop, heartbeat, status, and the Reaper's stop.
//! - [`project`] — validation of project paths.
//! - [`listing`] — operators' paged listing of every session.
//! - [`error`] — [`SessionError`].

pub mod error;
pub mod listing;
pub mod liveness;
pub mod manager;
pub mod project;
pub mod staging;

pub use error::SessionError;
pub use manager::{SessionManager, SessionSettings, Started, Stopped, default_host_id};
