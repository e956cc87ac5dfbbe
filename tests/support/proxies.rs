//! Real reverse proxies for the proxy drivers' tests (nginx and Caddy, each
//! started by the test on loopback ports with its own config), and a tiny
//! HTTP server that stands in for a VM behind them.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::free_port;

/// Where Debian's nginx is.
pub const NGINX: &str = "/usr/sbin/nginx";

/// How nginx includes the route files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxLayout {
    /// Inside one `server {}` (the nginx driver's `path` mode).
    Path,
    /// At `http {}` level (the driver's `host` mode).
    Host,
}

/// An nginx master process with a config of the test's own, killed on drop.
pub struct NginxServer {
    child: Option<Child>,
    /// The port of the `server {}` that includes path routes.
    pub port: u16,
    /// The prefix directory (`-p`), holding config, logs and pid file.
    pub dir: PathBuf,
    /// The config file (`-c`).
    pub conf: PathBuf,
    /// The directory of route files the driver is granted.
    pub routes: PathBuf,
}

impl NginxServer {
    /// Starts nginx under `dir` with route files included as `layout` says.
    pub fn start(dir: &Path, layout: NginxLayout) -> NginxServer {
        let routes = dir.join("routes");
        let temp = dir.join("temp");
        std::fs::create_dir_all(&routes).expect("routes dir");
        std::fs::create_dir_all(&temp).expect("temp dir");
        std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
        let port = free_port();
        let include = format!("include {}/*.conf;", routes.display());
        let (in_server, in_http) = match layout {
            NginxLayout::Path => (include.as_str(), ""),
            NginxLayout::Host => ("", include.as_str()),
        };
        let conf = dir.join("nginx.conf");
        let d = dir.display();
        let t = temp.display();
        std::fs::write(
            &conf,
            format!(
                r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    # Host mode: public names are up to 59 characters, so a host name
    # outgrows nginx's default bucket (64); see the README.
    server_names_hash_bucket_size 128;
    access_log {d}/logs/access.log;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /healthz {{ return 200 "nginx ok"; }}
        location / {{ return 404 "no route"; }}
        {in_server}
    }}
    {in_http}
}}
"#
            ),
        )
        .expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that the workers go with the master.
            .process_group(0)
            .spawn()
            .expect("nginx must be installed: run scripts/test, which installs it");
        let server = NginxServer {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            conf,
            routes,
        };
        wait_for_port(port, "nginx");
        server
    }

    /// The exec grant command a driver needs to control this nginx.
    pub fn command(&self) -> Vec<String> {
        vec![
            NGINX.to_string(),
            "-p".to_string(),
            self.dir.display().to_string(),
            "-c".to_string(),
            self.conf.display().to_string(),
        ]
    }
}

impl Drop for NginxServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child);
        }
    }
}

/// Stops a process group led by `child`: SIGTERM (nginx's fast shutdown
/// takes its workers along), then SIGKILL for anything left.
fn stop_group(mut child: Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

/// A Caddy process with a JSON config of the test's own, killed on drop.
pub struct CaddyServer {
    child: Option<Child>,
    /// The admin API's origin, e.g. `http://127.0.0.1:40123`.
    pub admin: String,
    /// The port of the `vessel` HTTP server that gets the routes.
    pub port: u16,
}

impl CaddyServer {
    /// Starts `caddy run` with an admin endpoint and one empty HTTP server
    /// named `vessel`, everything on loopback, state under `dir`.
    pub fn start(dir: &Path) -> CaddyServer {
        let admin_port = free_port();
        let port = free_port();
        let config = serde_json::json!({
            "admin": { "listen": format!("127.0.0.1:{admin_port}"), "config": { "persist": false } },
            "logging": { "logs": { "default": { "level": "ERROR" } } },
            "apps": { "http": { "servers": { "vessel": {
                "listen": [format!("127.0.0.1:{port}")],
                "routes": [],
                "automatic_https": { "disable": true }
            } } } }
        });
        let path = dir.join("caddy.json");
        std::fs::write(&path, config.to_string()).expect("write caddy.json");
        let child = Command::new("caddy")
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("caddy must be installed: run scripts/test, which installs it");
        let server = CaddyServer {
            child: Some(child),
            admin: format!("http://127.0.0.1:{admin_port}"),
            port,
        };
        wait_for_port(admin_port, "caddy's admin API");
        wait_for_port(port, "caddy");
        server
    }
}

impl Drop for CaddyServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_group(child);
        }
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tiny HTTP server standing in for a VM: answers every request with
/// `"{name} {path}"`.
pub struct FakeVm {
    /// Its address.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl FakeVm {
    /// Serves on `ip` (a 127/8 address) at a free port.
    pub async fn start(ip: &str, name: &str) -> FakeVm {
        let ip: IpAddr = ip.parse().expect("an IP");
        assert!(ip.is_loopback(), "tests only use loopback addresses");
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let name = name.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buffer[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("?").to_string();
                    let body = format!("{name} {path}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        FakeVm { ip, port, task }
    }
}

impl Drop for FakeVm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `GET url` with an optional Host header: (status, body), or `None` if
/// the request failed.
pub async fn fetch(url: &str, host: Option<&str>) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let mut request = client.get(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits (up to 10 s) until `GET url` answers 200 with a body containing
/// `expected`; proxies apply changes asynchronously.
pub async fn serves(url: &str, host: Option<&str>, expected: &str) {
    crate::eventually(
        Duration::from_secs(10),
        &format!("{url} to answer {expected:?}"),
        || async {
            match fetch(url, host).await {
                Some((200, body)) if body.contains(expected) => Some(()),
                _ => None,
            }
        },
    )
    .await;
}
