//! `mock-proxy`: a proxy driver that records routes instead of serving them,
//! for development and tests.
//!
//! A route is a JSON file in the plugin's state directory; the URL it returns
//! is built from a template. Every call is written to a call record.
//!
//! Settings (all optional):
//! - `state_dir`: the guest path of the granted state directory (`/state`).
//! - `url_template`: the public URL, with `{user}` and `{route}` replaced by
//!   the user id and route id (`http://127.0.0.1:8000/{user}/`).
//! - `fail_<op>`: inject a fault into `<op>` (`add_route`, `remove_route`,
//!   `list_routes`), in the format of [`mock_state::Fault`]. A file
//!   `faults/<op>` (with dashes: `faults/add-route`) does the same at run time.

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    world: "proxy-plugin",
    path: "../../wit",
});

use exports::vessel::infra::proxy_driver::Guest;
use vessel::infra::config;
use vessel::infra::log::{Level, log};
use vessel::infra::types::{DriverError, RouteInfo, RouteSpec};

const DEFAULT_URL_TEMPLATE: &str = "http://127.0.0.1:8000/{user}/";

/// A route as stored in `items/<route-id>.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MockRoute {
    route_id: String,
    user_id: String,
    target_ip: String,
    target_port: u16,
    url: String,
}

struct MockProxyDriver;

mock_state::mock_driver_plumbing!("mock-proxy");

fn url_for(route: &RouteSpec) -> String {
    config::get("url_template")
        .unwrap_or_else(|| DEFAULT_URL_TEMPLATE.to_string())
        .replace("{user}", &route.user_id)
        .replace("{route}", &route.route_id)
}

impl Guest for MockProxyDriver {
    fn add_route(route: RouteSpec) -> Result<String, DriverError> {
        let route_id = route.route_id.clone();
        operation("add-route", &route_id, |state| {
            if route.target_ip.parse::<std::net::IpAddr>().is_err() {
                return Err(DriverError::InvalidInput(format!(
                    "target ip {:?} is not an IP address",
                    route.target_ip
                )));
            }
            let stored = MockRoute {
                url: url_for(&route),
                route_id: route.route_id,
                user_id: route.user_id,
                target_ip: route.target_ip,
                target_port: route.target_port,
            };
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
                .items::<MockRoute>()
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
