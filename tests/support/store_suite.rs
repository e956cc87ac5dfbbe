//! The conformance suite every `SessionStore` must pass. Each check takes a
//! fresh, empty store and panics with what went wrong.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Map;
use vessel::ids::UserId;
use vessel::store::{
    Capacity, HeartbeatOutcome, InsertOutcome, SessionRecord, SessionStatus, SessionStore,
    StartStep, StopCause, StopClaim, StopCondition, StopReason, Stopper, Tombstone,
};

/// A store under test.
pub type Store = Arc<dyn SessionStore>;

/// A record for `user` in `status`, held by `owner`, with heartbeat and
/// update time `at`.
pub fn record(user: &str, status: SessionStatus, owner: &str, at: u64) -> SessionRecord {
    SessionRecord {
        user_id: user.to_string(),
        vm_id: crate::vm_id(user),
        ip: Some("127.61.0.9".to_string()),
        url: Some(format!(
            "http://127.0.0.1:8000/{}/",
            crate::public_name(user)
        )),
        last_heartbeat: at,
        status,
        created_at: at,
        updated_at: at,
        owner: owner.to_string(),
        start_step: (status == SessionStatus::Starting).then_some(StartStep::CopyingProject),
        start_steps: Vec::new(),
        project_path: Some("/tmp/project".to_string()),
        started_by: None,
        idle_timeout_ms: None,
        max_age_ms: None,
        extra: Map::new(),
    }
}

fn fleet(limit: u64) -> Capacity {
    Capacity {
        fleet: Some(limit),
        per_starter: None,
    }
}

fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid test user id")
}

fn claim(owner: &str, now: u64, condition: StopCondition) -> StopClaim {
    StopClaim {
        owner: owner.to_string(),
        now_ms: now,
        condition,
    }
}

/// Inserting creates once; the second insert sees the first record.
pub async fn insert_is_create_once(store: Store) {
    let first = record("alice", SessionStatus::Starting, "h1/1", 10);
    assert_eq!(store.get(&user("alice")).await.unwrap(), None);
    assert_eq!(
        store.insert_new(&first, Capacity::NONE).await.unwrap(),
        InsertOutcome::Inserted
    );
    let second = record("alice", SessionStatus::Starting, "h2/1", 20);
    assert_eq!(
        store.insert_new(&second, Capacity::NONE).await.unwrap(),
        InsertOutcome::Exists(first.clone())
    );
    assert_eq!(store.get(&user("alice")).await.unwrap(), Some(first));
}

