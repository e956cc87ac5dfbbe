//! The plugin sandbox, tested with the `hostile` plugin and the hostile
//! components no Rust guest can be: a plugin can use exactly the
//! capabilities it was granted, and a plugin that loops, hoards memory,
//! tables, instances or handles, or crashes, costs one failed call, not the
//! host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use vessel::config::{Config, DirGrant, ExecGrant, Liveness};
use vessel::plugins::limits::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use vessel::plugins::{
    DriverError, PluginError, PluginRuntime, PoolSize, ProxyDriver, SandboxLimit, VmDriver,
};
use vessel_tests::hostile_components::{self, Attack};
use vessel_tests::{TestHost, mock_vm_state, plugin, shared_cache_dir, test_config};

struct Sandbox {
    driver: VmDriver,
    granted: std::path::PathBuf,
    open_port: SocketAddr,
    closed_port: SocketAddr,
    _listeners: (std::net::TcpListener, std::net::TcpListener),
    _dir: tempfile::TempDir,
}

fn exec_grant(name: &str, command: &[&str], max_timeout: Duration) -> ExecGrant {
    ExecGrant {
        name: Some(name.to_string()),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        max_timeout,
        max_output_bytes: 64 * 1024,
        allow: Vec::new(),
    }
}

fn hostile_config(dir: &std::path::Path) -> Config {
    let mut config = test_config(&dir.join("data"), None);
    config.plugins.vm.path = plugin("hostile");
    config.plugins.vm.call_timeout = Duration::from_secs(1);
    config.plugins.vm.memory_limit_mib = 32;
    config.plugins.vm.max_handles = 32;
    config.plugins.vm.liveness = Liveness::Inspect;
    config.plugins.vm.grants.dirs = vec![
        DirGrant {
            host: dir.join("granted"),
            guest: "/granted".into(),
            read_only: false,
        },
        DirGrant {
            host: dir.join("readonly"),
            guest: "/readonly".into(),
            read_only: true,
        },
    ];
    let mut env_grant = exec_grant("env", &["/usr/bin/env"], Duration::from_secs(5));
    env_grant.env.insert("GRANTED".into(), "yes".into());
    config.plugins.vm.grants.exec = vec![
        exec_grant("echo", &["/bin/echo", "fixed"], Duration::from_secs(5)),
        env_grant,
        exec_grant("sleep", &["/bin/sleep"], Duration::from_millis(300)),
    ];
    config
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("granted")).unwrap();
    std::fs::create_dir_all(dir.path().join("readonly")).unwrap();
    std::fs::write(dir.path().join("granted/hello.txt"), "hello from the host").unwrap();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = hostile_config(dir.path());
    config.plugins.vm.grants.network = vec![open.local_addr().unwrap()];
    config
        .plugins
        .vm
        .settings
        .insert("answer".into(), toml::Value::Integer(42));
    let runtime = PluginRuntime::new(shared_cache_dir()).unwrap();
    let driver = VmDriver::load(&runtime, &config).unwrap();
    Sandbox {
        driver,
        granted: dir.path().join("granted"),
        open_port: open.local_addr().unwrap(),
        closed_port: closed.local_addr().unwrap(),
        _listeners: (open, closed),
        _dir: dir,
    }
}

/// Runs a probe and returns what it reported.
async fn probe(driver: &VmDriver, probe: &str) -> Result<String, PluginError> {
    let answer = tokio::time::timeout(Duration::from_secs(30), driver.inspect(probe))
        .await
        .expect("the host bounds every plugin call");
    answer.map(|info| info.and_then(|i| i.ip).unwrap_or_default())
}

/// Asserts that a call was stopped at `limit`.
fn assert_limit(result: Result<String, PluginError>, limit: SandboxLimit) {
    match result {
        Err(PluginError::LimitExceeded { limit: hit, .. }) if hit == limit => {}
        other => panic!("expected the call to be stopped at {limit}, got {other:?}"),
    }
}

