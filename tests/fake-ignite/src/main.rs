//! `ignite`: a stand-in for Weave Ignite v0.10.0's command line, for tests.
//! It reproduces the commands, flags, output formats, error messages and
//! exit codes recorded in `FORMATS.md`; VMs are real HTTP servers on
//! 127.61.0.N, their state lives in `$FAKE_IGNITE_STATE`.

mod cli;
mod commands;
mod copy;
mod duration;
mod failure;
mod fields;
mod filter;
mod gocsv;
mod goparse;
mod http;
mod ids;
mod jsonfmt;
mod k8s;
mod log;
mod matching;
mod netalloc;
mod portspec;
mod reference;
mod server;
mod sizes;
mod store;
mod sys;
mod tabwriter;
mod timefmt;
mod usage;
mod vm;

use std::io::Write;

use commands::{Context, Route};
use failure::{Failure, Outcome};
use log::Logger;
use store::Store;

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.first().map(String::as_str) == Some(server::SERVE_COMMAND) {
        std::process::exit(server::serve_main(&argv[1..]));
    }
    sys::default_sigpipe();
    let log = Logger::from_env();
    let code = match execute(&argv, log) {
        Ok(()) => 0,
        Err(failure) => {
            report(&failure, &log);
            1
        }
    };
    record(&argv, code);
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Routes, parses and runs one invocation.
fn execute(argv: &[String], log: Logger) -> Outcome {
    let (command, args, list_all) = match commands::route(argv) {
        Route::RootHelp => {
            print!("{}", commands::root_help());
            return Ok(());
        }
        Route::Failure(failure) => return Err(failure),
        Route::Command {
            command,
            args,
            list_all,
        } => (command, args, list_all),
    };
    let parsed = commands::parse_args(command, &args)?;
    if parsed.help {
        print!("{}", usage::help(&command.spec, commands::GLOBAL_FLAGS));
        return Ok(());
    }
    let store = if command.needs_state {
        Some(Store::from_env()?)
    } else {
        Store::from_env().ok()
    };
    if let Some(message) = store::injected_failure(store.as_ref(), command.key) {
        return Err(Failure::Fatal(message));
    }
    let context = Context {
        log,
        quiet: parsed.flag("quiet"),
        store,
        list_all,
    };
    (command.handler)(&context, &parsed)
}

/// Reports a failure where ignite reports it.
fn report(failure: &Failure, log: &Logger) {
    match failure {
        Failure::Fatal(message) => log.fatal(message),
        Failure::Usage { message, usage } => eprint!("Error: {message}\n{usage}\n"),
        Failure::UnknownCommand {
            message,
            command_path,
        } => {
            eprint!("Error: {message}\nRun '{command_path} --help' for usage.\n");
        }
    }
}

/// Appends the invocation to `calls.jsonl` when a state directory is set.
fn record(argv: &[String], code: i32) {
    if std::env::var_os(store::STATE_ENV).is_none_or(|v| v.is_empty()) {
        return;
    }
    if let Ok(store) = Store::from_env()
        && let Ok(lock) = store.lock()
    {
        let _ = store.record_call(&lock, argv, code);
    }
}
