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

/// What a reply's `server-timing` header says, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerTiming {
    /// From the request's arrival to its answer (`app`).
    pub app: f64,
    /// Of which waiting for a free core (`wait`; 0 when not given).
    pub wait: f64,
}

impl ServerTiming {
    /// Reads `app;dur=1.5, wait;dur=0.2`; `None` without an `app` metric.
    fn parse(header: &str) -> Option<ServerTiming> {
        let duration = |name: &str| {
            header.split(',').find_map(|metric| {
                let mut parts = metric.split(';').map(str::trim);
                (parts.next() == Some(name))
                    .then(|| parts.find_map(|p| p.strip_prefix("dur=")?.parse::<f64>().ok()))
                    .flatten()
            })
        };
        Some(ServerTiming {
            app: duration("app")?,
            wait: duration("wait").unwrap_or(0.0),
        })
    }
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> anyhow::Result<ApiClient> {
        let http = payoff_egress::upstream_client(&payoff_egress::Trust::process_default())
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
    /// spent (its `server-timing` header).
    pub async fn timed(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<(Result<Value, Problem>, Option<ServerTiming>)> {
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
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(ServerTiming::parse);
        Ok((Self::read(response).await?, timing))
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

#[cfg(test)]
mod tests {
    use super::ServerTiming;

    #[test]
    fn server_timing_names_its_metrics() {
        assert_eq!(
            ServerTiming::parse("app;dur=12.5, wait;dur=3.25"),
            Some(ServerTiming {
                app: 12.5,
                wait: 3.25
            })
        );
        assert_eq!(
            ServerTiming::parse("wait;dur=1, app;dur=2"),
            Some(ServerTiming {
                app: 2.0,
                wait: 1.0
            })
        );
        assert_eq!(
            ServerTiming::parse("app;dur=0.5"),
            Some(ServerTiming {
                app: 0.5,
                wait: 0.0
            })
        );
        assert_eq!(ServerTiming::parse("db;dur=4"), None);
        assert_eq!(ServerTiming::parse("app;dur=x"), None);
    }
}
