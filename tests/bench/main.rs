//! `vessel-bench`: how fast Vessel answers, as ratios against baselines
//! measured in the same run.
//!
//! The README promises that Vessel "answers with the URL of that user's VM
//! in milliseconds when it already runs". This harness is where such claims
//! come from (never from timed assertions in tests). In one run it measures,
//! for the Redis store and the embedded store:
//!
//! - the baselines: `GET /healthz` (an HTTP round trip and one store ping),
//!   a raw Redis `GET` of a session key (Redis only), the store's `get`
//!   called in-process (no HTTP), and the mock VM plugin's `inspect` called
//!   in-process (the one plugin call a hit with liveness `inspect` adds);
//! - the cache hit, `POST /start` of a running session, with each liveness
//!   check: `inspect` (one call of the mock VM plugin's `inspect`), `tcp`
//!   (a TCP connect to the VM's address, no plugin call) and `none` (no
//!   check, no plugin call);
//! - `POST /heartbeat` and `GET /status/{user}`;
//! - a cold `POST /start` on the mock plugins (boot delay 0) and the
//!   `POST /stop` of that session.
//!
//! Every operation is checked (status code and answer), so each number
//! measures the path its row names; the calls the mock plugins record are
//! counted to show how many plugin calls each operation made. The
//! operations are interleaved, round by round, in an order that rotates
//! each round, after warm-up rounds that are not recorded, so that all rows
//! see the same machine. Each row reports its iterations, median, p90 and
//! p99 (nearest rank), and its median divided by the `/healthz` median of
//! the same store in the same run; cold starts are also divided by each kind
//! of hit.
//!
//! # Running it
//!
//! ```sh
//! scripts/build-plugins                                  # the mock plugins (scripts/test does it too)
//! cargo run -p vessel-tests --bin vessel-bench -- --help
//! cargo run -p vessel-tests --bin vessel-bench           # quick, dev profile
//! cargo run --release -p vessel-tests --bin vessel-bench # numbers worth quoting
//! cargo run --release -p vessel-tests --bin vessel-bench -- --iterations 2000 --store redis --json
//! ```
//!
//! Only `--release` numbers are meaningful: in the dev profile the
//! WebAssembly runtime (wasmtime) runs unoptimised, which inflates every
//! plugin call. The defaults finish in well under a minute in the dev
//! profile. `redis-server` must be installed (scripts/test installs it); the
//! harness starts its own on a free loopback port.
//!
//! The binary lives in the `vessel-tests` crate because it reuses the test
//! support library: the in-process host (`TestHost`), the `redis-server`
//! wrapper, the built plugins and the mock plugins' call records. Everything
//! listens on and connects to 127.0.0.1 (the mock VMs' 127.61.x.y addresses
//! are loopback too), and everything it starts is stopped at the end.
//! `tests/bench_smoke.rs` runs it with a few iterations and checks that it
//! reports every row; it asserts nothing about time.

mod report;
mod scenario;
mod stats;

use std::process::ExitCode;

/// The stores the harness can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Measured rounds; each round runs every fast operation once.
    pub iterations: usize,
    /// Unrecorded rounds before the measured ones.
    pub warmup: usize,
    /// Measured cold starts (and stops), spread evenly over the rounds.
    pub cold_iterations: usize,
    /// The stores to measure.
    pub stores: Vec<StoreKind>,
    /// JSON on stdout instead of a markdown table.
    pub json: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            iterations: 500,
            warmup: 50,
            cold_iterations: 50,
            stores: vec![StoreKind::Redis, StoreKind::Embedded],
            json: false,
        }
    }
}

const HELP: &str = "\
vessel-bench: Vessel's latencies as ratios against baselines of the same run

USAGE:
    cargo run [--release] -p vessel-tests --bin vessel-bench -- [OPTIONS]

Measures GET /healthz, a raw Redis GET, the store's get and the mock VM's
inspect called in-process (baselines), the cache-hit POST /start with
liveness inspect, tcp and none, POST /heartbeat, GET /status/{user}, and a
cold POST /start and POST /stop on the mock plugins, on the Redis and the
embedded store, interleaved after a warm-up. Reports n, median, p90, p99
and each median divided by the /healthz median of the same store and run.
Build the plugins first (scripts/build-plugins); redis-server must be
installed. Use --release for meaningful numbers.

