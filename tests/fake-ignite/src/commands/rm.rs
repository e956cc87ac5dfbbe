//! `ignite rm [-f] <vm>...` (`cmd/ignite/run/rm.go`,
//! `pkg/operations/remove.go`): remove VMs, killing running ones only with
//! `--force`.

use crate::cli::{FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::usage::CommandSpec;
use crate::{log::go_quote, matching, server};

/// Flags of `rm` (`addRmFlags`).
const FLAGS: &[FlagSpec] = &[
    FlagSpec::new(
        "force",
        Some('f'),
        Kind::Bool,
        "",
        "Force this operation. Warning, use of this mode may have unintended consequences.",
    ),
    FlagSpec::new(
        "config",
        None,
        Kind::Value,
        "string",
        "Specify a path to a file with the API resources you want to pass",
    ),
];

/// `ignite rm`.
pub static COMMAND: Command = Command {
    key: "rm",
    spec: CommandSpec {
        path: "ignite rm",
        args: "<vm>...",
        aliases: &[],
        short: "Remove VMs",
        flags: FLAGS,
    },
    args: ArgRule::Any,
    needs_state: true,
    handler: handle,
};

/// `ignite vm rm`.
pub static VM_COMMAND: Command = Command {
    key: "rm",
    spec: CommandSpec {
        path: "ignite vm rm",
        args: "<vm>...",
        aliases: &[],
        short: "Remove VMs",
        flags: FLAGS,
    },
    args: ArgRule::Any,
    needs_state: true,
    handler: handle,
};

/// Runs `ignite rm`.
fn handle(ctx: &Context, parsed: &Parsed) -> Outcome {
    if parsed.changed("config") {
        if !parsed.args.is_empty() {
            return Err(Failure::fatal(
                "cannot use both config flag and vm argument",
            ));
        }
        return Err(Failure::fatal("fake ignite: --config is not supported"));
    }
    if parsed.args.is_empty() {
        return Err(Failure::fatal(
            "need at least one vm identifier as argument",
        ));
    }
    let store = ctx.store()?;
    let lock = store.lock()?;
    let vms = store.load_all(&lock);
    let targets = matching::find_all(&vms, &parsed.args).map_err(Failure::Fatal)?;
    for vm in targets {
        if vm.running && !parsed.flag("force") {
            return Err(Failure::fatal(format!("{} is running", vm.id)));
        }
        if vm.running {
            ctx.log.info(&format!(
                "Removing the container with ID {} from the {} network",
                go_quote(&vm.container_id),
                go_quote(&vm.network_plugin)
            ));
            if let Some(pid) = vm.pid {
                server::stop(pid, &store.vm_dir(&vm.id));
            }
        }
        store.delete(&lock, &vm.id)?;
        if ctx.quiet {
            println!("{}", vm.id);
        } else {
            ctx.log.info(&format!(
                "Removed VM with name {} and ID {}",
                go_quote(&vm.name),
                go_quote(&vm.id)
            ));
        }
    }
    Ok(())
}
