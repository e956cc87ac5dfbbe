//! The few operating-system calls std does not offer, wrapped in safe
//! functions: file locks, terminal detection, signals, sessions and the local
//! timezone offset, SIGPIPE. Every `unsafe` block of the crate lives here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Blocks until this process holds an exclusive `flock` on `file`; the lock is
/// released when the file is closed.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps
        // open for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether the file descriptor `fd` refers to a terminal.
pub fn is_terminal(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Sends `signal` to process `pid`; `signal` 0 only checks that it exists.
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal a process group",
        ));
    }
    // SAFETY: kill takes plain integers; a positive pid addresses exactly one process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches the calling process into a new session (no controlling terminal).
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid has no arguments and only changes this process's session.
    let rc = unsafe { libc::setsid() };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Restores the default action for SIGPIPE (Rust ignores it), so writing to
/// a closed pipe ends the process quietly, as it ends a Go program.
pub fn default_sigpipe() {
    // SAFETY: resetting a signal disposition to SIG_DFL installs no handler
    // code and is valid at any time.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Points standard input at `/dev/null`.
pub fn stdin_to_dev_null() -> io::Result<()> {
    let null = File::open("/dev/null")?;
    // SAFETY: both descriptors are valid for the duration of the call; dup2
    // atomically replaces descriptor 0.
    let rc = unsafe { libc::dup2(null.as_raw_fd(), 0) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The local timezone's offset from UTC, in seconds, at the Unix time `secs`.
pub fn local_utc_offset(secs: i64) -> i64 {
    let time: libc::time_t = secs;
    // SAFETY: `tm` is plain old data, so all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    let result = unsafe { libc::localtime_r(&time, &mut tm) };
    if result.is_null() { 0 } else { tm.tm_gmtoff }
}
