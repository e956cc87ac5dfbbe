//! VM names: Vessel's VM ids as ignite accepts them, and back.
//!
//! Ignite requires names to match `^[a-z-_0-9.:/@]*$` (no upper case;
//! `pkg/metadata/metadata.go`), while Vessel's ids are `[A-Za-z0-9_-]` and
//! case-sensitive (`user-User-A-session`). Lowercasing alone would make
//! `User-A` and `user-a` collide, so an upper-case letter `X` is written as
//! `.x`: `.` never occurs in a Vessel id, which makes the mapping one-to-one.

/// The ignite name for Vessel VM id `vm_id`.
pub fn to_ignite(vm_id: &str) -> String {
    let mut name = String::with_capacity(vm_id.len() + 4);
    for c in vm_id.chars() {
        if c.is_ascii_uppercase() {
            name.push('.');
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// The Vessel VM id of ignite name `name`, if it is one Vessel made.
pub fn from_ignite(name: &str) -> Option<String> {
    let mut id = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => id.push(
                chars
                    .next()
                    .filter(char::is_ascii_lowercase)?
                    .to_ascii_uppercase(),
            ),
            c if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' => id.push(c),
            _ => return None,
        }
    }
    Some(id)
}

/// Whether `vm_id` is one of Vessel's session VMs (`user-{user}-session`):
/// the VMs this driver lists, leaving others on the same ignite alone.
pub fn is_vessel_vm(vm_id: &str) -> bool {
    vm_id.len() > "user--session".len() && vm_id.starts_with("user-") && vm_id.ends_with("-session")
}

/// Whether `vm_id` is in the contract's id charset.
pub fn is_valid_id(vm_id: &str) -> bool {
    !vm_id.is_empty()
        && vm_id.len() <= 64
        && vm_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && vm_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignite_accepts(name: &str) -> bool {
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:/@".contains(c))
    }

    #[test]
    fn mixed_case_ids_become_valid_distinct_names_and_come_back() {
        let upper = to_ignite("user-User-A-session");
        let lower = to_ignite("user-user-a-session");
        assert_eq!(upper, "user-.user-.a-session");
        assert_eq!(lower, "user-user-a-session");
        assert_ne!(upper, lower);
        for id in [
            "user-User-A-session",
            "user-user-a-session",
            "user-x_9-session",
        ] {
            let name = to_ignite(id);
            assert!(ignite_accepts(&name), "{name}");
            assert_eq!(from_ignite(&name).as_deref(), Some(id));
        }
    }

    #[test]
    fn foreign_names_are_not_mistaken_for_vessel_vms() {
        assert_eq!(from_ignite("web.1"), None);
        assert_eq!(from_ignite("a:b"), None);
        assert!(from_ignite("my-vm").is_some_and(|id| !is_vessel_vm(&id)));
        assert!(is_vessel_vm("user-a-session"));
        assert!(!is_vessel_vm("user--session"));
    }
}
