//! `--ports` values: docker's `nat.ParsePortSpecs`
//! (`github.com/docker/go-connections` v0.4.0, `nat/nat.go`, `nat/parse.go`)
//! followed by ignite's `meta.ParsePortMappings`
//! (`pkg/apis/meta/v1alpha1/net.go`), with both layers' error texts. The
//! accepted form is `[[<bind ip>:]<host port>:]<VM port>[/<tcp|udp>]`, port
//! ranges included.

use crate::goparse::{parse_ip, parse_uint, split_host_port};
use crate::log::go_quote;
use crate::vm::PortMapping;

/// One `nat.PortMapping`: the VM port (`"80/tcp"`) and its host binding.
struct Binding {
    /// `nat.Port`, `<port>/<proto>`.
    port: String,
    /// `PortBinding.HostIP`.
    host_ip: String,
    /// `PortBinding.HostPort` (possibly empty or a range).
    host_port: String,
}

/// `meta.ParsePortMappings(input)`.
///
/// **FAKE:** Go iterates the VM-port map in random order, so real ignite
/// orders the mappings (and picks which of several errors to report)
/// randomly; the fake keeps the order of first appearance.
pub fn parse_port_mappings(input: &[String]) -> Result<Vec<PortMapping>, String> {
    let mut grouped: Vec<(String, Vec<Binding>)> = Vec::new();
    for raw in input {
        for binding in parse_port_spec(raw)? {
            match grouped.iter_mut().find(|(port, _)| *port == binding.port) {
                Some((_, bindings)) => bindings.push(binding),
                None => grouped.push((binding.port.clone(), vec![binding])),
            }
        }
    }
    let mut result: Vec<PortMapping> = Vec::new();
    for (port, bindings) in grouped {
        if bindings.len() > 1 {
            return Err(format!(
                "only one host binding per VM binding supported for now, received {}",
                bindings.len()
            ));
        }
        let binding = &bindings[0];
        let bind_address =
            if binding.host_ip.is_empty() {
                None
            } else {
                Some(parse_ip(&binding.host_ip).ok_or_else(|| {
                    format!("invalid bind address: {}", go_quote(&binding.host_ip))
                })?)
            };
        let host_port = parse_uint(&binding.host_port, 10, 64)
            .map_err(|_| format!("invalid host port: {}", go_quote(&binding.host_port)))?;
        let (vm_port_text, protocol) = port.split_once('/').unwrap_or((&port, "tcp"));
        let vm_port = parse_uint(vm_port_text, 10, 64)
            .map_err(|_| format!("invalid VM port: {}", go_quote(vm_port_text)))?;
        if protocol != "tcp" && protocol != "udp" {
            return Err(format!("invalid protocol: {}", go_quote(protocol)));
        }
        if result
            .iter()
            .any(|p| p.host_port == host_port && p.protocol == protocol)
        {
            return Err("cannot use a port/protocol combination on the host twice".to_string());
        }
        result.push(PortMapping {
            bind_address,
            host_port,
            vm_port,
            protocol: protocol.to_string(),
        });
    }
    Ok(result)
}

/// `nat.ParsePortSpec(raw)`.
fn parse_port_spec(raw: &str) -> Result<Vec<Binding>, String> {
    let (raw_ip, host_port, container_port) = split_parts(raw);
    let (proto, container_port) = split_proto_port(container_port);
    let ip = split_host_port(&format!("{raw_ip}:"))
        .map_err(|e| format!("Invalid ip address {raw_ip}: {e}"))?;
    if !ip.is_empty() && parse_ip(&ip).is_none() {
        return Err(format!("Invalid ip address: {ip}"));
    }
    if container_port.is_empty() {
        return Err(format!("No port specified: {raw}<empty>"));
    }
    let (start, end) = parse_port_range(container_port)
        .map_err(|_| format!("Invalid containerPort: {container_port}"))?;
    let (host_start, host_end) = if host_port.is_empty() {
        (0, 0)
    } else {
        parse_port_range(host_port).map_err(|_| format!("Invalid hostPort: {host_port}"))?
    };
    if !host_port.is_empty() && end - start != host_end - host_start && end != start {
        return Err(format!(
            "Invalid ranges specified for container and host Ports: {container_port} and {host_port}"
        ));
    }
    let lower = proto.to_lowercase();
    if !matches!(lower.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("Invalid proto: {proto}"));
    }
    let proto = lower;
    Ok((0..=end - start)
        .map(|i| {
            let mut binding_port = if host_port.is_empty() {
                String::new()
            } else {
                (host_start + i).to_string()
            };
            if start == end && host_start != host_end {
                binding_port = format!("{binding_port}-{host_end}");
            }
            Binding {
                port: format!("{}/{proto}", start + i),
                host_ip: ip.clone(),
                host_port: binding_port,
            }
        })
        .collect())
}

