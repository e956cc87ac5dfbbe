//! Who may touch whose session: every endpoint but `/healthz` needs a bearer
//! token; a user token acts on its own user only; an operator token acts on
//! everyone; bad tokens change nothing; no token or key reaches the log.

use std::time::Duration;

use serde_json::json;
use vessel::auth::Scope;
use vessel::auth::token::mint;
use vessel::config::{AuthMode, Config, MetricsAccess, Secret};
use vessel_tests::{Api, HostProcess, TestHost, free_port, project_dir, test_config};

const KEY: &str = "test-signing-key-0123456789abcdef";
const NEXT_KEY: &str = "next-signing-key-0123456789abcdef";
const OPERATOR_TOKEN: &str = "fixed-operator-token-0123456789abcdef";

fn token(key: &str, subject: &str, scope: Scope) -> String {
    mint(key.as_bytes(), subject, scope, Duration::from_secs(600)).unwrap()
}

fn auth_config(dir: &std::path::Path) -> Config {
    let mut config = test_config(&dir.join("data"), None);
    config.auth.mode = AuthMode::Token;
    config.auth.signing_keys = vec![Secret::new(NEXT_KEY), Secret::new(KEY)];
    config.auth.operator_token = Some(Secret::new(OPERATOR_TOKEN));
    config
}

/// The four user endpoints, called for `user` by `api`; their status codes.
async fn every_endpoint(api: &Api, user: &str, project: &std::path::Path) -> Vec<u16> {
    vec![
        api.start(user, project).await.status,
        api.heartbeat(user).await.status,
        api.status(user).await.status,
        api.stop(user).await.status,
    ]
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(auth_config(dir.path())).await;
    let project = project_dir(dir.path(), "p");
    let anonymous = host.api();

    // No token: 401 with a challenge, on every endpoint but /healthz.
    let answer = anonymous.start("alice", &project).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "unauthorized");
    let raw = reqwest::Client::new()
        .get(format!("{}/status/alice", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    assert_eq!(
        raw.headers()["www-authenticate"],
        r#"Bearer realm="vessel""#
    );
    assert_eq!(
        every_endpoint(&anonymous, "alice", &project).await,
        [401; 4]
    );
    assert_eq!(anonymous.get("/healthz").await.status, 200);

    let expired = {
        // Minted an hour ago for ten minutes.
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = vessel::auth::token::Claims {
            aud: "vessel".into(),
            sub: "alice".into(),
            scope: Scope::User,
            iat: now - 3600,
            exp: now - 3000,
        };
        let key = EncodingKey::from_secret(KEY.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    };
    let foreign_key = token("some-other-key-0123456789abcdef-xx", "alice", Scope::User);
    let mut tampered = token(KEY, "alice", Scope::User);
    tampered.pop();
    for (what, bad) in [
        ("malformed", "not-a-token".to_string()),
        ("expired", expired),
        ("signed by another key", foreign_key),
        ("tampered", tampered),
        (
            "fixed token, one character short",
            OPERATOR_TOKEN[1..].to_string(),
        ),
    ] {
        let api = host.api().with_token(&bad);
        let answer = api.start("alice", &project).await;
        assert_eq!(answer.status, 401, "{what}: {:?}", answer.body);
        assert_eq!(answer.error_code(), "invalid_token", "{what}");
        assert!(
            !answer.body.to_string().contains(&bad),
            "{what}: token echoed"
        );
        assert_eq!(
            every_endpoint(&api, "alice", &project).await,
            [401; 4],
            "{what}"
        );
    }
    // Nothing was created by any of it.
    assert!(host.vms().items().is_empty());
    assert!(host.vms().calls().is_empty());
    host.shutdown().await;
}

#[tokio::test]
async fn a_user_token_acts_on_its_own_user_only() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(auth_config(dir.path())).await;
    let project = project_dir(dir.path(), "p");
    let operator = host
        .api()
        .with_token(&token(KEY, "frontend", Scope::Operator));
    assert_eq!(operator.start("bob", &project).await.status, 200);

    // Alice's token (signed with the older key of a rotation) on bob: 403
    // on every endpoint, and bob's session is untouched.
    let alice = host.api().with_token(&token(KEY, "alice", Scope::User));
    for answer in [
        alice.start("bob", &project).await,
        alice.heartbeat("bob").await,
        alice.status("bob").await,
        alice.stop("bob").await,
    ] {
        assert_eq!(answer.status, 403, "{:?}", answer.body);
        assert_eq!(answer.error_code(), "forbidden");
    }
    // Case matters: Alice is not alice.
    assert_eq!(alice.status("Alice").await.status, 403);
    assert_eq!(operator.status("bob").await.body["status"], "active");
    assert_eq!(host.vms().count("remove"), 0);

    // On her own session, everything works.
    assert_eq!(every_endpoint(&alice, "alice", &project).await, [200; 4]);
    // By default, clients on loopback read /metrics with any token or none.
    assert_eq!(alice.get("/metrics").await.status, 200);

    // Operators act on everyone: the JWT and the fixed token.
    let fixed = host.api().with_token(OPERATOR_TOKEN);
    assert_eq!(fixed.stop("bob").await.status, 200);
    assert_eq!(operator.status("bob").await.body["status"], "none");
    host.shutdown().await;
}

#[tokio::test]
async fn metrics_can_require_an_operator_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = auth_config(dir.path());
    config.auth.metrics = MetricsAccess::Token;
    let host = TestHost::start(config).await;
    assert_eq!(host.api().get("/metrics").await.status, 401);
    let user = host.api().with_token(&token(KEY, "alice", Scope::User));
    assert_eq!(user.get("/metrics").await.status, 403);
    let operator = host
        .api()
        .with_token(&token(NEXT_KEY, "ops", Scope::Operator));
    let text = operator.get_text("/metrics").await;
    assert!(text.contains("vessel_api_responses_total"), "{text}");
    host.shutdown().await;
}

