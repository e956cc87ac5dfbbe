//! A host killed with SIGKILL at any step of a cold start leaves nothing
//! that the next host cannot undo: no orphan VM or route remains (checked
//! in the mock drivers' own state), no record is left half-made, and the
//! user's next start succeeds. A completed session survives the same kill.
//!
//! Each case makes the real `vessel` binary stop at one step by injecting a
//! fault into the mock drivers: `hang` (the call never takes effect) or
//! `hang-after` (the call takes effect, its answer never comes), waits until
//! the step is under way, and kills the process.

use std::path::Path;
use std::time::Duration;

use vessel_tests::{
    HostProcess, MockState, RedisServer, eventually, free_port, project_dir, vm_id,
};

/// Where a case stops the start.
#[derive(Debug, Clone, Copy)]
struct KillPoint {
    /// What the case is called in failure messages.
    name: &'static str,
    /// `vm` or `proxy`: whose fault file.
    driver: &'static str,
    /// The operation that hangs.
    op: &'static str,
    /// `hang` or `hang-after`.
    fault: &'static str,
    /// The record's `startStep` while the host hangs there.
    step: &'static str,
}

const KILL_POINTS: [KillPoint; 4] = [
    KillPoint {
        name: "while the VM is being created",
        driver: "vm",
        op: "create",
        fault: "hang",
        step: "creating-vm",
    },
    KillPoint {
        name: "after the VM was created",
        driver: "vm",
        op: "create",
        fault: "hang-after",
        step: "creating-vm",
    },
    KillPoint {
        name: "after the project was copied",
        driver: "vm",
        op: "copy-to",
        fault: "hang-after",
        step: "copying-project",
    },
    KillPoint {
        name: "after the route was added",
        driver: "proxy",
        op: "add-route",
        fault: "hang-after",
        step: "adding-route",
    },
];

/// The host's configuration: Redis, a one-second lease, and the Reaper and
/// reconciler as `background` says.
fn config_toml(dir: &Path, port: u16, redis: &str, background: &str) -> String {
    let tables = format!(
        "[store]\nredis_url = \"{redis}\"\n[session]\nlease = \"1s\"\nstart_timeout = \"60s\"\n{background}"
    );
    vessel_tests::host_config_toml(dir, port, "", &tables)
}

/// Background tasks that clean up on their own: a reconciliation pass at
/// start-up and every half second, and the Reaper.
const CLEANING: &str = "[reaper]\ninterval = \"300ms\"\n[reconcile]\ninterval = \"500ms\"\n";

/// No background task: only the user's next start can clean up.
const QUIET: &str = "[reaper]\nenabled = false\n[reconcile]\nenabled = false\n";

struct Case {
    dir: tempfile::TempDir,
    redis: RedisServer,
    vms: MockState,
    routes: MockState,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let vms = MockState {
            dir: dir.path().join("data/mock-vm"),
        };
        let routes = MockState {
            dir: dir.path().join("data/mock-proxy"),
        };
        Case {
            dir,
            redis: RedisServer::start(),
            vms,
            routes,
        }
    }

    fn driver(&self, driver: &str) -> &MockState {
        if driver == "vm" {
            &self.vms
        } else {
            &self.routes
        }
    }

    async fn host(&self, background: &str, log: &str) -> HostProcess {
        let port = free_port();
        let config = config_toml(self.dir.path(), port, &self.redis.url(), background);
        HostProcess::start(self.dir.path(), &config, port, log).await
    }

    /// Starts a session for `user` on a host, stops it at `point` and kills
    /// the host with SIGKILL there.
    async fn kill_at(&self, point: KillPoint, user: &str) {
        let mut host = self.host(QUIET, "killed.log").await;
        self.driver(point.driver).inject(point.op, point.fault);
        let api = host.api();
        let project = project_dir(self.dir.path(), "p");
        let user_owned = user.to_string();
        let start = tokio::spawn(async move { api.start(&user_owned, &project).await });

        let key = format!("session:{user}");
        eventually(
            Duration::from_secs(20),
            &format!("the start to hang {}", point.name),
            || async {
                let record = self.redis.get_json(&key)?;
                let at_step = record["startStep"] == point.step;
                let done = match point.fault {
                    // Recorded by the mock before it hangs.
                    "hang-after" => self.driver(point.driver).count_ok(point.op, &vm_id(user)) == 1,
                    _ => true,
                };
                (at_step && done).then_some(())
            },
        )
        .await;
        if point.fault == "hang" {
            // The call is under way; it never takes effect.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        host.kill();
        // The connection drops with the host (the client task panics).
        if let Ok(answer) = start.await {
            assert_ne!(answer.status, 200, "a killed host answered the start");
        }
        self.driver(point.driver).clear(point.op);

        // What the dead host left: a record held at that step, and
        // possibly a VM and a route.
        let record = self.redis.get_json(&key).expect("the dead start's record");
        assert_eq!(record["status"], "starting", "{}", point.name);
        assert_eq!(record["startStep"], point.step, "{}", point.name);
    }

    /// Asserts that the only VM and route left are `user`'s, or none.
    fn assert_leaves(&self, user: Option<&str>) {
        let expected: Vec<String> = user.map(vm_id).into_iter().collect();
        assert_eq!(self.vms.items(), expected, "VMs in the driver's state");
        assert_eq!(self.routes.items(), expected, "routes in the proxy's state");
    }
}

