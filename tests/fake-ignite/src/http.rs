//! The HTTP side of a fake VM: one request per connection, `GET`/`HEAD` of
//! the files under the VM's served directory. A file answers 200 with its
//! bytes, a directory 200 with a plain listing, anything else 404; every
//! response carries `X-Fake-Ignite-VM: <name>`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// What a VM serves.
#[derive(Clone, Debug)]
pub struct Site {
    /// The VM's file system on the host.
    pub root: PathBuf,
    /// The served directory inside the VM, e.g. `/workspace`.
    pub serve_dir: String,
    /// The VM's name, echoed in `X-Fake-Ignite-VM`.
    pub vm_name: String,
}

/// A response before serialization.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Reads one request from `stream`, answers it and closes the connection.
pub fn handle(mut stream: TcpStream, site: &Site) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(reader_stream) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_stream.take(MAX_HEAD as u64));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers; the fake needs none of them.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let response = match method {
        "GET" | "HEAD" => respond(site, target),
        _ => text(405, "405 method not allowed\n"),
    };
    let _ = stream.write_all(&serialize(&response, &site.vm_name, method == "HEAD"));
    let _ = stream.flush();
}

/// The response to a `GET` of `target`.
pub fn respond(site: &Site, target: &str) -> Response {
    let not_found = || text(404, "404 page not found\n");
    let Some(relative) = request_path(target) else {
        return not_found();
    };
    let Some(base) = site_dir(site) else {
        return not_found();
    };
    let Ok(resolved) = base.join(&relative).canonicalize() else {
        return not_found();
    };
    if !resolved.starts_with(&base) {
        return not_found();
    }
    if resolved.is_dir() {
        return match listing(&resolved) {
            Some(body) => Response {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body,
            },
            None => not_found(),
        };
    }
    match fs::read(&resolved) {
        Ok(body) => Response {
            status: 200,
            content_type: content_type(&resolved),
            body,
        },
        Err(_) => not_found(),
    }
}

/// The served directory on the host, canonicalized, if it exists.
fn site_dir(site: &Site) -> Option<PathBuf> {
    let inside = site.serve_dir.trim_start_matches('/');
    site.root.join(inside).canonicalize().ok()
}

/// The URL path as a relative file path: percent-decoded, query dropped, `.`
/// segments removed; `None` if it tries to climb with `..`.
fn request_path(target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let mut out = PathBuf::new();
    for component in Path::new(&decoded).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes; `None` on malformed escapes or non-UTF-8 results.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One entry per line, sorted, directories with a trailing `/`.
fn listing(dir: &Path) -> Option<Vec<u8>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    names.sort();
    Some(
        names
            .iter()
            .map(|n| format!("{n}\n"))
            .collect::<String>()
            .into_bytes(),
    )
}

/// A guess at the media type from the file extension.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md" | "rs" | "toml" | "py" | "sh") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A plain-text response.
fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.as_bytes().to_vec(),
    }
}

/// The bytes on the wire.
fn serialize(response: &Response, vm_name: &str, head_only: bool) -> Vec<u8> {
    let reason = match response.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Fake-Ignite-VM: {vm_name}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(tag: &str) -> Site {
        let root =
            std::env::temp_dir().join(format!("fake-ignite-http-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("workspace/sub")).expect("dirs");
        fs::write(root.join("workspace/README.md"), "hello\n").expect("file");
        fs::write(root.join("secret"), "outside").expect("file");
        Site {
            root,
            serve_dir: "/workspace".into(),
            vm_name: "vm1".into(),
        }
    }

    #[test]
    fn serves_files_listings_and_404s() {
        let site = site("serve");
        let file = respond(&site, "/README.md?x=1");
        assert_eq!(
            (file.status, file.body.as_slice()),
            (200, b"hello\n".as_slice())
        );
        let dir = respond(&site, "/");
        assert_eq!(String::from_utf8_lossy(&dir.body), "README.md\nsub/\n");
        assert_eq!(respond(&site, "/missing").status, 404);
        assert_eq!(respond(&site, "/../secret").status, 404);
        assert_eq!(respond(&site, "/%2e%2e/secret").status, 404);
        assert_eq!(respond(&site, "/READ%4dE.md").status, 200);
        let _ = fs::remove_dir_all(&site.root);
    }

    #[test]
    fn responses_carry_the_vm_header() {
        let wire = serialize(&text(404, "x"), "vm1", false);
        let wire = String::from_utf8_lossy(&wire);
        assert!(wire.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(wire.contains("\r\nX-Fake-Ignite-VM: vm1\r\n"));
        assert!(wire.ends_with("\r\n\r\nx"));
    }
}
