//! A Redis connection per raw-baseline worker, spoken directly on the
//! socket as `redis-benchmark` does, so that the baseline's client costs
//! what the HTTP rows' client costs ([`crate::http`]): the command's bytes
//! made once, one write and (usually) one read per call by the worker's own
//! task, no connection task beside it.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a command's answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `+OK` (a `SET`).
    Ok,
    /// A bulk string, not nil (a `GET` of a key that exists).
    Value,
}

/// One connection sending one command again and again.
pub struct RawRedis {
    stream: TcpStream,
    command: Vec<u8>,
    expect: Expect,
    buffer: Vec<u8>,
}

impl RawRedis {
    /// Connects to the Redis at `url` (`redis://127.0.0.1:PORT[/DB]`, a
    /// loopback address) to send `args` as one command.
    pub async fn open(url: &str, args: &[&[u8]], expect: Expect) -> Result<RawRedis> {
        let addr = address(url)?;
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawRedis {
            stream,
            command: encode(args),
            expect,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends the command and checks its answer.
    pub async fn call(&mut self) -> Result<()> {
        self.stream
            .write_all(&self.command)
            .await
            .context("sending")?;
        self.buffer.clear();
        loop {
            match complete(&self.buffer, self.expect)? {
                Some(len) => {
                    ensure!(len == self.buffer.len(), "bytes after the answer");
                    return Ok(());
                }
                None => {
                    let mut chunk = [0u8; 8192];
                    let read = self.stream.read(&mut chunk).await.context("reading")?;
                    ensure!(read > 0, "Redis closed the connection");
                    self.buffer.extend_from_slice(&chunk[..read]);
                }
            }
        }
    }
}

/// The address in a `redis://host:port[/db]` URL; only loopback.
fn address(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("redis://")
        .with_context(|| format!("{url} is not a redis:// URL"))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let addr: SocketAddr = host_port
        .parse()
        .with_context(|| format!("{url} does not name an IP address and port"))?;
    ensure!(addr.ip().is_loopback(), "{addr} is not a loopback address");
    Ok(addr)
}

/// `args` as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length of the answer at the start of `buffer` once it is all there,
/// `None` while it is not; an error for an answer other than `expect`.
fn complete(buffer: &[u8], expect: Expect) -> Result<Option<usize>> {
    let Some(line_end) = buffer.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buffer[..line_end];
    match (expect, line.first()) {
        (Expect::Ok, Some(b'+')) if line == b"+OK" => Ok(Some(line_end + 2)),
        (Expect::Value, Some(b'$')) => {
            let len: i64 = std::str::from_utf8(&line[1..])
                .ok()
                .and_then(|n| n.parse().ok())
                .context("a bulk string's length")?;
            ensure!(len >= 0, "the value is missing");
            let end = line_end + 2 + len as usize + 2;
            Ok((buffer.len() >= end).then_some(end))
        }
        _ => bail!("Redis answered {}", String::from_utf8_lossy(line)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(
            encode(&[b"GET", b"k:1"]),
            b"*2\r\n$3\r\nGET\r\n$3\r\nk:1\r\n".to_vec()
        );
    }

    #[test]
    fn answers_are_complete_only_when_all_there() {
        assert_eq!(complete(b"+OK\r\n", Expect::Ok).unwrap(), Some(5));
        assert_eq!(complete(b"+O", Expect::Ok).unwrap(), None);
        assert_eq!(complete(b"$3\r\nabc\r\n", Expect::Value).unwrap(), Some(9));
        assert_eq!(complete(b"$3\r\nab", Expect::Value).unwrap(), None);
        assert!(complete(b"$-1\r\n", Expect::Value).is_err());
        assert!(complete(b"-ERR wrong\r\n", Expect::Ok).is_err());
        assert!(complete(b"+OK\r\n", Expect::Value).is_err());
    }

    #[test]
    fn only_loopback_urls_are_used() {
        assert_eq!(
            address("redis://127.0.0.1:6390/0").unwrap(),
            "127.0.0.1:6390".parse().unwrap()
        );
        assert!(address("redis://10.0.0.1:6379").is_err());
        assert!(address("http://127.0.0.1:6379").is_err());
    }
}
