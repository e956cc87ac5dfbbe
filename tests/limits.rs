//! Limits, so one caller cannot take the host: the fleet-wide session
//! capacity (atomic across hosts sharing Redis), `/start` rate limits per
//! token and per address, the body limit, and a slowloris client cut off
//! while others are served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use vessel::auth::Scope;
use vessel::auth::token::mint;
use vessel::config::{AuthMode, Secret};
use vessel_tests::{RedisServer, TestHost, project_dir, test_config};

const KEY: &str = "limits-signing-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_starts_over_two_hosts_never_exceed_the_capacity() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    config.session.max_sessions = 10;
    let first = TestHost::start(config.clone()).await;
    let second = TestHost::start(config).await;
    let project = project_dir(dir.path(), "p");
    let starts = (0..100).map(|i| {
        let api = if i % 2 == 0 {
            first.api()
        } else {
            second.api()
        };
        let project = project.clone();
        async move { api.start(&format!("cap{i}"), &project).await }
    });
    let answers = futures::future::join_all(starts).await;
    let started = answers.iter().filter(|a| a.status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(started, 10, "{answers:?}");
    assert_eq!(refused.len(), 90);
    for answer in &refused {
        assert_eq!(answer.error_code(), "at_capacity", "{:?}", answer.body);
    }
    // Exactly ten VMs and ten records; nothing half made for the others.
    assert_eq!(first.vms().items().len(), 10);
    assert_eq!(first.routes().items().len(), 10);
    assert_eq!(redis.session_keys().len(), 10);
    assert_eq!(first.vms().count("create"), 10);

    // A stop frees a place, which the next start takes; a session that
    // runs is still found when the fleet is full.
    let running = answers.iter().find(|a| a.status == 200).unwrap();
    let holder = running.body["userId"].as_str().unwrap().to_string();
    assert_eq!(first.api().start(&holder, &project).await.status, 200);
    assert_eq!(first.api().stop(&holder).await.status, 200);
    assert_eq!(second.api().start("newcomer", &project).await.status, 200);
    assert_eq!(second.api().start("one-more", &project).await.status, 429);

    // A record deleted by hand does not keep its place forever.
    let gone = redis
        .session_keys()
        .into_iter()
        .find(|key| key != "session:newcomer")
        .unwrap();
    let mut conn = redis.connection();
    let _: () = redis::cmd("DEL").arg(&gone).query(&mut conn).unwrap();
    assert_eq!(second.api().start("one-more", &project).await.status, 200);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn the_capacity_answer_says_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.session.max_sessions = 1;
    let host = TestHost::start(config).await;
    let project = project_dir(dir.path(), "p");
    assert_eq!(host.api().start("a", &project).await.status, 200);
    let response = reqwest::Client::new()
        .post(format!("{}/start", host.base))
        .json(&serde_json::json!({"userId": "b", "projectPath": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    assert_eq!(host.vms().items().len(), 1);
    host.shutdown().await;
}

#[tokio::test]
async fn starts_are_rate_limited_per_user_token_and_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.auth.mode = AuthMode::Token;
    config.auth.signing_keys = vec![Secret::new(KEY)];
    config.limits.starts_per_minute_per_token = 3;
    config.limits.starts_per_minute_per_address = 0;
    let host = TestHost::start(config.clone()).await;
    let project = project_dir(dir.path(), "p");
    let token = |subject: &str, scope| {
        mint(KEY.as_bytes(), subject, scope, Duration::from_secs(600)).unwrap()
    };
    let alice = host.api().with_token(&token("alice", Scope::User));
    for _ in 0..3 {
        assert_eq!(alice.start("alice", &project).await.status, 200);
    }
    let limited = alice.start("alice", &project).await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.error_code(), "rate_limited");
    // Others are not affected: another user, and an operator (a
    // frontend's backend speaking for all its users).
    let bob = host.api().with_token(&token("bob", Scope::User));
    assert_eq!(bob.start("bob", &project).await.status, 200);
    let operator = host.api().with_token(&token("frontend", Scope::Operator));
    for _ in 0..10 {
        assert_eq!(operator.start("alice", &project).await.status, 200);
    }
    host.shutdown().await;

    // Per address: with the loopback exemption off, the fourth start from
    // this address is refused, whatever the token.
    config.limits.starts_per_minute_per_token = 0;
    config.limits.starts_per_minute_per_address = 3;
    config.limits.exempt_loopback = false;
    config.data_dir = dir.path().join("data-2");
    let host = TestHost::start(config).await;
    for user in ["a", "b", "c"] {
        let api = host.api().with_token(&token(user, Scope::User));
        assert_eq!(api.start(user, &project).await.status, 200);
    }
    let api = host.api().with_token(&token("d", Scope::User));
    let limited = api.start("d", &project).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.error_code(), "rate_limited");
    assert_eq!(host.vms().items().len(), 3);
    host.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.http.body_limit_bytes = 1024;
    config.auth.mode = AuthMode::None;
    let host = TestHost::start(config).await;
    let padding = "x".repeat(4096);
    let body = format!(r#"{{"userId":"a","projectPath":"/{padding}"}}"#);
    let answer = host.api().post_raw("/start", &body).await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "payload_too_large");
    assert!(host.vms().calls().is_empty());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.http.header_read_timeout = Duration::from_secs(2);
    let host = TestHost::start(config).await;
    let address = host.base.trim_start_matches("http://").to_string();

    // Ten clients each send one byte of a request's headers a second.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut stream = TcpStream::connect(&address).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                for byte in b"GET /healthz HTTP/1.1\r\nHost: vessel\r\nX-Slow: "
                    .iter()
                    .cycle()
                {
                    if stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    // A closed connection reads as EOF or an error.
                    let mut buffer = [0u8; 256];
                    match stream.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(900));
                }
                started.elapsed()
            })
        })
        .collect();

    // Meanwhile everyone else is answered promptly.
    for _ in 0..20 {
        let began = Instant::now();
        assert_eq!(host.api().get("/healthz").await.status, 200);
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in slow {
        let held = client.join().unwrap();
        assert!(
            held < Duration::from_secs(10),
            "a slowloris client held its connection for {held:?}"
        );
    }
    host.shutdown().await;
}

