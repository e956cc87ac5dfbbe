//! A keep-alive HTTP/1.1 connection per worker, spoken directly on the
//! socket, as `wrk` does.
//!
//! The client shares the machine's cores with the host it measures, so it
//! costs as little as it can: the request's bytes are made once, each call
//! is one write and (usually) one read by the worker's own task, with no
//! connection task beside it to hand the request to and the answer back
//! from, and answers are checked by a byte search rather than parsed as
//! JSON. What it accepts is strict: a `200` status line, a
//! `content-length` (no chunked answers: the API never sends them to these
//! calls), and nothing after the body.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request a worker sends again and again, and what a correct answer
/// contains.
#[derive(Debug, Clone)]
pub struct Call {
    /// Which call this is (copies share it): what a connection's made
    /// request is for.
    id: u64,
    method: &'static str,
    path: String,
    body: Vec<u8>,
    expect: &'static [&'static str],
}

impl Call {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Call {
        Call {
            id: next_call_id(),
            method: "GET",
            path: path.into(),
            body: Vec::new(),
            expect: &[],
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(path: impl Into<String>, body: &serde_json::Value) -> Call {
        Call {
            id: next_call_id(),
            method: "POST",
            path: path.into(),
            body: body.to_string().into_bytes(),
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

/// A new call's id.
fn next_call_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A keep-alive connection to a host.
pub struct Connection {
    stream: TcpStream,
    authority: String,
    /// The last call's request, as bytes, and the call's id.
    request: Option<(u64, Vec<u8>)>,
    /// What has been read of the answer so far.
    buffer: Vec<u8>,
}

/// The end of an answer's head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// The largest answer head or body a call accepts.
const MAX_ANSWER: usize = 1 << 20;

impl Connection {
    /// Connects to `addr` (a loopback address).
    pub async fn open(addr: SocketAddr) -> Result<Connection> {
        ensure!(addr.ip().is_loopback(), "{addr} is not a loopback address");
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            authority: addr.to_string(),
            request: None,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// The bytes of `call`'s request to `authority`, made once per call.
    fn request<'a>(made: &'a mut Option<(u64, Vec<u8>)>, authority: &str, call: &Call) -> &'a [u8] {
        if made.as_ref().is_none_or(|(id, _)| *id != call.id) {
            let mut bytes = format!(
                "{} {} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                call.method,
                call.path,
                call.body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(&call.body);
            *made = Some((call.id, bytes));
        }
        made.as_ref().map_or(&[], |(_, bytes)| bytes)
    }

    /// Sends `call` and checks that the answer is 200 with what it expects.
    pub async fn send(&mut self, call: &Call) -> Result<()> {
        let request = Self::request(&mut self.request, &self.authority, call);
        self.stream
            .write_all(request)
            .await
            .with_context(|| format!("{} {}", call.method, call.path))?;
        let (status, body) = self
            .answer()
            .await
            .with_context(|| format!("{} {}", call.method, call.path))?;
        if status != 200 {
            bail!(
                "{} {} answered {status}: {}",
                call.method,
                call.path,
                String::from_utf8_lossy(body)
            );
        }
        for fragment in call.expect {
            if !contains(body, fragment.as_bytes()) {
                bail!(
                    "{} {} answered without {fragment}: {}",
                    call.method,
                    call.path,
                    String::from_utf8_lossy(body)
                );
            }
        }
        Ok(())
    }

    /// Reads one answer: its status and its body.
    async fn answer(&mut self) -> Result<(u16, &[u8])> {
        self.buffer.clear();
        let head_len = loop {
            if let Some(at) = find(&self.buffer, HEAD_END) {
                break at + HEAD_END.len();
            }
            ensure!(self.buffer.len() < MAX_ANSWER, "an answer head over 1 MiB");
            self.fill().await?;
        };
        let (status, length) = parse_head(&self.buffer[..head_len])?;
        ensure!(length <= MAX_ANSWER, "an answer body of {length} bytes");
        let end = head_len + length;
        while self.buffer.len() < end {
            self.fill().await?;
        }
        ensure!(
            self.buffer.len() == end,
            "{} bytes after the answer, which no request asked for",
            self.buffer.len() - end
        );
        Ok((status, &self.buffer[head_len..end]))
    }

    /// Reads what the socket has into the buffer.
    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk).await.context("reading")?;
        ensure!(read > 0, "the host closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

/// An answer head's status code and `content-length`.
fn parse_head(head: &[u8]) -> Result<(u16, usize)> {
    let head = std::str::from_utf8(head).context("an answer head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("a status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().context("a content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a {} answer; only content-length is read", value.trim());
        }
    }
    Ok((status, length.context("an answer without content-length")?))
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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

    #[test]
    fn heads_give_their_status_and_length() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nx-request-id: a\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (200, 42));
        let head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (503, 0));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }
}
