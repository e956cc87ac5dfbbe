//! An ordered document tree and the two renderings `ignite inspect` uses:
//! JSON as ignite's serializer indents it (struct fields in declaration
//! order, an empty struct printed as `{`, a line of indentation, `}`, as in
//! the golden file `cmd/ignite/run/testdata/output/inspect-json.txt`) and
//! YAML as sigs.k8s.io/yaml writes it (keys sorted, `{}`, `null`).

/// A document node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// A non-negative integer.
    Number(u64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Value>),
    /// A Go struct: fields in declaration order.
    Struct(Vec<(String, Value)>),
    /// A Go map: keys sorted.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A struct node from `(field, value)` pairs.
    pub fn object(fields: Vec<(&str, Value)>) -> Value {
        Value::Struct(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A string node.
    pub fn str(text: impl Into<String>) -> Value {
        Value::Str(text.into())
    }

    /// Follows a path of field names.
    #[cfg(test)]
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        match self {
            Value::Struct(fields) | Value::Map(fields) => fields
                .iter()
                .find(|(k, _)| k == first)
                .and_then(|(_, v)| v.get(rest)),
            _ => None,
        }
    }
}

/// Renders `value` as indented JSON followed by a newline.
pub fn to_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, 0, &mut out);
    out.push('\n');
    out
}

/// Appends the JSON for `value` nested `depth` levels deep.
fn write_json(value: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| "  ".repeat(d);
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Str(s) => out.push_str(&json_string(s)),
        Value::List(items) if items.is_empty() => out.push_str("[]"),
        Value::List(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_json(item, depth + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::Struct(fields) if fields.is_empty() => {
            out.push_str("{\n");
            out.push_str(&pad(depth + 1));
            out.push('\n');
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Map(fields) if fields.is_empty() => out.push_str("{}"),
        Value::Struct(fields) | Value::Map(fields) => {
            out.push_str("{\n");
            for (i, (key, item)) in fields.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                out.push_str(&json_string(key));
                out.push_str(": ");
                write_json(item, depth + 1, out);
                out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
    }
}

/// A JSON string literal, escaped like Go's encoder (including `<`, `>`, `&`).
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders `value` (a struct or map at the top) as YAML.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Struct(fields) | Value::Map(fields) if !fields.is_empty() => {
            write_yaml_mapping(fields, 0, &mut out)
        }
        other => {
            out.push_str(&yaml_inline(other));
            out.push('\n');
        }
    }
    out
}

/// Appends a block mapping at `indent` spaces, keys sorted.
fn write_yaml_mapping(fields: &[(String, Value)], indent: usize, out: &mut String) {
    let mut sorted: Vec<&(String, Value)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, item) in sorted {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_scalar(key));
        out.push(':');
        write_yaml_child(item, indent, out);
    }
}

/// Appends what follows `key:` — inline scalar or a nested block.
fn write_yaml_child(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Struct(f) | Value::Map(f) if !f.is_empty() => {
            out.push('\n');
            write_yaml_mapping(f, indent + 2, out);
        }
        Value::List(items) if !items.is_empty() => {
            out.push('\n');
            // yaml.v2 does not indent a sequence under its key.
            write_yaml_sequence(items, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&yaml_inline(other));
            out.push('\n');
        }
    }
}

/// Appends a block sequence whose dashes sit at `indent` spaces.
fn write_yaml_sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Struct(f) | Value::Map(f) if !f.is_empty() => {
                let mut nested = String::new();
                write_yaml_mapping(f, indent + 2, &mut nested);
                // The first key goes on the dash's line.
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => {
                out.push(' ');
                out.push_str(&yaml_inline(other));
                out.push('\n');
            }
        }
    }
}

/// A scalar or empty collection on one line.
fn yaml_inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Str(s) => yaml_scalar(s),
        Value::List(_) => "[]".to_string(),
        Value::Struct(_) | Value::Map(_) => "{}".to_string(),
    }
}

/// A string as yaml.v2 emits it: plain when unambiguous, double-quoted when
/// it would read back as another type, single-quoted when it has characters
/// plain style cannot hold.
fn yaml_scalar(text: &str) -> String {
    if text.is_empty() || resolves_to_non_string(text) {
        return json_string(text);
    }
    let first = text.chars().next().unwrap_or(' ');
    let awkward = "-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !(first == '-' && text.len() > 1 && !text.starts_with("- "))
        || text.contains(": ")
        || text.contains(" #")
        || text.ends_with(':')
        || text.starts_with(' ')
        || text.ends_with(' ')
        || text.chars().any(|c| c.is_control());
    if awkward {
        format!("'{}'", text.replace('\'', "''"))
    } else {
        text.to_string()
    }
}

