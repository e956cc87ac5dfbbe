//! The state directory named by `FAKE_IGNITE_STATE`: one directory per VM
//! (`vms/<id>/vm.json` and the VM's file system `vms/<id>/root/`), the call
//! record `calls.jsonl`, fault files `fail-<cmd>`, and the lock file that
//! serializes every mutation across concurrent invocations.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::sys;
use crate::vm::Vm;

/// Environment variable naming the state directory.
pub const STATE_ENV: &str = "FAKE_IGNITE_STATE";

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    /// The directory.
    root: PathBuf,
}

/// Proof that the caller holds the store's exclusive lock; released on drop.
pub struct Lock {
    /// The locked file; closing it releases the lock.
    _file: File,
}

impl Store {
    /// The store named by `FAKE_IGNITE_STATE`, created if missing.
    pub fn from_env() -> Result<Store, Failure> {
        let Some(root) = std::env::var_os(STATE_ENV).filter(|v| !v.is_empty()) else {
            return Err(Failure::fatal(format!(
                "{STATE_ENV} is not set: the fake ignite needs a state directory"
            )));
        };
        let root = PathBuf::from(root);
        fs::create_dir_all(root.join("vms")).map_err(|e| {
            Failure::fatal(format!("failed to create state directory {root:?}: {e}"))
        })?;
        // Absolute, so VM servers (which outlive this process) find it.
        let root = root.canonicalize().unwrap_or(root);
        Ok(Store { root })
    }

    /// A store rooted at `root` (which must exist).
    #[cfg(test)]
    pub fn at(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive lock, waiting for other invocations.
    pub fn lock(&self) -> Result<Lock, Failure> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Failure::fatal(format!("failed to open lock file {path:?}: {e}")))?;
        sys::lock_exclusive(&file)
            .map_err(|e| Failure::fatal(format!("failed to lock {path:?}: {e}")))?;
        Ok(Lock { _file: file })
    }

    /// Directory holding one subdirectory per VM.
    pub fn vms_dir(&self) -> PathBuf {
        self.root.join("vms")
    }

    /// The state directory of VM `id`.
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.vms_dir().join(id)
    }

    /// The file system of VM `id`.
    pub fn vm_root(&self, id: &str) -> PathBuf {
        self.vm_dir(id).join("root")
    }

    /// Every VM, sorted by ID. Unreadable records are skipped.
    pub fn load_all(&self, _lock: &Lock) -> Vec<Vm> {
        let Ok(entries) = fs::read_dir(self.vms_dir()) else {
            return Vec::new();
        };
        let mut vms: Vec<Vm> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| fs::read(entry.path().join("vm.json")).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        vms.sort_by(|a, b| a.id.cmp(&b.id));
        vms
    }

    /// Writes `vm`'s record (atomically, via a temporary file).
    pub fn save(&self, _lock: &Lock, vm: &Vm) -> Result<(), Failure> {
        let dir = self.vm_dir(&vm.id);
        let write = || -> io::Result<()> {
            fs::create_dir_all(&dir)?;
            let bytes = serde_json::to_vec_pretty(vm).map_err(io::Error::other)?;
            let tmp = dir.join("vm.json.tmp");
            fs::write(&tmp, bytes)?;
            fs::rename(tmp, dir.join("vm.json"))
        };
        write().map_err(|e| Failure::fatal(format!("failed to write VM {:?}: {e}", vm.id)))
    }

    /// Deletes VM `id`'s directory and everything in it.
    pub fn delete(&self, _lock: &Lock, id: &str) -> Result<(), Failure> {
        match fs::remove_dir_all(self.vm_dir(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Failure::fatal(format!("failed to remove VM {id:?}: {e}"))),
        }
    }

    /// Appends `{"argv":[...],"exit":N}` to `calls.jsonl`.
    pub fn record_call(&self, _lock: &Lock, argv: &[String], exit: i32) -> io::Result<()> {
        let line = serde_json::json!({ "argv": argv, "exit": exit });
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("calls.jsonl"))?;
        // One write of the whole line, so a reader never sees half of it.
        file.write_all(format!("{line}\n").as_bytes())
    }
}

/// The injected failure for command `key`, if any: the value of
/// `FAKE_IGNITE_FAIL_<KEY>`, else the contents of `<state>/fail-<key>`
/// (trimmed; empty means `injected failure`).
pub fn injected_failure(store: Option<&Store>, key: &str) -> Option<String> {
    let from_env = std::env::var(format!("FAKE_IGNITE_FAIL_{}", key.to_ascii_uppercase())).ok();
    let from_file = || {
        let mut text = String::new();
        File::open(store?.root.join(format!("fail-{key}")))
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let message = from_env.or_else(from_file)?;
    let message = message.trim();
    Some(if message.is_empty() {
        "injected failure".to_string()
    } else {
        message.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::tests::sample_vm;

    fn temp_store(tag: &str) -> Store {
        let dir =
            std::env::temp_dir().join(format!("fake-ignite-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("vms")).expect("temp dir");
        Store::at(&dir)
    }

    #[test]
    fn saves_loads_and_deletes_vms() {
        let store = temp_store("crud");
        let lock = store.lock().expect("lock");
        let vm = sample_vm();
        store.save(&lock, &vm).expect("save");
        assert_eq!(store.load_all(&lock), vec![vm.clone()]);
        store.delete(&lock, &vm.id).expect("delete");
        assert!(store.load_all(&lock).is_empty());
        store
            .record_call(&lock, &["ps".to_string()], 0)
            .expect("record");
        let calls = fs::read_to_string(store.root().join("calls.jsonl")).expect("calls");
        assert_eq!(calls, "{\"argv\":[\"ps\"],\"exit\":0}\n");
        drop(lock);
        let _ = fs::remove_dir_all(store.root());
    }

    #[test]
    fn reads_fault_files() {
        let store = temp_store("fault");
        assert_eq!(injected_failure(Some(&store), "inspect"), None);
        fs::write(store.root().join("fail-inspect"), "disk on fire\n").expect("write");
        assert_eq!(
            injected_failure(Some(&store), "inspect").as_deref(),
            Some("disk on fire")
        );
        fs::write(store.root().join("fail-inspect"), "").expect("write");
        assert_eq!(
            injected_failure(Some(&store), "inspect").as_deref(),
            Some("injected failure")
        );
        let _ = fs::remove_dir_all(store.root());
    }
}
