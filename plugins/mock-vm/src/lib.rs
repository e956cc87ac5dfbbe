//! `mock-vm`: a VM driver that fakes microVMs, for development and tests.
//!
//! It implements the whole `vm-driver` contract without a hypervisor: a
//! "VM" is a JSON file in the plugin's state directory with a loopback
//! address `127.61.X.Y` (never a routable one). State lives in the directory
//! the operator granted, so it survives across calls and host restarts, and
//! every call is written to a call record that tests read.
//!
//! Settings (all optional):
//! - `state_dir`: the guest path of the granted state directory (`/state`).
//! - `boot_delay_ms`: how long `create` takes (`0`).
//! - `fail_<op>`: inject a fault into `<op>` (`create`, `copy_to`, `remove`,
//!   `inspect`, `list_vms`), in the format of [`mock_state::Fault`]. A file
//!   `faults/<op>` in the state directory does the same at run time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    world: "vm-plugin",
    path: "../../wit",
});

use exports::vessel::infra::vm_driver::Guest;
use vessel::infra::config;
use vessel::infra::log::{Level, log};
use vessel::infra::types::{DriverError, VmInfo, VmSpec, VmState};

/// The highest number of VMs the mock hands addresses to (127.61.0.1 up to
/// 127.61.254.254).
const MAX_VMS: u32 = 254 * 254;

/// A fake VM as stored in `items/<vm-id>.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MockVm {
    vm_id: String,
    /// The session's public name (absent in VMs of Vessel 0.1).
    #[serde(default)]
    name: String,
    /// The labels the host attached (`vessel.user` = the exact user id).
    #[serde(default)]
    labels: Vec<(String, String)>,
    image: String,
    cpus: u32,
    memory_mib: u32,
    disk_mib: u32,
    ports: Vec<u16>,
    /// `creating` until the boot delay has passed, then `running`.
    state: String,
    /// The reserved slot the address was derived from.
    slot: u32,
    ip: String,
    created_at_ms: u64,
    /// Every `copy-to` applied to this VM, as `host-path -> vm-path`.
    copies: Vec<String>,
}

impl MockVm {
    fn info(&self) -> VmInfo {
        VmInfo {
            vm_id: self.vm_id.clone(),
            state: if self.state == "running" {
                VmState::Running
            } else {
                VmState::Creating
            },
            ip: Some(self.ip.clone()),
            ports: self.ports.clone(),
        }
    }
}

struct MockVmDriver;

mock_state::mock_driver_plumbing!("mock-vm");

fn address_of(slot: u32) -> String {
    let hi = (slot - 1) / 254;
    let lo = (slot - 1) % 254 + 1;
    format!("127.61.{hi}.{lo}")
}

fn boot_delay() -> Duration {
    let ms = config::get("boot_delay_ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_millis(ms)
}

impl Guest for MockVmDriver {
    fn create(spec: VmSpec) -> Result<VmInfo, DriverError> {
        let vm_id = spec.vm_id.clone();
        operation("create", &vm_id, |state| {
            if spec.image.is_empty() {
                return Err(DriverError::InvalidInput("image must not be empty".into()));
            }
            let slot = state
                .reserve_slot(&vm_id, MAX_VMS)
                .map_err(io_failed)?
                .ok_or_else(|| DriverError::Unavailable("mock-vm: no free addresses".into()))?;
            let mut vm = MockVm {
                vm_id: vm_id.clone(),
                name: spec.name,
                labels: spec.labels,
                image: spec.image,
                cpus: spec.cpus,
                memory_mib: spec.memory_mib,
                disk_mib: spec.disk_mib,
                ports: spec.ports,
                state: "creating".into(),
                slot,
                ip: address_of(slot),
                created_at_ms: mock_state::now_ms(),
                copies: Vec::new(),
            };
            if let Err(e) = state.create_item(&vm_id, &vm) {
                let _ = state.release_slot(slot);
                return Err(match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        DriverError::AlreadyExists(format!("VM {vm_id} already exists"))
                    }
                    _ => io_failed(e),
                });
            }
            std::thread::sleep(boot_delay());
            vm.state = "running".into();
            state.put_item(&vm_id, &vm).map_err(io_failed)?;
            log(Level::Info, &format!("created {vm_id} at {}", vm.ip));
            Ok(vm.info())
        })
    }

    fn copy_to(vm_id: String, host_path: String, vm_path: String) -> Result<(), DriverError> {
        operation("copy-to", &vm_id, |state| {
            if !host_path.starts_with('/') || !vm_path.starts_with('/') {
                return Err(DriverError::InvalidInput(
                    "copy-to paths must be absolute".into(),
                ));
            }
            let mut vm: MockVm = state
                .get_item(&vm_id)
                .map_err(io_failed)?
                .ok_or_else(|| DriverError::NotFound(format!("VM {vm_id} does not exist")))?;
            vm.copies.push(format!("{host_path} -> {vm_path}"));
            state.put_item(&vm_id, &vm).map_err(io_failed)
        })
    }

    fn remove(vm_id: String) -> Result<(), DriverError> {
        operation("remove", &vm_id, |state| {
            if let Some(vm) = state.get_item::<MockVm>(&vm_id).map_err(io_failed)? {
                state.delete_item(&vm_id).map_err(io_failed)?;
                state.release_slot(vm.slot).map_err(io_failed)?;
                log(Level::Info, &format!("removed {vm_id}"));
            }
            Ok(())
        })
    }

    fn inspect(vm_id: String) -> Result<Option<VmInfo>, DriverError> {
        operation("inspect", &vm_id, |state| {
            Ok(state
                .get_item::<MockVm>(&vm_id)
                .map_err(io_failed)?
                .map(|vm| vm.info()))
        })
    }

    fn list_vms() -> Result<Vec<VmInfo>, DriverError> {
        operation("list-vms", "", |state| {
            Ok(state
                .items::<MockVm>()
                .map_err(io_failed)?
                .into_iter()
                .map(|(_, vm)| vm.info())
                .collect())
        })
    }
}

export!(MockVmDriver);
