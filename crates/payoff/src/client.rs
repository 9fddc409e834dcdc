//! A small client of the Payoff HTTP API, for the commands that talk to a
//! running server (`events send`, `demo`, `bench`).

use std::time::Duration;

use serde_json::Value;

/// An answer that was not 2xx: the status and the problem document.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub detail: String,
    pub body: Value,
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    /// Sends a prepared body; `Ok` holds the JSON reply of a 2xx answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Result<Value, Problem>> {
        let response = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", self.base))?;
        Self::read(response).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        value: &Value,
    ) -> anyhow::Result<Result<Value, Problem>> {
        self.send(
            reqwest::Method::POST,
            path,
            "application/json",
            serde_json::to_vec(value)?,
        )
        .await
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Result<Value, Problem>> {
        let response = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", self.base))?;
        Self::read(response).await
    }

    /// The exact bytes of a 2xx answer, as text (statements, bundles).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", self.base))?;
        if !response.status().is_success() {
            let problem = Self::read(response).await?.err();
            anyhow::bail!("GET {path} failed: {problem:?}");
        }
        Ok(response.text().await?)
    }

    /// Like [`ApiClient::send`], and also the time the server says it
    /// spent (its `server-timing: app;dur=…` header), in milliseconds.
    pub async fn timed(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<(Result<Value, Problem>, Option<f64>)> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let server_ms = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|d| d.split([';', ',']).next())
            .and_then(|d| d.trim().parse::<f64>().ok());
        Ok((Self::read(response).await?, server_ms))
    }

    async fn read(response: reqwest::Response) -> anyhow::Result<Result<Value, Problem>> {
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if (200..300).contains(&status) {
            return Ok(Ok(body));
        }
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Err(Problem {
            status,
            code: text("code"),
            detail: text("detail"),
            body,
        }))
    }
}
