//! `GET /metrics` as operators graph it: after real traffic against a host
//! on a real redis-server, every metric the shipped Grafana dashboard
//! queries has series, latency is labelled by route template (never by a
//! user id or a raw path), plugin calls by slot and function, and the
//! session gauges agree with the store after a Reaper sweep. Before any
//! traffic, a fresh host already serves every counter of a closed label
//! set at zero, so that rates and increases over them read 0 and their
//! first event counts.

use std::collections::BTreeSet;

use serde_json::Value;
use vessel::plugins::drivers::{PROXY_FUNCTIONS, VM_FUNCTIONS};
use vessel::reaper::Reaper;
use vessel::reconcile::Reconciler;
use vessel::store::metered::OPERATIONS;
use vessel_tests::{
    HostProcess, RedisServer, TestHost, free_port, host_config_toml, metric_value, project_dir,
    test_config, workspace_dir,
};

/// The user ids the test drives; none may appear in `/metrics`.
const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "mallory"];

/// Every sample name in a Prometheus text exposition (`name{labels} value`
/// or `name value`), e.g. `vessel_http_request_duration_seconds_bucket`.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every metric name in the PromQL of every panel of `dashboard`, as
/// written: a histogram is queried through its `_bucket`, `_sum` and
/// `_count` series, which are the names Prometheus stores, so they are
/// kept (a bare histogram name would match nothing in Prometheus, and must
/// not pass here either).
fn dashboard_metric_names(dashboard: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut exprs = 0;
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            exprs += 1;
            names.extend(promql_metric_names(expr));
        }
    }
    assert!(exprs >= 10, "the dashboard has only {exprs} queries");
    names
}

