//! The names Vessel derives from a user id: one lower-case, DNS-safe name
//! per user, the same in every backend, and the exact user id back from it.
//!
//! User ids are case-sensitive (`User-A` and `user-a` are two users) and may
//! hold `_`, but the backends that see derived names do not allow that:
//! ignite's VM names are lower-case DNS-1123 subdomains, host names are
//! DNS labels compared ignoring case, and Caddy's path and host matchers
//! ignore case. So a name is the id made lower-case with `_` written as `-`
//! (the *slug*), followed by a *shape mark* that records which characters
//! that changed:
//!
//! ```text
//! public name = {slug}-{mark}          e.g. User-A -> user-a-x, user-a -> user-a-0, a_b -> a-b-2
//! VM id       = vessel-{public name}   e.g. vessel-user-a-x (also the route id)
//! ```
//!
//! The mark is a number written in base 36 (`0-9a-z`, no leading zeros):
//! bit *k* is set when the *k*-th letter-or-dash position of the id holds an
//! upper-case letter or `_` (digits have one spelling and take no bit). The
//! mapping is one-to-one: two different ids never give the same name, even
//! compared ignoring case, and [`UserId::from_public_name`] reads the exact
//! id back without a lookup.
//!
//! Lengths, for the longest id (48 characters): the slug is at most 48
//! characters and the mark at most 10 (48 bits), so a public name is at
//! most [`MAX_PUBLIC_NAME_LEN`] = 59 characters, a valid DNS label (63), and
//! a VM id at most [`MAX_VM_ID_LEN`] = 66 characters: a valid ignite name
//! (a DNS-1123 subdomain of one label, 253 at most).

use crate::ids::{MAX_USER_ID_LEN, UserId};

/// The prefix that marks a VM or route as one of Vessel's sessions.
pub const VM_ID_PREFIX: &str = "vessel-";

/// The longest public name: the longest slug, a dash and the longest mark.
pub const MAX_PUBLIC_NAME_LEN: usize = MAX_USER_ID_LEN + 1 + MAX_MARK_LEN;

/// The longest VM (and route) id.
pub const MAX_VM_ID_LEN: usize = VM_ID_PREFIX.len() + MAX_PUBLIC_NAME_LEN;

/// Digits of the largest mark, 2^48 - 1, in base 36.
const MAX_MARK_LEN: usize = 10;

/// Whether `c` has two spellings in an id that the slug writes as one.
fn has_two_spellings(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '-' || c == '_'
}

/// The spelling that sets a position's bit in the mark.
fn is_marked(c: char) -> bool {
    c.is_ascii_uppercase() || c == '_'
}

