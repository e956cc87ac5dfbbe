//! The configuration as a TOML file: what `vessel check-config` prints.
//!
//! Every field is written with its value, defaults included, so the output
//! can be saved and edited. Secrets are written as [`REDACTED`]: keys and
//! tokens, the password of the Redis URL, and plugin settings and exec
//! environment variables whose names look secret. Fields that are unset
//! (they have no value in TOML) are written as comments saying what unset
//! means.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::{Config, ConfigError};

/// What a secret is printed as. A file holding it does not work until the
/// secret is put back: keys and tokens this short are refused.
pub const REDACTED: &str = "<redacted>";

/// The first lines of the printed configuration.
const HEADER: &str = "\
# The configuration in effect (file, defaults and environment), as `vessel
# check-config` printed it. Secrets are shown as \"<redacted>\": put them back
# before loading this file.
";

impl Config {
    /// The configuration as a TOML file that loads back to the same
    /// configuration once every [`REDACTED`] secret is put back.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let body =
            toml::to_string_pretty(self).map_err(|error| ConfigError::Print(error.to_string()))?;
        let mut out = String::from(HEADER);
        out.push('\n');
        let notes = self.unset_notes();
        let write_notes = |out: &mut String, table: &str| {
            for (_, key, note) in notes.iter().filter(|(of, _, _)| *of == table) {
                out.push_str(&format!("# {key} is unset: {note}\n"));
            }
        };
        // The tables whose notes are written.
        let mut noted: Vec<&str> = Vec::new();
        for line in body.lines() {
            let table = table_header(line);
            if let Some(table) = table {
                // A table with only sub-tables and unset fields (`[plugins]`)
                // has no header of its own; its notes need one.
                for &(parent, _, _) in &notes {
                    let is_parent = table
                        .strip_prefix(parent)
                        .is_some_and(|rest| rest.starts_with('.'));
                    if is_parent && !noted.contains(&parent) {
                        out.push_str(&format!("[{parent}]\n"));
                        write_notes(&mut out, parent);
                        out.push('\n');
                        noted.push(parent);
                    }
                }
            }
            out.push_str(line);
            out.push('\n');
            if let Some(table) = table {
                write_notes(&mut out, table);
                noted.push(table);
            }
        }
        Ok(out)
    }

    /// The optional fields that are unset, by table, with what that means.
    fn unset_notes(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut notes = Vec::new();
        if self.store.redis_url.is_none() {
            notes.push((
                "store",
                "redis_url",
                "sessions are kept in the embedded store".to_string(),
            ));
        }
        if self.store.embedded_path.is_none() {
            notes.push((
                "store",
                "embedded_path",
                format!(
                    "{{data_dir}}/sessions.redb ({})",
                    self.embedded_store_path().display()
                ),
            ));
        }
        if self.auth.operator_token.is_none() {
            notes.push(("auth", "operator_token", "no fixed operator token".into()));
        }
        if self.http.request_timeout.is_none() {
            notes.push((
                "http",
                "request_timeout",
                format!(
                    "session.start_timeout + session.stop_timeout + 30s ({})",
                    humantime_serde::re::humantime::format_duration(self.request_timeout())
                ),
            ));
        }
        if self.plugins.dir.is_none() {
            notes.push((
                "plugins",
                "dir",
                "VESSEL_PLUGIN_DIR, else plugins/ beside the binary, else \
                 target/wasm32-wasip2/plugin/ in a checkout"
                    .into(),
            ));
        }
        if self.plugins.cache_dir.is_none() {
            notes.push((
                "plugins",
                "cache_dir",
                format!("{{data_dir}}/cache ({})", self.plugin_cache_dir().display()),
            ));
        }
        notes
    }
}

/// The table a `[table]` header line opens (not an `[[array]]` one).
fn table_header(line: &str) -> Option<&str> {
    line.strip_prefix('[')?
        .strip_suffix(']')
        .filter(|table| !table.starts_with('['))
}

/// A Redis URL with its password redacted.
pub(super) fn redacted_url<S: Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&crate::redact::url_with_mask(url, REDACTED)),
        None => serializer.serialize_none(),
    }
}

/// A map whose values are redacted where the name looks secret.
pub(super) fn redacted_map<S: Serializer, V: Serialize>(
    entries: &BTreeMap<String, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(entries.iter().map(|(name, value)| {
        let shown = if crate::redact::is_secret_name(name) {
            Printed::Redacted
        } else {
            Printed::Value(value)
        };
        (name, shown)
    }))
}

/// A value as printed: itself, or [`REDACTED`].
enum Printed<'a, V> {
    Value(&'a V),
    Redacted,
}

impl<V: Serialize> Serialize for Printed<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Printed::Value(value) => value.serialize(serializer),
            Printed::Redacted => serializer.serialize_str(REDACTED),
        }
    }
}
