//! The measured scenario: the hosts of each store, the sessions they hold,
//! the operations, and the interleaved rounds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use vessel::config::Liveness;
use vessel::ids::UserId;
use vessel_tests::{Api, RedisServer, TestHost, free_port, plugin_dir, project_dir, test_config};

use crate::stats::{Samples, Summary};
use crate::{Options, StoreKind};

/// One measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `GET /healthz`: an HTTP round trip and one store ping. The baseline.
    Healthz,
    /// A raw Redis `GET session:{user}` on the harness's own connection.
    RedisGet,
    /// The store's `get` of a session, called in-process (no HTTP).
    StoreGet,
    /// The VM driver's `inspect` of a running VM, called in-process (no
    /// HTTP, no store): the plugin call a hit with liveness `inspect` adds.
    VmInspect,
    /// `POST /start` of a running session, liveness `inspect`.
    HitInspect,
    /// `POST /start` of a running session, liveness `tcp`.
    HitTcp,
    /// `POST /start` of a running session, liveness `none`.
    HitNone,
    /// `POST /heartbeat`.
    Heartbeat,
    /// `GET /status/{user}`.
    Status,
    /// `POST /start` without a session: create, copy, route, store.
    ColdStart,
    /// `POST /stop` of the session a cold start made.
    Stop,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 11] = [
        Op::Healthz,
        Op::RedisGet,
        Op::StoreGet,
        Op::VmInspect,
        Op::HitInspect,
        Op::HitTcp,
        Op::HitNone,
        Op::Heartbeat,
        Op::Status,
        Op::ColdStart,
        Op::Stop,
    ];

    /// Whether the operation runs once every round (all but the cold start
    /// and the stop, which run together in fewer rounds).
    fn is_fast(self) -> bool {
        !matches!(self, Op::ColdStart | Op::Stop)
    }

    /// The operation's id in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Op::Healthz => "healthz",
            Op::RedisGet => "redis_get",
            Op::StoreGet => "store_get",
            Op::VmInspect => "vm_inspect",
            Op::HitInspect => "start_hit_inspect",
            Op::HitTcp => "start_hit_tcp",
            Op::HitNone => "start_hit_none",
            Op::Heartbeat => "heartbeat",
            Op::Status => "status",
            Op::ColdStart => "start_cold",
            Op::Stop => "stop",
        }
    }

    /// The operation for people.
    pub fn label(self) -> &'static str {
        match self {
            Op::Healthz => "GET /healthz (baseline)",
            Op::RedisGet => "raw Redis GET session:{user}",
            Op::StoreGet => "store get, in-process (no HTTP)",
            Op::VmInspect => "mock-vm inspect, in-process (plugin call only)",
            Op::HitInspect => "POST /start hit, liveness inspect",
            Op::HitTcp => "POST /start hit, liveness tcp",
            Op::HitNone => "POST /start hit, liveness none",
            Op::Heartbeat => "POST /heartbeat",
            Op::Status => "GET /status/{user}",
            Op::ColdStart => "POST /start cold (mock plugins)",
            Op::Stop => "POST /stop",
        }
    }

    /// Whether the operation exists for `store`.
    pub fn applies_to(self, store: StoreKind) -> bool {
        self != Op::RedisGet || store == StoreKind::Redis
    }
}

/// One row of the results.
#[derive(Debug, Clone)]
pub struct Row {
    /// The operation.
    pub op: Op,
    /// Its latencies.
    pub summary: Summary,
    /// The plugin calls it made on average, where the mocks' call records
    /// tell (`None` for operations that have no business calling plugins).
    pub plugin_calls_per_op: Option<f64>,
}

impl Row {
    /// The median.
    pub fn median(&self) -> Duration {
        self.summary.median
    }
}

/// The rows of one store.
#[derive(Debug, Clone)]
pub struct StoreResult {
    /// The store.
    pub store: StoreKind,
    /// One row per operation, in [`Op::ALL`] order.
    pub rows: Vec<Row>,
}

