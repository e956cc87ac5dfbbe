//! Redis outages under load, and Redis restarts with AOF persistence.
//!
//! Users rely on three things when the session store goes away for a while:
//! the host does not crash, every request in the meantime gets a clear
//! `503 store_unavailable` (never a 500 or a hang), and once Redis is back
//! the host serves again by itself, with no session lost and no VM created
//! twice. And when Redis restarts from its append-only file, every session
//! is there exactly as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vessel_tests::{
    Api, HostProcess, MockState, RedisServer, TestHost, eventually, free_port, project_dir,
    test_config,
};

/// Redis runs; the load has not seen an outage yet.
const UP: u8 = 0;
/// Redis is being killed.
const STOPPING: u8 = 1;
/// Redis has been killed and is not running.
const DOWN: u8 = 2;
/// Redis is being started again (it may or may not answer yet).
const RESTARTING: u8 = 3;
/// Redis answers again.
const BACK: u8 = 4;

/// One answer the load got.
#[derive(Debug, Clone)]
struct Sample {
    op: &'static str,
    user: String,
    /// The phase when the request was sent, and when its answer arrived.
    sent_phase: u8,
    answered_phase: u8,
    /// Positions on one counter shared by all load tasks, so answers can be
    /// ordered across tasks.
    sent_seq: u64,
    answered_seq: u64,
    status: u16,
    code: String,
    message: String,
}

/// What the load tasks share.
struct Load {
    phase: AtomicU8,
    seq: AtomicU64,
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
}

