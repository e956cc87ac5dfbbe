//! The Reaper rows: one sweep over many sessions in Redis, 1 % of them idle,
//! while another Redis client watches its own latency.
//!
//! The harness fills its Redis with valid session records (written by
//! [`SessionRecord::to_json`], in the index of sessions as Vessel keeps
//! it), then runs the sweep in a process of its own: this binary again,
//! with `--sweep-once`, builds a host from a configuration file exactly as
//! `vessel serve` does (store, plugins, session manager; the API is not
//! served) and runs one [`Reaper::sweep`] with the default batch size and
//! concurrency, on a thread at the Reaper's default priority (`reaper.nice`,
//! as the host runs it). The idle sessions are stopped through the mock plugins. The
//! sweeper's peak memory is its own, and the time is the sweep's alone.
//! Meanwhile a client sends one `GET` of a session every millisecond on a
//! connection of its own and records its latencies while the sweep runs:
//! the worst of them is what any other Redis client (another host
//! answering a status) would have waited.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use vessel::app::App;
use vessel::config::Config;
use vessel::ids::UserId;
use vessel::reaper::Reaper;
use vessel::store::redis::{INDEX_KEY, session_key};
use vessel::store::{SessionRecord, SessionStatus};
use vessel_tests::{RedisServer, free_port, host_config_toml};

use crate::rss;
use crate::scenario::redis_connection;
use crate::stats::{Latencies, Summary};

/// One in this many sessions is idle.
const IDLE_EVERY: usize = 100;

/// Records written per pipeline while filling.
const FILL_BATCH: usize = 10_000;

/// How often the watching client sends its `GET`.
const PROBE_EVERY: Duration = Duration::from_millis(1);

/// What one sweep did and cost.
#[derive(Debug, Clone)]
pub struct ReaperRow {
    /// Session records in Redis before the sweep.
    pub sessions: usize,
    /// How many of them were idle.
    pub idle: usize,
    /// How long filling Redis took (pipelined `SET`s).
    pub fill: Duration,
    /// Redis's `used_memory` after filling, in bytes.
    pub redis_memory: Option<u64>,
    /// How long the sweep took.
    pub sweep: Duration,
    /// Records the sweep looked at.
    pub scanned: u64,
    /// Idle sessions it stopped.
    pub reaped: u64,
    /// Stops that failed.
    pub failed: u64,
    /// The watching client's latencies during the sweep.
    pub probe: Option<Summary>,
    /// The sweeping process's peak resident memory, in bytes.
    pub sweeper_peak_rss: Option<u64>,
    /// The longest command Redis ran during the sweep, from its slow log
    /// (`None`: none took [`SLOW_COMMAND`] or more). Redis runs one command
    /// at a time, so this is how long the sweep itself could hold another
    /// client up; the watching client's worst wait adds what sharing the
    /// machine's cores costs it.
    pub longest_command: Option<Duration>,
}

/// The slow log's threshold during a sweep.
pub const SLOW_COMMAND: Duration = Duration::from_micros(500);

