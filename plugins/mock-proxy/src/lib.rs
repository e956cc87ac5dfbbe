//! `mock-proxy`: a proxy driver that records routes instead of serving them,
//! for development and tests.
//!
//! A route is a JSON file in the plugin's state directory (a
//! [`proxy_route::Route`], checked as the real proxy drivers check it); the URL it returns
//! is built from a template. Every call is written to a call record.
//!
//! Settings (all optional):
//! - `state_dir`: the guest path of the granted state directory (`/state`).
//! - `url_template`: the public URL, with `{user}` and `{route}` replaced by
//!   the session's public name and the route id
//!   (`http://127.0.0.1:8000/{user}/`).
//! - `fail_<op>`: inject a fault into `<op>` (`add_route`, `remove_route`,
//!   `list_routes`), in the format of [`mock_state::Fault`]. A file
//!   `faults/<op>` (with dashes: `faults/add-route`) does the same at run time.

use proxy_route::{Route, RouteRequest};

wit_bindgen::generate!({
    world: "proxy-plugin",
    path: "../../wit",
});

use exports::vessel::infra::proxy_driver::Guest;
use vessel::infra::config;
use vessel::infra::log::{Level, log};
use vessel::infra::types::{DriverError, RouteInfo, RouteSpec};

const DEFAULT_URL_TEMPLATE: &str = "http://127.0.0.1:8000/{user}/";

struct MockProxyDriver;

mock_state::mock_driver_plumbing!("mock-proxy");

impl Guest for MockProxyDriver {
    fn add_route(route: RouteSpec) -> Result<String, DriverError> {
        let route_id = route.route_id.clone();
        operation("add-route", &route_id, |state| {
            // The same checks as the real proxy drivers: a mock that took
            // what nginx or Caddy refuse would hide the host's mistakes.
            let request = RouteRequest {
                route_id: &route.route_id,
                name: &route.name,
                user_id: &route.user_id,
                target_ip: &route.target_ip,
                target_port: route.target_port,
            };
            let template =
                config::get("url_template").unwrap_or_else(|| DEFAULT_URL_TEMPLATE.to_string());
            let stored = Route::new(request, &template).map_err(DriverError::InvalidInput)?;
            state
                .put_item(&stored.route_id, &stored)
                .map_err(io_failed)?;
            log(
                Level::Info,
                &format!(
                    "route {} -> {}:{}",
                    stored.route_id, stored.target_ip, stored.target_port
                ),
            );
            Ok(stored.url)
        })
    }

    fn remove_route(route_id: String) -> Result<(), DriverError> {
        operation("remove-route", &route_id, |state| {
            state.delete_item(&route_id).map_err(io_failed)?;
            Ok(())
        })
    }

    fn list_routes() -> Result<Vec<RouteInfo>, DriverError> {
        operation("list-routes", "", |state| {
            Ok(state
                .items::<Route>()
                .map_err(io_failed)?
                .into_iter()
                .map(|(_, r)| RouteInfo {
                    route_id: r.route_id,
                    target_ip: r.target_ip,
                    target_port: r.target_port,
                    url: r.url,
                })
                .collect())
        })
    }
}

export!(MockProxyDriver);
