//! The operator's side of the `vessel` command: subcommands that talk to a
//! running host's API (`vessel sessions ...`, `vessel status`).
//!
//! - [`target`] — which host to ask, and with which token.
//! - [`client`] — the HTTP calls and their errors.
//! - [`table`] — sessions as an aligned table for people.
//! - [`commands`] — each subcommand: ask, then print a table or JSON.

pub mod client;
pub mod commands;
pub mod table;
pub mod target;

pub use client::{ApiClient, ClientError};
pub use target::{TargetError, Token};
