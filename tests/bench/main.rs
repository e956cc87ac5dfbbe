//! `vessel-bench`: how much load Vessel takes, and how fast it answers, as
//! ratios against baselines measured in the same run.
//!
//! One command runs every row, bounded (about ten minutes in the release
//! profile), on loopback only, with its own `redis-server` and hosts:
//!
//! - raw Redis `GET` and `SET` of a session-sized JSON value and a bare
//!   HTTP server on the host's own stack (the baselines), and through the
//!   real `vessel` binary, on the Redis store and on the embedded store:
//!   `GET /healthz` (the middleware and a store ping), `GET /status`,
//!   `POST /heartbeat`, the
//!   cache-hit `POST /start` with each liveness check (`inspect`, `tcp`,
//!   `none`), and the cold `POST /start` on the mock plugins, each at
//!   concurrency 1, 32 and 256: throughput, p50, p99, p99.9 and the
//!   host's peak resident memory during the row;
//! - in-process plugin rows: the mock VM's `inspect` through the plugin
//!   runtime, the same work as native code, and a cold start's three
//!   plugin calls, from which Vessel's own share of a cold start follows;
//! - Reaper rows: one sweep over 100,000 and 1,000,000 sessions in Redis
//!   (1 % idle), with the worst latency another Redis client sees meanwhile;
//! - the bar of issue 12, checked as PASS / MISS lines.
//!
//! Load is closed loop (see [`load`]): N workers, each with its own
//! connection, send requests back to back for `--duration` after
//! `--warmup`. The hosts are separate processes (see [`hosts`]).
//!
//! # Running it
//!
//! ```sh
//! scripts/build-plugins                                   # the mock plugins
//! cargo run --release -p vessel-tests --bin vessel-bench  # everything, ~10 min
//! cargo run --release -p vessel-tests --bin vessel-bench -- --only redis+status --json out.json
//! cargo run -p vessel-tests --bin vessel-bench -- --quick # seconds; what CI runs
//! ```
//!
//! Only `--release` numbers are meaningful. Under `cargo run`, the harness
//! builds the `vessel` binary of its own profile first. `redis-server` must
//! be installed (scripts/test installs it). Everything listens on and
//! connects to 127.0.0.1 (the mock VMs' 127.61.x.y addresses are loopback
//! too), and everything it starts is stopped at the end.
//! `tests/bench_smoke.rs` runs it with `--quick` and checks that every row
//! is reported; it asserts nothing about time.

mod bare_http;
mod checks;
mod cpu;
mod hosts;
mod http;
mod load;
mod plugin;
mod reaper;
mod report;
mod resp;
mod rss;
mod scenario;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The `vessel` binary's allocator, so that what runs in this process (the
/// Reaper row's sweeper, the in-process plugin rows) allocates as the host
/// does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The stores the harness can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// A `redis-server` of the harness's own.
    Redis,
    /// The embedded database, in a temporary directory.
    Embedded,
}

impl StoreKind {
    /// The name used in options and reports.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Redis => "redis",
            StoreKind::Embedded => "embedded",
        }
    }
}

/// What to measure and how to report it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The measured time of each load row.
    pub duration: Duration,
    /// The unrecorded time before it.
    pub warmup: Duration,
    /// The concurrency levels of the load rows.
    pub concurrency: Vec<usize>,
    /// The stores to measure.
    pub stores: Vec<StoreKind>,
    /// The sizes of the Reaper rows.
    pub reaper_sessions: Vec<usize>,
    /// Row filters (`--only`); empty: every row.
    pub only: Vec<String>,
    /// Where to write JSON (`-`: stdout, instead of markdown).
    pub json: Option<PathBuf>,
    /// The `vessel` binary, if not the one next to the harness.
    pub vessel: Option<PathBuf>,
    /// The hosts' `worker_threads` (0: the host's default, one per CPU).
    pub host_threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            concurrency: vec![1, 32, 256],
            stores: vec![StoreKind::Redis, StoreKind::Embedded],
            reaper_sessions: vec![100_000, 1_000_000],
            only: Vec::new(),
            json: None,
            vessel: None,
            host_threads: 0,
        }
    }
}

impl Options {
    /// What `--quick` changes: every row, briefly and small.
    fn quick() -> Options {
        Options {
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            concurrency: vec![1, 4],
            reaper_sessions: vec![2_000],
            ..Options::default()
        }
    }

    /// The highest concurrency level: the sessions each host holds.
    pub fn max_concurrency(&self) -> usize {
        self.concurrency.iter().copied().max().unwrap_or(1)
    }

    /// Whether `--only` selects a row with `tags`: some filter whose
    /// `+`-joined words are all among them.
    pub fn selects(&self, tags: &[String]) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|filter| filter.split('+').all(|word| tags.iter().any(|t| t == word)))
    }
}

const HELP: &str = "\
vessel-bench: Vessel's throughput and latency against baselines of the same run

USAGE:
    cargo run --release -p vessel-tests --bin vessel-bench -- [OPTIONS]

