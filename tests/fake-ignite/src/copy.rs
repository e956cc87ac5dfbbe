//! `ignite cp` semantics (`cmd/ignite/run/cp.go`) applied to a VM whose file
//! system is a host directory: files into existing directories keep their
//! name, a directory copied to a missing path becomes that path, a directory
//! copied onto an existing directory of another name lands inside it.
//! Error texts are Go's (`stat /x: no such file or directory`, sftp's
//! `file does not exist`).

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Where an SFTP session as root starts; relative VM paths are resolved here.
const VM_HOME: &str = "/root";

/// The host path backing `vm_path` inside a VM whose file system is `root`
/// (lexically cleaned, never above the VM's `/`).
pub fn vm_path(root: &Path, vm_path: &str) -> PathBuf {
    let absolute = if vm_path.starts_with('/') {
        PathBuf::from(vm_path)
    } else {
        Path::new(VM_HOME).join(vm_path)
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in absolute.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
        .iter()
        .fold(root.to_path_buf(), |path, part| path.join(part))
}

/// Go's `filepath.Clean` for the paths ignite cleans before copying.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Copies host `source` to `dest` in the VM (`copyToVM`). `source` and
/// `dest` are already cleaned.
pub fn host_to_vm(source: &str, root: &Path, dest: &str) -> Result<(), String> {
    let info = fs::metadata(source).map_err(|e| go_path_error("stat", source, &e))?;
    if info.is_dir() {
        dir_to_vm(Path::new(source), root, dest)
    } else {
        file_to_vm(Path::new(source), root, dest)
    }
}

/// `copyFileToVM`.
fn file_to_vm(local: &Path, root: &Path, remote: &str) -> Result<(), String> {
    let mut remote = remote.to_string();
    if vm_path(root, &remote).is_dir() {
        remote = join_vm(&remote, &base_name(local));
    }
    let target = vm_path(root, &remote);
    if !target.parent().is_some_and(Path::is_dir) {
        return Err("file does not exist".to_string());
    }
    fs::copy(local, &target)
        .map(|_| ())
        .map_err(|e| sftp_error(&e))
}

/// `copyDirToVM`.
fn dir_to_vm(local: &Path, root: &Path, remote: &str) -> Result<(), String> {
    let mut remote = remote.to_string();
    let overwrite_error = |remote: &str| {
        format!(
            "cannot overwrite non-directory {}(VM) with directory {}(Host)",
            quote(remote),
            quote(&local.to_string_lossy())
        )
    };
    let target = vm_path(root, &remote);
    if target.exists() && base_name(local) != base_name(Path::new(&remote)) {
        if !target.is_dir() {
            return Err(overwrite_error(&remote));
        }
        remote = join_vm(&remote, &base_name(local));
        let nested = vm_path(root, &remote);
        if nested.exists() && !nested.is_dir() {
            return Err(overwrite_error(&remote));
        }
    }
    let target = vm_path(root, &remote);
    if !target.exists() {
        fs::create_dir_all(&target).map_err(|e| {
            format!(
                "failed to create directory: {}, error: {}",
                quote(&remote),
                quote(&sftp_error(&e))
            )
        })?;
    }
    for entry in
        sorted_entries(local).map_err(|e| go_path_error("open", &local.to_string_lossy(), &e))?
    {
        let local_entry = local.join(&entry);
        let remote_entry = join_vm(&remote, &entry);
        let info = fs::metadata(&local_entry)
            .map_err(|e| go_path_error("stat", &local_entry.to_string_lossy(), &e))?;
        if info.is_dir() {
            dir_to_vm(&local_entry, root, &remote_entry)?;
        } else {
            file_to_vm(&local_entry, root, &remote_entry)?;
        }
    }
    Ok(())
}

/// Copies `source` in the VM to host `dest` (`copyFromVM`).
pub fn vm_to_host(root: &Path, source: &str, dest: &str) -> Result<(), String> {
    let remote = vm_path(root, source);
    let info = fs::metadata(&remote).map_err(|e| sftp_error(&e))?;
    if info.is_dir() {
        dir_from_vm(root, source, dest)
    } else {
        file_from_vm(root, source, dest)
    }
}

/// `copyFileFromVM`.
fn file_from_vm(root: &Path, remote: &str, local: &str) -> Result<(), String> {
    let mut local = PathBuf::from(local);
    if local.is_dir() {
        local = local.join(base_name(Path::new(remote)));
    }
    fs::copy(vm_path(root, remote), &local)
        .map(|_| ())
        .map_err(|e| go_path_error("open", &local.to_string_lossy(), &e))
}

/// `copyDirFromVM`.
fn dir_from_vm(root: &Path, remote: &str, local: &str) -> Result<(), String> {
    let mut local = PathBuf::from(local);
    let overwrite_error = |local: &Path| {
        format!(
            "cannot overwrite non-directory {}(Host) with directory {}(VM)",
            quote(&local.to_string_lossy()),
            quote(remote)
        )
    };
    if local.exists() && base_name(&local) != base_name(Path::new(remote)) {
        if !local.is_dir() {
            return Err(overwrite_error(&local));
        }
        local = local.join(base_name(Path::new(remote)));
        if local.exists() && !local.is_dir() {
            return Err(overwrite_error(&local));
        }
    }
    if !local.exists() {
        fs::create_dir_all(&local).map_err(|e| {
            format!(
                "failed to create dir: {}, error: {}",
                quote(&local.to_string_lossy()),
                quote(&go_errno(&e))
            )
        })?;
    }
    let source = vm_path(root, remote);
    for entry in sorted_entries(&source).map_err(|e| sftp_error(&e))? {
        let remote_entry = join_vm(remote, &entry);
        let local_entry = local.join(&entry).to_string_lossy().into_owned();
        if vm_path(root, &remote_entry).is_dir() {
            dir_from_vm(root, &remote_entry, &local_entry)?;
        } else {
            file_from_vm(root, &remote_entry, &local_entry)?;
        }
    }
    Ok(())
}

/// Directory entry names, sorted like Go's `ioutil.ReadDir`.
fn sorted_entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// `filepath.Join` for VM paths.
fn join_vm(dir: &str, name: &str) -> String {
    clean(&format!("{dir}/{name}"))
}

/// `filepath.Base`.
fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_string())
}

