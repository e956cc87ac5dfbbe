//! `ignite version [-o short|json|yaml]` (`pkg/version/cmd/command.go`),
//! reporting ignite v0.10.0 with Firecracker v0.22.4 (commit and build
//! date say `fake-ignite` and the epoch, so nobody mistakes it for a build).

use crate::cli::{FlagSpec, Kind, Parsed};
use crate::commands::{ArgRule, Command, Context};
use crate::failure::{Failure, Outcome};
use crate::jsonfmt::{self, Value};
use crate::usage::CommandSpec;

/// Flags of `version`.
const FLAGS: &[FlagSpec] = &[FlagSpec::new(
    "output",
    Some('o'),
    Kind::Value,
    "string",
    "Output format; available options are 'yaml', 'json' and 'short'",
)];

/// `ignite version`.
pub static COMMAND: Command = Command {
    key: "version",
    spec: CommandSpec {
        path: "ignite version",
        args: "",
        aliases: &[],
        short: "Print the version of ignite",
        flags: FLAGS,
    },
    args: ArgRule::Any,
    needs_state: false,
    handler: handle,
};

/// `version.Info` fields for ignite.
const IGNITE: [(&str, &str); 9] = [
    ("major", "0"),
    ("minor", "10"),
    ("gitVersion", "v0.10.0"),
    ("gitCommit", "fake-ignite"),
    ("gitTreeState", "clean"),
    ("buildDate", "1970-01-01T00:00:00Z"),
    ("goVersion", "go1.16.3"),
    ("compiler", "gc"),
    ("platform", "linux/amd64"),
];

/// Runs `ignite version`.
fn handle(_ctx: &Context, parsed: &Parsed) -> Outcome {
    match parsed.value("output").unwrap_or("") {
        "" => {
            let field = |name: &str| {
                IGNITE
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or("", |(_, v)| v)
            };
            println!(
                "Ignite version: version.Info{{Major:\"{}\", Minor:\"{}\", GitVersion:\"{}\", GitCommit:\"{}\", GitTreeState:\"{}\", BuildDate:\"{}\", GoVersion:\"{}\", Compiler:\"{}\", Platform:\"{}\", SandboxImage:version.Image{{Name:\"weaveworks/ignite\", Tag:\"v0.10.0\", Delimeter:\":\"}}, KernelImage:version.Image{{Name:\"weaveworks/ignite-kernel\", Tag:\"5.10.51\", Delimeter:\":\"}}}}",
                field("major"),
                field("minor"),
                field("gitVersion"),
                field("gitCommit"),
                field("gitTreeState"),
                field("buildDate"),
                field("goVersion"),
                field("compiler"),
                field("platform")
            );
            println!("Firecracker version: v0.22.4");
        }
        "short" => println!("v0.10.0"),
        "json" => print!("{}", jsonfmt::to_json(&document())),
        "yaml" => println!("{}", jsonfmt::to_yaml(&document())),
        other => return Err(Failure::fatal(format!("invalid output format: {other}"))),
    }
    Ok(())
}

/// `versionData` as a document.
fn document() -> Value {
    let image = |name: &str, tag: &str| {
        Value::object(vec![
            ("name", Value::str(name)),
            ("tag", Value::str(tag)),
            ("delimeter", Value::str(":")),
        ])
    };
    let mut ignite: Vec<(&str, Value)> = IGNITE.iter().map(|(k, v)| (*k, Value::str(*v))).collect();
    ignite.push(("sandboxImage", image("weaveworks/ignite", "v0.10.0")));
    ignite.push(("kernelImage", image("weaveworks/ignite-kernel", "5.10.51")));
    let firecracker: Vec<(&str, Value)> = IGNITE
        .iter()
        .map(|(k, _)| {
            (
                *k,
                Value::str(if *k == "gitVersion" { "v0.22.4" } else { "" }),
            )
        })
        .chain([
            ("sandboxImage", image("", "")),
            ("kernelImage", image("", "")),
        ])
        .collect();
    Value::object(vec![
        ("igniteVersion", Value::object(ignite)),
        ("firecrackerVersion", Value::object(firecracker)),
    ])
}
