//! `[plugins.vm]` and `[plugins.proxy]` as written in a file, merged onto
//! the defaults of their slot.
//!
//! The other tables take their defaults from their type, which serde fills
//! in field by field. A plugin table cannot: its defaults depend on the slot
//! (the proxy driver's calls take turns, the VM driver's do not) and on the
//! component in it. The mocks need a state directory, and the mock VM's
//! addresses serve nothing, so its liveness is `inspect`; a different
//! component gets neither, since granting a driver the mock's directory
//! would be a capability nobody asked for. So the file's tables are read
//! with every field optional, and each field left out keeps the default of
//! its slot, at every level (`[plugins.vm.grants]` too).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{
    DirGrant, ExecGrant, FileIo, Grants, HttpGrant, Liveness, PluginConfig, PluginsConfig,
};

/// Which driver a plugin table configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginSlot {
    /// `[plugins.vm]`: the VM driver.
    Vm,
    /// `[plugins.proxy]`: the proxy driver.
    Proxy,
}

impl PluginSlot {
    /// The component the slot holds by default.
    pub fn mock_file(self) -> &'static str {
        match self {
            PluginSlot::Vm => "mock_vm.wasm",
            PluginSlot::Proxy => "mock_proxy.wasm",
        }
    }

    /// Whether `path` names the slot's mock, wherever it is installed.
    pub fn is_mock(self, path: &Path) -> bool {
        path.file_name()
            .is_some_and(|name| name == self.mock_file())
    }

    /// The slot's defaults for the component at `path` (its mock when
    /// `None`): the mock with its state directory, or any other component
    /// with nothing granted.
    pub fn defaults(self, path: Option<&Path>) -> PluginConfig {
        let path = path.map_or_else(|| PathBuf::from(self.mock_file()), Path::to_path_buf);
        let mock = self.is_mock(&path);
        let (state_name, max_concurrent_calls) = match self {
            PluginSlot::Vm => ("mock-vm", 0),
            // nginx's check and reload of one change must not overlap
            // another's.
            PluginSlot::Proxy => ("mock-proxy", 1),
        };
        let grants = if mock {
            Grants {
                dirs: vec![DirGrant {
                    host: PathBuf::from(format!("{{data_dir}}/{state_name}")),
                    guest: "/state".to_string(),
                    read_only: false,
                }],
                ..Grants::default()
            }
        } else {
            Grants::default()
        };
        PluginConfig {
            path,
            max_concurrent_calls: Some(max_concurrent_calls),
            liveness: if mock && self == PluginSlot::Vm {
                Liveness::Inspect
            } else {
                Liveness::Tcp
            },
            grants,
            ..PluginConfig::default()
        }
    }
}

/// `[plugins]` as written.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct PluginsTable {
    dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    call_slots: Option<u32>,
    vm: PluginTable,
    proxy: PluginTable,
}

impl From<PluginsTable> for PluginsConfig {
    fn from(table: PluginsTable) -> Self {
        PluginsConfig {
            dir: table.dir,
            cache_dir: table.cache_dir,
            vm: table.vm.onto(PluginSlot::Vm),
            proxy: table.proxy.onto(PluginSlot::Proxy),
            call_slots: table
                .call_slots
                .unwrap_or(PluginsConfig::DEFAULT_CALL_SLOTS),
        }
    }
}

/// A plugin table as written: the fields of [`PluginConfig`], each
/// optional.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PluginTable {
    path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    call_timeout: Option<Duration>,
    memory_limit_mib: Option<u64>,
    max_handles: Option<u32>,
    max_concurrent_calls: Option<u32>,
    liveness: Option<Liveness>,
    file_io: Option<FileIo>,
    settings: Option<BTreeMap<String, toml::Value>>,
    grants: Option<GrantsTable>,
}

impl PluginTable {
    fn onto(self, slot: PluginSlot) -> PluginConfig {
        let defaults = slot.defaults(self.path.as_deref());
        PluginConfig {
            path: defaults.path,
            call_timeout: self.call_timeout.unwrap_or(defaults.call_timeout),
            memory_limit_mib: self.memory_limit_mib.unwrap_or(defaults.memory_limit_mib),
            max_handles: self.max_handles.unwrap_or(defaults.max_handles),
            max_concurrent_calls: self.max_concurrent_calls.or(defaults.max_concurrent_calls),
            liveness: self.liveness.unwrap_or(defaults.liveness),
            file_io: self.file_io.unwrap_or(defaults.file_io),
            settings: self.settings.unwrap_or(defaults.settings),
            grants: match self.grants {
                Some(grants) => grants.onto(defaults.grants),
                None => defaults.grants,
            },
        }
    }
}

/// `[plugins.*.grants]` as written. A list given replaces the default list
/// whole; it is not appended to.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GrantsTable {
    dirs: Option<Vec<DirGrant>>,
    exec: Option<Vec<ExecGrant>>,
    network: Option<Vec<SocketAddr>>,
    http: Option<Vec<HttpGrant>>,
    symlinks: Option<bool>,
}

impl GrantsTable {
    fn onto(self, defaults: Grants) -> Grants {
        Grants {
            dirs: self.dirs.unwrap_or(defaults.dirs),
            exec: self.exec.unwrap_or(defaults.exec),
            network: self.network.unwrap_or(defaults.network),
            http: self.http.unwrap_or(defaults.http),
            symlinks: self.symlinks.unwrap_or(defaults.symlinks),
        }
    }
}
