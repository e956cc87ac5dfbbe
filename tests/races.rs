//! A heartbeat racing the Reaper's claim on an idle session: either the
//! session lives, untouched, with the new heartbeat, or it is fully stopped
//! (record, VM and route all gone) and the heartbeat answered "no session".
//! Never half: no record without its VM, no VM without its record, no route
//! without both.
//!
//! Sessions are started with the Reaper off, aged by hand an hour back, and
//! then each one is hit by a heartbeat and by the Reaper's claim
//! (`stop_if(IdleBefore(cutoff))`, what a sweep calls) at the same moment,
//! on Redis and on the embedded store.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use vessel::ids::UserId;
use vessel::reaper::Reaper;
use vessel::session::SessionError;
use vessel::store::{SessionRecord, SessionStatus, StopCause, StopCondition, StopReason, Stopper};
use vessel_tests::{RedisServer, TestHost, project_dir, test_config};

/// What the Reaper's idle stop says in the tombstone.
const IDLE: StopCause = StopCause::new(Stopper::Reaper, StopReason::Idle);

/// How long without a heartbeat makes a session idle, in these tests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How a heartbeat ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Beat {
    /// Accepted; the session's `lastHeartbeat` is now this.
    Alive(u64),
    /// "No session" (404 `no_session`, or `SessionError::NoSession`).
    NoSession,
    /// Anything else: always wrong here.
    Other(String),
}

/// How a user's session ended up after the race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Lived,
    Stopped,
}

/// One user's session before the race.
struct Before {
    user: UserId,
    url: String,
    aged_ms: u64,
}

/// A host with `n` active sessions, the Reaper off (on Redis if `redis`).
async fn host_with_sessions(
    dir: &std::path::Path,
    redis: Option<&RedisServer>,
    prefix: &str,
    n: usize,
) -> (TestHost, Vec<UserId>, HashMap<String, String>) {
    let mut config = test_config(&dir.join("data"), redis.map(RedisServer::url));
    config.reaper.enabled = false;
    config.reaper.idle_timeout = IDLE_TIMEOUT;
    let host = TestHost::start(config).await;
    let project = project_dir(dir, "p");
    let users: Vec<UserId> = (0..n)
        .map(|i| UserId::parse(&format!("{prefix}{i}")).unwrap())
        .collect();
    let api = host.api();
    let starts = users.iter().map(|user| {
        let api = api.clone();
        let project = project.clone();
        async move { (user.to_string(), api.start(user.as_str(), &project).await) }
    });
    let mut urls = HashMap::new();
    for (user, answer) in futures::future::join_all(starts).await {
        assert_eq!(answer.status, 200, "start {user}: {:?}", answer.body);
        urls.insert(user, answer.body["url"].as_str().unwrap().to_string());
    }
    (host, users, urls)
}

/// Sets `user`'s `lastHeartbeat` to an hour ago: by hand in Redis (as an
/// operator would), or through the store's own heartbeat on the embedded
/// store (whose file the running host holds). Returns the time written.
async fn age(host: &TestHost, redis: Option<&RedisServer>, user: &UserId) -> u64 {
    let aged_ms = host.manager.clock().now_ms() - 3_600_000;
    match redis {
        Some(redis) => {
            let key = format!("session:{user}");
            let mut record = redis.get_json(&key).expect("a record to age");
            record["lastHeartbeat"] = serde_json::Value::from(aged_ms);
            redis.set_json(&key, &record);
        }
        None => {
            host.manager
                .store()
                .heartbeat(user, aged_ms)
                .await
                .expect("age the record");
        }
    }
    let record = host.manager.status(user).await.unwrap().expect("a record");
    assert_eq!(record.last_heartbeat, aged_ms);
    assert_eq!(record.status, SessionStatus::Active);
    aged_ms
}