/// Whether YAML 1.1 (yaml.v2) would read `text` as a bool, null, number or
/// timestamp.
fn resolves_to_non_string(text: &str) -> bool {
    const WORDS: [&str; 26] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL",
    ];
    if WORDS.contains(&text) {
        return true;
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let number = (digits(int_part) || (int_part.is_empty() && frac_part.is_some_and(digits)))
        && frac_part.is_none_or(|f| f.is_empty() || digits(f))
        && exponent.is_none_or(digits);
    let timestamp = text.len() >= 10
        && text.as_bytes()[4] == b'-'
        && text.as_bytes()[7] == b'-'
        && digits(&text[..4])
        && digits(&text[5..7])
        && digits(&text[8..10]);
    number || timestamp || text.starts_with("0x") && text.len() > 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object of ignite's inspect golden files (v1alpha3 at the time).
    fn golden_vm() -> Value {
        let oci = || Value::object(vec![("oci", Value::str("foo/bar:latest"))]);
        let source = || Value::object(vec![("id", Value::Null), ("size", Value::str("0B"))]);
        Value::object(vec![
            ("kind", Value::str("VM")),
            ("apiVersion", Value::str("ignite.weave.works/v1alpha3")),
            (
                "metadata",
                Value::object(vec![
                    ("name", Value::str("someVM")),
                    ("uid", Value::str("1699b6ba255cde7f")),
                    ("created", Value::str("2000-01-01T01:00:00Z")),
                ]),
            ),
            (
                "spec",
                Value::object(vec![
                    ("image", oci()),
                    ("sandbox", oci()),
                    ("kernel", oci()),
                    ("cpus", Value::Number(0)),
                    ("memory", Value::str("0B")),
                    ("diskSize", Value::str("0B")),
                    ("network", Value::Struct(vec![])),
                    ("storage", Value::Struct(vec![])),
                ]),
            ),
            (
                "status",
                Value::object(vec![
                    ("running", Value::Bool(false)),
                    ("image", source()),
                    ("kernel", source()),
                ]),
            ),
        ])
    }

    #[test]
    fn json_matches_ignites_golden_file() {
        // cmd/ignite/run/testdata/output/inspect-json.txt (weaveworks/ignite).
        let golden = "{\n  \"kind\": \"VM\",\n  \"apiVersion\": \"ignite.weave.works/v1alpha3\",\n  \"metadata\": {\n    \"name\": \"someVM\",\n    \"uid\": \"1699b6ba255cde7f\",\n    \"created\": \"2000-01-01T01:00:00Z\"\n  },\n  \"spec\": {\n    \"image\": {\n      \"oci\": \"foo/bar:latest\"\n    },\n    \"sandbox\": {\n      \"oci\": \"foo/bar:latest\"\n    },\n    \"kernel\": {\n      \"oci\": \"foo/bar:latest\"\n    },\n    \"cpus\": 0,\n    \"memory\": \"0B\",\n    \"diskSize\": \"0B\",\n    \"network\": {\n      \n    },\n    \"storage\": {\n      \n    }\n  },\n  \"status\": {\n    \"running\": false,\n    \"image\": {\n      \"id\": null,\n      \"size\": \"0B\"\n    },\n    \"kernel\": {\n      \"id\": null,\n      \"size\": \"0B\"\n    }\n  }\n}\n";
        assert_eq!(to_json(&golden_vm()), golden);
    }

    #[test]
    fn yaml_sorts_keys_and_quotes_like_yaml_v2() {
        let yaml = to_yaml(&golden_vm());
        assert!(yaml.starts_with(
            "apiVersion: ignite.weave.works/v1alpha3\nkind: VM\nmetadata:\n  created: \"2000-01-01T01:00:00Z\"\n  name: someVM\n  uid: 1699b6ba255cde7f\nspec:\n  cpus: 0\n  diskSize: 0B\n"
        ));
        assert!(yaml.contains("  network: {}\n"));
        let list = Value::object(vec![(
            "ports",
            Value::List(vec![Value::object(vec![
                ("hostPort", Value::Number(80)),
                ("vmPort", Value::Number(8080)),
            ])]),
        )]);
        assert_eq!(to_yaml(&list), "ports:\n- hostPort: 80\n  vmPort: 8080\n");
        assert_eq!(yaml_scalar(""), "\"\"");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("1234567890123456"), "\"1234567890123456\"");
        assert_eq!(yaml_scalar("1e51234567890123"), "\"1e51234567890123\"");
        assert_eq!(yaml_scalar("127.61.0.2"), "127.61.0.2");
        assert_eq!(yaml_scalar("a: b"), "'a: b'");
    }
}