/// A hostile component making `attack`, loaded as the VM driver with the
/// hostile plugin's limits (32 MiB) in a runtime with `slots` pooled call
/// slots (`0`: no pool); `dir` holds the component.
fn hostile_component(
    dir: &std::path::Path,
    attack: Attack,
    slots: u32,
) -> Result<VmDriver, PluginError> {
    let mut config = hostile_config(dir);
    config.plugins.vm.path = hostile_components::write(dir, attack);
    config.plugins.vm.grants.dirs.clear();
    let size = PoolSize {
        slots,
        ..PoolSize::default()
    };
    let runtime = PluginRuntime::with_pool(shared_cache_dir(), size).unwrap();
    VmDriver::load(&runtime, &config)
}

/// Loads a component making `attack` and calls it, then one making
/// `control`, a milder version that stays within the bounds (which shows
/// the component itself works), in a runtime with `slots` pooled call
/// slots; returns how the attack ended: refused when loaded, or the call's
/// answer.
async fn attack_then_control(
    attack: Attack,
    control: Attack,
    slots: u32,
) -> Result<Result<Option<vessel::plugins::VmInfo>, PluginError>, PluginError> {
    let dir = tempfile::tempdir().unwrap();
    let attacking = tempfile::tempdir_in(dir.path()).unwrap();
    let controlled = tempfile::tempdir_in(dir.path()).unwrap();
    let answer = match hostile_component(attacking.path(), attack, slots) {
        Ok(attacker) => Ok(tokio::time::timeout(
            Duration::from_secs(30),
            attacker.inspect("attack"),
        )
        .await
        .expect("the host bounds every plugin call")),
        Err(refused) => Err(refused),
    };
    let control = hostile_component(controlled.path(), control, slots)
        .expect("the same component within its bounds loads");
    assert_eq!(
        control.inspect("within bounds").await.unwrap(),
        None,
        "the same component within its bounds answers"
    );
    answer
}

/// Asserts that a component was stopped at `limit`: without a pool, when
/// its call instantiated it; with one, already when it was loaded (the
/// pool's slots are sized by the same bounds), with words naming `what`.
fn assert_component_limit(
    slots: u32,
    result: Result<Result<Option<vessel::plugins::VmInfo>, PluginError>, PluginError>,
    limit: SandboxLimit,
    what: &str,
) {
    match (slots, result) {
        (0, Ok(answer)) => assert_limit(answer.map(|_| String::new()), limit),
        (1.., Err(PluginError::Load { reason, .. })) => assert!(
            reason.contains("exceeds the sandbox's bounds on one call") && reason.contains(what),
            "{reason}"
        ),
        (_, other) => panic!("expected the component to be stopped at {limit}, got {other:?}"),
    }
}

