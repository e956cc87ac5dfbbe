//! The command tree (`cmd/ignite/cmd/root.go`, `vmcmd/vm.go`): which words
//! select which command, each command's flags and argument rules, and the
//! context commands run with.

pub mod cp;
pub mod inspect;
pub mod ps;
pub mod rm;
pub mod run;
pub mod stop;
pub mod version;

use crate::cli::{self, FlagSpec, Kind, Parsed};
use crate::failure::{Failure, Outcome};
use crate::log::Logger;
use crate::store::Store;
use crate::usage::CommandSpec;

/// What every command gets.
pub struct Context {
    /// Where log lines go.
    pub log: Logger,
    /// `-q/--quiet`.
    pub quiet: bool,
    /// The state directory (absent only for commands that need none).
    pub store: Option<Store>,
    /// Set when `ps` was reached as `vm`, `vm ls` or `vm list`, which always
    /// list every VM.
    pub list_all: bool,
}

impl Context {
    /// The store, or the error for a missing `FAKE_IGNITE_STATE`.
    pub fn store(&self) -> Result<&Store, Failure> {
        self.store.as_ref().ok_or_else(|| {
            Failure::fatal(format!(
                "{} is not set: the fake ignite needs a state directory",
                crate::store::STATE_ENV
            ))
        })
    }
}

/// cobra's positional-argument rules.
#[derive(Clone, Copy, Debug)]
pub enum ArgRule {
    /// No check.
    Any,
    /// `cobra.ExactArgs(n)`.
    Exact(usize),
    /// `cobra.MinimumNArgs(n)`.
    Minimum(usize),
    /// `cobra.RangeArgs(min, max)`.
    Range(usize, usize),
}

impl ArgRule {
    /// cobra's message when `count` arguments break the rule.
    fn check(self, count: usize) -> Result<(), String> {
        match self {
            ArgRule::Exact(n) if count != n => Err(format!("accepts {n} arg(s), received {count}")),
            ArgRule::Minimum(n) if count < n => Err(format!(
                "requires at least {n} arg(s), only received {count}"
            )),
            ArgRule::Range(min, max) if count < min || count > max => Err(format!(
                "accepts between {min} and {max} arg(s), received {count}"
            )),
            _ => Ok(()),
        }
    }
}

/// A command the fake implements.
pub struct Command {
    /// Name used for fault injection (`FAKE_IGNITE_FAIL_<KEY>`, `fail-<key>`).
    pub key: &'static str,
    /// Usage data and flags.
    pub spec: CommandSpec,
    /// Positional-argument rule.
    pub args: ArgRule,
    /// Whether the command needs `FAKE_IGNITE_STATE`.
    pub needs_state: bool,
    /// The implementation.
    pub handler: fn(&Context, &Parsed) -> Outcome,
}

/// The root's persistent flags (`addGlobalFlags` in `cmd/ignite/cmd/root.go`).
pub const GLOBAL_FLAGS: &[FlagSpec] = &[
    FlagSpec::new(
        "quiet",
        Some('q'),
        Kind::Bool,
        "",
        "The quiet mode allows for machine-parsable output by printing only IDs",
    ),
    FlagSpec::new(
        "log-level",
        None,
        Kind::Value,
        "loglevel",
        "Specify the loglevel for the program",
    )
    .default("info")
    .validate(cli::validate_log_level),
    FlagSpec::new(
        "ignite-config",
        None,
        Kind::Value,
        "string",
        "Ignite configuration path; refer to the 'Ignite Configuration' docs for more details",
    ),
];

/// Real ignite commands the fake does not implement.
const NOT_IMPLEMENTED: &[&str] = &[
    "attach",
    "completion",
    "create",
    "exec",
    "image",
    "kernel",
    "kill",
    "logs",
    "rmi",
    "rmk",
    "ssh",
    "start",
];

/// Real `ignite vm` subcommands the fake does not implement.
const VM_NOT_IMPLEMENTED: &[&str] = &["attach", "create", "kill", "logs", "ssh", "start"];

