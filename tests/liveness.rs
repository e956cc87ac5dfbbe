//! A slow dev server never costs a user their VM: on a start that finds the
//! session running, a probe that fails leads to the VM driver's word, and
//! only "gone" ends the session. On the ignite stand-in, whose VMs are real
//! HTTP servers that a `paused` file takes down while the VM keeps running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vessel::config::{Config, Liveness};
use vessel_tests::ignite::FakeIgnite;
use vessel_tests::{RedisServer, TestHost, eventually, plugin, project_dir, test_config};

fn ignite_config(dir: &Path, ignite: &FakeIgnite, redis: Option<String>) -> Config {
    let mut config = test_config(&dir.join("data"), redis);
    config.plugins.vm.path = plugin("ignite_vm");
    config.plugins.vm.liveness = Liveness::Tcp;
    config.plugins.vm.grants.dirs.clear();
    config.plugins.vm.grants.exec = vec![ignite.grant()];
    config.session.ports = vec![ignite.http_port];
    config
}

/// The state directory of the one VM the stand-in holds.
fn only_vm_dir(ignite: &FakeIgnite) -> PathBuf {
    let vms: Vec<_> = std::fs::read_dir(ignite.state.join("vms"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(vms.len(), 1, "{vms:?}");
    vms[0].clone()
}

/// Takes the VM's dev server down (connections refused) or back up.
fn pause(vm_dir: &Path, paused: bool) {
    if paused {
        std::fs::write(vm_dir.join("paused"), "").unwrap();
    } else {
        let _ = std::fs::remove_file(vm_dir.join("paused"));
    }
}

async fn refused(ip: &str, port: u16) {
    eventually(
        Duration::from_secs(5),
        "the dev server to go down",
        || async {
            let connect = tokio::net::TcpStream::connect((ip, port)).await;
            connect.is_err().then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_dev_server_under_twenty_starts_on_two_hosts_keeps_its_vm() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let config = ignite_config(dir.path(), &ignite, Some(redis.url()));
    let first = TestHost::start(config.clone()).await;
    let second = TestHost::start(config).await;
    let project = project_dir(dir.path(), "p");

    let started = first.api().start("user-m1", &project).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    let vm_id = started.body["vmId"].as_str().unwrap().to_string();
    let ip = started.body["ip"].as_str().unwrap().to_string();
    let vm_dir = only_vm_dir(&ignite);

    // The dev server stops accepting for two seconds while 20 starts arrive.
    pause(&vm_dir, true);
    refused(&ip, ignite.http_port).await;
    let resume = {
        let vm_dir = vm_dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            pause(&vm_dir, false);
        })
    };
    let starts = (0..20).map(|i| {
        let api = if i % 2 == 0 {
            first.api()
        } else {
            second.api()
        };
        let project = project.clone();
        async move { api.start("user-m1", &project).await }
    });
    let answers = futures::future::join_all(starts).await;
    resume.await.unwrap();
    for answer in &answers {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["vmId"], vm_id.as_str());
        assert_eq!(answer.body["reused"], true);
        let health = answer.body["health"].as_str().unwrap();
        assert!(["unresponsive", "ok"].contains(&health), "{health}");
    }
    assert!(
        answers.iter().any(|a| a.body["health"] == "unresponsive"),
        "the stall was not seen"
    );
    // One VM, ever, and never removed.
    assert_eq!(ignite.count("run"), 1, "{:?}", ignite.calls());
    assert_eq!(ignite.count("rm"), 0, "{:?}", ignite.calls());
    assert_eq!(ignite.ps_names(), vec![vm_id.clone()]);
    // Once the server answers again, so does the start.
    eventually(Duration::from_secs(10), "health ok again", || async {
        let answer = first.api().start("user-m1", &project).await;
        (answer.body["health"] == "ok").then_some(())
    })
    .await;
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_running_vm_whose_server_is_down_is_kept_and_reported_unresponsive() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let host = TestHost::start(ignite_config(dir.path(), &ignite, None)).await;
    let project = project_dir(dir.path(), "p");
    let started = host.api().start("dana", &project).await;
    assert_eq!(started.status, 200);
    assert_eq!(started.body["health"], "ok");
    let ip = started.body["ip"].as_str().unwrap().to_string();
    let vm_dir = only_vm_dir(&ignite);

    pause(&vm_dir, true);
    refused(&ip, ignite.http_port).await;
    for _ in 0..3 {
        let again = host.api().start("dana", &project).await;
        assert_eq!(again.status, 200, "{:?}", again.body);
        assert_eq!(again.body["reused"], true);
        assert_eq!(again.body["health"], "unresponsive");
        assert_eq!(again.body["vmId"], started.body["vmId"]);
    }
    assert_eq!(ignite.count("run"), 1);
    assert_eq!(ignite.count("rm"), 0);
    pause(&vm_dir, false);
    host.shutdown().await;
}

#[tokio::test]
async fn a_vm_removed_behind_vessels_back_is_replaced_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let ignite = FakeIgnite::new(dir.path(), Duration::ZERO);
    let host = TestHost::start(ignite_config(dir.path(), &ignite, None)).await;
    let project = project_dir(dir.path(), "p");
    let started = host.api().start("eve", &project).await;
    assert_eq!(started.status, 200);
    let vm_id = started.body["vmId"].as_str().unwrap().to_string();

    let (code, out, err) = ignite.run(&["rm", "-f", &vm_id]);
    assert_eq!(code, 0, "{out}{err}");
    let replaced = host.api().start("eve", &project).await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    assert_eq!(replaced.body["reused"], false);
    assert_eq!(replaced.body["health"], "ok");
    assert_eq!(replaced.body["vmId"], vm_id.as_str());
    assert_eq!(ignite.count("run"), 2);
    assert_eq!(ignite.ps_names(), vec![vm_id]);
    host.shutdown().await;
}
