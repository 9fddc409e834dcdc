//! The test server shared by the API test files: a real server on
//! loopback over a scratch database, and helpers to call it.
#![allow(dead_code)]

use payoff_server::{AppState, ServerConfig};
use payoff_store::scratch::ScratchDb;
use payoff_store::{LedgerConfig, Role, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Runs an async test body once per backend. Databases are made and
/// dropped outside the runtime (their PostgreSQL client is blocking).
pub fn on_every_backend<F: std::future::Future<Output = ()>>(
    test: impl Fn(String, &'static str) -> F,
) {
    for db in ScratchDb::all() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test(db.url.clone(), db.label));
    }
}

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub http: reqwest::Client,
    /// The state the server runs with (the same store, clock and
    /// settings): a test whose config has `Background::Manual` calls the
    /// workers' ticks with it.
    pub state: AppState,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    pub async fn start(db_url: &str, config: ServerConfig) -> TestServer {
        Self::start_with(db_url, config, |s| s).await
    }

    /// Starts a server whose state `customize` adjusts (agent settings,
    /// answer provider).
    pub async fn start_with(
        db_url: &str,
        config: ServerConfig,
        customize: impl FnOnce(AppState) -> AppState,
    ) -> TestServer {
        let db_url = db_url.to_owned();
        let (store, admin) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&db_url).unwrap();
            let admin = store
                .create_key(Role::Admin, None, payoff_clock::wall())
                .unwrap()
                .0
                .key;
            (store, admin)
        })
        .await
        .unwrap();
        let ledger = store.ledger(LedgerConfig::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own = listener.local_addr().unwrap();
        let url = format!("http://{own}");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // One signing key and one secrets key for every server of a test,
        // as the nodes and restarts of one data directory share.
        let state = customize(
            AppState::new(
                store.clone(),
                ledger,
                config,
                ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            )
            .with_secret_key(&[5; 32]),
        )
        .listening_on(own);
        tokio::spawn(payoff_server::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        let server = TestServer {
            url,
            admin,
            state,
            // A fresh connection per request: a server may close one after
            // refusing a body it did not read (413), and a pooled reuse of
            // it would fail the next request for reasons outside the test.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            _stop: stop,
        };
        // As an orchestrator would: traffic once `/readyz` says ready
        // (the knowledge index and the outcome projector caught up).
        eventually("the server ready", || async {
            let response = server
                .http
                .get(format!("{}/readyz", server.url))
                .send()
                .await;
            response.is_ok_and(|r| r.status().is_success())
        })
        .await;
        server
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value, String) {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .body(body);
        if let Some(k) = key {
            request = request.bearer_auth(k);
        }
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let media = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        if !status.is_success() {
            assert_eq!(
                media, "application/problem+json",
                "{path}: errors are problem documents: {text}"
            );
        }
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let ct = (!body.is_null()).then_some("application/json");
        let (s, v, _) = self.call(method, path, Some(key), ct, bytes).await;
        (s, v)
    }

    pub async fn key(&self, role: &str, customer: Option<&str>) -> String {
        let (s, v) = self
            .json(
                Method::POST,
                "/v1/keys",
                &self.admin,
                json!({"role": role, "customer": customer}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }

    pub async fn customer(&self, id: &str) {
        let (s, v) = self
            .json(
                Method::POST,
                "/v1/customers",
                &self.admin,
                json!({"id": id, "name": id.to_uppercase()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    /// Uploads `text` as `customer`'s next contract version with `key`,
    /// expecting it stored.
    pub async fn upload_contract(&self, key: &str, customer: &str, text: &str) {
        let (s, v, _) = self
            .call(
                Method::POST,
                &format!("/v1/customers/{customer}/contracts"),
                Some(key),
                Some("application/toml"),
                text.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    pub async fn head(&self, customer: &str) -> u64 {
        let (s, v) = self
            .json(
                Method::GET,
                &format!("/v1/ledger/head?customer={customer}"),
                &self.admin,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["sequence"].as_u64().unwrap()
    }

    pub async fn send(&self, key: &str, content_type: &str, body: &Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .call(
                Method::POST,
                "/v1/events",
                Some(key),
                Some(content_type),
                body.to_string().into_bytes(),
            )
            .await;
        (s, v)
    }
}

/// Polls `check` until it holds or ten seconds pass (then fails, naming
/// `what`): for work a running server does on its own. A test of what the
/// background workers do starts the server with `Background::Manual` and
/// calls their ticks instead.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl TestServer {
    /// Where `reply`, answered by `method template` with `status` as
    /// `application/json`, departs from the schema the served OpenAPI
    /// document declares for it ([`schema_faults`]); an answer the
    /// document does not declare is one fault.
    pub async fn reply_faults(
        &self,
        method: &str,
        template: &str,
        status: StatusCode,
        reply: &Value,
    ) -> Vec<String> {
        let (s, doc, _) = self
            .call(Method::GET, "/openapi.json", None, None, Vec::new())
            .await;
        assert_eq!(s, StatusCode::OK);
        let declared = &doc["paths"][template][method.to_lowercase()]["responses"][status.as_str()]
            ["content"]["application/json"]["schema"];
        if declared.is_null() {
            return vec![format!(
                "{method} {template} declares no application/json answer with status {status}"
            )];
        }
        let mut faults = Vec::new();
        schema_faults(&doc, declared, reply, "$", &mut faults);
        faults
    }
}

/// Where `value` departs from `schema`, a schema of the OpenAPI 3.1
/// document `doc`, each fault named by its JSON path: the keywords the
/// server's document uses (`$ref`, `allOf`, `oneOf`, `anyOf`, `type`,
/// `enum`, `properties`, `required`, `additionalProperties`, `items`,
/// `minimum`, and the formats `date-time`, `decimal` and `int64` of
/// strings). Stricter than JSON Schema in one way: an object schema that
/// lists its properties and says nothing of others admits no other member,
/// so a field a reply sends and its schema forgets is a fault.
pub fn schema_faults(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    faults: &mut Vec<String>,
) {
    let schema = resolved(doc, schema);
    let alternatives = schema["oneOf"].as_array().or(schema["anyOf"].as_array());
    if let Some(alternatives) = alternatives {
        let tries: Vec<Vec<String>> = alternatives
            .iter()
            .map(|alternative| {
                let mut tried = Vec::new();
                schema_faults(doc, alternative, value, at, &mut tried);
                tried
            })
            .collect();
        if !tries.iter().any(Vec::is_empty) {
            faults.push(format!("{at}: matches none of its alternatives: {tries:?}"));
        }
        return;
    }
    if let Some(types) = types_of(&schema) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let admitted = types
            .iter()
            .any(|t| *t == kind || (*t == "number" && kind == "integer"));
        if !admitted {
            faults.push(format!(
                "{at}: {value} is {kind}, the schema says {types:?}"
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            faults.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(minimum), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < minimum {
            faults.push(format!("{at}: {n} is below the minimum {minimum}"));
        }
    }
    if let (Some(format), Some(text)) = (schema["format"].as_str(), value.as_str()) {
        let well_formed = match format {
            "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            "decimal" => text.parse::<rust_decimal::Decimal>().is_ok(),
            "int64" => text.parse::<i64>().is_ok(),
            _ => true,
        };
        if !well_formed {
            faults.push(format!("{at}: \"{text}\" is not a {format}"));
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (i, element) in elements.iter().enumerate() {
            schema_faults(doc, items, element, &format!("{at}[{i}]"), faults);
        }
    }
    if let Some(members) = value.as_object() {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !members.contains_key(name) {
                faults.push(format!("{at}: the required member {name} is missing"));
            }
        }
        for (name, member) in members {
            let at = format!("{at}.{name}");
            match (
                properties.and_then(|p| p.get(name)),
                &schema["additionalProperties"],
            ) {
                (Some(declared), _) => schema_faults(doc, declared, member, &at, faults),
                (None, Value::Bool(false)) => faults.push(format!("{at}: not a property")),
                (None, Value::Null) if properties.is_some() => {
                    faults.push(format!("{at}: not a property of the schema"));
                }
                (None, others) if others.is_object() => {
                    schema_faults(doc, others, member, &at, faults);
                }
                (None, _) => {}
            }
        }
    }
}

/// `schema` with its `$ref` followed and its `allOf` merged into one
/// object schema (properties and required members together).
fn resolved(doc: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the schemas: {reference}"));
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "{reference} is not in the document");
        return resolved(doc, target);
    }
    let Some(parts) = schema["allOf"].as_array() else {
        return schema.clone();
    };
    let mut merged = schema.clone();
    let merged_object = merged.as_object_mut().unwrap();
    merged_object.remove("allOf");
    let (mut properties, mut required) = (serde_json::Map::new(), Vec::new());
    for part in parts {
        let part = resolved(doc, part);
        if let Some(p) = part["properties"].as_object() {
            properties.extend(p.clone());
        }
        required.extend(part["required"].as_array().cloned().unwrap_or_default());
        if let Some(t) = part.get("type") {
            merged_object.insert("type".into(), t.clone());
        }
    }
    merged_object.insert("properties".into(), Value::Object(properties));
    merged_object.insert("required".into(), Value::Array(required));
    merged
}

/// The `type` of a schema as a list (OpenAPI 3.1 writes a nullable one as
/// `["string", "null"]`).
fn types_of(schema: &Value) -> Option<Vec<&str>> {
    match &schema["type"] {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}