/// Fills `redis` with `sessions` records (1 % idle) and measures one sweep
/// over them, the sweeper working under `dir`.
pub async fn run(redis: &RedisServer, sessions: usize, dir: &Path) -> Result<ReaperRow> {
    let mut connection = redis_connection(&redis.url()).await?;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await?;

    let idle_timeout = Config::default().reaper.idle_timeout;
    let began = Instant::now();
    let idle = fill(&mut connection, sessions, idle_timeout).await?;
    let fill_took = began.elapsed();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut connection)
        .await?;
    let redis_memory = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|bytes| bytes.trim().parse().ok());

    std::fs::create_dir_all(dir)?;
    let config = host_config_toml(
        dir,
        free_port(),
        "",
        &format!(
            "[store]\nredis_url = {:?}\n[reaper]\nenabled = false\n[reconcile]\nenabled = false\n",
            redis.url()
        ),
    );
    let config_path = dir.join("vessel.toml");
    std::fs::write(&config_path, config)?;

    for (name, value) in [
        (
            "slowlog-log-slower-than",
            SLOW_COMMAND.as_micros().to_string(),
        ),
        ("slowlog-max-len", "1024".to_string()),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut connection)
            .await?;
    }
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut connection)
        .await?;
    let recording = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(watch(
        redis_connection(&redis.url()).await?,
        session_key(&user(1)),
        recording.clone(),
        done.clone(),
    ));
    let swept = sweep_in_child(&config_path, &recording).await;
    done.store(true, Ordering::Relaxed);
    let latencies = probe.await.context("the watching client")??;
    let swept = swept?;
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1024)
        .query_async(&mut connection)
        .await?;
    let longest_command = slow.iter().filter_map(slow_entry_micros).max();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await?;

    let count = |field: &str| swept[field].as_u64().unwrap_or_default();
    let row = ReaperRow {
        sessions,
        idle,
        fill: fill_took,
        redis_memory,
        sweep: Duration::from_micros(count("sweep_us")),
        scanned: count("scanned"),
        reaped: count("reaped"),
        failed: count("failed"),
        probe: latencies.summary(),
        sweeper_peak_rss: swept["peak_rss_bytes"].as_u64(),
        longest_command: longest_command.map(Duration::from_micros),
    };
    ensure!(
        row.scanned == sessions as u64 && row.reaped == idle as u64 && row.failed == 0,
        "the sweep over {sessions} sessions ({idle} idle) did not do its job: {swept}"
    );
    Ok(row)
}

