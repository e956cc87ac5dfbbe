//! The API against its own OpenAPI document, fuzzed: schemathesis (pinned,
//! installed by `scripts/install-test-deps` into `target/schemathesis`)
//! reads `/openapi.json` from a running `vessel` with authentication on and
//! sends it generated requests, valid and invalid, for a bounded number of
//! examples. No answer may be a 5xx, every answer must match the document
//! (status, content type, body schema, so every error has the one error
//! shape), and every operation that needs a token must refuse a request
//! without one.

use std::process::Command;
use std::time::Duration;

use vessel::auth::Scope;
use vessel::auth::token::mint;
use vessel_tests::{HostProcess, free_port, host_config_toml, project_dir, target_dir};

const KEY: &str = "fuzzing-signing-key-0123456789abcdef";

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_break() {
    let st = target_dir().join("schemathesis/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/test (scripts/install-test-deps installs schemathesis)",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let project = project_dir(dir.path(), "project");
    let tables = format!(
        "[auth]\nsigning_keys = [\"{KEY}\"]\n[session]\nproject_roots = [\"{}\"]\n",
        dir.path().display()
    );
    let config = host_config_toml(dir.path(), port, "", &tables);
    let host = HostProcess::start(dir.path(), &config, port, "vessel.log").await;
    let token = mint(
        KEY.as_bytes(),
        "fuzzer",
        Scope::Operator,
        Duration::from_secs(3600),
    )
    .unwrap();
    assert!(project.exists());

    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("600")
            .arg(&st)
            .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "all"])
            // A schema-valid projectPath names a directory that may not
            // exist: its refusal (400) is right, not a failure.
            .args(["--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", "60", "--workers", "2"])
            .args(["--request-timeout", "30", "--no-color"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(dir.path())
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\nhost log:\n{}",
        host.log_text()
    );
    assert!(report.contains("Tested:"), "{report}");
    assert!(!host.log_text().contains("panicked"), "{}", host.log_text());
}
