//! What a host measures, served at `GET /metrics` for Prometheus to scrape:
//! counters of what it did (starts, stops, rollbacks, take-overs,
//! reconciliation repairs), latency histograms of its API and its plugin
//! calls, and gauges of the sessions its Reaper last saw.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client:
//! typed metric families (a counter per label set, updated with atomics
//! behind a read lock), histograms, and both exposition formats. Every label
//! value is either a name fixed in this code (the label enums below, driver
//! functions, store operations) or a route template from the router, never
//! request data: user ids and raw paths cannot become series.
//!
//! Values are per host and start at zero when the host starts; sum counters
//! over hosts for a fleet-wide view. The session gauges are the exception:
//! every host's Reaper counts the whole store, so with several hosts take
//! their `max`, not their sum.

use std::fmt::Write;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::store::{SessionStatus, StoreError};

/// The `Content-Type` of the Prometheus text format (version 0.0.4).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of the OpenMetrics text format, served to scrapers
/// that ask for it (Prometheus does).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of requests no route matched (so arbitrary paths cannot each
/// make a series).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Bucket bounds of API request latency, in seconds: a status read answers
/// in well under a millisecond, a cold start takes seconds.
const REQUEST_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Bucket bounds of plugin call latency, in seconds: a mock answers in a
/// millisecond, a real VM boots in tens of seconds.
const PLUGIN_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

/// Bucket bounds of a Reaper sweep's duration, in seconds.
const SWEEP_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Defines a closed set of label values: an enum, its text, and its
/// encoding, so a label can only take the values listed.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_doc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order listed.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// How a start was answered (`vessel_starts_total{result}`).
    StartResult {
        /// The session ran already.
        Hit => "hit",
        /// A session was created.
        Created => "created",
        /// A cold start failed and was rolled back.
        Failed => "failed",
        /// The fleet or the token holds its maximum of sessions.
        AtCapacity => "at_capacity",
        /// Too many starts from one token or address.
        RateLimited => "rate_limited",
    }
}

label_values! {
    /// Who stopped a session (`vessel_stops_total{by}`).
    StoppedBy {
        /// The user, with `POST /stop`.
        User => "user",
        /// The Reaper, because the session was idle.
        ReaperIdle => "reaper_idle",
        /// The Reaper, because the session was stuck starting or stopping.
        ReaperStuck => "reaper_stuck",
        /// The Reaper, because the session was older than its maximum age.
        ReaperMaxAge => "reaper_max_age",
    }
}

