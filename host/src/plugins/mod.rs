//! The plugin runtime: sandboxed WebAssembly components that drive the VM
//! manager and the proxy, behind the WIT contract in `wit/`.
//!
//! - [`runtime`] — the engine, compilation, per-call stores.
//! - [`cache`] — the compiled-plugin cache, sealed with a key of its own.
//! - [`drivers`] — the [`VmDriver`] and [`ProxyDriver`] handles.
//! - [`call_state`] — what a call's store holds, and the host imports.
//! - [`exec`] — the `process` capability and its allowlist.
//! - [`arg_policy`] — which arguments a plugin may append to an exec grant.
//! - [`http`] — the `http` capability and its origin grants.
//! - [`limits`] — the per-call bounds: memory, tables, instances, handles.
//! - [`symlinks`] — symlink creation in granted directories, refused by default.
//! - [`error`] — [`PluginError`] and the mapping of the WIT error variant.

pub mod arg_policy;
pub mod bindings;
pub mod cache;
pub mod call_state;
pub mod drivers;
pub mod error;
pub mod exec;
pub mod http;
pub mod limits;
pub mod runtime;
pub mod symlinks;

pub use bindings::types::{RouteInfo, RouteSpec, VmInfo, VmSpec, VmState};
pub use drivers::{ProxyDriver, VmDriver};
pub use error::{DriverError, PluginError};
pub use limits::SandboxLimit;
pub use runtime::{PluginRuntime, PoolSize};
