//! A request id for every API request: in the `x-request-id` answer
//! header, in error bodies (`requestId`), and on every log line the request
//! causes (a `request` span with `request_id`). A frontend that reports an
//! error by its id lets an operator find the details in the log, which the
//! answer leaves out (a driver's own words, a tool's standard error).
//!
//! A frontend may send its own id in `x-request-id` (1 to 64 characters of
//! `[A-Za-z0-9_.-]`) to trace one action across its services; otherwise
//! the host makes one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use tracing::Instrument;

/// The header the id travels in, both ways.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// `future` with the current request's id and log span: for work a request
/// hands to a task of its own, whose log lines then carry the request's id.
pub fn carry<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    let id = current().unwrap_or_default();
    REQUEST_ID.scope(id, future.instrument(tracing::Span::current()))
}

/// A new id: random per process, then counted, so ids are unique across
/// hosts and cost no system call.
fn next_id() -> String {
    static BASE: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!(
        "req-{:016x}",
        base.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    )
}

/// Whether a caller's own id may be used as it is.
fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Gives the request its id for its whole life (`inner`, the rest of its
/// handling, runs with it), and the answer its header.
pub async fn assign<F, Fut>(request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(next_id, str::to_string);
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = REQUEST_ID
        .scope(id.clone(), inner(request).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_callers_ids_are_checked() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        assert!(acceptable(&a));
        assert!(acceptable("frontend-1234.abc_9"));
        assert!(!acceptable(""));
        assert!(!acceptable("a\nb"));
        assert!(!acceptable(&"x".repeat(65)));
    }
}
