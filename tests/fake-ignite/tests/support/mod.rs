//! Helpers for the fake-ignite integration tests: a private state directory
//! per test, a port nobody else in this test binary uses, running the built
//! `ignite` binary, and a minimal HTTP client for 127.61.0.N addresses.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

/// Ports already handed to a test in this process.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that is free on loopback and not given to any other test here.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral loopback port");
        let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if used.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// One test's world: a state directory, a port, extra environment.
pub struct Env {
    /// Scratch directory (state lives in `dir/state`).
    pub dir: PathBuf,
    /// `FAKE_IGNITE_HTTP_PORT` for this test.
    pub port: u16,
    extra: Vec<(String, String)>,
}

impl Env {
    /// A fresh environment named after `tag`.
    pub fn new(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("fake-ignite-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Env {
            dir,
            port: free_port(),
            extra: Vec::new(),
        }
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Sets an extra environment variable for every later invocation.
    pub fn set(&mut self, key: &str, value: &str) {
        self.extra.push((key.to_string(), value.to_string()));
    }

    /// A `Command` for the fake with this test's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ignite"));
        command
            .args(args)
            .env("FAKE_IGNITE_STATE", self.state())
            .env("FAKE_IGNITE_HTTP_PORT", self.port.to_string())
            .env_remove("FAKE_IGNITE_BOOT_DELAY_MS")
            .env_remove("FAKE_IGNITE_SERVE_DIR")
            .env_remove("FAKE_IGNITE_LOG_FORMAT");
        for (key, value) in &self.extra {
            command.env(key, value);
        }
        command
    }

    /// Runs the fake to completion.
    pub fn ignite(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run the fake ignite"))
    }

    /// Runs the fake and insists it succeeded.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.ignite(args);
        assert_eq!(
            run.code, 0,
            "ignite {args:?} failed:\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run
    }

    /// The VM's address, read from `inspect`.
    pub fn ip_of(&self, vm: &str) -> Ipv4Addr {
        let run = self.ok(&["inspect", "vm", vm]);
        let json: serde_json::Value =
            serde_json::from_str(&run.stdout).expect("inspect prints JSON");
        json["status"]["network"]["ipAddresses"][0]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .expect("VM has an IP")
    }

    /// `calls.jsonl`, parsed.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("calls.jsonl lines are JSON"))
            .collect()
    }

    /// A directory with files for `cp`.
    pub fn project(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.dir.join(name);
        for (path, contents) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(&root)).expect("create project dir");
            std::fs::write(file, contents).expect("write project file");
        }
        root
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Removing the state directory makes every VM server of this test exit.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A finished invocation.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The `msg=` part of every logfmt line on stdout, unquoted.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.stdout.lines().filter_map(parse_logfmt).collect()
    }
}

/// Splits `time="…" level=L msg=M` into (level, message).
fn parse_logfmt(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("time=\"")?;
    let (_, rest) = rest.split_once("\" level=")?;
    let (level, message) = rest.split_once(" msg=")?;
    let message = match message.strip_prefix('"').and_then(|m| m.strip_suffix('"')) {
        Some(quoted) => quoted
            .replace("\\\"", "\"")
            .replace("\\n", "\n")
            .replace("\\\\", "\\"),
        None => message.to_string(),
    };
    Some((level.to_string(), message))
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, as sent.
    pub headers: Vec<String>,
    /// Body.
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// `GET http://ip:port/path`; the error is the connection error.
pub fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> std::io::Result<Response> {
    assert!(
        ip.is_loopback(),
        "tests only talk to loopback addresses, not {ip}"
    );
    let address = SocketAddr::from((ip, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Response {
        status,
        headers: lines.map(String::from).collect(),
        body: body.to_string(),
    })
}

/// Whether `path` exists (for readability in asserts).
pub fn exists(path: &Path) -> bool {
    path.exists()
}
