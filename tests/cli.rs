//! The operator's view: `GET /sessions`, `POST /sessions/{userId}/extend`
//! and the `vessel sessions ...` / `vessel status` commands, run as the real
//! binary against a real host process on a real redis-server, with
//! authentication on.

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use vessel::auth::Scope;
use vessel::auth::token::mint;
use vessel_tests::{
    Api, HostProcess, RedisServer, free_port, host_config_toml, project_dir, vessel_binary,
};

const KEY: &str = "cli-test-signing-key-0123456789abcdef";
const OPERATOR_TOKEN: &str = "cli-operator-token-0123456789abcdef";

fn user_token(user: &str) -> String {
    mint(KEY.as_bytes(), user, Scope::User, Duration::from_secs(600)).unwrap()
}

/// A host with authentication on (the fixed operator token, and user
/// tokens signed with `KEY`) on `store` (TOML lines of `[store]`).
async fn start_host(dir: &std::path::Path, store: &str) -> HostProcess {
    let port = free_port();
    let tables = format!(
        "[store]\n{store}\n[auth]\nsigning_keys = [\"{KEY}\"]\noperator_token = \"{OPERATOR_TOKEN}\"\n"
    );
    let config = host_config_toml(dir, port, "", &tables);
    HostProcess::start(dir, &config, port, "vessel.log").await
}

/// `vessel ARGS --url {host}`, with `token` in `VESSEL_TOKEN`; nothing from
/// the test's own environment decides where it goes.
fn vessel_command(host: &HostProcess, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(vessel_binary());
    command
        .args(args)
        .arg("--url")
        .arg(&host.base)
        .env_remove("VESSEL_URL")
        .env_remove("VESSEL_TOKEN")
        .env_remove("VESSEL_CONFIG");
    for proxy in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(proxy);
    }
    if let Some(token) = token {
        command.env("VESSEL_TOKEN", token);
    }
    command
}

