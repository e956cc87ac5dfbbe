//! `ignite-vm`: a VM driver for Weave Ignite microVMs.
//!
//! It drives the `ignite` command line through the host's `process`
//! capability, never through a shell: the operator grants the program (and
//! any prefix such as `sudo -n`) as an exec allowlist entry, by default named
//! `ignite`. Output formats and errors are ignite v0.10's; see
//! `tests/fake-ignite/FORMATS.md` for where each was taken from.
//!
//! - create: `ignite run IMAGE --name NAME --cpus N --memory {M}MB
//!   --size {D}MB --ssh --label ...`, then `ignite inspect vm` for the address;
//! - copy-to: `ignite cp HOST_PATH UID:VM_PATH`;
//! - remove: `ignite rm -f UID` (an absent VM is a success);
//! - inspect: `ignite inspect vm NAME`;
//! - list-vms: `ignite ps -a`, keeping only Vessel's VMs (`vessel-…`, and
//!   `user-…-session` from Vessel 0.1).
//!
//! Ignite matches a VM argument by exact id or name, and otherwise by
//! prefix, so `rm vessel-a-0` could remove `vessel-a-0-0` when
//! the first is gone. The driver therefore resolves every VM with
//! `inspect`, checks the exact name, and acts on its unique id.
//!
//! The host's VM ids are valid ignite names (lower case, DNS-1123), so they
//! are passed as they are; see [`name`] for ignite's rules.
//!
//! Settings (all optional):
//! - `ignite`: the exec grant to run (`ignite`);
//! - `ssh`: pass `--ssh` (`true`; `ignite cp` needs the VM's SSH key);
//! - `kernel_image`: `--kernel-image`;
//! - `publish_ports`: also publish each VM port on the same host port with
//!   `--ports P:P` (`false`; only sensible with one VM per host);
//! - `run_timeout_ms`: limit of `ignite run` (`300000`);
//! - `timeout_ms`: limit of every other command (`60000`).

mod inspect;
mod name;
mod output;
mod table;

use inspect::{IgniteVm, PORTS_LABEL};
use output::Failure;

wit_bindgen::generate!({
    world: "vm-plugin",
    path: "../../wit",
});

use exports::vessel::infra::vm_driver::Guest;
use vessel::infra::config;
use vessel::infra::log::{Level, log};
use vessel::infra::process::{ExecRequest, exec};
use vessel::infra::types::{DriverError, VmInfo, VmSpec, VmState};

struct IgniteDriver;

