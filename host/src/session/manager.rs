//! The session manager: the seed's start, stop and heartbeat, made atomic,
//! bounded in time, and undone on failure.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Map;

use super::error::SessionError;
use super::liveness::{LivenessChecks, LivenessSettings, Verdict, VmHealth};
use super::policy::{PolicyLimits, Requested};
use super::project::ProjectRoots;
use super::staging::{StagedProject, StagingError, StagingPolicy};
use crate::clock::Clock;
use crate::config::{Config, Liveness};
use crate::ids::UserId;
use crate::metrics::{Metrics, StartResult, StoppedBy};
use crate::plugins::{ProxyDriver, RouteSpec, VmDriver, VmSpec};
use crate::store::{
    Capacity, HeartbeatOutcome, InsertOutcome, SessionRecord, SessionStatus, SessionStore,
    StartStep, StepBegun, StopCause, StopClaim, StopCondition, StopReason, Stopper, Tombstone,
};

/// How often a request waiting for another request's start or stop looks
/// at the record again.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// What a session's VM looks like and how its lifecycle is bounded; the
/// `session` section of the configuration, resolved.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The image VMs boot from.
    pub image: String,
    /// Virtual CPUs per VM.
    pub cpus: u32,
    /// Memory per VM in MiB.
    pub memory_mib: u32,
    /// Disk per VM in MiB.
    pub disk_mib: u32,
    /// Ports the VM serves; the first is routed and checked.
    pub ports: Vec<u16>,
    /// Where the project goes inside the VM.
    pub project_dest: String,
    /// Where projects may come from.
    pub project_roots: ProjectRoots,
    /// How a project is staged before it is copied into the VM.
    pub staging: StagingPolicy,
    /// Where staged copies of projects are made: an absolute path.
    pub staging_dir: PathBuf,
    /// The bound of a cold start.
    pub start_timeout: Duration,
    /// The bound of a stop.
    pub stop_timeout: Duration,
    /// How a cache hit checks that the VM still runs.
    pub liveness: Liveness,
    /// The bound of one TCP liveness probe.
    pub liveness_timeout: Duration,
    /// Probes after a failed one, before the driver is asked.
    pub liveness_retries: u32,
    /// The pause between probes.
    pub liveness_retry_delay: Duration,
    /// The lease of a start or stop in progress (renewed every third).
    pub lease: Duration,
    /// The most sessions the fleet holds; `None` for no limit.
    pub max_sessions: Option<u64>,
    /// The most sessions one starter (an operator token) holds; `None` for
    /// no limit.
    pub max_sessions_per_starter: Option<u64>,
    /// Idle timeouts and maximum ages.
    pub policy: PolicyLimits,
    /// How long tombstones are kept; zero: none are written.
    pub tombstone_retention: Duration,
}

impl SessionSettings {
    /// The settings in `config`.
    pub fn from_config(config: &Config) -> SessionSettings {
        let session = &config.session;
        SessionSettings {
            image: session.image.clone(),
            cpus: session.cpus,
            memory_mib: session.memory_mib,
            disk_mib: session.disk_mib,
            ports: session.ports.clone(),
            project_dest: session.project_dest.clone(),
            project_roots: ProjectRoots::new(&session.project_roots, session.allow_any_project),
            staging: StagingPolicy {
                unsafe_entries: session.unsafe_project_entries,
                max_bytes: session.project_max_bytes,
                max_entries: session.project_max_entries,
            },
            staging_dir: config.staging_dir(),
            start_timeout: session.start_timeout,
            stop_timeout: session.stop_timeout,
            liveness: config.plugins.vm.liveness,
            liveness_timeout: session.liveness_timeout,
            liveness_retries: session.liveness_retries,
            liveness_retry_delay: session.liveness_retry_delay,
            lease: session.lease,
            max_sessions: (session.max_sessions > 0).then_some(session.max_sessions),
            max_sessions_per_starter: (config.limits.max_sessions_per_token > 0)
                .then_some(config.limits.max_sessions_per_token),
            policy: PolicyLimits::from_config(config),
            tombstone_retention: session.tombstone_retention,
        }
    }

    /// The port sessions are routed to and checked on: the first of `ports`.
    pub fn service_port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(8080)
    }
}