/// Runs `vessel ARGS` to the end.
fn vessel(host: &HostProcess, token: Option<&str>, args: &[&str]) -> Output {
    vessel_command(host, token, args)
        .output()
        .expect("run vessel")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `vessel ARGS`, expecting success; its standard output.
fn vessel_ok(host: &HostProcess, args: &[&str]) -> String {
    let output = vessel(host, Some(OPERATOR_TOKEN), args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "vessel {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Runs `vessel ARGS --json`, expecting success; its JSON.
fn vessel_json(host: &HostProcess, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = vessel_ok(host, &args);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

fn users_of(list: &Value) -> BTreeSet<String> {
    list["sessions"]
        .as_array()
        .expect("a sessions array")
        .iter()
        .map(|session| session["userId"].as_str().unwrap().to_string())
        .collect()
}

/// Every user `GET /sessions` shows, following the cursor with pages of
/// `limit`; each page must hold at most `limit` entries.
async fn page_through(api: &Api, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(cursor) => format!("/sessions?limit={limit}&cursor={cursor}"),
            None => format!("/sessions?limit={limit}"),
        };
        let answer = api.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let sessions = answer.body["sessions"].as_array().unwrap();
        assert!(
            sessions.len() <= limit,
            "a page over its limit: {}",
            answer.body
        );
        seen.extend(
            sessions
                .iter()
                .map(|session| session["userId"].as_str().unwrap().to_string()),
        );
        match answer.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return seen,
        }
    }
    panic!("the listing did not end after 100 pages: {seen:?}");
}

#[tokio::test]
async fn an_operator_lists_shows_extends_and_stops_sessions_from_the_command_line() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &format!("redis_url = \"{}\"", redis.url())).await;
    let operator = Api::new(&host.base).with_token(OPERATOR_TOKEN);
    for user in ["alice", "bob", "carol"] {
        let project = project_dir(dir.path(), user);
        let answer = operator.start(user, &project).await;
        assert_eq!(answer.status, 200, "start {user}: {}", answer.body);
    }
    let everyone: BTreeSet<String> = ["alice", "bob", "carol"].map(String::from).into();

    // Pages of one visit every session exactly once; so do larger ones.
    let mut one_by_one = page_through(&operator, 1).await;
    one_by_one.sort();
    assert_eq!(one_by_one, ["alice", "bob", "carol"]);
    let mut all = page_through(&operator, 2).await;
    all.sort();
    assert_eq!(all, ["alice", "bob", "carol"]);

    // The table: a header and one aligned row per session.
    let table = vessel_ok(&host, &["sessions", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USER "), "{table}");
    assert!(lines[0].contains("LAST HEARTBEAT"), "{table}");
    assert_eq!(lines.len(), 4, "{table}");
    let status_column = lines[0].find("STATUS").unwrap();
    for user in &everyone {
        let row = lines
            .iter()
            .find(|line| line.starts_with(&format!("{user} ")))
            .unwrap_or_else(|| panic!("no row for {user}:\n{table}"));
        assert_eq!(&row[status_column..status_column + 6], "active", "{table}");
        assert!(row.contains("s ago"), "{table}");
    }

    // The same as JSON, with the fields of /status.
    let list = vessel_json(&host, &["sessions", "list"]);
    assert_eq!(users_of(&list), everyone);
    let alice_status = operator.status("alice").await.body;
    let alice_listed = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|session| session["userId"] == "alice")
        .unwrap();
    assert_eq!(alice_listed, &alice_status);

    // Filters and limits.
    let active = vessel_json(&host, &["sessions", "list", "--status", "active"]);
    assert_eq!(users_of(&active), everyone);
    let starting = vessel_json(&host, &["sessions", "list", "--status", "starting"]);
    assert_eq!(users_of(&starting), BTreeSet::new());
    let two = vessel_json(&host, &["sessions", "list", "--limit", "2"]);
    assert_eq!(two["sessions"].as_array().unwrap().len(), 2);

    // One session.
    let shown = vessel_json(&host, &["sessions", "show", "bob"]);
    assert_eq!(shown["userId"], "bob");
    assert_eq!(shown["status"], "active");
    let shown = vessel_ok(&host, &["sessions", "show", "bob"]);
    assert!(shown.lines().nth(1).unwrap().starts_with("bob "), "{shown}");

    // Extend: the last heartbeat moves forward, as /status shows.
    let before = operator.status("alice").await.body["lastHeartbeat"]
        .as_u64()
        .unwrap();
    // Let the host's millisecond clock pass the recorded heartbeat.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let extended = vessel_json(&host, &["sessions", "extend", "alice"]);
    let after = extended["lastHeartbeat"].as_u64().unwrap();
    assert!(after > before, "{before} -> {after}");
    assert_eq!(
        operator.status("alice").await.body["lastHeartbeat"].as_u64(),
        Some(after)
    );

    // Stop: the session is gone.
    let stopped = vessel_ok(&host, &["sessions", "stop", "carol"]);
    assert_eq!(stopped.trim(), "stopped the session of carol");
    assert_eq!(operator.status("carol").await.body["status"], "none");
    let list = vessel_json(&host, &["sessions", "list"]);
    assert_eq!(users_of(&list), ["alice", "bob"].map(String::from).into());

    // The host's summary.
    let summary = vessel_ok(&host, &["status"]);
    assert!(summary.contains("redis  ok"), "{summary}");
    assert!(
        summary.contains("sessions  2 (active 2, starting 0, stopping 0)"),
        "{summary}"
    );
    let summary = vessel_json(&host, &["status"]);
    assert_eq!(summary["health"]["store"]["kind"], "redis");
    assert_eq!(summary["sessions"]["total"], 2);

    // A reader that goes away early is no error.
    let mut child = vessel_command(&host, Some(OPERATOR_TOKEN), &["sessions", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[tokio::test]
async fn users_and_bad_requests_are_refused_by_the_operator_endpoints_and_the_cli() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &format!("redis_url = \"{}\"", redis.url())).await;
    let operator = Api::new(&host.base).with_token(OPERATOR_TOKEN);
    for user in ["alice", "bob"] {
        let project = project_dir(dir.path(), user);
        assert_eq!(operator.start(user, &project).await.status, 200);
    }
    let alice_token = user_token("alice");
    let alice = Api::new(&host.base).with_token(&alice_token);

    // A user token: 403 from the listing, and from extending or stopping
    // another user's session (or extending its own: that is /heartbeat).
    let answer = alice.get("/sessions").await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.error_code(), "forbidden");
    for path in ["/sessions/bob/extend", "/sessions/alice/extend"] {
        assert_eq!(alice.post(path, Value::Null).await.status, 403, "{path}");
    }
    assert_eq!(alice.stop("bob").await.status, 403);
    assert_eq!(operator.status("bob").await.body["status"], "active");

    // The CLI with that token: exit 1, one line naming the status and the
    // API's message, never the token.
    for args in [
        &["sessions", "list"][..],
        &["sessions", "stop", "bob"],
        &["sessions", "extend", "bob"],
    ] {
        let output = vessel(&host, Some(&alice_token), args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert!(message.starts_with("error: HTTP 403: "), "{message}");
        assert_eq!(message.trim_end().lines().count(), 1, "{message}");
        assert!(!message.contains(&alice_token), "{message}");
        assert!(stdout(&output).is_empty());
    }
    let output = vessel(&host, Some(&alice_token), &["sessions", "list"]);
    assert!(
        stderr(&output).contains("operator token"),
        "{}",
        stderr(&output)
    );
    assert_eq!(operator.status("bob").await.body["status"], "active");

    // No token: 401, from the API and through the CLI.
    let anonymous = Api::new(&host.base);
    assert_eq!(anonymous.get("/sessions").await.status, 401);
    assert_eq!(
        anonymous
            .post("/sessions/bob/extend", Value::Null)
            .await
            .status,
        401
    );
    let output = vessel(&host, None, &["sessions", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: HTTP 401: "),
        "{}",
        stderr(&output)
    );

    // Bad queries: 400 with the one error shape, never a 500.
    let redis_letters = "c1.616263.."; // a store cursor Redis would refuse
    let long = format!("c1.{}..", "30".repeat(400));
    for (query, code) in [
        ("cursor=garbage", "invalid_cursor"),
        ("cursor=c1.zz..", "invalid_cursor"),
        ("cursor=c1...0", "invalid_cursor"),
        (&format!("cursor={redis_letters}"), "invalid_cursor"),
        (&format!("cursor={long}"), "invalid_cursor"),
        ("limit=0", "invalid_limit"),
        ("limit=100000", "invalid_limit"),
        ("limit=-1", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("status=none", "invalid_status"),
        ("status=ACTIVE", "invalid_status"),
        ("colour=red", "invalid_query"),
    ] {
        let answer = operator.get(&format!("/sessions?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_eq!(answer.error_code(), code, "{query}: {}", answer.body);
    }
    assert_eq!(operator.get("/sessions?limit=1000").await.status, 200);

    // Extend checks the user id, and needs a session.
    let answer = operator.post("/sessions/bad.id/extend", Value::Null).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.error_code(), "invalid_user_id");
    let answer = operator.post("/sessions/nobody/extend", Value::Null).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    let output = vessel(
        &host,
        Some(OPERATOR_TOKEN),
        &["sessions", "extend", "nobody"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: HTTP 404: "),
        "{}",
        stderr(&output)
    );

    // Usage errors: exit 2.
    for args in [
        &["sessions", "list", "--limit", "0"][..],
        &["sessions", "list", "--status", "sleeping"],
        &["sessions", "frobnicate"],
        &["sessions", "show"],
    ] {
        let output = vessel(&host, Some(OPERATOR_TOKEN), args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn the_embedded_store_pages_the_same_way_and_open_hosts_need_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = host_config_toml(dir.path(), port, "", "[store]\nredis_url = \"\"\n");
    let host = HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let api = Api::new(&host.base);
    for user in ["u1", "u2", "u3"] {
        let project = project_dir(dir.path(), user);
        assert_eq!(api.start(user, &project).await.status, 200);
    }
    let mut seen = page_through(&api, 1).await;
    seen.sort();
    assert_eq!(seen, ["u1", "u2", "u3"]);

    // Authentication off: the CLI needs no token.
    let output = vessel(&host, None, &["sessions", "list", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(users_of(&list), ["u1", "u2", "u3"].map(String::from).into());
    let output = vessel(&host, None, &["status"]);
    assert!(
        stdout(&output).contains("embedded  ok"),
        "{}",
        stdout(&output)
    );
}
