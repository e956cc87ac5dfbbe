//! The fake's record of one VM (stored as `vm.json` in the VM's state
//! directory) and its rendering as ignite's `ignite.weave.works/v1alpha4` VM
//! object (`pkg/apis/ignite/v1alpha4/types.go`), which `inspect` prints.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::jsonfmt::Value;
use crate::{sizes, timefmt};

/// ignite v0.10.0's sandbox image (`pkg/constants`, `version.GetIgnite()`).
pub const DEFAULT_SANDBOX: &str = "weaveworks/ignite:v0.10.0";
/// ignite v0.10.0's default kernel image.
pub const DEFAULT_KERNEL: &str = "weaveworks/ignite-kernel:5.10.51";
/// `constants.VM_DEFAULT_KERNEL_ARGS`.
pub const DEFAULT_KERNEL_ARGS: &str = "console=ttyS0 reboot=k panic=1 pci=off ip=dhcp";
/// `constants.VM_DEFAULT_CPUS`.
pub const DEFAULT_CPUS: u64 = 1;
/// `constants.VM_DEFAULT_MEMORY` (512 MiB).
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// `constants.VM_DEFAULT_SIZE` (4 GiB).
pub const DEFAULT_DISK: u64 = 4 << 30;
/// The container runtime the fake reports (`--runtime` default).
pub const DEFAULT_RUNTIME: &str = "containerd";
/// The network plugin the fake reports (`--network-plugin` default).
pub const DEFAULT_NETWORK_PLUGIN: &str = "cni";

/// A `--ports` mapping (`meta.PortMapping`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to bind, as Go's `net.IP.String()` prints it; `None`
    /// means all addresses.
    #[serde(default)]
    pub bind_address: Option<String>,
    /// Port on the host.
    pub host_port: u64,
    /// Port in the VM.
    pub vm_port: u64,
    /// `tcp` or `udp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

/// The protocol of mappings recorded before the fake stored one.
fn default_protocol() -> String {
    "tcp".to_string()
}

impl std::fmt::Display for PortMapping {
    /// `PortMapping.String()`: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let address = self.bind_address.as_deref().unwrap_or("0.0.0.0");
        write!(f, "{address}:{}->{}", self.host_port, self.vm_port)?;
        if !self.protocol.is_empty() {
            write!(f, "/{}", self.protocol)?;
        }
        Ok(())
    }
}

/// A `--copy-files` mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMapping {
    /// Absolute path on the host.
    pub host_path: String,
    /// Absolute path in the VM.
    pub vm_path: String,
}

/// How `--ssh` was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ssh {
    /// Bare `--ssh`: ignite generates a key pair.
    Generate,
    /// `--ssh=<path>`: the public key file imported.
    PublicKey(String),
}

/// Everything the fake knows about a VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// 16 lower-case hex characters.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Normalized OCI image reference.
    pub image: String,
    /// Normalized kernel image reference.
    pub kernel: String,
    /// Kernel command line.
    pub kernel_args: String,
    /// Sandbox image reference.
    pub sandbox: String,
    /// vCPUs.
    pub cpus: u64,
    /// RAM in bytes.
    pub memory: u64,
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Port mappings.
    pub ports: Vec<PortMapping>,
    /// Files copied in at creation.
    pub copy_files: Vec<FileMapping>,
    /// SSH setup, if any.
    pub ssh: Option<Ssh>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the VM is (believed to be) running.
    pub running: bool,
    /// The VM's address while it is running (or booting).
    pub ip: Option<Ipv4Addr>,
    /// 64-hex "container" ID of the current run; empty when never started.
    pub container_id: String,
    /// Start time of the current run, Unix seconds.
    pub start_time: Option<i64>,
    /// PID of the VM's HTTP server process while running.
    pub pid: Option<u32>,
    /// Container runtime name.
    pub runtime: String,
    /// Network plugin name.
    pub network_plugin: String,
}

impl Vm {
    /// The VM as `ignite inspect vm` prints it.
    pub fn to_api_object(&self) -> Value {
        Value::object(vec![
            ("kind", Value::str("VM")),
            ("apiVersion", Value::str("ignite.weave.works/v1alpha4")),
            ("metadata", self.metadata()),
            ("spec", self.spec()),
            ("status", self.status()),
        ])
    }

