//! The Reaper: a background task that stops abandoned sessions.
//!
//! Every `reaper.interval` it scans all sessions in batches and stops
//! - active sessions whose last heartbeat is older than their idle timeout
//!   (their start's `idleTimeout`, or `reaper.idle_timeout`; including ones
//!   whose `lastHeartbeat` an operator edited by hand),
//! - active sessions older than their maximum age (their start's `maxAge`
//!   and `session.max_age`, the shorter), heartbeats or not, and
//! - sessions stuck in `starting` or `stopping` whose lease expired (their
//!   host died, or their stop failed and is retried), undoing what the
//!   record's start step says may exist.
//!
//! Each stop is claimed atomically in the store first, so a heartbeat that
//! lands before the claim saves the session, and two Reapers (on two hosts)
//! never stop one session twice. Each stop leaves a tombstone saying why.
//!
//! With `dry_run` it stops nothing: it logs (`reaper.would_stop`) and counts
//! (`vessel_reaper_would_stop_total{reason}`) what it would have stopped.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::watch;

use crate::config::ReaperConfig;
use crate::ids::UserId;
use crate::metrics::{FoundBy, StoppedBy, WouldStop};
use crate::session::SessionManager;
use crate::store::{SessionRecord, SessionStatus, StopCause, StopCondition, StopReason, Stopper};

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Records looked at.
    pub scanned: usize,
    /// Idle sessions stopped.
    pub reaped: usize,
    /// Sessions stopped for their age.
    pub aged_out: usize,
    /// Sessions a `dry_run` Reaper would have stopped (and did not).
    pub would_stop: usize,
    /// Stuck sessions torn down.
    pub unstuck: usize,
    /// Stops that failed (to be retried by a later sweep).
    pub failed: usize,
    /// Records that could not be read.
    pub invalid: usize,
    /// The records looked at, by status, before any was stopped.
    pub sessions: SessionCounts,
    /// Whether the scan reached the end of the store (a store failure ends
    /// it early; the next sweep starts again).
    pub complete: bool,
}

/// Sessions counted by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    /// Sessions `starting`.
    pub starting: u64,
    /// Sessions `active`.
    pub active: u64,
    /// Sessions `stopping`.
    pub stopping: u64,
}

impl SessionCounts {
    fn add(&mut self, status: SessionStatus) {
        match status {
            SessionStatus::Starting => self.starting += 1,
            SessionStatus::Active => self.active += 1,
            SessionStatus::Stopping => self.stopping += 1,
        }
    }

    /// Every status with its count, zeros included.
    pub fn by_status(&self) -> [(SessionStatus, u64); 3] {
        [
            (SessionStatus::Starting, self.starting),
            (SessionStatus::Active, self.active),
            (SessionStatus::Stopping, self.stopping),
        ]
    }
}

/// Why a session is a candidate for stopping.
#[derive(Debug, Clone, Copy)]
enum Reason {
    /// No heartbeat since this cutoff (ms since the epoch).
    Idle {
        cutoff: u64,
    },
    /// Past its maximum age.
    MaxAge,
    Stuck,
}

impl Reason {
    fn would_stop(self) -> WouldStop {
        match self {
            Reason::Idle { .. } => WouldStop::Idle,
            Reason::MaxAge => WouldStop::MaxAge,
            Reason::Stuck => WouldStop::Stuck,
        }
    }
}

/// How one candidate ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Stopped(Reason),
    /// `dry_run`: logged and counted, not stopped.
    WouldStop,
    /// A heartbeat or another Reaper got there first, or the record is unusable.
    Skipped,
    Failed,
}

/// The Reaper task.
pub struct Reaper {
    manager: Arc<SessionManager>,
    config: ReaperConfig,
}

impl Reaper {
    /// A Reaper stopping sessions through `manager`.
    pub fn new(manager: Arc<SessionManager>, config: ReaperConfig) -> Reaper {
        Reaper { manager, config }
    }

