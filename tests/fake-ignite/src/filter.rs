//! `ignite ps -f` filters (`pkg/filter/meta.go`): comma-separated
//! `{{<key>}}<op><value>` conditions, each matched against ignite's
//! `regexString`
//! `^(?P<key>{{(?:\.|[a-zA-Z0-9]+)+}})(?P<operator>(?:=|==|!=|=~|!~))(?P<value>[a-zA-Z0-9-_:/\.\s]+)$`,
//! all of which must hold. A malformed list fails before any VM is looked
//! at; a key that is not a usable template fails only when a listed VM is
//! tested against it.

use crate::fields::resolve;
use crate::vm::Vm;

/// Filter operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `=` or `==`.
    Equal,
    /// `!=`.
    NotEqual,
    /// `=~`: contains.
    Contains,
    /// `!~`: does not contain.
    NotContains,
}

/// What the key's template prints for a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    /// `{{.Field.Path}}` (path without the leading dot).
    Field(String),
    /// A template that prints the same text for every VM: a number or a
    /// boolean constant (`{{123}}`, `{{true}}`), or **FAKE:** `{{.}}`,
    /// which Go renders as the whole struct and the fake as empty text.
    Constant(String),
    /// Not a valid template (`{{Name}}`, `{{.Name.}}`, `{{..Name}}`).
    Invalid,
}

/// One condition.
#[derive(Debug, PartialEq, Eq)]
struct Condition {
    /// The key as written, `{{…}}` included (for error messages).
    text: String,
    /// What the key renders.
    key: Key,
    /// Comparison.
    op: Op,
    /// Right-hand side.
    value: String,
}

/// A parsed `ps -f` filter.
#[derive(Debug, PartialEq, Eq)]
pub struct Filter {
    /// All must hold.
    conditions: Vec<Condition>,
}

impl Filter {
    /// `GenerateMultipleMetadataFiltering(text)`; the error is ignite's
    /// `failed to extract keys-values from filter list [<parts>]`.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let parts: Vec<&str> = text.split(',').collect();
        let conditions = parts
            .iter()
            .map(|part| condition(part))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                format!(
                    "failed to extract keys-values from filter list [{}]",
                    parts.join(" ")
                )
            })?;
        Ok(Filter { conditions })
    }

    /// `AreExpected(vm)`: whether `vm` satisfies every condition, or
    /// ignite's error for a key that cannot be rendered.
    pub fn matches(&self, vm: &Vm) -> Result<bool, String> {
        for condition in &self.conditions {
            let actual = match &condition.key {
                Key::Invalid => {
                    return Err(format!(
                        "failed to configure filtering with following template: {}",
                        condition.text
                    ));
                }
                Key::Constant(text) => text.clone(),
                Key::Field(path) => resolve(vm, path).ok_or_else(|| {
                    "failed to apply filtering on VM, the filter might be incorrect".to_string()
                })?,
            };
            let holds = match condition.op {
                Op::Equal => actual == condition.value,
                Op::NotEqual => actual != condition.value,
                Op::Contains => actual.contains(&condition.value),
                Op::NotContains => !actual.contains(&condition.value),
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Matches one part against ignite's `regexString`.
fn condition(part: &str) -> Option<Condition> {
    let inner_and_rest = part.strip_prefix("{{")?;
    let close = inner_and_rest.find("}}")?;
    let inner = &inner_and_rest[..close];
    if inner.is_empty()
        || !inner
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_alphanumeric())
    {
        return None;
    }
    let tail = &inner_and_rest[close + 2..];
    let (op, value) = [
        ("==", Op::Equal),
        ("!=", Op::NotEqual),
        ("=~", Op::Contains),
        ("!~", Op::NotContains),
        ("=", Op::Equal),
    ]
    .iter()
    .find_map(|(token, op)| tail.strip_prefix(token).map(|v| (*op, v)))?;
    let value_ok = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b':' | b'/' | b'.' | b' ' | b'\t' | b'\n' | b'\x0c' | b'\r'
            )
    };
    if value.is_empty() || !value.bytes().all(value_ok) {
        return None;
    }
    Some(Condition {
        text: format!("{{{{{inner}}}}}"),
        key: key(inner),
        op,
        value: value.to_string(),
    })
}

/// How Go's `text/template` reads the key's action.
fn key(inner: &str) -> Key {
    if inner == "." {
        return Key::Constant(String::new());
    }
    if inner == "true" || inner == "false" || inner.bytes().all(|b| b.is_ascii_digit()) {
        return Key::Constant(inner.to_string());
    }
    match inner.strip_prefix('.') {
        Some(path)
            if path
                .split('.')
                .all(|s| s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())) =>
        {
            Key::Field(path.to_string())
        }
        _ => Key::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::sample_vm;

    #[test]
    fn filters_like_ignite() {
        let vm = sample_vm();
        let yes = Filter::parse("{{.ObjectMeta.Name}}=my-vm,{{.Spec.CPUs}}!=3").expect("parse");
        assert_eq!(yes.matches(&vm), Ok(true));
        let no = Filter::parse("{{.Spec.Image.OCI}}!~ubuntu").expect("parse");
        assert_eq!(no.matches(&vm), Ok(false));
        assert_eq!(
            Filter::parse("{{.Status.Running}}==true").and_then(|f| f.matches(&vm)),
            Ok(true)
        );
        assert_eq!(
            Filter::parse("{{.Spec.Memory}}=1024.0 MB").and_then(|f| f.matches(&vm)),
            Ok(true)
        );
    }

    #[test]
    fn refuses_like_ignite() {
        assert_eq!(
            Filter::parse("name=x,{{.Name}}=y"),
            Err("failed to extract keys-values from filter list [name=x {{.Name}}=y]".into())
        );
        for bad in [
            "{{ .Name }}=x",
            "{{.Name}}=",
            "{{.Name}}=a=b",
            "{{.Name}}=a,",
            "{{.Name}}~x",
            "{{.Labels}}=map[a:b]",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
        let vm = sample_vm();
        assert_eq!(
            Filter::parse("{{.Nope}}=x").and_then(|f| f.matches(&vm)),
            Err("failed to apply filtering on VM, the filter might be incorrect".into())
        );
        assert_eq!(
            Filter::parse("{{Name}}=x").and_then(|f| f.matches(&vm)),
            Err("failed to configure filtering with following template: {{Name}}".into())
        );
        assert_eq!(
            Filter::parse("{{.Name.}}=x").and_then(|f| f.matches(&vm)),
            Err("failed to configure filtering with following template: {{.Name.}}".into())
        );
    }
}
