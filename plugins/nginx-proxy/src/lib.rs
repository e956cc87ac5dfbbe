//! `nginx-proxy`: a proxy driver that publishes each session as one nginx
//! config file.
//!
//! Every route is a file `vessel-<route-id>.conf` in the directory the
//! operator granted the plugin (its only view of the file system), which the
//! operator's nginx config includes. A change is written atomically, checked
//! with `nginx -t`, and applied with `nginx -s reload`; if the check or the
//! reload fails, the previous file is put back, so a bad route never breaks
//! the routes already served.
//!
//! Settings:
//! - `routes_dir`: guest path of the granted routes directory (`/routes`).
//! - `mode`: `path` (default) — each route is a `location` block, included
//!   inside the operator's `server {}`; or `host` — each route is a whole
//!   `server {}` block for one host name, included in `http {}`.
//! - `url_template`: the public URL; `{user}` is replaced by the session's
//!   public name (a lower-case DNS label unique per user, even ignoring
//!   case) and `{route}` by the route id (default `http://127.0.0.1/{user}/`).
//! - `location_template` (path mode): the location prefix (`/{user}/`); it
//!   must start and end with `/`, so no user's prefix covers another's.
//! - `server_name_template` (host mode): the host name, e.g.
//!   `{user}.dev.example.com` (nginx compares host names ignoring case,
//!   which the public name is safe against).
//!
//! Every template must contain `{user}` or `{route}`.
//! - `listen` (host mode): the `listen` parameters (`80`).
//! - `default_server` (host mode): also write `vessel-default-server.conf`,
//!   a `default_server` on `listen` that answers 404 (`true`). Without a
//!   default server, nginx sends a request for an unknown host name (a
//!   stopped user's, an address) to the first server on the port: another
//!   user's workspace. Set `false` only if your own config has one.
//! - `nginx`: the exec grant to run nginx with (`nginx`); grant it with the
//!   `-c`/`-p` arguments of the nginx to control.
//! - `exec_timeout_ms`: limit for each nginx run (`30000`).

mod render;

use proxy_route::{Route, RouteRequest};
use render::{RouteFile, Template};

wit_bindgen::generate!({
    world: "proxy-plugin",
    path: "../../wit",
});

use exports::vessel::infra::proxy_driver::Guest;
use vessel::infra::config;
use vessel::infra::log::{Level, log};
use vessel::infra::process::{ExecRequest, exec};
use vessel::infra::types::{DriverError, RouteInfo, RouteSpec};

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

struct NginxProxy;

fn setting(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

fn routes_dir() -> PathBuf {
    PathBuf::from(setting("routes_dir", "/routes"))
}

fn template() -> Result<Template, DriverError> {
    Template::from_settings(config::get).map_err(DriverError::InvalidInput)
}

fn io_error(what: &str, error: std::io::Error) -> DriverError {
    match error.kind() {
        ErrorKind::PermissionDenied => DriverError::Denied(format!("{what}: {error}")),
        _ => DriverError::Failed(format!("{what}: {error}")),
    }
}

/// Runs nginx with `args` through the exec grant; returns stderr on failure.
fn nginx(args: &[&str]) -> Result<(), DriverError> {
    let timeout_ms = setting("exec_timeout_ms", "30000")
        .parse()
        .unwrap_or(30_000);
    let output = exec(&ExecRequest {
        program: setting("nginx", "nginx"),
        args: args.iter().map(|a| a.to_string()).collect(),
        timeout_ms,
        stdin: None,
    })?;
    if output.exit_code == Some(0) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(DriverError::Failed(format!(
        "nginx {} exited with {:?}: {stderr}",
        args.join(" "),
        output.exit_code
    )))
}

/// Replaces (or, with `None`, removes) the file at `path`, then checks and
/// reloads nginx. On failure the previous content is restored.
fn apply(path: &PathBuf, content: Option<&str>) -> Result<(), DriverError> {
    let previous = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("reading the route file", e)),
    };
    write_or_remove(path, content)?;
    let checked = nginx(&["-t"]).map_err(|error| match error {
        DriverError::Failed(message) => {
            DriverError::InvalidInput(format!("nginx refused the route: {message}"))
        }
        other => other,
    });
    let applied = checked.and_then(|()| nginx(&["-s", "reload"]));
    if let Err(error) = applied {
        // Put back what nginx was serving; it did not load the change.
        if let Err(restore) = write_or_remove(path, previous.as_deref()) {
            log(
                Level::Error,
                &format!("cannot restore {}: {restore:?}", path.display()),
            );
        }
        return Err(error);
    }
    Ok(())
}

fn write_or_remove(path: &PathBuf, content: Option<&str>) -> Result<(), DriverError> {
    match content {
        Some(text) => {
            // Not `*.conf` while being written, so nginx never includes a half file.
            let tmp = path.with_extension("conf.tmp");
            fs::write(&tmp, text).map_err(|e| io_error("writing the route file", e))?;
            fs::rename(&tmp, path).map_err(|e| io_error("installing the route file", e))
        }
        None => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing the route file", e)),
        },
    }
}

impl Guest for NginxProxy {
    fn add_route(route: RouteSpec) -> Result<String, DriverError> {
        let template = template()?;
        let request = RouteRequest {
            route_id: &route.route_id,
            name: &route.name,
            user_id: &route.user_id,
            target_ip: &route.target_ip,
            target_port: route.target_port,
        };
        let file = Route::new(request, &template.url).map_err(DriverError::InvalidInput)?;
        let text = RouteFile::render(&file, &template).map_err(DriverError::InvalidInput)?;
        let path = routes_dir().join(RouteFile::file_name(&route.route_id));
        // The catch-all server goes in with the first route, so no request
        // ever falls through to a user's server; if nginx refuses the
        // change, it goes again with the route.
        let mut new_default = None;
        if let Some((name, default)) = RouteFile::default_server(&template) {
            let default_path = routes_dir().join(name);
            if !default_path.exists() {
                write_or_remove(&default_path, Some(&default))?;
                new_default = Some(default_path);
            }
        }
        if let Err(error) = apply(&path, Some(&text)) {
            if let Some(default_path) = new_default {
                let _ = write_or_remove(&default_path, None);
            }
            return Err(error);
        }
        log(
            Level::Info,
            &format!(
                "route {} -> {}:{} at {}",
                route.route_id, route.target_ip, route.target_port, file.url
            ),
        );
        Ok(file.url)
    }

    fn remove_route(route_id: String) -> Result<(), DriverError> {
        if !proxy_route::is_safe_id(&route_id) {
            return Err(DriverError::InvalidInput(format!(
                "route id {route_id:?} is not valid"
            )));
        }
        let path = routes_dir().join(RouteFile::file_name(&route_id));
        if !path.exists() {
            return Ok(());
        }
        apply(&path, None)
    }

    fn list_routes() -> Result<Vec<RouteInfo>, DriverError> {
        let dir = routes_dir();
        let entries =
            fs::read_dir(&dir).map_err(|e| io_error("listing the routes directory", e))?;
        let mut routes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing the routes directory", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("vessel-") || !name.ends_with(".conf") {
                continue;
            }
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            if let Some(file) = RouteFile::parse(&text) {
                routes.push(RouteInfo {
                    route_id: file.route_id,
                    target_ip: file.target_ip,
                    target_port: file.target_port,
                    url: file.url,
                });
            }
        }
        routes.sort_by(|a, b| a.route_id.cmp(&b.route_id));
        Ok(routes)
    }
}

export!(NginxProxy);
