//! A soak run of the real `vessel` binary on Redis: for a few minutes, many
//! users start, heartbeat, look at and stop their sessions concurrently,
//! while the Reaper stops the sessions of users who stopped heartbeating.
//! The host never answers with a server error, its memory stays flat, and
//! when the load stops the session records, the VMs and the routes agree
//! exactly.
//!
//! `VESSEL_SOAK_SECS` sets the length of the load (default 180 s, a few
//! minutes);
//! `VESSEL_SOAK_SEED` its random seed (the operations each worker picks
//! follow from it; their timing does not).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use vessel_tests::{HostProcess, MockState, RedisServer, free_port, project_dir, vm_id};

/// Users of the run; every fifth is "abandoned": it starts and looks at its
/// session but never heartbeats or stops it, so the Reaper stops it.
const USERS: usize = 60;
/// Concurrent workers, each picking a random user for every operation, so
/// that operations on one user overlap too.
const WORKERS: usize = 24;
/// With no heartbeat for this long, the Reaper stops a session.
const IDLE_TIMEOUT: &str = "3s";

/// How long the load runs (at least 10 s).
fn soak_duration() -> Duration {
    let secs = std::env::var("VESSEL_SOAK_SECS")
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(180);
    Duration::from_secs(secs.max(10))
}

/// The seed of the run.
fn soak_seed() -> u64 {
    std::env::var("VESSEL_SOAK_SEED")
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0x5eed_50a6)
}

