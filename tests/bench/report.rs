//! The results as a markdown table (for people) or JSON (for machines).

use std::fmt::Write;

use serde_json::{Value, json};

use crate::scenario::{Op, Results, Row, StoreResult};
use crate::stats::{human, micros, ratio};

/// The hits a cold start is compared with, and their names.
const HITS: [(Op, &str); 3] = [
    (Op::HitInspect, "inspect"),
    (Op::HitTcp, "tcp"),
    (Op::HitNone, "none"),
];

/// A row's median over the `/healthz` median of its store.
fn over_healthz(store: &StoreResult, row: &Row) -> Option<f64> {
    ratio(row.median(), store.row(Op::Healthz)?.median())
}

/// The cold start's median over the median of `hit`.
fn cold_over(store: &StoreResult, hit: Op) -> Option<f64> {
    ratio(store.row(Op::ColdStart)?.median(), store.row(hit)?.median())
}

fn times(value: Option<f64>) -> String {
    match value {
        Some(v) if v < 10.0 => format!("{v:.2}×"),
        Some(v) => format!("{v:.1}×"),
        None => "–".to_string(),
    }
}

/// The results as markdown: a line about the run, a table of every row,
/// and a table of cold start over hit.
pub fn markdown(results: &Results) -> String {
    let o = &results.options;
    let mut out = String::new();
    let _ = writeln!(out, "## vessel-bench\n");
    let _ = writeln!(
        out,
        "Profile **{}**, {} CPUs; {} measured rounds after {} warm-up rounds, {} cold \
         starts and stops per store; operations interleaved in a shuffled order; \
         run took {:.1} s.\n",
        results.profile,
        results.cpus,
        o.iterations,
        o.warmup,
        o.cold_iterations,
        results.elapsed.as_secs_f64()
    );
    if results.profile == "dev" {
        let _ = writeln!(
            out,
            "> Dev profile: wasmtime runs unoptimised and inflates every plugin call. \
             Quote only `--release` numbers.\n"
        );
    }
    let _ = writeln!(
        out,
        "| Store | Operation | n | median | p90 | p99 | median ÷ /healthz | plugin calls/op |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for store in &results.stores {
        for row in &store.rows {
            let s = &row.summary;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                store.store.name(),
                row.op.label(),
                s.iterations,
                human(s.median),
                human(s.p90),
                human(s.p99),
                times(over_healthz(store, row)),
                row.plugin_calls_per_op
                    .map_or("–".to_string(), |n| format!("{n:.2}")),
            );
        }
    }
    let _ = writeln!(out, "\nCold start ÷ hit (medians):\n");
    let _ = writeln!(
        out,
        "| Store | cold ÷ hit (inspect) | cold ÷ hit (tcp) | cold ÷ hit (none) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for store in &results.stores {
        let _ = write!(out, "| {} |", store.store.name());
        for (hit, _) in HITS {
            let _ = write!(out, " {} |", times(cold_over(store, hit)));
        }
        let _ = writeln!(out);
    }
    out
}

/// The results as JSON: times in microseconds, one object per row.
pub fn json(results: &Results) -> Value {
    let o = &results.options;
    let mut rows = Vec::new();
    let mut cold_over_hit = serde_json::Map::new();
    for store in &results.stores {
        for row in &store.rows {
            let s = &row.summary;
            rows.push(json!({
                "store": store.store.name(),
                "op": row.op.id(),
                "label": row.op.label(),
                "iterations": s.iterations,
                "median_us": micros(s.median),
                "p90_us": micros(s.p90),
                "p99_us": micros(s.p99),
                "min_us": micros(s.min),
                "max_us": micros(s.max),
                "mean_us": micros(s.mean),
                "ratio_to_healthz": over_healthz(store, row),
                "plugin_calls_per_op": row.plugin_calls_per_op,
            }));
        }
        let ratios: serde_json::Map<String, Value> = HITS
            .iter()
            .map(|(hit, name)| (name.to_string(), json!(cold_over(store, *hit))))
            .collect();
        cold_over_hit.insert(store.store.name().to_string(), Value::Object(ratios));
    }
    json!({
        "profile": results.profile,
        "cpus": results.cpus,
        "elapsed_s": results.elapsed.as_secs_f64(),
        "iterations": o.iterations,
        "warmup": o.warmup,
        "cold_iterations": o.cold_iterations,
        "stores": results.stores.iter().map(|s| s.store.name()).collect::<Vec<_>>(),
        "baseline": Op::Healthz.id(),
        "rows": rows,
        "cold_over_hit": cold_over_hit,
    })
}
