//! Grants narrower than their program, origin or directory, tested with the
//! `hostile` plugin: an exec grant's argument policy, an http grant's
//! methods and paths, and symlinks in granted directories. Each attack
//! fails with `denied`, and the host keeps serving.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use vessel::config::{ArgForm, Config, DirGrant, ExecGrant, HttpGrant, Liveness};
use vessel::plugins::{DriverError, PluginError, PluginRuntime, VmDriver};
use vessel_tests::proxies::FakeVm;
use vessel_tests::{plugin, shared_cache_dir, test_config};

fn hostile(dir: &Path, configure: impl FnOnce(&mut Config)) -> VmDriver {
    let mut config = test_config(&dir.join("data"), None);
    config.plugins.vm.path = plugin("hostile");
    config.plugins.vm.liveness = Liveness::Inspect;
    std::fs::create_dir_all(dir.join("granted")).unwrap();
    config.plugins.vm.grants.dirs = vec![DirGrant {
        host: dir.join("granted"),
        guest: "/granted".into(),
        read_only: false,
    }];
    configure(&mut config);
    let runtime = PluginRuntime::new(shared_cache_dir()).unwrap();
    VmDriver::load(&runtime, &config).unwrap()
}

/// Runs a probe; `Ok(answer)` or the driver's error.
async fn probe(driver: &VmDriver, probe: &str) -> Result<String, DriverError> {
    match driver.inspect(probe).await {
        Ok(Some(info)) => Ok(info.ip.unwrap_or_default()),
        Ok(None) => Ok(String::new()),
        Err(PluginError::Driver { error, .. }) => Err(error),
        Err(other) => panic!("{probe}: {other}"),
    }
}

#[tokio::test]
async fn an_exec_grant_runs_only_the_arguments_its_policy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let driver = hostile(dir.path(), |config| {
        config.plugins.vm.grants.exec = vec![ExecGrant {
            name: Some("echo".into()),
            command: vec!["/bin/echo".into()],
            env: BTreeMap::new(),
            max_timeout: Duration::from_secs(5),
            max_output_bytes: 1024,
            allow: vec![ArgForm {
                args: vec!["-t".into()],
                options: BTreeMap::new(),
            }],
        }];
    });
    assert_eq!(probe(&driver, "exec:echo:-t").await.unwrap(), "-t\n");
    // As a hostile nginx driver would: another config file, more arguments.
    for attack in [
        "exec:echo:-c:/routes/evil.conf",
        "exec:echo:-t:-g:load_module x",
        "exec:echo",
    ] {
        let denied = probe(&driver, attack).await;
        assert!(
            matches!(&denied, Err(DriverError::Denied(m)) if m.contains("not allowed by its grant")),
            "{attack}: {denied:?}"
        );
    }
}

#[tokio::test]
async fn an_http_grant_reaches_only_its_methods_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeVm::start("127.0.0.1", "admin").await;
    let origin = format!("http://127.0.0.1:{}", server.port);
    let driver = hostile(dir.path(), |config| {
        config.plugins.vm.grants.http = vec![HttpGrant::Limited {
            origin: origin.clone(),
            methods: vec!["GET".into(), "PATCH".into()],
            paths: vec!["/id/vessel-".into()],
        }];
    });
    assert_eq!(
        probe(&driver, &format!("http:GET:{origin}/id/vessel-a"))
            .await
            .unwrap(),
        "200"
    );
    // As a hostile Caddy driver would: replace the whole config (moving the
    // admin endpoint), or climb out of the allowed prefix.
    for attack in [
        format!("http:POST:{origin}/load"),
        format!("http:GET:{origin}/load"),
        format!("http:POST:{origin}/id/vessel-a"),
        format!("http:GET:{origin}/id/vessel-a/../../load"),
        format!("http:GET:{origin}/id/vessel-%2e%2e/%2e%2e/load"),
    ] {
        let denied = probe(&driver, &attack).await;
        assert!(
            matches!(denied, Err(DriverError::Denied(_))),
            "{attack}: {denied:?}"
        );
    }
}

#[tokio::test]
async fn symlinks_in_granted_directories_are_refused_unless_granted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "host secret").unwrap();
    let driver = hostile(dir.path(), |_| {});
    // As a hostile nginx driver would: a route file that is a link to a
    // file root nginx would read (and echo in its error).
    for target in ["../secret", "../../../../../etc/shadow", "hello.txt"] {
        let denied = probe(&driver, &format!("symlink:{target}:/granted/x.conf")).await;
        assert!(
            matches!(denied, Err(DriverError::Denied(_))),
            "{target}: {denied:?}"
        );
        assert!(std::fs::symlink_metadata(dir.path().join("granted/x.conf")).is_err());
    }
    // Files are still written as usual.
    assert_eq!(
        probe(&driver, "write:/granted/plain.conf").await.unwrap(),
        "written"
    );

    // A grant that allows symlinks gets WASI's own behaviour.
    let allowed = hostile(dir.path(), |config| {
        config.plugins.vm.grants.symlinks = true
    });
    assert_eq!(
        probe(&allowed, "symlink:plain.conf:/granted/link.conf")
            .await
            .unwrap(),
        "linked"
    );
    let link = std::fs::read_link(dir.path().join("granted/link.conf")).unwrap();
    assert_eq!(link, Path::new("plain.conf"));
    // Absolute targets stay refused by WASI itself.
    assert!(
        probe(&allowed, "symlink:/etc/shadow:/granted/abs.conf")
            .await
            .is_err()
    );
}