fn driver_error(result: Result<String, PluginError>) -> DriverError {
    match result {
        Err(PluginError::Driver { error, .. }) => error,
        other => panic!("expected a driver error, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_runs_only_allowlisted_programs_without_a_shell() {
    let sandbox = sandbox();
    let echoed = probe(&sandbox.driver, "exec:echo:$USER;id").await.unwrap();
    assert_eq!(echoed, "fixed $USER;id\n");
    for program in ["/bin/sh:-c:id", "sh:-c:id", "/usr/bin/id", "/bin/echo2"] {
        let denied = driver_error(probe(&sandbox.driver, &format!("exec:{program}")).await);
        assert!(
            matches!(denied, DriverError::Denied(_)),
            "{program}: {denied:?}"
        );
    }
}

#[tokio::test]
async fn exec_gets_a_clean_environment_and_a_time_limit() {
    let sandbox = sandbox();
    assert_eq!(
        probe(&sandbox.driver, "exec:env").await.unwrap(),
        "GRANTED=yes\n"
    );
    let slow = driver_error(probe(&sandbox.driver, "exec:sleep:10").await);
    assert!(matches!(slow, DriverError::TimedOut(_)), "{slow:?}");
}

#[tokio::test]
async fn only_granted_directories_are_visible() {
    let sandbox = sandbox();
    assert_eq!(
        probe(&sandbox.driver, "read:/granted/hello.txt")
            .await
            .unwrap(),
        "hello from the host"
    );
    assert_eq!(
        probe(&sandbox.driver, "write:/granted/new.txt")
            .await
            .unwrap(),
        "written"
    );
    assert!(sandbox.granted.join("new.txt").exists());
    for path in [
        "read:/etc/passwd",
        "read:/granted/../../etc/passwd",
        "write:/readonly/x",
        "write:/tmp/x",
    ] {
        let refused = driver_error(probe(&sandbox.driver, path).await);
        assert!(
            matches!(refused, DriverError::Denied(_)),
            "{path}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn a_grant_is_the_directory_there_at_load_even_if_swapped_for_a_symlink() {
    // Granted directories are opened once, when the plugin loads. Someone
    // who can rename things on the host afterwards (a hostile project, a
    // careless operator) cannot redirect the grant: a symlink put where the
    // directory was does not make the plugin see where it points.
    let sandbox = sandbox();
    let outside = sandbox._dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("hello.txt"), "a secret outside the grant").unwrap();
    let moved = sandbox._dir.path().join("granted-moved");
    std::fs::rename(&sandbox.granted, &moved).unwrap();
    std::os::unix::fs::symlink(&outside, &sandbox.granted).unwrap();

    for _ in 0..3 {
        assert_eq!(
            probe(&sandbox.driver, "read:/granted/hello.txt")
                .await
                .unwrap(),
            "hello from the host",
            "every call sees the directory that was granted"
        );
    }
    assert_eq!(
        probe(&sandbox.driver, "write:/granted/after.txt")
            .await
            .unwrap(),
        "written"
    );
    assert!(moved.join("after.txt").exists());
    assert!(!outside.join("after.txt").exists());
}

#[tokio::test]
async fn only_granted_addresses_can_be_reached_and_nothing_is_inherited() {
    let sandbox = sandbox();
    assert_eq!(
        probe(&sandbox.driver, &format!("connect:{}", sandbox.open_port))
            .await
            .unwrap(),
        "connected"
    );
    let refused =
        driver_error(probe(&sandbox.driver, &format!("connect:{}", sandbox.closed_port)).await);
    assert!(matches!(refused, DriverError::Denied(_)), "{refused:?}");
    // No environment of the host leaks in; settings arrive as text.
    assert_eq!(probe(&sandbox.driver, "env").await.unwrap(), "");
    assert_eq!(
        probe(&sandbox.driver, "settings").await.unwrap(),
        "answer=42"
    );
}

#[tokio::test]
async fn a_looping_plugin_is_stopped_at_its_time_limit() {
    let sandbox = sandbox();
    let looped = probe(&sandbox.driver, "loop").await;
    assert!(
        matches!(looped, Err(PluginError::TimedOut { .. })),
        "{looped:?}"
    );
    // The next call works.
    assert_eq!(
        probe(&sandbox.driver, "settings").await.unwrap(),
        "answer=42"
    );
}

#[tokio::test]
async fn an_over_allocating_plugin_is_stopped_at_its_memory_limit() {
    let sandbox = sandbox();
    let hoarded = probe(&sandbox.driver, "alloc").await;
    assert_limit(hoarded, SandboxLimit::Memory { mib: 32 });
    assert_eq!(
        probe(&sandbox.driver, "settings").await.unwrap(),
        "answer=42"
    );
}

#[tokio::test]
async fn memory_is_limited_over_all_the_memories_of_a_call() {
    // Two memories of 20 MiB each: each under the 32 MiB limit, together
    // over it.
    for slots in [0, 2] {
        let answer = attack_then_control(
            Attack::TwoMemories { mib: 20 },
            Attack::TwoMemories { mib: 10 },
            slots,
        )
        .await
        .expect("the component loads");
        assert_limit(
            answer.map(|_| String::new()),
            SandboxLimit::Memory { mib: 32 },
        );
    }
}

#[tokio::test]
async fn table_elements_are_limited_over_all_the_tables_of_a_call() {
    // Two tables, each grown by more than half the limit.
    let elements = u32::try_from(MAX_TABLE_ELEMENTS / 2 + 1).unwrap();
    for slots in [0, 2] {
        let answer = attack_then_control(
            Attack::GrowTables { elements },
            Attack::GrowTables { elements: 1000 },
            slots,
        )
        .await
        .expect("the component loads");
        let limit = SandboxLimit::TableElements {
            max: MAX_TABLE_ELEMENTS,
        };
        assert_limit(answer.map(|_| String::new()), limit);
    }
}

#[tokio::test]
async fn instances_tables_and_memories_are_counted_per_call() {
    let extra = |instances, memories, tables| Attack::ExtraInstances {
        instances,
        memories,
        tables,
    };
    let limited = |n: usize| u32::try_from(n).unwrap();
    for slots in [0, 2] {
        // More module instances than a call may create...
        let answer =
            attack_then_control(extra(limited(MAX_INSTANCES), 0, 0), extra(2, 0, 0), slots).await;
        let limit = SandboxLimit::Instances { max: MAX_INSTANCES };
        assert_component_limit(slots, answer, limit, "core module instances");
        // ... memories (one of the component's own, and as many more) ...
        let answer =
            attack_then_control(extra(1, limited(MAX_MEMORIES), 0), extra(1, 1, 0), slots).await;
        let limit = SandboxLimit::Memories { max: MAX_MEMORIES };
        assert_component_limit(slots, answer, limit, "memories");
        // ... and tables.
        let answer =
            attack_then_control(extra(1, 0, limited(MAX_TABLES)), extra(1, 0, 2), slots).await;
        let limit = SandboxLimit::Tables { max: MAX_TABLES };
        assert_component_limit(slots, answer, limit, "tables");
    }
}

#[tokio::test]
async fn a_plugin_hoarding_handles_is_stopped_at_its_handle_limit() {
    let sandbox = sandbox();
    // Open files, and directory listings (a descriptor and a stream each).
    for attack in ["handles:/granted/hello.txt", "listings:/granted"] {
        let hoarded = probe(&sandbox.driver, attack).await;
        assert_limit(hoarded, SandboxLimit::Handles { max: 32 });
    }
    // Every handle went with the call: the next one opens files again.
    assert_eq!(
        probe(&sandbox.driver, "read:/granted/hello.txt")
            .await
            .unwrap(),
        "hello from the host"
    );
}

#[tokio::test]
async fn a_crashing_plugin_fails_its_call_only() {
    let sandbox = sandbox();
    let crashed = probe(&sandbox.driver, "trap").await;
    match crashed {
        Err(PluginError::Trapped { message, .. }) => assert!(
            message.contains("trapping on purpose") || message.contains("unreachable"),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(
        probe(&sandbox.driver, "settings").await.unwrap(),
        "answer=42"
    );
}

#[tokio::test]
async fn a_plugin_of_the_wrong_kind_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.plugins.proxy.path = plugin("mock_vm");
    let runtime = PluginRuntime::new(shared_cache_dir()).unwrap();
    let error = ProxyDriver::load(&runtime, &config)
        .err()
        .expect("a VM plugin is not a proxy");
    assert!(
        error
            .to_string()
            .contains("proxy-plugin world of vessel:infra@0.2.0"),
        "{error}"
    );

    config.plugins.vm.path = dir.path().join("missing.wasm");
    let error = VmDriver::load(&runtime, &config)
        .err()
        .expect("missing file");
    assert!(error.to_string().contains("build-plugins"), "{error}");
}

#[tokio::test]
async fn the_host_keeps_answering_while_a_plugin_loops() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = hostile_config(dir.path());
    config.plugins.vm.call_timeout = Duration::from_secs(3);
    // The session below is the test's own: no Reaper may stop it meanwhile.
    config.reaper.enabled = false;
    let host = TestHost::start(config).await;
    // An active session whose VM id (user "loop"'s) makes the hostile
    // plugin's inspect loop: the liveness check of a start then spins until
    // its limit.
    let store = host.manager.store().clone();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let record =
        vessel_tests::store_suite::record("loop", vessel::store::SessionStatus::Active, "", now_ms);
    store
        .insert_new(&record, vessel::store::Capacity::NONE)
        .await
        .unwrap();
    let project = vessel_tests::project_dir(dir.path(), "p");
    let api = host.api();
    let start = tokio::spawn({
        let api = api.clone();
        async move { api.start("loop", &project).await }
    });
    // While the plugin spins, the host answers other requests, even on this
    // test's single runtime thread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!start.is_finished(), "the looping call should still run");
    let health = api.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert!(
        !start.is_finished(),
        "healthz was answered while the plugin looped"
    );
    // The looping liveness check is cut off; the session is kept.
    let answer = start.await.unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["reused"], true);
    host.shutdown().await;
}

#[tokio::test]
async fn calls_beyond_the_pool_wait_for_a_slot_outside_their_time_limit() {
    // One slot, and six calls that each hold it for a quarter of their one
    // second limit: together they need a second and a half. None fails for
    // want of a slot, and none is stopped for the time it waited for one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("granted")).unwrap();
    std::fs::create_dir_all(dir.path().join("readonly")).unwrap();
    let mut config = hostile_config(dir.path());
    // The sleeps themselves get room: on a loaded machine spawning
    // `/bin/sleep 0.25` can take longer than the grant's usual 300 ms, and
    // this test is about the wait for a slot, not the exec limit.
    for grant in &mut config.plugins.vm.grants.exec {
        if grant.name.as_deref() == Some("sleep") {
            grant.max_timeout = Duration::from_millis(900);
        }
    }
    let size = PoolSize {
        slots: 1,
        ..PoolSize::default()
    };
    let runtime = PluginRuntime::with_pool(shared_cache_dir(), size).unwrap();
    assert!(runtime.pooled());
    let driver = VmDriver::load(&runtime, &config).unwrap();
    let calls = (0..6).map(|_| probe(&driver, "exec:sleep:0.25"));
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), "");
    }
}

