//! A graceful shutdown of the real `vessel` binary (SIGTERM): it stops
//! accepting connections, finishes the requests in flight and their driver
//! calls (for at most `shutdown_grace`), stops the Reaper cleanly and exits
//! with 0. A shutdown is not a stop: the sessions it leaves behind keep their
//! VMs and routes and are served again by the next host; a start cut off by
//! the grace is taken over once its lease expires.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vessel_tests::{HostProcess, MockState, RedisServer, eventually, free_port, project_dir};

/// The configuration of a host on `port` with its data under `dir/data` and
/// the mock plugins; `top` is TOML placed first (top-level keys, then any
/// tables), `session` and `vm` go in `[session]` and `[plugins.vm]`.
fn config_toml(dir: &Path, port: u16, top: &str, session: &str, vm: &str) -> String {
    let tables = format!("[session]\n{session}\n{}", vessel_tests::mock_vm_table(vm));
    vessel_tests::host_config_toml(dir, port, top, &tables)
}

/// The mock VM's and mock proxy's state under `dir/data`.
fn mock_states(dir: &Path) -> (MockState, MockState) {
    (
        MockState {
            dir: dir.join("data/mock-vm"),
        },
        MockState {
            dir: dir.join("data/mock-proxy"),
        },
    )
}

/// `POST /start` that reports a failed exchange (e.g. a connection the host
/// closed) instead of panicking, so a request the host cuts off can be
/// inspected.
async fn try_start(base: &str, user: &str, project: &Path) -> Result<(u16, Value), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(format!("{base}/start"))
        .json(&serde_json::json!({"userId": user, "projectPath": project}))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Sends SIGTERM to the host process.
fn send_sigterm(host: &HostProcess) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {} failed", host.pid());
}