    /// `metadata` (libgitops `runtime.ObjectMeta`).
    fn metadata(&self) -> Value {
        let mut fields = vec![
            ("name", Value::str(&self.name)),
            ("uid", Value::str(&self.id)),
            ("created", Value::str(timefmt::rfc3339_utc(self.created))),
        ];
        if !self.labels.is_empty() {
            let labels = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::str(v)))
                .collect();
            fields.push(("labels", Value::Map(labels)));
        }
        Value::object(fields)
    }

    /// `spec` (`VMSpec`).
    fn spec(&self) -> Value {
        let oci = |reference: &str| Value::object(vec![("oci", Value::str(reference))]);
        let network = if self.ports.is_empty() {
            Value::Struct(vec![])
        } else {
            let ports = self
                .ports
                .iter()
                .map(|p| {
                    let mut port = Vec::new();
                    if let Some(address) = &p.bind_address {
                        port.push(("bindAddress", Value::str(address)));
                    }
                    port.push(("hostPort", Value::Number(p.host_port)));
                    port.push(("vmPort", Value::Number(p.vm_port)));
                    if !p.protocol.is_empty() {
                        port.push(("protocol", Value::str(&p.protocol)));
                    }
                    Value::object(port)
                })
                .collect();
            Value::object(vec![("ports", Value::List(ports))])
        };
        let mut fields = vec![
            ("image", oci(&self.image)),
            ("sandbox", oci(&self.sandbox)),
            (
                "kernel",
                Value::object(vec![
                    ("oci", Value::str(&self.kernel)),
                    ("cmdLine", Value::str(&self.kernel_args)),
                ]),
            ),
            ("cpus", Value::Number(self.cpus)),
            ("memory", Value::str(sizes::exact(self.memory))),
            ("diskSize", Value::str(sizes::exact(self.disk_size))),
            ("network", network),
            ("storage", Value::Struct(vec![])),
        ];
        if !self.copy_files.is_empty() {
            let files = self
                .copy_files
                .iter()
                .map(|f| {
                    Value::object(vec![
                        ("hostPath", Value::str(&f.host_path)),
                        ("vmPath", Value::str(&f.vm_path)),
                    ])
                })
                .collect();
            fields.push(("copyFiles", Value::List(files)));
        }
        match &self.ssh {
            Some(Ssh::Generate) => fields.push(("ssh", Value::Bool(true))),
            Some(Ssh::PublicKey(path)) => fields.push(("ssh", Value::str(path))),
            None => {}
        }
        Value::object(fields)
    }

    /// `status` (`VMStatus`, after `SetDefaults_VMStatus`).
    fn status(&self) -> Value {
        let mut fields = vec![
            ("running", Value::Bool(self.running)),
            (
                "runtime",
                Value::object(vec![
                    ("id", Value::str(&self.container_id)),
                    ("name", Value::str(&self.runtime)),
                ]),
            ),
        ];
        if let Some(start) = self.start_time {
            fields.push(("startTime", Value::str(timefmt::rfc3339_utc(start))));
        }
        let addresses = match (self.running, self.ip) {
            (true, Some(ip)) => Value::List(vec![Value::str(ip.to_string())]),
            _ => Value::Null,
        };
        fields.push((
            "network",
            Value::object(vec![
                ("plugin", Value::str(&self.network_plugin)),
                ("ipAddresses", addresses),
            ]),
        ));
        fields.push(("image", image_source(&self.image, 246_417_411)));
        fields.push(("kernel", image_source(&self.kernel, 51_642_371)));
        fields.push(("idPrefix", Value::str("ignite")));
        Value::object(fields)
    }

    /// IP addresses as ignite's `IPAddresses.String()` prints them.
    pub fn ips_text(&self) -> String {
        match (self.running, self.ip) {
            (true, Some(ip)) => ip.to_string(),
            _ => String::new(),
        }
    }

    /// Port mappings as `PortMappings.String()` prints them.
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(PortMapping::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `OCIImageSource` of an image: a content ID derived from the reference and
/// a fixed size.
fn image_source(reference: &str, size: u64) -> Value {
    let repository = reference
        .rsplit_once(':')
        .map_or(reference, |(repo, _)| repo);
    let repository = if repository.split('/').count() < 3 {
        format!("docker.io/{repository}")
    } else {
        repository.to_string()
    };
    Value::object(vec![
        (
            "id",
            Value::str(format!(
                "oci://{repository}@sha256:{}",
                pseudo_digest(reference)
            )),
        ),
        ("size", Value::str(sizes::exact(size))),
    ])
}

/// A stable 64-hex digest for `text` (FNV-1a, four lanes); not a real hash of
/// any image, only deterministic.
pub fn pseudo_digest(text: &str) -> String {
    (0u64..4)
        .map(|lane| {
            let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ lane.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for byte in text.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{hash:016x}")
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jsonfmt;

    /// A running VM with fixed times, used by several test modules.
    pub(crate) fn sample_vm() -> Vm {
        Vm {
            id: "e0c7fa4b1a2d3c4f".into(),
            name: "my-vm".into(),
            created: 1_626_688_800,
            image: "weaveworks/ignite-ubuntu:latest".into(),
            kernel: DEFAULT_KERNEL.into(),
            kernel_args: DEFAULT_KERNEL_ARGS.into(),
            sandbox: DEFAULT_SANDBOX.into(),
            cpus: 2,
            memory: 1 << 30,
            disk_size: DEFAULT_DISK,
            ports: vec![PortMapping {
                bind_address: None,
                host_port: 8080,
                vm_port: 80,
                protocol: "tcp".into(),
            }],
            copy_files: vec![],
            ssh: Some(Ssh::Generate),
            labels: BTreeMap::new(),
            running: true,
            ip: Some(Ipv4Addr::new(127, 61, 0, 2)),
            container_id: "ab".repeat(32),
            start_time: Some(1_626_688_801),
            pid: Some(4242),
            runtime: DEFAULT_RUNTIME.into(),
            network_plugin: DEFAULT_NETWORK_PLUGIN.into(),
        }
    }

    #[test]
    fn api_object_has_ignites_v1alpha4_shape() {
        let json = jsonfmt::to_json(&sample_vm().to_api_object());
        let expected_start = "{\n  \"kind\": \"VM\",\n  \"apiVersion\": \"ignite.weave.works/v1alpha4\",\n  \"metadata\": {\n    \"name\": \"my-vm\",\n    \"uid\": \"e0c7fa4b1a2d3c4f\",\n    \"created\": \"2021-07-19T10:00:00Z\"\n  },\n  \"spec\": {\n    \"image\": {\n      \"oci\": \"weaveworks/ignite-ubuntu:latest\"\n    },\n    \"sandbox\": {\n      \"oci\": \"weaveworks/ignite:v0.10.0\"\n    },\n    \"kernel\": {\n      \"oci\": \"weaveworks/ignite-kernel:5.10.51\",\n      \"cmdLine\": \"console=ttyS0 reboot=k panic=1 pci=off ip=dhcp\"\n    },\n    \"cpus\": 2,\n    \"memory\": \"1GB\",\n    \"diskSize\": \"4GB\",\n    \"network\": {\n      \"ports\": [\n        {\n          \"hostPort\": 8080,\n          \"vmPort\": 80,\n          \"protocol\": \"tcp\"\n        }\n      ]\n    },\n    \"storage\": {\n      \n    },\n    \"ssh\": true\n  },\n  \"status\": {\n    \"running\": true,\n    \"runtime\": {\n      \"id\": \"abab";
        assert!(json.starts_with(expected_start), "{json}");
        assert!(json.contains("\"startTime\": \"2021-07-19T10:00:01Z\",\n    \"network\": {\n      \"plugin\": \"cni\",\n      \"ipAddresses\": [\n        \"127.61.0.2\"\n      ]\n    },"));
        assert!(json.ends_with("\"idPrefix\": \"ignite\"\n  }\n}\n"));
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["status"]["network"]["ipAddresses"][0], "127.61.0.2");
    }

    #[test]
    fn stopped_vm_has_no_addresses() {
        let mut vm = sample_vm();
        vm.running = false;
        let object = vm.to_api_object();
        assert_eq!(
            object.get(&["status", "network", "ipAddresses"]),
            Some(&Value::Null)
        );
        assert_eq!(vm.ips_text(), "");
    }

    #[test]
    fn renders_ports_and_digests() {
        let mut vm = sample_vm();
        vm.ports.push(PortMapping {
            bind_address: Some("127.0.0.1".into()),
            host_port: 2222,
            vm_port: 22,
            protocol: "udp".into(),
        });
        assert_eq!(
            vm.ports_text(),
            "0.0.0.0:8080->80/tcp, 127.0.0.1:2222->22/udp"
        );
        assert_eq!(pseudo_digest("x").len(), 64);
    }
}
