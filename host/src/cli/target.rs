//! Which host the CLI asks, and with which token: flags first, then the
//! environment, then the host's own configuration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Why the CLI cannot tell which host to ask or how to authenticate.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The URL is not `http://` or `https://`.
    #[error("{0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token (or token file) is empty.
    #[error("the token is empty")]
    EmptyToken,
}

/// A bearer token. Its `Debug` never shows it, so it cannot reach an error
/// message or a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token, to put in the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The API's base URL: `flag` (`--url`), else `env` (`VESSEL_URL`), else
/// the address the host's configuration listens on, asked for with
/// `listen()` only when needed. A trailing `/` is dropped.
pub fn resolve_url<E>(
    flag: Option<String>,
    env: Option<String>,
    listen: impl FnOnce() -> Result<SocketAddr, E>,
) -> Result<String, E>
where
    E: From<TargetError>,
{
    let given = flag
        .or(env)
        .map(|url| url.trim().to_string())
        .filter(|url| !url.is_empty());
    let url = match given {
        Some(url) => url,
        None => return Ok(url_of_listen(listen()?)),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(TargetError::BadUrl(url).into());
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The URL to reach a host listening on `listen` from this machine: a host
/// listening on every address (`0.0.0.0`, `::`) is asked on loopback.
pub fn url_of_listen(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// The token: `flag` (`--token`), else the first line of `file`
/// (`--token-file`), else `env` (`VESSEL_TOKEN`); none at all is allowed
/// (a host with authentication off).
pub fn resolve_token(
    flag: Option<String>,
    file: Option<&Path>,
    env: Option<String>,
) -> Result<Option<Token>, TargetError> {
    let text = match (flag, file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|error| TargetError::TokenFile {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        (None, None) => match env {
            Some(token) => token,
            None => return Ok(None),
        },
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(TargetError::EmptyToken);
    }
    Ok(Some(Token(text.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_listen() -> Result<SocketAddr, TargetError> {
        panic!("the config must not be read when a URL is given")
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_the_config() {
        let url = resolve_url(
            Some("http://flag:1/".into()),
            Some("http://env:2".into()),
            no_listen,
        );
        assert_eq!(url.unwrap(), "http://flag:1");
        let url = resolve_url(None, Some("https://env:2".into()), no_listen);
        assert_eq!(url.unwrap(), "https://env:2");
    }

    #[test]
    fn without_a_url_the_config_listen_address_is_used_on_loopback() {
        let listen = |addr: &str| {
            let addr: SocketAddr = addr.parse().unwrap();
            move || Ok::<_, TargetError>(addr)
        };
        let url = |addr| resolve_url(None, None, listen(addr)).unwrap();
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080");
        assert_eq!(url("127.0.0.5:9000"), "http://127.0.0.5:9000");
        // An empty variable counts as unset.
        let url = resolve_url(None, Some(" ".into()), listen("127.0.0.1:1"));
        assert_eq!(url.unwrap(), "http://127.0.0.1:1");
    }

    #[test]
    fn a_url_without_a_scheme_is_refused() {
        let error = resolve_url(Some("localhost:8080".into()), None, no_listen).unwrap_err();
        assert!(matches!(error, TargetError::BadUrl(_)));
    }

    #[test]
    fn the_token_comes_from_the_flag_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let token = |flag: Option<&str>, file: Option<&Path>, env: Option<&str>| {
            resolve_token(flag.map(Into::into), file, env.map(Into::into))
        };
        assert_eq!(
            token(Some("flag"), Some(&file), Some("env")).unwrap(),
            Some(Token("flag".into()))
        );
        assert_eq!(
            token(None, Some(&file), Some("env")).unwrap(),
            Some(Token("from-file".into()))
        );
        assert_eq!(
            token(None, None, Some("env")).unwrap(),
            Some(Token("env".into()))
        );
        assert_eq!(token(None, None, None).unwrap(), None);
        assert!(matches!(
            token(Some(" "), None, None),
            Err(TargetError::EmptyToken)
        ));
        assert!(matches!(
            token(None, Some(&dir.path().join("missing")), None),
            Err(TargetError::TokenFile { .. })
        ));
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token("secret-value".into());
        assert!(!format!("{token:?}").contains("secret-value"));
    }
}
