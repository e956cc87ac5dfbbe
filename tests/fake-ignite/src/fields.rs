//! The VM fields reachable from Go templates (`ps -t`, `inspect -t`) and
//! filters (`ps -f`, see `filter`), rendered as Go's `fmt` would print them,
//! plus a small template engine that understands `{{.Field.Path}}` actions
//! only.

use crate::vm::Vm;
use crate::{duration, sizes, timefmt};

/// `path` (without the leading dot, e.g. `Status.Network.IPAddresses`) of
/// `vm` as Go prints it, or `None` if the fake does not know the field.
pub fn resolve(vm: &Vm, path: &str) -> Option<String> {
    let now = timefmt::now_unix();
    let path = path.strip_prefix("ObjectMeta.").unwrap_or(path);
    let value = match path {
        "Kind" => "VM".to_string(),
        "APIVersion" => "ignite.weave.works/v1alpha4".to_string(),
        "Name" => vm.name.clone(),
        "UID" => vm.id.clone(),
        "Created" => duration::human(now - vm.created),
        "Labels" => {
            let pairs: Vec<String> = vm.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", pairs.join(" "))
        }
        "Spec.Image.OCI" => vm.image.clone(),
        "Spec.Sandbox.OCI" => vm.sandbox.clone(),
        "Spec.Kernel.OCI" => vm.kernel.clone(),
        "Spec.Kernel.CmdLine" => vm.kernel_args.clone(),
        "Spec.CPUs" => vm.cpus.to_string(),
        "Spec.Memory" => sizes::human(vm.memory),
        "Spec.DiskSize" => sizes::human(vm.disk_size),
        "Spec.Network.Ports" => vm.ports_text(),
        "Status.Running" => vm.running.to_string(),
        "Status.Network.IPAddresses" => vm.ips_text(),
        "Status.Network.Plugin" => vm.network_plugin.clone(),
        "Status.Runtime.ID" => vm.container_id.clone(),
        "Status.Runtime.Name" => vm.runtime.clone(),
        "Status.StartTime" => vm
            .start_time
            .map_or("<nil>".to_string(), |t| duration::human(now - t)),
        "Status.IDPrefix" => "ignite".to_string(),
        _ => return None,
    };
    Some(value)
}

/// A parsed template: literal text and field actions.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    /// Text and actions, in order.
    parts: Vec<Part>,
}

/// A piece of a template.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    /// Literal text.
    Text(String),
    /// A `{{.Path}}` action (path without the dot).
    Field(String),
}

impl Template {
    /// Parses `text`; errors read like Go's (`template: :1: unclosed action`).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| "template: :1: unclosed action".to_string())?;
            let action = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            let field = action
                .strip_prefix('.')
                .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
                .ok_or_else(|| format!("template: :1: fake ignite only supports {{{{.Field}}}} actions, not {{{{{action}}}}}"))?;
            parts.push(Part::Field(field.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders the template for `vm`.
    pub fn render(&self, vm: &Vm) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(path) => out.push_str(&resolve(vm, path).ok_or_else(|| {
                    let field = path.split('.').next_back().unwrap_or(path);
                    format!("template: :1:2: executing \"\" at <.{path}>: can't evaluate field {field} in type *ignite.VM")
                })?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::sample_vm;

    #[test]
    fn renders_templates() {
        let vm = sample_vm();
        let t = Template::parse("Name: {{.ObjectMeta.Name}} IP: {{ .Status.Network.IPAddresses }}")
            .expect("parse");
        assert_eq!(t.render(&vm).expect("render"), "Name: my-vm IP: 127.61.0.2");
        assert_eq!(
            Template::parse("{{.Spec.Memory}}").and_then(|t| t.render(&vm)),
            Ok("1024.0 MB".into())
        );
        assert_eq!(
            Template::parse("{{.Name"),
            Err("template: :1: unclosed action".into())
        );
        let err = Template::parse("{{.Nope}}")
            .and_then(|t| t.render(&vm))
            .unwrap_err();
        assert!(err.contains("can't evaluate field Nope"), "{err}");
    }
}
