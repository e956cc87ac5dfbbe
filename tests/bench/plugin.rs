//! The plugin rows: the mock plugins called in this process through the
//! host's plugin runtime (no HTTP, no store), and the same work done
//! natively, to show what the WebAssembly boundary costs.
//!
//! - `plugin_inspect`: the mock VM's `inspect` of a running VM, the one
//!   plugin call a hit with liveness `inspect` adds.
//! - `native_inspect`: what that call does, run as native code: the same
//!   `mock-state` functions the mock is built on (open the state
//!   directory, look for an injected fault, read the VM's file, write the
//!   call record).
//! - `plugin_cold_calls`: the three calls of a cold start (`create`,
//!   `copy-to`, `add-route`), each followed by an untimed `remove-route`
//!   and `remove`: the plugins' own share of a cold start.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use vessel::app::App;
use vessel::ids::UserId;
use vessel::plugins::{ProxyDriver, VmDriver, VmSpec, VmState};
use vessel::session::SessionManager;
use vessel_tests::{mock_vm_state, test_config};

use crate::load::Worker;

/// A host built in this process (its API is not served), whose drivers
/// the plugin rows call.
pub struct PluginHost {
    app: App,
    /// The mock VM's state directory.
    state_dir: PathBuf,
}

impl PluginHost {
    /// Builds the host with the embedded store under `dir`.
    pub async fn build(dir: &Path) -> Result<PluginHost> {
        let config = test_config(dir, None);
        let state_dir = mock_vm_state(&config).dir;
        let app = App::build(config).await.context("building the host")?;
        Ok(PluginHost { app, state_dir })
    }

    fn manager(&self) -> &SessionManager {
        self.app.manager()
    }

    /// The spec of `user`'s VM, as a start would make it.
    fn spec(&self, user: &UserId) -> VmSpec {
        let settings = self.manager().settings();
        VmSpec {
            vm_id: user.vm_id(),
            name: user.public_name(),
            image: settings.image.clone(),
            cpus: settings.cpus,
            memory_mib: settings.memory_mib,
            disk_mib: settings.disk_mib,
            ports: settings.ports.clone(),
            labels: vec![("vessel.user".to_string(), user.to_string())],
        }
    }

    /// Creates a running VM for `user` (once, before the inspect rows).
    pub async fn create_vm(&self, user: &str) -> Result<String> {
        let user = UserId::parse(user)?;
        let spec = self.spec(&user);
        self.manager().vm().create(&spec).await?;
        Ok(spec.vm_id)
    }

    /// A worker calling `inspect` of `vm_id` through the plugin runtime.
    pub fn inspect_worker(&self, vm_id: &str) -> InspectWorker {
        InspectWorker {
            vm: self.manager().vm().clone(),
            vm_id: vm_id.to_string(),
        }
    }

    /// A worker doing natively what the mock's `inspect` of `vm_id` does.
    pub fn native_inspect_worker(&self, vm_id: &str) -> NativeInspectWorker {
        NativeInspectWorker {
            state_dir: self.state_dir.clone(),
            vm_id: vm_id.to_string(),
        }
    }

    /// A worker making the plugin calls of `user`'s cold start, then
    /// undoing them.
    pub fn cold_calls_worker(&self, user: &str, project: &Path) -> Result<ColdCallsWorker> {
        let user = UserId::parse(user)?;
        let manager = self.manager();
        Ok(ColdCallsWorker {
            vm: manager.vm().clone(),
            proxy: manager.proxy().clone(),
            spec: self.spec(&user),
            route: manager.route_spec(&user, &user.vm_id(), String::new()),
            project: project.display().to_string(),
            project_dest: manager.settings().project_dest.clone(),
        })
    }
}

/// Calls the mock VM's `inspect` through the plugin runtime.
pub struct InspectWorker {
    vm: VmDriver,
    vm_id: String,
}

impl Worker for InspectWorker {
    async fn call(&mut self) -> Result<()> {
        let info = self.vm.inspect(&self.vm_id).await?;
        ensure!(
            info.is_some_and(|info| info.state == VmState::Running),
            "{} is not running",
            self.vm_id
        );
        Ok(())
    }
}

/// Does natively what the mock VM's `inspect` does.
pub struct NativeInspectWorker {
    state_dir: PathBuf,
    vm_id: String,
}

impl Worker for NativeInspectWorker {
    async fn call(&mut self) -> Result<()> {
        let state = mock_state::StateDir::at(&self.state_dir);
        ensure!(state.fault("inspect")?.is_none(), "a fault is injected");
        let vm: Option<serde_json::Value> = state.get_item(&self.vm_id)?;
        let vm = vm.ok_or_else(|| anyhow!("{} does not exist", self.vm_id))?;
        ensure!(vm["state"] == "running", "{} is not running", self.vm_id);
        state.record_call("inspect", &self.vm_id, "ok")?;
        Ok(())
    }
}

/// Makes the three plugin calls of a cold start, and undoes them untimed.
pub struct ColdCallsWorker {
    vm: VmDriver,
    proxy: ProxyDriver,
    spec: VmSpec,
    route: vessel::plugins::RouteSpec,
    project: String,
    project_dest: String,
}

impl Worker for ColdCallsWorker {
    async fn call(&mut self) -> Result<()> {
        let info = self.vm.create(&self.spec).await?;
        self.vm
            .copy_to(&self.spec.vm_id, &self.project, &self.project_dest)
            .await?;
        self.route.target_ip = info
            .ip
            .ok_or_else(|| anyhow!("{} has no address", self.spec.vm_id))?;
        self.proxy.add_route(&self.route).await?;
        Ok(())
    }

    async fn reset(&mut self) -> Result<()> {
        self.proxy.remove_route(&self.route.route_id).await?;
        self.vm.remove(&self.spec.vm_id).await?;
        Ok(())
    }
}