#[tokio::test]
async fn no_token_or_key_reaches_the_log_or_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let tables =
        format!("[auth]\nsigning_keys = [\"{KEY}\"]\noperator_token = \"{OPERATOR_TOKEN}\"\n");
    let config = vessel_tests::host_config_toml(dir.path(), port, "", &tables);
    let host = HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let project = project_dir(dir.path(), "p");
    let user_token = token(KEY, "carol", Scope::User);
    let good = Api::new(&host.base).with_token(&user_token);
    assert_eq!(good.start("carol", &project).await.status, 200);
    let mut bad = token(KEY, "carol", Scope::User);
    bad.push('x');
    assert_eq!(
        Api::new(&host.base)
            .with_token(&bad)
            .start("carol", &project)
            .await
            .status,
        401
    );
    assert_eq!(
        Api::new(&host.base)
            .with_token(OPERATOR_TOKEN)
            .stop("carol")
            .await
            .status,
        200
    );
    let log = host.log_text();
    assert!(log.contains("auth.refused"), "the refusal is logged: {log}");
    for secret in [KEY, OPERATOR_TOKEN, user_token.as_str(), bad.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret:\n{log}");
    }

    let printed = std::process::Command::new(vessel_tests::vessel_binary())
        .args(["check-config", "--config"])
        .arg(dir.path().join("vessel.toml"))
        .env("VESSEL_SIGNING_KEYS", format!("{NEXT_KEY},{KEY}"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert!(printed.contains("signing_keys"), "{printed}");
    for secret in [KEY, NEXT_KEY, OPERATOR_TOKEN] {
        assert!(
            !printed.contains(secret),
            "check-config prints a secret:\n{printed}"
        );
    }
}

#[tokio::test]
async fn the_default_host_makes_its_own_key_and_prints_one_operator_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The default [auth]: nothing configured, on loopback.
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[session]\nproject_roots = [\"{}\"]\n\
         [plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n",
        dir.path().join("data").display(),
        dir.path().display(),
        vessel_tests::plugin_dir().display(),
        vessel_tests::shared_cache_dir().display(),
    );
    let host = HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let key_file = dir.path().join("data/signing.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let token = host.token.clone().expect("an operator token in the banner");
    assert_eq!(host.log_text().matches(&token).count(), 1, "printed once");
    let project = project_dir(dir.path(), "p");
    assert_eq!(
        Api::new(&host.base).start("dora", &project).await.status,
        401
    );
    let operator = Api::new(&host.base).with_token(&token);
    assert_eq!(operator.start("dora", &project).await.status, 200);

    // `vessel token` signs with the same key file.
    let minted = std::process::Command::new(vessel_tests::vessel_binary())
        .args(["token", "--user", "dora", "--ttl", "5m", "--config"])
        .arg(dir.path().join("vessel.toml"))
        .output()
        .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let user_token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    let dora = Api::new(&host.base).with_token(&user_token);
    assert_eq!(dora.heartbeat("dora").await.status, 200);
    assert_eq!(dora.status("erin").await.status, 403);
    drop(host);

    // The same setup on a non-loopback address refuses to start, and says
    // why (it fails before binding anything).
    let open = config.replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"));
    std::fs::write(dir.path().join("open.toml"), open).unwrap();
    let refused = std::process::Command::new(vessel_tests::vessel_binary())
        .args(["serve", "--config"])
        .arg(dir.path().join("open.toml"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("refusing to listen on 0.0.0.0"), "{said}");
    assert!(said.contains("auth.signing_keys"), "{said}");
}

#[tokio::test]
async fn json_bodies_and_paths_are_checked_after_the_token() {
    // A request with a valid token but a bad body is a 400, not a 500, and
    // one without a token never reaches the body parser.
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(auth_config(dir.path())).await;
    let operator = host.api().with_token(OPERATOR_TOKEN);
    assert_eq!(
        operator
            .post("/start", json!({"userId": "a b", "projectPath": "/"}))
            .await
            .error_code(),
        "invalid_user_id"
    );
    assert_eq!(host.api().post_raw("/start", "{not json").await.status, 401);
    host.shutdown().await;
}