OPTIONS (each also read from the environment variable shown):
    -n, --iterations <N>       measured rounds of the fast operations [500]
                               VESSEL_BENCH_ITERATIONS
    -w, --warmup <N>           unrecorded warm-up rounds [50]
                               VESSEL_BENCH_WARMUP
    -c, --cold-iterations <N>  measured cold starts and stops per store
                               (at most --iterations) [50]
                               VESSEL_BENCH_COLD_ITERATIONS
    -s, --store <STORE>        redis, embedded or both [both]
                               VESSEL_BENCH_STORE
        --json                 print JSON instead of a markdown table
                               VESSEL_BENCH_JSON=1
    -h, --help                 print this help
";

/// What the command line asks for.
enum Command {
    Run(Options),
    Help,
}

fn parse_count(name: &str, value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("{name} must be a whole number, got {value:?}"))
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

/// Reads the options from the environment (`env`), then the arguments,
/// which win.
fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut options = Options::default();
    if let Some(value) = env("VESSEL_BENCH_ITERATIONS") {
        options.iterations = parse_count("VESSEL_BENCH_ITERATIONS", &value)?;
    }
    if let Some(value) = env("VESSEL_BENCH_WARMUP") {
        options.warmup = parse_count("VESSEL_BENCH_WARMUP", &value)?;
    }
    let mut cold = env("VESSEL_BENCH_COLD_ITERATIONS")
        .map(|value| parse_count("VESSEL_BENCH_COLD_ITERATIONS", &value))
        .transpose()?;
    if let Some(value) = env("VESSEL_BENCH_STORE") {
        options.stores = parse_stores(&value)?;
    }
    if let Some(value) = env("VESSEL_BENCH_JSON") {
        options.json = !matches!(value.trim(), "" | "0" | "false" | "no");
    }

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
            "--json" => options.json = true,
            "-n" | "--iterations" => {
                options.iterations = parse_count("--iterations", &value("--iterations")?)?
            }
            "-w" | "--warmup" => options.warmup = parse_count("--warmup", &value("--warmup")?)?,
            "-c" | "--cold-iterations" => {
                cold = Some(parse_count(
                    "--cold-iterations",
                    &value("--cold-iterations")?,
                )?)
            }
            "-s" | "--store" => options.stores = parse_stores(&value("--store")?)?,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if options.iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    options.cold_iterations = cold
        .unwrap_or(options.cold_iterations)
        .clamp(1, options.iterations);
    Ok(Command::Run(options))
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(options)) => options,
        Err(message) => {
            eprintln!("vessel-bench: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(scenario::run(&options)) {
        Ok(results) => {
            if options.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report::json(&results))
                        .expect("JSON of the results")
                );
            } else {
                print!("{}", report::markdown(&results));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("vessel-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match parse(args.iter().map(|a| a.to_string()), lookup)? {
            Command::Run(options) => Ok(options),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn arguments_override_the_environment() {
        let o = options(
            &["--iterations", "7", "--store=embedded"],
            &[
                ("VESSEL_BENCH_ITERATIONS", "50"),
                ("VESSEL_BENCH_JSON", "1"),
            ],
        )
        .unwrap();
        assert_eq!(o.iterations, 7);
        assert_eq!(o.cold_iterations, 7, "capped at the iterations");
        assert_eq!(o.stores, vec![StoreKind::Embedded]);
        assert!(o.json);

        let o = options(&["-c", "3", "-w", "0"], &[("VESSEL_BENCH_STORE", "redis")]).unwrap();
        assert_eq!((o.iterations, o.cold_iterations, o.warmup), (500, 3, 0));
        assert_eq!(o.stores, vec![StoreKind::Redis]);
        assert!(!o.json);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(options(&["--iterations", "x"], &[]).is_err());
        assert!(options(&["--iterations", "0"], &[]).is_err());
        assert!(options(&["--store", "mysql"], &[]).is_err());
        assert!(options(&["--bogus"], &[]).is_err());
        assert!(options(&["--warmup"], &[]).is_err());
        assert_eq!(options(&["--help"], &[]).unwrap_err(), "help");
    }
}
