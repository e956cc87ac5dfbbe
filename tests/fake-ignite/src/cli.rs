//! Flag parsing with the semantics of spf13/pflag as cobra uses it: long and
//! short flags, `--flag=value`, `--flag value`, `-fvalue`, grouped booleans,
//! optional values (`--ssh[=<path>]`), comma-separated lists, flags anywhere
//! among the arguments, `--` to stop, and pflag's exact error messages.

use std::collections::BTreeMap;

/// What a flag takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A boolean: `--force`, `--force=false`.
    Bool,
    /// One value; the last occurrence wins.
    Value,
    /// pflag `StringSlice`: repeatable, and each value read as one CSV
    /// record (`a,,b` is three values, `"a,b"` one; see `gocsv`).
    List,
    /// pflag `StringArray`: repeatable, values kept whole.
    Array,
    /// A value that may be omitted (`--ssh` or `--ssh=<path>`); the text is
    /// what an omitted value means (pflag `NoOptDefVal`).
    OptionalValue(&'static str),
}

/// Checks a flag value; the error is the reason pflag appends to
/// `invalid argument "<value>" for "<flag>" flag: `.
pub type Validator = fn(&str) -> Result<(), String>;

/// One flag a command accepts.
#[derive(Clone, Copy, Debug)]
pub struct FlagSpec {
    /// Long name, without dashes.
    pub long: &'static str,
    /// One-letter shorthand.
    pub short: Option<char>,
    /// What the flag takes.
    pub kind: Kind,
    /// pflag type name shown in usage (`string`, `strings`, `uint`, `size`…);
    /// empty for booleans.
    pub type_name: &'static str,
    /// Help text.
    pub usage: &'static str,
    /// Default as usage shows it after `(default `, already formatted.
    pub default: Option<&'static str>,
    /// Optional value check.
    pub validate: Option<Validator>,
}

impl FlagSpec {
    /// A flag with no default and no validation.
    pub const fn new(
        long: &'static str,
        short: Option<char>,
        kind: Kind,
        type_name: &'static str,
        usage: &'static str,
    ) -> FlagSpec {
        FlagSpec {
            long,
            short,
            kind,
            type_name,
            usage,
            default: None,
            validate: None,
        }
    }

    /// The same flag with a usage default.
    pub const fn default(mut self, default: &'static str) -> FlagSpec {
        self.default = Some(default);
        self
    }

    /// The same flag with a value check.
    pub const fn validate(mut self, validate: Validator) -> FlagSpec {
        self.validate = Some(validate);
        self
    }

    /// How pflag names the flag in `invalid argument` errors.
    fn display_name(&self) -> String {
        match self.short {
            Some(short) => format!("-{short}, --{}", self.long),
            None => format!("--{}", self.long),
        }
    }
}

/// The outcome of parsing a command line.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Values per long flag name, in the order given.
    values: BTreeMap<&'static str, Vec<String>>,
    /// Positional arguments, in order.
    pub args: Vec<String>,
    /// Whether `-h`/`--help` was given.
    pub help: bool,
}

impl Parsed {
    /// The last value given for `long`, if any.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.values
            .get(long)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// All values given for `long` (lists already split on commas).
    pub fn values(&self, long: &str) -> Vec<String> {
        self.values.get(long).cloned().unwrap_or_default()
    }

    /// Whether boolean `long` ended up true.
    pub fn flag(&self, long: &str) -> bool {
        self.value(long) == Some("true")
    }

    /// Whether `long` was given at all (pflag `Changed`).
    pub fn changed(&self, long: &str) -> bool {
        self.values.contains_key(long)
    }
}

/// Parses `args` against `specs`; errors are pflag's messages.
pub fn parse(args: &[String], specs: &[FlagSpec]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        if arg == "--" {
            parsed.args.extend(args[index..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix("--").filter(|b| !b.is_empty()) {
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            if name == "help" {
                parsed.help = true;
                continue;
            }
            let spec = specs
                .iter()
                .find(|s| s.long == name)
                .ok_or_else(|| format!("unknown flag: --{name}"))?;
            let value = match (spec.kind, inline) {
                (_, Some(value)) => value,
                (Kind::Bool, None) => "true".to_string(),
                (Kind::OptionalValue(default), None) => default.to_string(),
                (_, None) => match args.get(index) {
                    Some(next) => {
                        index += 1;
                        next.clone()
                    }
                    None => return Err(format!("flag needs an argument: --{name}")),
                },
            };
            store(&mut parsed, spec, value)?;
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            index = parse_shorthands(shorts, args, index, specs, &mut parsed)?;
        } else {
            parsed.args.push(arg.clone());
        }
    }
    Ok(parsed)
}

/// Parses one `-abc` group; returns the index of the next argument.
fn parse_shorthands(
    shorts: &str,
    args: &[String],
    index: usize,
    specs: &[FlagSpec],
    parsed: &mut Parsed,
) -> Result<usize, String> {
    let chars: Vec<char> = shorts.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        let rest: String = chars[at + 1..].iter().collect();
        if c == 'h' {
            parsed.help = true;
            at += 1;
            continue;
        }
        let spec = specs
            .iter()
            .find(|s| s.short == Some(c))
            .ok_or_else(|| format!("unknown shorthand flag: '{c}' in -{shorts}"))?;
        if let Some(value) = rest.strip_prefix('=') {
            store(parsed, spec, value.to_string())?;
            return Ok(index);
        }
        match spec.kind {
            Kind::Bool => {
                store(parsed, spec, "true".to_string())?;
                at += 1;
            }
            Kind::OptionalValue(default) => {
                store(parsed, spec, default.to_string())?;
                at += 1;
            }
            _ if !rest.is_empty() => {
                store(parsed, spec, rest)?;
                return Ok(index);
            }
            _ => match args.get(index) {
                Some(next) => {
                    store(parsed, spec, next.clone())?;
                    return Ok(index + 1);
                }
                None => return Err(format!("flag needs an argument: '{c}' in -{shorts}")),
            },
        }
    }
    Ok(index)
}

/// Validates and records one flag value.
fn store(parsed: &mut Parsed, spec: &FlagSpec, value: String) -> Result<(), String> {
    let invalid = |reason: String| {
        format!(
            "invalid argument {} for {} flag: {reason}",
            crate::log::go_quote(&value),
            crate::log::go_quote(&spec.display_name())
        )
    };
    let entry = parsed.values.entry(spec.long).or_default();
    match spec.kind {
        Kind::Bool => {
            let truth = parse_go_bool(&value).map_err(invalid)?;
            entry.clear();
            entry.push(truth.to_string());
        }
        Kind::List => {
            for item in crate::gocsv::split(&value).map_err(invalid)? {
                if let Some(check) = spec.validate {
                    check(&item).map_err(invalid)?;
                }
                entry.push(item);
            }
        }
        _ => {
            if let Some(check) = spec.validate {
                check(&value).map_err(invalid)?;
            }
            if !matches!(spec.kind, Kind::Array) {
                entry.clear();
            }
            entry.push(value);
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            crate::log::go_quote(value)
        )),
    }
}

