//! A project cannot pull host files into its VM: a project holding
//! symlinks to `/root`, `/etc/shadow` and `/`, a link out by `..`, and a
//! FIFO starts on the ignite stand-in (whose `cp` follows symlinks, as
//! ignite's does, as root), and the VM's file system holds the project's
//! own files only. Unsafe entries can be refused instead, and projects over
//! the limits are refused with 413.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vessel::config::{Config, Liveness, UnsafeEntries};
use vessel_tests::ignite::FakeIgnite;
use vessel_tests::{TestHost, plugin, test_config};

fn ignite_host_config(dir: &Path, ignite: &FakeIgnite) -> Config {
    let mut config = test_config(&dir.join("data"), None);
    config.plugins.vm.path = plugin("ignite_vm");
    config.plugins.vm.liveness = Liveness::Tcp;
    config.plugins.vm.grants.dirs.clear();
    config.plugins.vm.grants.exec = vec![ignite.grant()];
    config.session.ports = vec![ignite.http_port];
    config.session.allow_any_project = false;
    std::fs::create_dir_all(dir.join("projects")).unwrap();
    config.session.project_roots = vec![dir.join("projects")];
    config
}

/// A project with its own files and every way out of it.
fn hostile_project(dir: &Path) -> PathBuf {
    let project = dir.join("projects/mallory");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("README.md"), "mallory's project\n").unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(dir.join("host-secret"), "not for the VM\n").unwrap();
    for (link, target) in [
        ("ssh", Path::new("/root")),
        ("shadow", Path::new("/etc/shadow")),
        ("everything", Path::new("/")),
        ("hostname", Path::new("/etc/hostname")),
        ("secret", &dir.join("host-secret")),
    ] {
        symlink(target, project.join(link)).unwrap();
    }
    symlink("../../../host-secret", project.join("src/up-and-out")).unwrap();
    symlink("README.md", project.join("readme-again")).unwrap();
    let fifo = std::ffi::CString::new(project.join("pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    project
}

/// Every path under `root`, with what it is.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                "dir"
            } else if meta.is_file() {
                "file"
            } else {
                "other"
            };
            out.push(format!(
                "{} {kind}",
                path.strip_prefix(root).unwrap().display()
            ));
        }
    }
    out.sort();
    out
}

/// The file system of the one VM the stand-in holds.
fn only_vm_root(ignite: &FakeIgnite) -> PathBuf {
    let vms: Vec<_> = std::fs::read_dir(ignite.state.join("vms"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(vms.len(), 1, "{vms:?}");
    vms[0].join("root")
}

#[tokio::test]
async fn a_project_with_links_out_starts_and_its_vm_holds_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let host = TestHost::start(ignite_host_config(dir.path(), &ignite)).await;
    let project = hostile_project(dir.path());

    let started = host.api().start("mallory", &project).await;
    assert_eq!(started.status, 200, "{:?}", started.body);

    let workspace = only_vm_root(&ignite).join("workspace");
    assert_eq!(
        tree(&workspace),
        [
            "README.md file",
            "readme-again file",
            "src dir",
            "src/main.rs file"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("readme-again")).unwrap(),
        "mallory's project\n"
    );
    // Nothing of the host anywhere in the VM's file system.
    for entry in tree(&only_vm_root(&ignite)) {
        assert!(
            entry.starts_with("workspace"),
            "the VM holds {entry} outside its workspace"
        );
    }
    // The staged copy is gone; the user's project is as it was.
    let staging = dir.path().join("data/staging");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(std::fs::symlink_metadata(project.join("everything")).is_ok());
    host.shutdown().await;
}

#[tokio::test]
async fn unsafe_entries_can_be_refused_and_large_projects_are() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let mut config = ignite_host_config(dir.path(), &ignite);
    config.session.unsafe_project_entries = UnsafeEntries::Refuse;
    config.session.project_max_bytes = 64 * 1024;
    let host = TestHost::start(config).await;
    let project = hostile_project(dir.path());

    let refused = host.api().start("mallory", &project).await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "invalid_project_path");

    let big = dir.path().join("projects/big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("blob"), vec![7u8; 65 * 1024]).unwrap();
    let too_large = host.api().start("bigfoot", &big).await;
    assert_eq!(too_large.status, 413, "{:?}", too_large.body);
    assert_eq!(too_large.error_code(), "project_too_large");

    // Neither booted a VM, and nothing is left staged.
    assert_eq!(ignite.count("run"), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/staging"))
            .unwrap()
            .count(),
        0
    );
    host.shutdown().await;
}