Closed-loop load (N workers, requests back to back) against the real vessel
binary, on the Redis and the embedded store: healthz (the middleware and a
store ping), status, heartbeat, the cache-hit start with liveness inspect,
tcp and none, and the cold start on the mock plugins (each at 1, 32 and
256); raw Redis GET and SET and a bare HTTP server on the same stack
(raw_http) as the baselines; the mock VM's inspect in-process, through the
plugin runtime and natively; a cold start's plugin calls; one Reaper sweep over 100,000 and
1,000,000 sessions in Redis (1% idle) while another client watches its
latency. Reports throughput, p50, p99, p99.9 and the host's peak RSS per row,
then the bar of issue 12 as PASS/MISS lines (it never fails over a MISS).
Build the plugins first (scripts/build-plugins); redis-server must be
installed. Only --release numbers are meaningful; a full run takes ~10 min.

OPTIONS:
    -d, --duration <TIME>      measured time per row, e.g. 5s, 500ms [5s]
    -w, --warmup <TIME>        unrecorded time before each row [1s]
    -c, --concurrency <LIST>   concurrency levels [1,32,256]
    -s, --store <STORE>        redis, embedded or both [both]
        --reaper-sessions <LIST>
                               sizes of the Reaper rows [100000,1000000]
        --only <FILTER>        run only the rows a filter selects; repeat or
                               separate with commas. A filter is words joined
                               by '+', all of which the row must have: its id
                               (healthz, status, heartbeat, hit_inspect, hit_tcp,
                               hit_none, start_cold, redis_get, redis_set,
                               raw_http (a bare axum server: the HTTP stack's
                               own rate, no middleware, no store),
                               plugin_inspect, native_inspect,
                               plugin_cold_calls, reaper), its family (raw,
                               hit, cold, plugin), its store (redis,
                               embedded), its concurrency (c32) or, for the
                               Reaper, its size (1000000).
                               E.g. --only redis+status,hit+c32,reaper
        --quick                every row, briefly: 300ms after 100ms, at
                               concurrency 1 and 4, Reaper over 2000 (what
                               CI runs; other options still apply)
        --json <PATH>          also write the results as JSON to PATH
                               (`-`: print JSON instead of markdown)
        --vessel <PATH>        the vessel binary to run [the one next to
                               this harness, built first under cargo run]
        --host-threads <N>     the hosts' worker_threads [0: one per CPU]
    -h, --help                 print this help
";

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Run(Options),
    Help,
    /// The Reaper row's sweeper (internal): one sweep, with this config.
    SweepOnce(PathBuf),
    /// The HTTP baseline's server (internal): on this address, with this
    /// many worker threads (0: one per CPU).
    BareHttp(std::net::SocketAddr, usize),
}

