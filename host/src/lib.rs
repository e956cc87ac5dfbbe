//! Vessel: an orchestrator for per-user development microVMs.
//!
//! A frontend asks for a user's workspace; Vessel returns the URL of that
//! user's VM, booting one (through a VM driver plugin), copying the project
//! in and routing a proxy to it (through a proxy driver plugin) when none
//! runs. Sessions are stored in Redis or an embedded database, kept alive by
//! heartbeats, and stopped by the Reaper when abandoned.
//!
//! - [`api`] — the HTTP API.
//! - [`auth`] — who is calling: tokens and what they may do.
//! - [`session`] — the session manager, the brain.
//! - [`store`] — where sessions are kept (Redis or embedded).
//! - [`reaper`] — the background task stopping abandoned sessions.
//! - [`reconcile`] — the background task making drivers and records agree.
//! - [`metrics`] — counters served at `/metrics`.
//! - [`plugins`] — the WebAssembly plugin runtime and the driver handles.
//! - [`config`] — the configuration and its defaults.
//! - [`ids`], [`names`] — validated user ids and the names derived from them.
//! - [`app`] — assembling and serving a host.

// Every public item is documented (the style guide; CI denies warnings).
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod auth;
pub mod background;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ids;
pub mod metrics;
pub mod names;
pub mod paths;
pub mod plugins;
pub mod reaper;
pub mod reconcile;
pub mod redact;
pub mod session;
pub mod store;
