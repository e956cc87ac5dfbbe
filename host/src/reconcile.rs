//! Reconciliation: makes the drivers' view agree with the session records.
//!
//! At start-up and then every `reconcile.interval`, a pass compares three
//! views, using the ownership that Vessel's naming gives every VM and route
//! (`vessel-{public name}`, read back to the exact user id by
//! [`UserId::from_vm_id`]; anything named otherwise is not Vessel's and is
//! left alone):
//!
//! | what the pass finds | what it does (counted as) |
//! |---|---|
//! | a VM or route of Vessel's with no session record | removes it (`remove_orphan_vm`, `remove_orphan_route`) |
//! | a start or stop whose lease expired (its host died) | takes it over and undoes it (`take_over`) |
//! | a start or stop whose holder is alive | adopts it: leaves its VM and route alone |
//! | an active session whose VM is gone | removes its route and record (`clean_lost_session`) |
//! | an active session whose VM runs but whose route is missing | adds the route again (`restore_route`) |
//! | an active session whose record changed after the listing | leaves it to the next pass: the listing may predate its VM or route |
//!
//! Every change goes through the same atomic store claims as starts and
//! stops (an orphan is removed only after the pass inserts a `stopping`
//! record for its user, so a start that begins meanwhile waits for it), and
//! hosts sharing a store take turns through a lock, so passes never fight
//! each other or a request. A pass is idempotent; a driver or store error
//! ends it (the next one retries) and never takes the host down.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ReconcileConfig;
use crate::ids::UserId;
use crate::metrics::{FoundBy, PassResult, ReconcileAction};
use crate::plugins::{PluginError, RouteInfo, VmInfo};
use crate::session::{SessionError, SessionManager};
use crate::store::{SessionRecord, SessionStatus, StopCause, StopCondition, StopReason, Stopper};

/// The store lock passes take turns with.
pub const LOCK_NAME: &str = "reconcile";

/// How long the lock is held without a renewal; a pass renews it as it goes.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// Records read per store round trip.
const SCAN_BATCH: usize = 500;

/// Why a pass ended early. The next pass starts again from scratch.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A driver's listing failed: without it the pass cannot tell what
    /// exists.
    #[error("cannot list: {0}")]
    Driver(#[from] PluginError),
    /// The store failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<crate::store::StoreError> for ReconcileError {
    fn from(error: crate::store::StoreError) -> Self {
        ReconcileError::Session(error.into())
    }
}

/// What one pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Whether another host held the lock, so this pass did nothing.
    pub skipped: bool,
    /// Vessel's VMs the VM driver listed.
    pub vms: usize,
    /// Vessel's routes the proxy driver listed.
    pub routes: usize,
    /// Session records read.
    pub records: usize,
    /// VMs removed for having no session.
    pub removed_orphan_vms: usize,
    /// Routes removed for having no session.
    pub removed_orphan_routes: usize,
    /// Active sessions whose VM was gone, cleaned up.
    pub cleaned_lost_sessions: usize,
    /// Missing routes of live sessions, added again.
    pub restored_routes: usize,
    /// Abandoned starts and stops taken over and undone.
    pub taken_over: usize,
    /// Starts and stops in progress on a live host, left to it.
    pub adopted: usize,
    /// Active sessions whose record changed after the drivers were listed
    /// (a start that finished, a heartbeat): the listing may predate their
    /// VM or route, so the next pass checks them.
    pub changed_during_pass: usize,
    /// Repairs that failed (retried by the next pass).
    pub failed: usize,
}

impl ReconcileReport {
    /// Whether the pass changed anything or failed to.
    pub fn acted(&self) -> bool {
        self.removed_orphan_vms
            + self.removed_orphan_routes
            + self.cleaned_lost_sessions
            + self.restored_routes
            + self.taken_over
            + self.failed
            > 0
    }
}

/// What the drivers listed for one user, and when.
struct Listing {
    /// The user's VM, if the VM driver listed one.
    vm: Option<VmInfo>,
    /// Whether the proxy driver listed the user's route.
    has_route: bool,
    /// When the listing was taken (ms since the epoch, before the calls).
    taken_at: u64,
}

/// The reconciliation task of one host.
pub struct Reconciler {
    manager: Arc<SessionManager>,
    config: ReconcileConfig,
    holder: String,
}

impl Reconciler {
    /// A reconciler acting through `manager`.
    pub fn new(manager: Arc<SessionManager>, config: ReconcileConfig) -> Reconciler {
        let holder = manager.owner_token();
        Reconciler {
            manager,
            config,
            holder,
        }
    }

