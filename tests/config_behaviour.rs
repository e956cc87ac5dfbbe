//! The configuration as an operator meets it, through the real `vessel`
//! binary: `check-config` prints TOML that keeps every default a partial
//! table leaves out and survives a reader that stops early, `init-config`
//! writes a file that loads to the defaults, unknown keys are named with
//! their file and line, and `redis_url = ""` means the embedded store.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use vessel::config::{Config, Liveness};
use vessel_tests::{HostProcess, free_port, host_config_toml, vessel_binary};

/// `vessel` run in `dir`, with no `VESSEL_*` variable of the test's
/// environment, so that only the arguments and files count.
fn vessel(dir: &Path) -> Command {
    let mut command = Command::new(vessel_binary());
    command.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VESSEL_") {
            command.env_remove(name);
        }
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run vessel")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `vessel check-config`, with `file` if given; panics unless it succeeds.
fn check_config(dir: &Path, file: Option<&Path>) -> String {
    let mut command = vessel(dir);
    command.arg("check-config");
    if let Some(file) = file {
        command.arg("--config").arg(file);
    }
    let output = run(&mut command);
    assert!(output.status.success(), "check-config: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn check_config_prints_toml_that_keeps_a_partial_tables_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vessel.toml");
    std::fs::write(&file, "[plugins.vm]\nliveness = \"tcp\"\n").unwrap();

    let printed = check_config(dir.path(), Some(&file));

    let table: toml::Table = toml::from_str(&printed).expect("check-config prints TOML");
    let vm = &table["plugins"]["vm"];
    assert_eq!(vm["path"].as_str(), Some("mock_vm.wasm"), "{printed}");
    assert_eq!(vm["liveness"].as_str(), Some("tcp"), "{printed}");
    assert_eq!(
        vm["grants"]["dirs"][0]["host"].as_str(),
        Some("{data_dir}/mock-vm"),
        "{printed}"
    );
    // Loaded back, it is the default configuration but for what the file
    // set.
    let mut expected = Config::default();
    expected.plugins.vm.liveness = Liveness::Tcp;
    assert_eq!(Config::from_toml(&printed).unwrap(), expected);
}

#[test]
fn check_config_into_a_reader_that_stops_early_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vessel.toml");
    // Far more than a pipe holds, so that check-config is still writing
    // when the reader goes away.
    let mut text = String::from("[plugins.vm.settings]\n");
    for i in 0..6000 {
        text.push_str(&format!("setting_{i:05} = \"{}\"\n", "x".repeat(40)));
    }
    std::fs::write(&file, text).unwrap();

    let mut child = vessel(dir.path())
        .args(["check-config", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vessel");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_exact(&mut first)
        .expect("the first bytes");
    // The read end is closed here, as `head -c 16` does.
    let output = child.wait_with_output().expect("wait for vessel");

    assert!(first.starts_with(b"# "), "{first:?}");
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        stderr(&output)
    );
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn init_config_writes_a_file_that_loads_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vessel.toml");

    let written = run(vessel(dir.path()).arg("init-config").arg(&file));
    assert!(written.status.success(), "{}", stderr(&written));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("# "), "commented: {text}");
    assert_eq!(
        check_config(dir.path(), Some(&file)),
        check_config(dir.path(), None),
        "the written file is the defaults"
    );

    // Printed instead with `-`.
    let printed = run(vessel(dir.path()).args(["init-config", "-"]));
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert_eq!(stdout(&printed), text);

    // An existing file is kept unless --force.
    std::fs::write(&file, "listen = \"127.0.0.1:9\"\n").unwrap();
    let refused = run(vessel(dir.path()).arg("init-config").arg(&file));
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "listen = \"127.0.0.1:9\"\n"
    );
    let forced = run(vessel(dir.path())
        .arg("init-config")
        .arg(&file)
        .arg("--force"));
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[test]
fn an_unknown_key_is_named_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vessel.toml");
    std::fs::write(
        &file,
        "[plugins.vm]\nliveness = \"tcp\"\n\n[plugins.vm.grants]\nsymlinks = false\ndirz = []\n",
    )
    .unwrap();
    let expected = format!(
        "{}:6:1: unknown field `dirz`, expected one of",
        file.display()
    );

    for command in ["check-config", "serve"] {
        let output = run(vessel(dir.path()).arg(command).arg("--config").arg(&file));
        assert!(!output.status.success(), "{command} accepted it");
        let error = stderr(&output);
        assert!(error.contains(&expected), "{command}: {error}");
        assert!(error.contains("`dirs`"), "{command}: {error}");
        assert!(!error.contains("panicked"), "{command}: {error}");
    }
}

