//! What became of the starts this host runs in the background (`POST
//! /start` with `"wait": false`), for the event streams of the same host.
//!
//! A background start answers `202` once it is under way in the store; a
//! failure after that is told only by its events stream. The record alone
//! cannot always tell it: a start refused before it made a record (a full
//! fleet, a store failure) leaves none, and a start that failed is undone
//! (its record deleted) before its task knows the error it ends with. So
//! the task records here that it runs and how it ended, and a stream that
//! finds the record gone waits for the end of this host's start of that
//! user, if one still runs, before it says why the start failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::ids::UserId;

/// How long a background start's refusal stays to be told.
const OUTCOME_RETENTION: Duration = Duration::from_secs(60);

/// The most refusals of background starts kept at once.
const MAX_OUTCOMES: usize = 10_000;

/// One user's background start on this host.
#[derive(Debug)]
enum Outcome {
    /// It runs; its end is notified here.
    Running(Arc<Notify>),
    /// It was refused with this error (the API's error body), at this time.
    Refused(Instant, serde_json::Value),
}

/// The background starts of this host, by user: running, or refused within
/// the last minute.
#[derive(Debug, Default)]
pub struct BackgroundOutcomes {
    starts: Mutex<HashMap<String, Outcome>>,
}

/// A running background start: ended when dropped, whether it succeeded,
/// was refused (after [`BackgroundOutcomes::failed`]) or its task died.
#[must_use = "the start counts as running until this is dropped"]
pub struct RunningStart {
    outcomes: Arc<BackgroundOutcomes>,
    user: String,
    ended: Arc<Notify>,
}

/// Whether `starts` holds the start whose end `ended` tells as `user`'s
/// running one (not a refusal, nor a newer start of the same user).
fn still_runs(starts: &HashMap<String, Outcome>, user: &str, ended: &Arc<Notify>) -> bool {
    matches!(starts.get(user), Some(Outcome::Running(n)) if Arc::ptr_eq(n, ended))
}

impl Drop for RunningStart {
    fn drop(&mut self) {
        let mut starts = self.outcomes.lock();
        // Only its own entry: a refusal recorded meanwhile stays to be
        // told, and a newer start of the user is left alone.
        if still_runs(&starts, &self.user, &self.ended) {
            starts.remove(&self.user);
        }
        drop(starts);
        self.ended.notify_waiters();
    }
}

impl BackgroundOutcomes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Outcome>> {
        self.starts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `user`'s background start as running (forgetting the refusal
    /// of an earlier one) until the returned value is dropped.
    pub fn begin(self: &Arc<Self>, user: &UserId) -> RunningStart {
        let ended = Arc::new(Notify::new());
        self.lock()
            .insert(user.to_string(), Outcome::Running(ended.clone()));
        RunningStart {
            outcomes: self.clone(),
            user: user.to_string(),
            ended,
        }
    }

    /// Records that `user`'s background start failed with `error` (the
    /// API's error body).
    pub fn failed(&self, user: &UserId, error: serde_json::Value) {
        let mut starts = self.lock();
        starts.retain(|_, outcome| match outcome {
            Outcome::Refused(at, _) => at.elapsed() < OUTCOME_RETENTION,
            Outcome::Running(_) => true,
        });
        if starts.len() < MAX_OUTCOMES || starts.contains_key(user.as_str()) {
            starts.insert(user.to_string(), Outcome::Refused(Instant::now(), error));
        }
    }

    /// The refusal of `user`'s last background start, if recent (and
    /// forgets it): at once, without waiting for a start that still runs.
    pub fn take(&self, user: &UserId) -> Option<serde_json::Value> {
        let mut starts = self.lock();
        if !matches!(starts.get(user.as_str()), Some(Outcome::Refused(..))) {
            return None;
        }
        match starts.remove(user.as_str()) {
            Some(Outcome::Refused(at, error)) => {
                (at.elapsed() < OUTCOME_RETENTION).then_some(error)
            }
            _ => None,
        }
    }

    /// As [`BackgroundOutcomes::take`], after waiting (at most `wait`) for
    /// the end of `user`'s background start if one still runs here.
    pub async fn take_when_ended(
        &self,
        user: &UserId,
        wait: Duration,
    ) -> Option<serde_json::Value> {
        let running = match self.lock().get(user.as_str()) {
            Some(Outcome::Running(ended)) => Some(ended.clone()),
            _ => None,
        };
        if let Some(ended) = running {
            // A `Notified` hears every `notify_waiters` made after it was
            // created; the start may have ended just before, so look again.
            let notified = ended.notified();
            if still_runs(&self.lock(), user.as_str(), &ended) {
                let _ = tokio::time::timeout(wait, notified).await;
            }
        }
        self.take(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    /// A task waiting (up to 30 s) for the end of `id`'s start.
    fn waiter(
        outcomes: &Arc<BackgroundOutcomes>,
        id: &'static str,
    ) -> tokio::task::JoinHandle<Option<serde_json::Value>> {
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            outcomes
                .take_when_ended(&user(id), Duration::from_secs(30))
                .await
        })
    }

    #[tokio::test]
    async fn a_stream_waits_for_the_refusal_of_a_start_that_still_runs() {
        let outcomes = Arc::new(BackgroundOutcomes::default());
        let running = outcomes.begin(&user("bob"));
        assert_eq!(outcomes.take(&user("bob")), None, "it runs: nothing yet");

        let waiting = waiter(&outcomes, "bob");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "it waits while the start runs");
        outcomes.failed(&user("bob"), json!({"error": {"code": "driver_error"}}));
        drop(running);
        let told = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the end was notified")
            .unwrap();
        assert_eq!(told, Some(json!({"error": {"code": "driver_error"}})));
        // Told once.
        assert_eq!(outcomes.take(&user("bob")), None);
    }

    #[tokio::test]
    async fn a_start_that_ends_without_a_refusal_ends_the_wait_with_none() {
        let outcomes = Arc::new(BackgroundOutcomes::default());
        let running = outcomes.begin(&user("ada"));
        let waiting = waiter(&outcomes, "ada");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(running);
        let told = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the end was notified")
            .unwrap();
        assert_eq!(told, None);
        assert!(
            outcomes.lock().is_empty(),
            "a finished start leaves nothing"
        );
    }

    #[tokio::test]
    async fn nothing_running_answers_at_once_and_a_wait_is_bounded() {
        let outcomes = Arc::new(BackgroundOutcomes::default());
        let told = tokio::time::timeout(
            Duration::from_millis(100),
            outcomes.take_when_ended(&user("eve"), Duration::from_secs(30)),
        )
        .await
        .expect("no start runs: no wait");
        assert_eq!(told, None);

        let _running = outcomes.begin(&user("eve"));
        let started = Instant::now();
        let told = outcomes
            .take_when_ended(&user("eve"), Duration::from_millis(100))
            .await;
        assert_eq!(told, None);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_new_start_forgets_the_old_refusal_and_keeps_its_own_entry() {
        let outcomes = Arc::new(BackgroundOutcomes::default());
        outcomes.failed(&user("bob"), json!({"old": true}));
        let old = outcomes.begin(&user("bob"));
        assert_eq!(
            outcomes.take(&user("bob")),
            None,
            "forgotten by the new start"
        );
        // An earlier start's guard, dropped late, leaves a newer one be.
        let newer = outcomes.begin(&user("bob"));
        drop(old);
        assert!(matches!(
            outcomes.lock().get("bob"),
            Some(Outcome::Running(_))
        ));
        drop(newer);
        assert!(outcomes.lock().is_empty());
    }
}