/// Waits (at most `bound`) for the host to exit after a signal and returns
/// its exit code; kills it and fails the test past the bound.
async fn wait_for_exit(host: &mut HostProcess, bound: Duration) -> Option<i32> {
    let pid = host.pid();
    let deadline = Instant::now() + bound;
    while vessel_tests::process_is_running(pid) {
        if Instant::now() >= deadline {
            host.kill();
            panic!(
                "vessel did not exit within {bound:?} of SIGTERM; its log:\n{}",
                host.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reaps the exited process (the signal it also sends reaches nothing).
    host.terminate()
}

/// Whether a new TCP connection to `port` is refused (nothing listens).
async fn connection_refused(port: u16) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    {
        Ok(Err(error)) => error.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// SIGTERM during a cold start: the listener closes at once, the start in
/// flight is finished and answered (200 with its URL), the Reaper stops
/// cleanly and the exit code is 0; the session that already ran and the
/// one just started keep their VMs and routes and are active for the next
/// host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_start_in_flight_and_leaves_sessions_running() {
    let dir = tempfile::tempdir().unwrap();
    let alice_project = project_dir(dir.path(), "alice");
    let bob_project = project_dir(dir.path(), "bob");
    let port = free_port();
    // Creating a VM takes 3 s: long enough to signal the host mid-call.
    let config = config_toml(
        dir.path(),
        port,
        "",
        "",
        "settings = { boot_delay_ms = 3000 }",
    );
    let (vms, routes) = mock_states(dir.path());

    let mut host = HostProcess::start(dir.path(), &config, port, "first.log").await;
    let alice = host.api().start("alice", &alice_project).await;
    assert_eq!(alice.status, 200, "{:?}", alice.body);

    let base = host.base.clone();
    let bob = {
        let project = bob_project.clone();
        tokio::spawn(async move { try_start(&base, "bob", &project).await })
    };
    eventually(
        Duration::from_secs(20),
        "the mock VM driver to be creating bob's VM",
        || async {
            let item = vms.item("vessel-bob-0")?;
            (item["state"] == "creating").then_some(())
        },
    )
    .await;

    send_sigterm(&host);
    eventually(
        Duration::from_secs(5),
        "new connections to be refused after SIGTERM",
        || async { connection_refused(port).await.then_some(()) },
    )
    .await;
    assert!(
        !bob.is_finished(),
        "the listener must close while the start in flight is still running, not after it"
    );
    let code = wait_for_exit(&mut host, Duration::from_secs(30)).await;
    let log = host.log_text();

    let bob = bob.await.expect("bob's start task");
    let (status, body) = bob.unwrap_or_else(|e| {
        panic!("the start in flight was cut off by the shutdown: {e}\nlog:\n{log}")
    });
    assert_eq!(status, 200, "{body:?}\nlog:\n{log}");
    assert_eq!(body["status"], "active", "{body:?}");
    assert_eq!(body["reused"], false, "{body:?}");
    assert!(
        body["url"].as_str().is_some_and(|url| !url.is_empty()),
        "{body:?}"
    );
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(log.contains("reaper stopped"), "log:\n{log}");
    assert!(connection_refused(port).await);

    // Not torn down: both VMs and routes are still there, nothing removed.
    let both = vec!["vessel-alice-0".to_string(), "vessel-bob-0".to_string()];
    assert_eq!(vms.items(), both);
    assert_eq!(routes.items(), both);
    assert_eq!(vms.item("vessel-bob-0").unwrap()["state"], "running");
    assert_eq!(vms.count("remove"), 0);
    assert_eq!(routes.count("remove-route"), 0);

    // The next host serves both sessions as they were.
    let mut second = HostProcess::start(dir.path(), &config, port, "second.log").await;
    let api = second.api();
    for (user, url) in [("alice", &alice.body["url"]), ("bob", &body["url"])] {
        let status = api.status(user).await;
        assert_eq!(status.status, 200, "{:?}", status.body);
        assert_eq!(status.body["status"], "active", "{user}: {:?}", status.body);
        assert_eq!(&status.body["url"], url, "{user}");
    }
    let again = api.start("bob", &bob_project).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["reused"], true, "{:?}", again.body);
    assert_eq!(vms.count("create"), 2);
    assert_eq!(vms.count("remove"), 0);
    assert_eq!(
        wait_for_exit_after_sigterm(&mut second).await,
        Some(0),
        "{}",
        second.log_text()
    );
}

/// Sends SIGTERM and waits (bounded) for the exit code.
async fn wait_for_exit_after_sigterm(host: &mut HostProcess) -> Option<i32> {
    send_sigterm(host);
    wait_for_exit(host, Duration::from_secs(30)).await
}

/// The grace bounds a shutdown: with a VM driver call that hangs (and a
/// call timeout of a minute), SIGTERM still ends the process with 0 soon
/// after `shutdown_grace`. The start it cut off is not left behind: once
/// its lease expires, the user's next start on a new host takes it over
/// and succeeds, with exactly one VM for the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_grace_bounds_a_hanging_driver_call_and_the_start_is_taken_over() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let project = project_dir(dir.path(), "carol");
    let port = free_port();
    let config = config_toml(
        dir.path(),
        port,
        &format!(
            "shutdown_grace = \"1s\"\n[store]\nredis_url = \"{}\"",
            redis.url()
        ),
        "lease = \"1s\"",
        "call_timeout = \"60s\"",
    );
    let (vms, routes) = mock_states(dir.path());

    let mut host = HostProcess::start(dir.path(), &config, port, "first.log").await;
    vms.inject("create", "hang");
    let base = host.base.clone();
    let cut = {
        let project = project.clone();
        tokio::spawn(async move { try_start(&base, "carol", &project).await })
    };
    eventually(
        Duration::from_secs(20),
        "carol's start to reach the VM driver's create",
        || async {
            let record = redis.get_json("session:carol")?;
            (record["startStep"] == "creating-vm").then_some(())
        },
    )
    .await;

    send_sigterm(&host);
    // A bound of the test, far below the 60 s call timeout: the process
    // must not wait for the hanging call.
    let code = wait_for_exit(&mut host, Duration::from_secs(15)).await;
    let log = host.log_text();
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(log.contains("reaper stopped"), "log:\n{log}");
    let cut = cut.await.expect("carol's start task");
    // Cut off at the end of the grace, it was answered, not dropped: 503,
    // with a code that says why.
    let (status, body) = cut.expect("an answer, not a dropped connection");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    let abandoned = redis
        .get_json("session:carol")
        .expect("the abandoned start's record is left for a take-over");
    assert_ne!(abandoned["status"], "active", "{abandoned}");

    vms.clear("create");
    let mut second = HostProcess::start(dir.path(), &config, port, "second.log").await;
    let started = second.api().start("carol", &project).await;
    assert_eq!(
        started.status,
        200,
        "{:?}\nlog:\n{}",
        started.body,
        second.log_text()
    );
    assert_eq!(started.body["status"], "active");
    assert_eq!(started.body["reused"], false);
    assert_eq!(vms.items(), vec!["vessel-carol-0".to_string()]);
    assert_eq!(vms.count_ok("create", "vessel-carol-0"), 1);
    assert_eq!(routes.items(), vec!["vessel-carol-0".to_string()]);
    let record = redis.get_json("session:carol").expect("carol's record");
    assert_eq!(record["status"], "active");
    assert_eq!(
        record["ip"],
        vms.item("vessel-carol-0").unwrap()["ip"],
        "{record}"
    );
    assert_eq!(
        wait_for_exit_after_sigterm(&mut second).await,
        Some(0),
        "{}",
        second.log_text()
    );
}

/// The grace bounds the background tasks too: with the Reaper stuck in a
/// hanging `remove-route` and no request in flight, SIGTERM ends the
/// process with 0 soon after `shutdown_grace` (not after a further wait
/// per task), and the cut-off stop is not lost: the session stays
/// `stopping`, and a restarted host's Reaper finishes it once its lease
/// expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_grace_bounds_a_reaper_stuck_in_a_driver_call() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let project = project_dir(dir.path(), "dora");
    let port = free_port();
    let config = config_toml(
        dir.path(),
        port,
        &format!(
            "shutdown_grace = \"1s\"\n[store]\nredis_url = \"{}\"\n\
             [reaper]\ninterval = \"200ms\"\nidle_timeout = \"1s\"",
            redis.url()
        ),
        "lease = \"1s\"",
        "",
    );
    let (vms, routes) = mock_states(dir.path());

    let mut host = HostProcess::start(dir.path(), &config, port, "first.log").await;
    routes.inject("remove-route", "hang");
    assert_eq!(host.api().start("dora", &project).await.status, 200);
    // No heartbeat: the Reaper claims the session and hangs removing it.
    eventually(
        Duration::from_secs(20),
        "the Reaper to claim dora",
        || async {
            let record = redis.get_json("session:dora")?;
            (record["status"] == "stopping").then_some(())
        },
    )
    .await;

    send_sigterm(&host);
    // A bound of the test: the grace is 1 s and the plugin call limit 60 s.
    let code = wait_for_exit(&mut host, Duration::from_secs(6)).await;
    let log = host.log_text();
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(
        log.contains("did not stop within the shutdown grace"),
        "log:\n{log}"
    );
    let held = redis
        .get_json("session:dora")
        .expect("the stop is not lost");
    assert_eq!(held["status"], "stopping", "{held}");
    assert_eq!(vms.items(), vec!["vessel-dora-0".to_string()]);

    routes.clear("remove-route");
    let mut second = HostProcess::start(dir.path(), &config, port, "second.log").await;
    eventually(
        Duration::from_secs(20),
        "the stop to be finished",
        || async {
            let done = redis.get_json("session:dora").is_none()
                && vms.items().is_empty()
                && routes.items().is_empty();
            done.then_some(())
        },
    )
    .await;
    assert_eq!(
        wait_for_exit_after_sigterm(&mut second).await,
        Some(0),
        "{}",
        second.log_text()
    );
}
