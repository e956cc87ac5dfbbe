//! Which arguments a plugin may append to an exec grant's command.
//!
//! An exec grant fixes the program and its leading arguments; without a
//! policy, the plugin appends whatever it likes, so a grant is as wide as
//! the program (`nginx -c /evil.conf`, `ignite cp VM:/x /etc/cron.d/x`).
//! A policy lists the argument lists the plugin may append, each as a form:
//! positional patterns, then any number of options from a fixed set, each
//! with a pattern for its value. A request matching no form is denied.
//!
//! Patterns: a literal (the argument must be exactly it), `re:REGEX` (the
//! whole argument must match), or `path:DIR` (an absolute path inside
//! `DIR` once `.` and `..` are removed lexically).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::paths::normalize;

use regex::Regex;

use crate::config::ArgForm;

/// One argument's pattern.
#[derive(Debug, Clone)]
enum Pattern {
    Literal(String),
    Regex(Regex),
    Inside(PathBuf),
}

impl Pattern {
    fn parse(text: &str, expand: &dyn Fn(&Path) -> PathBuf) -> Result<Pattern, String> {
        if let Some(re) = text.strip_prefix("re:") {
            // Anchored: the whole argument must match.
            Regex::new(&format!("^(?:{re})$"))
                .map(Pattern::Regex)
                .map_err(|e| format!("pattern {text:?} is not a valid regex: {e}"))
        } else if let Some(dir) = text.strip_prefix("path:") {
            let dir = expand(Path::new(dir));
            if !dir.is_absolute() {
                return Err(format!("pattern {text:?} must name an absolute directory"));
            }
            Ok(Pattern::Inside(normalize(&dir)))
        } else {
            Ok(Pattern::Literal(text.to_string()))
        }
    }

    fn matches(&self, arg: &str) -> bool {
        match self {
            Pattern::Literal(literal) => arg == literal,
            Pattern::Regex(re) => re.is_match(arg),
            Pattern::Inside(dir) => {
                let path = Path::new(arg);
                path.is_absolute() && !arg.contains('\0') && normalize(path).starts_with(dir)
            }
        }
    }
}

/// One allowed argument list.
#[derive(Debug, Clone)]
struct Form {
    positional: Vec<Pattern>,
    /// Option → its value's pattern (`None`: the option takes no value).
    options: BTreeMap<String, Option<Pattern>>,
}

impl Form {
    fn matches(&self, args: &[String]) -> bool {
        if args.len() < self.positional.len() {
            return false;
        }
        let (fixed, rest) = args.split_at(self.positional.len());
        if !fixed
            .iter()
            .zip(&self.positional)
            .all(|(a, p)| p.matches(a))
        {
            return false;
        }
        let mut rest = rest.iter();
        while let Some(option) = rest.next() {
            match self.options.get(option.as_str()) {
                Some(None) => {}
                Some(Some(value)) => match rest.next() {
                    Some(arg) if value.matches(arg) => {}
                    _ => return false,
                },
                None => return false,
            }
        }
        true
    }
}

/// The argument lists a plugin may append to one exec grant; empty means
/// any (no policy).
#[derive(Debug, Clone, Default)]
pub struct ArgPolicy {
    forms: Vec<Form>,
}

impl ArgPolicy {
    /// The policy of `forms`; `expand` resolves `{data_dir}` in paths.
    pub fn new(forms: &[ArgForm], expand: &dyn Fn(&Path) -> PathBuf) -> Result<ArgPolicy, String> {
        let forms = forms
            .iter()
            .map(|form| {
                Ok(Form {
                    positional: form
                        .args
                        .iter()
                        .map(|p| Pattern::parse(p, expand))
                        .collect::<Result<_, String>>()?,
                    options: form
                        .options
                        .iter()
                        .map(|(name, value)| {
                            let pattern = if value.is_empty() {
                                None
                            } else {
                                Some(Pattern::parse(value, expand)?)
                            };
                            Ok((name.clone(), pattern))
                        })
                        .collect::<Result<_, String>>()?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(ArgPolicy { forms })
    }

    /// Whether the policy restricts anything.
    pub fn is_open(&self) -> bool {
        self.forms.is_empty()
    }

    /// Whether `args` may be appended.
    pub fn allows(&self, args: &[String]) -> bool {
        self.is_open() || self.forms.iter().any(|form| form.matches(args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(args: &[&str], options: &[(&str, &str)]) -> ArgForm {
        ArgForm {
            args: args.iter().map(|s| s.to_string()).collect(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn expand(path: &Path) -> PathBuf {
        PathBuf::from(
            path.to_str()
                .unwrap()
                .replace("{data_dir}", "/var/lib/vessel"),
        )
    }

    fn ignite() -> ArgPolicy {
        ArgPolicy::new(
            &[
                form(&["ps", "-a"], &[]),
                form(&["rm", "-f", "re:[0-9a-f]{16}"], &[]),
                form(
                    &["cp", "path:{data_dir}/staging", "re:[0-9a-f]{16}:/.*"],
                    &[],
                ),
                form(
                    &["run", "re:[a-z0-9][a-z0-9./:_-]*"],
                    &[
                        ("--name", "re:[a-z0-9-]+"),
                        ("--ssh", ""),
                        ("--label", "re:vessel\\.[a-z.-]+=.*"),
                    ],
                ),
            ],
            &expand,
        )
        .unwrap()
    }

    #[test]
    fn the_forms_a_driver_uses_are_allowed() {
        let policy = ignite();
        for ok in [
            args(&["ps", "-a"]),
            args(&["rm", "-f", "0123456789abcdef"]),
            args(&[
                "cp",
                "/var/lib/vessel/staging/u-1/p",
                "0123456789abcdef:/workspace",
            ]),
            args(&[
                "run",
                "weaveworks/ignite-ubuntu:latest",
                "--name",
                "vessel-a-0",
                "--ssh",
            ]),
            args(&[
                "run",
                "img",
                "--label",
                "vessel.user=A b",
                "--ssh",
                "--label",
                "vessel.ports=1,2",
            ]),
        ] {
            assert!(policy.allows(&ok), "{ok:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let policy = ignite();
        for bad in [
            args(&["cp", "0123456789abcdef:/etc/shadow", "/etc/cron.d/x"]),
            args(&[
                "cp",
                "/var/lib/vessel/staging/../../../etc/shadow",
                "0123456789abcdef:/x",
            ]),
            args(&["cp", "/etc/shadow", "0123456789abcdef:/x"]),
            args(&["rm", "-f", "0123456789abcdef", "other"]),
            args(&["ps"]),
            args(&["run", "img", "--copy-files", "/etc/shadow:/x"]),
            args(&["run", "img", "--name"]),
            args(&["run", "img", "--name", "UPPER"]),
            args(&["run", "img", "--label", "other=1"]),
            args(&["exec", "vm", "sh"]),
            args(&[]),
        ] {
            assert!(!policy.allows(&bad), "{bad:?}");
        }
    }

    #[test]
    fn no_forms_means_no_policy_and_bad_patterns_are_config_errors() {
        assert!(
            ArgPolicy::new(&[], &expand)
                .unwrap()
                .allows(&args(&["anything"]))
        );
        assert!(ArgPolicy::new(&[form(&["re:("], &[])], &expand).is_err());
        assert!(ArgPolicy::new(&[form(&["path:relative"], &[])], &expand).is_err());
    }
}
