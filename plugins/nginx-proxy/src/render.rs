//! Rendering and parsing of route files: the nginx config for one route,
//! with its metadata in a first comment line so `list-routes` can read it
//! back.

use proxy_route::Route;

/// How routes are published: a location per user, or a server per user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `location <prefix> { ... }`, included inside a `server {}`.
    Path { location: String },
    /// `server { listen ...; server_name ...; ... }`, included in `http {}`.
    Host {
        server_name: String,
        listen: String,
        /// Whether the driver also serves a catch-all `default_server` that
        /// answers 404 (see [`RouteFile::default_server`]).
        default_server: bool,
    },
}

/// The settings that shape every route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The mode and its template.
    pub mode: Mode,
    /// The public URL template.
    pub url: String,
}

impl Template {
    /// Reads the template from the plugin settings (see the crate docs).
    ///
    /// Every template must tell sessions apart (hold `{user}` or
    /// `{route}`), and a location must end with `/`: nginx matches
    /// locations by prefix, so `/user-a-0` would also catch
    /// `/user-a-0-0/…`, another user's path.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Template, String> {
        let mode = match get("mode").as_deref().unwrap_or("path") {
            "path" => {
                let location = get("location_template").unwrap_or_else(|| "/{user}/".into());
                proxy_route::check_template("location_template", &location)?;
                if !location.starts_with('/') || !location.ends_with('/') {
                    return Err(format!(
                        "the location_template setting {location:?} must start and end with '/', \
                         or one user's location would be a prefix of another's"
                    ));
                }
                Mode::Path { location }
            }
            "host" => {
                let server_name = get("server_name_template")
                    .ok_or("host mode needs the server_name_template setting")?;
                proxy_route::check_template("server_name_template", &server_name)?;
                Mode::Host {
                    server_name,
                    listen: get("listen").unwrap_or_else(|| "80".into()),
                    default_server: get("default_server").is_none_or(|v| v.trim() != "false"),
                }
            }
            other => return Err(format!("mode must be path or host, not {other:?}")),
        };
        let url = get("url_template").unwrap_or_else(|| "http://127.0.0.1/{user}/".into());
        proxy_route::check_template("url_template", &url)?;
        Ok(Template { mode, url })
    }
}

/// The marker of the metadata line.
const HEADER: &str = "# vessel-route ";

/// A route's file: rendering and reading back.
pub struct RouteFile;

impl RouteFile {
    /// The file name of route `route_id`.
    pub fn file_name(route_id: &str) -> String {
        format!("vessel-{route_id}.conf")
    }

    /// The file's text for `route`; an error if the filled-in server name
    /// is not a valid host name.
    pub fn render(route: &Route, template: &Template) -> Result<String, String> {
        let header = serde_json::to_string(route).unwrap_or_default();
        let proxy = |indent: &str, pass: &str| {
            [
                format!("proxy_pass {pass};"),
                "proxy_http_version 1.1;".into(),
                "proxy_set_header Host $host;".into(),
                "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;".into(),
                "proxy_set_header X-Forwarded-Proto $scheme;".into(),
                "proxy_set_header Upgrade $http_upgrade;".into(),
                "proxy_set_header Connection $http_connection;".into(),
                "proxy_read_timeout 1h;".into(),
            ]
            .iter()
            .map(|line| format!("{indent}{line}\n"))
            .collect::<String>()
        };
        match &template.mode {
            Mode::Path { location } => {
                let prefix = route.fill(location);
                Ok(format!(
                    "{HEADER}{header}\nlocation ^~ {prefix} {{\n{}}}\n",
                    proxy("    ", &format!("http://{}/", route.authority()))
                ))
            }
            Mode::Host {
                server_name,
                listen,
                ..
            } => {
                let name = route.fill(server_name);
                proxy_route::check_host_name(&name)?;
                Ok(format!(
                    "{HEADER}{header}\nserver {{\n    listen {listen};\n    server_name {name};\n    location / {{\n{}    }}\n}}\n",
                    proxy("        ", &format!("http://{}", route.authority()))
                ))
            }
        }
    }

