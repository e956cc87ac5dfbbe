//! Assembling a Vessel host from its configuration, and serving it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::plugins::{PluginError, PluginRuntime, ProxyDriver, VmDriver};
use crate::reaper::Reaper;
use crate::session::{SessionManager, SessionSettings, default_host_id};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::{SessionStore, StoreError};

/// How long a shutdown waits for the Reaper's current sweep.
const REAPER_STOP_GRACE: Duration = Duration::from_secs(30);

/// Why a host could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The session store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// A Vessel host: its session manager and what it runs in the background.
pub struct App {
    manager: Arc<SessionManager>,
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
        let store = open_store(&config)?;
        if let Err(error) = store.ping().await {
            // Not fatal: requests answer 503 until the store is back.
            tracing::warn!(%error, "session store is not reachable yet");
        }
        let runtime = PluginRuntime::new(config.plugin_cache_dir())?;
        let vm = VmDriver::load(&runtime, &config)?;
        let proxy = ProxyDriver::load(&runtime, &config)?;
        let manager = SessionManager::new(
            store,
            vm,
            proxy,
            SessionSettings::from_config(&config),
            clock,
            host_id,
        );
        Ok(App {
            manager: Arc::new(manager),
            config,
        })
    }

    /// The session manager.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.manager
    }

    /// Serves the API on `listener` and runs the Reaper until `shutdown`
    /// resolves; then stops accepting, lets requests in flight finish, and
    /// stops the Reaper. Sessions are left running.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let reaper = self.config.reaper.enabled.then(|| {
            let reaper = Reaper::new(self.manager.clone(), self.config.reaper.clone());
            tokio::spawn(reaper.run(stop_rx))
        });
        let router = api::router(self.manager.clone());
        tracing::info!(listen = %listener.local_addr()?, store = self.manager.store().kind(), "vessel serving");
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing requests in flight");
            })
            .await;
        let _ = stop_tx.send(true);
        if let Some(reaper) = reaper
            && tokio::time::timeout(REAPER_STOP_GRACE, reaper)
                .await
                .is_err()
        {
            tracing::warn!("the reaper did not stop in time");
        }
        served
    }
}

fn open_store(config: &Config) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match &config.store.redis_url {
        Some(url) => Arc::new(RedisStore::new(url, config.store.timeout)?),
        None => Arc::new(EmbeddedStore::open(&config.embedded_store_path())?),
    })
}