/// How long a slow log entry's command ran, in µs (an entry is an array
/// of id, time, duration, arguments, ...).
fn slow_entry_micros(entry: &redis::Value) -> Option<u64> {
    match entry {
        redis::Value::Array(fields) => match fields.get(2)? {
            redis::Value::Int(micros) => u64::try_from(*micros).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The user of session `n`.
fn user(n: usize) -> String {
    format!("reap-{n:07}")
}

/// Writes `sessions` records, every hundredth idle for longer than
/// `idle_timeout`; returns how many are idle.
async fn fill(
    connection: &mut redis::aio::MultiplexedConnection,
    sessions: usize,
    idle_timeout: Duration,
) -> Result<usize> {
    let now = mock_state::now_ms();
    let idle_since = now.saturating_sub(idle_timeout.as_millis() as u64 + 10 * 60 * 1000);
    let mut idle = 0;
    for first in (0..sessions).step_by(FILL_BATCH) {
        let mut pipe = redis::pipe();
        let mut users = Vec::with_capacity(FILL_BATCH);
        for n in first..(first + FILL_BATCH).min(sessions) {
            let name = user(n);
            let is_idle = n.is_multiple_of(IDLE_EVERY);
            idle += usize::from(is_idle);
            let record = record(&name, n, if is_idle { idle_since } else { now })?;
            pipe.cmd("SET").arg(session_key(&name)).arg(record).ignore();
            users.push(name);
        }
        pipe.cmd("SADD").arg(INDEX_KEY).arg(&users).ignore();
        let _: () = pipe.query_async(connection).await?;
    }
    Ok(idle)
}

/// The record of an active session as Vessel writes it, its last heartbeat
/// at `last_heartbeat`.
pub fn record(user: &str, n: usize, last_heartbeat: u64) -> Result<String> {
    let id = UserId::parse(user)?;
    let slot = n % (254 * 254);
    Ok(SessionRecord {
        user_id: user.to_string(),
        vm_id: id.vm_id(),
        ip: Some(format!("127.61.{}.{}", slot / 254, slot % 254 + 1)),
        url: Some(format!("http://{}.localhost/", id.public_name())),
        last_heartbeat,
        status: SessionStatus::Active,
        created_at: last_heartbeat.saturating_sub(60 * 60 * 1000),
        updated_at: last_heartbeat,
        owner: String::new(),
        start_step: None,
        start_steps: Vec::new(),
        idle_timeout_ms: None,
        max_age_ms: None,
        project_path: Some(format!("/srv/projects/{user}")),
        started_by: None,
        extra: serde_json::Map::new(),
    }
    .to_json())
}

/// Sends `GET key` every [`PROBE_EVERY`] until `done`, recording the
/// latencies while `recording`.
async fn watch(
    mut connection: redis::aio::MultiplexedConnection,
    key: String,
    recording: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> Result<Latencies> {
    let mut latencies = Latencies::default();
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !done.load(Ordering::Relaxed) {
        ticks.tick().await;
        let sent = Instant::now();
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await?;
        let took = sent.elapsed();
        ensure!(value.is_some(), "{key} is missing");
        if recording.load(Ordering::Relaxed) {
            latencies.record(took);
        }
    }
    Ok(latencies)
}

/// Runs `--sweep-once` in a child process; `recording` is on while it
/// sweeps. Returns what it printed when it was done.
async fn sweep_in_child(config: &Path, recording: &AtomicBool) -> Result<Value> {
    let exe = std::env::current_exe().context("this harness's path")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--sweep-once")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the sweeper")?;
    let stdout = child.stdout.take().context("the sweeper's output")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut swept = None;
    while let Some(line) = lines.next_line().await? {
        if line == SWEEPING {
            recording.store(true, Ordering::Relaxed);
        } else if let Some(report) = line.strip_prefix(SWEPT) {
            recording.store(false, Ordering::Relaxed);
            swept = Some(serde_json::from_str(report.trim())?);
        }
    }
    recording.store(false, Ordering::Relaxed);
    let status = child.wait().await?;
    ensure!(status.success(), "the sweeper failed ({status})");
    swept.ok_or_else(|| anyhow!("the sweeper did not report"))
}

/// What the sweeper prints just before it sweeps.
const SWEEPING: &str = "sweeping";
/// What the sweeper's report follows.
const SWEPT: &str = "swept ";

/// The sweeper (`vessel-bench --sweep-once CONFIG`): builds a host from
/// `config` and runs one Reaper sweep, printing [`SWEEPING`] before it and
/// a JSON report after it.
pub async fn sweep_once(config: &Path) -> Result<()> {
    let config = Config::load(Some(config), |_| None)?;
    let reaper_config = config.reaper.clone();
    let app = App::build(config).await?;
    let reaper = Reaper::new(app.manager().clone(), reaper_config.clone());
    let mut out = std::io::stdout();
    writeln!(out, "{SWEEPING}")?;
    out.flush()?;
    // On the thread and at the priority the host gives its Reaper.
    let (swept_tx, swept_rx) = tokio::sync::oneshot::channel();
    let sweep = async move {
        let began = Instant::now();
        let report = reaper.sweep().await;
        let _ = swept_tx.send((report, began.elapsed()));
    };
    vessel::background::spawn_niced("vessel-reaper", reaper_config.nice, sweep).await?;
    let (report, took) = swept_rx.await.context("the sweep ended without a report")?;
    let report = json!({
        "sweep_us": took.as_micros() as u64,
        "scanned": report.scanned,
        "reaped": report.reaped,
        "unstuck": report.unstuck,
        "failed": report.failed,
        "invalid": report.invalid,
        "peak_rss_bytes": rss::own_peak(),
    });
    writeln!(out, "{SWEPT}{report}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_records_are_valid_records_of_their_key() {
        let json = record(&user(42), 42, 1_700_000_000_000).unwrap();
        let parsed = SessionRecord::from_json(json.as_bytes(), &user(42)).unwrap();
        assert_eq!(parsed.status, SessionStatus::Active);
        assert_eq!(parsed.last_heartbeat, 1_700_000_000_000);
        assert!(parsed.ip.unwrap().starts_with("127.61."));
    }
}
