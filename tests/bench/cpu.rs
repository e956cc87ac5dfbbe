//! The CPU a row cost, from Linux's `/proc`: the serving process's CPU time
//! per request, and the share of the machine's time the hypervisor took
//! (steal) while the row ran.
//!
//! Throughput on a shared virtual machine follows the neighbours: with a
//! third of the CPU stolen, every row of a run slows down, and two runs
//! minutes apart can differ by half. The steal column says which rows ran
//! on a quiet machine; the CPU column says whose work a row is (the host's
//! or Redis's) and what one more request costs, which is what a profile
//! starts from.

use std::time::{Duration, Instant};

/// The machine's CPU time, summed over its CPUs, from the `cpu` line of
/// `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineTimes {
    /// Every kind of time the kernel counts (guest time is already inside
    /// user and nice).
    pub total: u64,
    /// Time the hypervisor ran something else while this machine wanted
    /// the CPU.
    pub steal: u64,
}

/// One reading: the machine's times and, if asked for, one process's.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    machine: Option<MachineTimes>,
    process_ticks: Option<u64>,
}

/// What a row cost between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// The share of the machine's time stolen by the hypervisor, 0 to 1.
    pub steal: Option<f64>,
    /// The process's CPU time per second of the row: 1.0 is one core busy.
    pub process_cores: Option<f64>,
}

impl Usage {
    /// The process's CPU time per request at `throughput` requests per
    /// second, if both are known.
    pub fn per_request(&self, throughput: f64) -> Option<Duration> {
        let cores = self.process_cores?;
        (throughput > 0.0).then(|| Duration::from_secs_f64(cores / throughput))
    }
}

/// Clock ticks per second, as `/proc` counts them (`USER_HZ`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Reads the machine's times and those of process `pid`, now.
pub fn sample(pid: Option<u32>) -> Sample {
    Sample {
        at: Instant::now(),
        machine: std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_machine(&text)),
        process_ticks: pid.and_then(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|text| parse_process_ticks(&text))
        }),
    }
}

/// What passed between `before` and `after`.
pub fn usage(before: &Sample, after: &Sample) -> Usage {
    let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
    let steal = match (before.machine, after.machine) {
        (Some(b), Some(a)) if a.total > b.total => {
            Some(a.steal.saturating_sub(b.steal) as f64 / (a.total - b.total) as f64)
        }
        _ => None,
    };
    let process_cores = match (before.process_ticks, after.process_ticks) {
        (Some(b), Some(a)) if seconds > 0.0 => {
            Some(a.saturating_sub(b) as f64 / ticks_per_second() / seconds)
        }
        _ => None,
    };
    Usage {
        steal,
        process_cores,
    }
}

/// Reads at the start of the measured part of a row (after `warmup`) and
/// at its end (`duration` later), and tells what passed in between: the
/// cost of the requests the row counts, not of its warm-up.
pub async fn watch(pid: Option<u32>, warmup: Duration, duration: Duration) -> Usage {
    tokio::time::sleep(warmup).await;
    let before = sample(pid);
    tokio::time::sleep(duration).await;
    usage(&before, &sample(pid))
}

/// The `cpu` line of `/proc/stat`: `cpu user nice system idle iowait irq
/// softirq steal guest guest_nice`. Guest time is already counted in user
/// and nice, so only the first eight fields are summed.
fn parse_machine(stat: &str) -> Option<MachineTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(MachineTimes {
        total: fields.iter().sum(),
        steal: fields.get(7).copied().unwrap_or(0),
    })
}

/// User plus system time from `/proc/{pid}/stat`. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses itself, so the
/// fields are counted from the last `)`: utime and stime are the 14th and
/// 15th fields, the 12th and 13th after it.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  4705 150 1120 16250 520 0 30 2000 0 0\n\
                        cpu0 2000 75 560 8000 260 0 15 1000 0 0\n\
                        intr 1234\n";

    #[test]
    fn the_machine_line_sums_eight_fields_and_reads_steal() {
        let times = parse_machine(STAT).expect("parsed");
        assert_eq!(times.steal, 2000);
        assert_eq!(times.total, 4705 + 150 + 1120 + 16250 + 520 + 30 + 2000);
        assert_eq!(parse_machine("intr 1\n"), None);
        assert_eq!(parse_machine("cpu  1 2 x 4\n"), None);
    }

    #[test]
    fn process_times_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis of its own.
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 9 0 100 53000000 9000 ...";
        assert_eq!(parse_process_ticks(stat), Some(325));
        assert_eq!(parse_process_ticks("4242 (short) S 1 2"), None);
        assert_eq!(parse_process_ticks("no parenthesis"), None);
    }

    #[test]
    fn usage_is_steal_share_and_cores() {
        let at = Instant::now();
        let before = Sample {
            at,
            machine: Some(MachineTimes {
                total: 1000,
                steal: 100,
            }),
            process_ticks: Some(50),
        };
        let after = Sample {
            at: at + Duration::from_secs(2),
            machine: Some(MachineTimes {
                total: 1400,
                steal: 200,
            }),
            process_ticks: Some(50 + 2 * ticks_per_second() as u64),
        };
        let used = usage(&before, &after);
        assert_eq!(used.steal, Some(0.25));
        let cores = used.process_cores.expect("cores");
        assert!((cores - 1.0).abs() < 1e-9, "{cores}");
        // One core busy for 10,000 requests a second: 100 us each.
        assert_eq!(used.per_request(10_000.0), Some(Duration::from_micros(100)));
        assert_eq!(used.per_request(0.0), None);
        // Readings that could not be made give no numbers, not zeros.
        let blind = Sample {
            at,
            machine: None,
            process_ticks: None,
        };
        assert_eq!(usage(&blind, &after), Usage::default());
    }

    #[test]
    fn this_process_is_charged_for_what_it_burns() {
        let pid = std::process::id();
        let before = sample(Some(pid));
        assert!(before.machine.is_some(), "/proc/stat is readable");
        let until = Instant::now() + Duration::from_millis(300);
        let mut spin = 0u64;
        while Instant::now() < until {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let used = usage(&before, &sample(Some(pid)));
        let cores = used.process_cores.expect("this process's times");
        // A busy loop for 300 ms: most of a core, whatever the neighbours
        // steal (the kernel charges ticks, 10 ms each).
        assert!(cores > 0.2, "{cores}");
        assert!(used.steal.is_some_and(|s| (0.0..=1.0).contains(&s)));
    }
}
