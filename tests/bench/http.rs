//! A keep-alive HTTP/1.1 connection per worker, on hyper's client
//! connection directly.
//!
//! The client shares the machine's cores with the host it measures, so it
//! should cost as little as it can: one connection per worker and no pool
//! to look connections up in (as reqwest's would), bodies prepared once,
//! and answers checked by a byte search rather than parsed as JSON.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request a worker sends again and again, and what a correct answer
/// contains.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    path: String,
    body: Bytes,
    expect: &'static [&'static str],
}

impl Call {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Call {
        Call {
            method: Method::GET,
            path: path.into(),
            body: Bytes::new(),
            expect: &[],
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(path: impl Into<String>, body: &serde_json::Value) -> Call {
        Call {
            method: Method::POST,
            path: path.into(),
            body: Bytes::from(body.to_string()),
            expect: &[],
        }
    }

    /// The same call, whose 200 answer must contain each of `fragments`
    /// (e.g. `"reused":true`), so that a row measures the path it names.
    pub fn expecting(mut self, fragments: &'static [&'static str]) -> Call {
        self.expect = fragments;
        self
    }
}

/// A keep-alive connection to a host.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Connects to `addr` (a loopback address).
    pub async fn open(addr: SocketAddr) -> Result<Connection> {
        ensure!(addr.ip().is_loopback(), "{addr} is not a loopback address");
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = handshake(TokioIo::new(stream))
            .await
            .context("the HTTP/1.1 handshake")?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            authority: addr.to_string(),
            driver,
        })
    }

    /// Sends `call` and checks that the answer is 200 with what it expects.
    pub async fn send(&mut self, call: &Call) -> Result<()> {
        self.sender.ready().await.context("the connection closed")?;
        let request = Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(call.body.clone()))
            .context("building the request")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("{} {}", call.method, call.path))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            bail!(
                "{} {} answered {status}: {}",
                call.method,
                call.path,
                String::from_utf8_lossy(&body)
            );
        }
        for fragment in call.expect {
            if !contains(&body, fragment.as_bytes()) {
                bail!(
                    "{} {} answered without {fragment}: {}",
                    call.method,
                    call.path,
                    String::from_utf8_lossy(&body)
                );
            }
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_found_anywhere_in_the_body() {
        let body = br#"{"userId":"a","reused":true,"health":"ok"}"#;
        assert!(contains(body, br#""reused":true"#));
        assert!(contains(body, br#""health":"ok""#));
        assert!(!contains(body, br#""reused":false"#));
        assert!(contains(body, b""));
    }
}
