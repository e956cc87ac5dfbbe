//! `ignite cp <source> <dest>` (`cmd/ignite/run/cp.go`): copy between the
//! host and a running VM's file system, one side written `<vm>:<path>`.

use crate::cli::{self, FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::usage::CommandSpec;
use crate::vm::Ssh;
use crate::{copy, log::go_quote, matching, server};

/// Flags of `cp` (`cmdutil.AddSSHFlags`).
const FLAGS: &[FlagSpec] = &[
    FlagSpec::new(
        "identity",
        Some('i'),
        Kind::Value,
        "string",
        "Override the vm's default identity file",
    ),
    FlagSpec::new(
        "timeout",
        None,
        Kind::Value,
        "uint32",
        "Timeout waiting for connection in seconds",
    )
    .default("10")
    .validate(cli::validate_uint32),
];

/// `ignite cp`.
pub static COMMAND: Command = Command {
    key: "cp",
    spec: CommandSpec {
        path: "ignite cp",
        args: "<source> <dest>",
        aliases: &[],
        short: "Copy files/folders between a running vm and the local filesystem",
        flags: FLAGS,
    },
    args: ArgRule::Exact(2),
    needs_state: true,
    handler: handle,
};

/// Which way the copy goes, with the VM query and both paths.
enum Direction {
    /// `cp <host path> <vm>:<path>`.
    HostToVm {
        /// VM query.
        vm: String,
        /// Host path.
        source: String,
        /// Path in the VM.
        dest: String,
    },
    /// `cp <vm>:<path> <host path>`.
    VmToHost {
        /// VM query.
        vm: String,
        /// Path in the VM.
        source: String,
        /// Host path.
        dest: String,
    },
}

/// `NewCPOptions`: splits `<vm>:<path>` (on every `:`, keeping the second
/// piece, like `strings.Split`).
fn direction(source: &str, dest: &str) -> Result<Direction, String> {
    let split = |text: &str| -> Option<(String, String)> {
        let parts: Vec<&str> = text.split(':').collect();
        (parts.len() > 1).then(|| (parts[0].to_string(), parts[1].to_string()))
    };
    match (split(source), split(dest)) {
        (Some(_), Some(_)) => {
            Err("only one of source or destination can have VM name/ID".to_string())
        }
        (Some((vm, path)), None) => Ok(Direction::VmToHost {
            vm,
            source: path,
            dest: dest.to_string(),
        }),
        (None, Some((vm, path))) => Ok(Direction::HostToVm {
            vm,
            source: source.to_string(),
            dest: path,
        }),
        (None, None) => Err("no VM reference found in source or destination".to_string()),
    }
}

/// Runs `ignite cp`.
fn handle(ctx: &Context, parsed: &Parsed) -> Outcome {
    let direction = direction(&parsed.args[0], &parsed.args[1]).map_err(Failure::Fatal)?;
    let query = match &direction {
        Direction::HostToVm { vm, .. } | Direction::VmToHost { vm, .. } => vm,
    };
    let store = ctx.store()?;
    let lock = store.lock()?;
    let vms = store.load_all(&lock);
    let vm = matching::find(&vms, query).map_err(Failure::Fatal)?;
    if !vm.running {
        return Err(Failure::fatal(format!(
            "VM {} is not running",
            go_quote(&vm.id)
        )));
    }
    let Some(ip) = vm.ip else {
        return Err(Failure::fatal(format!(
            "VM {} has no usable IP addresses",
            go_quote(&vm.id)
        )));
    };
    match parsed.value("identity").filter(|i| !i.is_empty()) {
        Some(identity) => {
            if let Err(e) = std::fs::read(identity) {
                return Err(Failure::fatal(format!(
                    "unable to create singer for private key: open {identity}: {}",
                    copy::go_errno(&e)
                )));
            }
        }
        None if vm.ssh != Some(Ssh::Generate) => {
            return Err(Failure::fatal(format!(
                "no private key found for VM {}",
                go_quote(&vm.id)
            )));
        }
        None => {}
    }
    if !vm
        .pid
        .is_some_and(|pid| server::is_alive(pid, &store.vm_dir(&vm.id)))
    {
        return Err(Failure::fatal(format!(
            "failed to dial: dial tcp {ip}:22: connect: connection refused"
        )));
    }
    let root = store.vm_root(&vm.id);
    match direction {
        Direction::HostToVm { source, dest, .. } => {
            copy::host_to_vm(&copy::clean(&source), &root, &copy::clean(&dest))
                .map_err(|e| Failure::fatal(format!("failed to copy files from host to VM: {e}")))
        }
        Direction::VmToHost { source, dest, .. } => {
            copy::vm_to_host(&root, &copy::clean(&source), &copy::clean(&dest))
                .map_err(|e| Failure::fatal(format!("failed to copy files from VM to host: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_ignite() {
        assert!(
            matches!(direction("./p", "vm:/workspace"), Ok(Direction::HostToVm { ref vm, ref dest, .. }) if vm == "vm" && dest == "/workspace")
        );
        assert!(
            matches!(direction("vm:/a", "b"), Ok(Direction::VmToHost { ref source, .. }) if source == "/a")
        );
        assert_eq!(
            direction("a:/x", "b:/y").err(),
            Some("only one of source or destination can have VM name/ID".into())
        );
        assert_eq!(
            direction("a", "b").err(),
            Some("no VM reference found in source or destination".into())
        );
    }
}
