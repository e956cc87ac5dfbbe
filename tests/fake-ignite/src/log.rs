//! ignite's log lines: logrus' `TextFormatter` writing to **stdout**
//! (`pkg/logs/logs.go`). Piped output is logfmt
//! (`time="…" level=info msg="…"`); terminal output is the colored
//! `INFO[0001] message` form. Also Go's `%q` quoting, which logfmt uses.

use std::io::Write;
use std::time::Instant;

use crate::{sys, timefmt};

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `log.Info`.
    Info,
    /// `log.Warn`.
    Warning,
    /// `log.Fatal`: the command failed; the process exits 1 afterwards.
    Fatal,
}

impl Level {
    /// logrus' lower-case name, used in logfmt.
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Fatal => "fatal",
        }
    }

    /// The four-letter upper-case tag used on terminals.
    fn tag(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARN",
            Level::Fatal => "FATA",
        }
    }

    /// ANSI color logrus gives the level on terminals.
    fn color(self) -> u8 {
        match self {
            Level::Info => 36,
            Level::Warning => 33,
            Level::Fatal => 31,
        }
    }
}

/// How lines are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `time="…" level=… msg=…`, what logrus writes when stdout is not a terminal.
    Logfmt,
    /// `\x1b[36mINFO\x1b[0m[0001] message`, what logrus writes to a terminal.
    Terminal,
}

/// Writes ignite-style log lines to stdout.
#[derive(Clone, Copy, Debug)]
pub struct Logger {
    /// Rendering.
    format: Format,
    /// Process start, for the terminal format's seconds counter.
    started: Instant,
}

impl Logger {
    /// A logger choosing its format like logrus (is stdout a terminal?),
    /// unless `FAKE_IGNITE_LOG_FORMAT` is `logfmt` or `tty`.
    pub fn from_env() -> Logger {
        let format = match std::env::var("FAKE_IGNITE_LOG_FORMAT").as_deref() {
            Ok("logfmt") => Format::Logfmt,
            Ok("tty") => Format::Terminal,
            _ if sys::is_terminal(1) => Format::Terminal,
            _ => Format::Logfmt,
        };
        Logger {
            format,
            started: Instant::now(),
        }
    }

    /// Logs `message` at info level.
    pub fn info(&self, message: &str) {
        self.emit(Level::Info, message);
    }

    /// Logs `message` at warning level.
    pub fn warn(&self, message: &str) {
        self.emit(Level::Warning, message);
    }

    /// Logs `message` at fatal level (the caller then exits 1).
    pub fn fatal(&self, message: &str) {
        self.emit(Level::Fatal, message);
    }

    /// Writes one line to stdout, ignoring a closed stdout like Go does.
    fn emit(&self, level: Level, message: &str) {
        let line = match self.format {
            Format::Logfmt => {
                logfmt_line(level, &timefmt::rfc3339_local(timefmt::now_unix()), message)
            }
            Format::Terminal => terminal_line(level, self.started.elapsed().as_secs(), message),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }
}

/// A logfmt line: `time="<time>" level=<level> msg=<message>`, the message
/// quoted only when logrus would quote it.
pub fn logfmt_line(level: Level, time: &str, message: &str) -> String {
    format!(
        "time={} level={} msg={}\n",
        logfmt_value(time),
        level.name(),
        logfmt_value(message)
    )
}

/// A colored terminal line: tag, seconds since start, message padded to 44
/// columns plus one space (logrus `printColored`).
pub fn terminal_line(level: Level, elapsed_secs: u64, message: &str) -> String {
    let message = message.strip_suffix('\n').unwrap_or(message);
    let pad = 44usize.saturating_sub(message.chars().count());
    format!(
        "\x1b[{}m{}\x1b[0m[{elapsed_secs:04}] {message}{} \n",
        level.color(),
        level.tag(),
        " ".repeat(pad)
    )
}

/// logrus `needsQuoting`: anything but `[A-Za-z0-9-._/@^+]` forces `%q`.
fn logfmt_value(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+'));
    if plain {
        text.to_string()
    } else {
        go_quote(text)
    }
}

/// Go's `strconv.Quote` (`%q`): double quotes, backslash escapes for quotes,
/// backslashes and control characters; printable Unicode is kept.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_matches_real_ignite_output() {
        // Captured from a real `ignite run` (Sourcegraph executor logs, 2021).
        let line = logfmt_line(
            Level::Info,
            "2021-08-02T17:10:14+02:00",
            "Created VM with ID \"d966c3891988743e\" and name \"my-vm\"",
        );
        assert_eq!(
            line,
            "time=\"2021-08-02T17:10:14+02:00\" level=info msg=\"Created VM with ID \\\"d966c3891988743e\\\" and name \\\"my-vm\\\"\"\n"
        );
        assert_eq!(
            logfmt_line(
                Level::Fatal,
                "2021-08-02T17:10:14Z",
                "e0c7fa4b1a2d3c4f is running"
            ),
            "time=\"2021-08-02T17:10:14Z\" level=fatal msg=\"e0c7fa4b1a2d3c4f is running\"\n"
        );
        assert_eq!(
            logfmt_line(Level::Warning, "t", "plain"),
            "time=t level=warning msg=plain\n"
        );
    }

    #[test]
    fn terminal_lines_pad_to_44_columns() {
        let line = terminal_line(Level::Info, 1, "Networking is handled by \"cni\"");
        assert_eq!(
            line,
            format!(
                "\x1b[36mINFO\x1b[0m[0001] Networking is handled by \"cni\"{} \n",
                " ".repeat(14)
            )
        );
        let fatal = terminal_line(Level::Fatal, 0, "x\n");
        assert!(fatal.starts_with("\x1b[31mFATA\x1b[0m[0000] x "));
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
        assert_eq!(go_quote("café"), "\"café\"");
    }
}
