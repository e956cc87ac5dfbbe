//! Counters of what a host did, served at `GET /metrics` in the Prometheus
//! text format, so operators can alert on rollbacks, take-overs and
//! reconciliation repairs without reading logs.
//!
//! Counters are per host and start at zero when the host starts; sum them
//! over hosts for a fleet-wide view.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Every counter a host keeps, with its help text, in the order served.
pub const COUNTERS: &[(&str, &str)] = &[
    (
        "vessel_api_responses_total",
        "API answers, by endpoint and HTTP status (503: the store is unreachable; 502: a driver failed).",
    ),
    (
        "vessel_starts_total",
        "Starts answered, by result: hit (the session ran), created, failed, at_capacity (session.max_sessions reached), rate_limited.",
    ),
    (
        "vessel_stops_total",
        "Sessions stopped, by who stopped them: user, reaper_idle, reaper_stuck.",
    ),
    (
        "vessel_rollbacks_total",
        "Failed starts undone (the VM and route they may have made removed).",
    ),
    (
        "vessel_takeovers_total",
        "Starts or stops of a dead host taken over after their lease expired.",
    ),
    (
        "vessel_reconcile_passes_total",
        "Reconciliation passes, by result: ok, failed (a driver or the store failed), skipped (another host held the lock).",
    ),
    (
        "vessel_corrupt_records_total",
        "Session records refused as corrupt (unparsable, or naming another user or another user's VM) and left for an operator, by who met them: api, reaper, reconciler. A record is met again on every sweep until it is fixed.",
    ),
    (
        "vessel_reconcile_actions_total",
        "Repairs made by reconciliation, by action: remove_orphan_vm, remove_orphan_route, clean_lost_session, restore_route, take_over.",
    ),
];

/// A host's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    /// Counters all at zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Adds one to counter `name` with `labels` (Prometheus label syntax
    /// without braces, e.g. `result="hit"`; empty for none). `name` must be
    /// one of [`COUNTERS`].
    pub fn incr(&self, name: &'static str, labels: &str) {
        self.add(name, labels, 1);
    }

    /// Adds `n` to counter `name` with `labels`.
    pub fn add(&self, name: &'static str, labels: &str, n: u64) {
        debug_assert!(COUNTERS.iter().any(|(known, _)| *known == name), "{name}");
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        *values.entry((name, labels.to_string())).or_insert(0) += n;
    }

    /// Counts a cold start's result.
    pub fn count_start(&self, succeeded: bool) {
        let labels = if succeeded {
            r#"result="created""#
        } else {
            r#"result="failed""#
        };
        self.incr("vessel_starts_total", labels);
    }

    /// The current value of counter `name` with `labels`.
    pub fn get(&self, name: &str, labels: &str) -> u64 {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values
            .iter()
            .find(|((n, l), _)| *n == name && l == labels)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    /// Every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let mut any = false;
            for ((_, labels), value) in values.iter().filter(|((n, _), _)| n == name) {
                any = true;
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
            if !any {
                let _ = writeln!(out, "{name} 0");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_label_and_render_in_prometheus_format() {
        let metrics = Metrics::new();
        metrics.incr("vessel_starts_total", r#"result="hit""#);
        metrics.incr("vessel_starts_total", r#"result="hit""#);
        metrics.count_start(false);
        metrics.add(
            "vessel_reconcile_actions_total",
            r#"action="restore_route""#,
            3,
        );
        assert_eq!(metrics.get("vessel_starts_total", r#"result="hit""#), 2);
        let text = metrics.render();
        assert!(
            text.contains("# TYPE vessel_starts_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("vessel_starts_total{result=\"hit\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("vessel_starts_total{result=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("vessel_reconcile_actions_total{action=\"restore_route\"} 3\n"));
        assert!(text.contains("vessel_takeovers_total 0\n"), "{text}");
    }
}