#[tokio::test]
async fn an_empty_redis_url_in_the_file_starts_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = host_config_toml(dir.path(), port, "", "[store]\nredis_url = \"\"\n");

    let host = HostProcess::start(dir.path(), &config, port, "host.log").await;

    let health = host.api().get("/healthz").await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    assert_eq!(
        health.body["store"]["kind"], "embedded",
        "{:?}",
        health.body
    );
    assert!(dir.path().join("data/sessions.redb").exists());
}

#[tokio::test]
async fn a_relative_data_dir_still_gives_drivers_absolute_paths() {
    // The default `data_dir` is `.vessel`, relative to where the host was
    // started. A driver is handed the staged copy of the project to copy
    // into the VM, and cannot know the host's working directory: the path
    // it gets must be absolute (the mock, like any sound driver, refuses a
    // relative one), or every cold start on the defaults fails.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let absolute = format!("data_dir = \"{}\"", dir.path().join("data").display());
    let config = host_config_toml(dir.path(), port, "", "");
    assert!(config.contains(&absolute), "{config}");
    let config = config.replace(&absolute, "data_dir = \"data\"");
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("README.md"), "hello\n").unwrap();

    let host = HostProcess::start(dir.path(), &config, port, "host.log").await;
    let started = host.api().start("alice", &project).await;

    assert_eq!(
        started.status,
        200,
        "{:?}\n{}",
        started.body,
        host.log_text()
    );
    assert_eq!(started.body["status"], "active", "{:?}", started.body);
    let vms = vessel_tests::MockState {
        dir: dir.path().join("data/mock-vm"),
    };
    assert_eq!(
        vms.count_ok("copy-to", started.body["vmId"].as_str().unwrap()),
        1
    );
}

/// The nice value of each of `pid`'s threads named `name` (Linux: field 19
/// of `/proc/<pid>/task/<tid>/stat`, after the parenthesised name).
fn nice_of_threads(pid: u32, name: &str) -> Vec<i32> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        // Fields from the state (3rd) on; nice is the 19th.
        let fields: Vec<&str> = after_name.split(' ').collect();
        nice.push(fields[19 - 3].parse().unwrap());
    }
    nice
}

#[tokio::test]
async fn the_reaper_and_the_reconciler_run_below_the_requests_priority() {
    // A sweep over many sessions must take spare CPU only: the host runs
    // its Reaper and reconciler on threads of their own, `nice` lower than
    // the threads that answer requests.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = host_config_toml(dir.path(), port, "", "[reconcile]\nnice = 4\n");
    let mut host = HostProcess::start(dir.path(), &config, port, "host.log").await;
    let pid = host.pid();
    let serving = nice_of_threads(pid, "tokio-rt-worker");
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .collect();
    assert!(
        !serving.is_empty(),
        "the host's worker threads are named tokio-rt-worker: {names:?}"
    );
    let base = serving[0];
    assert!(serving.iter().all(|&n| n == base), "{serving:?}");
    // (Threads its runtime starts for blocking work share its name and
    // priority.)
    let reaper = nice_of_threads(pid, "vessel-reaper");
    assert!(
        !reaper.is_empty() && reaper.iter().all(|&n| n == (base + 10).min(19)),
        "the Reaper runs nice 10 (the default) below the requests: {reaper:?}, requests {base}"
    );
    // Thread names are cut to 15 bytes.
    let reconciler = nice_of_threads(pid, "vessel-reconcil");
    assert!(
        !reconciler.is_empty() && reconciler.iter().all(|&n| n == (base + 4).min(19)),
        "the reconciler's threads, as configured: {reconciler:?}, requests {base}"
    );
    // What they spawn (a Redis connection's reader, when they are the first
    // to use or reconnect it) keeps the requests' priority.
    let io = nice_of_threads(pid, vessel::background::IO_THREAD);
    assert!(
        io.contains(&base),
        "the background runtimes' own threads run at the requests' priority: {io:?}"
    );
    // And the host still answers, and still stops cleanly.
    assert_eq!(host.api().get("/healthz").await.status, 200);
    assert_eq!(host.terminate(), Some(0), "{}", host.log_text());
}
