//! The ignite stand-in (`tests/fake-ignite`, built as `target/debug/ignite`)
//! as the tests use it: its state directory, the exec grant that runs it,
//! and direct runs of it to see what "ignite" itself reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vessel::config::ExecGrant;

use crate::{free_port, target_dir};

/// One fake ignite installation: a state directory and the VMs' HTTP port.
pub struct FakeIgnite {
    /// Its state directory (`FAKE_IGNITE_STATE`).
    pub state: PathBuf,
    /// The port every VM serves HTTP on (`FAKE_IGNITE_HTTP_PORT`).
    pub http_port: u16,
    /// How long `ignite run` takes (`FAKE_IGNITE_BOOT_DELAY_MS`).
    pub boot_delay: Duration,
}

impl FakeIgnite {
    /// A fresh installation with its state under `dir`.
    pub fn new(dir: &Path, boot_delay: Duration) -> FakeIgnite {
        let state = dir.join("ignite-state");
        std::fs::create_dir_all(&state).expect("ignite state dir");
        FakeIgnite {
            state,
            http_port: free_port(),
            boot_delay,
        }
    }

    /// The binary.
    pub fn binary() -> PathBuf {
        let path = target_dir().join("debug").join("ignite");
        assert!(
            path.exists(),
            "{} is missing: run `cargo build` (scripts/test does)",
            path.display()
        );
        path
    }

    /// The environment the binary runs with.
    pub fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "FAKE_IGNITE_STATE".to_string(),
                self.state.display().to_string(),
            ),
            (
                "FAKE_IGNITE_HTTP_PORT".to_string(),
                self.http_port.to_string(),
            ),
            (
                "FAKE_IGNITE_BOOT_DELAY_MS".to_string(),
                self.boot_delay.as_millis().to_string(),
            ),
        ])
    }

    /// The exec grant an ignite driver needs: name `ignite`, the binary,
    /// the fake's environment (a real deployment grants
    /// `/usr/bin/sudo -n /usr/bin/timeout ... /usr/local/bin/ignite`
    /// instead), and the argument policy of the shipped example
    /// configuration, so that every test proves the driver works within it.
    pub fn grant(&self) -> ExecGrant {
        ExecGrant {
            name: Some("ignite".to_string()),
            command: vec![FakeIgnite::binary().display().to_string()],
            env: self.env(),
            max_timeout: Duration::from_secs(120),
            max_output_bytes: 1024 * 1024,
            allow: crate::example_exec_policy("ignite-nginx.toml", "ignite"),
        }
    }

    /// Runs `ignite ARGS` directly: (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(FakeIgnite::binary())
            .args(args)
            .env_clear()
            .envs(self.env())
            .output()
            .expect("run the fake ignite");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The names in `ignite ps -a`.
    pub fn ps_names(&self) -> Vec<String> {
        let (code, stdout, stderr) = self.run(&["ps", "-a"]);
        assert_eq!(code, 0, "ignite ps failed: {stdout}{stderr}");
        stdout
            .lines()
            .skip(1)
            .filter_map(|line| line.split('\t').rfind(|cell| !cell.is_empty()))
            .map(str::to_string)
            .collect()
    }

    /// The argument lists ignite was invoked with, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.state.join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|call| {
                call["argv"]
                    .as_array()
                    .map(|argv| {
                        argv.iter()
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// How many times `ignite <command>` was run.
    pub fn count(&self, command: &str) -> usize {
        self.calls()
            .iter()
            .filter(|argv| argv.first().map(String::as_str) == Some(command))
            .count()
    }
}

/// Whether something accepts TCP connections at `ip:port`.
pub fn listening(ip: &str, port: u16) -> bool {
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(300)).is_ok()
}