/// A heartbeat through the API.
async fn api_beat(api: &vessel_tests::Api, user: &UserId) -> Beat {
    let answer = api.heartbeat(user.as_str()).await;
    match (answer.status, answer.error_code()) {
        (200, _) => match answer.body["lastHeartbeat"].as_u64() {
            Some(at) => Beat::Alive(at),
            None => Beat::Other(format!("200 without lastHeartbeat: {:?}", answer.body)),
        },
        (404, "no_session") => Beat::NoSession,
        (status, _) => Beat::Other(format!("{status} {:?}", answer.body)),
    }
}

/// A heartbeat straight through the session manager.
fn manager_beat(result: Result<SessionRecord, SessionError>) -> Beat {
    match result {
        Ok(record) => Beat::Alive(record.last_heartbeat),
        Err(SessionError::NoSession(_)) => Beat::NoSession,
        Err(error) => Beat::Other(format!("{error:?}")),
    }
}

/// The Reaper's cutoff now: sessions whose last heartbeat is older are idle.
fn idle_cutoff(host: &TestHost) -> u64 {
    host.manager.clock().now_ms() - IDLE_TIMEOUT.as_millis() as u64
}

/// Checks that `before.user`'s session is entirely alive or entirely gone,
/// consistently with what the heartbeat and the claim answered (`claim` is
/// `None` when the claim is not known per user, e.g. from a sweep).
async fn check_fate(
    host: &TestHost,
    before: &Before,
    beat: &Beat,
    claim: Option<&Result<Option<SessionRecord>, String>>,
) -> Result<Fate, String> {
    let user = &before.user;
    let vm_id = user.vm_id();
    let record = host
        .manager
        .status(user)
        .await
        .map_err(|e| format!("status: {e}"))?;
    let vm = host.vms().items().contains(&vm_id);
    let route = host.routes().items().contains(&vm_id);
    let vm_removes = host.vms().ok_counts("remove").get(&vm_id).copied();
    let route_removes = host.routes().ok_counts("remove-route").get(&vm_id).copied();
    let state = format!(
        "{user}: beat {beat:?}, claim {claim:?}, record {record:?}, vm {vm}, route {route}, \
         removes {vm_removes:?}/{route_removes:?}"
    );
    match beat {
        Beat::Alive(at) => {
            let claim_ok = match claim {
                Some(Ok(None)) | None => true,
                Some(_) => false,
            };
            let untouched = record.as_ref().is_some_and(|r| {
                r.status == SessionStatus::Active
                    && r.last_heartbeat == *at
                    && r.url.as_deref() == Some(before.url.as_str())
                    && r.vm_id == vm_id
            });
            if claim_ok
                && untouched
                && vm
                && route
                && vm_removes.is_none()
                && route_removes.is_none()
            {
                Ok(Fate::Lived)
            } else {
                Err(format!(
                    "a heartbeat was accepted but the session is not intact: {state}"
                ))
            }
        }
        Beat::NoSession => {
            let claim_ok = match claim {
                // The claim took the session as it was before the heartbeat.
                Some(Ok(Some(claimed))) => {
                    claimed.last_heartbeat == before.aged_ms
                        && claimed.status == SessionStatus::Stopping
                }
                None => true,
                Some(_) => false,
            };
            if claim_ok
                && record.is_none()
                && !vm
                && !route
                && vm_removes == Some(1)
                && route_removes == Some(1)
            {
                Ok(Fate::Stopped)
            } else {
                Err(format!(
                    "the heartbeat lost but the session is not fully stopped: {state}"
                ))
            }
        }
        Beat::Other(_) => Err(format!("an unexpected heartbeat answer: {state}")),
    }
}

/// No record without its VM and route, and no VM or route without a record.
async fn check_no_halves(host: &TestHost, users: &[UserId]) {
    let mut with_record = BTreeSet::new();
    for user in users {
        if host.manager.status(user).await.unwrap().is_some() {
            with_record.insert(user.vm_id());
        }
    }
    let vms: BTreeSet<String> = host.vms().items().into_iter().collect();
    let routes: BTreeSet<String> = host.routes().items().into_iter().collect();
    assert_eq!(vms, with_record, "VMs and records disagree");
    assert_eq!(routes, with_record, "routes and records disagree");
}

