//! The resident memory of a process, from Linux's `/proc/{pid}/status`.
//!
//! `VmHWM` is the peak resident set since the process started, or since
//! its peak was last reset by writing `5` to `/proc/{pid}/clear_refs`
//! (Linux 4.0+), which is how each row gets its own peak.

/// The peak resident memory of process `pid` in bytes (`VmHWM`), if it can
/// be read.
pub fn peak(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// The peak resident memory of this process in bytes.
pub fn own_peak() -> Option<u64> {
    status_field("/proc/self/status", "VmHWM:")
}

/// Resets the peak of process `pid` to its current resident memory, so
/// that [`peak`] tells the peak from now on. Returns whether it could.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Reads a `Name:  1234 kB` line of a status file, in bytes.
fn status_field(path: &str, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    parse_kib(&status, name)
}

fn parse_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_bytes() {
        let status = "Name:\tvessel\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(50 * 1024 * 1024));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_a_peak() {
        assert!(own_peak().is_some_and(|bytes| bytes > 0));
        let pid = std::process::id();
        assert!(peak(pid).is_some_and(|bytes| bytes > 0));
    }
}
