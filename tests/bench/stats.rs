//! Latencies and what they come to: an HDR histogram per row, read as
//! percentiles.
//!
//! A row at concurrency 256 for five seconds records hundreds of thousands
//! of latencies; an HDR histogram keeps them in a few kilobytes per worker,
//! records each in constant time (so the measuring costs the client little
//! CPU) and answers any percentile to three significant digits.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest latency recorded exactly; longer ones count as this.
const MAX_NANOS: u64 = 100_000_000_000;

/// Latencies in nanoseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(
            Histogram::new_with_bounds(1, MAX_NANOS, 3)
                .expect("1 ns to 100 s at 3 significant digits is a valid histogram"),
        )
    }
}

impl Latencies {
    /// Adds one latency.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(MAX_NANOS);
        self.0.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The summary, `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        let at = |q: f64| Duration::from_nanos(self.0.value_at_quantile(q));
        Some(Summary {
            count: self.0.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_nanos(self.0.max()),
            mean: Duration::from_nanos(self.0.mean() as u64),
        })
    }
}

/// What a row's latencies come to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many were recorded.
    pub count: u64,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The 99.9th percentile.
    pub p999: Duration,
    /// The slowest.
    pub max: Duration,
    /// The arithmetic mean.
    pub mean: Duration,
}

/// A duration in microseconds.
pub fn micros(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1000.0
}

/// A duration for people: `81 µs` below a millisecond, `3.42 ms` up to ten,
/// `42.0 ms` up to a second, `1.25 s` above.
pub fn human(duration: Duration) -> String {
    let us = micros(duration);
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// A rate for people: `812/s`, `12.3k/s`.
pub fn human_rate(per_second: f64) -> String {
    if per_second < 10_000.0 {
        format!("{per_second:.0}/s")
    } else {
        format!("{:.1}k/s", per_second / 1000.0)
    }
}

/// A size in MiB for people.
pub fn human_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_every_recorded_latency() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        for ms in 1..=500 {
            a.record(Duration::from_millis(ms));
        }
        for ms in 501..=1000 {
            b.record(Duration::from_millis(ms));
        }
        a.merge(&b);
        let summary = a.summary().unwrap();
        assert_eq!(summary.count, 1000);
        // Three significant digits: within 0.1 % of the exact value.
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1000.0 - ms).abs() <= ms / 1000.0;
        assert!(near(summary.p50, 500.0), "{summary:?}");
        assert!(near(summary.p99, 990.0), "{summary:?}");
        assert!(near(summary.p999, 999.0), "{summary:?}");
        assert!(near(summary.max, 1000.0), "{summary:?}");
        assert!(Latencies::default().summary().is_none());
    }

    #[test]
    fn a_latency_past_the_bound_counts_as_the_bound() {
        let mut latencies = Latencies::default();
        latencies.record(Duration::from_secs(1000));
        latencies.record(Duration::ZERO);
        let summary = latencies.summary().unwrap();
        assert_eq!(summary.count, 2);
        assert!(summary.max >= Duration::from_secs(99));
    }

    #[test]
    fn quantities_print_in_the_right_unit() {
        assert_eq!(human(Duration::from_micros(812)), "812 µs");
        assert_eq!(human(Duration::from_micros(3420)), "3.42 ms");
        assert_eq!(human(Duration::from_millis(42)), "42.0 ms");
        assert_eq!(human(Duration::from_millis(1250)), "1.25 s");
        assert_eq!(human_rate(812.4), "812/s");
        assert_eq!(human_rate(12_345.0), "12.3k/s");
        assert_eq!(human_mib(50 * 1024 * 1024), "50.0 MiB");
    }
}
