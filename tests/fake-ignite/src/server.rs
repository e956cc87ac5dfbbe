//! The process playing a running VM: the fake re-executes itself as
//! `ignite __serve …`, detached in its own session with its standard streams
//! on /dev/null, and serves HTTP on the VM's address until it is killed or
//! its VM directory (or the whole state directory) disappears.
//!
//! **FAKE:** while a file `paused` exists in the VM's directory, the server
//! closes its listening socket (connections are refused, as when a dev
//! server inside the VM is down or restarting) and listens again once the
//! file is gone; the VM itself keeps running as far as `ignite` is
//! concerned. Tests use it to play a slow or stalled dev server.

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{fs, io, thread};

use crate::http::{self, Site};
use crate::sys;

/// The hidden subcommand that runs a VM's server.
pub const SERVE_COMMAND: &str = "__serve";

/// How often the server checks that its VM still exists.
const WATCH_INTERVAL: Duration = Duration::from_millis(300);

/// Binds `ip:port` and starts a detached server process for the VM whose
/// state directory is `vm_dir`; returns its PID.
pub fn spawn(
    state_dir: &Path,
    vm_dir: &Path,
    ip: Ipv4Addr,
    port: u16,
    site: &Site,
) -> Result<u32, String> {
    let listener =
        TcpListener::bind((ip, port)).map_err(|e| format!("listen tcp {ip}:{port}: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let child = Command::new(exe)
        .arg(SERVE_COMMAND)
        .arg(state_dir)
        .arg(vm_dir)
        .arg(&site.root)
        .arg(&site.serve_dir)
        .arg(&site.vm_name)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start VM server: {e}"))?;
    // The child is not waited for: it outlives this invocation by design and
    // is reaped by init once it exits.
    Ok(child.id())
}

/// Entry point of `ignite __serve <state> <vm-dir> <root> <serve-dir> <name>`;
/// the listening socket arrives as standard input. Returns the exit code.
pub fn serve_main(args: &[String]) -> i32 {
    let [state_dir, vm_dir, root, serve_dir, name] = args else {
        return 2;
    };
    let _ = sys::new_session();
    let listener = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => TcpListener::from(fd),
        Err(_) => return 1,
    };
    let _ = sys::stdin_to_dev_null();
    if listener.set_nonblocking(true).is_err() {
        return 1;
    }
    let site = Arc::new(Site {
        root: PathBuf::from(root),
        serve_dir: serve_dir.clone(),
        vm_name: name.clone(),
    });
    let (state_dir, vm_dir) = (PathBuf::from(state_dir), PathBuf::from(vm_dir));
    let Ok(address) = listener.local_addr() else {
        return 1;
    };
    let mut listener = Some(listener);
    let mut last_check = Instant::now();
    loop {
        match listener.as_ref().map(TcpListener::accept) {
            Some(Ok((stream, _))) => {
                let site = Arc::clone(&site);
                thread::spawn(move || http::handle(stream, &site));
            }
            Some(Err(_)) | None => thread::sleep(Duration::from_millis(20)),
        }
        let paused = vm_dir.join("paused").exists();
        if paused && listener.is_some() {
            // Closed: connections are refused until the file goes.
            listener = None;
        } else if !paused && listener.is_none() {
            listener = TcpListener::bind(address)
                .ok()
                .filter(|l| l.set_nonblocking(true).is_ok());
        }
        if last_check.elapsed() >= WATCH_INTERVAL {
            if !vm_dir.is_dir() || !state_dir.is_dir() {
                return 0;
            }
            last_check = Instant::now();
        }
    }
}

/// Whether `pid` is a live server process for `vm_dir` (not another process
/// that reused the PID, not a zombie).
pub fn is_alive(pid: u32, vm_dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let vm_dir = vm_dir.as_os_str().as_encoded_bytes();
    let ours = args.get(1) == Some(&SERVE_COMMAND.as_bytes()) && args.get(3) == Some(&vm_dir);
    let zombie = fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    ours && !zombie
}

/// Stops the server `pid` of `vm_dir`: SIGTERM, then SIGKILL if it is still
/// alive after a second. Does nothing if `pid` is not that server.
pub fn stop(pid: u32, vm_dir: &Path) {
    if !is_alive(pid, vm_dir) {
        return;
    }
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        if sys::send_signal(pid, signal).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if !is_alive(pid, vm_dir) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}
