//! The run: which rows there are, what each one runs against, the order
//! they run in, and what they come to.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::json;
use vessel_tests::{RedisServer, plugin_dir, project_dir};

use crate::bare_http::BareServer;
use crate::hosts::{Liveness, StoreHosts};
use crate::http::{Call, Connection};
use crate::load::{self, Load, Window, Worker};
use crate::plugin::PluginHost;
use crate::reaper::{self, ReaperRow};
use crate::resp::{Expect, RawRedis};
use crate::stats::{human, human_rate};
use crate::{Options, StoreKind, cpu, rss};

/// What a load row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A raw Redis `GET` of a session-sized JSON value: the read baseline.
    RedisGet,
    /// A raw Redis `SET` of a session-sized JSON value: the write baseline.
    RedisSet,
    /// `GET /healthz` of a bare server on the host's HTTP stack (axum,
    /// hyper, tokio), answering a fixed body: no middleware, no store. The
    /// HTTP baseline (see [`crate::bare_http`]).
    RawHttp,
    /// `GET /healthz`: HTTP through the host's middleware and one store
    /// ping, no session: what every other HTTP row costs at least.
    Healthz,
    /// `GET /status/{user}` of a running session.
    Status,
    /// `POST /heartbeat` of a running session.
    Heartbeat,
    /// `POST /start` of a running session, liveness `inspect`.
    HitInspect,
    /// `POST /start` of a running session, liveness `tcp`.
    HitTcp,
    /// `POST /start` of a running session, liveness `none`.
    HitNone,
    /// `POST /start` without a session, on the mock plugins; each followed
    /// by an untimed `POST /stop`.
    ColdStart,
    /// The mock VM's `inspect`, through the plugin runtime, in-process.
    PluginInspect,
    /// What the mock VM's `inspect` does, as native code.
    NativeInspect,
    /// The plugin calls of a cold start (`create`, `copy-to`,
    /// `add-route`), in-process.
    PluginColdCalls,
}

impl Op {
    /// The rows run against a store's hosts, in report order.
    pub const HTTP: [Op; 7] = [
        Op::Healthz,
        Op::Status,
        Op::Heartbeat,
        Op::HitInspect,
        Op::HitTcp,
        Op::HitNone,
        Op::ColdStart,
    ];

    /// The in-process plugin rows, in report order.
    pub const PLUGIN: [Op; 3] = [Op::PluginInspect, Op::NativeInspect, Op::PluginColdCalls];

    /// The row's id in JSON and in `--only`.
    pub fn id(self) -> &'static str {
        match self {
            Op::RedisGet => "redis_get",
            Op::RedisSet => "redis_set",
            Op::RawHttp => "raw_http",
            Op::Healthz => "healthz",
            Op::Status => "status",
            Op::Heartbeat => "heartbeat",
            Op::HitInspect => "hit_inspect",
            Op::HitTcp => "hit_tcp",
            Op::HitNone => "hit_none",
            Op::ColdStart => "start_cold",
            Op::PluginInspect => "plugin_inspect",
            Op::NativeInspect => "native_inspect",
            Op::PluginColdCalls => "plugin_cold_calls",
        }
    }

    /// The family `--only` also selects it by.
    pub fn family(self) -> &'static str {
        match self {
            Op::RedisGet | Op::RedisSet | Op::RawHttp => "raw",
            Op::Healthz => "healthz",
            Op::Status => "status",
            Op::Heartbeat => "heartbeat",
            Op::HitInspect | Op::HitTcp | Op::HitNone => "hit",
            Op::ColdStart => "cold",
            Op::PluginInspect | Op::NativeInspect | Op::PluginColdCalls => "plugin",
        }
    }

    /// The row for people.
    pub fn label(self) -> &'static str {
        match self {
            Op::RedisGet => "raw Redis GET (baseline)",
            Op::RedisSet => "raw Redis SET (baseline)",
            Op::RawHttp => "bare HTTP GET: axum, no middleware, no store (baseline)",
            Op::Healthz => "GET /healthz (HTTP and a store ping)",
            Op::Status => "GET /status/{user}",
            Op::Heartbeat => "POST /heartbeat",
            Op::HitInspect => "POST /start hit, liveness inspect",
            Op::HitTcp => "POST /start hit, liveness tcp",
            Op::HitNone => "POST /start hit, liveness none",
            Op::ColdStart => "POST /start cold (mock plugins)",
            Op::PluginInspect => "mock-vm inspect via the plugin runtime",
            Op::NativeInspect => "mock-vm inspect's work, native",
            Op::PluginColdCalls => "cold start's plugin calls (create, copy-to, add-route)",
        }
    }
}

