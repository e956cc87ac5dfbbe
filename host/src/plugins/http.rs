//! The `http` capability: outbound HTTP requests to the origins granted to a
//! plugin, without redirects, with a time limit and a capped response.

use std::time::Duration;

use reqwest::{Method, Url};

use crate::config::HttpGrant;

/// The longest a request may take when the plugin asks for no limit, and
/// the most it may ask for.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(30);

/// The largest response body kept; a larger one fails the request.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a request was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL's origin, or the method or path on it, is not granted to
    /// the plugin.
    #[error("HTTP {0} is not allowed: no http grant of this plugin covers it")]
    Denied(String),
    /// The URL, method or a header is malformed.
    #[error("invalid HTTP request: {0}")]
    Invalid(String),
    /// The server could not be reached.
    #[error("{url} is unreachable: {reason}")]
    Unavailable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request ran past its limit.
    #[error("{url} did not answer within {limit:?}")]
    TimedOut {
        /// The URL.
        url: String,
        /// The limit.
        limit: Duration,
    },
    /// Anything else.
    #[error("HTTP request to {url} failed: {reason}")]
    Failed {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// A request a plugin asked for.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// The method.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Vec<u8>>,
    /// The limit the plugin asked for, if any.
    pub timeout: Option<Duration>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An origin: scheme, host and port, the unit HTTP grants are made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an origin such as `http://127.0.0.1:2019`. A path other than
    /// `/`, a query, a fragment or credentials are refused.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} must be an origin (scheme://host:port) without a path"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?} must not hold credentials"));
        }
        Origin::of(&url).ok_or_else(|| format!("{text:?} must be an http:// origin with a host"))
    }

    fn of(url: &Url) -> Option<Origin> {
        if url.scheme() != "http" {
            return None;
        }
        Some(Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

/// One HTTP grant, parsed: an origin, and the methods and path prefixes
/// allowed on it (empty: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    origin: Origin,
    methods: Vec<Method>,
    paths: Vec<String>,
}

impl HttpRule {
    /// Parses a grant.
    pub fn new(grant: &HttpGrant) -> Result<HttpRule, String> {
        let origin = Origin::parse(grant.origin())?;
        let (methods, paths) = match grant {
            HttpGrant::Origin(_) => (Vec::new(), Vec::new()),
            HttpGrant::Limited { methods, paths, .. } => (methods.clone(), paths.clone()),
        };
        let methods = methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("{m:?} is not an HTTP method"))
            })
            .collect::<Result<_, _>>()?;
        if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
            return Err(format!("path prefix {bad:?} must start with '/'"));
        }
        Ok(HttpRule {
            origin,
            methods,
            paths,
        })
    }

    /// Whether this rule lets `method` reach `url` (whose path the URL
    /// parser has already freed of `.` and `..`).
    fn covers(&self, method: &Method, url: &Url) -> bool {
        Origin::of(url).is_some_and(|origin| origin == self.origin)
            && (self.methods.is_empty() || self.methods.contains(method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| url.path().starts_with(p)))
    }
}

/// A plugin's HTTP grants and the client that serves them.
#[derive(Debug, Clone)]
pub struct HttpAllowlist {
    rules: Vec<HttpRule>,
    client: Option<reqwest::Client>,
}

