//! On the embedded store, a heartbeat answered 200 is on disk: a host
//! killed with SIGKILL in the middle of heavy heartbeat load loses none of
//! the heartbeats it acknowledged, although concurrent heartbeats share
//! their commits (group commit).
//!
//! Each user's heartbeats come from one client, one after another, so the
//! `lastHeartbeat` of that client's last 200 answer is the newest value the
//! host promised to keep for that user; the database, opened after the
//! process is dead, must hold at least that.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vessel::ids::UserId;
use vessel::store::embedded::EmbeddedStore;
use vessel::store::{SessionStatus, SessionStore};
use vessel_tests::{HostProcess, free_port, project_dir};

/// Concurrent clients, one per user.
const USERS: usize = 32;

/// Heartbeats answered before the kill, at the least (unless the load
/// runs out of time first, see [`LOAD_LIMIT`]).
const ACKS_BEFORE_KILL: u64 = 3_000;

/// The longest the load runs before the kill.
const LOAD_LIMIT: Duration = Duration::from_secs(4);

/// What one client saw.
struct Acked {
    /// The `lastHeartbeat` of its last 200 answer, if any.
    last: Option<u64>,
    /// Whether it stopped because the host went away (rather than
    /// running out of time): it was sending when the host died.
    cut_off: bool,
}

/// Sends heartbeats for `user` one after another until the host stops
/// answering or `until` passes.
async fn beat(
    client: reqwest::Client,
    base: String,
    user: String,
    acked_in_all: Arc<AtomicU64>,
    until: Instant,
) -> Acked {
    let mut acked = Acked {
        last: None,
        cut_off: false,
    };
    while Instant::now() < until {
        let sent = client
            .post(format!("{base}/heartbeat"))
            .json(&serde_json::json!({ "userId": user }))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(_) => {
                acked.cut_off = true;
                break;
            }
        };
        let status = response.status().as_u16();
        let body: serde_json::Value = match response.json().await {
            Ok(body) => body,
            // The host died between the status line and the body: not
            // an acknowledgement.
            Err(_) => {
                acked.cut_off = true;
                break;
            }
        };
        assert_eq!(status, 200, "heartbeat of {user}: {body}");
        let at = body["lastHeartbeat"]
            .as_u64()
            .unwrap_or_else(|| panic!("an answer without lastHeartbeat: {body}"));
        if let Some(previous) = acked.last {
            assert!(at >= previous, "{user}: {at} answered after {previous}");
        }
        acked.last = Some(at);
        acked_in_all.fetch_add(1, Ordering::Relaxed);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_heartbeat_survives_a_kill_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = vessel_tests::host_config_toml(
        dir.path(),
        port,
        "",
        "[reaper]\nenabled = false\n[reconcile]\nenabled = false\n",
    );
    let mut host = HostProcess::start(dir.path(), &config, port, "host.log").await;
    let api = host.api();
    let project = project_dir(dir.path(), "p");
    let users: Vec<String> = (0..USERS).map(|i| format!("load-{i}")).collect();
    for answer in futures::future::join_all(users.iter().map(|u| api.start(u, &project))).await {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked_in_all = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + LOAD_LIMIT + Duration::from_secs(10);
    let clients: Vec<_> = users
        .iter()
        .map(|user| {
            tokio::spawn(beat(
                client.clone(),
                host.base.clone(),
                user.clone(),
                acked_in_all.clone(),
                until,
            ))
        })
        .collect();
    while acked_in_all.load(Ordering::Relaxed) < ACKS_BEFORE_KILL && started.elapsed() < LOAD_LIMIT
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.kill();

    let mut last_acked = BTreeMap::new();
    for (user, client) in users.iter().zip(clients) {
        let acked = client.await.expect("a heartbeat client");
        assert!(
            acked.cut_off,
            "{user}'s client was not sending when the host died"
        );
        let last = acked
            .last
            .unwrap_or_else(|| panic!("{user} got no heartbeat answered"));
        last_acked.insert(user.clone(), last);
    }
    let in_all = acked_in_all.load(Ordering::Relaxed);
    assert!(in_all >= 500, "only {in_all} heartbeats were answered");

    // The process is dead (and waited for): its lock on the file is gone.
    let store = EmbeddedStore::open(&dir.path().join("data/sessions.redb"))
        .expect("the database opens after the crash");
    for (user, &last) in &last_acked {
        let record = store
            .get(&UserId::parse(user).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{user}'s session was lost"));
        assert_eq!(record.status, SessionStatus::Active, "{user}");
        assert!(
            record.last_heartbeat >= last,
            "{user}: {last} was acknowledged, {} is on disk",
            record.last_heartbeat
        );
    }
    eprintln!("{in_all} heartbeats acknowledged before the kill");
}
