//! The benchmark harness (`vessel-bench`, tests/bench/) still works: run
//! with a few iterations, it measures and reports every row, for both
//! stores, with the ratio fields. Nothing here asserts anything about time;
//! the numbers only have to be there.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The rows every store reports, and the Redis store's extra baseline.
const ROWS: [&str; 10] = [
    "healthz",
    "store_get",
    "vm_inspect",
    "start_hit_inspect",
    "start_hit_tcp",
    "start_hit_none",
    "heartbeat",
    "status",
    "start_cold",
    "stop",
];
const REDIS_ONLY: &str = "redis_get";

/// Runs `vessel-bench` with `args` and none of its environment variables.
/// The deadline only keeps a hung harness from hanging the test suite.
fn bench(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vessel-bench"));
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("VESSEL_BENCH_") {
            command.env_remove(name);
        }
    }
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

fn positive(row: &Value, field: &str) -> f64 {
    let value = row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {row}"));
    assert!(value > 0.0, "{field} is not positive in {row}");
    value
}

#[test]
fn the_harness_reports_every_row_of_both_stores() {
    let output = bench(&[
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--cold-iterations",
        "2",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "vessel-bench failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    assert_eq!(report["iterations"], 5);
    assert_eq!(report["cold_iterations"], 2);
    assert_eq!(report["baseline"], "healthz");
    assert_eq!(report["stores"], serde_json::json!(["redis", "embedded"]));
    assert!(report["profile"].is_string());
    let rows = report["rows"].as_array().expect("rows");

    for store in ["redis", "embedded"] {
        let mut expected: Vec<&str> = ROWS.to_vec();
        if store == "redis" {
            expected.push(REDIS_ONLY);
        }
        let of_store: Vec<&Value> = rows.iter().filter(|r| r["store"] == store).collect();
        assert_eq!(of_store.len(), expected.len(), "{store}: {of_store:#?}");
        for op in expected {
            let row = of_store
                .iter()
                .find(|r| r["op"] == op)
                .unwrap_or_else(|| panic!("no {op} row for {store}"));
            assert!(row["label"].is_string(), "{row}");
            let n = if matches!(op, "start_cold" | "stop") {
                2
            } else {
                5
            };
            assert_eq!(row["iterations"], n, "{row}");
            let median = positive(row, "median_us");
            let p90 = positive(row, "p90_us");
            let p99 = positive(row, "p99_us");
            assert!(
                median <= p90 && p90 <= p99,
                "percentiles out of order: {row}"
            );
            for field in ["min_us", "max_us", "mean_us", "ratio_to_healthz"] {
                positive(row, field);
            }
            if op == "healthz" {
                assert_eq!(row["ratio_to_healthz"], 1.0, "{row}");
            }
            // The rows measure the paths they name: the hit with liveness
            // `inspect` makes exactly one plugin call, the others none.
            let calls = &row["plugin_calls_per_op"];
            match op {
                "vm_inspect" | "start_hit_inspect" => assert_eq!(calls, 1.0, "{row}"),
                "start_hit_tcp" | "start_hit_none" => assert_eq!(calls, 0.0, "{row}"),
                "start_cold" | "stop" => {
                    positive(row, "plugin_calls_per_op");
                }
                _ => assert!(calls.is_null(), "{row}"),
            }
        }
        for hit in ["inspect", "tcp", "none"] {
            let ratio = &report["cold_over_hit"][store][hit];
            assert!(
                ratio.as_f64().is_some_and(|r| r > 0.0),
                "cold_over_hit.{store}.{hit} = {ratio}"
            );
        }
    }
}

#[test]
fn the_harness_prints_a_markdown_table_and_its_help() {
    let output = bench(&[
        "--store",
        "embedded",
        "--iterations",
        "3",
        "--warmup",
        "0",
        "--cold-iterations",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "vessel-bench failed:\n{stderr}");
    let table = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        table.contains("| Store | Operation | n | median | p90 | p99 |"),
        "{table}"
    );
    for label in [
        "GET /healthz",
        "POST /start hit, liveness inspect",
        "POST /stop",
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("| embedded | ") && l.contains(label)),
            "no {label} row:\n{table}"
        );
    }
    assert!(!table.contains("| redis |"), "{table}");
    assert!(table.contains("cold ÷ hit (inspect)"), "{table}");

    let help = bench(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("UTF-8");
    assert!(
        help.contains("--iterations") && help.contains("--json"),
        "{help}"
    );

    let refused = bench(&["--store", "mysql"]);
    assert_eq!(refused.status.code(), Some(2));
}
