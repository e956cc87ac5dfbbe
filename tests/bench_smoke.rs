//! The benchmark harness (`vessel-bench`, tests/bench/) still works: run
//! with `--quick`, it measures and reports every row (both stores, every
//! concurrency level, the raw Redis baselines, the plugin rows, a Reaper
//! row) without a single failed request, and checks the bar. Nothing here
//! asserts anything about time; the numbers only have to be there.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vessel_tests::vessel_binary;

/// The rows every store reports at every concurrency level.
const STORE_ROWS: [&str; 6] = [
    "healthz",
    "status",
    "heartbeat",
    "hit_inspect",
    "hit_tcp",
    "hit_none",
];
/// The Redis store's baselines (and the HTTP stack's), at every level.
const RAW_ROWS: [&str; 3] = ["redis_get", "redis_set", "raw_http"];
/// The in-process rows, at concurrency 1.
const PLUGIN_ROWS: [&str; 3] = ["plugin_inspect", "native_inspect", "plugin_cold_calls"];
/// `--quick`'s levels; the cold start runs at both.
const QUICK_LEVELS: [u64; 2] = [1, 4];

/// Runs `vessel-bench` with `args`, on the `vessel` binary `cargo build`
/// made. The deadline only keeps a hung harness from hanging the suite.
fn bench(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vessel-bench"));
    command
        .args(args)
        .arg("--vessel")
        .arg(vessel_binary())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run vessel-bench");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stderr.read_to_end(&mut bytes).map(|_| bytes)
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for vessel-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vessel-bench {args:?} did not finish within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader").expect("read stdout"),
        stderr: err.join().expect("stderr reader").expect("read stderr"),
    }
}

fn number(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {value}"))
}

/// The checks of the bar in a report.
fn checks_of(report: &Value) -> &[Value] {
    report["checks"].as_array().expect("checks")
}

/// The check of the bar whose text starts with `prefix`.
fn check_starting<'a>(checks: &'a [Value], prefix: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["bar"].as_str().is_some_and(|bar| bar.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no check starts with {prefix:?}"))
}

/// Checks one load row: answered, without errors, percentiles in order.
fn check_row(row: &Value) {
    assert_eq!(row["errors"], 0, "{row}");
    assert!(number(row, "requests") > 0.0, "{row}");
    assert!(number(row, "throughput_per_s") > 0.0, "{row}");
    let p50 = number(row, "p50_us");
    let p99 = number(row, "p99_us");
    let p999 = number(row, "p999_us");
    let max = number(row, "max_us");
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "percentiles out of order: {row}"
    );
    // The serving process's CPU was read (the host's, redis-server's or
    // the harness's own: a wrong pid gives null), and the machine's steal.
    assert!(number(row, "server_cpu_cores") >= 0.0, "{row}");
    assert!(number(row, "server_cpu_per_request_us") >= 0.0, "{row}");
    let steal = number(row, "steal_share");
    assert!((0.0..=1.0).contains(&steal), "{row}");
}

