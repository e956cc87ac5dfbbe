//! The two driver handles the session manager calls: [`VmDriver`] and
//! [`ProxyDriver`]. Each call instantiates the pre-linked component in a
//! fresh store, so calls run in parallel and share nothing; a host's
//! drivers time every call and count its failures
//! (`vessel_plugin_call_duration_seconds`, `vessel_plugin_call_errors_total`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::InstancePre;

use super::bindings::proxy::ProxyPluginPre;
use super::bindings::types::{RouteInfo, RouteSpec, VmInfo, VmSpec};
use super::bindings::vm::VmPluginPre;
use super::call_state::CallState;
use super::error::{DriverError, PluginError};
use super::runtime::{LoadedPlugin, PluginRuntime};
use crate::config::{Config, PluginConfig};
use crate::metrics::Metrics;

/// Runs one driver operation: a fresh store, instantiation from the
/// pre-linked component, the export call, the limits, and the mapping of
/// the driver's WIT error; timed once its turn comes.
macro_rules! driver_call {
    ($self:ident, $op:literal, |$instance:ident, $store:ident| $call:expr) => {{
        let _turn = $self.plugin.turn().await;
        $self
            .meter
            .time($op, async {
                let (mut $store, watch) = $self.plugin.begin($op)?;
                let answer = watch
                    .run(async {
                        let $instance = $self.pre.instantiate_async(&mut $store).await?;
                        $call.await
                    })
                    .await?;
                answer.map_err(|error| PluginError::Driver {
                    plugin: $self.plugin.name().to_string(),
                    op: $op,
                    error: DriverError::from(error),
                })
            })
            .await
    }};
}

/// Where a driver's calls are measured: the plugin's configuration slot
/// (`vm`, `proxy`), which names it in the metrics' labels, and the host's
/// metrics (`None` for a driver loaded on its own, as plugin tests do).
#[derive(Clone)]
struct CallMeter {
    slot: &'static str,
    /// The driver's WIT functions, the only values of the metrics'
    /// `function` label.
    functions: &'static [&'static str],
    metrics: Option<Arc<Metrics>>,
}

impl CallMeter {
    /// Records calls in `metrics` from now on, where each of the driver's
    /// functions' error counter is served from the start, at 0.
    fn attach(&mut self, metrics: Arc<Metrics>) {
        metrics.expect_plugin_functions(self.slot, self.functions);
        self.metrics = Some(metrics);
    }

    /// Runs `call` of WIT function `function`, recording its latency and
    /// whether it failed.
    async fn time<T>(
        &self,
        function: &'static str,
        call: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        debug_assert!(
            self.functions.contains(&function),
            "{function} is not a function of the {} driver",
            self.slot
        );
        let started = Instant::now();
        let result = call.await;
        if let Some(metrics) = &self.metrics {
            metrics.observe_plugin_call(self.slot, function, started.elapsed(), result.is_err());
        }
        result
    }
}

/// The functions of `vessel:infra/vm-driver`, as metrics and errors name
/// them (the WIT names).
pub const VM_FUNCTIONS: [&str; 5] = ["create", "copy-to", "remove", "inspect", "list-vms"];

/// The functions of `vessel:infra/proxy-driver`, as metrics and errors
/// name them (the WIT names).
pub const PROXY_FUNCTIONS: [&str; 3] = ["add-route", "remove-route", "list-routes"];

fn link_error(
    role: &str,
    config: &Config,
    plugin: &PluginConfig,
    error: impl std::fmt::Display,
) -> PluginError {
    PluginError::Load {
        plugin: role.to_string(),
        path: config.plugin_path(plugin),
        reason: format!(
            "it does not fit the {role}-plugin world of {} (was it built against another \
             version of the contract?): {error}",
            super::bindings::CONTRACT
        ),
    }
}

/// The VM driver: a component exporting `vessel:infra/vm-driver`.
#[derive(Clone)]
pub struct VmDriver {
    plugin: Arc<LoadedPlugin>,
    pre: Arc<VmPluginPre<CallState>>,
    meter: CallMeter,
}

