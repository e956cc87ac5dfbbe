//! Whether a running session's VM is still there, when a start finds the
//! session already active: a probe of the dev server's port, and the VM
//! driver's own word, decided once per session at a time on a host.
//!
//! A failed probe alone never destroys anything: a dev server that is busy,
//! rebuilding or restarting does not mean the VM is gone. Only the driver's
//! `inspect` saying the VM does not exist, or is stopped, ends the session
//! (and a fresh one is started); a VM that runs but whose port does not
//! answer is kept and reported `unresponsive`, and a driver that cannot be
//! asked leaves the session as it is (`unknown`). Concurrent starts for one
//! session share one decision instead of each probing on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Serialize;

use crate::config::Liveness;
use crate::plugins::{VmDriver, VmState};
use crate::store::SessionRecord;

/// What a start found out about a running session's VM, in its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmHealth {
    /// The dev server answered (or, with `inspect` liveness, the driver
    /// reports the VM running; or the VM was just created).
    Ok,
    /// The VM runs, by the driver's word, but its port did not answer:
    /// the dev server is busy, rebuilding or down. The session is kept;
    /// show the user that their server is not answering, and retry.
    Unresponsive,
    /// The driver could not be asked; the session is kept as it is.
    Unknown,
    /// Not checked (`liveness = "none"`).
    Unchecked,
}

/// The decision about one running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it; this is how it is.
    Alive(VmHealth),
    /// The driver says the VM does not exist or is stopped: end the
    /// session and start afresh.
    Gone,
}

/// How a running session is checked.
#[derive(Debug, Clone)]
pub struct LivenessSettings {
    /// The check.
    pub liveness: Liveness,
    /// The port the TCP probe connects to.
    pub port: u16,
    /// The bound of one TCP connection attempt.
    pub timeout: Duration,
    /// How many more attempts follow a failed one.
    pub retries: u32,
    /// The pause between attempts.
    pub retry_delay: Duration,
}

/// A decision in progress, which every start waiting for it shares.
type Flight = Shared<BoxFuture<'static, Verdict>>;

/// Decides about running sessions, one decision per session at a time.
pub struct LivenessChecks {
    vm: VmDriver,
    settings: LivenessSettings,
    /// Decisions in progress, by user and session (`createdAt`).
    flights: Mutex<HashMap<(String, u64), Flight>>,
}

impl LivenessChecks {
    /// Checks with `settings`, asking `vm` when a probe fails.
    pub fn new(vm: VmDriver, settings: LivenessSettings) -> LivenessChecks {
        LivenessChecks {
            vm,
            settings,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The decision about `record`, an active session: joins the decision
    /// in progress for it on this host, if there is one.
    pub async fn verdict(&self, record: &SessionRecord) -> Verdict {
        let key = (record.user_id.clone(), record.created_at);
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights
                .entry(key.clone())
                .or_insert_with(|| {
                    decide(self.vm.clone(), self.settings.clone(), record.clone())
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let verdict = flight.clone().await;
        // The first to finish clears it; later starts decide afresh.
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(&key).is_some_and(|f| f.ptr_eq(&flight)) {
            flights.remove(&key);
        }
        verdict
    }
}

/// Probes, then asks the driver when the probe fails.
async fn decide(vm: VmDriver, settings: LivenessSettings, record: SessionRecord) -> Verdict {
    match settings.liveness {
        Liveness::None => Verdict::Alive(VmHealth::Unchecked),
        Liveness::Inspect => ask_driver(&vm, &record, VmHealth::Ok).await,
        Liveness::Tcp => {
            if probe(&settings, &record).await {
                Verdict::Alive(VmHealth::Ok)
            } else {
                ask_driver(&vm, &record, VmHealth::Unresponsive).await
            }
        }
    }
}

/// Whether the session's port accepts a connection within the attempts.
async fn probe(settings: &LivenessSettings, record: &SessionRecord) -> bool {
    let Some(ip) = record
        .ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    else {
        return false;
    };
    for attempt in 0..=settings.retries {
        if attempt > 0 {
            tokio::time::sleep(settings.retry_delay).await;
        }
        let connect = tokio::net::TcpStream::connect((ip, settings.port));
        if let Ok(Ok(_)) = tokio::time::timeout(settings.timeout, connect).await {
            return true;
        }
    }
    false
}

/// The driver's word on the VM: gone only if it does not exist or is
/// stopped; `running` is the health of a VM the driver reports running.
async fn ask_driver(vm: &VmDriver, record: &SessionRecord, running: VmHealth) -> Verdict {
    match vm.inspect(&record.vm_id).await {
        Ok(Some(info)) => match info.state {
            VmState::Running => Verdict::Alive(running),
            VmState::Creating => Verdict::Alive(VmHealth::Unresponsive),
            VmState::Unknown => Verdict::Alive(VmHealth::Unknown),
            VmState::Stopped => Verdict::Gone,
        },
        Ok(None) => Verdict::Gone,
        Err(error) => {
            // Never destroy a session on a driver's hiccup.
            tracing::warn!(vm_id = %record.vm_id, %error, "cannot ask the VM driver about a session; keeping it");
            Verdict::Alive(VmHealth::Unknown)
        }
    }
}
