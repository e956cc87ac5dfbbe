//! The results as markdown (for people and the README) or JSON (for
//! machines), with the checks of the bar.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::StoreKind;
use crate::checks::{self, Check};
use crate::scenario::{Results, plan};
use crate::stats::{human, human_mib, human_rate, micros};

/// How the client shares the machine, said in every report.
const CLIENT_NOTE: &str = "The client is this harness: closed loop (each worker sends its next \
request as soon as its last is answered), one keep-alive HTTP/1.1 connection or one Redis \
connection per worker, each spoken directly on its socket by the worker's own task (as `wrk` \
and `redis-benchmark` do), on the same machine and cores as the hosts and redis-server, so \
the client's own CPU is part of every row.";

/// What the CPU columns hold, said under the table.
const CPU_NOTE: &str = "CPU / request: the CPU time (user and system) the serving process \
spent per answered request in the measured window: the host for HTTP rows, redis-server for \
the raw Redis rows, this harness for the in-process rows; it tells whose work a row is and \
what one more request costs. Steal: the share of the machine's time the hypervisor gave to \
other guests meanwhile. Rows with more than a few percent of steal are slower in every \
column, CPU per request included (idle wake-ups and cold caches cost more), so compare rows \
and runs at low steal.";

/// The check lines, `PASS  bar: detail`.
pub fn check_lines(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "{}  {}: {}",
            check.verdict.as_str(),
            check.bar,
            check.detail
        );
    }
    out
}

