//! The HTTP baseline: a bare server on the host's own HTTP stack (axum on
//! hyper and tokio, the same allocator), answering `GET /healthz` with a
//! fixed `{"status":"ok"}` and nothing else: no middleware, no store, no
//! session. Its rate is what the stack itself serves on this machine,
//! next to the same client, so the status and heartbeat rows can be read
//! as a share of it as well as of raw Redis.
//!
//! It runs as a process of its own (`vessel-bench --bare-http ADDR
//! THREADS`), as the hosts do, so that its CPU is read apart from the
//! client's; with `THREADS` 0 it has one worker thread per CPU, as a host
//! with the default `worker_threads` has.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::process::Child;

use crate::http::Connection;

/// What the server answers, as the host's `/healthz` does.
const ANSWER: &str = r#"{"status":"ok"}"#;

/// How long the server may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Serves the baseline on `addr` until the process is killed, on a runtime
/// of `threads` worker threads (0: one per CPU).
pub fn serve(addr: SocketAddr, threads: usize) -> Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    let runtime = builder.build().context("a tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let router = Router::new().route(
            "/healthz",
            get(|| async { ([(CONTENT_TYPE, "application/json")], ANSWER) }),
        );
        axum::serve(listener, router).await.context("serving")
    })
}

/// The baseline server, running; killed when dropped.
pub struct BareServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BareServer {
    /// Starts this harness as the server on a free loopback port, with
    /// `threads` worker threads, and waits until it accepts connections.
    pub async fn start(threads: usize) -> Result<BareServer> {
        let addr = SocketAddr::from(([127, 0, 0, 1], vessel_tests::free_port()));
        let exe = std::env::current_exe().context("this harness's path")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--bare-http")
            .arg(addr.to_string())
            .arg(threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the bare HTTP server")?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the bare HTTP server exited ({status})");
            }
            if Connection::open(addr).await.is_ok() {
                return Ok(BareServer { child, addr });
            }
            if Instant::now() > deadline {
                bail!("the bare HTTP server did not listen on {addr} within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its process id, for its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