/// Starts `n` sessions, ages them all, then for each user fires a
/// heartbeat and the Reaper's claim at the same instant (both released by
/// one barrier per user, on a multi-threaded runtime), every user at once;
/// each side yields a few times, differently per user, so that which side
/// goes first varies. Half the heartbeats go through the API, half straight
/// to the manager.
async fn heartbeat_races_claim(redis: Option<&RedisServer>) {
    const USERS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (host, users, urls) = host_with_sessions(dir.path(), redis, "race-", USERS).await;
    let mut befores = Vec::new();
    for user in &users {
        let aged_ms = age(&host, redis, user).await;
        befores.push(Before {
            user: user.clone(),
            url: urls[user.as_str()].clone(),
            aged_ms,
        });
    }

    let cutoff = idle_cutoff(&host);
    let races = befores.iter().enumerate().map(|(i, before)| {
        let barrier = Arc::new(Barrier::new(2));
        let beat = {
            let barrier = barrier.clone();
            let manager = host.manager.clone();
            let api = host.api();
            let user = before.user.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                // Vary which side goes first from user to user.
                for _ in 0..i % 3 {
                    tokio::task::yield_now().await;
                }
                if i % 2 == 0 {
                    api_beat(&api, &user).await
                } else {
                    manager_beat(manager.heartbeat(&user).await)
                }
            })
        };
        let claim = {
            let manager = host.manager.clone();
            let user = before.user.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..(i / 3) % 3 {
                    tokio::task::yield_now().await;
                }
                manager
                    .stop_if(&user, StopCondition::IdleBefore(cutoff), IDLE)
                    .await
                    .map_err(|e| format!("{e:?}"))
            })
        };
        async move { (beat.await.unwrap(), claim.await.unwrap()) }
    });
    let outcomes = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(races))
        .await
        .expect("the races did not finish");

    let mut lived = 0;
    let mut stopped = 0;
    let mut wrong = Vec::new();
    for (before, (beat, claim)) in befores.iter().zip(&outcomes) {
        match check_fate(&host, before, beat, Some(claim)).await {
            Ok(Fate::Lived) => lived += 1,
            Ok(Fate::Stopped) => stopped += 1,
            Err(error) => wrong.push(error),
        }
    }
    let store = host.manager.store().kind();
    println!("{store}: {lived} sessions lived, {stopped} were stopped");
    assert!(
        wrong.is_empty(),
        "{store}: half outcomes:\n{}",
        wrong.join("\n")
    );
    check_no_halves(&host, &users).await;
    host.shutdown().await;
}

/// Forty idle sessions on Redis, each hit by a heartbeat and the Reaper's
/// claim at once: each one wholly lives or wholly stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_racing_the_reapers_claim_on_redis_never_leaves_half_a_session() {
    let redis = RedisServer::start();
    heartbeat_races_claim(Some(&redis)).await;
}

/// The same race on the embedded store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_racing_the_reapers_claim_on_the_embedded_store_never_leaves_half_a_session() {
    heartbeat_races_claim(None).await;
}

/// Forty idle sessions on Redis, a whole Reaper sweep racing a heartbeat
/// for every user (the sweep reads the records, then claims the idle ones
/// while the heartbeats land). Whatever each heartbeat answered, its
/// session must match it wholly, and the sweep reports exactly the sessions
/// it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaper_sweep_racing_heartbeats_never_leaves_half_a_session() {
    const USERS: usize = 40;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (host, users, urls) = host_with_sessions(dir.path(), Some(&redis), "sweep-", USERS).await;
    let mut befores = Vec::new();
    for user in &users {
        let aged_ms = age(&host, Some(&redis), user).await;
        befores.push(Before {
            user: user.clone(),
            url: urls[user.as_str()].clone(),
            aged_ms,
        });
    }

    let reaper = Reaper::new(host.manager.clone(), host.config.reaper.clone());
    let barrier = Arc::new(Barrier::new(USERS + 1));
    let beats: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let barrier = barrier.clone();
            let api = host.api();
            let user = user.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                // Spread the heartbeats over the sweep, so that some land
                // before its claims, some during, some after its stops.
                tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
                api_beat(&api, &user).await
            })
        })
        .collect();
    let sweep = async {
        barrier.wait().await;
        reaper.sweep().await
    };
    let (report, beats) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join(sweep, futures::future::join_all(beats)),
    )
    .await
    .expect("the sweep and heartbeats did not finish");

    let mut stopped = 0;
    let mut wrong = Vec::new();
    for (before, beat) in befores.iter().zip(beats) {
        match check_fate(&host, before, &beat.unwrap(), None).await {
            Ok(Fate::Stopped) => stopped += 1,
            Ok(Fate::Lived) => {}
            Err(error) => wrong.push(error),
        }
    }
    println!("sweep {report:?}; {stopped} of {USERS} stopped");
    assert!(wrong.is_empty(), "half outcomes:\n{}", wrong.join("\n"));
    assert_eq!(report.reaped, stopped, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.scanned, USERS, "{report:?}");
    check_no_halves(&host, &users).await;
    host.shutdown().await;
}

