//! Who is calling: bearer tokens checked into a [`Caller`] that says whose
//! sessions the request may touch.
//!
//! - **Operator tokens** act on every user's session and on admin
//!   endpoints: a JWT with `"scope": "operator"`, or the fixed
//!   `auth.operator_token`.
//! - **User tokens** act on one user's session only: a JWT with
//!   `"scope": "user"` and the exact user id as its subject, minted by the
//!   frontend's backend (or `vessel token --user ID`).
//!
//! See [`token`] for the token format and [`keyfile`] for the key a host
//! makes for itself when none is configured.

pub mod keyfile;
pub mod token;

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, Config, MetricsAccess, Secret};
use crate::ids::UserId;
pub use token::{Scope, TokenError};

/// How long the operator token printed at start-up stays valid.
pub const STARTUP_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Who made a request, once their token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off (`auth.mode = "none"`): anyone may do anything.
    Anyone,
    /// An operator: may act on every session.
    Operator {
        /// The operator's name (the token's subject; `operator` for the
        /// fixed token).
        name: String,
    },
    /// A user: may act on their own session only.
    User {
        /// The user.
        user: UserId,
    },
}

impl Caller {
    /// Whether this caller may act on `user`'s session.
    pub fn may_act_on(&self, user: &UserId) -> bool {
        match self {
            Caller::Anyone | Caller::Operator { .. } => true,
            Caller::User { user: own } => own == user,
        }
    }

    /// Whether this caller may use admin endpoints.
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Anyone | Caller::Operator { .. })
    }

    /// The name per-token session limits count this caller's sessions
    /// under: an operator's (`operator:{name}`). A user holds one session
    /// at most anyway; anonymous callers are not counted.
    pub fn starter_key(&self) -> Option<String> {
        match self {
            Caller::Operator { name } => Some(format!("operator:{name}")),
            Caller::Anyone | Caller::User { .. } => None,
        }
    }

    /// The name per-token rate limits count this caller under: a user
    /// token's user. Operators (a frontend's backend speaking for all its
    /// users) and anonymous callers (authentication off) are not limited
    /// per token.
    pub fn limit_key(&self) -> Option<String> {
        match self {
            Caller::Anyone | Caller::Operator { .. } => None,
            Caller::User { user } => Some(format!("user:{user}")),
        }
    }
}

/// Why a request was not let in. The messages never hold the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not a bearer token.
    #[error("this endpoint needs an `Authorization: Bearer <token>` header")]
    Missing,
    /// A token that is malformed, expired, or not signed by a known key.
    #[error(transparent)]
    Invalid(#[from] TokenError),
    /// A valid token that may not do this.
    #[error("{0}")]
    Forbidden(String),
}

/// Why authentication could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A host reachable from the network with no way to check tokens.
    #[error(
        "refusing to listen on {listen} without authentication keys: anyone who reaches it \
         could start, read and stop every user's session. Set auth.signing_keys (env \
         VESSEL_SIGNING_KEYS) or auth.operator_token (env VESSEL_OPERATOR_TOKEN), or choose \
         auth.mode = \"none\" explicitly for a test setup"
    )]
    NoKeyOffLoopback {
        /// The address the host would listen on.
        listen: std::net::SocketAddr,
    },
    /// The generated key's file cannot be used.
    #[error(transparent)]
    KeyFile(#[from] keyfile::KeyFileError),
    /// The start-up operator token could not be minted.
    #[error("cannot mint the start-up operator token: {0}")]
    Mint(#[from] TokenError),
}

/// Checks bearer tokens against the configured keys.
pub struct Authenticator {
    mode: AuthMode,
    keys: Vec<Vec<u8>>,
    /// The SHA-256 of the fixed operator token: compared with the digest of
    /// what a request presents, in constant time and without revealing
    /// the token's length.
    operator_digest: Option<[u8; 32]>,
    metrics: MetricsAccess,
}

/// An [`Authenticator`] and, when the host made its own key, an operator
/// token to show the person starting it.
pub struct AuthSetup {
    /// The authenticator.
    pub authenticator: Authenticator,
    /// An operator token minted at start-up (only when the key was not
    /// configured but generated or read from `{data_dir}/signing.key`).
    pub startup_token: Option<String>,
    /// Where the generated key lives, when it is used.
    pub key_file: Option<std::path::PathBuf>,
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

impl Authenticator {
    /// An authenticator that lets everyone in (`auth.mode = "none"`).
    pub fn none() -> Authenticator {
        Authenticator {
            mode: AuthMode::None,
            keys: Vec::new(),
            operator_digest: None,
            metrics: MetricsAccess::Open,
        }
    }

    /// An authenticator accepting tokens signed with `keys` and the fixed
    /// `operator_token`.
    pub fn new(
        keys: Vec<Vec<u8>>,
        operator_token: Option<&Secret>,
        metrics: MetricsAccess,
    ) -> Authenticator {
        Authenticator {
            mode: AuthMode::Token,
            keys,
            operator_digest: operator_token.map(|t| digest(t.expose().as_bytes())),
            metrics,
        }
    }

    /// Sets up authentication for `config`: the configured keys, or, with
    /// none on a loopback address, a key of the host's own (made once and
    /// kept in the data directory) and an operator token to print. A host
    /// on any other address with no key refuses to start.
    pub fn setup(config: &Config) -> Result<AuthSetup, AuthSetupError> {
        let auth = &config.auth;
        if auth.mode == AuthMode::None {
            return Ok(AuthSetup {
                authenticator: Authenticator::none(),
                startup_token: None,
                key_file: None,
            });
        }
        if !auth.signing_keys.is_empty() || auth.operator_token.is_some() {
            let keys = auth
                .signing_keys
                .iter()
                .map(|k| k.expose().as_bytes().to_vec())
                .collect();
            return Ok(AuthSetup {
                authenticator: Authenticator::new(keys, auth.operator_token.as_ref(), auth.metrics),
                startup_token: None,
                key_file: None,
            });
        }
        if !config.listen.ip().is_loopback() {
            return Err(AuthSetupError::NoKeyOffLoopback {
                listen: config.listen,
            });
        }
        let file = keyfile::load_or_create(&config.data_dir)?;
        let startup_token = token::mint(&file.key, "operator", Scope::Operator, STARTUP_TOKEN_TTL)?;
        Ok(AuthSetup {
            authenticator: Authenticator::new(vec![file.key], None, auth.metrics),
            startup_token: Some(startup_token),
            key_file: Some(file.path),
        })
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.mode == AuthMode::Token
    }

    /// The caller an `Authorization` header value names.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(Caller::Anyone);
        }
        let bearer = authorization
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some(expected) = &self.operator_digest
            && bool::from(digest(bearer.as_bytes()).ct_eq(expected))
        {
            return Ok(Caller::Operator {
                name: "operator".to_string(),
            });
        }
        let claims = token::verify(bearer, &self.keys)?;
        Ok(match claims.scope {
            Scope::Operator => Caller::Operator { name: claims.sub },
            Scope::User => Caller::User {
                // `verify` checked that the subject is a user id.
                user: UserId::parse(&claims.sub)
                    .map_err(|e| AuthError::Invalid(TokenError::Malformed(e.to_string())))?,
            },
        })
    }

    /// Whether a client at `peer` may read `/metrics` without a token.
    pub fn metrics_open_to(&self, peer: Option<IpAddr>) -> bool {
        match (self.mode, self.metrics) {
            (AuthMode::None, _) | (_, MetricsAccess::Open) => true,
            (_, MetricsAccess::Loopback) => peer.is_some_and(|ip| ip.is_loopback()),
            (_, MetricsAccess::Token) => false,
        }
    }
}