impl StoreResult {
    /// The row of `op`, if measured.
    pub fn row(&self, op: Op) -> Option<&Row> {
        self.rows.iter().find(|row| row.op == op)
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
    /// Set-up, measurement and tear-down.
    pub elapsed: Duration,
    /// One entry per store, in the order asked for.
    pub stores: Vec<StoreResult>,
}

/// Runs the whole benchmark: sets up the hosts, measures, tears down.
pub async fn run(options: &Options) -> Result<Results> {
    let began = Instant::now();
    preflight(options)?;
    let root = tempfile::tempdir().context("a temporary directory")?;
    let redis = options
        .stores
        .contains(&StoreKind::Redis)
        .then(RedisServer::start);
    let mut benches = Vec::new();
    for &store in &options.stores {
        progress(&format!("setting up the {} store", store.name()));
        match Bench::setup(store, redis.as_ref(), root.path()).await {
            Ok(bench) => benches.push(bench),
            Err(error) => {
                let _ = tear_down(benches).await; // already reported on stderr
                return Err(error.context(format!("setting up the {} store", store.name())));
            }
        }
    }
    let measured = measure(&mut benches, options).await;
    let stores = match measured {
        Ok(()) => benches
            .iter()
            .map(Bench::result)
            .collect::<Result<Vec<_>>>(),
        Err(error) => Err(error),
    };
    progress("stopping the hosts");
    let torn_down = tear_down(benches).await;
    drop(redis);
    drop(root);
    let stores = stores?;
    torn_down?;
    Ok(Results {
        options: options.clone(),
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        elapsed: began.elapsed(),
        stores,
    })
}

fn progress(message: &str) {
    eprintln!("vessel-bench: {message}");
}

/// Fails early, with the command to run, when something the run needs is
/// missing.
fn preflight(options: &Options) -> Result<()> {
    for name in ["mock_vm", "mock_proxy"] {
        let path = plugin_dir().join(format!("{name}.wasm"));
        ensure!(
            path.exists(),
            "{} is missing: run scripts/build-plugins first",
            path.display()
        );
    }
    if options.stores.contains(&StoreKind::Redis) {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false);
        ensure!(
            found,
            "redis-server is not installed (scripts/test installs it), or use --store embedded"
        );
    }
    Ok(())
}

/// Runs the warm-up rounds and then the measured ones. Each round runs
/// every fast operation of every store once, and in some rounds a cold
/// start and stop per store, in an order shuffled anew each round (from a
/// fixed seed, so runs are comparable).
async fn measure(benches: &mut [Bench], options: &Options) -> Result<()> {
    let fast: Vec<(usize, Op)> = benches
        .iter()
        .enumerate()
        .flat_map(|(i, bench)| {
            Op::ALL
                .into_iter()
                .filter(move |op| op.is_fast() && op.applies_to(bench.store))
                .map(move |op| (i, op))
        })
        .collect();
    let cold_warmup = if options.warmup == 0 {
        0
    } else {
        (options.warmup * options.cold_iterations / options.iterations).clamp(1, options.warmup)
    };
    let mut rng = XorShift(0x5eed_7e55_e1b3_2024);
    for (record, rounds, colds) in [
        (false, options.warmup, cold_warmup),
        (true, options.iterations, options.cold_iterations),
    ] {
        if record {
            progress(&format!(
                "measuring {rounds} rounds ({colds} with a cold start and stop)"
            ));
            for bench in benches.iter_mut() {
                bench.calls_before = bench.call_counts();
            }
        } else if rounds > 0 {
            progress(&format!("warming up: {rounds} rounds"));
        }
        for round in 0..rounds {
            let mut slots = fast.clone();
            if spread(round, rounds, colds) {
                slots.extend((0..benches.len()).map(|i| (i, Op::ColdStart)));
            }
            rng.shuffle(&mut slots);
            for (i, op) in slots {
                let bench = &mut benches[i];
                bench.step(op, record).await.with_context(|| {
                    format!("{} on the {} store", op.label(), bench.store.name())
                })?;
            }
        }
    }
    for bench in benches.iter_mut() {
        bench.calls_after = bench.call_counts();
    }
    Ok(())
}

/// Whether `round` of `rounds` is one of `count` rounds spread evenly.
fn spread(round: usize, rounds: usize, count: usize) -> bool {
    (round + 1) * count / rounds > round * count / rounds
}

