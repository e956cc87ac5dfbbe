//! Why a configuration could not be used, said so that the operator knows
//! which file (or environment variable) to change and where.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}{}", path.display(), missing_hint(path, error))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (part of the message rather than a source, so
        /// that it is said once).
        error: std::io::Error,
    },
    /// The file is not valid TOML for this schema: a syntax error, an
    /// unknown key, a value of the wrong type.
    #[error("{}: {message}", located(path, *line_column))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where in it (1-based line and column), when the parser knows.
        line_column: Option<(usize, usize)>,
        /// What is wrong, e.g. ``unknown field `liveness_x`, expected one
        /// of `path`, ...``.
        message: String,
    },
    /// An environment variable holds a value of the wrong form.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The values parse but do not make sense together; the message names
    /// the field and says what to write.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A loaded configuration's values do not make sense together.
    #[error("{origin}: {message}")]
    InvalidIn {
        /// Where the values came from.
        origin: Origin,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The configuration cannot be written as TOML (a path that is not
    /// UTF-8, for one).
    #[error("cannot print the configuration as TOML: {0}")]
    Print(String),
}

/// Where a loaded configuration came from: a file or the defaults, and the
/// environment variables that overrode them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The file, if one was read.
    pub file: Option<PathBuf>,
    /// The `VESSEL_*` variables that were set.
    pub env: Vec<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("the default configuration (no config file)")?,
        }
        if !self.env.is_empty() {
            write!(f, ", with {} from the environment", self.env.join(", "))?;
        }
        Ok(())
    }
}

/// What to do about a file that does not exist.
fn missing_hint(path: &Path, error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::NotFound {
        format!(
            "; write one with `vessel init-config {}`, or leave out --config for the defaults",
            path.display()
        )
    } else {
        String::new()
    }
}

/// `path:line:column`, or the path alone.
fn located(path: &Path, line_column: Option<(usize, usize)>) -> String {
    match line_column {
        Some((line, column)) => format!("{}:{line}:{column}", path.display()),
        None => path.display().to_string(),
    }
}

impl ConfigError {
    /// A parse error of `text`, read from `path`, located by its span.
    pub(super) fn parse(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
        let line_column = error.span().map(|span| line_column(text, span.start));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line_column,
            message: error.message().trim_end().to_string(),
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\n[b]\nkey = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 12), (3, 3));
    }

    #[test]
    fn an_origin_says_file_and_variables() {
        let origin = Origin {
            file: Some(PathBuf::from("/etc/vessel.toml")),
            env: vec!["VESSEL_LISTEN".into(), "VESSEL_PROJECT_ROOTS".into()],
        };
        assert_eq!(
            origin.to_string(),
            "/etc/vessel.toml, with VESSEL_LISTEN, VESSEL_PROJECT_ROOTS from the environment"
        );
        assert_eq!(
            Origin::default().to_string(),
            "the default configuration (no config file)"
        );
    }
}
