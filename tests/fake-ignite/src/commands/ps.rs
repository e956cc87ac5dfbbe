//! `ignite ps` / `ignite vm ps|ls|list` (`cmd/ignite/run/ps.go`): the VM
//! table, Go templates, filters, and the `*` marker for VMs whose process
//! died behind the manifest's back.

use crate::cli::{FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::fields::Template;
use crate::filter::Filter;
use crate::usage::CommandSpec;
use crate::vm::Vm;
use crate::{duration, server, sizes, tabwriter, timefmt};

/// Flags of `ps` (`addPsFlags`).
const FLAGS: &[FlagSpec] = &[
    FlagSpec::new(
        "all",
        Some('a'),
        Kind::Bool,
        "",
        "Show all VMs, not just running ones",
    ),
    FlagSpec::new("filter", Some('f'), Kind::Value, "string", "Filter the VMs"),
    FlagSpec::new(
        "template",
        Some('t'),
        Kind::Value,
        "string",
        "Format the output using the given Go template",
    ),
];

/// `ignite ps` (no aliases at the top level).
pub static COMMAND: Command = Command {
    key: "ps",
    spec: CommandSpec {
        path: "ignite ps",
        args: "",
        aliases: &[],
        short: "List running VMs",
        flags: FLAGS,
    },
    args: ArgRule::Any,
    needs_state: true,
    handler: handle,
};

/// `ignite vm ps`, also reached as `vm ls`, `vm list` and bare `vm`.
pub static VM_COMMAND: Command = Command {
    key: "ps",
    spec: CommandSpec {
        path: "ignite vm ps",
        args: "",
        aliases: &["ls", "list"],
        short: "List running VMs",
        flags: FLAGS,
    },
    args: ArgRule::Any,
    needs_state: true,
    handler: handle,
};

/// The table header (`run.Ps`).
const HEADER: [&str; 11] = [
    "VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS", "IPS", "PORTS",
    "NAME",
];

/// The warning logged when a VM's manifest disagrees with its process.
const OUTDATED_WARNING: &str = "The symbol * on the VM status indicates that the VM manifest on disk may not be up-to-date with the actual VM status from the container runtime";

/// Runs `ignite ps`.
fn handle(ctx: &Context, parsed: &Parsed) -> Outcome {
    let all = ctx.list_all || parsed.flag("all");
    let filter = parsed
        .value("filter")
        .filter(|f| !f.is_empty())
        .map(Filter::parse)
        .transpose()
        .map_err(Failure::Fatal)?;
    let store = ctx.store()?;
    let vms = {
        let lock = store.lock()?;
        store.load_all(&lock)
    };
    let mut selected = Vec::new();
    for vm in vms.into_iter().filter(|vm| all || vm.running) {
        if let Some(filter) = &filter
            && !filter.matches(&vm).map_err(Failure::Fatal)?
        {
            continue;
        }
        let outdated = vm.running
            && !vm
                .pid
                .is_some_and(|pid| server::is_alive(pid, &store.vm_dir(&vm.id)));
        selected.push((vm, outdated));
    }
    let any_outdated = selected.iter().any(|(_, outdated)| *outdated);
    if let Some(text) = parsed.value("template").filter(|t| !t.is_empty()) {
        let template = Template::parse(text)
            .map_err(|e| Failure::fatal(format!("failed to parse template: {e}")))?;
        for (vm, _) in &selected {
            let line = template
                .render(vm)
                .map_err(|e| Failure::fatal(format!("failed rendering template: {e}")))?;
            println!("{line}");
        }
    } else {
        print!("{}", table(&selected, ctx.quiet, timefmt::now_unix()));
    }
    if any_outdated {
        ctx.log.warn(OUTDATED_WARNING);
    }
    Ok(())
}

/// The tab-aligned table for `vms` (each with its outdated flag) at `now`.
pub fn table(vms: &[(Vm, bool)], quiet: bool, now: i64) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !quiet {
        rows.push(HEADER.iter().map(|h| h.to_string()).collect());
    }
    for (vm, outdated) in vms {
        if quiet {
            rows.push(vec![vm.id.clone(), String::new()]);
        } else {
            rows.push(row(vm, *outdated, now));
        }
    }
    tabwriter::render(&rows)
}

/// One VM's cells.
fn row(vm: &Vm, outdated: bool, now: i64) -> Vec<String> {
    let marker = if outdated { "*" } else { "" };
    let status = match (vm.running && !outdated, vm.start_time) {
        (true, Some(start)) => format!("{marker}Up {}", duration::human(now - start)),
        (true, None) => format!("{marker}Up <unknown>"),
        (false, _) => format!("{marker}Stopped"),
    };
    vec![
        vm.id.clone(),
        vm.image.clone(),
        vm.kernel.clone(),
        sizes::human(vm.disk_size),
        vm.cpus.to_string(),
        sizes::human(vm.memory),
        format!("{} ago", duration::human(now - vm.created)),
        status,
        vm.ips_text(),
        vm.ports_text(),
        vm.name.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::sample_vm;

    #[test]
    fn renders_ignites_table() {
        let vm = sample_vm();
        let now = vm.start_time.unwrap_or(0) + 5;
        let text = table(&[(vm, false)], false, now);
        assert_eq!(
            text,
            "VM ID\t\t\tIMAGE\t\t\t\tKERNEL\t\t\t\t\tSIZE\tCPUS\tMEMORY\t\tCREATED\tSTATUS\tIPS\t\tPORTS\t\t\tNAME\n\
e0c7fa4b1a2d3c4f\tweaveworks/ignite-ubuntu:latest\tweaveworks/ignite-kernel:5.10.51\t4.0 GB\t2\t1024.0 MB\t6s ago\tUp 5s\t127.61.0.2\t0.0.0.0:8080->80/tcp\tmy-vm\n"
        );
        assert_eq!(
            table(&[], false, now),
            "VM ID\tIMAGE\tKERNEL\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n"
        );
    }

    #[test]
    fn marks_dead_vms_and_quiet_rows() {
        let vm = sample_vm();
        let now = vm.created + 3 * 3600;
        let cells = row(&vm, true, now);
        assert_eq!(cells[6], "3h ago");
        assert_eq!(cells[7], "*Stopped");
        assert_eq!(cells[8], "127.61.0.2");
        assert_eq!(table(&[(vm, false)], true, now), "e0c7fa4b1a2d3c4f\t\n");
    }
}
