//! VM names: which names ignite accepts, and which VMs are Vessel's.
//!
//! The host gives every VM an id that is already a valid ignite name
//! (`vessel-{public name}`: lower case, digits and '-', at most 66
//! characters; see the WIT `types` docs), so the driver passes it to ignite
//! as it is. It still checks each id against ignite's own rules first, so
//! that a bad id is refused with a clear error before anything runs.

/// The longest name ignite accepts (a DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;

/// Whether ignite v0.10 accepts `name` as a VM name. Ignite checks twice:
/// the characters `^[a-z-_0-9.:/@]*$` (`pkg/metadata`), then
/// `ValidateVMName`, Kubernetes' `IsDNS1123Subdomain`
/// (`pkg/apis/ignite/validation`): at most 253 characters of lower-case
/// alphanumerics, '-' and '.', each dot-separated label starting and ending
/// with an alphanumeric. The second rule is the stricter one.
pub fn is_ignite_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.starts_with(alnum)
                && label.ends_with(alnum)
                && label.chars().all(|c| alnum(c) || c == '-')
        })
}

/// Whether VM `name` is one of Vessel's sessions, which `list-vms` reports:
/// `vessel-…`, or `user-…-session` (the names of Vessel 0.1). Other VMs on
/// the same ignite are left alone.
pub fn is_vessel_vm(name: &str) -> bool {
    (name.len() > "vessel-".len() && name.starts_with("vessel-"))
        || (name.len() > "user--session".len()
            && name.starts_with("user-")
            && name.ends_with("-session"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vessel_ids_are_ignite_names_as_they_are() {
        let longest = format!("vessel-{}-{}", "z".repeat(48), "1".repeat(10));
        assert_eq!(longest.len(), 66);
        for name in ["vessel-user-a-x", "vessel-a-b-2", "vessel-9x-0", &longest] {
            assert!(is_ignite_name(name), "{name}");
        }
    }

    #[test]
    fn names_ignite_refuses_are_refused() {
        for name in [
            "user-.user-.a-session", // the label "user-" ends in '-'
            "user-User-A-session",   // upper case
            "user-a_b-session",      // '_' passes the first rule, not the second
            "a:b",
            "a/b",
            "-a",
            "a-",
            "",
            &"a".repeat(254),
        ] {
            assert!(!is_ignite_name(name), "{name}");
        }
        assert!(is_ignite_name(&"a".repeat(253)));
        assert!(is_ignite_name("web.1"));
    }

    #[test]
    fn only_vessel_vms_are_listed() {
        assert!(is_vessel_vm("vessel-user-a-x"));
        assert!(is_vessel_vm("user-alice-session"));
        assert!(!is_vessel_vm("vessel-"));
        assert!(!is_vessel_vm("user--session"));
        assert!(!is_vessel_vm("my-vm"));
    }
}