fn setting(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

fn flag(key: &str, default: bool) -> bool {
    config::get(key).map_or(default, |v| matches!(v.trim(), "true" | "1" | "yes"))
}

fn millis(key: &str, default: u32) -> u32 {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What a finished ignite run printed.
struct Printed {
    stdout: String,
}

/// Runs `ignite ARGS`. The outer error is the host's (not allowed, timed
/// out, could not start); the inner one is ignite's own failure.
fn ignite(args: &[String], timeout_ms: u32) -> Result<Result<Printed, Failure>, DriverError> {
    let output = exec(&ExecRequest {
        program: setting("ignite", "ignite"),
        args: args.to_vec(),
        timeout_ms,
        stdin: None,
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.exit_code == Some(0) {
        Ok(Ok(Printed { stdout }))
    } else {
        Ok(Err(output::classify(&stdout, &stderr)))
    }
}

fn to_driver_error(command: &str, failure: Failure) -> DriverError {
    match failure {
        Failure::NotFound(m) => DriverError::NotFound(format!("ignite {command}: {m}")),
        Failure::AlreadyExists(m) => DriverError::AlreadyExists(format!("ignite {command}: {m}")),
        Failure::Invalid(m) => DriverError::InvalidInput(format!("ignite {command}: {m}")),
        Failure::Denied(m) => DriverError::Denied(format!("ignite {command}: {m}")),
        Failure::Other(m) => DriverError::Failed(format!("ignite {command}: {m}")),
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// The VM named exactly `vm_id`, if it exists. A name ignite refuses
/// cannot name a VM on it, so there is nothing to find (or remove).
fn find(vm_id: &str) -> Result<Option<IgniteVm>, DriverError> {
    if !name::is_ignite_name(vm_id) {
        return Ok(None);
    }
    let timeout = millis("timeout_ms", 60_000);
    match ignite(&args(&["inspect", "vm", vm_id]), timeout)? {
        Ok(printed) => {
            let vm = IgniteVm::parse(&printed.stdout).map_err(DriverError::Failed)?;
            // A prefix match is another VM: ours does not exist.
            Ok((vm.metadata.name == vm_id).then_some(vm))
        }
        Err(Failure::NotFound(_)) => Ok(None),
        Err(Failure::Other(m)) if m.contains("ambiguous VM query") => Ok(None),
        Err(failure) => Err(to_driver_error("inspect vm", failure)),
    }
}

fn info(vm_id: &str, vm: &IgniteVm) -> VmInfo {
    VmInfo {
        vm_id: vm_id.to_string(),
        state: if vm.status.running {
            VmState::Running
        } else {
            VmState::Stopped
        },
        ip: vm.ip(),
        ports: vm.ports(),
    }
}

fn run_args(spec: &VmSpec) -> Vec<String> {
    let mut list = vec![
        "run".to_string(),
        spec.image.clone(),
        "--name".to_string(),
        spec.vm_id.clone(),
        "--cpus".to_string(),
        spec.cpus.to_string(),
        "--memory".to_string(),
        format!("{}MB", spec.memory_mib),
        "--size".to_string(),
        format!("{}MB", spec.disk_mib),
    ];
    if flag("ssh", true) {
        list.push("--ssh".to_string());
    }
    if let Some(kernel) = config::get("kernel_image") {
        list.extend(["--kernel-image".to_string(), kernel]);
    }
    if flag("publish_ports", false) {
        for port in &spec.ports {
            list.extend(["--ports".to_string(), format!("{port}:{port}")]);
        }
    }
    let ports = spec
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut labels = vec![
        ("vessel.vm-id".to_string(), spec.vm_id.clone()),
        (PORTS_LABEL.to_string(), ports),
    ];
    labels.extend(spec.labels.iter().cloned());
    for (key, value) in labels {
        list.extend(["--label".to_string(), format!("{key}={value}")]);
    }
    list
}

impl Guest for IgniteDriver {
    fn create(spec: VmSpec) -> Result<VmInfo, DriverError> {
        if !name::is_ignite_name(&spec.vm_id) {
            return Err(DriverError::InvalidInput(format!(
                "VM id {:?} is not a name ignite accepts (a lower-case DNS-1123 subdomain)",
                spec.vm_id
            )));
        }
        if spec.image.is_empty() || spec.image.starts_with('-') {
            return Err(DriverError::InvalidInput(format!(
                "image {:?} is not valid",
                spec.image
            )));
        }
        // `ignite run` refuses a name that exists (exact match) itself.
        let printed = ignite(&run_args(&spec), millis("run_timeout_ms", 300_000))?
            .map_err(|failure| to_driver_error("run", failure))?;
        let vm = find(&spec.vm_id)?.ok_or_else(|| {
            DriverError::Failed(format!(
                "ignite run succeeded (VM {}) but the VM cannot be found",
                output::created_id(&printed.stdout).unwrap_or_default()
            ))
        })?;
        let created = info(&spec.vm_id, &vm);
        if created.ip.is_none() {
            return Err(DriverError::Failed(format!(
                "VM {} ({}) has no IP address",
                spec.vm_id, vm.metadata.uid
            )));
        }
        log(
            Level::Info,
            &format!(
                "created {} as ignite VM {} at {:?}",
                spec.vm_id, vm.metadata.uid, created.ip
            ),
        );
        Ok(created)
    }

    fn copy_to(vm_id: String, host_path: String, vm_path: String) -> Result<(), DriverError> {
        if !host_path.starts_with('/') || !vm_path.starts_with('/') {
            return Err(DriverError::InvalidInput(
                "copy-to paths must be absolute".to_string(),
            ));
        }
        let vm = find(&vm_id)?
            .ok_or_else(|| DriverError::NotFound(format!("VM {vm_id} does not exist")))?;
        let target = format!("{}:{vm_path}", vm.metadata.uid);
        ignite(
            &["cp".to_string(), host_path, target],
            millis("timeout_ms", 60_000),
        )?
        .map_err(|failure| to_driver_error("cp", failure))?;
        Ok(())
    }

    fn remove(vm_id: String) -> Result<(), DriverError> {
        let Some(vm) = find(&vm_id)? else {
            return Ok(());
        };
        match ignite(
            &args(&["rm", "-f", &vm.metadata.uid]),
            millis("timeout_ms", 60_000),
        )? {
            Ok(_) | Err(Failure::NotFound(_)) => {
                log(
                    Level::Info,
                    &format!("removed {vm_id} ({})", vm.metadata.uid),
                );
                Ok(())
            }
            Err(failure) => Err(to_driver_error("rm", failure)),
        }
    }

    fn inspect(vm_id: String) -> Result<Option<VmInfo>, DriverError> {
        Ok(find(&vm_id)?.map(|vm| info(&vm_id, &vm)))
    }

    fn list_vms() -> Result<Vec<VmInfo>, DriverError> {
        let printed = ignite(&args(&["ps", "-a"]), millis("timeout_ms", 60_000))?
            .map_err(|failure| to_driver_error("ps", failure))?;
        let rows = table::parse_ps(&printed.stdout).map_err(DriverError::Failed)?;
        Ok(rows
            .into_iter()
            .filter(|row| name::is_vessel_vm(&row.name))
            .map(|row| VmInfo {
                state: if row.running() {
                    VmState::Running
                } else {
                    VmState::Stopped
                },
                ip: row.ips.first().cloned(),
                vm_id: row.name,
                ports: Vec::new(),
            })
            .collect())
    }
}

export!(IgniteDriver);