    /// The file that makes nginx answer 404 for host names no session has.
    /// Without it, nginx sends a request whose `Host` matches no
    /// `server_name` (a stopped user's name, an address, a typo) to the
    /// first server on the port, which would be some user's workspace.
    /// `None` in path mode, or when the operator serves a default server of
    /// their own (`default_server = false`).
    pub fn default_server(template: &Template) -> Option<(&'static str, String)> {
        match &template.mode {
            Mode::Host {
                listen,
                default_server: true,
                ..
            } => Some((
                "vessel-default-server.conf",
                format!(
                    "# vessel: requests for a host name no session has get 404, never another \
                     user's workspace\nserver {{\n    listen {listen} default_server;\n    \
                     server_name _;\n    return 404 \"no such workspace\\n\";\n}}\n"
                ),
            )),
            _ => None,
        }
    }

    /// Reads a route file's metadata back.
    pub fn parse(text: &str) -> Option<Route> {
        let first = text.lines().next()?;
        serde_json::from_str(first.strip_prefix(HEADER)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_route::RouteRequest;

    fn template(mode: &str) -> Template {
        Template::from_settings(|key| match (mode, key) {
            (_, "mode") => Some(mode.to_string()),
            (_, "url_template") => Some("https://dev.example.com/{user}/".into()),
            ("host", "server_name_template") => Some("{user}.dev.example.com".into()),
            _ => None,
        })
        .unwrap()
    }

    fn route(ip: &str, template: &Template) -> Route {
        let request = RouteRequest {
            route_id: "vessel-user-a-x",
            name: "user-a-x",
            user_id: "User-A",
            target_ip: ip,
            target_port: 8080,
        };
        Route::new(request, &template.url).unwrap()
    }

    #[test]
    fn a_path_route_is_a_location_that_strips_the_prefix() {
        let t = template("path");
        let file = route("127.61.0.2", &t);
        let text = RouteFile::render(&file, &t).unwrap();
        assert!(text.contains("location ^~ /user-a-x/ {"), "{text}");
        assert!(
            text.contains("proxy_pass http://127.61.0.2:8080/;"),
            "{text}"
        );
        assert_eq!(file.url, "https://dev.example.com/user-a-x/");
        assert_eq!(RouteFile::parse(&text), Some(file));
    }

    #[test]
    fn a_host_route_is_a_server_block() {
        let t = template("host");
        let file = route("::1", &t);
        let text = RouteFile::render(&file, &t).unwrap();
        assert!(
            text.contains("server_name user-a-x.dev.example.com;"),
            "{text}"
        );
        assert!(text.contains("listen 80;"), "{text}");
        assert!(text.contains("proxy_pass http://[::1]:8080;"), "{text}");
    }

    #[test]
    fn host_mode_has_a_catch_all_server_unless_the_operator_has_one() {
        let file = RouteFile::default_server(&template("host")).unwrap();
        assert!(file.1.contains("listen 80 default_server;"), "{}", file.1);
        assert!(file.1.contains("return 404"));
        assert_eq!(RouteFile::parse(&file.1), None, "not a route");
        assert_eq!(RouteFile::default_server(&template("path")), None);
        let own = Template::from_settings(|k| match k {
            "mode" => Some("host".into()),
            "server_name_template" => Some("{user}.example.com".into()),
            "default_server" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(RouteFile::default_server(&own), None);
    }

    #[test]
    fn host_mode_needs_a_server_name() {
        assert!(Template::from_settings(|k| (k == "mode").then(|| "host".into())).is_err());
    }

    #[test]
    fn templates_that_would_let_users_share_a_name_are_refused() {
        for (key, value) in [
            ("location_template", "/workspace/"),
            ("location_template", "/{user}"),
            ("url_template", "http://127.0.0.1/"),
        ] {
            let result = Template::from_settings(|k| (k == key).then(|| value.to_string()));
            assert!(result.is_err(), "{key} = {value}");
        }
        let shared_host = Template::from_settings(|k| match k {
            "mode" => Some("host".into()),
            "server_name_template" => Some("dev.example.com".into()),
            _ => None,
        });
        assert!(shared_host.is_err());
    }

    #[test]
    fn a_server_name_over_a_dns_label_is_refused() {
        let t = Template::from_settings(|k| match k {
            "mode" => Some("host".into()),
            "server_name_template" => Some("{route}.example.com".into()),
            _ => None,
        })
        .unwrap();
        let mut file = route("127.61.0.2", &t);
        file.route_id = format!("vessel-{}", "a".repeat(59));
        assert!(RouteFile::render(&file, &t).is_err());
    }
}