/// The key `vessel token` signs with: the first configured key, else the
/// host's own key file in the data directory.
pub fn signing_key(config: &Config) -> Result<Vec<u8>, AuthSetupError> {
    match config.auth.signing_keys.first() {
        Some(key) => Ok(key.expose().as_bytes().to_vec()),
        None => Ok(keyfile::load_or_create(&config.data_dir)?.key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        Authenticator::new(
            vec![KEY.to_vec()],
            Some(&Secret::new("fixed-operator-token-of-32-chars!")),
            MetricsAccess::Loopback,
        )
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn user_tokens_act_on_their_own_user_only() {
        let token = token::mint(KEY, "User-A", Scope::User, Duration::from_secs(60)).unwrap();
        let caller = authenticator().authenticate(Some(&bearer(&token))).unwrap();
        assert!(caller.may_act_on(&UserId::parse("User-A").unwrap()));
        assert!(!caller.may_act_on(&UserId::parse("user-a").unwrap()));
        assert!(!caller.is_operator());
    }

    #[test]
    fn operator_tokens_act_on_everyone() {
        let jwt = token::mint(KEY, "frontend", Scope::Operator, Duration::from_secs(60)).unwrap();
        for presented in [jwt.as_str(), "fixed-operator-token-of-32-chars!"] {
            let caller = authenticator()
                .authenticate(Some(&bearer(presented)))
                .unwrap();
            assert!(caller.is_operator());
            assert!(caller.may_act_on(&UserId::parse("anyone").unwrap()));
        }
    }

    #[test]
    fn missing_and_bad_headers_are_refused() {
        let auth = authenticator();
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        for header in ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "token"] {
            assert_eq!(
                auth.authenticate(Some(header.as_bytes())),
                Err(AuthError::Missing),
                "{header}"
            );
        }
        assert!(matches!(
            auth.authenticate(Some(&bearer("fixed-operator-token-of-32-chars"))),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn metrics_are_open_on_loopback_only_by_default() {
        let auth = authenticator();
        assert!(auth.metrics_open_to(Some("127.0.0.1".parse().unwrap())));
        assert!(auth.metrics_open_to(Some("::1".parse().unwrap())));
        assert!(!auth.metrics_open_to(Some("192.0.2.1".parse().unwrap())));
        assert!(!auth.metrics_open_to(None));
        assert!(Authenticator::none().metrics_open_to(None));
    }

    #[test]
    fn a_host_off_loopback_with_no_key_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.listen = "0.0.0.0:8080".parse().unwrap();
        let error = Authenticator::setup(&config).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("refusing to listen on 0.0.0.0:8080")
        );
        // On loopback it makes its own key and an operator token.
        config.listen = "127.0.0.1:8080".parse().unwrap();
        let setup = Authenticator::setup(&config).unwrap();
        let token = setup.startup_token.unwrap();
        let caller = setup
            .authenticator
            .authenticate(Some(&bearer(&token)))
            .unwrap();
        assert!(caller.is_operator());
        // Explicitly off: anyone, anywhere.
        config.listen = "0.0.0.0:8080".parse().unwrap();
        config.auth.mode = AuthMode::None;
        let setup = Authenticator::setup(&config).unwrap();
        assert!(!setup.authenticator.enabled());
    }
}
