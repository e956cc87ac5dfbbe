//! The HTTP calls the CLI makes to a host's API, and what can go wrong with
//! them.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::target::Token;
use crate::api::model::ErrorResponse;

/// How long one API call may take before the CLI gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host could not be reached (refused, timed out, bad address).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host answered with an error.
    #[error("HTTP {status}: {message}{}", code.as_deref().map(|code| format!(" ({code})")).unwrap_or_default())]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The API's error code, when the answer had the error shape.
        code: Option<String>,
        /// The API's message, or the start of the body.
        message: String,
    },
    /// The answer was not the JSON the CLI expects.
    #[error("unexpected answer from {url}: {reason}")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// A client for one host's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<Token>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8080`),
    /// sending `token` as a bearer token when there is one.
    pub fn new(base: &str, token: Option<Token>) -> ApiClient {
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` (with its query), its answer as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path)), path).await
    }

    /// `POST path` with the JSON `body` (or none), its answer as `T`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let request = self.http.post(self.url(path));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        self.send(request, path).await
    }

    /// `GET path`, its answer as `T` whatever its status (for `/healthz`,
    /// whose 503 still describes the host).
    pub async fn get_any_status<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(u16, T), ClientError> {
        let url = self.url(path);
        let response = self.authorized(self.http.get(&url)).send().await;
        let response = response.map_err(|error| unreachable(&url, &error))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| unreachable(&url, &error))?;
        let value = serde_json::from_slice(&body).map_err(|error| ClientError::BadAnswer {
            url,
            reason: error.to_string(),
        })?;
        Ok((status, value))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self
            .authorized(request)
            .send()
            .await
            .map_err(|error| unreachable(&url, &error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| unreachable(&url, &error))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &body));
        }
        serde_json::from_slice(&body).map_err(|error| ClientError::BadAnswer {
            url,
            reason: error.to_string(),
        })
    }
}

fn unreachable(url: &str, error: &reqwest::Error) -> ClientError {
    // reqwest's own message names only the outermost layer and repeats the
    // URL; its causes say what happened (refused, timed out).
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let reason = if causes.is_empty() {
        error.to_string()
    } else {
        causes.join(": ")
    };
    ClientError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

/// The error an answer with `status` and `body` stands for: the API's own
/// code and message when the body has the error shape.
pub fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(answer) => ClientError::Api {
            status,
            code: Some(answer.error.code),
            message: answer.error.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let line = text.lines().next().unwrap_or_default();
            ClientError::Api {
                status,
                code: None,
                message: line.chars().take(200).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_becomes_one_line_with_the_status_and_the_message() {
        let body = br#"{"error":{"code":"forbidden","message":"listing sessions needs an operator token"}}"#;
        assert_eq!(
            api_error(403, body).to_string(),
            "HTTP 403: listing sessions needs an operator token (forbidden)"
        );
        assert_eq!(
            api_error(502, b"Bad Gateway\n<html>").to_string(),
            "HTTP 502: Bad Gateway"
        );
    }
}
