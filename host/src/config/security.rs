//! The configuration of who may call the API (`[auth]`) and how much any
//! caller may ask of one host (`[http]`, `[limits]`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A secret from the configuration or the environment (a signing key, a
/// token). It never appears in `Debug` output, logs or `check-config`: it
/// serializes as [`REDACTED`](super::REDACTED).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(super::REDACTED)
    }
}

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the code that signs or verifies with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether the API checks who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every endpoint except `/healthz` (and `/openapi.json`) needs a bearer
    /// token. The default.
    #[default]
    Token,
    /// No authentication: anyone who reaches the port may act on every
    /// user. For tests and throwaway setups; it must be chosen explicitly.
    None,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Clients connecting from a loopback address need no token (a local
    /// Prometheus or agent); others need an operator token. The default.
    #[default]
    Loopback,
    /// Anyone who reaches the port.
    Open,
    /// Only with an operator token.
    Token,
}

/// `[auth]`: who may call the API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `token` (default) or `none`. Env `VESSEL_AUTH_MODE`.
    pub mode: AuthMode,
    /// The keys that sign and verify tokens (HS256 JWTs), each at least 32
    /// bytes. The first signs tokens made by `vessel token`; every one is
    /// accepted when verifying, so a key can be rotated by putting the new
    /// one first and removing the old one once its tokens have expired.
    /// Env `VESSEL_SIGNING_KEYS` (comma-separated). Default: none, in which
    /// case a host on a loopback address generates one and keeps it in
    /// `{data_dir}/signing.key` (mode 0600), and a host on any other
    /// address refuses to start.
    pub signing_keys: Vec<Secret>,
    /// A fixed operator token (at least 32 characters), for setups that do
    /// not mint JWTs. Env `VESSEL_OPERATOR_TOKEN`. Default: none (as is an
    /// empty one, in the file or the environment).
    #[serde(
        deserialize_with = "empty_secret_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub operator_token: Option<Secret>,
    /// Who may read `/metrics`: `loopback` (default), `open` or `token`.
    pub metrics: MetricsAccess,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Token,
            signing_keys: Vec::new(),
            operator_token: None,
            metrics: MetricsAccess::Loopback,
        }
    }
}

/// Reads an optional secret, taking an empty one for none, as the
/// environment variables do.
fn empty_secret_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Secret>, D::Error> {
    let secret = Option::<Secret>::deserialize(deserializer)?;
    Ok(secret.filter(|secret| !secret.0.is_empty()))
}

/// `[http]`: how the HTTP server protects itself from slow and greedy
/// clients.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The longest a client may take to send a request's headers; a slower
    /// one (a slowloris) is disconnected. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The longest one request may take, body included; it is then answered
    /// 408. Must exceed `session.start_timeout` + `session.stop_timeout`.
    /// Default: that sum plus 30 seconds (`210s` with the defaults).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// Connections served at once; more wait in the kernel's queue until
    /// one closes. Default `1024`.
    pub max_connections: usize,
    /// The largest request body accepted, in bytes; larger ones are
    /// answered 413. Default `65536`.
    pub body_limit_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: None,
            max_connections: 1024,
            body_limit_bytes: 64 * 1024,
        }
    }
}

/// `[limits]`: how much one caller may ask.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// `POST /start` requests one user token may make per minute (on this
    /// host), in bursts of up to that many; more are answered 429
    /// `rate_limited`. Operator tokens (a frontend's backend starting
    /// sessions for all its users) are not limited per token. `0` turns
    /// the limit off. Default `60`.
    pub starts_per_minute_per_token: u32,
    /// `POST /start` requests one client address may make per minute (on
    /// this host), whatever tokens it shows. `0` turns the limit off.
    /// Default `600`.
    pub starts_per_minute_per_address: u32,
    /// Whether clients on a loopback address are exempt from the
    /// per-address limit: behind a reverse proxy on the same machine every
    /// client has the proxy's loopback address, and a frontend's backend on
    /// the same machine speaks for all its users. Default `true`.
    pub exempt_loopback: bool,
    /// The most sessions one operator token (counted by its name, the
    /// JWT's subject) may hold at once, across the fleet, counted in the
    /// store atomically with each start; a start over it is answered 429
    /// `token_at_capacity`. User tokens hold one session at most anyway.
    /// `0` means no limit. Default `0`.
    pub max_sessions_per_token: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            starts_per_minute_per_token: 60,
            starts_per_minute_per_address: 600,
            exempt_loopback: true,
            max_sessions_per_token: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let auth = AuthConfig {
            signing_keys: vec![Secret::new("k".repeat(32))],
            operator_token: Some(Secret::new("operator-secret-operator-secret-x")),
            ..AuthConfig::default()
        };
        let printed = format!("{auth:?}");
        assert!(!printed.contains("kkkk"), "{printed}");
        assert!(!printed.contains("operator-secret"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