/// A small deterministic shuffler (xorshift64*), enough to vary the order.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Stops every host (and the sessions they hold) and the TCP listeners.
async fn tear_down(benches: Vec<Bench>) -> Result<()> {
    let mut first_error = None;
    for bench in benches {
        if let Err(error) = bench.tear_down().await {
            progress(&format!("tear-down: {error:#}"));
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The calls the mock plugins of one host recorded, by `vm:<op>` and
/// `proxy:<op>`.
type CallCounts = HashMap<String, usize>;

/// One store's hosts and sessions. There is one host per liveness mode,
/// since the mode is a host setting; the `inspect` host (the mock VM's
/// default) also serves the baselines, heartbeats, status reads, cold starts
/// and stops. Each host has its own data directory and user, so the three
/// share the Redis store without meeting.
struct Bench {
    store: StoreKind,
    main: TestHost,
    tcp: TestHost,
    none: TestHost,
    main_api: Api,
    tcp_api: Api,
    none_api: Api,
    /// The harness's own Redis connection (Redis store only).
    redis: Option<redis::aio::MultiplexedConnection>,
    project: PathBuf,
    /// Listens where the `tcp` host's VM claims to serve, so that its
    /// liveness check finds the VM alive.
    listener: tokio::task::JoinHandle<()>,
    samples: HashMap<Op, Samples>,
    calls_before: [CallCounts; 3],
    calls_after: [CallCounts; 3],
}

const HIT_USER: &str = "bench-hit-inspect";
const TCP_USER: &str = "bench-hit-tcp";
const NONE_USER: &str = "bench-hit-none";
const COLD_USER: &str = "bench-cold";

impl Bench {
    async fn setup(store: StoreKind, redis: Option<&RedisServer>, root: &Path) -> Result<Bench> {
        let dir = root.join(store.name());
        std::fs::create_dir_all(&dir).context("the store's directory")?;
        let project = project_dir(&dir, "project");
        let redis_url = match store {
            StoreKind::Redis => Some(
                redis
                    .ok_or_else(|| anyhow!("the Redis store needs a redis-server"))?
                    .url(),
            ),
            StoreKind::Embedded => None,
        };
        let host = |name: &str, liveness: Liveness, port: Option<u16>| {
            let mut config = test_config(&dir.join(name), redis_url.clone());
            config.plugins.vm.liveness = liveness;
            // No background sweeps or passes between the measured requests.
            config.reaper.enabled = false;
            config.reconcile.enabled = false;
            if let Some(port) = port {
                config.session.ports = vec![port];
            }
            TestHost::start(config)
        };
        let tcp_port = free_port();
        let main = host("inspect", Liveness::Inspect, None).await;
        let tcp = host("tcp", Liveness::Tcp, Some(tcp_port)).await;
        let none = host("none", Liveness::None, None).await;
        let (main_api, tcp_api, none_api) = (main.api(), tcp.api(), none.api());

        // The three running sessions the hits find.
        expect_start(&main_api, HIT_USER, &project, false).await?;
        let started = expect_start(&tcp_api, TCP_USER, &project, false).await?;
        let ip: IpAddr = started["ip"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| anyhow!("the tcp host's session has no address: {started}"))?;
        ensure!(
            ip.is_loopback(),
            "the mock VM's address {ip} is not a loopback one"
        );
        let socket = tokio::net::TcpListener::bind((ip, tcp_port))
            .await
            .with_context(|| format!("listening on {ip}:{tcp_port} for the tcp liveness check"))?;
        let listener = tokio::spawn(async move {
            loop {
                match socket.accept().await {
                    Ok((connection, _)) => drop(connection),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
        expect_start(&none_api, NONE_USER, &project, false).await?;

        let redis = match redis_url {
            Some(url) => Some(
                redis::Client::open(url)?
                    .get_multiplexed_async_connection()
                    .await
                    .context("the harness's Redis connection")?,
            ),
            None => None,
        };
        let mut bench = Bench {
            store,
            main,
            tcp,
            none,
            main_api,
            tcp_api,
            none_api,
            redis,
            project,
            listener,
            samples: HashMap::new(),
            calls_before: Default::default(),
            calls_after: Default::default(),
        };
        // Each hit is a hit before anything is measured.
        for op in [Op::HitInspect, Op::HitTcp, Op::HitNone] {
            bench.step(op, false).await?;
        }
        Ok(bench)
    }

    /// Runs `op` once, checks its answer, and records its latency if
    /// `record`. A cold start is followed by the stop of its session.
    async fn step(&mut self, op: Op, record: bool) -> Result<()> {
        let store = self.store.name();
        let took = match op {
            Op::Healthz => {
                let t = Instant::now();
                let answer = self.main_api.get("/healthz").await;
                let took = t.elapsed();
                ensure!(
                    answer.status == 200 && answer.body["store"]["kind"] == store,
                    "answered {} {}",
                    answer.status,
                    answer.body
                );
                took
            }
            Op::RedisGet => {
                let mut connection = self
                    .redis
                    .clone()
                    .ok_or_else(|| anyhow!("no Redis connection"))?;
                let key = vessel::store::redis::session_key(HIT_USER);
                let t = Instant::now();
                let raw: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await?;
                let took = t.elapsed();
                ensure!(raw.is_some(), "{key} is missing");
                took
            }
            Op::StoreGet => {
                let user = UserId::parse(HIT_USER)?;
                let t = Instant::now();
                let record = self.main.manager.store().get(&user).await?;
                let took = t.elapsed();
                ensure!(record.is_some(), "the session of {user} is missing");
                took
            }
            Op::VmInspect => {
                let vm_id = UserId::parse(HIT_USER)?.vm_id();
                let t = Instant::now();
                let info = self.main.manager.vm().inspect(&vm_id).await?;
                let took = t.elapsed();
                ensure!(
                    info.is_some_and(|info| info.state == vessel::plugins::VmState::Running),
                    "{vm_id} is not running"
                );
                took
            }
            Op::HitInspect | Op::HitTcp | Op::HitNone => {
                let (api, user) = match op {
                    Op::HitInspect => (&self.main_api, HIT_USER),
                    Op::HitTcp => (&self.tcp_api, TCP_USER),
                    _ => (&self.none_api, NONE_USER),
                };
                timed_start(api, user, &self.project, true).await?
            }
            Op::Heartbeat => {
                let t = Instant::now();
                let answer = self.main_api.heartbeat(HIT_USER).await;
                let took = t.elapsed();
                ensure!(
                    answer.status == 200,
                    "answered {} {}",
                    answer.status,
                    answer.body
                );
                took
            }
            Op::Status => {
                let t = Instant::now();
                let answer = self.main_api.status(HIT_USER).await;
                let took = t.elapsed();
                ensure!(
                    answer.status == 200 && answer.body["status"] == "active",
                    "answered {} {}",
                    answer.status,
                    answer.body
                );
                took
            }
            Op::ColdStart => {
                let cold = timed_start(&self.main_api, COLD_USER, &self.project, false).await?;
                let t = Instant::now();
                let answer = self.main_api.stop(COLD_USER).await;
                let stop = t.elapsed();
                ensure!(
                    answer.status == 200 && answer.body["stopped"] == true,
                    "{} answered {} {}",
                    Op::Stop.label(),
                    answer.status,
                    answer.body
                );
                if record {
                    self.samples.entry(Op::Stop).or_default().push(stop);
                }
                cold
            }
            Op::Stop => bail!("a stop is measured with the cold start it follows"),
        };
        if record {
            self.samples.entry(op).or_default().push(took);
        }
        Ok(())
    }

    /// The calls the mock plugins of the `inspect`, `tcp` and `none` hosts
    /// have recorded.
    fn call_counts(&self) -> [CallCounts; 3] {
        [&self.main, &self.tcp, &self.none].map(|host| {
            let mut counts = CallCounts::new();
            for (role, state) in [("vm", host.vms()), ("proxy", host.routes())] {
                for call in state.calls() {
                    *counts.entry(format!("{role}:{}", call.op)).or_default() += 1;
                }
            }
            counts
        })
    }

    /// How many calls of `ops` host `index` recorded while measuring (all
    /// of its calls when `ops` is empty).
    fn calls_made(&self, index: usize, ops: &[&str]) -> usize {
        let count = |counts: &CallCounts| -> usize {
            counts
                .iter()
                .filter(|(op, _)| ops.is_empty() || ops.contains(&op.as_str()))
                .map(|(_, n)| n)
                .sum()
        };
        count(&self.calls_after[index]).saturating_sub(count(&self.calls_before[index]))
    }

    fn result(&self) -> Result<StoreResult> {
        let mut rows = Vec::new();
        for op in Op::ALL.into_iter().filter(|op| op.applies_to(self.store)) {
            let samples = self.samples.get(&op).cloned().unwrap_or_default();
            let summary = samples
                .summary()
                .ok_or_else(|| anyhow!("{} was never measured", op.label()))?;
            // The inspect calls of the `inspect` host are the hits' and
            // the direct ones'.
            let direct_inspects = self.samples.get(&Op::VmInspect).map_or(0, Samples::len);
            let calls = match op {
                Op::VmInspect => Some(direct_inspects),
                Op::HitInspect => Some(
                    self.calls_made(0, &["vm:inspect"])
                        .saturating_sub(direct_inspects),
                ),
                Op::HitTcp => Some(self.calls_made(1, &[])),
                Op::HitNone => Some(self.calls_made(2, &[])),
                Op::ColdStart => {
                    Some(self.calls_made(0, &["vm:create", "vm:copy-to", "proxy:add-route"]))
                }
                Op::Stop => Some(self.calls_made(0, &["vm:remove", "proxy:remove-route"])),
                _ => None,
            };
            rows.push(Row {
                op,
                summary,
                plugin_calls_per_op: calls.map(|n| n as f64 / samples.len() as f64),
            });
        }
        Ok(StoreResult {
            store: self.store,
            rows,
        })
    }

    /// Stops the three sessions, then the hosts and the listener.
    async fn tear_down(self) -> Result<()> {
        let mut outcome = Ok(());
        for (api, user) in [
            (&self.main_api, HIT_USER),
            (&self.tcp_api, TCP_USER),
            (&self.none_api, NONE_USER),
        ] {
            let answer = api.stop(user).await;
            if answer.status != 200 && outcome.is_ok() {
                outcome = Err(anyhow!(
                    "stopping {user} answered {} {}",
                    answer.status,
                    answer.body
                ));
            }
        }
        self.listener.abort();
        let _ = self.listener.await;
        for host in [self.main, self.tcp, self.none] {
            host.shutdown().await;
        }
        outcome
    }
}

/// `POST /start` for `user`, checked (200, and `reused` as expected):
/// how long it took and the answer.
async fn start_checked(
    api: &Api,
    user: &str,
    project: &Path,
    reused: bool,
) -> Result<(Duration, Value)> {
    let t = Instant::now();
    let answer = api.start(user, project).await;
    let took = t.elapsed();
    ensure!(
        answer.status == 200 && answer.body["reused"] == reused,
        "POST /start of {user} answered {} {} (expected reused={reused})",
        answer.status,
        answer.body
    );
    Ok((took, answer.body))
}

async fn expect_start(api: &Api, user: &str, project: &Path, reused: bool) -> Result<Value> {
    Ok(start_checked(api, user, project, reused).await?.1)
}

async fn timed_start(api: &Api, user: &str, project: &Path, reused: bool) -> Result<Duration> {
    Ok(start_checked(api, user, project, reused).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_picks_exactly_count_rounds_evenly() {
        for (rounds, count) in [(300, 40), (5, 5), (5, 2), (7, 1), (10, 0)] {
            let picked: Vec<usize> = (0..rounds).filter(|&r| spread(r, rounds, count)).collect();
            assert_eq!(picked.len(), count, "{rounds} rounds, {count}");
        }
        let picked: Vec<usize> = (0..10).filter(|&r| spread(r, 10, 2)).collect();
        assert_eq!(picked, vec![4, 9]);
    }

    #[test]
    fn the_shuffle_keeps_every_item() {
        let mut rng = XorShift(42);
        let mut items: Vec<u32> = (0..20).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
}