/// After the kill, a restarted host's background tasks remove the dead
/// start's VM, route and record without anyone asking, at every step; the
/// user's next start then makes exactly one VM.
#[tokio::test]
async fn a_host_killed_at_any_step_of_a_start_leaves_no_orphan_after_a_restart() {
    for point in KILL_POINTS {
        let case = Case::new();
        let user = "crash-user";
        case.kill_at(point, user).await;

        let host = case.host(CLEANING, "restarted.log").await;
        eventually(
            Duration::from_secs(20),
            &format!(
                "the leftovers of a start killed {} to be removed",
                point.name
            ),
            || async {
                let clean = case.redis.get_json(&format!("session:{user}")).is_none()
                    && case.vms.items().is_empty()
                    && case.routes.items().is_empty();
                clean.then_some(())
            },
        )
        .await;
        assert!(
            host.log_text().contains("took over an abandoned start"),
            "{}: the take-over is logged:\n{}",
            point.name,
            host.log_text()
        );

        let project = project_dir(case.dir.path(), "p");
        let started = host.api().start(user, &project).await;
        assert_eq!(started.status, 200, "{}: {:?}", point.name, started.body);
        case.assert_leaves(Some(user));
        assert_eq!(host.api().status(user).await.body["status"], "active");
    }
}

/// With no background task at all, the user's own next start takes over
/// the dead start once its lease expires, undoes it and succeeds: the
/// user is never locked out.
#[tokio::test]
async fn the_users_next_start_takes_over_a_start_whose_host_was_killed() {
    for point in KILL_POINTS {
        let case = Case::new();
        let user = "next-start";
        case.kill_at(point, user).await;

        let host = case.host(QUIET, "restarted.log").await;
        let project = project_dir(case.dir.path(), "p");
        let started = host.api().start(user, &project).await;
        assert_eq!(started.status, 200, "{}: {:?}", point.name, started.body);
        assert_eq!(started.body["reused"], false);
        case.assert_leaves(Some(user));
        // The dead start's VM (if it made one) was removed before the new
        // one was made: one VM per user at any time.
        let mut live = false;
        for call in case.vms.calls() {
            if call.target != vm_id(user) || call.outcome != "ok" {
                continue;
            }
            match call.op.as_str() {
                "create" => {
                    assert!(
                        !live,
                        "{}: a second VM was created over the first",
                        point.name
                    );
                    live = true;
                }
                "remove" => live = false,
                _ => {}
            }
        }
        assert!(live, "{}", point.name);
    }
}

/// A session that had started before the kill is not touched by the
/// restarted host's reconciliation: it is active, with the same URL, and
/// the next start is a hit.
#[tokio::test]
async fn a_completed_session_survives_a_kill_and_a_reconciling_restart() {
    let case = Case::new();
    let mut host = case.host(QUIET, "first.log").await;
    let project = project_dir(case.dir.path(), "p");
    let started = host.api().start("survivor", &project).await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    host.kill();

    let host = case.host(CLEANING, "restarted.log").await;
    // Let a few reconciliation passes run.
    eventually(
        Duration::from_secs(20),
        "two reconciliation passes",
        || async {
            let metrics = host.api().get_text("/metrics").await;
            let passes = vessel_tests::metric_value(
                &metrics,
                r#"vessel_reconcile_passes_total{result="ok"}"#,
            );
            (passes >= 2).then_some(())
        },
    )
    .await;
    case.assert_leaves(Some("survivor"));
    let again = host.api().start("survivor", &project).await;
    assert_eq!(again.body["reused"], true);
    assert_eq!(again.body["url"], started.body["url"]);
    assert_eq!(case.vms.count("create"), 1);
}