#[tokio::test]
async fn a_mock_pointed_at_a_directory_it_was_not_granted_says_so() {
    // The mock keeps its state only where it was granted; pointed
    // elsewhere it cannot reach the host's files there, and says what to
    // fix rather than answering as if the VM did not exist.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.plugins.vm.settings.insert(
        "state_dir".into(),
        toml::Value::String(dir.path().display().to_string()),
    );
    let runtime = PluginRuntime::new(shared_cache_dir()).unwrap();
    let driver = VmDriver::load(&runtime, &config).unwrap();
    for answer in [
        driver.inspect("vessel-user-a-x").await.map(|_| ()),
        driver.list_vms().await.map(|_| ()),
    ] {
        match answer {
            Err(PluginError::Driver {
                error: DriverError::Unavailable(message),
                ..
            }) => assert!(message.contains("grant it a directory"), "{message}"),
            other => panic!("expected the state directory to be refused, got {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing but the host's data directory was made"
    );
}

#[tokio::test]
async fn the_mock_reads_its_files_whole_however_many_reads_they_take() {
    // The mock reads its files without asking for their size first (see
    // mock-state's read_small_file): files of more than one buffer, of
    // exactly two, and tiny ones all come back whole.
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("data"), None);
    let runtime = PluginRuntime::new(shared_cache_dir()).unwrap();
    let driver = VmDriver::load(&runtime, &config).unwrap();
    let state = mock_vm_state(&config);
    // File sizes: three reads (the last short), exactly two full ones (and
    // a third that finds the end), one short one.
    for size in [10_000, 8192, 10] {
        let message = format!("{}END", "x".repeat(size - "failed:END".len()));
        let length = size;
        state.inject("inspect", &format!("failed:{message}"));
        match driver.inspect("vessel-user-a-x").await {
            Err(PluginError::Driver {
                error: DriverError::Failed(got),
                ..
            }) => assert!(
                got == message,
                "{length}: {} bytes, ending {:?}",
                got.len(),
                &got[got.len().saturating_sub(8)..]
            ),
            other => panic!("expected the injected failure, got {other:?}"),
        }
    }
}
