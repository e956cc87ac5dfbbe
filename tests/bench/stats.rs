//! Latency samples and their summary: nearest-rank percentiles.

use std::time::Duration;

/// The latencies of one operation, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one latency.
    pub fn push(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    /// How many latencies were taken.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The summary, `None` when nothing was measured.
    pub fn summary(&self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        Some(Summary {
            iterations: sorted.len(),
            min: sorted[0],
            median: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
            mean: total / sorted.len() as u32,
        })
    }
}

/// The nearest-rank `p`th percentile of `sorted` (not empty): the smallest
/// sample at least `p` percent of the samples are less than or equal to.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one operation's latencies come to.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// How many were measured.
    pub iterations: usize,
    /// The fastest.
    pub min: Duration,
    /// The median (nearest rank).
    pub median: Duration,
    /// The 90th percentile (nearest rank).
    pub p90: Duration,
    /// The 99th percentile (nearest rank; the slowest below 100 samples).
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
    /// The arithmetic mean.
    pub mean: Duration,
}

/// A duration in microseconds, with nanosecond precision.
pub fn micros(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1000.0
}

/// A duration for people: `812 µs` below a millisecond, `3.42 ms` above.
pub fn human(duration: Duration) -> String {
    let us = micros(duration);
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

/// `a / b` for durations, `None` when `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> Option<f64> {
    (!b.is_zero()).then(|| a.as_nanos() as f64 / b.as_nanos() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Samples {
        let mut samples = Samples::default();
        for &v in values {
            samples.push(Duration::from_millis(v));
        }
        samples
    }

    #[test]
    fn nearest_rank_percentiles() {
        let summary = ms(&(1..=100).rev().collect::<Vec<_>>()).summary().unwrap();
        assert_eq!(summary.median, Duration::from_millis(50));
        assert_eq!(summary.p90, Duration::from_millis(90));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));

        let five = ms(&[5, 1, 4, 2, 3]).summary().unwrap();
        assert_eq!(five.median, Duration::from_millis(3));
        assert_eq!(five.p90, Duration::from_millis(5));
        assert_eq!(five.p99, Duration::from_millis(5));
        assert_eq!(five.min, Duration::from_millis(1));

        assert!(Samples::default().summary().is_none());
    }

    #[test]
    fn durations_print_in_the_right_unit() {
        assert_eq!(human(Duration::from_micros(812)), "812 µs");
        assert_eq!(human(Duration::from_micros(3420)), "3.42 ms");
        assert_eq!(human(Duration::from_millis(42)), "42.0 ms");
    }
}
