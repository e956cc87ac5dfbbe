//! `ignite stop [-f] <vm>...` (`cmd/ignite/run/stop.go`,
//! `pkg/operations/remove.go` `StopVM`): stop VMs, keeping their files.

use crate::cli::{FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::usage::CommandSpec;
use crate::{log::go_quote, matching, server};

/// Flags of `stop` (`addStopFlags`).
const FLAGS: &[FlagSpec] = &[FlagSpec::new(
    "force-kill",
    Some('f'),
    Kind::Bool,
    "",
    "Force kill the VM",
)];

/// `ignite stop`.
pub static COMMAND: Command = Command {
    key: "stop",
    spec: CommandSpec {
        path: "ignite stop",
        args: "<vm>...",
        aliases: &[],
        short: "Stop running VMs",
        flags: FLAGS,
    },
    args: ArgRule::Minimum(1),
    needs_state: true,
    handler: handle,
};

/// `ignite vm stop`.
pub static VM_COMMAND: Command = Command {
    key: "stop",
    spec: CommandSpec {
        path: "ignite vm stop",
        args: "<vm>...",
        aliases: &[],
        short: "Stop running VMs",
        flags: FLAGS,
    },
    args: ArgRule::Minimum(1),
    needs_state: true,
    handler: handle,
};

/// Runs `ignite stop`.
fn handle(ctx: &Context, parsed: &Parsed) -> Outcome {
    let store = ctx.store()?;
    let lock = store.lock()?;
    let vms = store.load_all(&lock);
    let targets = matching::find_all(&vms, &parsed.args).map_err(Failure::Fatal)?;
    for target in targets {
        let mut vm = target.clone();
        if !vm.running && !ctx.quiet {
            ctx.log.warn(&format!(
                "VM {} is not running but trying to cleanup networking for stopped container\n",
                go_quote(&vm.id)
            ));
        }
        ctx.log.info(&format!(
            "Removing the container with ID {} from the {} network",
            go_quote(&vm.container_id),
            go_quote(&vm.network_plugin)
        ));
        if !vm.running {
            continue;
        }
        if let Some(pid) = vm.pid {
            server::stop(pid, &store.vm_dir(&vm.id));
        }
        vm.running = false;
        vm.ip = None;
        vm.pid = None;
        store.save(&lock, &vm)?;
        if ctx.quiet {
            println!("{}", vm.id);
        } else {
            ctx.log.info(&format!(
                "Stopped VM with name {} and ID {}",
                go_quote(&vm.name),
                go_quote(&vm.id)
            ));
        }
    }
    Ok(())
}
