//! The ignite driver against the ignite stand-in: VMs are created, filled,
//! inspected, listed and removed through the ignite command line, with
//! ignite's real output formats and errors.

use std::time::Duration;

use vessel::config::Config;
use vessel::plugins::{DriverError, PluginError, PluginRuntime, VmDriver, VmSpec, VmState};
use vessel_tests::ignite::{FakeIgnite, listening};
use vessel_tests::proxies::fetch;
use vessel_tests::{eventually, plugin, project_dir, shared_cache_dir, test_config};

fn ignite_config(dir: &std::path::Path, ignite: &FakeIgnite) -> Config {
    let mut config = test_config(&dir.join("data"), None);
    let vm = &mut config.plugins.vm;
    vm.path = plugin("ignite_vm");
    vm.grants.dirs.clear();
    vm.grants.exec = vec![ignite.grant()];
    config
}

fn driver(config: &Config) -> VmDriver {
    let runtime = PluginRuntime::new(shared_cache_dir()).unwrap();
    VmDriver::load(&runtime, config).unwrap()
}

fn spec(vm_id: &str, port: u16) -> VmSpec {
    VmSpec {
        vm_id: vm_id.to_string(),
        name: vm_id.trim_start_matches("vessel-").to_string(),
        image: "weaveworks/ignite-ubuntu:latest".to_string(),
        cpus: 2,
        memory_mib: 1024,
        disk_mib: 4096,
        ports: vec![port],
        labels: vec![("vessel.user".to_string(), "User-A".to_string())],
    }
}

fn driver_error<T: std::fmt::Debug>(result: Result<T, PluginError>) -> DriverError {
    match result {
        Err(PluginError::Driver { error, .. }) => error,
        other => panic!("expected a driver error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_vm_lives_through_run_cp_inspect_ps_and_rm() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let driver = driver(&ignite_config(dir.path(), &ignite));
    let vm_id = "vessel-user-a-x";

    let created = driver.create(&spec(vm_id, ignite.http_port)).await.unwrap();
    assert_eq!(created.vm_id, vm_id);
    assert_eq!(created.state, VmState::Running);
    let ip = created.ip.clone().unwrap();
    assert!(ip.starts_with("127.61.0."), "{ip}");
    assert_eq!(created.ports, vec![ignite.http_port]);
    // Ignite's own view: the host's id is an ignite name as it is.
    assert_eq!(ignite.ps_names(), vec![vm_id.to_string()]);
    let run = &ignite.calls()[0];
    for expected in [
        "--cpus", "2", "--memory", "1024MB", "--size", "4096MB", "--ssh",
    ] {
        assert!(run.contains(&expected.to_string()), "{run:?}");
    }

    // The project copied in is served by the VM. The driver's grant lets
    // it copy only from the host's staging area, where the host stages
    // projects; a user's own directory is refused.
    let elsewhere = project_dir(dir.path(), "elsewhere");
    let refused = driver_error(
        driver
            .copy_to(vm_id, elsewhere.to_str().unwrap(), "/workspace")
            .await,
    );
    assert!(matches!(refused, DriverError::Denied(_)), "{refused:?}");
    let project = project_dir(&dir.path().join("data/staging"), "project");
    driver
        .copy_to(vm_id, project.to_str().unwrap(), "/workspace")
        .await
        .unwrap();
    let readme = format!("http://{ip}:{}/README.md", ignite.http_port);
    eventually(
        Duration::from_secs(10),
        "the VM to serve the project",
        || async {
            let served = fetch(&readme, None).await;
            (served == Some((200, "project project\n".to_string()))).then_some(())
        },
    )
    .await;

    let inspected = driver.inspect(vm_id).await.unwrap().unwrap();
    assert_eq!(inspected.ip.as_deref(), Some(ip.as_str()));
    assert_eq!(inspected.state, VmState::Running);
    let listed = driver.list_vms().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].vm_id, vm_id);
    assert_eq!(listed[0].ip.as_deref(), Some(ip.as_str()));

    driver.remove(vm_id).await.unwrap();
    assert!(ignite.ps_names().is_empty());
    // The server's socket closes as its process exits, a moment after rm.
    eventually(
        Duration::from_secs(5),
        "the VM's server to stop",
        || async { (!listening(&ip, ignite.http_port)).then_some(()) },
    )
    .await;
    assert_eq!(driver.inspect(vm_id).await.unwrap(), None);
    // Removing an absent VM is a success.
    driver.remove(vm_id).await.unwrap();
}

#[tokio::test]
async fn creating_an_existing_vm_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let driver = driver(&ignite_config(dir.path(), &ignite));
    driver
        .create(&spec("vessel-b-0", ignite.http_port))
        .await
        .unwrap();
    let again = driver_error(driver.create(&spec("vessel-b-0", ignite.http_port)).await);
    assert!(matches!(again, DriverError::AlreadyExists(_)), "{again:?}");
    assert_eq!(ignite.ps_names().len(), 1);
}

#[tokio::test]
async fn only_the_named_vm_is_touched_never_a_prefix_match() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let driver = driver(&ignite_config(dir.path(), &ignite));
    // User "a-0" has a VM whose name starts with user "a"'s.
    driver
        .create(&spec("vessel-a-0-0", ignite.http_port))
        .await
        .unwrap();
    // A VM that is not Vessel's lives on the same ignite.
    let (code, out, err) = ignite.run(&[
        "run",
        "weaveworks/ignite-ubuntu",
        "--name",
        "other-team-vm",
        "--ssh",
    ]);
    assert_eq!(code, 0, "{out}{err}");

    assert_eq!(driver.inspect("vessel-a-0").await.unwrap(), None);
    driver.remove("vessel-a-0").await.unwrap();
    let copy = driver_error(driver.copy_to("vessel-a-0", "/tmp", "/workspace").await);
    assert!(matches!(copy, DriverError::NotFound(_)), "{copy:?}");
    let mut names = ignite.ps_names();
    names.sort();
    assert_eq!(
        names,
        vec!["other-team-vm".to_string(), "vessel-a-0-0".to_string()]
    );
    // list-vms shows only Vessel's VMs.
    let listed = driver.list_vms().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].vm_id, "vessel-a-0-0");
}

#[tokio::test]
async fn ignite_failures_map_to_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let driver = driver(&ignite_config(dir.path(), &ignite));
    std::fs::write(
        ignite.state.join("fail-run"),
        "failed to start container: no space left on device",
    )
    .unwrap();
    let failed = driver_error(driver.create(&spec("vessel-c-0", ignite.http_port)).await);
    match failed {
        DriverError::Failed(message) => {
            assert!(message.contains("no space left on device"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    std::fs::remove_file(ignite.state.join("fail-run")).unwrap();

    let bad_image = driver_error(
        driver
            .create(&VmSpec {
                image: "--privileged".into(),
                ..spec("vessel-c-0", ignite.http_port)
            })
            .await,
    );
    assert!(
        matches!(bad_image, DriverError::InvalidInput(_)),
        "{bad_image:?}"
    );
    assert!(ignite.ps_names().is_empty());
}

#[tokio::test]
async fn without_the_exec_grant_ignite_cannot_be_run() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let mut config = ignite_config(dir.path(), &ignite);
    config.plugins.vm.grants.exec.clear();
    let denied = driver_error(
        driver(&config)
            .create(&spec("vessel-d-0", ignite.http_port))
            .await,
    );
    assert!(matches!(denied, DriverError::Denied(_)), "{denied:?}");
    assert!(ignite.calls().is_empty());
}