/// One row the run will measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// What it measures.
    pub op: Op,
    /// Against which store (`None`: in-process, no store involved).
    pub store: Option<StoreKind>,
    /// Its workers.
    pub concurrency: usize,
}

impl Planned {
    /// The words `--only` matches.
    fn tags(&self) -> Vec<String> {
        let mut tags = vec![
            self.op.id().to_string(),
            self.op.family().to_string(),
            format!("c{}", self.concurrency),
        ];
        if let Some(store) = self.store {
            tags.push(store.name().to_string());
        }
        tags
    }
}

/// Every load row the options ask for, in the order they run.
pub fn plan(options: &Options) -> Vec<Planned> {
    let mut rows = Vec::new();
    for &store in &options.stores {
        let mut add = |op: Op, levels: &[usize]| {
            for &concurrency in levels {
                rows.push(Planned {
                    op,
                    store: Some(store),
                    concurrency,
                });
            }
        };
        if store == StoreKind::Redis {
            add(Op::RedisGet, &options.concurrency);
            add(Op::RedisSet, &options.concurrency);
            add(Op::RawHttp, &options.concurrency);
        }
        for op in Op::HTTP {
            add(op, &options.concurrency);
        }
    }
    for op in Op::PLUGIN {
        rows.push(Planned {
            op,
            store: None,
            concurrency: 1,
        });
    }
    rows.retain(|row| options.selects(&row.tags()));
    rows
}

/// The Reaper rows the options ask for: their session counts.
pub fn plan_reaper(options: &Options) -> Vec<usize> {
    if !options.stores.contains(&StoreKind::Redis) {
        return Vec::new();
    }
    options
        .reaper_sessions
        .iter()
        .copied()
        .filter(|n| options.selects(&["reaper".into(), "redis".into(), n.to_string()]))
        .collect()
}

/// One measured load row.
#[derive(Debug, Clone)]
pub struct LoadRow {
    /// What it measured.
    pub row: Planned,
    /// What its workers did.
    pub load: Load,
    /// The peak resident memory of the host that served it, during the row.
    pub host_peak_rss: Option<u64>,
    /// The CPU the serving process (the host, redis-server, or this
    /// harness for in-process rows) spent in the measured window, and the
    /// machine's steal meanwhile.
    pub cpu: cpu::Usage,
}

