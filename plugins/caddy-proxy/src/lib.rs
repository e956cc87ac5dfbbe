//! `caddy-proxy`: a proxy driver that adds and removes routes live through
//! Caddy's admin API, without reloads.
//!
//! Each session is one route object in the Caddy server the operator names,
//! tagged `"@id": "vessel-<route-id>"` so it can be addressed directly
//! (`/id/vessel-<route-id>`). The plugin talks to the admin API through the
//! host's `http` capability: grant it the admin origin, e.g.
//! `grants.http = ["http://127.0.0.1:2019"]`, and nothing else.
//!
//! Settings:
//! - `admin_url`: Caddy's admin origin (`http://127.0.0.1:2019`).
//! - `server`: the server in `apps.http.servers` that gets the routes
//!   (`vessel`); the operator's base config creates it.
//! - `mode`: `path` (default) — `/{user}/…` is routed with the prefix
//!   stripped; or `host` — a host name per user.
//! - `path_template` (path mode): the prefix (`/{user}`).
//! - `host_template` (host mode): the host name, e.g. `{user}.dev.example.com`.
//! - `url_template`: the public URL (`http://127.0.0.1/{user}/`).
//!
//! In every template `{user}` is the session's public name (a lower-case
//! DNS label, unique per user even ignoring case: Caddy's path and host
//! matchers ignore case) and `{route}` the route id; each template must
//! contain one of them.
//! - `timeout_ms`: limit for each admin API request (`10000`).

mod route;

use proxy_route::{Route, RouteRequest};
use route::{Layout, RouteObject};

wit_bindgen::generate!({
    world: "proxy-plugin",
    path: "../../wit",
});

use exports::vessel::infra::proxy_driver::Guest;
use vessel::infra::config;
use vessel::infra::http::{Request, Response, send};
use vessel::infra::log::{Level, log};
use vessel::infra::types::{DriverError, RouteInfo, RouteSpec};

struct CaddyProxy;

fn setting(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

fn admin() -> String {
    setting("admin_url", "http://127.0.0.1:2019")
        .trim_end_matches('/')
        .to_string()
}

fn layout() -> Result<Layout, DriverError> {
    Layout::from_settings(config::get).map_err(DriverError::InvalidInput)
}

/// One admin API request.
/// How many times a request refused at connect is tried.
const ATTEMPTS: u32 = 5;

/// One admin API request. Caddy restarts its admin endpoint when it loads a
/// new configuration, which every change does, so a connection can be
/// refused for a moment after one: such a request never reached Caddy and
/// is tried again (any other failure is not, since it may have been
/// applied).
fn call(
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Response, DriverError> {
    let timeout_ms = setting("timeout_ms", "10000").parse().unwrap_or(10_000);
    let request = Request {
        method: method.to_string(),
        url: format!("{}{path}", admin()),
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body.map(|b| b.to_string().into_bytes()),
        timeout_ms,
    };
    let mut attempt = 1;
    loop {
        match send(&request) {
            Err(DriverError::Unavailable(_)) if attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

/// Turns an unexpected status into the contract's error, with Caddy's
/// message.
fn refused(what: &str, response: &Response) -> DriverError {
    let message = format!(
        "Caddy answered {} to {what}: {}",
        response.status,
        String::from_utf8_lossy(&response.body).trim()
    );
    match response.status {
        400..=499 => DriverError::InvalidInput(message),
        503 => DriverError::Unavailable(message),
        _ => DriverError::Failed(message),
    }
}

fn id_path(route_id: &str) -> String {
    format!("/id/{}", RouteObject::caddy_id(route_id))
}

impl Guest for CaddyProxy {
    fn add_route(route: RouteSpec) -> Result<String, DriverError> {
        let layout = layout()?;
        let request = RouteRequest {
            route_id: &route.route_id,
            name: &route.name,
            user_id: &route.user_id,
            target_ip: &route.target_ip,
            target_port: route.target_port,
        };
        let object = Route::new(request, &layout.url).map_err(DriverError::InvalidInput)?;
        let json = RouteObject::to_caddy(&object, &layout).map_err(DriverError::InvalidInput)?;
        // An upsert: replace the route in place if it exists, else append it.
        let existing = call("GET", &id_path(&route.route_id), None)?;
        let response = match existing.status {
            200 => call("PATCH", &id_path(&route.route_id), Some(&json))?,
            404 => {
                let server = setting("server", "vessel");
                call(
                    "POST",
                    &format!("/config/apps/http/servers/{server}/routes"),
                    Some(&json),
                )?
            }
            _ => return Err(refused("a route lookup", &existing)),
        };
        if response.status != 200 {
            return Err(refused("adding the route", &response));
        }
        log(
            Level::Info,
            &format!(
                "route {} -> {}:{} at {}",
                route.route_id, route.target_ip, route.target_port, object.url
            ),
        );
        Ok(object.url)
    }

    fn remove_route(route_id: String) -> Result<(), DriverError> {
        if !proxy_route::is_safe_id(&route_id) {
            return Err(DriverError::InvalidInput(format!(
                "route id {route_id:?} is not valid"
            )));
        }
        let response = call("DELETE", &id_path(&route_id), None)?;
        match response.status {
            // Caddy answers 404 for an unknown id: the route is already gone.
            200 | 404 => Ok(()),
            _ => Err(refused("removing the route", &response)),
        }
    }

    fn list_routes() -> Result<Vec<RouteInfo>, DriverError> {
        let server = setting("server", "vessel");
        let response = call(
            "GET",
            &format!("/config/apps/http/servers/{server}/routes"),
            None,
        )?;
        if response.status != 200 {
            return Err(refused("listing routes", &response));
        }
        let routes: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| DriverError::Failed(format!("Caddy's route list is not JSON: {e}")))?;
        let mut found: Vec<RouteInfo> = routes
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(RouteObject::from_caddy)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .map(|object| RouteInfo {
                route_id: object.route_id,
                target_ip: object.target_ip,
                target_port: object.target_port,
                url: object.url,
            })
            .collect();
        found.sort_by(|a, b| a.route_id.cmp(&b.route_id));
        Ok(found)
    }
}

export!(CaddyProxy);
