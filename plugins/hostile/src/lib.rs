//! `hostile`: a VM plugin that misbehaves on purpose, to test the sandbox.
//!
//! Every export except `inspect` fails with `invalid-input`. `inspect(probe)`
//! runs the probe its argument names and reports the result in the returned
//! VM's `ip` field (or as an error):
//!
//! - `loop`: spins forever (the call limit must stop it);
//! - `alloc`: allocates until memory runs out (the memory limit must stop it);
//! - `handles:<path>`: opens the file or directory at `path` again and
//!   again, holding every handle (the handle limit must stop it);
//! - `listings:<path>`: starts listing the directory at `path` again and
//!   again, holding every listing (a descriptor and a directory stream each);
//! - `trap`: panics;
//! - `exec:<program>:<arg>...`: runs `<program>` through `process.exec`
//!   with the `timeout_ms` setting, returning stdout, or the error;
//! - `read:<path>`: reads a file, returning its contents or the I/O error;
//! - `write:<path>`: writes a file, returning `written` or the I/O error;
//! - `connect:<ip:port>`: opens a TCP connection, returning `connected` or
//!   the error;
//! - `symlink:<target>:<link>`: creates a symlink, returning `linked` or
//!   the error (a relative target that climbs out of a granted directory
//!   is what a privileged reader of that directory would follow);
//! - `http:<METHOD>:<url>`: sends a request through the `http` interface,
//!   returning the status, or the error;
//! - `env`: returns the environment variables it sees, `;`-separated;
//! - `settings`: returns its settings as `k=v;...`;
//! - `none`: answers `none` at once, touching nothing: the cost of a call
//!   through the runtime alone (the plugin-call benchmark uses it).
//!
//! The probes that open handles give up after [`MAX_PROBE_HANDLES`] and
//! report how many they hold, so that a host without a handle limit fails
//! its test instead of running out of file descriptors.
//!
//! Some attacks cannot be written in Rust: a Rust guest has one linear
//! memory, cannot grow a table, and a Rust component has a fixed handful of
//! instances. The end-to-end tests build components that do those things
//! (several memories, a growing table, many instances, memories and tables)
//! from the same contract; see `tests/support/hostile_components.rs`.
//!
//! The VM id of a session of user `{probe}` (`vessel-{probe}-0`, for a
//! lower-case probe name) runs that probe too, so a start's liveness check
//! can trigger it.

use std::io::Write;

wit_bindgen::generate!({
    world: "vm-plugin",
    path: "../../wit",
});

use exports::vessel::infra::vm_driver::Guest;
use vessel::infra::config;
use vessel::infra::http::{Request, send};
use vessel::infra::process::{ExecRequest, exec};
use vessel::infra::types::{DriverError, VmInfo, VmSpec, VmState};

struct Hostile;

/// The most handles the handle probes try to hold.
const MAX_PROBE_HANDLES: usize = 10_000;

/// Opens handles with `open` until it fails or [`MAX_PROBE_HANDLES`] are
/// held; reports how many it held.
fn hoard<T>(
    what: &str,
    mut open: impl FnMut() -> std::io::Result<T>,
) -> Result<Option<VmInfo>, DriverError> {
    let mut held = Vec::new();
    while held.len() < MAX_PROBE_HANDLES {
        match open() {
            Ok(handle) => held.push(handle),
            Err(e) => {
                return Err(DriverError::Denied(format!(
                    "{what}: refused after {} handles: {e}",
                    held.len()
                )));
            }
        }
    }
    Ok(answer(format!("held {} {what} handles", held.len())))
}

fn answer(text: String) -> Option<VmInfo> {
    Some(VmInfo {
        vm_id: "probe".into(),
        state: VmState::Unknown,
        ip: Some(text),
        ports: Vec::new(),
    })
}

fn refuse<T>() -> Result<T, DriverError> {
    Err(DriverError::InvalidInput(
        "hostile: only inspect probes are implemented".into(),
    ))
}

impl Guest for Hostile {
    fn create(_spec: VmSpec) -> Result<VmInfo, DriverError> {
        refuse()
    }

    fn copy_to(_vm_id: String, _host_path: String, _vm_path: String) -> Result<(), DriverError> {
        refuse()
    }

    fn remove(_vm_id: String) -> Result<(), DriverError> {
        refuse()
    }

    fn list_vms() -> Result<Vec<VmInfo>, DriverError> {
        refuse()
    }

    fn inspect(probe: String) -> Result<Option<VmInfo>, DriverError> {
        let probe = probe
            .strip_prefix("vessel-")
            .and_then(|id| id.strip_suffix("-0"))
            .map_or(probe.clone(), str::to_string);
        let (name, rest) = probe.split_once(':').unwrap_or((probe.as_str(), ""));
        match name {
            "none" => Ok(None),
            "loop" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile: trapping on purpose"),
            "handles" => hoard("file", || std::fs::File::open(rest)),
            "listings" => hoard("listing", || {
                let mut listing = std::fs::read_dir(rest)?;
                // The first entry makes sure the directory stream is open.
                listing.next().transpose()?;
                Ok(listing)
            }),
            "exec" => {
                let mut parts = rest.split(':').map(str::to_string);
                let program = parts.next().unwrap_or_default();
                let timeout_ms = config::get("timeout_ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let output = exec(&ExecRequest {
                    program,
                    args: parts.collect(),
                    timeout_ms,
                    stdin: None,
                })?;
                Ok(answer(String::from_utf8_lossy(&output.stdout).into_owned()))
            }
            "read" => match std::fs::read_to_string(rest) {
                Ok(text) => Ok(answer(text)),
                Err(e) => Err(DriverError::Denied(format!("read {rest}: {e}"))),
            },
            "write" => match std::fs::File::create(rest).and_then(|mut f| f.write_all(b"x")) {
                Ok(()) => Ok(answer("written".into())),
                Err(e) => Err(DriverError::Denied(format!("write {rest}: {e}"))),
            },
            "connect" => match std::net::TcpStream::connect(rest) {
                Ok(_) => Ok(answer("connected".into())),
                Err(e) => Err(DriverError::Denied(format!("connect {rest}: {e}"))),
            },
            "symlink" => {
                let (target, link) = rest.split_once(':').unwrap_or((rest, ""));
                // Through WASI itself (std's symlink is not stable on WASI):
                // the link's path is relative to the granted directory.
                let preopens = wasip2::filesystem::preopens::get_directories();
                let Some((dir, name)) = preopens.iter().find_map(|(dir, guest)| {
                    let name = link.strip_prefix(guest.as_str())?.trim_start_matches('/');
                    Some((dir, name.to_string()))
                }) else {
                    return Err(DriverError::Denied(format!(
                        "{link} is in no granted directory"
                    )));
                };
                match dir.symlink_at(target, &name) {
                    Ok(()) => Ok(answer("linked".into())),
                    Err(e) => Err(DriverError::Denied(format!("symlink {link}: {e:?}"))),
                }
            }
            "http" => {
                let (method, url) = rest.split_once(':').unwrap_or((rest, ""));
                let response = send(&Request {
                    method: method.to_string(),
                    url: url.to_string(),
                    headers: Vec::new(),
                    body: Some(b"{}".to_vec()),
                    timeout_ms: 5_000,
                })?;
                Ok(answer(response.status.to_string()))
            }
            "env" => Ok(answer(
                std::env::vars()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            )),
            "settings" => Ok(answer(
                config::entries()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            )),
            _ => Err(DriverError::InvalidInput(format!("unknown probe {probe}"))),
        }
    }
}

export!(Hostile);
