//! The operator subcommands: each asks the API and makes the text to print,
//! a table for people or the API's JSON.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{ApiClient, ClientError};
use super::table::{self, SessionRow};
use crate::api::handlers::MAX_LIST_LIMIT;
use crate::ids::{InvalidUserId, UserId};

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The API call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The user id can never name a session.
    #[error(transparent)]
    InvalidUser(#[from] InvalidUserId),
}

/// How to print an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned table or a few lines, for people.
    Human,
    /// The API's JSON, pretty-printed, for programs.
    Json,
}

/// One `GET /sessions` page, as far as the CLI reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    sessions: Vec<Value>,
    next_cursor: Option<String>,
    #[serde(default)]
    invalid: Vec<Value>,
}

/// Every session (with `status`, when given), following the cursors, up to
/// `limit` sessions when given.
async fn all_sessions(
    client: &ApiClient,
    status: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<Value>, Vec<Value>), ClientError> {
    let mut sessions = Vec::new();
    let mut invalid = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = limit.map_or(MAX_LIST_LIMIT, |limit| limit - sessions.len());
        let mut path = format!("/sessions?limit={}", wanted.clamp(1, MAX_LIST_LIMIT));
        if let Some(status) = status {
            path.push_str(&format!("&status={}", query_value(status)));
        }
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", query_value(cursor)));
        }
        let page: Page = client.get(&path).await?;
        sessions.extend(page.sessions);
        invalid.extend(page.invalid);
        cursor = page.next_cursor;
        let full = limit.is_some_and(|limit| sessions.len() >= limit);
        if cursor.is_none() || full {
            return Ok((sessions, invalid));
        }
    }
}

/// `text` escaped for a query string: every byte outside `[A-Za-z0-9._-]`
/// percent-encoded.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `vessel sessions list`.
pub async fn list(
    client: &ApiClient,
    status: Option<&str>,
    limit: Option<usize>,
    format: Format,
    now_ms: u64,
) -> Result<String, CommandError> {
    let (sessions, invalid) = all_sessions(client, status, limit).await?;
    if format == Format::Json {
        return Ok(pretty(&json!({ "sessions": sessions, "invalid": invalid })));
    }
    let rows = rows(&sessions, client)?;
    let mut out = table::render(&rows, now_ms);
    for entry in &invalid {
        out.push_str(&format!(
            "unreadable record of {}: {}\n",
            entry["userId"].as_str().unwrap_or("?"),
            entry["error"].as_str().unwrap_or("?")
        ));
    }
    Ok(out)
}

/// `vessel sessions show USER`.
pub async fn show(
    client: &ApiClient,
    user: &str,
    format: Format,
    now_ms: u64,
) -> Result<String, CommandError> {
    let user = UserId::parse(user)?;
    let session: Value = client.get(&format!("/status/{user}")).await?;
    one_session(session, client, format, now_ms)
}

/// `vessel sessions extend USER`.
pub async fn extend(
    client: &ApiClient,
    user: &str,
    format: Format,
    now_ms: u64,
) -> Result<String, CommandError> {
    let user = UserId::parse(user)?;
    let session: Value = client
        .post(&format!("/sessions/{user}/extend"), None)
        .await?;
    one_session(session, client, format, now_ms)
}

/// `vessel sessions stop USER`.
pub async fn stop(client: &ApiClient, user: &str, format: Format) -> Result<String, CommandError> {
    let user = UserId::parse(user)?;
    let answer: Value = client
        .post("/stop", Some(&json!({ "userId": user.as_str() })))
        .await?;
    if format == Format::Json {
        return Ok(pretty(&answer));
    }
    let text = match (answer["stopped"].as_bool(), answer["status"].as_str()) {
        (Some(true), _) => format!("stopped the session of {user}"),
        (_, Some("stopping")) => format!("the session of {user} is being stopped"),
        _ => format!("{user} has no session"),
    };
    Ok(format!("{text}\n"))
}

/// `vessel status`: the host's health and its sessions counted by status.
pub async fn status(client: &ApiClient, format: Format) -> Result<String, CommandError> {
    let (code, health): (u16, Value) = client.get_any_status("/healthz").await?;
    let (sessions, invalid) = if code == 200 {
        all_sessions(client, None, None).await?
    } else {
        (Vec::new(), Vec::new())
    };
    let mut counts: BTreeMap<String, usize> = ["active", "starting", "stopping"]
        .into_iter()
        .map(|status| (status.to_string(), 0))
        .collect();
    for session in &sessions {
        let status = session["status"].as_str().unwrap_or("unknown");
        *counts.entry(status.to_string()).or_default() += 1;
    }
    if format == Format::Json {
        return Ok(pretty(&json!({
            "url": client.base(),
            "health": health,
            "sessions": { "total": sessions.len(), "byStatus": counts },
            "invalid": invalid.len(),
        })));
    }
    let text = |value: &Value| value.as_str().unwrap_or("?").to_string();
    let by_status = counts
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "host      {}  {}\nstore     {}  {}\n",
        client.base(),
        text(&health["status"]),
        text(&health["store"]["kind"]),
        text(&health["store"]["status"]),
    );
    if let Some(error) = health["store"]["error"].as_str() {
        out.push_str(&format!("          {error}\n"));
    }
    if code == 200 {
        out.push_str(&format!("sessions  {} ({by_status})\n", sessions.len()));
    }
    if !invalid.is_empty() {
        out.push_str(&format!("invalid   {} unreadable records\n", invalid.len()));
    }
    Ok(out)
}

fn one_session(
    session: Value,
    client: &ApiClient,
    format: Format,
    now_ms: u64,
) -> Result<String, CommandError> {
    if format == Format::Json {
        return Ok(pretty(&session));
    }
    Ok(table::render(&rows(&[session], client)?, now_ms))
}

fn rows(sessions: &[Value], client: &ApiClient) -> Result<Vec<SessionRow>, ClientError> {
    sessions
        .iter()
        .map(|session| {
            SessionRow::deserialize(session).map_err(|error| ClientError::BadAnswer {
                url: client.base().to_string(),
                reason: error.to_string(),
            })
        })
        .collect()
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("c1.3132.616c"), "c1.3132.616c");
        assert_eq!(query_value("a b&c=d"), "a%20b%26c%3Dd");
    }
}