/// How an invocation resolved.
pub enum Route {
    /// Run `command` on `args` (the words after the command name, flags
    /// included); `list_all` is set when `ps` was reached through an alias.
    Command {
        /// The command.
        command: &'static Command,
        /// Remaining arguments.
        args: Vec<String>,
        /// Whether to list all VMs regardless of `-a` (`vm ls`, `vm list`, `vm`).
        list_all: bool,
    },
    /// Print the root help.
    RootHelp,
    /// A failure found while routing.
    Failure(Failure),
}

/// Resolves `argv` (without the program name) to a command.
pub fn route(argv: &[String]) -> Route {
    let Some((position, word)) = first_word(argv) else {
        return Route::RootHelp;
    };
    let rest = || -> Vec<String> {
        argv[..position]
            .iter()
            .chain(&argv[position + 1..])
            .cloned()
            .collect()
    };
    let command = match word {
        "run" => &run::COMMAND,
        "ps" => &ps::COMMAND,
        "rm" => &rm::COMMAND,
        "stop" => &stop::COMMAND,
        "cp" => &cp::COMMAND,
        "inspect" => &inspect::COMMAND,
        "version" => &version::COMMAND,
        "help" => return Route::RootHelp,
        "vm" | "vms" => return route_vm(&rest()),
        other if NOT_IMPLEMENTED.contains(&other) => {
            return Route::Failure(Failure::fatal(format!(
                "fake ignite: command {:?} is not implemented",
                other
            )));
        }
        other => {
            return Route::Failure(Failure::UnknownCommand {
                message: unknown_command_message(other, "ignite"),
                command_path: "ignite".to_string(),
            });
        }
    };
    Route::Command {
        command,
        args: rest(),
        list_all: false,
    }
}

/// Resolves the words after `ignite vm`.
fn route_vm(argv: &[String]) -> Route {
    let Some((position, word)) = first_word(argv) else {
        return Route::Command {
            command: &ps::VM_COMMAND,
            args: argv.to_vec(),
            list_all: true,
        };
    };
    let rest: Vec<String> = argv[..position]
        .iter()
        .chain(&argv[position + 1..])
        .cloned()
        .collect();
    let (command, list_all) = match word {
        "ps" => (&ps::VM_COMMAND, false),
        "ls" | "list" => (&ps::VM_COMMAND, true),
        "run" => (&run::VM_COMMAND, false),
        "rm" => (&rm::VM_COMMAND, false),
        "stop" => (&stop::VM_COMMAND, false),
        other if VM_NOT_IMPLEMENTED.contains(&other) => {
            return Route::Failure(Failure::fatal(format!(
                "fake ignite: command \"vm {other}\" is not implemented"
            )));
        }
        // `ignite vm` is itself runnable (it lists all VMs) and cobra hands it
        // any unknown word as an argument.
        _ => {
            return Route::Command {
                command: &ps::VM_COMMAND,
                args: argv.to_vec(),
                list_all: true,
            };
        }
    };
    Route::Command {
        command,
        args: rest,
        list_all,
    }
}

/// The first argument that is not a global flag (or a global flag's value).
fn first_word(argv: &[String]) -> Option<(usize, &str)> {
    let mut index = 0;
    while index < argv.len() {
        let arg = argv[index].as_str();
        if arg == "--log-level" || arg == "--ignite-config" {
            index += 2;
        } else if arg.starts_with('-') && arg != "-" {
            index += 1;
        } else {
            return Some((index, arg));
        }
    }
    None
}

/// cobra's unknown-command error, with its "Did you mean this?" suggestions
/// (Levenshtein distance ≤ 2 or prefix).
fn unknown_command_message(word: &str, path: &str) -> String {
    const KNOWN: &[&str] = &[
        "attach",
        "completion",
        "cp",
        "create",
        "exec",
        "image",
        "inspect",
        "kernel",
        "kill",
        "logs",
        "ps",
        "rm",
        "rmi",
        "rmk",
        "run",
        "ssh",
        "start",
        "stop",
        "version",
        "vm",
    ];
    let suggestions: Vec<&str> = KNOWN
        .iter()
        .copied()
        .filter(|k| levenshtein(word, k) <= 2 || k.starts_with(word))
        .collect();
    let mut message = format!(
        "unknown command {} for {}",
        crate::log::go_quote(word),
        crate::log::go_quote(path)
    );
    if !suggestions.is_empty() {
        message.push_str("\n\nDid you mean this?\n");
        for suggestion in suggestions {
            message.push_str(&format!("\t{suggestion}\n"));
        }
    }
    message
}

