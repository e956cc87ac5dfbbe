//! Vessel's tokens: HS256 JSON Web Tokens with the audience `vessel`, a
//! subject, an expiry, and a scope that says what they may do.
//!
//! ```json
//! {"aud": "vessel", "sub": "User-A", "scope": "user", "iat": 1795920000, "exp": 1795923600}
//! {"aud": "vessel", "sub": "frontend", "scope": "operator", "iat": 1795920000, "exp": 1798512000}
//! ```
//!
//! A `user` token acts on the session of its subject only (the exact,
//! case-sensitive user id); an `operator` token acts on every session and
//! on admin endpoints, and its subject names the operator or service for
//! logs and per-token limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// The audience every Vessel token carries, so that a token minted with the
/// same key for another service is not accepted here.
pub const AUDIENCE: &str = "vessel";

/// How much clock difference between the minting backend and the host is
/// tolerated when checking `exp`.
const LEEWAY_SECS: u64 = 5;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Act on the session of the subject (a user id).
    User,
    /// Act on every session and on admin endpoints.
    Operator,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// The user id (`user` scope) or the operator's name (`operator` scope).
    pub sub: String,
    /// What the token may do.
    pub scope: Scope,
    /// When it was issued (seconds since the epoch).
    pub iat: u64,
    /// When it expires (seconds since the epoch).
    pub exp: u64,
}

/// Why a token was not accepted. The messages never hold the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is not a JWT, or lacks a claim Vessel needs.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// No configured key made the signature (or the algorithm is not HS256).
    #[error("the token's signature is not valid")]
    BadSignature,
    /// The token is for another service.
    #[error("the token is not meant for Vessel (its audience is not \"vessel\")")]
    WrongAudience,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Makes a token for `subject` with `scope`, valid for `ttl`, signed with
/// `key`. A `user` token's subject must be a valid user id.
pub fn mint(key: &[u8], subject: &str, scope: Scope, ttl: Duration) -> Result<String, TokenError> {
    if scope == Scope::User {
        UserId::parse(subject).map_err(|e| TokenError::Malformed(e.to_string()))?;
    }
    let iat = now_secs();
    let claims = Claims {
        aud: AUDIENCE.to_string(),
        sub: subject.to_string(),
        scope,
        iat,
        exp: iat + ttl.as_secs().max(1),
    };
    let key = EncodingKey::from_secret(key).map_err(|e| TokenError::Malformed(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// Checks `token` against each of `keys` in turn (several during a key
/// rotation) and returns its claims.
pub fn verify(token: &str, keys: &[Vec<u8>]) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    validation.leeway = LEEWAY_SECS;
    for key in keys {
        let Ok(key) = DecodingKey::from_secret(key) else {
            continue;
        };
        let error = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => {
                let claims = data.claims;
                if claims.scope == Scope::User {
                    UserId::parse(&claims.sub).map_err(|e| {
                        TokenError::Malformed(format!("its subject is not a user id: {e}"))
                    })?;
                }
                return Ok(claims);
            }
            Err(error) => error,
        };
        // Only a signature mismatch depends on the key: then try the next.
        return Err(match error.kind() {
            ErrorKind::InvalidSignature => continue,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
            ErrorKind::MissingRequiredClaim(claim) => {
                TokenError::Malformed(format!("it has no {claim:?} claim"))
            }
            ErrorKind::Json(_) => TokenError::Malformed("its claims are not Vessel's".to_string()),
            _ => TokenError::Malformed("it is not a signed JWT".to_string()),
        });
    }
    Err(TokenError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let token = mint(KEY, "User-A", Scope::User, Duration::from_secs(60)).unwrap();
        let claims = verify(&token, &[KEY.to_vec()]).unwrap();
        assert_eq!(claims.sub, "User-A");
        assert_eq!(claims.scope, Scope::User);
        assert_eq!(claims.aud, AUDIENCE);
        assert!(claims.exp > claims.iat);
    }

    #[test]
    fn every_configured_key_is_tried_in_a_rotation() {
        let old = mint(OLD_KEY, "ops", Scope::Operator, Duration::from_secs(60)).unwrap();
        let keys = [KEY.to_vec(), OLD_KEY.to_vec()];
        assert_eq!(verify(&old, &keys).unwrap().scope, Scope::Operator);
        assert_eq!(verify(&old, &keys[..1]), Err(TokenError::BadSignature));
    }

    #[test]
    fn bad_tokens_are_refused_for_what_is_wrong() {
        let keys = [KEY.to_vec()];
        assert!(matches!(
            verify("not-a-jwt", &keys),
            Err(TokenError::Malformed(_))
        ));
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                aud: AUDIENCE.into(),
                sub: "a".into(),
                scope: Scope::User,
                iat: 1,
                exp: 2,
            },
            &EncodingKey::from_secret(KEY).unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&expired, &keys), Err(TokenError::Expired));
        let foreign = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                aud: "billing".into(),
                sub: "a".into(),
                scope: Scope::User,
                iat: now_secs(),
                exp: now_secs() + 60,
            },
            &EncodingKey::from_secret(KEY).unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&foreign, &keys), Err(TokenError::WrongAudience));
        // An unsigned token ("alg": "none") is never accepted.
        let mut parts = mint(KEY, "a", Scope::User, Duration::from_secs(60))
            .unwrap()
            .split('.')
            .map(str::to_string)
            .collect::<Vec<_>>();
        parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0".into(); // {"alg":"none","typ":"JWT"}
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert!(verify(&unsigned, &keys).is_err());
        // A user token whose subject is no user id.
        assert!(mint(KEY, "../x", Scope::User, Duration::from_secs(60)).is_err());
    }
}