/// A xorshift64* generator: deterministic, small, good enough for picking
/// operations.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // The state must not be zero; mix the seed so that close seeds differ.
        XorShift((seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn user_name(index: usize) -> String {
    format!("u{index:02}")
}

fn abandoned(index: usize) -> bool {
    index.is_multiple_of(5)
}

/// The host's configuration: Redis, a Reaper sweeping every 500 ms with a
/// short idle timeout, and VMs that take 50 ms to boot (so starts overlap
/// with other operations). Reconciliation is off: it repairs differences
/// between records and drivers, and this test must see any the request
/// paths and the Reaper leave behind.
fn config_toml(dir: &Path, port: u16, redis_url: &str) -> String {
    let tables = format!(
        "[store]\nredis_url = \"{redis_url}\"\n\
         [reaper]\ninterval = \"500ms\"\nidle_timeout = \"{IDLE_TIMEOUT}\"\n\
         [reconcile]\nenabled = false\n{}",
        vessel_tests::mock_vm_table("settings = { boot_delay_ms = 50 }")
    );
    vessel_tests::host_config_toml(dir, port, "", &tables)
}

/// What the workers did and what went wrong.
#[derive(Default)]
struct Tally {
    /// Answers by operation and HTTP status.
    answers: BTreeMap<(&'static str, u16), u64>,
    /// Server errors (5xx) seen.
    server_errors: u64,
    /// Everything unexpected: server errors, failed exchanges, answers of
    /// the wrong status or shape (the first few are kept in full).
    problems: u64,
    examples: Vec<String>,
}

impl Tally {
    fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.examples.len() < 20 {
            self.examples.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        for (key, count) in other.answers {
            *self.answers.entry(key).or_insert(0) += count;
        }
        self.server_errors += other.server_errors;
        self.problems += other.problems;
        for example in other.examples {
            if self.examples.len() < 20 {
                self.examples.push(example);
            }
        }
    }

    fn total(&self) -> u64 {
        self.answers.values().sum()
    }
}

/// One request to the API; an exchange that fails is an `Err`.
async fn request(
    client: &reqwest::Client,
    base: &str,
    op: &str,
    user: &str,
    project: &Path,
) -> Result<(u16, Value), String> {
    let builder = match op {
        "start" => client
            .post(format!("{base}/start"))
            .json(&serde_json::json!({"userId": user, "projectPath": project})),
        "heartbeat" | "stop" => client
            .post(format!("{base}/{op}"))
            .json(&serde_json::json!({ "userId": user })),
        _ => client.get(format!("{base}/status/{user}")),
    };
    let response = builder.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Whether an answer is one the API documents for this operation, in a
/// soak where everything works (no driver faults, no outages).
fn expected(op: &str, user: &str, status: u16, body: &Value) -> bool {
    let session_of_user = body["userId"] == user;
    match (op, status) {
        ("start", 200) => {
            session_of_user
                && body["status"] == "active"
                && body["vmId"] == vm_id(user)
                && body["ip"].as_str().is_some_and(|ip| !ip.is_empty())
                && body["url"].as_str().is_some_and(|url| !url.is_empty())
        }
        ("heartbeat", 200) => session_of_user && body["status"] == "active",
        ("heartbeat", 404) => body["error"]["code"] == "no_session",
        ("heartbeat", 409) => body["error"]["code"] == "conflict",
        ("status", 200) => {
            session_of_user
                && ["active", "starting", "stopping", "none"]
                    .iter()
                    .any(|status| body["status"] == *status)
        }
        ("stop", 200) => session_of_user && body["status"] == "none",
        ("stop", 202) => session_of_user && body["status"] == "stopping",
        _ => false,
    }
}

/// One worker: random operations on random users until `until`.
async fn worker(seed: u64, base: String, projects: Arc<Vec<PathBuf>>, until: Instant) -> Tally {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let mut rng = XorShift::new(seed);
    let mut tally = Tally::default();
    while Instant::now() < until {
        let index = rng.below(USERS as u64) as usize;
        let user = user_name(index);
        let roll = rng.below(100);
        let op = if abandoned(index) {
            if roll < 60 { "start" } else { "status" }
        } else {
            match roll {
                0..30 => "start",
                30..70 => "heartbeat",
                70..85 => "status",
                _ => "stop",
            }
        };
        match request(&client, &base, op, &user, &projects[index]).await {
            Ok((status, body)) => {
                *tally.answers.entry((op, status)).or_insert(0) += 1;
                if status >= 500 {
                    tally.server_errors += 1;
                }
                if !expected(op, &user, status, &body) {
                    tally.problem(format!("{op} {user}: {status} {body}"));
                }
            }
            Err(error) => tally.problem(format!("{op} {user}: no answer: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(56))).await;
    }
    tally
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sends SIGTERM and waits (at most `bound`) for the exit code; kills the
/// host and fails past the bound.
async fn terminate_within(host: &mut HostProcess, bound: Duration) -> Option<i32> {
    let pid = host.pid();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + bound;
    // An exited child stays a zombie (state Z) until it is waited for.
    let exited = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => true,
    };
    while !exited() {
        if Instant::now() >= deadline {
            host.kill();
            panic!("vessel did not exit within {bound:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.terminate()
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

/// A JSON file of a mock's item, or `None` while it cannot be read.
fn mock_item(state: &MockState, id: &str) -> Option<Value> {
    let bytes = std::fs::read(state.dir.join("items").join(format!("{id}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the store, the VM driver and the proxy driver hold, by VM id.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// `session:*` records: (status, ip, url).
    records: BTreeMap<String, (Value, Value, Value)>,
    /// VMs: (state, ip).
    vms: BTreeMap<String, (Value, Value)>,
    /// Routes: (target ip, url).
    routes: BTreeMap<String, (Value, Value)>,
}

impl Snapshot {
    fn take(redis: &RedisServer, vms: &MockState, routes: &MockState) -> Result<Snapshot, String> {
        let mut records = BTreeMap::new();
        for key in redis.session_keys() {
            let user = key.strip_prefix("session:").unwrap_or(&key);
            let Some(record) = redis.get_json(&key) else {
                return Err(format!("{key} vanished while reading"));
            };
            if record["vmId"] != vm_id(user) {
                return Err(format!("{key} names VM {}", record["vmId"]));
            }
            records.insert(
                vm_id(user),
                (
                    record["status"].clone(),
                    record["ip"].clone(),
                    record["url"].clone(),
                ),
            );
        }
        let read = |state: &MockState, fields: [&str; 2]| {
            state
                .items()
                .into_iter()
                .map(|id| {
                    let item = mock_item(state, &id).ok_or(format!("item {id} is unreadable"))?;
                    Ok((id, (item[fields[0]].clone(), item[fields[1]].clone())))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()
        };
        Ok(Snapshot {
            records,
            vms: read(vms, ["state", "ip"])?,
            routes: read(routes, ["targetIp", "url"])?,
        })
    }

    /// Why the three views disagree, if they do.
    fn disagreement(&self) -> Option<String> {
        let records: Vec<&String> = self.records.keys().collect();
        let vms: Vec<&String> = self.vms.keys().collect();
        let routes: Vec<&String> = self.routes.keys().collect();
        if records != vms || records != routes {
            return Some(format!(
                "records {records:?}\nVMs {vms:?}\nroutes {routes:?}"
            ));
        }
        for (id, (status, ip, url)) in &self.records {
            let (state, vm_ip) = &self.vms[id];
            let (target_ip, route_url) = &self.routes[id];
            if status != "active" || state != "running" {
                return Some(format!("{id}: record {status}, VM {state}"));
            }
            if ip.as_str().is_none() || ip != vm_ip || ip != target_ip || url != route_url {
                return Some(format!(
                    "{id}: record ip {ip} url {url}; VM ip {vm_ip}; route to {target_ip} url {route_url}"
                ));
            }
        }
        None
    }
}

/// Many users starting, heartbeating and stopping for `VESSEL_SOAK_SECS`,
/// with the Reaper stopping abandoned sessions meanwhile: no answer is a
/// server error (or undocumented), the host's memory after the warm-up
/// stays flat, and once the load stops the records in Redis (all active),
/// the mock's VMs and the mock's routes are the same set, with the same
/// addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_keeps_memory_flat_and_ends_with_records_vms_and_routes_agreeing() {
    let duration = soak_duration();
    let seed = soak_seed();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let projects: Arc<Vec<PathBuf>> = Arc::new(
        (0..USERS)
            .map(|index| project_dir(dir.path(), &user_name(index)))
            .collect(),
    );
    let vms = MockState {
        dir: dir.path().join("data/mock-vm"),
    };
    let routes = MockState {
        dir: dir.path().join("data/mock-proxy"),
    };
    let mut host = HostProcess::start(
        dir.path(),
        &config_toml(dir.path(), port, &redis.url()),
        port,
        "soak.log",
    )
    .await;
    let pid = host.pid();
    println!(
        "soak: {} s, {USERS} users, {WORKERS} workers, seed {seed}",
        duration.as_secs()
    );

    let began = Instant::now();
    let until = began + duration;
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            tokio::spawn(worker(
                seed.wrapping_add(index as u64),
                host.base.clone(),
                projects.clone(),
                until,
            ))
        })
        .collect();

    // RSS samples, about 40 over the run.
    let sample_every = (duration / 40).clamp(Duration::from_millis(500), Duration::from_secs(3));
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    while Instant::now() < until {
        let rss = rss_kib(pid).unwrap_or_else(|| {
            panic!(
                "the host (pid {pid}) is gone during the soak; its log:\n{}",
                host.log_text()
            )
        });
        samples.push((began.elapsed(), rss));
        tokio::time::sleep(sample_every.min(until.saturating_duration_since(Instant::now()))).await;
    }

    // From here on every user is kept alive, so the Reaper stops nothing
    // more and the final state stays put (heartbeats never create or
    // revive a session).
    let keepalive_stop = Arc::new(AtomicBool::new(false));
    let keepalive = {
        let stop = keepalive_stop.clone();
        let api = host.api();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let beats = (0..USERS).map(|index| {
                    let api = api.clone();
                    async move { api.heartbeat(&user_name(index)).await.status }
                });
                for status in futures::future::join_all(beats).await {
                    assert!(
                        matches!(status, 200 | 404 | 409),
                        "keep-alive heartbeat answered {status}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.expect("a soak worker"));
    }
    println!(
        "soak: load stopped after {:.1} s",
        began.elapsed().as_secs_f64()
    );

    // In-flight operations have all been answered; a Reaper stop that was
    // under way finishes within its bound. Then the views must agree, and
    // stay so.
    let settle_deadline = Instant::now() + Duration::from_secs(60);
    let snapshot = loop {
        let why = match Snapshot::take(&redis, &vms, &routes) {
            Ok(snapshot) => match snapshot.disagreement() {
                None => break snapshot,
                Some(why) => why,
            },
            Err(why) => why,
        };
        assert!(
            Instant::now() < settle_deadline,
            "records, VMs and routes never came to agree after the load: {why}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = Snapshot::take(&redis, &vms, &routes).expect("a second snapshot");
    assert_eq!(again, snapshot, "the final state changed without any load");

    keepalive_stop.store(true, Ordering::Relaxed);
    keepalive.await.expect("keep-alive task");
    let rss_at_end = rss_kib(pid).unwrap_or_default();
    let code = terminate_within(&mut host, Duration::from_secs(30)).await;
    let log = host.log_text();
    let reaped = log.matches("Reaper killed zombie session").count();

    let warm_up_end = duration / 5;
    let last_quarter_start = duration * 3 / 4;
    let warm_up: Vec<u64> = samples
        .iter()
        .filter(|(at, _)| *at <= warm_up_end)
        .map(|(_, rss)| *rss)
        .collect();
    let last_quarter: Vec<u64> = samples
        .iter()
        .filter(|(at, _)| *at >= last_quarter_start)
        .map(|(_, rss)| *rss)
        .collect();
    println!(
        "soak: {} operations, {} reaped by the Reaper, {} sessions at the end",
        tally.total(),
        reaped,
        snapshot.records.len()
    );
    for ((op, status), count) in &tally.answers {
        println!("soak:   {op:<9} {status}: {count}");
    }
    println!(
        "soak: RSS (MiB) every {:.1} s: {}; at the end {}",
        sample_every.as_secs_f64(),
        samples
            .iter()
            .map(|(_, rss)| format!("{:.1}", *rss as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" "),
        rss_at_end / 1024
    );

    assert_eq!(
        tally.server_errors, 0,
        "server errors during the soak, e.g. {:#?}",
        tally.examples
    );
    assert_eq!(
        tally.problems, 0,
        "unexpected answers during the soak, e.g. {:#?}",
        tally.examples
    );
    assert!(
        !snapshot.records.is_empty(),
        "no session survived the run: the final comparison proves nothing"
    );
    assert!(
        reaped > 0,
        "the Reaper stopped no abandoned session during the run"
    );
    assert_eq!(code, Some(0), "exit code after the soak");

    // Memory: the median of the last quarter against the median of the
    // warm-up (the first fifth, load included). Medians ignore single
    // spikes (a burst of concurrent starts, a sweep in progress). Measured
    // here, the host sits at about 45 MiB from the first seconds of load to
    // the end of a 90 s run (±0.5 MiB); the factor and the constant leave
    // room for allocator fragmentation and for caches and pools that fill
    // up to their working size more slowly on other machines (more cores,
    // more malloc arenas), so the check does not flake. A leak proportional
    // to the work done (about 500 requests a second, each with driver calls)
    // outgrows it: 1 KiB per request is some 40 MiB over 90 s, twice that
    // over the default 180 s.
    assert!(
        !warm_up.is_empty() && !last_quarter.is_empty(),
        "too few RSS samples"
    );
    let baseline = median(&warm_up);
    let late = median(&last_quarter);
    let limit = baseline * 5 / 4 + 16 * 1024;
    assert!(
        late <= limit,
        "host memory grew: last-quarter median {late} KiB > {limit} KiB \
         (warm-up median {baseline} KiB × 1.25 + 16 MiB)"
    );
}
