//! Validated identifiers: the user ids that reach VM names, routes and store
//! keys, and the VM ids derived from them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest user id Vessel accepts. The VM id `user-{id}-session` then
/// stays within the 64 characters the plugin contract promises drivers.
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

    /// The name of this user's session VM, and of its proxy route:
    /// `user-{userId}-session`.
    pub fn vm_id(&self) -> String {
        format!("user-{}-session", self.0)
    }

    /// The user whose VM (or route) `vm_id` names, if it is named the way
    /// Vessel names them: the inverse of [`UserId::vm_id`]. VMs and routes
    /// named otherwise are not Vessel's, and reconciliation leaves them
    /// alone.
    pub fn from_vm_id(vm_id: &str) -> Option<UserId> {
        let user = vm_id.strip_prefix("user-")?.strip_suffix("-session")?;
        UserId::parse(user).ok()
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

/// Whether `id` is safe to hand to a driver as a VM or route id: the
/// contract's promise of 1 to 64 characters of `[A-Za-z0-9_-]`, starting
/// with a letter or digit. Records edited by hand are checked with it.
pub fn is_driver_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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

    #[test]
    fn every_valid_user_gives_a_driver_safe_vm_id() {
        let longest = UserId::parse(&"z".repeat(MAX_USER_ID_LEN)).unwrap();
        assert!(is_driver_safe_id(&longest.vm_id()));
        assert!(!is_driver_safe_id("user-a b-session"));
        assert!(!is_driver_safe_id(""));
        assert!(!is_driver_safe_id(&"a".repeat(65)));
    }

    #[test]
    fn the_vm_id_follows_the_seed_naming() {
        assert_eq!(
            UserId::parse("User-A").unwrap().vm_id(),
            "user-User-A-session"
        );
    }

    #[test]
    fn vessel_named_vms_give_back_their_user_and_others_give_none() {
        for user in ["User-A", "a", "user-session", "u_1-session"] {
            let id = UserId::parse(user).unwrap();
            assert_eq!(UserId::from_vm_id(&id.vm_id()), Some(id));
        }
        for other in [
            "web-1",
            "user--session",
            "user-a b-session",
            "user-a",
            "a-session",
        ] {
            assert_eq!(UserId::from_vm_id(other), None, "{other}");
        }
    }
}
