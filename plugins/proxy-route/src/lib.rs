//! The route a proxy driver publishes for one session, validated once for
//! every proxy driver: ids in the contract's charset (safe in file names,
//! config files and URLs), an IP address, a non-zero port, and the public
//! URL filled in from the operator's template.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Whether `id` is in the contract's id charset: 1 to 64 characters of
/// `[A-Za-z0-9_-]`.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Replaces `{user}` and `{route}` in `template`.
pub fn fill(template: &str, route_id: &str, user_id: &str) -> String {
    template
        .replace("{user}", user_id)
        .replace("{route}", route_id)
}

/// One session's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The route id (the session's VM id).
    pub route_id: String,
    /// The user.
    pub user_id: String,
    /// The VM's address.
    pub target_ip: String,
    /// The VM's port.
    pub target_port: u16,
    /// The public URL.
    pub url: String,
}

impl Route {
    /// A validated route whose URL is `url_template` filled in.
    pub fn new(
        route_id: &str,
        user_id: &str,
        target_ip: &str,
        target_port: u16,
        url_template: &str,
    ) -> Result<Route, String> {
        if !is_safe_id(route_id) || !is_safe_id(user_id) {
            return Err(format!(
                "route id {route_id:?} or user id {user_id:?} is not valid"
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
            user_id: user_id.to_string(),
            target_ip: target_ip.to_string(),
            target_port,
            url: fill(url_template, route_id, user_id),
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
        fill(template, &self.route_id, &self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_route_gets_its_url_and_authority() {
        let route = Route::new(
            "user-a-session",
            "a",
            "127.61.0.2",
            8080,
            "http://x/{user}/{route}",
        )
        .unwrap();
        assert_eq!(route.url, "http://x/a/user-a-session");
        assert_eq!(route.authority(), "127.61.0.2:8080");
        let v6 = Route::new("r", "a", "::1", 80, "").unwrap();
        assert_eq!(v6.authority(), "[::1]:80");
    }

    #[test]
    fn input_that_could_escape_a_config_is_refused() {
        for (route, user, ip, port) in [
            ("a;b", "a", "127.0.0.1", 80),
            ("r", "a}", "127.0.0.1", 80),
            ("r", "a/b", "127.0.0.1", 80),
            ("r", "a", "127.0.0.1; evil", 80),
            ("r", "a", "localhost", 80),
            ("r", "a", "127.0.0.1", 0),
            ("", "a", "127.0.0.1", 80),
        ] {
            assert!(
                Route::new(route, user, ip, port, "").is_err(),
                "{route} {user} {ip} {port}"
            );
        }
    }
}