/// Go `%q`.
fn quote(text: &str) -> String {
    crate::log::go_quote(text)
}

/// Go's `*PathError` text: `<op> <path>: <errno text>`.
fn go_path_error(op: &str, path: &str, error: &io::Error) -> String {
    format!("{op} {path}: {}", go_errno(error))
}

/// Go's text for an errno: the C text with a lower-case first letter.
pub fn go_errno(error: &io::Error) -> String {
    let text = match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => error.to_string(),
    };
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// How the sftp client reports a failed remote operation.
fn sftp_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "file does not exist".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => format!("sftp: {}", go_errno(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("fake-ignite-copy-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("vm")).expect("scratch");
            Scratch(dir)
        }
        fn vm(&self) -> PathBuf {
            self.0.join("vm")
        }
        fn host(&self, rel: &str) -> String {
            self.0.join(rel).to_string_lossy().into_owned()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("/workspace/"), "/workspace");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../x/./y"), "/x/y");
        assert_eq!(clean(""), ".");
        assert_eq!(
            vm_path(Path::new("/r"), "../../etc"),
            PathBuf::from("/r/etc")
        );
        assert_eq!(
            vm_path(Path::new("/r"), "notes"),
            PathBuf::from("/r/root/notes")
        );
    }

    #[test]
    fn directory_to_missing_path_becomes_that_path() {
        let s = Scratch::new("dir-missing");
        fs::create_dir_all(s.0.join("proj/src")).expect("src");
        fs::write(s.0.join("proj/README.md"), "hi").expect("write");
        fs::write(s.0.join("proj/src/main.rs"), "fn main() {}").expect("write");
        host_to_vm(&s.host("proj"), &s.vm(), "/workspace").expect("copy");
        assert_eq!(
            fs::read_to_string(s.vm().join("workspace/README.md")).expect("read"),
            "hi"
        );
        assert!(s.vm().join("workspace/src/main.rs").is_file());
        // Again, onto the now existing /workspace: lands inside it as proj/.
        host_to_vm(&s.host("proj"), &s.vm(), "/workspace").expect("copy again");
        assert!(s.vm().join("workspace/proj/README.md").is_file());
    }

    #[test]
    fn files_follow_directory_rules() {
        let s = Scratch::new("files");
        fs::write(s.0.join("a.txt"), "A").expect("write");
        fs::create_dir_all(s.vm().join("data")).expect("dir");
        host_to_vm(&s.host("a.txt"), &s.vm(), "/data").expect("into dir");
        assert!(s.vm().join("data/a.txt").is_file());
        host_to_vm(&s.host("a.txt"), &s.vm(), "/data/b.txt").expect("rename");
        assert!(s.vm().join("data/b.txt").is_file());
        assert_eq!(
            host_to_vm(&s.host("a.txt"), &s.vm(), "/nope/x"),
            Err("file does not exist".into())
        );
        let missing = s.host("missing");
        assert_eq!(
            host_to_vm(&missing, &s.vm(), "/data"),
            Err(format!("stat {missing}: no such file or directory"))
        );
        fs::create_dir_all(s.0.join("d")).expect("dir");
        let err = host_to_vm(&s.host("d"), &s.vm(), "/data/b.txt").unwrap_err();
        assert!(
            err.starts_with("cannot overwrite non-directory \"/data/b.txt\"(VM) with directory"),
            "{err}"
        );
    }

    #[test]
    fn copies_back_from_the_vm() {
        let s = Scratch::new("back");
        fs::create_dir_all(s.vm().join("workspace/out")).expect("dir");
        fs::write(s.vm().join("workspace/out/r.txt"), "R").expect("write");
        vm_to_host(&s.vm(), "/workspace/out", &s.host("got")).expect("copy back");
        assert_eq!(
            fs::read_to_string(s.0.join("got/r.txt")).expect("read"),
            "R"
        );
        assert_eq!(
            vm_to_host(&s.vm(), "/nothing", &s.host("x")),
            Err("file does not exist".into())
        );
    }
}
