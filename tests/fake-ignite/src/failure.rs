//! How a command can fail, which decides where and how the failure is
//! reported: ignite's own errors are logrus `fatal` lines on stdout, cobra's
//! usage errors are `Error: …` plus usage text on stderr. All exit 1.

/// A failed invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An error returned by the command (`cmdutil.CheckErr` → `log.Fatal`).
    Fatal(String),
    /// A flag or argument error detected by cobra: `Error: <message>` and the
    /// command's usage text.
    Usage {
        /// The error message, without the `Error: ` prefix.
        message: String,
        /// The command's usage text (cobra `UsageString()`).
        usage: String,
    },
    /// A subcommand cobra does not know: `Error: <message>` and a
    /// `Run '<path> --help' for usage.` hint.
    UnknownCommand {
        /// The error message, without the `Error: ` prefix.
        message: String,
        /// The command path the hint names, e.g. `ignite`.
        command_path: String,
    },
}

impl Failure {
    /// A command error with the given message.
    pub fn fatal(message: impl Into<String>) -> Failure {
        Failure::Fatal(message.into())
    }
}

/// Result of a command.
pub type Outcome = Result<(), Failure>;