/// The result of a start.
#[derive(Debug, Clone)]
pub struct Started {
    /// The session, active.
    pub record: SessionRecord,
    /// Whether it already ran (a cache hit) rather than being created now.
    pub reused: bool,
    /// What the start found out about the VM.
    pub health: VmHealth,
}

/// The result of a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// This request stopped the session.
    Stopped,
    /// There was no session: nothing to do.
    NotRunning,
    /// Another request is stopping it and had not finished within the stop
    /// timeout.
    InProgress,
}

/// Hands out owner tokens, `{host}/{n}`, unique across hosts and restarts.
#[derive(Debug)]
struct OwnerTokens {
    host: String,
    next: AtomicU64,
}

impl OwnerTokens {
    fn new(host: String) -> OwnerTokens {
        OwnerTokens {
            host,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}/{}",
            self.host,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// What a session may hold on the drivers' side, so that undoing it removes
/// exactly that. A step counts as made as soon as it has begun: a call cut
/// off by a timeout (or a host that died) may have finished on the driver's
/// side, and removal is safe to repeat.
#[derive(Debug, Default, Clone, Copy)]
struct Made {
    vm: bool,
    route: bool,
}

impl Made {
    /// What `record` may hold, from its start step.
    fn of(record: &SessionRecord) -> Made {
        Made {
            vm: record.vm_may_exist(),
            route: record.route_may_exist(),
        }
    }
}

/// Starts, stops and tracks users' sessions.
pub struct SessionManager {
    store: Arc<dyn SessionStore>,
    vm: VmDriver,
    proxy: ProxyDriver,
    settings: SessionSettings,
    clock: Arc<dyn Clock>,
    owners: OwnerTokens,
    metrics: Arc<Metrics>,
    liveness: LivenessChecks,
}

impl SessionManager {
    /// A manager over `store` and the two drivers. `host_id` names this
    /// host in owner tokens; it must differ between hosts sharing a store.
    pub fn new(
        store: Arc<dyn SessionStore>,
        vm: VmDriver,
        proxy: ProxyDriver,
        settings: SessionSettings,
        clock: Arc<dyn Clock>,
        host_id: String,
        metrics: Arc<Metrics>,
    ) -> SessionManager {
        let liveness = LivenessChecks::new(
            vm.clone(),
            LivenessSettings {
                liveness: settings.liveness,
                port: settings.service_port(),
                timeout: settings.liveness_timeout,
                retries: settings.liveness_retries,
                retry_delay: settings.liveness_retry_delay,
            },
        );
        SessionManager {
            liveness,
            store,
            vm,
            proxy,
            settings,
            clock,
            owners: OwnerTokens::new(host_id),
            metrics,
        }
    }

    /// The VM driver.
    pub fn vm(&self) -> &VmDriver {
        &self.vm
    }

    /// The proxy driver.
    pub fn proxy(&self) -> &ProxyDriver {
        &self.proxy
    }

    /// This host's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The settings sessions are run with.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// The time before which a transient record's lease has expired: its
    /// holder stopped renewing it.
    pub fn lease_cutoff(&self) -> u64 {
        self.clock
            .now_ms()
            .saturating_sub(self.settings.lease.as_millis() as u64)
    }

    /// A new owner token of this host, for claims made outside the manager
    /// (the reconciler's).
    pub fn owner_token(&self) -> String {
        self.owners.next()
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The clock sessions are timed with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Returns `user`'s running session, or starts one from `project_path`.
    ///
    /// A hit (an active record whose VM is alive) costs one store read and
    /// the liveness check. A miss claims the user atomically (a concurrent
    /// start waits for the claimant and returns its session), creates the
    /// VM, copies the project in, adds the route and stores the session;
    /// any failure undoes the steps before it. `starter` names who asks,
    /// for the per-starter limit (`None`: not counted). `requested` is the
    /// policy the start asks for, checked against the operator's maxima; a
    /// hit keeps the running session's policy.
    pub async fn start(
        &self,
        user: &UserId,
        project_path: &str,
        starter: Option<&str>,
        requested: Requested,
    ) -> Result<Started, SessionError> {
        self.start_telling(user, project_path, starter, requested, None)
            .await
    }

    /// As [`SessionManager::start`], and tells `underway` once a start of
    /// the user's session is under way in the store (this one claimed the
    /// user, or another's start is running), so that its progress can be
    /// followed from the record; not told when the start ends before that
    /// (a hit, a refusal).
    pub async fn start_telling(
        &self,
        user: &UserId,
        project_path: &str,
        starter: Option<&str>,
        requested: Requested,
        mut underway: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Started, SessionError> {
        let mut tell = move || {
            if let Some(underway) = underway.take() {
                let _ = underway.send(());
            }
        };
        let requested = self.settings.policy.check(requested)?;
        let project = self.settings.project_roots.resolve(project_path)?;
        let deadline = Instant::now() + self.settings.start_timeout + self.settings.stop_timeout;
        loop {
            match self.store.get(user).await? {
                Some(record) if record.status == SessionStatus::Active => {
                    match self.liveness.verdict(&record).await {
                        Verdict::Alive(health) => {
                            self.metrics.count_start(StartResult::Hit);
                            return Ok(Started {
                                record,
                                reused: true,
                                health,
                            });
                        }
                        Verdict::Gone => {
                            tracing::warn!(event = "session.vm_gone", user_id = %user, vm_id = %record.vm_id,
                                "the VM driver says the session's VM is gone; starting afresh");
                            // Only this session: another start may have
                            // replaced it meanwhile.
                            let condition = StopCondition::ActiveCreatedAt(record.created_at);
                            let claim = self.claim(condition);
                            if let Some(claimed) = self.store.claim_stop(user, &claim).await? {
                                self.teardown(user, &claimed).await?;
                                let cause = StopCause::new(Stopper::Host, StopReason::VmGone);
                                self.bury(&claimed, cause, None).await;
                            }
                        }
                    }
                }
                Some(record) if record.updated_at < self.lease_cutoff() => {
                    // Its holder stopped renewing the lease: the host died.
                    if self.take_over(user, Stopper::Host).await?.is_none() {
                        tokio::time::sleep(WAIT_POLL).await;
                    }
                }
                Some(record) => {
                    if record.status == SessionStatus::Starting {
                        tell();
                    }
                    if Instant::now() >= deadline {
                        return Err(SessionError::Timeout(format!(
                            "the session of {user} is still {} by another request",
                            record.status.as_str()
                        )));
                    }
                    tokio::time::sleep(WAIT_POLL).await;
                }
                None => {
                    let mut record = self.starting_record(user, &project);
                    record.started_by = starter.map(str::to_string);
                    record.idle_timeout_ms = requested.idle_timeout_ms;
                    record.max_age_ms = requested.max_age_ms;
                    let capacity = Capacity {
                        fleet: self.settings.max_sessions,
                        per_starter: self.settings.max_sessions_per_starter,
                    };
                    match self.store.insert_new(&record, capacity).await? {
                        InsertOutcome::Inserted => {
                            tell();
                            let record = self.cold_start(user, &project, record).await;
                            self.metrics.count_start(if record.is_ok() {
                                StartResult::Created
                            } else {
                                StartResult::Failed
                            });
                            return Ok(Started {
                                record: record?,
                                reused: false,
                                health: VmHealth::Ok,
                            });
                        }
                        InsertOutcome::Full => {
                            self.metrics.count_start(StartResult::AtCapacity);
                            return Err(SessionError::AtCapacity(format!(
                                "the fleet holds its maximum of {} sessions \
                                 (session.max_sessions); try again once some have stopped",
                                self.settings.max_sessions.unwrap_or_default()
                            )));
                        }
                        InsertOutcome::StarterFull => {
                            self.metrics.count_start(StartResult::AtCapacity);
                            return Err(SessionError::StarterAtCapacity(format!(
                                "this token holds its maximum of {} sessions \
                                 (limits.max_sessions_per_token); stop one first",
                                self.settings.max_sessions_per_starter.unwrap_or_default()
                            )));
                        }
                        InsertOutcome::Exists(_) => {}
                    }
                }
            }
        }
    }

    /// Stops `user`'s session: removes the route, the VM and the record.
    /// Stopping a user without a session succeeds. If the removal fails the
    /// record stays `stopping` and the Reaper retries it.
    pub async fn stop(&self, user: &UserId) -> Result<Stopped, SessionError> {
        let deadline = Instant::now() + self.settings.start_timeout + self.settings.stop_timeout;
        loop {
            let claim = self.claim(StopCondition::Active);
            if let Some(claimed) = self.store.claim_stop(user, &claim).await? {
                self.teardown(user, &claimed).await?;
                self.metrics.count_stop(StoppedBy::User);
                let cause = StopCause::new(Stopper::User, StopReason::User);
                self.bury(&claimed, cause, None).await;
                tracing::info!(user_id = %user, vm_id = %claimed.vm_id, "session stopped");
                return Ok(Stopped::Stopped);
            }
            match self.store.get(user).await? {
                None => return Ok(Stopped::NotRunning),
                Some(record) if record.status == SessionStatus::Active => continue,
                Some(record) => {
                    if Instant::now() >= deadline {
                        return match record.status {
                            SessionStatus::Stopping => Ok(Stopped::InProgress),
                            _ => Err(SessionError::Timeout(format!(
                                "the session of {user} is still starting"
                            ))),
                        };
                    }
                    tokio::time::sleep(WAIT_POLL).await;
                }
            }
        }
    }

    /// Records a heartbeat for `user`'s active session.
    pub async fn heartbeat(&self, user: &UserId) -> Result<SessionRecord, SessionError> {
        match self.store.heartbeat(user, self.clock.now_ms()).await? {
            HeartbeatOutcome::Updated(record) => Ok(record),
            HeartbeatOutcome::Missing => Err(SessionError::NoSession(format!(
                "user {user} has no session"
            ))),
            HeartbeatOutcome::NotActive(record) => match record.status {
                SessionStatus::Starting => Err(SessionError::Conflict(format!(
                    "the session of {user} is still starting"
                ))),
                _ => Err(SessionError::NoSession(format!(
                    "the session of {user} is being stopped"
                ))),
            },
        }
    }

    /// `user`'s session as stored, if any.
    pub async fn status(&self, user: &UserId) -> Result<Option<SessionRecord>, SessionError> {
        Ok(self.store.get(user).await?)
    }

    /// Stops `user`'s session if `condition` holds when it is claimed; the
    /// Reaper's and the reconciler's way in. Returns the session it
    /// stopped, and leaves a tombstone saying `cause`.
    pub async fn stop_if(
        &self,
        user: &UserId,
        condition: StopCondition,
        cause: StopCause,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let claim = self.claim(condition);
        match self.store.claim_stop(user, &claim).await? {
            Some(claimed) => {
                self.teardown(user, &claimed).await?;
                self.bury(&claimed, cause, None).await;
                Ok(Some(claimed))
            }
            None => Ok(None),
        }
    }

    /// Takes over `user`'s start or stop whose holder stopped renewing its
    /// lease, and undoes what that start may have made. Returns the record
    /// it took over, `None` if the lease is not expired (or someone else
    /// took it first). `by` is who took it over, for the tombstone.
    pub async fn take_over(
        &self,
        user: &UserId,
        by: Stopper,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let claim = self.claim(StopCondition::StuckBefore(self.lease_cutoff()));
        let Some(claimed) = self.store.claim_stop(user, &claim).await? else {
            return Ok(None);
        };
        tracing::warn!(
            event = "session.taken_over",
            user_id = %user,
            vm_id = %claimed.vm_id,
            step = claimed.start_step.map(StartStep::as_str).unwrap_or("stopping"),
            "took over an abandoned start or stop whose lease expired; undoing it"
        );
        self.metrics.count_takeover();
        self.teardown(user, &claimed).await?;
        self.bury(&claimed, StopCause::new(by, StopReason::Abandoned), None)
            .await;
        Ok(Some(claimed))
    }

    /// Removes `user`'s VM and route, which no session record owns (the
    /// reconciler found them). First inserts a `stopping` record held by
    /// this call, so that a start for the user that begins meanwhile waits
    /// for the removal. Returns `false`, removing nothing, if the user has a
    /// record by now: then the VM and route are that session's business.
    pub async fn remove_unowned(&self, user: &UserId) -> Result<bool, SessionError> {
        let mut claim = self.new_record(user, None);
        claim.status = SessionStatus::Stopping;
        if self.store.insert_new(&claim, Capacity::NONE).await? != InsertOutcome::Inserted {
            return Ok(false);
        }
        self.teardown(user, &claim).await?;
        Ok(true)
    }

    /// The latest tombstone of `user`, if it has not expired.
    pub async fn tombstone(&self, user: &UserId) -> Result<Option<Tombstone>, SessionError> {
        Ok(self.store.get_tombstone(user, self.clock.now_ms()).await?)
    }

    /// Leaves the tombstone of `stopped` (unless tombstones are off). The
    /// session is stopped already, so a failure to write it is only logged.
    async fn bury(&self, stopped: &SessionRecord, cause: StopCause, detail: Option<String>) {
        let retention = self.settings.tombstone_retention;
        if retention.is_zero() {
            return;
        }
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let tombstone = Tombstone::of(stopped, cause, detail, self.clock.now_ms(), retention_ms);
        if let Err(error) = self.store.put_tombstone(&tombstone).await {
            tracing::warn!(user_id = %stopped.user_id, %error, reason = cause.reason.as_str(),
                "cannot write the stopped session's tombstone");
        }
    }

    fn claim(&self, condition: StopCondition) -> StopClaim {
        StopClaim {
            owner: self.owners.next(),
            now_ms: self.clock.now_ms(),
            condition,
        }
    }

    fn starting_record(&self, user: &UserId, project: &Path) -> SessionRecord {
        let mut record = self.new_record(user, project.to_str());
        record.start_step = Some(StartStep::Claimed);
        record.start_steps.push(StepBegun {
            step: StartStep::Claimed,
            at: record.created_at,
        });
        record
    }

    /// A `starting` record of `user`, held by a new owner token, with no
    /// address or URL yet.
    fn new_record(&self, user: &UserId, project_path: Option<&str>) -> SessionRecord {
        let now = self.clock.now_ms();
        SessionRecord {
            user_id: user.to_string(),
            vm_id: user.vm_id(),
            ip: None,
            url: None,
            last_heartbeat: now,
            status: SessionStatus::Starting,
            created_at: now,
            updated_at: now,
            owner: self.owners.next(),
            start_step: None,
            start_steps: Vec::new(),
            project_path: project_path.map(str::to_string),
            started_by: None,
            idle_timeout_ms: None,
            max_age_ms: None,
            extra: Map::new(),
        }
    }

    /// Creates the VM, copies the project, adds the route and stores the
    /// session as active, holding the record's lease throughout. On any
    /// failure, undoes what it made.
    async fn cold_start(
        &self,
        user: &UserId,
        project: &Path,
        mut record: SessionRecord,
    ) -> Result<SessionRecord, SessionError> {
        let owner = record.owner.clone();
        let started = Instant::now();
        let provisioned = tokio::time::timeout(
            self.settings.start_timeout,
            self.under_lease(user, &owner, self.provision(user, project, &mut record)),
        )
        .await;
        let failure = match provisioned {
            Ok(Ok(())) => {
                let now = self.clock.now_ms();
                record.status = SessionStatus::Active;
                record.start_step = None;
                record.last_heartbeat = now;
                record.updated_at = now;
                match self.store.replace_owned(&record, &owner).await {
                    Ok(true) => {
                        tracing::info!(user_id = %user, vm_id = %record.vm_id, ip = ?record.ip, url = ?record.url,
                            elapsed_ms = started.elapsed().as_millis() as u64, "session started");
                        return Ok(record);
                    }
                    Ok(false) => taken_over(user),
                    Err(error) => error.into(),
                }
            }
            Ok(Err(error)) => error,
            Err(_) => SessionError::Timeout(format!(
                "starting the session of {user} took longer than {:?} (cut off while {})",
                self.settings.start_timeout,
                describe(record.start_step),
            )),
        };
        tracing::warn!(user_id = %user, error = %failure, step = ?record.start_step, "start failed; rolling back");
        // What the start was doing and, for a driver, the short summary
        // the API answers with: the driver's own words (which may hold
        // paths or output) stay in the log, as the tombstone is shown to
        // anyone who may see the user's status.
        let detail = match &failure {
            SessionError::Driver(error) => {
                format!("{} while {}", error.summary(), describe(record.start_step))
            }
            _ => format!("failed while {}", describe(record.start_step)),
        };
        let tombstone = record.clone();
        self.roll_back(user, record, &owner).await;
        let cause = StopCause::new(Stopper::Host, StopReason::FailedStart);
        self.bury(&tombstone, cause, Some(detail)).await;
        Err(failure)
    }

    /// Runs `work` while renewing the lease `owner` holds on `user`'s
    /// record every third of the lease. Fails with a conflict as soon as a
    /// renewal finds the lease taken over (the work is then dropped).
    async fn under_lease<T>(
        &self,
        user: &UserId,
        owner: &str,
        work: impl Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        let keeper = async {
            loop {
                tokio::time::sleep(self.settings.lease / 3).await;
                match self
                    .store
                    .renew_lease(user, owner, self.clock.now_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return taken_over(user),
                    // An outage: keep working and keep trying; if it lasts
                    // past the lease, the next renewal or step finds out.
                    Err(error) => {
                        tracing::warn!(user_id = %user, %error, "cannot renew the lease; retrying")
                    }
                }
            }
        };
        tokio::select! {
            result = work => result,
            lost = keeper => Err(lost),
        }
    }

    /// Writes `step` to the record before the step begins (and renews the
    /// lease with it), so a host that takes over knows what may exist.
    async fn begin_step(
        &self,
        user: &UserId,
        record: &mut SessionRecord,
        step: StartStep,
    ) -> Result<(), SessionError> {
        record.start_step = Some(step);
        record.updated_at = self.clock.now_ms();
        record.start_steps.push(StepBegun {
            step,
            at: record.updated_at,
        });
        let owner = record.owner.clone();
        if self.store.replace_owned(record, &owner).await? {
            Ok(())
        } else {
            Err(taken_over(user))
        }
    }

    /// The three steps of a cold start, each written to the record before
    /// it begins.
    async fn provision(
        &self,
        user: &UserId,
        project: &Path,
        record: &mut SessionRecord,
    ) -> Result<(), SessionError> {
        let spec = VmSpec {
            vm_id: record.vm_id.clone(),
            name: user.public_name(),
            image: self.settings.image.clone(),
            cpus: self.settings.cpus,
            memory_mib: self.settings.memory_mib,
            disk_mib: self.settings.disk_mib,
            ports: self.settings.ports.clone(),
            labels: vec![("vessel.user".to_string(), user.to_string())],
        };
        // First the project: a project that cannot be copied boots no VM.
        let staged = self.stage(user, project).await?;
        self.begin_step(user, record, StartStep::CreatingVm).await?;
        let info = match self.vm.create(&spec).await {
            Err(error)
                if matches!(
                    error.driver_error(),
                    Some(crate::plugins::DriverError::AlreadyExists(_))
                ) =>
            {
                // A leftover of a start that died before cleaning up: this
                // start owns the user now, so replace it.
                tracing::warn!(vm_id = %spec.vm_id, "replacing a leftover VM");
                self.vm.remove(&spec.vm_id).await?;
                self.vm.create(&spec).await?
            }
            other => other?,
        };
        let ip = info.ip.clone().ok_or_else(|| {
            SessionError::Driver(crate::plugins::PluginError::Driver {
                plugin: "vm".into(),
                op: "create",
                error: crate::plugins::DriverError::Failed(format!(
                    "VM {} was created without an address",
                    spec.vm_id
                )),
            })
        })?;
        record.ip = Some(ip.clone());

        self.begin_step(user, record, StartStep::CopyingProject)
            .await?;
        let staged_text = staged.path().to_str().unwrap_or_default().to_string();
        let copied = self
            .vm
            .copy_to(&spec.vm_id, &staged_text, &self.settings.project_dest)
            .await;
        // Removing a large copy blocks on the disk: off the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(staged)).await;
        copied?;

        self.begin_step(user, record, StartStep::AddingRoute)
            .await?;
        let url = self
            .proxy
            .add_route(&self.route_spec(user, &spec.vm_id, ip))
            .await?;
        record.url = Some(url);
        Ok(())
    }

    /// Makes the host's own copy of `user`'s project for the VM driver (see
    /// [`super::staging`]).
    async fn stage(&self, user: &UserId, project: &Path) -> Result<StagedProject, SessionError> {
        let source = project.to_path_buf();
        let staging_dir = self.settings.staging_dir.clone();
        let name = user.public_name();
        let policy = self.settings.staging;
        let staged = tokio::task::spawn_blocking(move || {
            super::staging::stage(&source, &staging_dir, &name, policy)
        })
        .await
        .map_err(|e| SessionError::InvalidInput(format!("cannot stage the project: {e}")))?;
        match staged {
            Ok(staged) => {
                tracing::info!(user_id = %user, entries = staged.entries, bytes = staged.bytes,
                    skipped = staged.skipped.len(), "project staged");
                Ok(staged)
            }
            Err(StagingError::TooLarge(why)) => Err(SessionError::ProjectTooLarge(why)),
            Err(error) => Err(SessionError::InvalidInput(error.to_string())),
        }
    }

    /// The route of `user`'s session on VM `vm_id` at `ip`: named like the
    /// VM, published under the user's public name, to the service port.
    pub fn route_spec(&self, user: &UserId, vm_id: &str, ip: String) -> RouteSpec {
        RouteSpec {
            route_id: vm_id.to_string(),
            name: user.public_name(),
            user_id: user.to_string(),
            target_ip: ip,
            target_port: self.settings.service_port(),
        }
    }

    /// Undoes a failed start: marks the record stopping (keeping its start
    /// step, so that a failed undo is retried by the Reaper with the same
    /// knowledge), removes what the step says may exist, and deletes the
    /// record.
    async fn roll_back(&self, user: &UserId, mut record: SessionRecord, owner: &str) {
        self.metrics.count_rollback();
        let made = Made::of(&record);
        if made.vm || made.route {
            record.status = SessionStatus::Stopping;
            record.updated_at = self.clock.now_ms();
            if let Err(error) = self.store.replace_owned(&record, owner).await {
                tracing::warn!(user_id = %user, %error, "cannot mark the failed start as stopping");
            }
            let removal = self.remove_infrastructure(&record.vm_id, made);
            if let Err(error) = self.under_lease(user, owner, removal).await {
                tracing::error!(user_id = %user, vm_id = %record.vm_id, %error,
                    "rollback failed; the Reaper will retry it");
                return;
            }
        }
        if let Err(error) = self.store.delete_owned(user, owner).await {
            tracing::error!(user_id = %user, %error, "cannot delete the failed start's record");
        }
    }

    /// Removes a claimed session's route and VM (as far as its start step
    /// says they may exist), holding the claim's lease, then its record. On
    /// failure the record stays `stopping`, held by the claim, for the
    /// Reaper to retry once the lease expires.
    async fn teardown(&self, user: &UserId, claimed: &SessionRecord) -> Result<(), SessionError> {
        // The store only hands out records bound to their user, so this VM
        // id is the user's own (see `SessionRecord::from_json`).
        let removal = self.remove_infrastructure(&claimed.vm_id, Made::of(claimed));
        self.under_lease(user, &claimed.owner, removal).await?;
        self.store.delete_owned(user, &claimed.owner).await?;
        Ok(())
    }

    /// Removes the route and then the VM, as far as `made` says they exist,
    /// within the stop timeout.
    async fn remove_infrastructure(&self, vm_id: &str, made: Made) -> Result<(), SessionError> {
        let removal = async {
            if made.route {
                self.proxy.remove_route(vm_id).await?;
            }
            if made.vm {
                self.vm.remove(vm_id).await?;
            }
            Ok::<(), SessionError>(())
        };
        match tokio::time::timeout(self.settings.stop_timeout, removal).await {
            Ok(result) => result,
            Err(_) => Err(SessionError::Timeout(format!(
                "removing {vm_id} took longer than {:?}",
                self.settings.stop_timeout
            ))),
        }
    }
}

/// The error of an operation whose record another host took over.
fn taken_over(user: &UserId) -> SessionError {
    SessionError::Conflict(format!(
        "the start or stop of {user}'s session was taken over by another host \
         (this one did not renew its lease in time)"
    ))
}

/// What a start was doing at `step`, for error messages.
fn describe(step: Option<StartStep>) -> &'static str {
    match step {
        None | Some(StartStep::Claimed) => "claiming the user",
        Some(StartStep::CreatingVm) => "the VM driver was creating the VM",
        Some(StartStep::CopyingProject) => "the VM driver was copying the project in",
        Some(StartStep::AddingRoute) => "the proxy driver was adding the route",
    }
}

/// A host id for owner tokens: host name, process id and start time, so it
/// differs between hosts and between runs of one host.
pub fn default_host_id(clock: &dyn Clock) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "host".to_string());
    format!("{host}-{}-{:x}", std::process::id(), clock.now_ms())
}
