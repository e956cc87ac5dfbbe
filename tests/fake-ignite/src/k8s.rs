//! The pieces of `k8s.io/apimachinery` v0.21.0 that ignite's `ValidateVM`
//! uses (`pkg/apis/ignite/validation/validation.go`): `IsDNS1123Subdomain`
//! (`pkg/util/validation/validation.go`), `field.Error` and
//! `ErrorList.ToAggregate()` (`pkg/util/validation/field/errors.go`,
//! `pkg/util/errors/errors.go`), with their exact texts.

use crate::log::go_quote;

/// `validation.DNS1123SubdomainMaxLength`.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// `dns1123SubdomainFmt`.
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// `dns1123SubdomainErrorMsg`.
const DNS1123_SUBDOMAIN_ERROR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// `validation.IsDNS1123Subdomain`: the reasons `value` is not a lowercase
/// RFC 1123 subdomain (empty when it is). Length is counted in bytes, like
/// Go's `len`.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_ERROR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// Whether `value` matches `^` + `dns1123SubdomainFmt` + `$`: dot-separated
/// labels of `[a-z0-9-]`, each non-empty and starting and ending with
/// `[a-z0-9]`.
fn matches_dns1123_subdomain(value: &str) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    value.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(&first), Some(&last)) => {
                alphanumeric(first)
                    && alphanumeric(last)
                    && bytes.iter().all(|&b| alphanumeric(b) || b == b'-')
            }
            _ => false,
        }
    })
}

/// `validation.MaxLenError`.
fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `validation.RegexError`.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    let quoted: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{message} (e.g. {}regex used for validation is '{format}')",
        quoted.join(" or ")
    )
}

/// One `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldError {
    /// `field.Invalid(path, value, detail)` with a string value.
    Invalid {
        /// The field path, e.g. `metadata.name`.
        path: String,
        /// The rejected value.
        value: String,
        /// Why.
        detail: String,
    },
    /// `field.Required(path, detail)`.
    Required {
        /// The field path.
        path: String,
        /// Why.
        detail: String,
    },
}

impl FieldError {
    /// `(*field.Error).Error()`: `<path>: <type>[: <value>][: <detail>]`.
    pub fn text(&self) -> String {
        let (path, mut body, detail) = match self {
            FieldError::Invalid {
                path,
                value,
                detail,
            } => (path, format!("Invalid value: {}", go_quote(value)), detail),
            FieldError::Required { path, detail } => (path, "Required value".to_string(), detail),
        };
        if !detail.is_empty() {
            body.push_str(": ");
            body.push_str(detail);
        }
        format!("{path}: {body}")
    }
}

/// `ErrorList.ToAggregate().Error()`: `None` for no errors, the single
/// message for one distinct error, else `[a, b, …]` (duplicates dropped).
pub fn aggregate(errors: &[FieldError]) -> Option<String> {
    let mut messages: Vec<String> = Vec::new();
    for error in errors {
        let text = error.text();
        if !messages.contains(&text) {
            messages.push(text);
        }
    }
    match messages.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}

/// `ValidateVMName(name, field.NewPath("metadata.name"))`.
pub fn validate_vm_name(name: &str) -> Vec<FieldError> {
    is_dns1123_subdomain(name)
        .into_iter()
        .map(|detail| FieldError::Invalid {
            path: "metadata.name".to_string(),
            value: name.to_string(),
            detail,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message for a name that is not a subdomain.
    fn not_subdomain(name: &str) -> String {
        format!(
            "metadata.name: Invalid value: {}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            go_quote(name)
        )
    }

    #[test]
    fn validates_subdomains() {
        for good in ["a", "my-vm", "a.b-c.d", "0", "vessel-user-a-21"] {
            assert!(is_dns1123_subdomain(good).is_empty(), "{good}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "user-.user-.a-session",
            "é",
        ] {
            assert_eq!(is_dns1123_subdomain(bad).len(), 1, "{bad}");
        }
        assert!(is_dns1123_subdomain(&"a".repeat(253)).is_empty());
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            ["must be no more than 253 characters"]
        );
        assert_eq!(is_dns1123_subdomain(&"A".repeat(254)).len(), 2);
    }

    #[test]
    fn aggregates_like_apimachinery() {
        assert_eq!(aggregate(&[]), None);
        assert_eq!(
            aggregate(&validate_vm_name("user-.user-.a-session")),
            Some(not_subdomain("user-.user-.a-session"))
        );
        let long = "B".repeat(254);
        assert_eq!(
            aggregate(&validate_vm_name(&long)),
            Some(format!(
                "[metadata.name: Invalid value: \"{long}\": must be no more than 253 characters, {}]",
                not_subdomain(&long)
            ))
        );
        let required = FieldError::Required {
            path: ".spec.image.oci".into(),
            detail: "the OCI reference is mandatory".into(),
        };
        assert_eq!(
            aggregate(&[required.clone(), required]),
            Some(".spec.image.oci: Required value: the OCI reference is mandatory".into())
        );
    }
}