#[test]
fn a_quick_run_reports_every_row_and_checks_the_bar() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("bench.json");
    let output = bench(&["--quick", "--json", json_path.to_str().expect("UTF-8 path")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "vessel-bench failed:\n{stderr}");
    let table = String::from_utf8(output.stdout).expect("UTF-8");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_path).expect("the JSON"))
        .unwrap_or_else(|e| panic!("the JSON file is not JSON ({e}); stderr:\n{stderr}"));

    assert!(report["profile"].is_string() && report["cpu_model"].is_string());
    assert_eq!(report["stores"], serde_json::json!(["redis", "embedded"]));
    assert_eq!(report["concurrency"], serde_json::json!(QUICK_LEVELS));
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len() as f64, number(&report, "planned_rows"));
    let find = |op: &str, store: Option<&str>, c: u64| -> &Value {
        rows.iter()
            .find(|r| {
                r["op"] == op
                    && r["concurrency"] == c
                    && store.map_or(r["store"].is_null(), |s| r["store"] == s)
            })
            .unwrap_or_else(|| panic!("no {op} row for {store:?} at c={c}:\n{table}"))
    };
    for store in ["redis", "embedded"] {
        for c in QUICK_LEVELS {
            for op in STORE_ROWS.iter().chain(&["start_cold"]) {
                let row = find(op, Some(store), c);
                check_row(row);
                // The host is a process of its own, and its memory is read.
                assert!(number(row, "host_peak_rss_bytes") > 0.0, "{row}");
            }
            if store == "redis" {
                for op in RAW_ROWS {
                    check_row(find(op, Some(store), c));
                }
            }
        }
    }
    for op in PLUGIN_ROWS {
        check_row(find(op, None, 1));
    }
    // 2 stores × 7 rows × 2 levels, the 3 baselines × 2 levels, the plugin rows.
    assert_eq!(rows.len(), 2 * 7 * 2 + 3 * 2 + 3, "{table}");
    // The status check quotes the HTTP baseline beside raw Redis.
    let status_check = check_starting(checks_of(&report), "redis: status");
    assert!(
        status_check["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bare HTTP")),
        "{status_check}"
    );

    let shares = report["cold_share"].as_array().expect("cold_share");
    assert_eq!(shares.len(), 2, "{report}");
    for share in shares {
        assert!(number(share, "cold_start_p50_us") > 0.0, "{share}");
        assert!(number(share, "plugin_calls_p50_us") > 0.0, "{share}");
    }

    // The Reaper row: every session looked at, every idle one (1%) stopped,
    // the other client's latencies recorded meanwhile.
    let reaper = report["reaper"].as_array().expect("reaper");
    assert_eq!(reaper.len(), 1, "{report}");
    let sweep = &reaper[0];
    assert_eq!(sweep["sessions"], 2000);
    assert_eq!(sweep["scanned"], 2000);
    assert_eq!(sweep["reaped"], 20);
    assert_eq!(sweep["failed"], 0);
    assert!(number(sweep, "sweep_us") > 0.0, "{sweep}");
    assert!(number(sweep, "sweeper_peak_rss_bytes") > 0.0, "{sweep}");

    // Every check of the bar has a verdict; the 1,000,000-session sweep
    // was not run, so its check is skipped, not passed.
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 10, "{report}");
    for check in checks {
        assert!(
            ["PASS", "MISS", "SKIP"].contains(&check["verdict"].as_str().unwrap_or_default()),
            "{check}"
        );
    }
    let reaper_check = check_starting(checks, "Reaper");
    assert_eq!(reaper_check["verdict"], "SKIP", "{reaper_check}");
    // The plugin-call row was measured, so its check has a verdict.
    let plugin_check = check_starting(checks, "one mock plugin call");
    assert_ne!(plugin_check["verdict"], "SKIP", "{plugin_check}");

    // The markdown has the table and the check lines.
    assert!(
        table.contains("| Store | Row | c | throughput |"),
        "{table}"
    );
    assert!(
        table.contains("| embedded | POST /heartbeat | 4 |"),
        "{table}"
    );
    let verdicts = table
        .lines()
        .filter(|l| {
            ["PASS  ", "MISS  ", "SKIP  "]
                .iter()
                .any(|v| l.starts_with(v))
        })
        .count();
    assert_eq!(verdicts, 10, "{table}");
}

#[test]
fn the_harness_filters_rows_prints_its_help_and_refuses_nonsense() {
    let output = bench(&["--quick", "--only", "plugin", "--json", "-"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "vessel-bench failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let ops: Vec<&str> = report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["op"].as_str())
        .collect();
    assert_eq!(ops, PLUGIN_ROWS, "{report}");
    assert!(report["reaper"].as_array().is_some_and(Vec::is_empty));
    // With JSON on stdout, the check lines go to stderr.
    assert!(stderr.contains("SKIP  "), "{stderr}");

    let help = bench(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("UTF-8");
    assert!(
        help.contains("--quick") && help.contains("--only") && help.contains("--json"),
        "{help}"
    );

    for nonsense in [
        &["--store", "mysql"][..],
        &["--only", "nothing-is-called-this"],
    ] {
        let refused = bench(nonsense);
        assert!(!refused.status.success(), "{nonsense:?} was accepted");
    }
}
