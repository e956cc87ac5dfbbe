//! `ignite inspect <kind> <object>` (`cmd/ignite/run/inspect.go`): the VM
//! object as JSON (default), YAML, or through a Go template.

use crate::cli::{FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::fields::Template;
use crate::usage::CommandSpec;
use crate::{jsonfmt, log::go_quote, matching};

/// Flags of `inspect` (`addInspectFlags`).
const FLAGS: &[FlagSpec] = &[
    FlagSpec::new(
        "output",
        Some('o'),
        Kind::Value,
        "string",
        "Output the object in the specified format",
    )
    .default("\"json\""),
    FlagSpec::new(
        "template",
        Some('t'),
        Kind::Value,
        "string",
        "Format the output using the given Go template",
    ),
];

/// `ignite inspect`.
pub static COMMAND: Command = Command {
    key: "inspect",
    spec: CommandSpec {
        path: "ignite inspect",
        args: "<kind> <object>",
        aliases: &[],
        short: "Inspect an Ignite Object",
        flags: FLAGS,
    },
    args: ArgRule::Exact(2),
    needs_state: true,
    handler: handle,
};

/// Runs `ignite inspect`.
fn handle(ctx: &Context, parsed: &Parsed) -> Outcome {
    let (kind, query) = (&parsed.args[0], &parsed.args[1]);
    match kind.to_ascii_lowercase().as_str() {
        "vm" => {}
        "image" | "kernel" => {
            return Err(Failure::fatal(format!(
                "fake ignite: inspecting {kind} objects is not implemented"
            )));
        }
        _ => {
            return Err(Failure::fatal(format!(
                "unrecognized kind: {}",
                go_quote(kind)
            )));
        }
    }
    let store = ctx.store()?;
    let vms = {
        let lock = store.lock()?;
        store.load_all(&lock)
    };
    let vm = matching::find(&vms, query).map_err(Failure::Fatal)?;
    if let Some(text) = parsed.value("template").filter(|t| !t.is_empty()) {
        let template = Template::parse(text)
            .map_err(|e| Failure::fatal(format!("failed to parse template: {e}")))?;
        let output = template
            .render(vm)
            .map_err(|e| Failure::fatal(format!("failed rendering template: {e}")))?;
        println!("{output}");
        return Ok(());
    }
    let object = vm.to_api_object();
    match parsed.value("output").unwrap_or("json") {
        "json" => print!("{}", jsonfmt::to_json(&object)),
        "yaml" => print!("{}", jsonfmt::to_yaml(&object)),
        other => {
            return Err(Failure::fatal(format!(
                "unrecognized output format: {}",
                go_quote(other)
            )));
        }
    }
    Ok(())
}