fn to_base36(mut value: u64) -> String {
    let mut digits = Vec::new();
    loop {
        let digit = (value % 36) as u32;
        digits.push(char::from_digit(digit, 36).unwrap_or('0'));
        value /= 36;
        if value == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// Parses a mark: base 36, lower case, without leading zeros.
fn from_base36(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > MAX_MARK_LEN || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    let mut value: u64 = 0;
    for c in text.chars() {
        if c.is_ascii_uppercase() {
            return None;
        }
        value = value.checked_mul(36)?.checked_add(c.to_digit(36)? as u64)?;
    }
    Some(value)
}

impl UserId {
    /// The user's public name, `{slug}-{mark}`: a lower-case DNS label,
    /// distinct for every user even compared ignoring case. Host names,
    /// URL paths and proxy objects use it.
    pub fn public_name(&self) -> String {
        let id = self.as_str();
        let mut slug = String::with_capacity(id.len() + 1 + MAX_MARK_LEN);
        let mut mark: u64 = 0;
        let mut bit = 0;
        for c in id.chars() {
            if has_two_spellings(c) {
                if is_marked(c) {
                    mark |= 1 << bit;
                }
                bit += 1;
            }
            slug.push(if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            });
        }
        slug.push('-');
        slug.push_str(&to_base36(mark));
        slug
    }

    /// The id of this user's session VM, and of its proxy route:
    /// `vessel-{public name}`.
    pub fn vm_id(&self) -> String {
        format!("{VM_ID_PREFIX}{}", self.public_name())
    }

    /// The VM id Vessel 0.1 gave this user's sessions,
    /// `user-{userId}-session`, which records written before 0.2 still hold.
    pub fn legacy_vm_id(&self) -> String {
        format!("user-{}-session", self.as_str())
    }

    /// Whether `vm_id` names this user's session VM: the id Vessel gives it
    /// now, or the one a record written by Vessel 0.1 holds. A record whose
    /// `vmId` is anything else is not this user's to act on.
    pub fn owns_vm_id(&self, vm_id: &str) -> bool {
        vm_id == self.vm_id() || vm_id == self.legacy_vm_id()
    }

    /// The user whose public name is `name`, exactly: the inverse of
    /// [`UserId::public_name`]. `None` for names it never gives.
    pub fn from_public_name(name: &str) -> Option<UserId> {
        let (slug, mark) = name.rsplit_once('-')?;
        let mut mark = from_base36(mark)?;
        let mut id = String::with_capacity(slug.len());
        for c in slug.chars() {
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return None;
            }
            if has_two_spellings(c) {
                let marked = mark & 1 == 1;
                mark >>= 1;
                id.push(match (c, marked) {
                    ('-', true) => '_',
                    (c, true) => c.to_ascii_uppercase(),
                    (c, false) => c,
                });
            } else {
                id.push(c);
            }
        }
        // Bits beyond the slug's positions: a mark the encoder never writes.
        if mark != 0 {
            return None;
        }
        UserId::parse(&id).ok()
    }

    /// The user whose session VM (or route) `vm_id` names, if Vessel named
    /// it: the inverse of [`UserId::vm_id`]. VMs and routes named otherwise
    /// (including 0.1's `user-{userId}-session`, which cannot be told apart
    /// from other tools' names reliably) are not claimed, and reconciliation
    /// leaves them alone.
    pub fn from_vm_id(vm_id: &str) -> Option<UserId> {
        UserId::from_public_name(vm_id.strip_prefix(VM_ID_PREFIX)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    /// A DNS label as RFC 1123 defines it, the strictest rule the names
    /// meet: lower-case alphanumerics and '-', starting and ending with an
    /// alphanumeric, 63 characters at most.
    fn is_dns_label(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn names_of_awkward_ids() {
        for (id, name) in [
            ("User-A", "user-a-x"),
            ("user-a", "user-a-0"),
            ("USER-A", "user-a-1b"),
            ("a_b", "a-b-2"),
            ("a-b", "a-b-0"),
            ("9x", "9x-0"),
            ("7", "7-0"),
            ("a_", "a--2"),
        ] {
            assert_eq!(user(id).public_name(), name, "{id}");
            assert_eq!(user(id).vm_id(), format!("vessel-{name}"));
        }
    }

    #[test]
    fn every_name_reads_back_as_its_exact_id() {
        let longest_upper = "Z".repeat(MAX_USER_ID_LEN);
        let longest_mixed: String = (0..MAX_USER_ID_LEN)
            .map(|i| ['a', 'B', '_', '-', '7'][i % 5])
            .collect::<String>()
            .replacen('_', "x", 1);
        for id in [
            "User-A",
            "user-a",
            "USER-A",
            "a_b",
            "a-b",
            "9x",
            "a_",
            "x--_-",
            longest_upper.as_str(),
            longest_mixed.as_str(),
        ] {
            let name = user(id).public_name();
            assert!(is_dns_label(&name), "{id} -> {name}");
            assert!(name.len() <= MAX_PUBLIC_NAME_LEN);
            assert_eq!(UserId::from_public_name(&name), Some(user(id)), "{name}");
            let vm_id = user(id).vm_id();
            assert!(vm_id.len() <= MAX_VM_ID_LEN);
            assert_eq!(UserId::from_vm_id(&vm_id), Some(user(id)));
        }
        assert_eq!(
            user(&longest_upper).public_name().len(),
            MAX_PUBLIC_NAME_LEN
        );
    }

    #[test]
    fn ids_that_differ_by_case_or_underscore_never_share_a_name() {
        // Every spelling of a short id: the names differ even ignoring case.
        let spellings: Vec<String> = (0..32u32)
            .map(|bits| {
                "ab-cd"
                    .chars()
                    .enumerate()
                    .map(|(i, c)| match (c, bits >> i & 1 == 1) {
                        ('-', true) => '_',
                        (c, true) => c.to_ascii_uppercase(),
                        (c, false) => c,
                    })
                    .collect()
            })
            .collect();
        let names: std::collections::BTreeSet<String> = spellings
            .iter()
            .map(|id| user(id).public_name().to_ascii_lowercase())
            .collect();
        assert_eq!(names.len(), spellings.len());
    }

    #[test]
    fn names_vessel_never_gives_are_not_claimed() {
        for name in [
            "user-a-00",   // leading zero
            "user-a-X",    // upper case
            "user-a-",     // empty mark
            "a-2",         // a bit for a position that is not there
            "-a-0",        // the id would start with '-'
            "a.b-0",       // a character no id holds
            "Xy-0",        // upper case in the slug
            "9-1",         // a digit takes no bit
            "zzzzzzzzzzz", // no dash
        ] {
            assert_eq!(UserId::from_public_name(name), None, "{name}");
        }
        for vm_id in ["user-a-session", "vessel-", "web-1", "vessel-a-zzzzzzzzzzz"] {
            assert_eq!(UserId::from_vm_id(vm_id), None, "{vm_id}");
        }
    }

    #[test]
    fn a_user_owns_its_vm_id_and_its_legacy_one_only() {
        let a = user("User-A");
        assert!(a.owns_vm_id("vessel-user-a-x"));
        assert!(a.owns_vm_id("user-User-A-session"));
        assert!(!a.owns_vm_id("vessel-user-a-0"));
        assert!(!a.owns_vm_id("user-user-a-session"));
        assert!(!a.owns_vm_id("vessel-bob-0"));
    }
}