#[tokio::test]
async fn one_operator_token_holds_at_most_its_own_share_of_sessions() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), Some(redis.url()));
    config.auth.mode = AuthMode::Token;
    config.auth.signing_keys = vec![Secret::new(KEY)];
    config.limits.max_sessions_per_token = 2;
    let host = TestHost::start(config).await;
    let project = project_dir(dir.path(), "p");
    let operator = |name: &str| {
        let token = mint(
            KEY.as_bytes(),
            name,
            Scope::Operator,
            Duration::from_secs(600),
        );
        host.api().with_token(&token.unwrap())
    };
    let team_a = operator("team-a");
    let team_b = operator("team-b");
    assert_eq!(team_a.start("a1", &project).await.status, 200);
    assert_eq!(team_a.start("a2", &project).await.status, 200);
    let over = team_a.start("a3", &project).await;
    assert_eq!(over.status, 429, "{:?}", over.body);
    assert_eq!(over.error_code(), "token_at_capacity");
    // A session that runs is still answered; another token is not affected.
    assert_eq!(team_a.start("a1", &project).await.status, 200);
    assert_eq!(team_b.start("b1", &project).await.status, 200);
    // The record says who started it; a stop frees the place.
    assert_eq!(
        redis.get_json("session:a1").unwrap()["startedBy"],
        "operator:team-a"
    );
    assert_eq!(team_b.stop("a2").await.status, 200);
    assert_eq!(team_a.start("a3", &project).await.status, 200);
    assert_eq!(host.vms().items().len(), 3);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_finishes_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.session.start_timeout = Duration::from_millis(500);
    config.session.stop_timeout = Duration::from_millis(500);
    config.http.request_timeout = Some(Duration::from_secs(2));
    let host = TestHost::start(config).await;
    let address = host.base.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&address).unwrap();
        stream
            .write_all(
                b"POST /start HTTP/1.1\r\nHost: vessel\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"userId\":",
            )
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        (answer, started.elapsed())
    })
    .await
    .unwrap();
    let (answer, took) = answer;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(host.vms().calls().is_empty());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"), None);
    config.http.max_connections = 2;
    let host = TestHost::start(config).await;
    let address = host.base.trim_start_matches("http://").to_string();
    // Two idle connections take both places.
    let first = TcpStream::connect(&address).unwrap();
    let second = TcpStream::connect(&address).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn({
        let api = host.api();
        async move {
            let began = Instant::now();
            let status = api.get("/healthz").await.status;
            (status, began.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served over the cap"
    );
    drop(first);
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    drop(second);
    host.shutdown().await;
}