impl VmDriver {
    /// Loads the VM plugin configured in `config.plugins.vm`.
    pub fn load(runtime: &PluginRuntime, config: &Config) -> Result<VmDriver, PluginError> {
        let plugin_config = &config.plugins.vm;
        let (plugin, component) = runtime.load("vm", config, plugin_config)?;
        let pre: InstancePre<CallState> = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| link_error("vm", config, plugin_config, e))?;
        let pre = VmPluginPre::new(pre).map_err(|e| link_error("vm", config, plugin_config, e))?;
        Ok(VmDriver {
            plugin: Arc::new(plugin),
            pre: Arc::new(pre),
            meter: CallMeter {
                slot: "vm",
                functions: &VM_FUNCTIONS,
                metrics: None,
            },
        })
    }

    /// The same driver, recording its calls in `metrics` (where each of
    /// its functions' error counter is served from the start, at 0).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> VmDriver {
        self.meter.attach(metrics);
        self
    }

    /// Creates and boots a VM.
    pub async fn create(&self, spec: &VmSpec) -> Result<VmInfo, PluginError> {
        driver_call!(self, "create", |instance, store| instance
            .vessel_infra_vm_driver()
            .call_create(&mut store, spec))
    }

    /// Copies a host path into a VM.
    pub async fn copy_to(
        &self,
        vm_id: &str,
        host_path: &str,
        vm_path: &str,
    ) -> Result<(), PluginError> {
        driver_call!(self, "copy-to", |instance, store| instance
            .vessel_infra_vm_driver()
            .call_copy_to(&mut store, vm_id, host_path, vm_path))
    }

    /// Removes a VM; removing an absent VM succeeds.
    pub async fn remove(&self, vm_id: &str) -> Result<(), PluginError> {
        driver_call!(self, "remove", |instance, store| instance
            .vessel_infra_vm_driver()
            .call_remove(&mut store, vm_id))
    }

    /// Describes a VM, `None` if it does not exist.
    pub async fn inspect(&self, vm_id: &str) -> Result<Option<VmInfo>, PluginError> {
        driver_call!(self, "inspect", |instance, store| instance
            .vessel_infra_vm_driver()
            .call_inspect(&mut store, vm_id))
    }

    /// Lists the VMs the driver manages.
    pub async fn list_vms(&self) -> Result<Vec<VmInfo>, PluginError> {
        driver_call!(self, "list-vms", |instance, store| instance
            .vessel_infra_vm_driver()
            .call_list_vms(&mut store))
    }
}

/// The proxy driver: a component exporting `vessel:infra/proxy-driver`.
#[derive(Clone)]
pub struct ProxyDriver {
    plugin: Arc<LoadedPlugin>,
    pre: Arc<ProxyPluginPre<CallState>>,
    meter: CallMeter,
}

impl ProxyDriver {
    /// Loads the proxy plugin configured in `config.plugins.proxy`.
    pub fn load(runtime: &PluginRuntime, config: &Config) -> Result<ProxyDriver, PluginError> {
        let plugin_config = &config.plugins.proxy;
        let (plugin, component) = runtime.load("proxy", config, plugin_config)?;
        let pre: InstancePre<CallState> = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| link_error("proxy", config, plugin_config, e))?;
        let pre =
            ProxyPluginPre::new(pre).map_err(|e| link_error("proxy", config, plugin_config, e))?;
        Ok(ProxyDriver {
            plugin: Arc::new(plugin),
            pre: Arc::new(pre),
            meter: CallMeter {
                slot: "proxy",
                functions: &PROXY_FUNCTIONS,
                metrics: None,
            },
        })
    }

    /// The same driver, recording its calls in `metrics` (where each of
    /// its functions' error counter is served from the start, at 0).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> ProxyDriver {
        self.meter.attach(metrics);
        self
    }

    /// Routes a session and returns its public URL.
    pub async fn add_route(&self, route: &RouteSpec) -> Result<String, PluginError> {
        driver_call!(self, "add-route", |instance, store| instance
            .vessel_infra_proxy_driver()
            .call_add_route(&mut store, route))
    }

    /// Removes a route; removing an absent route succeeds.
    pub async fn remove_route(&self, route_id: &str) -> Result<(), PluginError> {
        driver_call!(self, "remove-route", |instance, store| instance
            .vessel_infra_proxy_driver()
            .call_remove_route(&mut store, route_id))
    }

    /// Lists the routes the driver serves.
    pub async fn list_routes(&self) -> Result<Vec<RouteInfo>, PluginError> {
        driver_call!(self, "list-routes", |instance, store| instance
            .vessel_infra_proxy_driver()
            .call_list_routes(&mut store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions `interface` declares in the WIT file `file`.
    fn wit_functions(file: &str, interface: &str) -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/");
        let text = std::fs::read_to_string(format!("{path}{file}")).expect("the WIT file");
        let body = text
            .split_once(&format!("interface {interface} {{"))
            .expect("the interface")
            .1;
        body.lines()
            .take_while(|line| !line.starts_with('}'))
            .filter(|line| !line.trim_start().starts_with("//"))
            .filter_map(|line| line.trim().split_once(": func"))
            .map(|(name, _)| name.to_string())
            .collect()
    }

    #[test]
    fn the_metered_functions_are_the_contracts() {
        assert_eq!(wit_functions("vm-driver.wit", "vm-driver"), VM_FUNCTIONS);
        assert_eq!(
            wit_functions("proxy-driver.wit", "proxy-driver"),
            PROXY_FUNCTIONS
        );
    }
}