    /// Runs a pass now and then every `interval`, until `shutdown` turns
    /// true. A pass in progress finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(interval = ?self.config.interval, "reconciler started");
        loop {
            match self.pass().await {
                Ok(report) if report.acted() => tracing::info!(?report, "reconciliation pass"),
                Ok(report) => tracing::debug!(?report, "reconciliation pass: all in order"),
                Err(error) => {
                    self.count_pass(PassResult::Failed);
                    tracing::warn!(%error, "reconciliation pass failed; the next one retries");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// One pass over all sessions, VMs and routes.
    pub async fn pass(&self) -> Result<ReconcileReport, ReconcileError> {
        let store = self.manager.store();
        let ttl = LOCK_TTL.as_millis() as u64;
        if !store.try_lock(LOCK_NAME, &self.holder, ttl).await? {
            self.count_pass(PassResult::Skipped);
            return Ok(ReconcileReport {
                skipped: true,
                ..ReconcileReport::default()
            });
        }
        let result = self.pass_locked().await;
        if let Err(error) = store.unlock(LOCK_NAME, &self.holder).await {
            tracing::debug!(%error, "cannot release the reconcile lock; it expires by itself");
        }
        if result.is_ok() {
            self.count_pass(PassResult::Ok);
        }
        result
    }

    async fn pass_locked(&self) -> Result<ReconcileReport, ReconcileError> {
        let mut report = ReconcileReport::default();
        // The drivers first, then the records: a VM or route listed here
        // existed before any record the scan below could miss was written.
        let listed_at = self.manager.clock().now_ms();
        let mut vms: BTreeMap<UserId, VmInfo> =
            vessel_owned(self.manager.vm().list_vms().await?, |vm: &VmInfo| &vm.vm_id);
        let mut routes: BTreeMap<UserId, RouteInfo> = vessel_owned(
            self.manager.proxy().list_routes().await?,
            |route: &RouteInfo| &route.route_id,
        );
        report.vms = vms.len();
        report.routes = routes.len();

        let store = self.manager.store();
        let mut unreadable = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.scan(cursor.as_deref(), SCAN_BATCH).await?;
            for invalid in &page.invalid {
                // Never remove what a record that cannot be read may own.
                let user = invalid.key.rsplit(':').next().unwrap_or(&invalid.key);
                unreadable.insert(user.to_string());
                self.manager
                    .metrics()
                    .count_corrupt_record(FoundBy::Reconciler);
            }
            for record in page.records {
                let Ok(user) = UserId::parse(&record.user_id) else {
                    unreadable.insert(record.user_id.clone());
                    continue;
                };
                report.records += 1;
                let vm = vms.remove(&user);
                let route = routes.remove(&user);
                let listing = Listing {
                    vm,
                    has_route: route.is_some(),
                    taken_at: listed_at,
                };
                self.check_session(&user, record, listing, &mut report)
                    .await;
            }
            match page.next {
                Some(next) => {
                    cursor = Some(next);
                    let ttl = LOCK_TTL.as_millis() as u64;
                    store.try_lock(LOCK_NAME, &self.holder, ttl).await?;
                }
                None => break,
            }
        }

        let orphans: BTreeMap<UserId, (bool, bool)> = vms
            .keys()
            .map(|user| (user.clone(), (true, routes.contains_key(user))))
            .chain(
                routes
                    .keys()
                    .map(|user| (user.clone(), (vms.contains_key(user), true))),
            )
            .filter(|(user, _)| !unreadable.contains(user.as_str()))
            .collect();
        for (user, (vm, route)) in orphans {
            self.remove_orphan(&user, vm, route, &mut report).await;
        }
        Ok(report)
    }

    /// Checks one session against what the drivers listed for its user.
    async fn check_session(
        &self,
        user: &UserId,
        record: SessionRecord,
        listing: Listing,
        report: &mut ReconcileReport,
    ) {
        match record.status {
            SessionStatus::Starting | SessionStatus::Stopping => {
                if record.updated_at >= self.manager.lease_cutoff() {
                    report.adopted += 1;
                    return;
                }
                match self.manager.take_over(user, Stopper::Reconciler).await {
                    Ok(Some(_)) => self.acted(
                        user,
                        ReconcileAction::TakeOver,
                        "its host stopped renewing the lease",
                        &mut report.taken_over,
                    ),
                    Ok(None) => report.adopted += 1,
                    Err(error) => self.failed(user, "take_over", &error, report),
                }
            }
            SessionStatus::Active if record.updated_at > listing.taken_at => {
                report.changed_during_pass += 1;
            }
            SessionStatus::Active => match listing.vm {
                None => self.clean_if_lost(user, &record, report).await,
                Some(vm) if !listing.has_route => {
                    self.restore_route(user, &record, &vm, report).await
                }
                Some(_) => {}
            },
        }
    }

    /// An active session whose VM the listing did not show: if the driver
    /// confirms it is gone, removes its route and record.
    async fn clean_if_lost(
        &self,
        user: &UserId,
        record: &SessionRecord,
        report: &mut ReconcileReport,
    ) {
        // The listing was taken before the record was read: a session that
        // started in between has a VM the listing missed. Ask again.
        match self.manager.vm().inspect(&record.vm_id).await {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(error) => return self.failed(user, "clean_lost_session", &error.into(), report),
        }
        match self
            .manager
            .stop_if(
                user,
                StopCondition::Active,
                StopCause::new(Stopper::Reconciler, StopReason::VmGone),
            )
            .await
        {
            Ok(Some(_)) => self.acted(
                user,
                ReconcileAction::CleanLostSession,
                "its VM is gone",
                &mut report.cleaned_lost_sessions,
            ),
            Ok(None) => {}
            Err(error) => self.failed(user, "clean_lost_session", &error, report),
        }
    }

    /// Adds the route of a live session back, then checks the session is
    /// still the one it was routed for (a stop may have removed the route
    /// in between); if not, removes the route again.
    async fn restore_route(
        &self,
        user: &UserId,
        record: &SessionRecord,
        vm: &VmInfo,
        report: &mut ReconcileReport,
    ) {
        let Some(ip) = vm.ip.clone().or_else(|| record.ip.clone()) else {
            return;
        };
        let spec = self.manager.route_spec(user, &record.vm_id, ip);
        if let Err(error) = self.manager.proxy().add_route(&spec).await {
            return self.failed(user, "restore_route", &error.into(), report);
        }
        let still = match self.manager.store().get(user).await {
            Ok(Some(now)) => {
                now.status == SessionStatus::Active && now.created_at == record.created_at
            }
            Ok(None) => false,
            // Unknown: keep the route; the next pass looks again.
            Err(_) => true,
        };
        if still {
            self.acted(
                user,
                ReconcileAction::RestoreRoute,
                "its VM runs but its route was missing",
                &mut report.restored_routes,
            );
        } else if let Err(error) = self.manager.proxy().remove_route(&spec.route_id).await {
            self.failed(user, "restore_route", &error.into(), report);
        }
    }

    /// Removes a VM and/or route of `user`, who had no session record
    /// (unless the user has one by now: then they are that session's).
    async fn remove_orphan(
        &self,
        user: &UserId,
        vm: bool,
        route: bool,
        report: &mut ReconcileReport,
    ) {
        match self.manager.remove_unowned(user).await {
            Ok(true) => {
                if route {
                    let counter = &mut report.removed_orphan_routes;
                    self.acted(
                        user,
                        ReconcileAction::RemoveOrphanRoute,
                        "no session record",
                        counter,
                    );
                }
                if vm {
                    let counter = &mut report.removed_orphan_vms;
                    self.acted(
                        user,
                        ReconcileAction::RemoveOrphanVm,
                        "no session record",
                        counter,
                    );
                }
            }
            Ok(false) => {}
            Err(error) => self.failed(user, "remove_orphan", &error, report),
        }
    }

    fn acted(&self, user: &UserId, action: ReconcileAction, reason: &str, counter: &mut usize) {
        *counter += 1;
        self.manager.metrics().count_reconcile_action(action);
        let action = action.as_str();
        tracing::info!(event = "reconcile.action", action, user_id = %user, vm_id = %user.vm_id(), reason, "reconciled {action} for User {user}: {reason}");
    }

    fn failed(
        &self,
        user: &UserId,
        action: &'static str,
        error: &SessionError,
        report: &mut ReconcileReport,
    ) {
        report.failed += 1;
        tracing::warn!(event = "reconcile.failed", action, user_id = %user, %error, "reconciliation could not repair User {user}; the next pass retries");
    }

    fn count_pass(&self, result: PassResult) {
        self.manager.metrics().count_reconcile_pass(result);
    }
}

/// The items named the way Vessel names VMs and routes, by user.
fn vessel_owned<T>(items: Vec<T>, name: impl Fn(&T) -> &String) -> BTreeMap<UserId, T> {
    items
        .into_iter()
        .filter_map(|item| UserId::from_vm_id(name(&item)).map(|user| (user, item)))
        .collect()
}
