//! Reading `ignite inspect vm NAME` (JSON, API version
//! `ignite.weave.works/v1alpha4`; `pkg/apis/ignite/v1alpha4/types.go`).

use serde::Deserialize;

/// The parts of ignite's VM object the driver uses.
#[derive(Debug, Clone, Deserialize)]
pub struct IgniteVm {
    /// `metadata`.
    pub metadata: Metadata,
    /// `status`.
    #[serde(default)]
    pub status: Status,
}

/// `metadata` of a VM object.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// The VM's name.
    pub name: String,
    /// Its 16-hex id.
    pub uid: String,
    /// Labels given with `--label`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `status` of a VM object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    /// Whether it runs.
    #[serde(default)]
    pub running: bool,
    /// Its network (v1alpha4).
    #[serde(default)]
    pub network: Option<Network>,
    /// Its addresses in older API versions (v1alpha1/2).
    #[serde(default, rename = "ipAddresses")]
    pub legacy_ip_addresses: Option<Vec<String>>,
}

/// `status.network`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Network {
    /// Its addresses; `null` when stopped.
    #[serde(default, rename = "ipAddresses")]
    pub ip_addresses: Option<Vec<String>>,
}

/// The label holding the VM's ports (`vm-spec.ports`), comma-separated.
pub const PORTS_LABEL: &str = "vessel.ports";

impl IgniteVm {
    /// Parses the JSON `ignite inspect vm` prints.
    pub fn parse(json: &str) -> Result<IgniteVm, String> {
        serde_json::from_str(json)
            .map_err(|e| format!("ignite inspect printed unexpected JSON: {e}"))
    }

    /// The VM's first address.
    pub fn ip(&self) -> Option<String> {
        self.status
            .network
            .as_ref()
            .and_then(|n| n.ip_addresses.clone())
            .or_else(|| self.status.legacy_ip_addresses.clone())
            .and_then(|ips| ips.into_iter().next())
    }

    /// The ports recorded in the VM's labels.
    pub fn ports(&self) -> Vec<u16> {
        self.metadata
            .labels
            .get(PORTS_LABEL)
            .map(|ports| {
                ports
                    .split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_vm_object_is_read() {
        let json = r#"{
          "kind": "VM",
          "apiVersion": "ignite.weave.works/v1alpha4",
          "metadata": {"name": "user-.user-.a-session", "uid": "e0c7fa4b1a2d3c4f",
                       "created": "2021-07-19T10:00:00Z", "labels": {"vessel.ports": "8080,3000"}},
          "spec": {"image": {"oci": "weaveworks/ignite-ubuntu:latest"}, "cpus": 2, "memory": "1GB",
                   "diskSize": "4GB", "network": {}, "storage": {}, "ssh": true},
          "status": {"running": true, "runtime": {"id": "5d2c", "name": "containerd"},
                     "startTime": "2021-07-19T10:00:01Z",
                     "network": {"plugin": "cni", "ipAddresses": ["127.61.0.2"]},
                     "idPrefix": "ignite"}
        }"#;
        let vm = IgniteVm::parse(json).unwrap();
        assert_eq!(vm.metadata.uid, "e0c7fa4b1a2d3c4f");
        assert!(vm.status.running);
        assert_eq!(vm.ip().as_deref(), Some("127.61.0.2"));
        assert_eq!(vm.ports(), vec![8080, 3000]);
    }

    #[test]
    fn a_stopped_vm_has_no_address() {
        let json = r#"{"kind":"VM","metadata":{"name":"v","uid":"0123456789abcdef"},
                      "status":{"running":false,"network":{"plugin":"cni","ipAddresses":null}}}"#;
        let vm = IgniteVm::parse(json).unwrap();
        assert!(!vm.status.running);
        assert_eq!(vm.ip(), None);
        assert!(vm.ports().is_empty());
        assert!(IgniteVm::parse("not json").is_err());
    }
}