/// The results as markdown: the run, the load rows, the cold start's
/// share, the Reaper rows and the checks.
pub fn markdown(results: &Results) -> String {
    let o = &results.options;
    let mut out = String::new();
    let _ = writeln!(out, "## vessel-bench, {}\n", results.date);
    let _ = writeln!(
        out,
        "Profile **{}** on {} × {}; {} s per row after {} s of warm-up; run took {:.0} s.\n",
        results.profile,
        results.cpus,
        results.cpu_model,
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        results.elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "{CLIENT_NOTE}\n");
    let _ = writeln!(
        out,
        "The hosts run with `worker_threads = {}`{}.\n",
        o.host_threads,
        if o.host_threads == 0 {
            " (the default: one per CPU)"
        } else {
            ""
        }
    );
    if results.profile == "dev" {
        let _ = writeln!(
            out,
            "> Dev profile: wasmtime and the host run unoptimised. Quote only `--release` \
             numbers.\n"
        );
    }
    if !results.rows.is_empty() {
        let _ = writeln!(
            out,
            "| Store | Row | c | throughput | p50 | p99 | p99.9 | max | errors | host peak RSS | CPU / request | steal |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
    }
    for row in &results.rows {
        let s = row.load.summary();
        let time = |pick: fn(&crate::stats::Summary) -> std::time::Duration| {
            s.as_ref().map_or("–".to_string(), |s| human(pick(s)))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.row.store.map_or("in-process", StoreKind::name),
            row.row.op.label(),
            row.row.concurrency,
            human_rate(row.load.throughput()),
            time(|s| s.p50),
            time(|s| s.p99),
            time(|s| s.p999),
            time(|s| s.max),
            row.load.errors,
            row.host_peak_rss.map_or("–".to_string(), human_mib),
            row.cpu_per_request().map_or("–".to_string(), human),
            row.cpu
                .steal
                .map_or("–".to_string(), |steal| format!("{:.0}%", steal * 100.0)),
        );
    }
    if !results.rows.is_empty() {
        let _ = writeln!(out, "\n{CPU_NOTE}");
    }
    let shares: Vec<_> = o
        .stores
        .iter()
        .filter_map(|&store| checks::cold_share(results, store).map(|share| (store, share)))
        .collect();
    if !shares.is_empty() {
        let _ = writeln!(
            out,
            "\nVessel's own share of a cold start: the cold start's p50 at c=1 (over HTTP) \
             less the p50 of its three plugin calls made in-process; what remains is HTTP, \
             the store's writes, staging the project and the orchestration.\n"
        );
        let _ = writeln!(
            out,
            "| Store | cold start p50 | plugin calls p50 | Vessel's share |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (store, share) in shares {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                store.name(),
                human(share.cold),
                human(share.plugins),
                human(share.share)
            );
        }
    }
    if !results.reaper.is_empty() {
        let _ = writeln!(
            out,
            "\nReaper: one sweep (batch 500, 8 stops at a time, at nice 10 as the host runs it) \
             over sessions in Redis, 1% idle, in a process of its own; meanwhile another client sends one GET every \
             millisecond.\n"
        );
        let _ = writeln!(
            out,
            "| sessions | idle reaped | sweep | other client p99.9 | other client worst | \
             longest Redis command | sweeper peak RSS | Redis memory | fill |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &results.reaper {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.sessions,
                row.reaped,
                human(row.sweep),
                row.probe.map_or("–".into(), |p| human(p.p999)),
                row.probe.map_or("–".into(), |p| human(p.max)),
                row.longest_command.map_or_else(
                    || format!("< {}", human(crate::reaper::SLOW_COMMAND)),
                    human
                ),
                row.sweeper_peak_rss.map_or("–".into(), human_mib),
                row.redis_memory.map_or("–".into(), human_mib),
                human(row.fill),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nThe bar (issue 12):\n\n```\n{}```",
        check_lines(&checks::checks(results))
    );
    out
}

/// The results as JSON: times in microseconds, memory in bytes.
pub fn json(results: &Results) -> Value {
    let o = &results.options;
    let rows: Vec<Value> = results
        .rows
        .iter()
        .map(|row| {
            let s = row.load.summary();
            let us = |pick: fn(&crate::stats::Summary) -> std::time::Duration| {
                s.as_ref().map(|s| micros(pick(s)))
            };
            json!({
                "op": row.row.op.id(),
                "label": row.row.op.label(),
                "store": row.row.store.map(StoreKind::name),
                "concurrency": row.row.concurrency,
                "requests": row.load.completed,
                "errors": row.load.errors,
                "first_error": row.load.first_error,
                "seconds": row.load.window.as_secs_f64(),
                "throughput_per_s": row.load.throughput(),
                "p50_us": us(|s| s.p50),
                "p99_us": us(|s| s.p99),
                "p999_us": us(|s| s.p999),
                "max_us": us(|s| s.max),
                "mean_us": us(|s| s.mean),
                "host_peak_rss_bytes": row.host_peak_rss,
                "server_cpu_per_request_us": row.cpu_per_request().map(micros),
                "server_cpu_cores": row.cpu.process_cores,
                "steal_share": row.cpu.steal,
            })
        })
        .collect();
    let cold_share: Vec<Value> = o
        .stores
        .iter()
        .filter_map(|&store| {
            checks::cold_share(results, store).map(|share| {
                json!({
                    "store": store.name(),
                    "cold_start_p50_us": micros(share.cold),
                    "plugin_calls_p50_us": micros(share.plugins),
                    "vessel_share_us": micros(share.share),
                })
            })
        })
        .collect();
    let reaper: Vec<Value> = results
        .reaper
        .iter()
        .map(|row| {
            json!({
                "sessions": row.sessions,
                "idle": row.idle,
                "scanned": row.scanned,
                "reaped": row.reaped,
                "failed": row.failed,
                "sweep_us": micros(row.sweep),
                "fill_us": micros(row.fill),
                "probe_requests": row.probe.map(|p| p.count),
                "probe_p99_us": row.probe.map(|p| micros(p.p99)),
                "probe_p999_us": row.probe.map(|p| micros(p.p999)),
                "probe_max_us": row.probe.map(|p| micros(p.max)),
                "sweeper_peak_rss_bytes": row.sweeper_peak_rss,
                "longest_redis_command_us": row.longest_command.map(micros),
                "redis_used_memory_bytes": row.redis_memory,
            })
        })
        .collect();
    let checks: Vec<Value> = checks::checks(results)
        .iter()
        .map(|check| {
            json!({
                "bar": check.bar,
                "verdict": check.verdict.as_str(),
                "detail": check.detail,
            })
        })
        .collect();
    json!({
        "date": results.date,
        "profile": results.profile,
        "cpus": results.cpus,
        "cpu_model": results.cpu_model,
        "elapsed_s": results.elapsed.as_secs_f64(),
        "duration_s": o.duration.as_secs_f64(),
        "host_worker_threads": o.host_threads,
        "warmup_s": o.warmup.as_secs_f64(),
        "concurrency": o.concurrency,
        "stores": o.stores.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "planned_rows": plan(o).len(),
        "client": CLIENT_NOTE,
        "cpu": CPU_NOTE,
        "rows": rows,
        "cold_share": cold_share,
        "reaper": reaper,
        "checks": checks,
    })
}