impl HttpAllowlist {
    /// The allowlist for `grants` (already validated by the config).
    pub fn new(grants: &[HttpGrant]) -> Result<HttpAllowlist, String> {
        let rules = grants
            .iter()
            .map(HttpRule::new)
            .collect::<Result<Vec<_>, _>>()?;
        let client = if rules.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    // A fresh connection per request: a server that closes
                    // its idle connections when it reconfigures (Caddy's
                    // admin API does, on every change) would otherwise fail
                    // the next request on a pooled one.
                    .pool_max_idle_per_host(0)
                    .build()
                    .map_err(|e| format!("cannot create the HTTP client: {e}"))?,
            )
        };
        Ok(HttpAllowlist { rules, client })
    }

    /// Sends `request` if its origin is granted.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = Url::parse(&request.url)
            .map_err(|e| HttpError::Invalid(format!("{:?} is not a URL: {e}", request.url)))?;
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("{:?} is not a method", request.method)))?;
        let granted = self.rules.iter().any(|rule| rule.covers(&method, &url));
        let client = match (&self.client, granted) {
            (Some(client), true) => client,
            _ => return Err(HttpError::Denied(format!("{method} {url}"))),
        };
        let limit = request
            .timeout
            .map_or(MAX_REQUEST_TIME, |asked| asked.min(MAX_REQUEST_TIME));
        let mut builder = client.request(method, url.clone()).timeout(limit);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let url_text = url.to_string();
        let classify = |error: reqwest::Error| {
            if error.is_timeout() {
                HttpError::TimedOut {
                    url: url_text.clone(),
                    limit,
                }
            } else if error.is_connect() {
                HttpError::Unavailable {
                    url: url_text.clone(),
                    reason: error.to_string(),
                }
            } else if error.is_builder() {
                HttpError::Invalid(error.to_string())
            } else {
                HttpError::Failed {
                    url: url_text.clone(),
                    reason: error.to_string(),
                }
            }
        };
        let mut response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::Failed {
                    url: url_text.clone(),
                    reason: format!("the response body exceeds {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let origin = Origin::parse("http://127.0.0.1:2019").unwrap();
        assert_eq!(origin, Origin::parse("http://127.0.0.1:2019/").unwrap());
        assert_ne!(origin, Origin::parse("http://127.0.0.1:2020").unwrap());
        assert_eq!(
            Origin::parse("http://localhost").unwrap().port,
            80,
            "the default port is made explicit"
        );
        for bad in [
            "http://127.0.0.1:2019/config",
            "http://user:pw@127.0.0.1:2019",
            "127.0.0.1:2019",
            "ftp://127.0.0.1",
            "http://127.0.0.1:2019/?a=b",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    /// A one-shot HTTP server on loopback answering `answer` to one request,
    /// returning the request it received.
    async fn one_shot(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = vec![0u8; 8192];
            let n = socket.read(&mut received).await.unwrap();
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&received[..n]).into_owned()
        });
        (origin, served)
    }

    #[tokio::test]
    async fn a_granted_origin_is_reached_and_others_are_denied() {
        let (origin, served) =
            one_shot("HTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-a: b\r\n\r\nok").await;
        let allow = HttpAllowlist::new(&[HttpGrant::Origin(origin.clone())]).unwrap();
        let response = allow
            .send(HttpRequest {
                method: "PATCH".into(),
                url: format!("{origin}/config/x"),
                headers: vec![("content-type".into(), "application/json".into())],
                body: Some(b"{}".to_vec()),
                timeout: None,
            })
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.body, b"ok");
        assert!(response.headers.contains(&("x-a".into(), "b".into())));
        let request = served.await.unwrap();
        assert!(request.starts_with("PATCH /config/x HTTP/1.1"), "{request}");

        let denied = allow
            .send(HttpRequest {
                method: "GET".into(),
                url: "http://127.0.0.1:1/".into(),
                ..HttpRequest::default()
            })
            .await;
        assert!(matches!(denied, Err(HttpError::Denied(_))), "{denied:?}");
        let nothing_granted = HttpAllowlist::new(&[]).unwrap();
        let denied = nothing_granted
            .send(HttpRequest {
                method: "GET".into(),
                url: format!("{origin}/"),
                ..HttpRequest::default()
            })
            .await;
        assert!(matches!(denied, Err(HttpError::Denied(_))), "{denied:?}");
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let (origin, _served) = one_shot(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:1/\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let allow = HttpAllowlist::new(&[HttpGrant::Origin(origin.clone())]).unwrap();
        let response = allow
            .send(HttpRequest {
                method: "GET".into(),
                url: format!("{origin}/"),
                ..HttpRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(response.status, 302);
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let origin = format!("http://127.0.0.1:{port}");
        let allow = HttpAllowlist::new(&[HttpGrant::Origin(origin.clone())]).unwrap();
        let result = allow
            .send(HttpRequest {
                method: "GET".into(),
                url: format!("{origin}/"),
                ..HttpRequest::default()
            })
            .await;
        assert!(
            matches!(result, Err(HttpError::Unavailable { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_limited_grant_allows_only_its_methods_and_paths() {
        let (origin, served) = one_shot("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let allow = HttpAllowlist::new(&[HttpGrant::Limited {
            origin: origin.clone(),
            methods: vec!["GET".into(), "delete".into()],
            paths: vec!["/id/vessel-".into()],
        }])
        .unwrap();
        let send = |method: &str, path: &str| {
            allow.send(HttpRequest {
                method: method.into(),
                url: format!("{origin}{path}"),
                ..HttpRequest::default()
            })
        };
        for (method, path) in [
            ("POST", "/load"),
            ("GET", "/load"),
            ("POST", "/id/vessel-a"),
            ("GET", "/id/vessel-a/../../load"),
            ("GET", "/id/vessel-%2e%2e/%2e%2e/load"),
            ("GET", "/config/"),
        ] {
            let denied = send(method, path).await;
            assert!(
                matches!(denied, Err(HttpError::Denied(_))),
                "{method} {path}: {denied:?}"
            );
        }
        assert_eq!(send("DELETE", "/id/vessel-a").await.unwrap().status, 200);
        assert!(served.await.unwrap().starts_with("DELETE /id/vessel-a "));
    }
}
