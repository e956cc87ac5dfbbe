//! The API as an OpenAPI 3.1 document, generated from the handlers'
//! annotations and the body types in [`super::model`]; served at
//! `/openapi.json` and kept in the repository as `host/openapi.json`, which
//! a test compares with what the code generates.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::model::{
    ErrorDetail, ErrorResponse, Health, HealthState, InvalidSession, PolicyLimit, PolicyView,
    SessionList, SessionState, SessionView, StartAccepted, StartRequest, StartResponse,
    StopResponse, StopState, StoppedView, StoreHealth, UserRequest, VmHealth,
};
use super::{events, handlers};

/// The document's description of the API as a whole.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vessel",
        description = "Per-user development microVMs behind one API. Every endpoint but \
                       /healthz and /openapi.json needs `Authorization: Bearer <token>`: an \
                       operator token acts on every user, a user token on its own user only.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        handlers::start,
        handlers::stop,
        handlers::heartbeat,
        handlers::status,
        events::events,
        handlers::list_sessions,
        handlers::extend,
        handlers::healthz,
        handlers::metrics,
        handlers::openapi,
    ),
    components(schemas(
        StartRequest,
        UserRequest,
        SessionState,
        SessionView,
        SessionList,
        InvalidSession,
        PolicyView,
        PolicyLimit,
        StoppedView,
        StartResponse,
        StartAccepted,
        events::ProgressEvent,
        events::ProgressEventName,
        VmHealth,
        StopState,
        StopResponse,
        HealthState,
        Health,
        StoreHealth,
        ErrorResponse,
        ErrorDetail,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "sessions", description = "Start, keep alive, read and stop users' sessions"),
        (name = "operations", description = "Health, metrics and this description"),
    )
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the operations name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An HS256 JWT with aud \"vessel\", sub (a user id or an operator's \
                             name), scope (\"user\" or \"operator\") and exp; or the fixed \
                             operator token",
                        ))
                        .build(),
                ),
            );
        }
    }
}

/// The document as pretty-printed JSON, made once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
        text.push('\n');
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed copy is what clients and the fuzzer read; it must be
    /// what the code serves. `VESSEL_UPDATE_OPENAPI=1 cargo test -p
    /// vessel-host openapi` rewrites it after a deliberate change.
    #[test]
    fn the_committed_document_is_what_the_code_generates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        if std::env::var_os("VESSEL_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, document()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == document(),
            "host/openapi.json is out of date: run `VESSEL_UPDATE_OPENAPI=1 cargo test -p \
             vessel-host openapi` and commit it"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_endpoint_and_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/start",
            "/stop",
            "/heartbeat",
            "/status/{userId}",
            "/sessions",
            "/sessions/{userId}/extend",
            "/healthz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(
            doc["paths"]["/start"]["post"]["responses"]["429"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/ErrorResponse"
        );
    }
}
