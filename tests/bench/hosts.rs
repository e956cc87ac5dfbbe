//! The hosts one store's rows run against: the real `vessel` binary, one
//! process per liveness check (a host setting), each holding one running
//! session per worker.
//!
//! The hosts are processes of their own so that the client (this harness)
//! and the host do not share a runtime, and so that each host's peak memory
//! can be read. Each worker has its own user, as real clients would: the
//! rows do not all contend on one record.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use futures::StreamExt;
use vessel_tests::{
    Api, HostProcess, free_port, host_config_toml, mock_vm_table_with_liveness, project_dir,
};

use crate::StoreKind;

/// How a host checks that a hit's VM still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// One call of the mock VM plugin's `inspect`.
    Inspect,
    /// A TCP connect to the VM's address (no plugin call).
    Tcp,
    /// No check.
    None,
}

impl Liveness {
    /// The three, in report order.
    pub const ALL: [Liveness; 3] = [Liveness::Inspect, Liveness::Tcp, Liveness::None];

    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Inspect => "inspect",
            Liveness::Tcp => "tcp",
            Liveness::None => "none",
        }
    }
}

/// One host process and the sessions it holds.
pub struct Host {
    process: HostProcess,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Worker `i`'s user, whose session runs.
    pub users: Vec<String>,
}

impl Host {
    /// The process id, for its memory.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The three hosts of one store and what they need.
pub struct StoreHosts {
    hosts: Vec<Host>,
    /// The project every start copies.
    pub project: PathBuf,
    /// Accepts connections where the `tcp` host's VMs claim to serve.
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts of sessions made at once while setting up.
const SETUP_PARALLEL: usize = 8;

impl StoreHosts {
    /// Starts the hosts of `store` (the `vessel` binary at `binary`, under
    /// `root`) and `sessions` running sessions on each.
    pub async fn start(
        store: StoreKind,
        binary: &Path,
        redis_url: Option<&str>,
        root: &Path,
        sessions: usize,
        threads: usize,
    ) -> Result<StoreHosts> {
        let project = project_dir(root, "project");
        let mut hosts = Vec::new();
        let mut listeners = Vec::new();
        for liveness in Liveness::ALL {
            let dir = root.join(liveness.name());
            std::fs::create_dir_all(&dir).context("a host's directory")?;
            let port = free_port();
            let vm_port = free_port();
            let store_table = match (store, redis_url) {
                (StoreKind::Redis, Some(url)) => format!("[store]\nredis_url = {url:?}\n"),
                (StoreKind::Redis, None) => return Err(anyhow!("the Redis store needs a URL")),
                (StoreKind::Embedded, _) => String::new(),
            };
            // No background sweeps or passes between the measured requests;
            // the project from the harness's directory.
            let tables = format!(
                "{store_table}[session]\nproject_roots = [{roots:?}]\nports = [{vm_port}]\n\
                 [reaper]\nenabled = false\n[reconcile]\nenabled = false\n{vm}",
                roots = root.display().to_string(),
                vm = mock_vm_table_with_liveness(liveness.name(), ""),
            );
            let top = format!("worker_threads = {threads}");
            let config = host_config_toml(&dir, port, &top, &tables);
            let process =
                HostProcess::start_binary(binary, &dir, &config, port, "vessel.log").await;
            let api = process.api();
            let users: Vec<String> = (0..sessions)
                .map(|i| format!("{}-{i}", liveness.name()))
                .collect();
            let started: Vec<Result<IpAddr>> = futures::stream::iter(users.iter())
                .map(|user| start_session(&api, user, &project))
                .buffered(SETUP_PARALLEL)
                .collect()
                .await;
            for ip in started {
                let ip = ip?;
                if liveness == Liveness::Tcp {
                    listeners.push(listen(ip, vm_port).await?);
                }
            }
            hosts.push(Host {
                process,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                users,
            });
        }
        Ok(StoreHosts {
            hosts,
            project,
            listeners,
        })
    }

    /// The host checking liveness with `liveness`.
    pub fn host(&self, liveness: Liveness) -> &Host {
        let index = Liveness::ALL
            .iter()
            .position(|l| *l == liveness)
            .unwrap_or_default();
        &self.hosts[index]
    }

    /// Stops the hosts (SIGTERM; the sessions stay in the store, which the
    /// harness throws away) and the listeners.
    pub fn stop(self) -> Result<()> {
        for listener in &self.listeners {
            listener.abort();
        }
        let mut outcome = Ok(());
        for mut host in self.hosts {
            let code = host.process.terminate();
            if code != Some(0) && outcome.is_ok() {
                outcome = Err(anyhow!(
                    "a host exited with {code:?}; its log:\n{}",
                    host.process.log_text()
                ));
            }
        }
        outcome
    }
}

/// Starts `user`'s session and returns its VM's address (a loopback one).
async fn start_session(api: &Api, user: &str, project: &Path) -> Result<IpAddr> {
    let answer = api.start(user, project).await;
    ensure!(
        answer.status == 200 && answer.body["reused"] == false,
        "starting {user}'s session answered {} {}",
        answer.status,
        answer.body
    );
    let ip: IpAddr = answer.body["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| anyhow!("{user}'s session has no address: {}", answer.body))?;
    ensure!(
        ip.is_loopback(),
        "the mock VM's address {ip} is not a loopback one"
    );
    Ok(ip)
}

/// Accepts (and closes) connections on `ip:port`, as a VM's dev server
/// would answer a `tcp` liveness check.
async fn listen(ip: IpAddr, port: u16) -> Result<tokio::task::JoinHandle<()>> {
    let socket = tokio::net::TcpListener::bind((ip, port))
        .await
        .with_context(|| format!("listening on {ip}:{port} for the tcp liveness check"))?;
    Ok(tokio::spawn(async move {
        loop {
            match socket.accept().await {
                Ok((connection, _)) => drop(connection),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }))
}
