//! The route a proxy driver publishes for one session, validated once for
//! every proxy driver: ids in the contract's charset (safe in file names,
//! config files and URLs), a public name that is a DNS label, an IP
//! address, a non-zero port, and the public URL filled in from the
//! operator's template.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The longest route id the contract gives (`vessel-` and a 59-character
/// public name).
pub const MAX_ID_LEN: usize = 66;

/// Whether `id` is in the contract's id charset: 1 to [`MAX_ID_LEN`]
/// characters of `[A-Za-z0-9_-]`, starting with a letter or digit (route
/// ids are lower case; records of Vessel 0.1 may still hold upper case and
/// `_`, which every proxy driver writes only into case-sensitive places).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `name` is a DNS label as RFC 1123 defines it, in lower case: 1 to
/// 63 characters of `[a-z0-9-]`, starting and ending with a letter or
/// digit. Every public name the host gives is one.
pub fn is_dns_label(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name.chars().all(|c| alnum(c) || c == '-')
}

/// Checks an operator's template for one place users are told apart: it
/// must hold `{user}` (the public name) or `{route}` (the route id), or
/// every session would get the same name.
pub fn check_template(setting: &str, template: &str) -> Result<(), String> {
    if template.contains("{user}") || template.contains("{route}") {
        Ok(())
    } else {
        Err(format!(
            "the {setting} setting {template:?} must contain {{user}} or {{route}}, \
             or every session would share one name"
        ))
    }
}

/// Replaces `{user}` with the public name and `{route}` with the route id
/// in `template`.
pub fn fill(template: &str, route_id: &str, name: &str) -> String {
    template
        .replace("{user}", name)
        .replace("{route}", route_id)
}

/// Checks that `host` (a template filled in) is a host name a proxy can
/// match: dot-separated DNS labels, 253 characters at most. A template
/// that puts a route id (up to 66 characters) into one label can break the
/// 63-character limit; the operator should use `{user}` there.
pub fn check_host_name(host: &str) -> Result<(), String> {
    let lower = host.to_ascii_lowercase();
    if lower.len() <= 253 && lower.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(format!(
            "host name {host:?} is not a valid DNS name (labels of 1 to 63 letters, \
             digits and '-'); use {{user}}, the public name, in host templates"
        ))
    }
}

/// One session's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The route id (the session's VM id).
    pub route_id: String,
    /// The session's public name: the DNS label its URL is built from.
    /// (Absent in routes written before 0.2, which used the user id.)
    #[serde(default)]
    pub name: String,
    /// The exact user id.
    pub user_id: String,
    /// The VM's address.
    pub target_ip: String,
    /// The VM's port.
    pub target_port: u16,
    /// The public URL.
    pub url: String,
}

/// What the host asks to route: the fields of the contract's `route-spec`.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The route id.
    pub route_id: &'a str,
    /// The public name.
    pub name: &'a str,
    /// The exact user id.
    pub user_id: &'a str,
    /// The VM's address.
    pub target_ip: &'a str,
    /// The VM's port.
    pub target_port: u16,
}

impl Route {
    /// A validated route whose URL is `url_template` filled in.
    pub fn new(request: RouteRequest<'_>, url_template: &str) -> Result<Route, String> {
        let RouteRequest {
            route_id,
            name,
            user_id,
            target_ip,
            target_port,
        } = request;
        if !is_safe_id(route_id) || !is_safe_id(user_id) {
            return Err(format!(
                "route id {route_id:?} or user id {user_id:?} is not valid"
            ));
        }
        if !is_dns_label(name) {
            return Err(format!(
                "public name {name:?} is not a lower-case DNS label"
            ));
        }
        target_ip
            .parse::<IpAddr>()
            .map_err(|_| format!("target {target_ip:?} is not an IP address"))?;
        if target_port == 0 {
            return Err("target port must not be 0".into());
        }
        Ok(Route {
            route_id: route_id.to_string(),
            name: name.to_string(),
            user_id: user_id.to_string(),
            target_ip: target_ip.to_string(),
            target_port,
            url: fill(url_template, route_id, name),
        })
    }

    /// `ip:port` as proxies write an upstream (`[ip]:port` for IPv6).
    pub fn authority(&self) -> String {
        match self.target_ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.target_port),
            _ => format!("{}:{}", self.target_ip, self.target_port),
        }
    }

    /// Fills `template` for this route.
    pub fn fill(&self, template: &str) -> String {
        fill(template, &self.route_id, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(route_id: &'a str, name: &'a str, ip: &'a str, port: u16) -> RouteRequest<'a> {
        RouteRequest {
            route_id,
            name,
            user_id: "User-A",
            target_ip: ip,
            target_port: port,
        }
    }

    #[test]
    fn a_valid_route_gets_its_url_from_the_public_name() {
        let route = Route::new(
            request("vessel-user-a-x", "user-a-x", "127.61.0.2", 8080),
            "http://x/{user}/{route}",
        )
        .unwrap();
        assert_eq!(route.url, "http://x/user-a-x/vessel-user-a-x");
        assert_eq!(route.user_id, "User-A");
        assert_eq!(route.authority(), "127.61.0.2:8080");
        let v6 = Route::new(request("r", "a-0", "::1", 80), "").unwrap();
        assert_eq!(v6.authority(), "[::1]:80");
    }

    #[test]
    fn input_that_could_escape_a_config_is_refused() {
        for (route, name, ip, port) in [
            ("a;b", "a-0", "127.0.0.1", 80),
            ("r", "a}", "127.0.0.1", 80),
            ("r", "a/b", "127.0.0.1", 80),
            ("r", "User-A", "127.0.0.1", 80),
            ("r", "a_b", "127.0.0.1", 80),
            ("r", "a-", "127.0.0.1", 80),
            ("r", "a.example.com", "127.0.0.1", 80),
            ("r", "a-0", "127.0.0.1; evil", 80),
            ("r", "a-0", "localhost", 80),
            ("r", "a-0", "127.0.0.1", 0),
            ("", "a-0", "127.0.0.1", 80),
        ] {
            assert!(
                Route::new(request(route, name, ip, port), "").is_err(),
                "{route} {name} {ip} {port}"
            );
        }
        let mut bad_user = request("r", "a-0", "127.0.0.1", 80);
        bad_user.user_id = "a b";
        assert!(Route::new(bad_user, "").is_err());
    }

    #[test]
    fn templates_must_tell_sessions_apart() {
        assert!(check_template("url_template", "http://x/{user}/").is_ok());
        assert!(check_template("url_template", "http://x/{route}/").is_ok());
        assert!(check_template("url_template", "http://x/").is_err());
    }

    #[test]
    fn host_names_must_be_dns_names() {
        assert!(check_host_name("user-a-x.dev.example.com").is_ok());
        assert!(check_host_name("user-a-x.Dev.Example.com").is_ok());
        let long_label = format!("vessel-{}.example.com", "a".repeat(59));
        assert!(check_host_name(&long_label).is_err());
        assert!(check_host_name("a..example.com").is_err());
        assert!(check_host_name("a_b.example.com").is_err());
    }
}