/// The `vessel_*` identifiers in a PromQL expression (Vessel's metrics;
/// functions, labels and Grafana variables never start with `vessel_`).
fn promql_metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("vessel_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not the end of a longer identifier (e.g. a label named x_vessel_y).
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_dashboard_graphs_real_series_labelled_by_route_and_plugin() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    // The test sweeps itself, so the gauges change only when it says.
    config.reaper.enabled = false;
    let host = TestHost::start(config.clone()).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");

    let before = api.get_text("/metrics").await;
    assert!(!before.contains("vessel_sessions{"), "{before}");

    // Sessions for three users; a hit (the mock's liveness is `inspect`);
    // a status read, a heartbeat and a stop.
    for user in ["alice", "bob", "carol"] {
        let started = api.start(user, &project).await;
        assert_eq!(started.status, 200, "{:?}", started.body);
    }
    let hit = api.start("alice", &project).await;
    assert_eq!(hit.body["reused"], true, "{:?}", hit.body);
    assert_eq!(api.status("alice").await.status, 200);
    assert_eq!(api.heartbeat("bob").await.status, 200);
    assert_eq!(api.stop("carol").await.status, 200);
    // A path no route serves, naming a user.
    assert_eq!(api.get("/sessions/alice").await.status, 404);

    // A driver failure: the start is rolled back and the call counted.
    host.vms().inject("create", "unavailable: no capacity");
    assert_eq!(api.start("dave", &project).await.status, 502);
    host.vms().clear("create");

    // An orphan for reconciliation to remove: erin's VM and route, with
    // her record deleted behind Vessel's back.
    assert_eq!(api.start("erin", &project).await.status, 200);
    let mut redis_cli = redis.connection();
    let _: () = redis::cmd("DEL")
        .arg("session:erin")
        .query(&mut redis_cli)
        .unwrap();
    let reconciler = Reconciler::new(host.manager.clone(), config.reconcile.clone());
    let repaired = reconciler.pass().await.expect("a reconciliation pass");
    assert_eq!(repaired.removed_orphan_vms, 1, "{repaired:?}");
    // And a record an operator mangled, which the sweep meets.
    let _: () = redis::cmd("SET")
        .arg("session:mallory")
        .arg("{not json")
        .query(&mut redis_cli)
        .unwrap();

    // The sweep counts what the store holds: alice and bob, active.
    let reaper = Reaper::new(host.manager.clone(), config.reaper.clone());
    let report = reaper.sweep().await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.sessions.active, 2, "{report:?}");
    let swept = api.get_text("/metrics").await;
    assert_eq!(
        metric_value(&swept, r#"vessel_sessions{status="active"}"#),
        2
    );
    assert!(
        swept.contains("vessel_sessions{status=\"starting\"} 0\n")
            && swept.contains("vessel_sessions{status=\"stopping\"} 0\n"),
        "{swept}"
    );
    assert_eq!(
        metric_value(&swept, "vessel_reaper_sweep_duration_seconds_count"),
        1
    );
    assert!(
        swept.contains("\nvessel_reaper_last_sweep_timestamp_seconds "),
        "{swept}"
    );

    // An outage: the store's failures are counted by operation.
    let mut redis = redis;
    redis.stop();
    assert_eq!(api.status("alice").await.status, 503);

    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/metrics", host.base))
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();

    // Every metric the dashboard queries has series.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_dir().join("examples/grafana-dashboard.json"))
            .expect("the shipped dashboard"),
    )
    .expect("the dashboard is JSON");
    let served = sample_names(&text);
    let queried = dashboard_metric_names(&dashboard);
    let missing: Vec<&String> = queried.difference(&served).collect();
    assert!(missing.is_empty(), "no series for {missing:?} in\n{text}");
    for name in &queried {
        if let Some(histogram) = name.strip_suffix("_bucket") {
            assert!(
                text.contains(&format!("# TYPE {histogram} histogram\n")),
                "{name} is not a histogram's buckets"
            );
        }
    }

    // Latency by route template; never a user id or a raw path.
    for series in [
        r#"vessel_http_request_duration_seconds_count{route="/status/{userId}",status="200"}"#,
        r#"vessel_http_request_duration_seconds_count{route="/status/{userId}",status="503"}"#,
        r#"vessel_http_request_duration_seconds_count{route="/start",status="502"}"#,
        r#"vessel_http_request_duration_seconds_count{route="unmatched",status="404"}"#,
    ] {
        assert_eq!(metric_value(&text, series), 1, "{series} in\n{text}");
    }
    assert_eq!(
        metric_value(
            &text,
            r#"vessel_http_request_duration_seconds_count{route="/start",status="200"}"#
        ),
        5
    );
    for user in USERS {
        assert!(!text.contains(user), "{user} is in\n{text}");
    }
    assert!(!text.contains("/sessions"), "{text}");

    // Plugin calls by slot and function, failures counted.
    for series in [
        r#"vessel_plugin_call_duration_seconds_count{plugin="vm",function="create"}"#,
        r#"vessel_plugin_call_duration_seconds_count{plugin="vm",function="inspect"}"#,
        r#"vessel_plugin_call_duration_seconds_count{plugin="vm",function="list-vms"}"#,
        r#"vessel_plugin_call_duration_seconds_count{plugin="proxy",function="add-route"}"#,
        r#"vessel_plugin_call_duration_seconds_count{plugin="proxy",function="remove-route"}"#,
    ] {
        assert!(metric_value(&text, series) >= 1, "{series} in\n{text}");
    }
    assert_eq!(
        metric_value(
            &text,
            r#"vessel_plugin_call_errors_total{plugin="vm",function="create"}"#
        ),
        1
    );
    assert_eq!(
        metric_value(
            &text,
            r#"vessel_plugin_call_errors_total{plugin="vm",function="inspect"}"#
        ),
        0
    );

    // The counters operators already rely on keep their names and labels.
    for (series, value) in [
        (r#"vessel_starts_total{result="created"}"#, 4),
        (r#"vessel_starts_total{result="hit"}"#, 1),
        (r#"vessel_starts_total{result="failed"}"#, 1),
        (r#"vessel_stops_total{by="user"}"#, 1),
        ("vessel_rollbacks_total", 1),
        (r#"vessel_reconcile_passes_total{result="ok"}"#, 1),
        (
            r#"vessel_reconcile_actions_total{action="remove_orphan_vm"}"#,
            1,
        ),
        (r#"vessel_corrupt_records_total{found_by="reaper"}"#, 1),
        (
            r#"vessel_api_responses_total{endpoint="status",status="503"}"#,
            1,
        ),
        (
            r#"vessel_store_errors_total{operation="get",error="unavailable"}"#,
            1,
        ),
    ] {
        assert_eq!(metric_value(&text, series), value, "{series} in\n{text}");
    }
    assert!(text.contains("vessel_build_info{version=\""), "{text}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_scraper_that_asks_for_openmetrics_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(test_config(&dir.path().join("data"), None)).await;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/metrics", host.base))
        // What Prometheus sends.
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE vessel_takeovers counter\n"), "{text}");
    assert!(text.contains("\nvessel_takeovers_total 0\n"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    host.shutdown().await;
}

/// The dashboard's metrics whose series are born of traffic: request
/// latency by route and status, answers by endpoint and status, plugin call
/// latency (a histogram per function called) and the session gauges (set by
/// the first sweep: before it, nothing is known about the store).
const BORN_OF_TRAFFIC: [&str; 5] = [
    "vessel_http_request_duration_seconds_bucket",
    "vessel_http_request_duration_seconds_count",
    "vessel_api_responses_total",
    "vessel_plugin_call_duration_seconds_bucket",
    "vessel_sessions",
];

#[tokio::test]
async fn a_fresh_host_serves_every_closed_counter_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The Reaper's first sweep waits its interval: nothing but the scrape
    // below happens on this host.
    let config = host_config_toml(dir.path(), port, "", "[reaper]\ninterval = \"1h\"\n");
    let host = HostProcess::start(dir.path(), &config, port, "host.log").await;
    let text = host.api().get_text("/metrics").await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_dir().join("examples/grafana-dashboard.json"))
            .expect("the shipped dashboard"),
    )
    .expect("the dashboard is JSON");
    let served = sample_names(&text);
    let missing: Vec<String> = dashboard_metric_names(&dashboard)
        .into_iter()
        .filter(|name| !BORN_OF_TRAFFIC.contains(&name.as_str()) && !served.contains(name))
        .collect();
    assert!(missing.is_empty(), "no series for {missing:?} in\n{text}");

    let zero = |series: String| {
        assert!(
            text.lines().any(|line| line == format!("{series} 0")),
            "{series} at 0 in\n{text}"
        )
    };
    for (plugin, functions) in [("vm", &VM_FUNCTIONS[..]), ("proxy", &PROXY_FUNCTIONS[..])] {
        for function in functions {
            zero(format!(
                "vessel_plugin_call_errors_total{{plugin=\"{plugin}\",function=\"{function}\"}}"
            ));
        }
    }
    for operation in OPERATIONS {
        for error in ["unavailable", "corrupt", "backend"] {
            zero(format!(
                "vessel_store_errors_total{{operation=\"{operation}\",error=\"{error}\"}}"
            ));
        }
    }
    for by in ["user", "reaper_idle", "reaper_stuck", "reaper_max_age"] {
        zero(format!("vessel_stops_total{{by=\"{by}\"}}"));
    }
    for result in ["hit", "created", "failed", "at_capacity", "rate_limited"] {
        zero(format!("vessel_starts_total{{result=\"{result}\"}}"));
    }
    zero(r#"vessel_corrupt_records_total{found_by="reaper"}"#.to_string());
    zero(r#"vessel_reconcile_actions_total{action="remove_orphan_vm"}"#.to_string());
    // Nothing is claimed about the store before a sweep has counted it.
    assert!(!text.contains("vessel_sessions{"), "{text}");
}
