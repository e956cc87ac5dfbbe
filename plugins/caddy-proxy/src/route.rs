//! Caddy route objects for Vessel's sessions, and reading them back.
//!
//! The route's own metadata (route id, user, URL) rides in a `vars` handler,
//! which Caddy accepts with any keys and which has no effect on traffic.

use proxy_route::Route;
use serde_json::{Value, json};

/// How sessions are matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// By path prefix, stripped before proxying.
    Path(String),
    /// By host name.
    Host(String),
}

/// The settings that shape every route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The matcher template.
    pub matcher: Match,
    /// The public URL template.
    pub url: String,
}

impl Layout {
    /// Reads the layout from the plugin settings (see the crate docs).
    ///
    /// Every template must tell sessions apart (hold `{user}` or
    /// `{route}`); Caddy's path and host matchers ignore case, which the
    /// public name `{user}` is safe against.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Layout, String> {
        let matcher = match get("mode").as_deref().unwrap_or("path") {
            "path" => {
                let template = get("path_template").unwrap_or_else(|| "/{user}".into());
                proxy_route::check_template("path_template", &template)?;
                if !template.starts_with('/') {
                    return Err(format!(
                        "the path_template setting {template:?} must start with '/'"
                    ));
                }
                Match::Path(template)
            }
            "host" => {
                let template =
                    get("host_template").ok_or("host mode needs the host_template setting")?;
                proxy_route::check_template("host_template", &template)?;
                Match::Host(template)
            }
            other => return Err(format!("mode must be path or host, not {other:?}")),
        };
        let url = get("url_template").unwrap_or_else(|| "http://127.0.0.1/{user}/".into());
        proxy_route::check_template("url_template", &url)?;
        Ok(Layout { matcher, url })
    }
}

/// Converts routes to and from Caddy's JSON config.
pub struct RouteObject;

const ID_PREFIX: &str = "vessel-";

impl RouteObject {
    /// The Caddy `@id` of route `route_id`.
    pub fn caddy_id(route_id: &str) -> String {
        format!("{ID_PREFIX}{route_id}")
    }

    /// `route` as Caddy's JSON config; an error if the filled-in host name
    /// is not a valid one.
    pub fn to_caddy(route: &Route, layout: &Layout) -> Result<Value, String> {
        let vars = json!({
            "handler": "vars",
            "vessel_route": route.route_id,
            "vessel_name": route.name,
            "vessel_user": route.user_id,
            "vessel_url": route.url,
        });
        let proxy = json!({
            "handler": "reverse_proxy",
            "upstreams": [{ "dial": route.authority() }],
        });
        let (matcher, handlers) = match &layout.matcher {
            Match::Path(template) => {
                let prefix = route.fill(template);
                let prefix = prefix.trim_end_matches('/').to_string();
                (
                    json!({ "path": [prefix.clone(), format!("{prefix}/*")] }),
                    vec![
                        vars,
                        json!({ "handler": "rewrite", "strip_path_prefix": prefix }),
                        proxy,
                    ],
                )
            }
            Match::Host(template) => {
                let host = route.fill(template);
                proxy_route::check_host_name(&host)?;
                (json!({ "host": [host] }), vec![vars, proxy])
            }
        };
        Ok(json!({
            "@id": RouteObject::caddy_id(&route.route_id),
            "match": [matcher],
            "handle": [{ "handler": "subroute", "routes": [{ "handle": handlers }] }],
            "terminal": true,
        }))
    }

    /// Reads one of Vessel's routes back from Caddy's config; `None` for
    /// routes that are not Vessel's.
    pub fn from_caddy(route: &Value) -> Option<Route> {
        route.get("@id")?.as_str()?.strip_prefix(ID_PREFIX)?;
        let handlers = route
            .get("handle")?
            .get(0)?
            .get("routes")?
            .get(0)?
            .get("handle")?
            .as_array()?;
        let vars = handlers
            .iter()
            .find(|h| h.get("handler").and_then(Value::as_str) == Some("vars"))?;
        let dial = handlers
            .iter()
            .find(|h| h.get("handler").and_then(Value::as_str) == Some("reverse_proxy"))?
            .get("upstreams")?
            .get(0)?
            .get("dial")?
            .as_str()?;
        let (host, port) = dial.rsplit_once(':')?;
        Some(Route {
            route_id: vars.get("vessel_route")?.as_str()?.to_string(),
            name: vars
                .get("vessel_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            user_id: vars.get("vessel_user")?.as_str()?.to_string(),
            target_ip: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            target_port: port.parse().ok()?,
            url: vars.get("vessel_url")?.as_str()?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_route::RouteRequest;

    fn layout(mode: &str) -> Layout {
        Layout::from_settings(|key| match key {
            "mode" => Some(mode.to_string()),
            "host_template" => Some("{user}.dev.example.com".into()),
            "url_template" => Some("http://127.0.0.1:8081/{user}/".into()),
            _ => None,
        })
        .unwrap()
    }

    fn route(route_id: &str, ip: &str, port: u16, layout: &Layout) -> Route {
        let request = RouteRequest {
            route_id,
            name: "user-a-x",
            user_id: "User-A",
            target_ip: ip,
            target_port: port,
        };
        Route::new(request, &layout.url).unwrap()
    }

    #[test]
    fn a_path_route_strips_the_prefix_and_reads_back() {
        let layout = layout("path");
        let object = route("vessel-user-a-x", "127.61.0.2", 8080, &layout);
        let json = RouteObject::to_caddy(&object, &layout).unwrap();
        assert_eq!(json["@id"], "vessel-vessel-user-a-x");
        assert_eq!(json["match"][0]["path"][0], "/user-a-x");
        assert_eq!(json["match"][0]["path"][1], "/user-a-x/*");
        let handlers = &json["handle"][0]["routes"][0]["handle"];
        assert_eq!(handlers[1]["strip_path_prefix"], "/user-a-x");
        assert_eq!(handlers[2]["upstreams"][0]["dial"], "127.61.0.2:8080");
        assert_eq!(RouteObject::from_caddy(&json), Some(object));
    }

    #[test]
    fn a_host_route_matches_the_host() {
        let layout = layout("host");
        let object = route("r", "::1", 80, &layout);
        let json = RouteObject::to_caddy(&object, &layout).unwrap();
        assert_eq!(json["match"][0]["host"][0], "user-a-x.dev.example.com");
        assert_eq!(RouteObject::from_caddy(&json).unwrap().target_ip, "::1");
    }

    #[test]
    fn templates_that_would_let_users_share_a_name_are_refused() {
        for (mode, key, value) in [
            ("path", "path_template", "/workspace"),
            ("path", "path_template", "{user}"),
            ("host", "host_template", "dev.example.com"),
            ("path", "url_template", "http://127.0.0.1/"),
        ] {
            let layout = Layout::from_settings(|k| match k {
                "mode" => Some(mode.to_string()),
                "host_template" if key != k => Some("{user}.example.com".into()),
                k if k == key => Some(value.to_string()),
                _ => None,
            });
            assert!(layout.is_err(), "{key} = {value}");
        }
    }

    #[test]
    fn foreign_routes_are_ignored() {
        assert_eq!(
            RouteObject::from_caddy(&json!({"@id": "other", "handle": []})),
            None
        );
        assert_eq!(RouteObject::from_caddy(&json!({"handle": []})), None);
    }
}