    /// Sweeps every `interval` until `shutdown` turns true. A sweep in
    /// progress finishes first (each of its stops is bounded).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(interval = ?self.config.interval, idle_timeout = ?self.config.idle_timeout,
            dry_run = self.config.dry_run, "reaper started");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let report = self.sweep().await;
            if report.reaped
                + report.aged_out
                + report.unstuck
                + report.would_stop
                + report.failed
                + report.invalid
                > 0
            {
                tracing::info!(?report, "reaper sweep");
            }
        }
        tracing::info!("reaper stopped");
    }

    /// One pass over all sessions. A complete pass sets the session gauges
    /// (`vessel_sessions`) from the records it read, at no extra store
    /// request, and is timed.
    pub async fn sweep(&self) -> SweepReport {
        let started = Instant::now();
        let mut report = SweepReport::default();
        self.scan_and_reap(&mut report).await;
        if report.complete {
            self.manager.metrics().record_sweep(
                &report.sessions.by_status(),
                started.elapsed(),
                self.manager.clock().now_ms(),
            );
        }
        report
    }

    /// Scans the store page by page and reaps the candidates it finds. The
    /// scan reads on while candidates are being stopped (at most
    /// `concurrency` at a time, and at most a page of candidates waiting),
    /// so a sweep takes about as long as the longer of the two, not their
    /// sum.
    async fn scan_and_reap(&self, report: &mut SweepReport) {
        let batch = self.config.batch_size.max(1);
        let (found, waiting) = tokio::sync::mpsc::channel(batch);
        let scanning = self.scan_candidates(report, found);
        let reaping = async {
            futures::stream::unfold(waiting, |mut waiting| async move {
                waiting.recv().await.map(|candidate| (candidate, waiting))
            })
            .map(|(record, reason, now)| self.reap(record, reason, now))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect::<Vec<Outcome>>()
            .await
        };
        let ((), outcomes) = tokio::join!(scanning, reaping);
        for outcome in outcomes {
            match outcome {
                Outcome::Stopped(Reason::Idle { .. }) => report.reaped += 1,
                Outcome::Stopped(Reason::MaxAge) => report.aged_out += 1,
                Outcome::Stopped(Reason::Stuck) => report.unstuck += 1,
                Outcome::WouldStop => report.would_stop += 1,
                Outcome::Failed => report.failed += 1,
                Outcome::Skipped => {}
            }
        }
    }

    /// The scan half of [`Reaper::scan_and_reap`]: counts what it reads
    /// into `report` and hands each candidate to `found` (dropping it at
    /// the end tells the reaping half that no more are coming).
    async fn scan_candidates(
        &self,
        report: &mut SweepReport,
        found: tokio::sync::mpsc::Sender<(SessionRecord, Reason, u64)>,
    ) {
        let mut cursor: Option<String> = None;
        loop {
            let page = match self
                .manager
                .store()
                .scan(cursor.as_deref(), self.config.batch_size)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "reaper cannot read sessions; will retry next sweep");
                    return;
                }
            };
            report.scanned += page.records.len();
            for record in &page.records {
                report.sessions.add(record.status);
            }
            for invalid in &page.invalid {
                report.invalid += 1;
                self.manager.metrics().count_corrupt_record(FoundBy::Reaper);
                tracing::warn!(event = "record.corrupt", key = %invalid.key, reason = %invalid.reason, "reaper skips a corrupt session record; fix or delete it");
            }
            let now = self.manager.clock().now_ms();
            for record in page.records {
                if let Some(reason) = self.reason(&record, now) {
                    // The reaping half only ends after this half does.
                    let _ = found.send((record, reason, now)).await;
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        report.complete = true;
    }

    /// Why `record` should be stopped at `now`, if it should. Age goes
    /// first: a session past its maximum age is stopped for it even if it
    /// is idle too.
    fn reason(&self, record: &SessionRecord, now: u64) -> Option<Reason> {
        let lease_cutoff = self.manager.lease_cutoff();
        let policy = &self.manager.settings().policy;
        match record.status {
            SessionStatus::Active => {
                let aged = policy.aged_out(record, now);
                let idle_ms = policy.idle_timeout_ms(record);
                if aged {
                    Some(Reason::MaxAge)
                } else if now.saturating_sub(record.last_heartbeat) > idle_ms {
                    Some(Reason::Idle {
                        cutoff: now.saturating_sub(idle_ms),
                    })
                } else {
                    None
                }
            }
            SessionStatus::Starting | SessionStatus::Stopping
                if record.updated_at < lease_cutoff =>
            {
                Some(Reason::Stuck)
            }
            _ => None,
        }
    }

    /// Claims and stops one candidate (or, in `dry_run`, logs and counts
    /// it).
    async fn reap(&self, record: SessionRecord, reason: Reason, now: u64) -> Outcome {
        let user = match UserId::parse(&record.user_id) {
            Ok(user) => user,
            Err(error) => {
                tracing::warn!(user_id = %record.user_id, %error, "reaper skips a record with an invalid user id");
                return Outcome::Skipped;
            }
        };
        if self.config.dry_run {
            let reason = reason.would_stop();
            self.manager.metrics().count_would_stop(reason);
            tracing::info!(
                event = "reaper.would_stop",
                user_id = %user,
                vm_id = %record.vm_id,
                reason = reason.as_str(),
                idle_ms = now.saturating_sub(record.last_heartbeat),
                "Reaper (dry run) would stop the session of User {user}"
            );
            return Outcome::WouldStop;
        }
        let stopped = match reason {
            Reason::Idle { cutoff } => {
                let cause = StopCause::new(Stopper::Reaper, StopReason::Idle);
                self.manager
                    .stop_if(&user, StopCondition::IdleBefore(cutoff), cause)
                    .await
            }
            // This session and no later one, heartbeats or not.
            Reason::MaxAge => {
                let cause = StopCause::new(Stopper::Reaper, StopReason::MaxAge);
                self.manager
                    .stop_if(
                        &user,
                        StopCondition::ActiveCreatedAt(record.created_at),
                        cause,
                    )
                    .await
            }
            // The same take-over as a user's next start or reconciliation.
            Reason::Stuck => self.manager.take_over(&user, Stopper::Reaper).await,
        };
        match stopped {
            Ok(Some(stopped)) => {
                self.manager.metrics().count_stop(match reason {
                    Reason::Idle { .. } => StoppedBy::ReaperIdle,
                    Reason::MaxAge => StoppedBy::ReaperMaxAge,
                    Reason::Stuck => StoppedBy::ReaperStuck,
                });
                match reason {
                    Reason::Idle { .. } => tracing::info!(
                        event = "reaper.killed",
                        user_id = %user,
                        vm_id = %stopped.vm_id,
                        idle_ms = now.saturating_sub(stopped.last_heartbeat),
                        "Reaper killed zombie session for User {user}"
                    ),
                    Reason::MaxAge => tracing::info!(
                        event = "reaper.aged_out",
                        user_id = %user,
                        vm_id = %stopped.vm_id,
                        age_ms = now.saturating_sub(stopped.created_at),
                        "Reaper stopped the session of User {user}: past its maximum age"
                    ),
                    Reason::Stuck => tracing::info!(
                        event = "reaper.unstuck",
                        user_id = %user,
                        vm_id = %stopped.vm_id,
                        "Reaper cleaned up a session stuck in a transient state for User {user}"
                    ),
                }
                Outcome::Stopped(reason)
            }
            // A heartbeat or another Reaper got there first.
            Ok(None) => Outcome::Skipped,
            Err(error) => {
                tracing::warn!(user_id = %user, %error, "reaper could not stop a session; will retry");
                Outcome::Failed
            }
        }
    }
}
