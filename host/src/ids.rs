//! Validated user ids: the ids that reach store keys and, through
//! [`crate::names`], VM names, routes and URLs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest user id Vessel accepts. The names derived from it then stay
/// within a DNS label (see [`crate::names`]).
pub const MAX_USER_ID_LEN: usize = 48;

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUserId {
    /// The id is the empty string.
    #[error("userId must not be empty")]
    Empty,
    /// The id is longer than [`MAX_USER_ID_LEN`].
    #[error("userId is {0} characters long; the limit is {MAX_USER_ID_LEN}")]
    TooLong(usize),
    /// The id holds a character outside `[A-Za-z0-9_-]`.
    #[error("userId may hold only letters, digits, '-' and '_'; found {0:?}")]
    BadCharacter(char),
    /// The id starts with `-` or `_`.
    #[error("userId must start with a letter or a digit")]
    BadStart,
}

/// A user id that is safe to use in VM names, proxy routes, URLs, file names
/// and Redis keys: 1 to 48 characters of `[A-Za-z0-9_-]`, starting with a
/// letter or digit. Case is significant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Validates `raw` as a user id.
    pub fn parse(raw: &str) -> Result<UserId, InvalidUserId> {
        if raw.is_empty() {
            return Err(InvalidUserId::Empty);
        }
        let len = raw.chars().count();
        if len > MAX_USER_ID_LEN {
            return Err(InvalidUserId::TooLong(len));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(InvalidUserId::BadCharacter(bad));
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(InvalidUserId::BadStart);
        }
        Ok(UserId(raw.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        UserId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_ids_users_have() {
        for id in ["alice", "User-A", "u_42", "7", &"a".repeat(MAX_USER_ID_LEN)] {
            assert_eq!(UserId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_ids_that_could_escape_a_name_path_or_key() {
        assert_eq!(UserId::parse(""), Err(InvalidUserId::Empty));
        assert_eq!(
            UserId::parse(&"a".repeat(MAX_USER_ID_LEN + 1)),
            Err(InvalidUserId::TooLong(MAX_USER_ID_LEN + 1))
        );
        for (id, bad) in [
            ("../etc", '.'),
            ("a b", ' '),
            ("a:b", ':'),
            ("a/b", '/'),
            ("a*", '*'),
            ("é", 'é'),
            ("a;rm", ';'),
        ] {
            assert_eq!(UserId::parse(id), Err(InvalidUserId::BadCharacter(bad)));
        }
        assert_eq!(UserId::parse("-rf"), Err(InvalidUserId::BadStart));
        assert_eq!(UserId::parse("_x"), Err(InvalidUserId::BadStart));
    }
}
