//! Reading what ignite printed: its logrus lines, and its errors mapped onto
//! the contract's error cases.
//!
//! Ignite logs to stdout, including its fatal errors, and exits with 1 on
//! any error (`pkg/logs/logs.go`, `cmd/ignite/cmd/cmdutil/errors.go`).
//! Spawned by a driver its stdout is a pipe, so logrus writes logfmt:
//! `time="…" level=fatal msg="can't find VM: no ID/name matches for \"x\""`.
//! Cobra's usage errors (`Error: unknown flag: --x`) and sudo's complaints
//! go to stderr. See tests/fake-ignite/FORMATS.md for the sources.

/// The error kinds the driver tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No VM matches the name.
    NotFound(String),
    /// A VM with the name exists.
    AlreadyExists(String),
    /// The command line or a value was refused.
    Invalid(String),
    /// Ignite (or sudo) refused for lack of permission.
    Denied(String),
    /// Anything else.
    Other(String),
}

/// The `msg` values of the log lines at `level`, in order. Understands
/// logfmt (`level=fatal msg="…"`) and the terminal form (`FATA[0000] …`).
pub fn messages(output: &str, level: &str) -> Vec<String> {
    let short = match level {
        "fatal" => "FATA",
        "error" => "ERRO",
        "warning" => "WARN",
        _ => "INFO",
    };
    output
        .lines()
        .filter_map(|line| {
            if line.contains(&format!("level={level} ")) {
                let start = line.find(" msg=")? + " msg=".len();
                Some(unquote(&line[start..]))
            } else {
                let rest = line.trim_start().strip_prefix(short)?;
                let rest = rest.get(rest.find(']')? + 1..)?;
                Some(rest.trim().to_string())
            }
        })
        .collect()
}

/// Decodes a logfmt value: a Go `%q` string, or a bare word.
fn unquote(value: &str) -> String {
    let Some(body) = value.strip_prefix('"') else {
        return value
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
    };
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// Classifies a failed ignite run from its stdout and stderr.
pub fn classify(stdout: &str, stderr: &str) -> Failure {
    let fatal = messages(stdout, "fatal").pop();
    let cobra = stderr
        .lines()
        .find_map(|line| line.strip_prefix("Error: "))
        .map(str::to_string);
    let detail = fatal.clone().or(cobra.clone()).unwrap_or_else(|| {
        let text = format!("{} {}", stdout.trim(), stderr.trim());
        text.trim().to_string()
    });
    let lower = detail.to_lowercase();
    let stderr_lower = stderr.to_lowercase();
    if lower.contains("can't find vm") || lower.contains("no id/name matches") {
        Failure::NotFound(detail)
    } else if lower.contains("already exists") {
        Failure::AlreadyExists(detail)
    } else if stderr_lower.contains("password is required")
        || stderr_lower.contains("not in the sudoers")
        || stderr_lower.contains("not allowed to execute")
        || lower.contains("permission denied")
        || lower.contains("must be root")
        || lower.contains("run as root")
    {
        Failure::Denied(if stderr.trim().is_empty() {
            detail
        } else {
            stderr.trim().to_string()
        })
    } else if cobra.is_some()
        // Kubernetes field errors from ignite's `ValidateVM`, e.g.
        // `metadata.name: Invalid value: "x": a lowercase RFC 1123 ...`.
        || lower.contains(": invalid value: ")
        || lower.contains(": required value: ")
        || lower.contains("invalid reference format")
        || lower.contains("invalid label")
        || lower.contains("does not match required format")
        || lower.contains("invalid argument")
        || lower.contains("must be of form")
    {
        Failure::Invalid(detail)
    } else {
        Failure::Other(detail)
    }
}

/// The VM id in ignite's `Created VM with ID "…" and name "…"` line.
pub fn created_id(stdout: &str) -> Option<String> {
    messages(stdout, "info").into_iter().find_map(|msg| {
        let rest = msg.strip_prefix("Created VM with ID \"")?;
        Some(rest[..rest.find('"')?].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN_OK: &str = concat!(
        "time=\"2021-07-19T10:00:00Z\" level=info msg=\"Created VM with ID \\\"e0c7fa4b1a2d3c4f\\\" and name \\\"my-vm\\\"\"\n",
        "time=\"2021-07-19T10:00:01Z\" level=info msg=\"Networking is handled by \\\"cni\\\"\"\n",
    );

    #[test]
    fn logfmt_and_terminal_lines_are_read() {
        assert_eq!(created_id(RUN_OK).as_deref(), Some("e0c7fa4b1a2d3c4f"));
        let tty =
            "\u{1b}[31mFATA\u{1b}[0m[0000] can't find VM: no ID/name matches for \"nope\"   \n";
        assert_eq!(
            messages(
                &tty.replace("\u{1b}[31m", "").replace("\u{1b}[0m", ""),
                "fatal"
            ),
            vec!["can't find VM: no ID/name matches for \"nope\"".to_string()]
        );
    }

    #[test]
    fn ignite_errors_map_to_the_contract() {
        let fatal = |msg: &str| {
            format!(
                "time=\"2021-07-19T10:00:00Z\" level=fatal msg=\"{}\"\n",
                msg.replace('"', "\\\"")
            )
        };
        assert!(matches!(
            classify(&fatal("can't find VM: no ID/name matches for \"x\""), ""),
            Failure::NotFound(m) if m == "can't find VM: no ID/name matches for \"x\""
        ));
        assert!(matches!(
            classify(&fatal("invalid VM id/name \"x\": already exists"), ""),
            Failure::AlreadyExists(_)
        ));
        assert!(matches!(
            classify(
                &fatal("invalid name \"X\": does not match required format ^[a-z-_0-9.:/@]*$"),
                ""
            ),
            Failure::Invalid(_)
        ));
        assert!(matches!(
            classify(
                &fatal(
                    "metadata.name: Invalid value: \"user-.user-.a-session\": a lowercase RFC 1123 \
                     subdomain must consist of lower case alphanumeric characters"
                ),
                ""
            ),
            Failure::Invalid(_)
        ));
        assert!(matches!(
            classify(
                &fatal("invalid reference format: repository name must be lowercase"),
                ""
            ),
            Failure::Invalid(_)
        ));
        assert!(matches!(
            classify("", "Error: unknown flag: --foo\nUsage:\n  ignite rm <vm>... [flags]\n"),
            Failure::Invalid(m) if m == "unknown flag: --foo"
        ));
        assert!(matches!(
            classify("", "sudo: a password is required\n"),
            Failure::Denied(_)
        ));
        assert!(matches!(
            classify(&fatal("e0c7fa4b1a2d3c4f is running"), ""),
            Failure::Other(_)
        ));
    }
}