impl Load {
    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Sends one request through `request` and records its answer.
    async fn record<F>(&self, op: &'static str, user: &str, request: F)
    where
        F: std::future::Future<Output = vessel_tests::Answer>,
    {
        let sent_phase = self.phase.load(Ordering::SeqCst);
        let sent_seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let answer = request.await;
        let answered_seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let answered_phase = self.phase.load(Ordering::SeqCst);
        let sample = Sample {
            op,
            user: user.to_string(),
            sent_phase,
            answered_phase,
            sent_seq,
            answered_seq,
            status: answer.status,
            code: answer.error_code().to_string(),
            message: answer.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        self.samples.lock().unwrap().push(sample);
    }
}

/// A `vessel serve` configuration on Redis with a short store timeout and
/// reconciliation off (the Reaper stays on, as in production).
fn config_toml(dir: &Path, port: u16, redis_url: &str) -> String {
    let tables = format!(
        "[store]\nredis_url = \"{redis_url}\"\ntimeout = \"500ms\"\n[reconcile]\nenabled = false"
    );
    vessel_tests::host_config_toml(dir, port, "", &tables)
}

/// Twenty sessions on the real `vessel` binary, five tasks heartbeating and
/// reading the status of all of them without pause; after a second Redis is
/// killed for about three seconds, then started again from its AOF, and the
/// load goes on for two more seconds.
///
/// Every answer must be a 200 or a `503 store_unavailable` with a message;
/// while Redis is down answers are 503s; once Redis is back every user is
/// served again, with no flapping, by the same host process; every session
/// is still active with its URL, and exactly 20 VMs were ever created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_under_load_answers_503_and_service_returns_without_a_restart() {
    const USERS: usize = 20;
    const TASKS: usize = 5;
    let mut redis = RedisServer::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let host = HostProcess::start(
        dir.path(),
        &config_toml(dir.path(), port, &redis.url()),
        port,
        "vessel.log",
    )
    .await;
    let pid = host.pid();
    let api = host.api();
    let vms = MockState {
        dir: dir.path().join("data/mock-vm"),
    };
    let routes = MockState {
        dir: dir.path().join("data/mock-proxy"),
    };

    let project = project_dir(dir.path(), "p");
    let users: Vec<String> = (0..USERS).map(|i| format!("load-{i}")).collect();
    let starts = users.iter().map(|user| {
        let api = api.clone();
        let project = project.clone();
        async move { (user.clone(), api.start(user, &project).await) }
    });
    let mut urls = BTreeMap::new();
    for (user, answer) in futures::future::join_all(starts).await {
        assert_eq!(answer.status, 200, "start {user}: {:?}", answer.body);
        urls.insert(user, answer.body["url"].as_str().unwrap().to_string());
    }

    let load = Arc::new(Load {
        phase: AtomicU8::new(UP),
        seq: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
    });
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let load = load.clone();
            let api: Api = api.clone();
            let mine: Vec<String> = users.iter().skip(task).step_by(TASKS).cloned().collect();
            tokio::spawn(async move {
                while !load.stop.load(Ordering::SeqCst) {
                    for user in &mine {
                        load.record("heartbeat", user, api.heartbeat(user)).await;
                        load.record("status", user, api.status(user)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    // About a second of load on a healthy store.
    eventually(Duration::from_secs(20), "the load to be served", || {
        let load = load.clone();
        async move {
            let ok = load.samples().iter().filter(|s| s.status == 200).count();
            (ok >= 2 * USERS).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The outage: about three seconds, and at least one answer from it.
    load.phase.store(STOPPING, Ordering::SeqCst);
    tokio::task::block_in_place(|| redis.stop());
    load.phase.store(DOWN, Ordering::SeqCst);
    let outage_began = std::time::Instant::now();
    eventually(Duration::from_secs(20), "answers during the outage", || {
        let load = load.clone();
        async move {
            let seen = load
                .samples()
                .iter()
                .any(|s| s.sent_phase == DOWN && s.answered_phase == DOWN);
            seen.then_some(())
        }
    })
    .await;
    let health = api.get("/healthz").await;
    assert_eq!(
        health.status, 503,
        "healthz during the outage: {:?}",
        health.body
    );
    assert_eq!(health.body["store"]["status"], "unavailable");
    if let Some(rest) = Duration::from_secs(3).checked_sub(outage_began.elapsed()) {
        tokio::time::sleep(rest).await;
    }

    load.phase.store(RESTARTING, Ordering::SeqCst);
    tokio::task::block_in_place(|| redis.restart());
    load.phase.store(BACK, Ordering::SeqCst);

    // Every user is served again, then two more seconds of load.
    eventually(
        Duration::from_secs(20),
        "every user to be served after the outage",
        || {
            let load = load.clone();
            let users = users.clone();
            async move {
                let samples = load.samples();
                users
                    .iter()
                    .all(|user| {
                        samples.iter().any(|s| {
                            &s.user == user
                                && s.op == "heartbeat"
                                && s.sent_phase == BACK
                                && s.status == 200
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a load task hung")
            .expect("a load task panicked");
    }
    let samples = load.samples();

    // Every answer is a success or a clear, retryable outage.
    let mut by_answer: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for sample in &samples {
        *by_answer
            .entry((sample.status, sample.code.clone()))
            .or_default() += 1;
    }
    println!("{} answers: {by_answer:?}", samples.len());
    for sample in &samples {
        let clear_outage = sample.status == 503
            && sample.code == "store_unavailable"
            && !sample.message.trim().is_empty();
        assert!(
            sample.status == 200 || clear_outage,
            "an answer that is neither a success nor a clear outage: {sample:?}"
        );
    }
    // Before Redis was killed, everything succeeded.
    for sample in samples.iter().filter(|s| s.answered_phase == UP) {
        assert_eq!(sample.status, 200, "before the outage: {sample:?}");
    }
    // While Redis was down, nothing succeeded, and the outage was seen.
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent_phase == DOWN && s.answered_phase == DOWN)
        .collect();
    assert!(!during.is_empty());
    for sample in &during {
        assert_eq!(sample.status, 503, "while Redis was down: {sample:?}");
    }
    // Once one request succeeded after the outage, every later one did.
    let back_at = samples
        .iter()
        .filter(|s| s.sent_phase == BACK && s.status == 200)
        .map(|s| s.answered_seq)
        .min()
        .expect("a success after the outage");
    let later: Vec<&Sample> = samples.iter().filter(|s| s.sent_seq > back_at).collect();
    assert!(later.len() >= 2 * USERS, "too little load after the outage");
    for sample in later {
        assert_eq!(sample.status, 200, "after service returned: {sample:?}");
    }

    // The same host process served throughout; it never crashed.
    assert_eq!(host.pid(), pid);
    assert!(vessel_tests::process_is_running(pid), "{}", host.log_text());
    let log = host.log_text();
    assert!(!log.contains("panicked"), "{log}");
    // The operator sees the outage begin and end, not a line per failed
    // request (there were dozens).
    let began = log.matches("Redis is unreachable").count();
    let ended = log.matches("Redis is reachable again").count();
    assert!(
        (1..=3).contains(&began) && (1..=3).contains(&ended),
        "{log}"
    );
    let health = api.get("/healthz").await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    // Every 503 the load saw is counted in /metrics, by endpoint.
    let metrics = api.get_text("/metrics").await;
    for (op, endpoint) in [("heartbeat", "heartbeat"), ("status", "status")] {
        let seen = samples
            .iter()
            .filter(|s| s.op == op && s.status == 503)
            .count() as u64;
        let series = format!(r#"vessel_api_responses_total{{endpoint="{endpoint}",status="503"}}"#);
        assert_eq!(
            vessel_tests::metric_value(&metrics, &series),
            seen,
            "{metrics}"
        );
    }

    // No session was lost or replaced.
    for (user, url) in &urls {
        let status = api.status(user).await;
        assert_eq!(status.status, 200, "{user}: {:?}", status.body);
        assert_eq!(status.body["status"], "active", "{user}: {:?}", status.body);
        assert_eq!(status.body["url"], url.as_str(), "{user}");
        let raw = redis.get_json(&format!("session:{user}")).expect(user);
        assert_eq!(raw["status"], "active", "{user}: {raw}");
    }
    assert_eq!(redis.session_keys().len(), USERS);
    assert_eq!(vms.items().len(), USERS, "{:?}", vms.items());
    assert_eq!(routes.items().len(), USERS, "{:?}", routes.items());
    assert_eq!(vms.count("create"), USERS);
    assert_eq!(vms.count("remove"), 0);
    drop(host);
}

/// Fifty sessions on Redis with AOF persistence (`appendfsync always`),
/// half of them heartbeated; Redis is killed and started again under the
/// running host. Read raw from Redis as an operator would, every record is
/// there byte for byte as before (status, URL, `lastHeartbeat`); through the
/// API every session is active with the same URL and `lastHeartbeat`, a
/// start reuses it, and no VM was created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_redis_restart_with_aof() {
    const USERS: usize = 50;
    let mut redis = RedisServer::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    config.store.timeout = Duration::from_millis(500);
    config.reaper.enabled = false;
    let host = TestHost::start(config).await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    let users: Vec<String> = (0..USERS).map(|i| format!("aof-{i}")).collect();

    let starts = users.iter().map(|user| {
        let api = api.clone();
        let project = project.clone();
        async move { (user.clone(), api.start(user, &project).await) }
    });
    for (user, answer) in futures::future::join_all(starts).await {
        assert_eq!(answer.status, 200, "start {user}: {:?}", answer.body);
    }
    // A heartbeat strictly later than every start, so a lost heartbeat
    // would show as an older `lastHeartbeat`.
    let started_by = host.manager.clock().now_ms();
    eventually(Duration::from_secs(5), "the clock to move on", || async {
        (host.manager.clock().now_ms() > started_by).then_some(())
    })
    .await;
    let mut beats = HashMap::new();
    for user in users.iter().step_by(2) {
        let answer = api.heartbeat(user).await;
        assert_eq!(answer.status, 200, "heartbeat {user}: {:?}", answer.body);
        let at = answer.body["lastHeartbeat"].as_u64().unwrap();
        assert!(at > started_by);
        beats.insert(user.clone(), at);
    }

    let mut keys = redis.session_keys();
    keys.sort();
    assert_eq!(keys.len(), USERS, "{keys:?}");
    let before: BTreeMap<String, Value> = keys
        .iter()
        .map(|key| (key.clone(), redis.get_json(key).expect("a record")))
        .collect();
    for (user, at) in &beats {
        assert_eq!(before[&format!("session:{user}")]["lastHeartbeat"], *at);
    }

    tokio::task::block_in_place(|| redis.restart());

    // Raw reads: every record, exactly as before.
    let mut after_keys = redis.session_keys();
    after_keys.sort();
    assert_eq!(after_keys, keys, "keys changed across the restart");
    for (key, record) in &before {
        let after = redis.get_json(key).expect("the record after the restart");
        assert_eq!(&after, record, "{key} changed across the restart");
        assert_eq!(after["status"], "active", "{key}");
    }

    // Through the API, once the host has reconnected.
    eventually(
        Duration::from_secs(20),
        "the host to reconnect to Redis",
        || async { (api.status(&users[0]).await.status == 200).then_some(()) },
    )
    .await;
    for user in &users {
        let record = &before[&format!("session:{user}")];
        let status = api.status(user).await;
        assert_eq!(status.status, 200, "{user}: {:?}", status.body);
        assert_eq!(status.body["status"], "active", "{user}");
        assert_eq!(status.body["url"], record["url"], "{user}");
        assert_eq!(
            status.body["lastHeartbeat"], record["lastHeartbeat"],
            "{user}"
        );
    }
    let again = api.start(&users[1], &project).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["reused"], true);
    assert_eq!(host.vms().count("create"), USERS);
    assert_eq!(host.vms().items().len(), USERS);
    assert_eq!(host.routes().items().len(), USERS);
    host.shutdown().await;
}
