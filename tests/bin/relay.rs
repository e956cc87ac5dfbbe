//! `vessel-test-relay`: a stand-in for the way `sudo` runs a program, for
//! the exec time-limit tests. It runs `PROGRAM ARGS...` in a session of its
//! own (as sudo does with `use_pty`), as user `nobody` when started as root
//! (so the program is another user's), relays `SIGTERM`, `SIGINT` and
//! `SIGHUP` to it as sudo does, and, like anything, cannot pass `SIGKILL`
//! on: killing the relay alone leaves the program running. It writes the
//! program's pid to the file named by `$RELAY_PID_FILE` and exits with the
//! program's status.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// The program's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn relay(signal: libc::c_int) {
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(child, signal);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: vessel-test-relay PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: setsid is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        command.uid(65534).gid(65534);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("vessel-test-relay: {error}");
            std::process::exit(127);
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only calls kill, which is async-signal-safe.
        unsafe {
            libc::signal(signal, relay as *const () as libc::sighandler_t);
        }
    }
    if let Ok(path) = std::env::var("RELAY_PID_FILE") {
        let _ = std::fs::write(path, child.id().to_string());
    }
    let status = child.wait().map(|s| s.code().unwrap_or(1)).unwrap_or(1);
    std::process::exit(status);
}
