//! The agent's client for the control plane's API.

use std::time::Duration;

use evidence::api::{Challenge, ErrorBody, HeartbeatResponse, RegisterRequest, RegisterResponse};
use evidence::Envelope;
use serde::de::DeserializeOwned;

/// Largest response body the agent reads from the control plane.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The control plane could not be reached, or did not answer in time (the request
    /// may have reached it).
    #[error("control plane unreachable: {0}")]
    Transport(String),
    /// No connection to the control plane could be made: nothing was sent.
    #[error("control plane unreachable (not connected): {0}")]
    Unsent(String),
    /// The control plane refused the request with a typed reason.
    #[error("control plane refused ({status}): {kind}: {detail}")]
    Rejected {
        status: u16,
        kind: String,
        detail: String,
    },
    /// The control plane answered something we cannot read.
    #[error("bad answer from control plane: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The typed reason the control plane gave, if it gave one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Rejected { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str, timeout: Duration) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("provenant-guest-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub async fn challenge(&self) -> Result<Challenge, ClientError> {
        let req = self.http.get(format!("{}/api/v1/challenge", self.base));
        self.send(req).await
    }

    pub async fn register(&self, body: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/register", self.base))
            .json(body);
        self.send(req).await
    }

    pub async fn heartbeat(&self, pulse: &Envelope) -> Result<HeartbeatResponse, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/heartbeat", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(pulse.to_json());
        self.send(req).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::Unsent(e.without_url().to_string())
            } else {
                ClientError::Transport(e.without_url().to_string())
            }
        })?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::Protocol(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
        } else if status.is_server_error() && serde_json::from_slice::<ErrorBody>(&body).is_err() {
            // A proxy's 502/503 page: treat as the control plane being unreachable.
            Err(ClientError::Transport(format!("HTTP {status}")))
        } else {
            match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => Err(ClientError::Rejected {
                    status: status.as_u16(),
                    kind: e.error.kind,
                    detail: e.error.detail,
                }),
                Err(_) => Err(ClientError::Protocol(format!(
                    "HTTP {status} without an error body"
                ))),
            }
        }
    }
}
