//! cobra's usage and help texts (`Usage:`, `Aliases:`, `Flags:`,
//! `Global Flags:`), with flag lines laid out like pflag's `FlagUsages`.

use crate::cli::{FlagSpec, Kind};

/// What usage needs to know about a command.
#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    /// Full command path, e.g. `ignite vm ps`.
    pub path: &'static str,
    /// Arguments part of cobra's `Use`, e.g. `<vm>...` (may be empty).
    pub args: &'static str,
    /// Aliases of the last path element.
    pub aliases: &'static [&'static str],
    /// One-line description.
    pub short: &'static str,
    /// Local flags.
    pub flags: &'static [FlagSpec],
}

impl CommandSpec {
    /// The last element of the path (`ps` for `ignite vm ps`).
    pub fn name(&self) -> &'static str {
        self.path.rsplit(' ').next().unwrap_or(self.path)
    }
}

/// cobra `UsageString()` for `spec` with the root's persistent `globals`.
pub fn usage(spec: &CommandSpec, globals: &[FlagSpec]) -> String {
    let use_line = if spec.args.is_empty() {
        spec.path.to_string()
    } else {
        format!("{} {}", spec.path, spec.args)
    };
    let mut out = format!("Usage:\n  {use_line} [flags]\n");
    if !spec.aliases.is_empty() {
        out.push_str(&format!(
            "\nAliases:\n  {}, {}\n",
            spec.name(),
            spec.aliases.join(", ")
        ));
    }
    let help_usage = format!("help for {}", spec.name());
    let help = FlagSpec::new("help", Some('h'), Kind::Bool, "", "");
    let mut local: Vec<(FlagSpec, String)> = spec
        .flags
        .iter()
        .map(|f| (*f, f.usage.to_string()))
        .collect();
    local.push((help, help_usage));
    out.push_str("\nFlags:\n");
    out.push_str(&flag_usages(&local));
    if !globals.is_empty() {
        let globals: Vec<(FlagSpec, String)> =
            globals.iter().map(|f| (*f, f.usage.to_string())).collect();
        out.push_str("\nGlobal Flags:\n");
        out.push_str(&flag_usages(&globals));
    }
    out
}

/// pflag `FlagUsages`: flags sorted by name, descriptions aligned three
/// columns after the longest flag column.
fn flag_usages(flags: &[(FlagSpec, String)]) -> String {
    let mut sorted: Vec<&(FlagSpec, String)> = flags.iter().collect();
    sorted.sort_by(|a, b| a.0.long.cmp(b.0.long));
    let lines: Vec<(String, String)> = sorted
        .iter()
        .map(|(flag, text)| {
            let mut left = match flag.short {
                Some(short) => format!("  -{short}, --{}", flag.long),
                None => format!("      --{}", flag.long),
            };
            if !flag.type_name.is_empty() {
                left.push(' ');
                left.push_str(flag.type_name);
            }
            if let Kind::OptionalValue(default) = flag.kind {
                left.push_str(&format!("[={default}]"));
            }
            let mut right = text.clone();
            if let Some(default) = flag.default {
                right.push_str(&format!(" (default {default})"));
            }
            (left, right)
        })
        .collect();
    let width = lines.iter().map(|(left, _)| left.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(left, right)| format!("{left}{}   {right}\n", " ".repeat(width - left.len())))
        .collect()
}

/// cobra's help (`-h`): the description, a blank line, then the usage.
pub fn help(spec: &CommandSpec, globals: &[FlagSpec]) -> String {
    format!("{}\n\n{}", spec.short, usage(spec, globals))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSPECT_FLAGS: &[FlagSpec] = &[
        FlagSpec::new(
            "output",
            Some('o'),
            Kind::Value,
            "string",
            "Output the object in the specified format",
        )
        .default("\"json\""),
        FlagSpec::new(
            "template",
            Some('t'),
            Kind::Value,
            "string",
            "Format the output using the given Go template",
        ),
    ];

    #[test]
    fn lays_out_like_cobra() {
        // As printed by a real ignite (innobead/kubefire issue #2).
        let spec = CommandSpec {
            path: "ignite inspect",
            args: "<kind> <object>",
            aliases: &[],
            short: "Inspect an Ignite Object",
            flags: INSPECT_FLAGS,
        };
        let text = usage(&spec, &[]);
        assert_eq!(
            text,
            "Usage:\n  ignite inspect <kind> <object> [flags]\n\nFlags:\n  -h, --help              help for inspect\n  -o, --output string     Output the object in the specified format (default \"json\")\n  -t, --template string   Format the output using the given Go template\n"
        );
    }
}