/// Validator for pflag `uint`/`uint64` flags: `strconv.ParseUint(v, 0, 64)`
/// (so `0x10` and `1_000` are accepted, `+1` is not).
pub fn validate_uint(value: &str) -> Result<(), String> {
    crate::goparse::parse_uint(value, 0, 64).map(|_| ())
}

/// Validator for pflag `uint32` flags: `strconv.ParseUint(v, 0, 32)`.
pub fn validate_uint32(value: &str) -> Result<(), String> {
    crate::goparse::parse_uint(value, 0, 32).map(|_| ())
}

/// Validator for ignite's `oci-image` flags (`cmdutil.OCIImageRefFlag`,
/// i.e. `meta.NewOCIImageRef`).
pub fn validate_oci_image(value: &str) -> Result<(), String> {
    crate::reference::parse_oci_image_ref(value).map(|_| ())
}

/// Validator for ignite's `size` flags (datasize).
pub fn validate_size(value: &str) -> Result<(), String> {
    crate::sizes::parse(value).map(|_| ())
}

/// Validator for `--log-level` (logrus `ParseLevel`).
pub fn validate_log_level(value: &str) -> Result<(), String> {
    match value.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" | "warn" | "warning" | "info" | "debug" | "trace" => Ok(()),
        _ => Err(format!(
            "not a valid logrus Level: {}",
            crate::log::go_quote(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec::new("name", Some('n'), Kind::Value, "string", ""),
        FlagSpec::new("force", Some('f'), Kind::Bool, "", ""),
        FlagSpec::new("all", Some('a'), Kind::Bool, "", ""),
        FlagSpec::new("ports", Some('p'), Kind::List, "strings", ""),
        FlagSpec::new("ssh", None, Kind::OptionalValue("<path>"), "", ""),
        FlagSpec::new("cpus", None, Kind::Value, "uint", "").validate(validate_uint),
    ];

    fn argv(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_pflag_forms() {
        let p = parse(
            &argv("img --name=a -fa -p 1:2,3:4 --ports 5:6 --ssh x --cpus 2"),
            SPECS,
        )
        .unwrap();
        assert_eq!(p.value("name"), Some("a"));
        assert!(p.flag("force") && p.flag("all"));
        assert_eq!(p.values("ports"), ["1:2", "3:4", "5:6"]);
        assert_eq!(p.value("ssh"), Some("<path>"));
        assert_eq!(p.args, ["img", "x"]);
        let p = parse(&argv("-nvm1 --ssh=/k --force=false -- -x"), SPECS).unwrap();
        assert_eq!(p.value("name"), Some("vm1"));
        assert_eq!(p.value("ssh"), Some("/k"));
        assert!(!p.flag("force") && p.changed("force"));
        assert_eq!(p.args, ["-x"]);
        assert!(parse_one(&argv("-h")).is_ok_and(|p| p.help), "help");
    }

    fn parse_err(text: &str) -> String {
        parse(&argv(text), SPECS).unwrap_err()
    }

    // `parse` with the test specs; lets `parse(&argv("-h"))` read naturally.
    fn parse_one(args: &[String]) -> Result<Parsed, String> {
        super::parse(args, SPECS)
    }

    #[test]
    fn reports_pflag_errors() {
        assert_eq!(parse_err("--foo"), "unknown flag: --foo");
        assert_eq!(parse_err("-z"), "unknown shorthand flag: 'z' in -z");
        assert_eq!(parse_err("-az"), "unknown shorthand flag: 'z' in -az");
        assert_eq!(parse_err("--name"), "flag needs an argument: --name");
        assert_eq!(parse_err("-n"), "flag needs an argument: 'n' in -n");
        assert_eq!(
            parse_err("--cpus x"),
            "invalid argument \"x\" for \"--cpus\" flag: strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse_err("-f=maybe"),
            "invalid argument \"maybe\" for \"-f, --force\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        assert!(parse_one(&argv("--help")).is_ok_and(|p| p.help));
    }
}