/// Of many concurrent inserts for one user, exactly one wins.
pub async fn concurrent_inserts_have_one_winner(store: Store) {
    let attempts = (0..32).map(|i| {
        let store = store.clone();
        async move {
            let candidate = record("bob", SessionStatus::Starting, &format!("h/{i}"), i);
            store.insert_new(&candidate, Capacity::NONE).await.unwrap()
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let winners = outcomes
        .iter()
        .filter(|o| **o == InsertOutcome::Inserted)
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
}

/// With a capacity, concurrent inserts for distinct users never exceed it
/// together; a user who has a record is told so, not turned away; and a
/// deleted record frees its place.
pub async fn capacity_is_never_exceeded(store: Store) {
    let attempts = (0..40).map(|i| {
        let store = store.clone();
        async move {
            let candidate = record(&format!("cap{i}"), SessionStatus::Starting, "h/1", 1);
            store.insert_new(&candidate, fleet(10)).await.unwrap()
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let inserted = outcomes
        .iter()
        .filter(|o| **o == InsertOutcome::Inserted)
        .count();
    let full = outcomes
        .iter()
        .filter(|o| **o == InsertOutcome::Full)
        .count();
    assert_eq!((inserted, full), (10, 30), "{outcomes:?}");
    let page = store.scan(None, 100).await.unwrap();
    assert_eq!(page.records.len(), 10);

    let holder = page.records[0].clone();
    assert!(matches!(
        store.insert_new(&holder, fleet(10)).await.unwrap(),
        InsertOutcome::Exists(_)
    ));
    assert!(
        store
            .delete_owned(&user(&holder.user_id), &holder.owner)
            .await
            .unwrap()
    );
    let newcomer = record("newcomer", SessionStatus::Starting, "h/2", 2);
    assert_eq!(
        store.insert_new(&newcomer, fleet(10)).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store
            .insert_new(
                &record("late", SessionStatus::Starting, "h/3", 3),
                fleet(10)
            )
            .await
            .unwrap(),
        InsertOutcome::Full
    );
    // Without a capacity nothing is counted.
    assert_eq!(
        store
            .insert_new(
                &record("late", SessionStatus::Starting, "h/3", 3),
                Capacity::NONE
            )
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
}

/// A starter (an operator token) holds at most its own limit of sessions,
/// counted atomically with concurrent inserts; others are not affected, and
/// a deleted record frees its place.
pub async fn starter_capacity_is_never_exceeded(store: Store) {
    let per_starter = Capacity {
        fleet: None,
        per_starter: Some(3),
    };
    let by = |user: &str, starter: &str| {
        let mut record = record(user, SessionStatus::Starting, "h/1", 1);
        record.started_by = Some(starter.to_string());
        record
    };
    let attempts = (0..12).map(|i| {
        let store = store.clone();
        let candidate = by(&format!("t{i}"), "operator:a");
        async move { store.insert_new(&candidate, per_starter).await.unwrap() }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let inserted: Vec<_> = outcomes
        .iter()
        .filter(|o| **o == InsertOutcome::Inserted)
        .collect();
    assert_eq!(inserted.len(), 3, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == InsertOutcome::StarterFull)
            .count(),
        9
    );
    // Another starter, and records with no starter, are not counted.
    assert_eq!(
        store
            .insert_new(&by("other", "operator:b"), per_starter)
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store
            .insert_new(
                &record("plain", SessionStatus::Starting, "h/1", 1),
                per_starter
            )
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
    // A stop frees a place.
    let held = store
        .scan(None, 100)
        .await
        .unwrap()
        .records
        .into_iter()
        .find(|r| r.started_by.as_deref() == Some("operator:a"))
        .unwrap();
    assert!(
        store
            .delete_owned(&user(&held.user_id), &held.owner)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .insert_new(&by("again", "operator:a"), per_starter)
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
}

/// Only the owner may replace or delete a record.
pub async fn replace_and_delete_need_the_owner(store: Store) {
    let mine = record("carol", SessionStatus::Starting, "h1/7", 10);
    store.insert_new(&mine, Capacity::NONE).await.unwrap();
    let mut active = mine.clone();
    active.status = SessionStatus::Active;
    assert!(!store.replace_owned(&active, "h2/7").await.unwrap());
    assert_eq!(
        store.get(&user("carol")).await.unwrap().unwrap().status,
        SessionStatus::Starting
    );
    assert!(store.replace_owned(&active, "h1/7").await.unwrap());
    assert_eq!(store.get(&user("carol")).await.unwrap(), Some(active));
    assert!(!store.delete_owned(&user("carol"), "h2/7").await.unwrap());
    assert!(store.delete_owned(&user("carol"), "h1/7").await.unwrap());
    assert_eq!(store.get(&user("carol")).await.unwrap(), None);
    // Replacing or deleting what is gone does nothing and creates nothing.
    assert!(!store.replace_owned(&mine, "h1/7").await.unwrap());
    assert!(!store.delete_owned(&user("carol"), "h1/7").await.unwrap());
    assert_eq!(store.get(&user("carol")).await.unwrap(), None);
}

/// A heartbeat updates an active session, never creates one, and never
/// touches one that is starting or stopping.
pub async fn heartbeat_updates_only_active_sessions(store: Store) {
    assert_eq!(
        store.heartbeat(&user("dave"), 50).await.unwrap(),
        HeartbeatOutcome::Missing
    );
    assert_eq!(
        store.get(&user("dave")).await.unwrap(),
        None,
        "heartbeat resurrected"
    );

    store
        .insert_new(
            &record("dave", SessionStatus::Active, "", 10),
            Capacity::NONE,
        )
        .await
        .unwrap();
    match store.heartbeat(&user("dave"), 50).await.unwrap() {
        HeartbeatOutcome::Updated(updated) => assert_eq!(updated.last_heartbeat, 50),
        other => panic!("expected an update, got {other:?}"),
    }
    assert_eq!(
        store
            .get(&user("dave"))
            .await
            .unwrap()
            .unwrap()
            .last_heartbeat,
        50
    );

    for status in [SessionStatus::Starting, SessionStatus::Stopping] {
        let name = format!("erin-{}", status.as_str());
        let held = record(&name, status, "h/1", 10);
        store.insert_new(&held, Capacity::NONE).await.unwrap();
        assert_eq!(
            store.heartbeat(&user(&name), 99).await.unwrap(),
            HeartbeatOutcome::NotActive(held.clone())
        );
        assert_eq!(store.get(&user(&name)).await.unwrap(), Some(held));
    }
}

/// Stop claims take a session only under their condition, mark it stopping
/// and hand it to the claimant.
pub async fn claims_follow_their_conditions(store: Store) {
    store
        .insert_new(
            &record("frank", SessionStatus::Active, "", 1_000),
            Capacity::NONE,
        )
        .await
        .unwrap();
    // Not idle before 1000: the heartbeat at 1000 is not older than the cutoff.
    let early = claim("reaper/1", 5_000, StopCondition::IdleBefore(1_000));
    assert_eq!(
        store.claim_stop(&user("frank"), &early).await.unwrap(),
        None
    );
    // Not stuck: it is active.
    let stuck = claim("reaper/2", 5_000, StopCondition::StuckBefore(9_000));
    assert_eq!(
        store.claim_stop(&user("frank"), &stuck).await.unwrap(),
        None
    );
    // Idle before 1001: claimed.
    let idle = claim("reaper/3", 5_000, StopCondition::IdleBefore(1_001));
    let claimed = store
        .claim_stop(&user("frank"), &idle)
        .await
        .unwrap()
        .expect("idle session claimed");
    assert_eq!(claimed.status, SessionStatus::Stopping);
    assert_eq!(claimed.owner, "reaper/3");
    assert_eq!(claimed.updated_at, 5_000);
    assert_eq!(store.get(&user("frank")).await.unwrap(), Some(claimed));
    // A second claim of any kind loses, until the stop is stuck.
    for condition in [StopCondition::Active, StopCondition::IdleBefore(u64::MAX)] {
        let again = claim("reaper/4", 6_000, condition);
        assert_eq!(
            store.claim_stop(&user("frank"), &again).await.unwrap(),
            None
        );
    }
    let retry = claim("reaper/5", 20_000, StopCondition::StuckBefore(10_000));
    let retried = store
        .claim_stop(&user("frank"), &retry)
        .await
        .unwrap()
        .expect("stuck stop reclaimed");
    assert_eq!(retried.owner, "reaper/5");
    // The first claimant can no longer delete it; the second can.
    assert!(
        !store
            .delete_owned(&user("frank"), "reaper/3")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_owned(&user("frank"), "reaper/5")
            .await
            .unwrap()
    );
    // Nothing to claim for a user without a session.
    let none = claim("reaper/6", 1, StopCondition::Active);
    assert_eq!(
        store.claim_stop(&user("nobody"), &none).await.unwrap(),
        None
    );
}

/// Of many concurrent claims on one stale session, exactly one wins; a
/// heartbeat that lands first saves the session from all of them.
pub async fn claims_race_with_one_winner_and_heartbeats_win_first(store: Store) {
    store
        .insert_new(
            &record("gina", SessionStatus::Active, "", 100),
            Capacity::NONE,
        )
        .await
        .unwrap();
    let claims = (0..16).map(|i| {
        let store = store.clone();
        async move {
            let c = claim(
                &format!("reaper/{i}"),
                9_000,
                StopCondition::IdleBefore(500),
            );
            store.claim_stop(&user("gina"), &c).await.unwrap()
        }
    });
    let won = futures::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .count();
    assert_eq!(won, 1);

    store
        .insert_new(
            &record("hank", SessionStatus::Active, "", 100),
            Capacity::NONE,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.heartbeat(&user("hank"), 9_000).await.unwrap(),
        HeartbeatOutcome::Updated(_)
    ));
    let late = claim("reaper/x", 9_001, StopCondition::IdleBefore(500));
    assert_eq!(store.claim_stop(&user("hank"), &late).await.unwrap(), None);
    assert_eq!(
        store.get(&user("hank")).await.unwrap().unwrap().status,
        SessionStatus::Active
    );
}

/// A scan in small batches sees every session exactly once.
pub async fn scan_sees_every_session_once(store: Store) {
    let count = 1_234;
    futures::future::join_all((0..count).map(|i| {
        let store = store.clone();
        async move {
            store
                .insert_new(
                    &record(&format!("u{i:05}"), SessionStatus::Active, "", i),
                    Capacity::NONE,
                )
                .await
                .unwrap()
        }
    }))
    .await;
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(cursor.as_deref(), 100).await.unwrap();
        pages += 1;
        assert!(page.invalid.is_empty());
        for record in page.records {
            assert!(
                seen.insert(record.user_id.clone()) || pages > 1,
                "{} seen twice in one page",
                record.user_id
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10_000, "scan does not end");
    }
    assert_eq!(seen.len(), count as usize);
    assert!(pages > 1, "a batch of 100 must take several pages");
}

/// A lease is renewed only by its holder and only while the record is
/// starting or stopping; a claim of an expired lease keeps the start step so
/// the claimant knows what to undo.
pub async fn leases_are_renewed_by_their_holder_only(store: Store) {
    let starting = record("gina", SessionStatus::Starting, "h1/1", 10);
    store.insert_new(&starting, Capacity::NONE).await.unwrap();
    assert!(store.renew_lease(&user("gina"), "h1/1", 50).await.unwrap());
    assert!(!store.renew_lease(&user("gina"), "h2/1", 60).await.unwrap());
    assert!(
        !store
            .renew_lease(&user("nobody"), "h1/1", 60)
            .await
            .unwrap()
    );
    let now = store.get(&user("gina")).await.unwrap().unwrap();
    assert_eq!(now.updated_at, 50);
    assert_eq!(now.start_step, Some(StartStep::CopyingProject));

    // Not yet expired at cutoff 50; expired at cutoff 51.
    let early = claim("h2/1", 70, StopCondition::StuckBefore(50));
    assert_eq!(store.claim_stop(&user("gina"), &early).await.unwrap(), None);
    let late = claim("h2/1", 70, StopCondition::StuckBefore(51));
    let taken = store
        .claim_stop(&user("gina"), &late)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.status, SessionStatus::Stopping);
    assert_eq!(taken.start_step, Some(StartStep::CopyingProject));
    // The old holder has lost it; the new one renews it.
    assert!(!store.renew_lease(&user("gina"), "h1/1", 80).await.unwrap());
    assert!(store.renew_lease(&user("gina"), "h2/1", 80).await.unwrap());

    let active = record("hugo", SessionStatus::Active, "h1/2", 10);
    store.insert_new(&active, Capacity::NONE).await.unwrap();
    assert!(!store.renew_lease(&user("hugo"), "h1/2", 90).await.unwrap());
    assert_eq!(store.get(&user("hugo")).await.unwrap(), Some(active));
}

/// A lock has one holder at a time until it expires; its holder extends it.
/// (A store for one host grants every lock.)
pub async fn locks_have_one_holder_until_they_expire(store: Store) {
    // Long enough for the checks made while a lock is held, even on a
    // loaded machine; the wait for its expiry is this long too.
    const TTL_MS: u64 = 1500;
    assert!(store.try_lock("reconcile", "h1", TTL_MS).await.unwrap());
    assert!(store.try_lock("reconcile", "h1", TTL_MS).await.unwrap());
    if store.kind() == "embedded" {
        return;
    }
    assert!(!store.try_lock("reconcile", "h2", TTL_MS).await.unwrap());
    assert!(store.try_lock("other", "h2", TTL_MS).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(TTL_MS + 300)).await;
    assert!(store.try_lock("reconcile", "h2", TTL_MS).await.unwrap());
    assert!(!store.try_lock("reconcile", "h1", TTL_MS).await.unwrap());
    // Only the holder releases it.
    store.unlock("reconcile", "h1").await.unwrap();
    assert!(!store.try_lock("reconcile", "h1", TTL_MS).await.unwrap());
    store.unlock("reconcile", "h2").await.unwrap();
    assert!(store.try_lock("reconcile", "h1", TTL_MS).await.unwrap());
    // Locks are not sessions.
    let page = store.scan(None, 100).await.unwrap();
    assert!(page.records.is_empty() && page.invalid.is_empty());
}

/// A tombstone is kept per user until it expires, the latest replaces the
/// one before, and no scan or capacity count of sessions sees it.
pub async fn tombstones_are_per_user_and_expire(store: Store) {
    let alice = record("alice", SessionStatus::Active, "", 1_000);
    let cause = StopCause::new(Stopper::Reaper, StopReason::Idle);
    let first = Tombstone::of(&alice, cause, None, 5_000, 10_000);
    assert_eq!(first.idle_for_ms, 4_000);
    store.put_tombstone(&first).await.unwrap();
    assert_eq!(
        store.get_tombstone(&user("alice"), 6_000).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.get_tombstone(&user("bob"), 6_000).await.unwrap(),
        None
    );
    // Expired at 5 000 + 10 000.
    assert_eq!(
        store.get_tombstone(&user("alice"), 15_000).await.unwrap(),
        None
    );

    let later = Tombstone::of(
        &alice,
        StopCause::new(Stopper::User, StopReason::User),
        Some("detail".into()),
        7_000,
        10_000,
    );
    store.put_tombstone(&later).await.unwrap();
    assert_eq!(
        store.get_tombstone(&user("alice"), 8_000).await.unwrap(),
        Some(later)
    );

    // Sessions are not tombstones: the scan is empty and a fleet of one
    // still has room.
    let page = store.scan(None, 100).await.unwrap();
    assert!(
        page.records.is_empty() && page.invalid.is_empty(),
        "{page:?}"
    );
    let bob = record("bob", SessionStatus::Starting, "h1/1", 9_000);
    assert_eq!(
        store.insert_new(&bob, fleet(1)).await.unwrap(),
        InsertOutcome::Inserted
    );

    // Writing another user's tombstone prunes expired ones and leaves the
    // live ones.
    let carol = record("carol", SessionStatus::Active, "", 1_000);
    store
        .put_tombstone(&Tombstone::of(&carol, cause, None, 30_000, 10_000))
        .await
        .unwrap();
    assert!(
        store
            .get_tombstone(&user("carol"), 31_000)
            .await
            .unwrap()
            .is_some()
    );
}
