//! Assembling a Vessel host from its configuration, and serving it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api;
use crate::auth::{AuthSetupError, Authenticator};
use crate::background::spawn_niced;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::{PluginError, PluginRuntime, ProxyDriver, VmDriver};
use crate::reaper::Reaper;
use crate::reconcile::Reconciler;
use crate::session::{SessionManager, SessionSettings, default_host_id};
use crate::store::embedded::EmbeddedStore;
use crate::store::metered::MeteredStore;
use crate::store::redis::RedisStore;
use crate::store::{SessionStore, StoreError};

/// How long the last answers (503 `shutting_down`) may take to be written
/// once the grace is over.
const ANSWER_FLUSH: Duration = Duration::from_millis(500);

/// The longest a shutdown waits for the Reaper's sweep or the reconciler's
/// pass in progress once the requests are done (never past the grace).
const BACKGROUND_STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a host could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The session store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Authentication cannot be set up safely.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}

/// A Vessel host: its session manager and what it runs in the background.
pub struct App {
    manager: Arc<SessionManager>,
    authenticator: Arc<Authenticator>,
    startup_token: Option<String>,
    config: Config,
}

impl App {
    /// Opens the store, compiles (or loads) the plugins and builds the
    /// session manager, on the system clock.
    pub async fn build(config: Config) -> Result<App, AppError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let host_id = default_host_id(clock.as_ref());
        App::build_with(config, clock, host_id).await
    }

    /// As [`App::build`], with a given clock and host id.
    pub async fn build_with(
        config: Config,
        clock: Arc<dyn Clock>,
        host_id: String,
    ) -> Result<App, AppError> {
        // First, so a host that would be open to the network fails before
        // it does anything else.
        let auth = Authenticator::setup(&config)?;
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn SessionStore> =
            Arc::new(MeteredStore::new(open_store(&config)?, metrics.clone()));
        if let Err(error) = store.ping().await {
            // Not fatal: requests answer 503 until the store is back.
            tracing::warn!(%error, "session store is not reachable yet");
        }
        let runtime = PluginRuntime::for_config(&config)?;
        let vm = VmDriver::load(&runtime, &config)?.with_metrics(metrics.clone());
        let proxy = ProxyDriver::load(&runtime, &config)?.with_metrics(metrics.clone());
        let manager = SessionManager::new(
            store,
            vm,
            proxy,
            SessionSettings::from_config(&config),
            clock,
            host_id,
            metrics,
        );
        Ok(App {
            manager: Arc::new(manager),
            authenticator: Arc::new(auth.authenticator),
            startup_token: auth.startup_token,
            config,
        })
    }

    /// The operator token minted at start-up when the host made (or read)
    /// its own signing key, for the person starting it; `None` when keys
    /// are configured or authentication is off.
    pub fn startup_token(&self) -> Option<&str> {
        self.startup_token.as_deref()
    }

    /// The session manager.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.manager
    }

    /// Serves the API on `listener` and runs the Reaper and the reconciler
    /// until `shutdown` resolves; then stops accepting, lets requests in
    /// flight (and their driver calls) finish for at most
    /// `shutdown_grace`, and stops the background tasks. Sessions are left
    /// running: a shutdown is not a stop.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        // Both below the requests' priority: a sweep or pass over many
        // sessions never takes a core from them (see `background`).
        if self.config.reaper.enabled {
            let reaper = Reaper::new(self.manager.clone(), self.config.reaper.clone());
            let run = reaper.run(stop_rx.clone());
            let nice = self.config.reaper.nice;
            background.push(("reaper", spawn_niced("vessel-reaper", nice, run)));
        }
        if self.config.reconcile.enabled {
            let reconciler = Reconciler::new(self.manager.clone(), self.config.reconcile.clone());
            let run = reconciler.run(stop_rx.clone());
            let nice = self.config.reconcile.nice;
            background.push(("reconciler", spawn_niced("vessel-reconcile", nice, run)));
        }
        // At the end of the grace, requests still in flight answer 503
        // `shutting_down` instead of losing their connection.
        let (grace_over_tx, grace_over_rx) = watch::channel(false);
        let state = api::ApiState::new(
            self.manager.clone(),
            self.authenticator.clone(),
            &self.config,
        );
        let router = api::router(state, &self.config).layer(axum::middleware::from_fn_with_state(
            (grace_over_rx, self.config.shutdown_grace),
            answer_before_exit,
        ));
        tracing::info!(listen = %listener.local_addr()?, store = self.manager.store().kind(), "vessel serving");

        // The signal stops the background tasks at once (no new sweep or
        // pass begins) and starts one grace period that bounds everything.
        let stop_tx = Arc::new(stop_tx);
        let stop_on_signal = stop_tx.clone();
        let (signalled_tx, mut signalled) = watch::channel(None::<Instant>);
        let http = self.config.http.clone();
        let server = async move {
            api::server::serve(listener, router, &http, async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections; finishing requests in flight");
                let _ = stop_on_signal.send(true);
                let _ = signalled_tx.send(Some(Instant::now()));
            })
            .await
        };
        tokio::pin!(server);
        let grace = self.config.shutdown_grace;
        let signal_time = signalled.clone();
        let grace_over = async move {
            let at = signalled
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|at| *at);
            match at {
                Some(at) => tokio::time::sleep_until(at + grace).await,
                None => std::future::pending().await,
            }
        };
        let (served, deadline) = tokio::select! {
            served = &mut server => {
                let signalled_at = *signal_time.borrow();
                let end_of_grace = signalled_at.map_or(Instant::now() + grace, |at| at + grace);
                (served, end_of_grace.min(Instant::now() + BACKGROUND_STOP_GRACE))
            }
            () = grace_over => {
                tracing::warn!(?grace, "requests still in flight after the shutdown grace; answering them 503 \
                    (their starts are taken over once their lease expires)");
                let _ = grace_over_tx.send(true);
                let served = match tokio::time::timeout(ANSWER_FLUSH, &mut server).await {
                    Ok(served) => served,
                    Err(_) => Ok(()),
                };
                (served, Instant::now())
            }
        };
        let _ = stop_tx.send(true);
        // What is left of the grace, for a sweep or pass in progress.
        for (name, mut task) in background {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(
                    task = name,
                    "did not stop within the shutdown grace; cut off \
                    (an unfinished stop is retried once its lease expires)"
                );
            }
        }
        served
    }
}

/// Runs a request, or answers 503 `shutting_down` if the shutdown grace ends
/// first (the request's work is dropped).
async fn answer_before_exit(
    axum::extract::State((mut grace_over, grace)): axum::extract::State<(
        watch::Receiver<bool>,
        Duration,
    )>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    tokio::select! {
        response = next.run(request) => response,
        Ok(_) = grace_over.wait_for(|over| *over) => {
            api::ApiError::shutting_down(grace).into_response()
        }
    }
}

fn open_store(config: &Config) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match &config.store.redis_url {
        Some(url) => Arc::new(RedisStore::new(url, config.store.timeout)?),
        None => Arc::new(EmbeddedStore::open(&config.embedded_store_path())?),
    })
}
