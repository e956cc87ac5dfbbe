//! A plugin call's time limit reaches the program it started, even through
//! a relay like `sudo` that runs the program out of the host's reach (in a
//! session of its own, as another user) and cannot pass `SIGKILL` on:
//! the host ends the program's group with `SIGTERM` first, which the relay
//! passes on, then `SIGKILL`; and a program that ignores `SIGTERM` is ended
//! by `timeout -k` inside the relay, as the README's sudo rule does it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use vessel::config::ExecGrant;
use vessel::plugins::exec::{ExecAllowlist, ExecError, ExecRequest, KILL_GRACE};
use vessel_tests::{eventually, process_is_running};

const RELAY: &str = env!("CARGO_BIN_EXE_vessel-test-relay");

fn allowlist(command: &[&str], pid_file: &Path) -> ExecAllowlist {
    ExecAllowlist::new(
        &[ExecGrant {
            name: Some("tool".into()),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::from([("RELAY_PID_FILE".to_string(), pid_file.display().to_string())]),
            max_timeout: Duration::from_secs(60),
            max_output_bytes: 1024,
            allow: Vec::new(),
        }],
        &|path| path.to_path_buf(),
    )
    .unwrap()
}

fn request(args: &[&str], timeout: Duration) -> ExecRequest {
    ExecRequest {
        program: "tool".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        timeout: Some(timeout),
        stdin: None,
    }
}

/// The pid the relay wrote, once it has.
async fn relayed_pid(pid_file: &Path) -> u32 {
    eventually(Duration::from_secs(10), "the relay's pid file", || async {
        std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
    })
    .await
}

async fn gone(pid: u32, within: Duration) {
    eventually(within, &format!("program {pid} to be ended"), || async {
        (!process_is_running(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_program_behind_a_relay_is_ended() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let tools = allowlist(&[RELAY, "/bin/sleep"], &pid_file);
    let outcome = tools
        .run(request(&["1000"], Duration::from_millis(500)))
        .await;
    assert!(
        matches!(outcome, Err(ExecError::TimedOut { .. })),
        "{outcome:?}"
    );
    let pid = relayed_pid(&pid_file).await;
    gone(pid, KILL_GRACE + Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_cancelled_call_ends_its_program_too() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let tools = allowlist(&[RELAY, "/bin/sleep"], &pid_file);
    // The call is dropped (as when the plugin's own limit fires, or the
    // request goes away) long before the program's limit.
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        tools.run(request(&["1000"], Duration::from_secs(60))),
    )
    .await;
    assert!(cut.is_err(), "the call should still have been running");
    let pid = relayed_pid(&pid_file).await;
    gone(pid, KILL_GRACE + Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_program_that_ignores_sigterm_is_ended_by_timeout_inside_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    // As the README's sudo rule: `timeout -k` runs inside the relay, so the
    // hard kill happens on the program's side.
    let tools = allowlist(
        &[
            RELAY,
            "/usr/bin/timeout",
            "-k",
            "1",
            "30",
            "/bin/sh",
            "-c",
            "trap '' TERM; echo $$ > \"$0\"; exec sleep 1000",
        ],
        &pid_file,
    );
    // The program runs as another user: it may write here.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let program_pid_file = dir.path().join("program-pid");
    let outcome = tools
        .run(request(
            &[program_pid_file.to_str().unwrap()],
            Duration::from_millis(500),
        ))
        .await;
    assert!(matches!(outcome, Err(ExecError::TimedOut { .. })));
    let program: u32 = eventually(Duration::from_secs(10), "the program's pid", || async {
        std::fs::read_to_string(&program_pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .await;
    gone(program, Duration::from_secs(5)).await;
}