impl LoadRow {
    /// The serving process's CPU time per answered request.
    pub fn cpu_per_request(&self) -> Option<Duration> {
        self.cpu.per_request(self.load.throughput())
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// The options it ran with.
    pub options: Options,
    /// `dev` or `release`.
    pub profile: &'static str,
    /// The CPUs available.
    pub cpus: usize,
    /// The CPU, as `/proc/cpuinfo` names it.
    pub cpu_model: String,
    /// The day of the run (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// Set-up, measurement and tear-down.
    pub elapsed: Duration,
    /// The load rows, in the order they ran.
    pub rows: Vec<LoadRow>,
    /// The Reaper rows.
    pub reaper: Vec<ReaperRow>,
}

impl Results {
    /// The row of `op` on `store` at `concurrency`, if measured.
    pub fn row(&self, op: Op, store: Option<StoreKind>, concurrency: usize) -> Option<&LoadRow> {
        self.rows.iter().find(|row| {
            row.row.op == op && row.row.store == store && row.row.concurrency == concurrency
        })
    }
}

/// Runs every row the options ask for.
pub async fn run(options: &Options) -> Result<Results> {
    let began = Instant::now();
    let planned = plan(options);
    let reaper_rows = plan_reaper(options);
    ensure!(
        !planned.is_empty() || !reaper_rows.is_empty(),
        "--only {:?} selects no row (see --help)",
        options.only
    );
    preflight()?;
    let root = tempfile::tempdir().context("a temporary directory")?;
    let window = Window {
        warmup: options.warmup,
        duration: options.duration,
    };
    let needs_redis = !reaper_rows.is_empty()
        || planned
            .iter()
            .any(|row| row.store == Some(StoreKind::Redis));
    let redis = needs_redis.then(RedisServer::start);
    let mut rows = Vec::new();

    for &store in &options.stores {
        let of_store: Vec<Planned> = planned
            .iter()
            .copied()
            .filter(|row| row.store == Some(store))
            .collect();
        if of_store.is_empty() {
            continue;
        }
        let redis_url = redis.as_ref().map(RedisServer::url);
        let raw: Vec<&Planned> = of_store
            .iter()
            .filter(|row| row.op.family() == "raw")
            .collect();
        if let Some(url) = &redis_url
            && !raw.is_empty()
        {
            let sessions = options.max_concurrency();
            prepare_raw(url, sessions).await?;
            let server = redis.as_ref().and_then(RedisServer::pid);
            for row in raw.iter().filter(|row| row.op != Op::RawHttp) {
                let workers = raw_workers(url, row).await?;
                rows.push(measure(row, window, workers, server).await);
            }
            let bare: Vec<&&Planned> = raw.iter().filter(|row| row.op == Op::RawHttp).collect();
            if !bare.is_empty() {
                let server = BareServer::start(options.host_threads).await?;
                for row in bare {
                    let workers = bare_workers(&server, row).await?;
                    rows.push(measure(row, window, workers, server.pid()).await);
                }
            }
        }
        let http: Vec<&Planned> = of_store
            .iter()
            .filter(|row| Op::HTTP.contains(&row.op))
            .collect();
        if http.is_empty() {
            continue;
        }
        let binary = vessel_binary(options)?;
        progress(&format!(
            "starting the {} store's hosts ({}) with {} sessions each",
            store.name(),
            binary.display(),
            options.max_concurrency()
        ));
        let dir = root.path().join(store.name());
        let hosts = StoreHosts::start(
            store,
            &binary,
            redis_url.as_deref(),
            &dir,
            options.max_concurrency(),
            options.host_threads,
        )
        .await?;
        let mut measured = Ok(());
        for row in http {
            match measure_http(&hosts, row, window).await {
                Ok(measured_row) => rows.push(measured_row),
                Err(error) => {
                    measured = Err(error);
                    break;
                }
            }
        }
        let stopped = hosts.stop();
        measured?;
        stopped?;
        if let Some(redis) = &redis {
            flush(&redis.url()).await?;
        }
    }

    let plugin: Vec<&Planned> = planned.iter().filter(|row| row.store.is_none()).collect();
    if !plugin.is_empty() {
        progress("building a host in this process for the plugin rows");
        let dir = root.path().join("plugin");
        let host = PluginHost::build(&dir).await?;
        let vm_id = host.create_vm("plugin-inspect").await?;
        let project = project_dir(&dir, "project");
        // The calls run in this process: its CPU is theirs (and the one
        // worker's, which does nothing else).
        let harness = Some(std::process::id());
        for row in plugin {
            let measured_row = match row.op {
                Op::PluginInspect => {
                    measure(row, window, vec![host.inspect_worker(&vm_id)], harness).await
                }
                Op::NativeInspect => {
                    measure(
                        row,
                        window,
                        vec![host.native_inspect_worker(&vm_id)],
                        harness,
                    )
                    .await
                }
                _ => {
                    let worker = host.cold_calls_worker("plugin-cold", &project)?;
                    measure(row, window, vec![worker], harness).await
                }
            };
            rows.push(measured_row);
        }
    }

    let mut reaper = Vec::new();
    if let Some(redis) = &redis {
        for sessions in reaper_rows {
            progress(&format!(
                "Reaper: filling Redis with {sessions} sessions, then one sweep"
            ));
            let dir = root.path().join(format!("reaper-{sessions}"));
            let row = reaper::run(redis, sessions, &dir)
                .await
                .with_context(|| format!("the Reaper row over {sessions} sessions"))?;
            progress(&format!(
                "Reaper over {sessions}: sweep {}, watching client's worst {}",
                human(row.sweep),
                row.probe.map_or("–".into(), |probe| human(probe.max))
            ));
            reaper.push(row);
        }
    }
    drop(redis);
    progress("removing the temporary directory (the mocks' call records)");
    drop(root);
    Ok(Results {
        options: options.clone(),
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpu_model(),
        date: today(),
        elapsed: began.elapsed(),
        rows,
        reaper,
    })
}

fn progress(message: &str) {
    eprintln!("vessel-bench: {message}");
}

/// Fails early, with the command to run, when something the run needs is
/// missing.
fn preflight() -> Result<()> {
    for name in ["mock_vm", "mock_proxy"] {
        let path = plugin_dir().join(format!("{name}.wasm"));
        ensure!(
            path.exists(),
            "{} is missing: run scripts/build-plugins first",
            path.display()
        );
    }
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    ensure!(
        found,
        "redis-server is not installed (scripts/test installs it)"
    );
    Ok(())
}

/// The `vessel` binary the hosts run: `--vessel`, else the one next to this
/// harness (same target directory and profile), built first when the
/// harness runs under `cargo run`, so that it is never stale.
fn vessel_binary(options: &Options) -> Result<PathBuf> {
    if let Some(path) = &options.vessel {
        // The hosts run in directories of their own: an absolute path.
        return std::fs::canonicalize(path).with_context(|| format!("--vessel {}", path.display()));
    }
    let exe = std::env::current_exe().context("this harness's path")?;
    let sibling = exe.with_file_name("vessel");
    let release = !cfg!(debug_assertions);
    if let Some(cargo) = std::env::var_os("CARGO") {
        progress(
            "building the vessel binary (cargo build -p vessel-tests -p vessel-host --bin vessel)",
        );
        let mut build = std::process::Command::new(cargo);
        // With the harness's own package selected too, the dependencies'
        // features are the ones the harness was built with: nothing is
        // rebuilt for a different feature set.
        build.args([
            "build",
            "--quiet",
            "-p",
            "vessel-tests",
            "-p",
            "vessel-host",
            "--bin",
            "vessel",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        ensure!(status.success(), "building the vessel binary failed");
    }
    ensure!(
        sibling.exists(),
        "{} is missing: run `cargo build{} -p vessel-host`, or pass --vessel PATH",
        sibling.display(),
        if release { " --release" } else { "" }
    );
    Ok(sibling)
}

/// Runs one row that no host serves (raw Redis, in-process plugin calls);
/// `server` is the process whose CPU the row costs.
async fn measure<W: Worker>(
    row: &Planned,
    window: Window,
    workers: Vec<W>,
    server: Option<u32>,
) -> LoadRow {
    let (load, cpu) = load_and_cpu(workers, window, server).await;
    report_progress(row, &load);
    LoadRow {
        row: *row,
        load,
        host_peak_rss: None,
        cpu,
    }
}

/// Runs `workers` over `window` while reading the CPU of `server` (and
/// the machine's steal) over the measured part of it.
async fn load_and_cpu<W: Worker>(
    workers: Vec<W>,
    window: Window,
    server: Option<u32>,
) -> (Load, cpu::Usage) {
    let watching = tokio::spawn(cpu::watch(server, window.warmup, window.duration));
    let load = load::run(workers, window).await;
    let cpu = watching.await.unwrap_or_default();
    (load, cpu)
}

fn report_progress(row: &Planned, load: &Load) {
    let store = row.store.map_or("in-process", StoreKind::name);
    let latency = load.summary().map_or("–".into(), |s| {
        format!("p50 {}, p99 {}", human(s.p50), human(s.p99))
    });
    let errors = match &load.first_error {
        Some(first) => format!(", {} errors (first: {first})", load.errors),
        None => String::new(),
    };
    progress(&format!(
        "{store} {} c={}: {}, {latency}{errors}",
        row.op.id(),
        row.concurrency,
        human_rate(load.throughput()),
    ));
}

/// Sends one HTTP request and checks its answer; `undo`, if any, after it,
/// untimed.
struct HttpWorker {
    connection: Connection,
    call: Call,
    undo: Option<Call>,
}

impl Worker for HttpWorker {
    async fn call(&mut self) -> Result<()> {
        self.connection.send(&self.call).await
    }

    async fn reset(&mut self) -> Result<()> {
        match &self.undo {
            Some(undo) => self.connection.send(undo).await,
            None => Ok(()),
        }
    }
}

/// Runs one HTTP row against the host it names, with that host's peak
/// memory during the row.
async fn measure_http(hosts: &StoreHosts, row: &Planned, window: Window) -> Result<LoadRow> {
    let liveness = match row.op {
        Op::HitTcp => Liveness::Tcp,
        Op::HitNone => Liveness::None,
        _ => Liveness::Inspect,
    };
    let host = hosts.host(liveness);
    let project = hosts.project.display().to_string();
    let mut workers = Vec::with_capacity(row.concurrency);
    for i in 0..row.concurrency {
        let user = host
            .users
            .get(i)
            .ok_or_else(|| anyhow!("no session for worker {i}"))?;
        let start =
            |user: &str| Call::post("/start", &json!({"userId": user, "projectPath": project}));
        let (call, undo) = match row.op {
            Op::Healthz => (Call::get("/healthz").expecting(&[r#""status":"ok""#]), None),
            Op::Status => (
                Call::get(format!("/status/{user}")).expecting(&[r#""status":"active""#]),
                None,
            ),
            Op::Heartbeat => (
                Call::post("/heartbeat", &json!({ "userId": user }))
                    .expecting(&[r#""status":"active""#]),
                None,
            ),
            Op::HitInspect | Op::HitTcp => (
                start(user).expecting(&[r#""reused":true"#, r#""health":"ok""#]),
                None,
            ),
            Op::HitNone => (
                start(user).expecting(&[r#""reused":true"#, r#""health":"unchecked""#]),
                None,
            ),
            Op::ColdStart => {
                let user = format!("cold-{i}");
                (
                    start(&user).expecting(&[r#""reused":false"#]),
                    Some(
                        Call::post("/stop", &json!({ "userId": user }))
                            .expecting(&[r#""stopped":true"#]),
                    ),
                )
            }
            other => return Err(anyhow!("{} is not an HTTP row", other.id())),
        };
        workers.push(HttpWorker {
            connection: Connection::open(host.addr).await?,
            call,
            undo,
        });
    }
    let pid = host.pid();
    // Without a reset (an old kernel), the peak is the host's since it
    // started: still an upper bound of the row's.
    rss::reset_peak(pid);
    let (load, cpu) = load_and_cpu(workers, window, Some(pid)).await;
    let host_peak_rss = rss::peak(pid);
    report_progress(row, &load);
    Ok(LoadRow {
        row: *row,
        load,
        host_peak_rss,
        cpu,
    })
}

/// The key raw Redis worker `i` reads and writes.
fn raw_key(i: usize) -> String {
    format!("bench:raw:{i}")
}

/// Writes the values the raw `GET` rows read: each a session record as
/// Vessel writes it.
async fn prepare_raw(url: &str, workers: usize) -> Result<()> {
    let mut connection = redis_connection(url).await?;
    let mut pipe = redis::pipe();
    for i in 0..workers {
        pipe.cmd("SET")
            .arg(raw_key(i))
            .arg(reaper::record(
                &format!("raw-{i}"),
                i,
                mock_state::now_ms(),
            )?)
            .ignore();
    }
    let _: () = pipe.query_async(&mut connection).await?;
    Ok(())
}

/// Throws away everything in the harness's Redis.
async fn flush(url: &str) -> Result<()> {
    let mut connection = redis_connection(url).await?;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await?;
    Ok(())
}

/// A connection to the harness's Redis without redis-rs's default 500 ms
/// answer timeout: a slow answer is a measurement (or a long fill or
/// flush), not an error.
pub async fn redis_connection(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// Sends one raw Redis command on a connection of its own.
struct RedisWorker {
    connection: RawRedis,
}

impl Worker for RedisWorker {
    async fn call(&mut self) -> Result<()> {
        self.connection.call().await
    }
}

/// The workers of a raw Redis row: one connection each, as the clients of
/// `redis-benchmark -c N` have.
async fn raw_workers(url: &str, row: &Planned) -> Result<Vec<RedisWorker>> {
    let write = row.op == Op::RedisSet;
    let mut workers = Vec::with_capacity(row.concurrency);
    for i in 0..row.concurrency {
        let key = raw_key(i);
        let connection = if write {
            let value = reaper::record(&format!("raw-{i}"), i, mock_state::now_ms())?;
            let args: [&[u8]; 3] = [b"SET", key.as_bytes(), value.as_bytes()];
            RawRedis::open(url, &args, Expect::Ok).await?
        } else {
            let args: [&[u8]; 2] = [b"GET", key.as_bytes()];
            RawRedis::open(url, &args, Expect::Value).await?
        };
        workers.push(RedisWorker { connection });
    }
    Ok(workers)
}

/// The workers of the bare HTTP row: one connection each to `server`.
async fn bare_workers(server: &BareServer, row: &Planned) -> Result<Vec<HttpWorker>> {
    let mut workers = Vec::with_capacity(row.concurrency);
    for _ in 0..row.concurrency {
        workers.push(HttpWorker {
            connection: Connection::open(server.addr).await?,
            call: Call::get("/healthz").expecting(&[r#""status":"ok""#]),
            undo: None,
        });
    }
    Ok(workers)
}

/// The CPU's model name, as `/proc/cpuinfo` gives it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_counted_from_the_epoch() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn only_selects_rows_by_id_family_store_and_concurrency() {
        let mut options = Options::default();
        let all = plan(&options);
        // Two stores × 7 ops (cold starts included) × 3 levels, raw Redis
        // GET and SET and bare HTTP × 3 levels, and the 3 plugin rows.
        assert_eq!(all.len(), 2 * 7 * 3 + 3 * 3 + 3);
        assert_eq!(plan_reaper(&options), vec![100_000, 1_000_000]);
        options.only = vec!["raw_http".into()];
        assert_eq!(plan(&options).len(), 3);
        options.only = vec!["raw+c32".into()];
        assert_eq!(plan(&options).len(), 3);

        options.only = vec!["embedded+heartbeat".into(), "plugin".into()];
        let some = plan(&options);
        assert_eq!(some.len(), 3 + 3, "{some:?}");
        assert!(plan_reaper(&options).is_empty());

        options.only = vec!["hit+c32".into(), "reaper+100000".into()];
        let hits = plan(&options);
        assert_eq!(hits.len(), 2 * 3, "{hits:?}");
        assert!(
            hits.iter()
                .all(|row| row.op.family() == "hit" && row.concurrency == 32)
        );
        assert_eq!(plan_reaper(&options), vec![100_000]);

        options.only = vec!["raw".into()];
        options.stores = vec![StoreKind::Embedded];
        assert!(plan(&options).is_empty());
        assert!(
            plan_reaper(&options).is_empty(),
            "the Reaper rows are Redis's"
        );
    }
}