label_values! {
    /// Why a Reaper in `dry_run` would have stopped a session
    /// (`vessel_reaper_would_stop_total{reason}`).
    WouldStop {
        /// No heartbeat for longer than its idle timeout.
        Idle => "idle",
        /// Older than its maximum age.
        MaxAge => "max_age",
        /// Stuck starting or stopping past its lease.
        Stuck => "stuck",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WouldStopLabels {
    reason: WouldStop,
}

label_values! {
    /// How a reconciliation pass ended (`vessel_reconcile_passes_total{result}`).
    PassResult {
        /// The pass ran to its end.
        Ok => "ok",
        /// A driver or the store failed.
        Failed => "failed",
        /// Another host held the reconciliation lock.
        Skipped => "skipped",
    }
}

label_values! {
    /// Who met a corrupt record (`vessel_corrupt_records_total{found_by}`).
    FoundBy {
        /// A request.
        Api => "api",
        /// The Reaper's sweep.
        Reaper => "reaper",
        /// A reconciliation pass.
        Reconciler => "reconciler",
    }
}

label_values! {
    /// A repair made by reconciliation (`vessel_reconcile_actions_total{action}`).
    ReconcileAction {
        /// A VM no record owns was removed.
        RemoveOrphanVm => "remove_orphan_vm",
        /// A route no record owns was removed.
        RemoveOrphanRoute => "remove_orphan_route",
        /// An active session whose VM is gone was cleaned up.
        CleanLostSession => "clean_lost_session",
        /// A live session's missing route was added back.
        RestoreRoute => "restore_route",
        /// A start or stop whose host died was taken over.
        TakeOver => "take_over",
    }
}

label_values! {
    /// How a store request failed (`vessel_store_errors_total{error}`).
    StoreErrorKind {
        /// The store could not be reached in time.
        Unavailable => "unavailable",
        /// A record the store holds is not a valid one.
        Corrupt => "corrupt",
        /// The store refused or failed the request.
        Backend => "backend",
    }
}

impl StoreErrorKind {
    /// The kind of `error`.
    pub fn of(error: &StoreError) -> StoreErrorKind {
        match error {
            StoreError::Unavailable(_) => StoreErrorKind::Unavailable,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::Backend(_) => StoreErrorKind::Backend,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResponseLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StartLabels {
    result: StartResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StopLabels {
    by: StoppedBy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PassLabels {
    result: PassResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CorruptLabels {
    found_by: FoundBy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    action: ReconcileAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PluginCallLabels {
    plugin: &'static str,
    function: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreErrorLabels {
    operation: &'static str,
    error: StoreErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Which text format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4, for humans and older scrapers.
    PrometheusText,
    /// OpenMetrics 1.0 text, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for: OpenMetrics if it
    /// names it, the Prometheus text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => PROMETHEUS_TEXT,
            Format::OpenMetrics => OPENMETRICS_TEXT,
        }
    }
}

/// A host's metrics: the registry `/metrics` encodes, and a handle on each
/// family for the code that updates it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api_responses: Family<ResponseLabels, Counter>,
    request_duration: HistogramFamily<RequestLabels>,
    starts: Family<StartLabels, Counter>,
    stops: Family<StopLabels, Counter>,
    would_stop: Family<WouldStopLabels, Counter>,
    rollbacks: Counter,
    takeovers: Counter,
    reconcile_passes: Family<PassLabels, Counter>,
    corrupt_records: Family<CorruptLabels, Counter>,
    reconcile_actions: Family<ActionLabels, Counter>,
    plugin_call_duration: HistogramFamily<PluginCallLabels>,
    plugin_call_errors: Family<PluginCallLabels, Counter>,
    store_errors: Family<StoreErrorLabels, Counter>,
    sessions: Family<SessionLabels, Gauge>,
    sweep_duration: Histogram,
    last_sweep: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, counters at zero: each counter whose labels
    /// take a closed set of values (the label enums here) is served at 0
    /// for every value from the start, so that a rate or an increase over
    /// it reads 0 rather than no data, and its first event is counted as an
    /// increase instead of making its series appear at 1. The counters
    /// labelled by plugin function and store operation get their zeros
    /// when the drivers and the store are wired to these metrics
    /// ([`Metrics::expect_plugin_functions`],
    /// [`Metrics::expect_store_operations`]).
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            api_responses: Family::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS)),
            starts: Family::default(),
            stops: Family::default(),
            would_stop: Family::default(),
            rollbacks: Counter::default(),
            takeovers: Counter::default(),
            reconcile_passes: Family::default(),
            corrupt_records: Family::default(),
            reconcile_actions: Family::default(),
            plugin_call_duration: Family::new_with_constructor(|| Histogram::new(PLUGIN_BUCKETS)),
            plugin_call_errors: Family::default(),
            store_errors: Family::default(),
            sessions: Family::default(),
            sweep_duration: Histogram::new(SWEEP_BUCKETS),
            last_sweep: Gauge::default(),
        };
        metrics.registered().zeroed()
    }

    /// Creates the series of every closed label set at zero.
    fn zeroed(self) -> Metrics {
        for &result in StartResult::ALL {
            drop(self.starts.get_or_create(&StartLabels { result }));
        }
        for &by in StoppedBy::ALL {
            drop(self.stops.get_or_create(&StopLabels { by }));
        }
        for &reason in WouldStop::ALL {
            drop(self.would_stop.get_or_create(&WouldStopLabels { reason }));
        }
        for &result in PassResult::ALL {
            drop(self.reconcile_passes.get_or_create(&PassLabels { result }));
        }
        for &found_by in FoundBy::ALL {
            drop(
                self.corrupt_records
                    .get_or_create(&CorruptLabels { found_by }),
            );
        }
        for &action in ReconcileAction::ALL {
            drop(
                self.reconcile_actions
                    .get_or_create(&ActionLabels { action }),
            );
        }
        self
    }

    /// Serves `vessel_plugin_call_errors_total` at 0 for each of
    /// `functions` of the plugin in slot `plugin`, before any call fails.
    pub fn expect_plugin_functions(&self, plugin: &'static str, functions: &[&'static str]) {
        for &function in functions {
            drop(
                self.plugin_call_errors
                    .get_or_create(&PluginCallLabels { plugin, function }),
            );
        }
    }

    /// Serves `vessel_store_errors_total` at 0 for each of `operations`
    /// and every kind of error, before any request fails.
    pub fn expect_store_operations(&self, operations: &[&'static str]) {
        for &operation in operations {
            for &error in StoreErrorKind::ALL {
                drop(
                    self.store_errors
                        .get_or_create(&StoreErrorLabels { operation, error }),
                );
            }
        }
    }

    /// Registers every family, in the order `/metrics` serves them. The
    /// client appends `_total` to counters and the unit to names with one,
    /// so the served names are those in the comments.
    fn registered(mut self) -> Metrics {
        let registry = &mut self.registry;
        // vessel_api_responses_total
        registry.register(
            "vessel_api_responses",
            "API answers, by endpoint and HTTP status (503: the store is unreachable; 502: a driver failed)",
            self.api_responses.clone(),
        );
        // vessel_http_request_duration_seconds
        registry.register_with_unit(
            "vessel_http_request_duration",
            "API request latency, by route template (unmatched for paths no route serves) and HTTP status",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        // vessel_starts_total
        registry.register(
            "vessel_starts",
            "Starts answered, by result: hit (the session ran), created, failed, at_capacity (session.max_sessions reached), rate_limited",
            self.starts.clone(),
        );
        // vessel_stops_total
        registry.register(
            "vessel_stops",
            "Sessions stopped, by who stopped them: user, reaper_idle, reaper_stuck, reaper_max_age",
            self.stops.clone(),
        );
        // vessel_reaper_would_stop_total
        registry.register(
            "vessel_reaper_would_stop",
            "Sessions a Reaper in dry_run would have stopped, by reason: idle, max_age, stuck",
            self.would_stop.clone(),
        );
        // vessel_rollbacks_total
        registry.register(
            "vessel_rollbacks",
            "Failed starts undone (the VM and route they may have made removed)",
            self.rollbacks.clone(),
        );
        // vessel_takeovers_total
        registry.register(
            "vessel_takeovers",
            "Starts or stops of a dead host taken over after their lease expired",
            self.takeovers.clone(),
        );
        // vessel_reconcile_passes_total
        registry.register(
            "vessel_reconcile_passes",
            "Reconciliation passes, by result: ok, failed (a driver or the store failed), skipped (another host held the lock)",
            self.reconcile_passes.clone(),
        );
        // vessel_corrupt_records_total
        registry.register(
            "vessel_corrupt_records",
            "Session records refused as corrupt (unparsable, or naming another user or another user's VM) and left for an operator, by who met them: api, reaper, reconciler. A record is met again on every sweep until it is fixed",
            self.corrupt_records.clone(),
        );
        // vessel_reconcile_actions_total
        registry.register(
            "vessel_reconcile_actions",
            "Repairs made by reconciliation, by action: remove_orphan_vm, remove_orphan_route, clean_lost_session, restore_route, take_over",
            self.reconcile_actions.clone(),
        );
        // vessel_plugin_call_duration_seconds
        registry.register_with_unit(
            "vessel_plugin_call_duration",
            "Plugin call latency, from instantiation to answer (not the wait for a turn), by plugin slot (vm, proxy) and WIT function",
            Unit::Seconds,
            self.plugin_call_duration.clone(),
        );
        // vessel_plugin_call_errors_total
        registry.register(
            "vessel_plugin_call_errors",
            "Plugin calls that failed (a driver error, a trap, a limit or the call timeout), by plugin slot and WIT function",
            self.plugin_call_errors.clone(),
        );
        // vessel_store_errors_total
        registry.register(
            "vessel_store_errors",
            "Session store requests that failed, by operation and error: unavailable, corrupt, backend",
            self.store_errors.clone(),
        );
        // vessel_sessions
        registry.register(
            "vessel_sessions",
            "Sessions in the store by status, as the last complete Reaper sweep counted them (the whole fleet's: with several hosts take the max, not the sum)",
            self.sessions.clone(),
        );
        // vessel_reaper_sweep_duration_seconds
        registry.register_with_unit(
            "vessel_reaper_sweep_duration",
            "How long complete Reaper sweeps took",
            Unit::Seconds,
            self.sweep_duration.clone(),
        );
        // vessel_reaper_last_sweep_timestamp_seconds
        registry.register(
            "vessel_reaper_last_sweep_timestamp_seconds",
            "When the last complete Reaper sweep ended, in seconds since the Unix epoch",
            self.last_sweep.clone(),
        );
        // vessel_build_info
        registry.register(
            "vessel_build",
            "The version of the running host",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        self
    }

    /// Counts an API answer by endpoint and status.
    pub fn count_response(&self, endpoint: &'static str, status: u16) {
        self.api_responses
            .get_or_create(&ResponseLabels { endpoint, status })
            .inc();
    }

    /// Records how long a request took. `route` must be a route template
    /// from the router (or [`UNMATCHED_ROUTE`]), never a request's path.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            route: route.to_string(),
            status,
        };
        self.request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a start's result.
    pub fn count_start(&self, result: StartResult) {
        self.starts.get_or_create(&StartLabels { result }).inc();
    }

    /// Counts a stopped session.
    pub fn count_stop(&self, by: StoppedBy) {
        self.stops.get_or_create(&StopLabels { by }).inc();
    }

    /// Counts a session a Reaper in `dry_run` would have stopped.
    pub fn count_would_stop(&self, reason: WouldStop) {
        self.would_stop
            .get_or_create(&WouldStopLabels { reason })
            .inc();
    }

    /// Counts a failed start undone.
    pub fn count_rollback(&self) {
        self.rollbacks.inc();
    }

    /// Counts a take-over of a dead host's start or stop.
    pub fn count_takeover(&self) {
        self.takeovers.inc();
    }

    /// Counts a reconciliation pass.
    pub fn count_reconcile_pass(&self, result: PassResult) {
        self.reconcile_passes
            .get_or_create(&PassLabels { result })
            .inc();
    }

    /// Counts a corrupt record met.
    pub fn count_corrupt_record(&self, found_by: FoundBy) {
        self.corrupt_records
            .get_or_create(&CorruptLabels { found_by })
            .inc();
    }

    /// Counts a reconciliation repair.
    pub fn count_reconcile_action(&self, action: ReconcileAction) {
        self.reconcile_actions
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Records a plugin call of `function` on the plugin in slot `plugin`:
    /// its latency, and whether it failed.
    pub fn observe_plugin_call(
        &self,
        plugin: &'static str,
        function: &'static str,
        elapsed: Duration,
        failed: bool,
    ) {
        let labels = PluginCallLabels { plugin, function };
        self.plugin_call_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.plugin_call_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts a failed store request of `operation`.
    pub fn count_store_error(&self, operation: &'static str, error: &StoreError) {
        let error = StoreErrorKind::of(error);
        self.store_errors
            .get_or_create(&StoreErrorLabels { operation, error })
            .inc();
    }

    /// Records a complete Reaper sweep: the sessions it counted by status
    /// (every status, zeros included, so a status that empties reads 0),
    /// how long it took, and when it ended (`ended_ms`, Unix milliseconds).
    pub fn record_sweep(
        &self,
        sessions: &[(SessionStatus, u64)],
        elapsed: Duration,
        ended_ms: u64,
    ) {
        for (status, count) in sessions {
            let labels = SessionLabels {
                status: status.as_str(),
            };
            self.sessions
                .get_or_create(&labels)
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.sweep_duration.observe(elapsed.as_secs_f64());
        self.last_sweep.set(ended_ms as f64 / 1000.0);
    }

    /// Every metric, encoded in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and every label value is
        // encodable text.
        let _ = match format {
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_their_served_names_and_labels() {
        let metrics = Metrics::new();
        metrics.count_start(StartResult::Hit);
        metrics.count_start(StartResult::Hit);
        metrics.count_start(StartResult::Failed);
        metrics.count_response("status", 503);
        for _ in 0..3 {
            metrics.count_reconcile_action(ReconcileAction::RestoreRoute);
        }
        let text = metrics.render(Format::PrometheusText);
        for expected in [
            "# TYPE vessel_starts_total counter\n",
            "vessel_starts_total{result=\"hit\"} 2\n",
            "vessel_starts_total{result=\"failed\"} 1\n",
            "vessel_api_responses_total{endpoint=\"status\",status=\"503\"} 1\n",
            "vessel_reconcile_actions_total{action=\"restore_route\"} 3\n",
            "vessel_takeovers_total 0\n",
            "vessel_rollbacks_total 0\n",
            "vessel_build_info{version=\"",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn closed_label_sets_are_served_at_zero_from_the_start() {
        let metrics = Metrics::new();
        metrics.expect_plugin_functions("vm", &["create", "inspect"]);
        metrics.expect_store_operations(&["get"]);
        let text = metrics.render(Format::PrometheusText);
        /// `metric`'s series with `label` at each of `values`.
        fn labelled<T: Copy>(
            metric: &str,
            label: &str,
            values: &[T],
            text: fn(T) -> &'static str,
        ) -> Vec<String> {
            values
                .iter()
                .map(|&v| format!("{metric}{{{label}=\"{}\"}}", text(v)))
                .collect()
        }
        let mut expected = [
            labelled(
                "vessel_starts_total",
                "result",
                StartResult::ALL,
                StartResult::as_str,
            ),
            labelled(
                "vessel_stops_total",
                "by",
                StoppedBy::ALL,
                StoppedBy::as_str,
            ),
            labelled(
                "vessel_reaper_would_stop_total",
                "reason",
                WouldStop::ALL,
                WouldStop::as_str,
            ),
            labelled(
                "vessel_reconcile_passes_total",
                "result",
                PassResult::ALL,
                PassResult::as_str,
            ),
            labelled(
                "vessel_corrupt_records_total",
                "found_by",
                FoundBy::ALL,
                FoundBy::as_str,
            ),
            labelled(
                "vessel_reconcile_actions_total",
                "action",
                ReconcileAction::ALL,
                ReconcileAction::as_str,
            ),
        ]
        .concat();
        expected.extend(StoreErrorKind::ALL.iter().map(|error| {
            let error = error.as_str();
            format!("vessel_store_errors_total{{operation=\"get\",error=\"{error}\"}}")
        }));
        expected.push("vessel_plugin_call_errors_total{plugin=\"vm\",function=\"create\"}".into());
        expected.push("vessel_plugin_call_errors_total{plugin=\"vm\",function=\"inspect\"}".into());
        assert_eq!(expected.len(), 5 + 4 + 3 + 3 + 3 + 5 + 3 + 2);
        for series in &expected {
            assert!(
                text.contains(&format!("\n{series} 0\n")),
                "{series} in\n{text}"
            );
        }
        // Counting goes on from the zero.
        metrics.count_stop(StoppedBy::ReaperIdle);
        let text = metrics.render(Format::PrometheusText);
        assert!(
            text.contains("\nvessel_stops_total{by=\"reaper_idle\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nvessel_stops_total{by=\"user\"} 0\n"),
            "{text}"
        );
        // No gauge pretends to know the sessions before a sweep.
        assert!(!text.contains("vessel_sessions{"), "{text}");
    }

    #[test]
    fn histograms_serve_buckets_sum_and_count_by_route() {
        let metrics = Metrics::new();
        metrics.observe_request("/status/{userId}", 200, Duration::from_micros(300));
        metrics.observe_plugin_call("vm", "create", Duration::from_millis(40), true);
        let text = metrics.render(Format::PrometheusText);
        for expected in [
            "# TYPE vessel_http_request_duration_seconds histogram\n",
            "vessel_http_request_duration_seconds_bucket{route=\"/status/{userId}\",status=\"200\",le=\"0.00025\"} 0\n",
            "vessel_http_request_duration_seconds_bucket{route=\"/status/{userId}\",status=\"200\",le=\"0.0005\"} 1\n",
            "vessel_http_request_duration_seconds_bucket{route=\"/status/{userId}\",status=\"200\",le=\"+Inf\"} 1\n",
            "vessel_http_request_duration_seconds_count{route=\"/status/{userId}\",status=\"200\"} 1\n",
            "vessel_plugin_call_duration_seconds_count{plugin=\"vm\",function=\"create\"} 1\n",
            "vessel_plugin_call_errors_total{plugin=\"vm\",function=\"create\"} 1\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
    }

    #[test]
    fn a_sweep_sets_every_status_and_its_time() {
        let metrics = Metrics::new();
        let counted = [
            (SessionStatus::Starting, 1),
            (SessionStatus::Active, 2),
            (SessionStatus::Stopping, 0),
        ];
        metrics.record_sweep(&counted, Duration::from_millis(3), 1_700_000_000_500);
        let text = metrics.render(Format::PrometheusText);
        for expected in [
            "vessel_sessions{status=\"starting\"} 1\n",
            "vessel_sessions{status=\"active\"} 2\n",
            "vessel_sessions{status=\"stopping\"} 0\n",
            "vessel_reaper_sweep_duration_seconds_count 1\n",
            "vessel_reaper_last_sweep_timestamp_seconds 1700000000.5\n",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
    }

    #[test]
    fn scrapers_that_ask_for_openmetrics_get_it() {
        let metrics = Metrics::new();
        let format = Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ));
        assert_eq!(format, Format::OpenMetrics);
        assert_eq!(format.content_type(), OPENMETRICS_TEXT);
        let text = metrics.render(format);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE vessel_rollbacks counter\n"), "{text}");
        assert!(text.contains("\nvessel_rollbacks_total 0\n"), "{text}");
        assert_eq!(Format::from_accept(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::from_accept(None).content_type(), PROMETHEUS_TEXT);
    }
}