/// The two orders one at a time, which is what makes the race safe: a
/// heartbeat that lands before the claim saves the session (the claim, with
/// the cutoff computed before the heartbeat, finds it fresh and takes
/// nothing), and a claim that lands first stops the session fully, after
/// which the heartbeat answers 404 and revives nothing.
async fn each_order_alone(redis: Option<&RedisServer>) {
    let dir = tempfile::tempdir().unwrap();
    let (host, users, urls) = host_with_sessions(dir.path(), redis, "order-", 2).await;
    let api = host.api();
    let (early, late) = (&users[0], &users[1]);
    let early_before = Before {
        user: early.clone(),
        url: urls[early.as_str()].clone(),
        aged_ms: age(&host, redis, early).await,
    };
    let late_before = Before {
        user: late.clone(),
        url: urls[late.as_str()].clone(),
        aged_ms: age(&host, redis, late).await,
    };
    // The Reaper decided both were idle with this cutoff.
    let cutoff = idle_cutoff(&host);
    assert!(early_before.aged_ms < cutoff && late_before.aged_ms < cutoff);

    // Heartbeat first: the claim must take nothing.
    let beat = api_beat(&api, early).await;
    assert!(matches!(beat, Beat::Alive(at) if at >= cutoff), "{beat:?}");
    let claim = host
        .manager
        .stop_if(early, StopCondition::IdleBefore(cutoff), IDLE)
        .await
        .map_err(|e| format!("{e:?}"));
    assert!(matches!(claim, Ok(None)), "{claim:?}");
    assert_eq!(
        check_fate(&host, &early_before, &beat, Some(&claim)).await,
        Ok(Fate::Lived)
    );
    let status = api.status(early.as_str()).await;
    assert_eq!(status.body["status"], "active", "{:?}", status.body);

    // Claim first: the session is fully stopped, the heartbeat finds none.
    let claim = host
        .manager
        .stop_if(late, StopCondition::IdleBefore(cutoff), IDLE)
        .await
        .map_err(|e| format!("{e:?}"));
    assert!(matches!(claim, Ok(Some(_))), "{claim:?}");
    let answer = api.heartbeat(late.as_str()).await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "no_session");
    assert_eq!(
        check_fate(&host, &late_before, &Beat::NoSession, Some(&claim)).await,
        Ok(Fate::Stopped)
    );
    let status = api.status(late.as_str()).await;
    assert_eq!(status.body["status"], "none", "{:?}", status.body);

    check_no_halves(&host, &users).await;
    host.shutdown().await;
}

/// Both orders, one at a time, on Redis.
#[tokio::test]
async fn on_redis_a_heartbeat_before_the_claim_saves_the_session_and_one_after_finds_none() {
    let redis = RedisServer::start();
    each_order_alone(Some(&redis)).await;
}

/// Both orders, one at a time, on the embedded store.
#[tokio::test]
async fn on_the_embedded_store_a_heartbeat_before_the_claim_saves_the_session_and_one_after_finds_none()
 {
    each_order_alone(None).await;
}