/// `splitParts`: `ip:hostPort:containerPort`, the IP keeping extra colons.
fn split_parts(raw: &str) -> (String, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    }
}

/// `nat.SplitProtoPort`: `(proto, port)`, `tcp` by default.
fn split_proto_port(raw: &str) -> (&str, &str) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return ("", "");
    }
    match parts.get(1) {
        None => ("tcp", raw),
        Some(&"") => ("tcp", parts[0]),
        Some(proto) => (proto, parts[0]),
    }
}

/// `nat.ParsePortRange`: `8000` or `8000-9000`, 16-bit numbers.
fn parse_port_range(ports: &str) -> Result<(u64, u64), String> {
    if ports.is_empty() {
        return Err("Empty string specified for ports.".to_string());
    }
    let Some((first, rest)) = ports.split_once('-') else {
        let port = parse_uint(ports, 10, 16)?;
        return Ok((port, port));
    };
    let second = rest.split('-').next().unwrap_or_default();
    let start = parse_uint(first, 10, 16)?;
    let end = parse_uint(second, 10, 16)?;
    if end < start {
        return Err(format!("Invalid range specified for the Port: {ports}"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Result<Vec<String>, String> {
        let input: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        parse_port_mappings(&input).map(|ports| ports.iter().map(PortMapping::to_string).collect())
    }

    #[test]
    fn accepts_docker_port_specs() {
        assert_eq!(
            parse(&["8080:80", "127.0.0.1:2222:22", "5353:53/UDP"]),
            Ok(vec![
                "0.0.0.0:8080->80/tcp".to_string(),
                "127.0.0.1:2222->22/tcp".to_string(),
                "0.0.0.0:5353->53/udp".to_string()
            ])
        );
        assert_eq!(
            parse(&["8000-8001:80-81"]),
            Ok(vec![
                "0.0.0.0:8000->80/tcp".to_string(),
                "0.0.0.0:8001->81/tcp".to_string()
            ])
        );
        assert_eq!(
            parse(&["[::1]:80:80"]),
            Ok(vec!["::1:80->80/tcp".to_string()])
        );
    }

    #[test]
    fn refuses_like_docker_and_ignite() {
        let err = |items: &[&str]| parse(items).unwrap_err();
        assert_eq!(err(&["80"]), "invalid host port: \"\"");
        assert_eq!(err(&["8000-8001:80"]), "invalid host port: \"8000-8001\"");
        assert_eq!(err(&["x:80"]), "Invalid hostPort: x");
        assert_eq!(err(&["80:x"]), "Invalid containerPort: x");
        assert_eq!(err(&["70000:80"]), "Invalid hostPort: 70000");
        assert_eq!(err(&[""]), "No port specified: <empty>");
        assert_eq!(err(&["8080:"]), "No port specified: 8080:<empty>");
        assert_eq!(err(&["1.1.1.1:foo:bar"]), "Invalid containerPort: bar");
        assert_eq!(err(&["1.1.1.1:foo:80"]), "Invalid hostPort: foo");
        assert_eq!(err(&["999.1.1.1:80:80"]), "Invalid ip address: 999.1.1.1");
        assert_eq!(
            err(&["::1:80:80"]),
            "Invalid ip address ::1: address ::1:: too many colons in address"
        );
        assert_eq!(err(&["80:80/icmp"]), "Invalid proto: icmp");
        assert_eq!(err(&["80:80/sctp"]), "invalid protocol: \"sctp\"");
        assert_eq!(
            err(&["1-2:3-5"]),
            "Invalid ranges specified for container and host Ports: 3-5 and 1-2"
        );
        assert_eq!(
            err(&["8080:80", "9090:80"]),
            "only one host binding per VM binding supported for now, received 2"
        );
        assert_eq!(
            err(&["8080:80", "8080:81"]),
            "cannot use a port/protocol combination on the host twice"
        );
        assert_eq!(parse(&["8080:80", "8080:80/udp"]).map(|p| p.len()), Ok(2));
    }
}