/// Parses a time: `5s`, `500ms`, `2m`, or plain seconds.
fn parse_time(name: &str, value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{name} must be a time such as 5s or 500ms, got {value:?}"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("{name}: unknown unit in {value:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{name}: {value:?} is out of range"))
}

/// Parses a comma-separated list of positive whole numbers.
fn parse_list(name: &str, value: &str) -> Result<Vec<usize>, String> {
    let list: Vec<usize> = value
        .split(',')
        .map(|item| {
            item.trim()
                .replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} takes positive whole numbers, got {item:?}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(list)
}

fn parse_stores(value: &str) -> Result<Vec<StoreKind>, String> {
    match value.trim() {
        "redis" => Ok(vec![StoreKind::Redis]),
        "embedded" => Ok(vec![StoreKind::Embedded]),
        "both" | "all" => Ok(vec![StoreKind::Redis, StoreKind::Embedded]),
        other => Err(format!(
            "--store must be redis, embedded or both, got {other:?}"
        )),
    }
}

/// Reads the arguments. `--quick` sets the defaults the other options
/// then change, wherever it stands.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.into_iter().collect();
    if args.first().map(String::as_str) == Some("--sweep-once") {
        return match args.get(1) {
            Some(config) if args.len() == 2 => Ok(Command::SweepOnce(PathBuf::from(config))),
            _ => Err("--sweep-once takes one configuration file".into()),
        };
    }
    if args.first().map(String::as_str) == Some("--bare-http") {
        return match (args.get(1), args.get(2), args.len()) {
            (Some(addr), Some(threads), 3) => Ok(Command::BareHttp(
                addr.parse()
                    .map_err(|e| format!("--bare-http: bad address {addr:?}: {e}"))?,
                threads
                    .parse()
                    .map_err(|e| format!("--bare-http: bad thread count {threads:?}: {e}"))?,
            )),
            _ => Err("--bare-http takes an address and a thread count".into()),
        };
    }
    let mut options = if args.iter().any(|arg| arg == "--quick") {
        Options::quick()
    } else {
        Options::default()
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" => {}
            "-d" | "--duration" => options.duration = parse_time(&flag, &value(&flag)?)?,
            "-w" | "--warmup" => options.warmup = parse_time(&flag, &value(&flag)?)?,
            "-c" | "--concurrency" => options.concurrency = parse_list(&flag, &value(&flag)?)?,
            "-s" | "--store" => options.stores = parse_stores(&value(&flag)?)?,
            "--reaper-sessions" => options.reaper_sessions = parse_list(&flag, &value(&flag)?)?,
            "--only" => options.only.extend(
                value(&flag)?
                    .split(',')
                    .map(str::trim)
                    .filter(|filter| !filter.is_empty())
                    .map(str::to_string),
            ),
            "--json" => options.json = Some(PathBuf::from(value(&flag)?)),
            "--vessel" => options.vessel = Some(PathBuf::from(value(&flag)?)),
            "--host-threads" => {
                let raw = value(&flag)?;
                options.host_threads = raw
                    .parse()
                    .map_err(|_| format!("{flag} takes a number of threads, not {raw:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if options.duration.is_zero() {
        return Err("--duration must be more than zero".into());
    }
    Ok(Command::Run(options))
}

fn main() -> ExitCode {
    let command = match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(command) => command,
        Err(message) => {
            eprintln!("vessel-bench: {message}");
            return ExitCode::from(2);
        }
    };
    if let Command::BareHttp(addr, threads) = command {
        // Its own runtime, sized as a host's.
        return match bare_http::serve(addr, threads) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("vessel-bench --bare-http: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vessel-bench: cannot start a tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = match command {
        Command::Run(options) => options,
        Command::SweepOnce(config) => {
            return match runtime.block_on(reaper::sweep_once(&config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("vessel-bench --sweep-once: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Help | Command::BareHttp(..) => return ExitCode::SUCCESS,
    };
    let results = match runtime.block_on(scenario::run(&options)) {
        Ok(results) => results,
        Err(error) => {
            eprintln!("vessel-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let json = serde_json::to_string_pretty(&report::json(&results)).unwrap_or_default();
    match options.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            println!("{json}");
            eprint!("{}", report::check_lines(&checks::checks(&results)));
        }
        Some(path) => {
            print!("{}", report::markdown(&results));
            if let Err(error) = std::fs::write(path, json + "\n") {
                eprintln!("vessel-bench: cannot write {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{}", report::markdown(&results)),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|a| a.to_string()))? {
            Command::Run(options) => Ok(options),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn the_defaults_are_the_full_run() {
        let o = options(&[]).unwrap();
        assert_eq!(o.concurrency, vec![1, 32, 256]);
        assert_eq!(o.reaper_sessions, vec![100_000, 1_000_000]);
        assert_eq!(
            (o.duration, o.warmup),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        assert_eq!(o.max_concurrency(), 256);
    }

    #[test]
    fn quick_sets_defaults_that_other_options_change() {
        let o = options(&["--duration", "1s", "--quick", "--store=redis"]).unwrap();
        assert_eq!(o.duration, Duration::from_secs(1));
        assert_eq!(o.warmup, Duration::from_millis(100));
        assert_eq!(o.concurrency, vec![1, 4]);
        assert_eq!(o.reaper_sessions, vec![2_000]);
        assert_eq!(o.stores, vec![StoreKind::Redis]);
    }

    #[test]
    fn lists_times_and_filters_are_read() {
        let o = options(&[
            "-c",
            "2,64",
            "--reaper-sessions=1_000",
            "--only",
            "redis+status, hit",
            "--only=reaper",
            "-w",
            "250ms",
            "--json",
            "-",
            "--host-threads=1",
        ])
        .unwrap();
        assert_eq!(o.host_threads, 1);
        assert_eq!(o.concurrency, vec![2, 64]);
        assert_eq!(o.reaper_sessions, vec![1000]);
        assert_eq!(o.only, vec!["redis+status", "hit", "reaper"]);
        assert_eq!(o.warmup, Duration::from_millis(250));
        assert_eq!(o.json, Some(PathBuf::from("-")));
        let tags = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert!(o.selects(&tags(&["status", "status", "c2", "redis"])));
        assert!(!o.selects(&tags(&["status", "status", "c2", "embedded"])));
        assert!(o.selects(&tags(&["hit_tcp", "hit", "c64", "embedded"])));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(options(&["--duration", "x"]).is_err());
        assert!(options(&["--duration", "0s"]).is_err());
        assert!(options(&["--duration", "5h"]).is_err());
        assert!(options(&["-c", "0"]).is_err());
        assert!(options(&["-c", "1,,2"]).is_err());
        assert!(options(&["--store", "mysql"]).is_err());
        assert!(options(&["--bogus"]).is_err());
        assert!(options(&["--warmup"]).is_err());
        assert!(matches!(parse(["--help".to_string()]), Ok(Command::Help)));
        assert!(matches!(
            parse(["--sweep-once".to_string(), "a.toml".to_string()]),
            Ok(Command::SweepOnce(path)) if path == std::path::Path::new("a.toml")
        ));
        assert!(parse(["--sweep-once".to_string()]).is_err());
        assert!(matches!(
            parse(["--bare-http", "127.0.0.1:9", "2"].map(String::from)),
            Ok(Command::BareHttp(addr, 2)) if addr.port() == 9
        ));
        assert!(parse(["--bare-http", "127.0.0.1:9"].map(String::from)).is_err());
        assert!(parse(["--bare-http", "nowhere", "2"].map(String::from)).is_err());
    }
}