/// Edit distance, case-insensitive like cobra's.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// Parses `args` for `command` (its flags plus the global ones) and checks
/// the positional-argument rule; errors are cobra usage failures.
pub fn parse_args(command: &Command, args: &[String]) -> Result<Parsed, Failure> {
    let specs: Vec<FlagSpec> = command
        .spec
        .flags
        .iter()
        .chain(GLOBAL_FLAGS)
        .copied()
        .collect();
    let usage_failure = |message: String| Failure::Usage {
        message,
        usage: crate::usage::usage(&command.spec, GLOBAL_FLAGS),
    };
    let parsed = cli::parse(args, &specs).map_err(usage_failure)?;
    if !parsed.help {
        command
            .args
            .check(parsed.args.len())
            .map_err(usage_failure)?;
    }
    Ok(parsed)
}

/// The root help text (`ignite --help`).
pub fn root_help() -> String {
    let mut out = String::from(
        "Ignite is a containerized Firecracker microVM administration tool.\n\
It can build VM images, spin VMs up/down and manage multiple VMs efficiently.\n\n\
(This is fake-ignite, a test stand-in; see tests/fake-ignite/FORMATS.md.)\n\n\
Usage:\n  ignite [command]\n\nAvailable Commands:\n",
    );
    for command in [
        &cp::COMMAND,
        &inspect::COMMAND,
        &ps::COMMAND,
        &rm::COMMAND,
        &run::COMMAND,
        &stop::COMMAND,
        &version::COMMAND,
    ] {
        out.push_str(&format!(
            "  {:<11} {}\n",
            command.spec.name(),
            command.spec.short
        ));
    }
    out.push_str(&format!("  {:<11} {}\n", "vm", "Manage VMs"));
    out.push_str("\nUse \"ignite [command] --help\" for more information about a command.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn routes_commands_and_aliases() {
        let key = |text: &str| match route(&words(text)) {
            Route::Command {
                command,
                list_all,
                args,
            } => format!("{} {list_all} {}", command.spec.path, args.join(" ")),
            Route::RootHelp => "help".into(),
            Route::Failure(f) => format!("{f:?}"),
        };
        assert_eq!(key("ps -a"), "ignite ps false -a");
        assert_eq!(key("-q rm x"), "ignite rm false -q x");
        assert_eq!(
            key("--log-level debug vm ls"),
            "ignite vm ps true --log-level debug"
        );
        assert_eq!(key("vm"), "ignite vm ps true ");
        assert_eq!(key("vm rm -f a"), "ignite vm rm false -f a");
        assert_eq!(key(""), "help");
        assert!(key("start x").contains("not implemented"));
        assert!(key("ls").contains("unknown command \\\"ls\\\" for \\\"ignite\\\""));
    }

    #[test]
    fn suggests_like_cobra() {
        assert_eq!(
            unknown_command_message("rnu", "ignite"),
            "unknown command \"rnu\" for \"ignite\"\n\nDid you mean this?\n\trm\n\trmi\n\trmk\n\trun\n"
        );
        assert_eq!(
            unknown_command_message("zzzzzz", "ignite"),
            "unknown command \"zzzzzz\" for \"ignite\""
        );
        assert_eq!(
            ArgRule::Exact(2).check(1),
            Err("accepts 2 arg(s), received 1".into())
        );
        assert_eq!(
            ArgRule::Range(0, 1).check(2),
            Err("accepts between 0 and 1 arg(s), received 2".into())
        );
        assert_eq!(ArgRule::Range(0, 1).check(0), Ok(()));
        assert_eq!(
            ArgRule::Minimum(1).check(0),
            Err("requires at least 1 arg(s), only received 0".into())
        );
    }
}
