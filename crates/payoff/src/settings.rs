//! Configuration: flags, then `PAYOFF_*` environment variables, then an
//! optional `payoff.toml`, then defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use payoff_knowledge::OpenAiConfig;
use payoff_ledger::EventLimits;
use payoff_server::limits::RateLimits;
use payoff_server::support::SupportConfig;
use payoff_server::ServerConfig;
use serde::Deserialize;

use crate::{bad_input, BadInput};

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where Payoff keeps its data [default: ./payoff-data]
    #[arg(long, global = true, env = "PAYOFF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database: a PostgreSQL URL (postgres://…) or a SQLite file [default: DATA_DIR/payoff.db]
    #[arg(long, global = true, env = "PAYOFF_DATABASE_URL")]
    pub database: Option<String>,
    /// Configuration file [default: ./payoff.toml when it exists]
    #[arg(long, global = true, env = "PAYOFF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Server URL for commands that talk to a running server [default: http://127.0.0.1:8080]
    #[arg(long, global = true, env = "PAYOFF_URL")]
    pub url: Option<String>,
    /// API key for commands that talk to a running server
    #[arg(long, global = true, env = "PAYOFF_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// The keys `payoff.toml` may hold.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    database: Option<String>,
    listen: Option<String>,
    url: Option<String>,
    key: Option<String>,
    body_bytes_max: Option<usize>,
    batch_events_max: Option<usize>,
    event_bytes_max: Option<usize>,
    model: Option<ModelSettings>,
    support: Option<SupportSettings>,
    egress: Option<EgressSettings>,
    rate_limits: Option<RateLimitSettings>,
    dashboard: Option<DashboardSettings>,
    gateway: Option<GatewaySettings>,
    traces: Option<TraceFileSettings>,
    quality: Option<payoff_server::watch::QualitySettings>,
}

/// `[traces]`: how OTLP traces on `/v1/traces` are read.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct TraceFileSettings {
    /// The span (else resource) attribute naming the subject a call
    /// served [default: payoff.subject].
    subject_attribute: Option<String>,
}

impl TraceFileSettings {
    fn resolve(self) -> anyhow::Result<payoff_ledger::otlp::TraceSettings> {
        let mut settings = payoff_ledger::otlp::TraceSettings::default();
        if let Some(name) = self.subject_attribute {
            if name.trim().is_empty() || name.len() > 255 {
                return Err(BadInput(
                    "traces.subject_attribute: name an attribute (1 to 255 bytes)".into(),
                )
                .into());
            }
            settings.subject_attribute = name;
        }
        Ok(settings)
    }
}

/// `[gateway]`: the model gateway's upstreams, `[[gateway.upstream]]`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct GatewaySettings {
    #[serde(default)]
    upstream: Vec<payoff_server::gateway::Upstream>,
}

/// The gateway's upstreams, checked, each key read from its variable.
fn gateway_config(file: GatewaySettings) -> anyhow::Result<payoff_server::gateway::GatewayConfig> {
    let mut config = payoff_server::gateway::GatewayConfig {
        upstreams: file.upstream,
    };
    config.validate().map_err(BadInput)?;
    for (i, u) in config.upstreams.iter_mut().enumerate() {
        if let Some(var) = &u.api_key_env {
            u.api_key = Some(std::env::var(var).map_err(|_| {
                BadInput(format!(
                    "gateway.upstream[{i}].api_key_env: the variable {var} is not set"
                ))
            })?);
        }
    }
    Ok(config)
}

/// `[dashboard]`: how the web dashboard is served.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// The session cookie is always `Secure` (the dashboard is reached over
    /// https only).
    pub secure_cookies: Option<bool>,
    /// The Overview's figures of a period are computed again in the
    /// request when stale if that took less than this many milliseconds
    /// the last time; slower ones are shown as kept, marked, and refreshed
    /// in the background [default: 250; 0: always in the background].
    pub overview_exact_below_ms: Option<u64>,
}

/// `[rate_limits]`: requests allowed per API key, per client address (for
/// requests without a key) and dashboard logins per address; 0 turns one
/// off. Defaults: 500/s (burst 1,000) per key, 100/s (burst 300) per
/// address, 10 logins a minute.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub key_per_second: Option<u32>,
    pub key_burst: Option<u32>,
    pub address_per_second: Option<u32>,
    pub address_burst: Option<u32>,
    pub login_per_minute: Option<u32>,
    pub login_burst: Option<u32>,
}

impl RateLimitSettings {
    fn resolve(self) -> RateLimits {
        let d = RateLimits::default();
        RateLimits {
            key_per_second: self.key_per_second.unwrap_or(d.key_per_second),
            key_burst: self.key_burst.unwrap_or(d.key_burst),
            address_per_second: self.address_per_second.unwrap_or(d.address_per_second),
            address_burst: self.address_burst.unwrap_or(d.address_burst),
            login_per_minute: self.login_per_minute.unwrap_or(d.login_per_minute),
            login_burst: self.login_burst.unwrap_or(d.login_burst),
        }
    }
}

/// `[egress]`: where tenant URLs (webhooks) may lead beyond public https
/// addresses.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    /// CIDRs (`10.0.0.0/8`), addresses or host names tenants may reach,
    /// over http too.
    pub allow: Option<Vec<String>>,
}

/// `[model]`: an OpenAI-compatible endpoint that drafts answers. Without
/// it, the offline extractive answerer does.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Up to `/chat/completions`, e.g. `http://localhost:8000/v1`.
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// The name of the environment variable holding the API key (keys do
    /// not belong in files).
    pub api_key_env: Option<String>,
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
}

/// `[support]`: the support agent's thresholds and approval window.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SupportSettings {
    pub auto_send_min: Option<f64>,
    pub approval_min: Option<f64>,
    pub approval_categories: Option<Vec<String>>,
    pub approval_ttl_hours: Option<u32>,
    /// `escalate` (default) or `send_reply`.
    pub on_expiry: Option<String>,
}

/// Settings after every source has been applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Whether the data directory was named (flag, `PAYOFF_DATA_DIR` or the
    /// file) rather than defaulted: the demo builds there when it was.
    pub data_dir_named: bool,
    pub database: String,
    /// Whether the database was named (flag, `PAYOFF_DATABASE_URL` or the
    /// file) rather than defaulted: the demo builds in it when it was.
    pub database_named: bool,
    pub listen: Option<String>,
    pub url: String,
    pub key: Option<String>,
    pub server: ServerConfig,
    /// The answer model; `None`: the extractive answerer.
    pub model: Option<OpenAiConfig>,
    pub support: SupportConfig,
    /// Business time of every command (the system clock; the demo runs
    /// its server on a simulated one).
    pub clock: payoff_clock::Clock,
}

impl Settings {
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new("payoff.toml").exists() => read_file(Path::new("payoff.toml"))?,
            None => FileSettings::default(),
        };
        let named = args.data_dir.clone().or(file.data_dir);
        let data_dir_named = named.is_some();
        let data_dir = named.unwrap_or_else(|| PathBuf::from("payoff-data"));
        let named_database = args.database.clone().or(file.database);
        let database_named = named_database.is_some();
        let database =
            named_database.unwrap_or_else(|| data_dir.join("payoff.db").display().to_string());
        let env_usize = |name: &str| -> anyhow::Result<Option<usize>> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| BadInput(format!("{name}: \"{v}\" is not a whole number")).into()),
                Err(_) => Ok(None),
            }
        };
        let defaults = ServerConfig::default();
        let server = ServerConfig {
            body_bytes_max: env_usize("PAYOFF_BODY_BYTES_MAX")?
                .or(file.body_bytes_max)
                .unwrap_or(defaults.body_bytes_max),
            limits: EventLimits {
                batch_events_max: env_usize("PAYOFF_BATCH_EVENTS_MAX")?
                    .or(file.batch_events_max)
                    .unwrap_or(defaults.limits.batch_events_max),
                event_bytes_max: env_usize("PAYOFF_EVENT_BYTES_MAX")?
                    .or(file.event_bytes_max)
                    .unwrap_or(defaults.limits.event_bytes_max),
            },
            egress: egress_config(file.egress.unwrap_or_default())?,
            rate_limits: file.rate_limits.unwrap_or_default().resolve(),
            secure_cookies: file
                .dashboard
                .as_ref()
                .and_then(|d| d.secure_cookies)
                .unwrap_or(defaults.secure_cookies),
            overview: payoff_accounting::glance::Policy {
                exact_below: file
                    .dashboard
                    .as_ref()
                    .and_then(|d| d.overview_exact_below_ms)
                    .map_or(
                        defaults.overview.exact_below,
                        std::time::Duration::from_millis,
                    ),
                ..defaults.overview
            },
            gateway: gateway_config(file.gateway.unwrap_or_default())?,
            traces: file.traces.unwrap_or_default().resolve()?,
            quality: {
                let quality = file.quality.unwrap_or_default();
                quality.check().map_err(BadInput)?;
                quality
            },
            ..defaults
        };
        let model = model_config(file.model.unwrap_or_default())?;
        let support = support_config(file.support.unwrap_or_default())?;
        Ok(Settings {
            clock: payoff_clock::Clock::System,
            data_dir,
            data_dir_named,
            database,
            database_named,
            listen: std::env::var("PAYOFF_LISTEN").ok().or(file.listen),
            url: args
                .url
                .clone()
                .or(file.url)
                .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            key: args.key.clone().or(file.key),
            server,
            model,
            support,
        })
    }

    /// The resolved listen address: flag, then environment/file, then default.
    pub fn listen_addr(&self, flag: Option<&str>) -> anyhow::Result<SocketAddr> {
        let text = flag.or(self.listen.as_deref()).unwrap_or("127.0.0.1:8080");
        match text.parse() {
            Ok(addr) => Ok(addr),
            Err(_) => bad_input(format!(
                "--listen: \"{text}\" is not an address like 127.0.0.1:8080"
            )),
        }
    }

    /// The key to call a server with, or a clear error saying how to give one.
    pub fn api_key(&self) -> anyhow::Result<&str> {
        match self.key.as_deref() {
            Some(k) => Ok(k),
            None => bad_input("no API key: pass --key KEY or set PAYOFF_KEY"),
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("signing-key.pem")
    }

    /// The key that seals tenants' secrets in the database.
    pub fn secrets_key_path(&self) -> PathBuf {
        self.data_dir.join("secrets.key")
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| BadInput(format!("{}: {}", path.display(), e.message())).into())
}

/// The model endpoint from `PAYOFF_MODEL_URL` / `PAYOFF_MODEL` /
/// `PAYOFF_MODEL_KEY`, then `[model]`; none when no URL is given.
fn model_config(file: ModelSettings) -> anyhow::Result<Option<OpenAiConfig>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(base_url) = env("PAYOFF_MODEL_URL").or(file.base_url) else {
        return Ok(None);
    };
    let Some(model) = env("PAYOFF_MODEL").or(file.model) else {
        return bad_input("model: a model URL needs a model name (PAYOFF_MODEL or [model] model)");
    };
    let api_key = match (env("PAYOFF_MODEL_KEY"), &file.api_key_env) {
        (Some(k), _) => Some(k),
        (None, Some(var)) => match env(var) {
            Some(k) => Some(k),
            None => return bad_input(format!("model.api_key_env: the variable {var} is not set")),
        },
        (None, None) => None,
    };
    Ok(Some(OpenAiConfig {
        base_url,
        model,
        api_key,
        timeout: std::time::Duration::from_millis(file.timeout_ms.unwrap_or(30_000)),
        max_retries: file.max_retries.unwrap_or(2),
        initial_backoff: std::time::Duration::from_millis(500),
    }))
}

/// `PAYOFF_EGRESS_ALLOW` (comma-separated), else `[egress] allow`; TLS
/// trusts the system's roots and the bundle `SSL_CERT_FILE` names.
fn egress_config(file: EgressSettings) -> anyhow::Result<payoff_egress::Egress> {
    let policy = match std::env::var("PAYOFF_EGRESS_ALLOW") {
        Ok(list) => payoff_egress::EgressPolicy::allowing_list(&list)
            .map_err(|e| BadInput(format!("PAYOFF_EGRESS_ALLOW: {e}")))?,
        Err(_) => payoff_egress::EgressPolicy::allowing(file.allow.unwrap_or_default())
            .map_err(|e| BadInput(format!("egress.allow: {e}")))?,
    };
    let trust =
        payoff_egress::Trust::from_env().map_err(|e| BadInput(format!("SSL_CERT_FILE: {e}")))?;
    Ok(payoff_egress::Egress {
        trust,
        policy,
        lookup: std::sync::Arc::new(payoff_egress::SystemLookup),
    })
}

fn support_config(file: SupportSettings) -> anyhow::Result<SupportConfig> {
    let mut config = SupportConfig::default();
    if let Some(v) = file.auto_send_min {
        config.rule.auto_send_min = v;
    }
    if let Some(v) = file.approval_min {
        config.rule.approval_min = v;
    }
    if let Some(v) = file.approval_categories {
        config.rule.approval_categories = v;
    }
    if let Some(h) = file.approval_ttl_hours {
        config.approval_ttl = chrono::Duration::hours(i64::from(h));
    }
    config.on_expiry = match file.on_expiry.as_deref() {
        None | Some("escalate") => payoff_policy::Verdict::Escalate,
        Some("send_reply") => payoff_policy::Verdict::Send,
        Some(other) => {
            return bad_input(format!(
                "support.on_expiry: \"{other}\" is not escalate or send_reply"
            ))
        }
    };
    if let Err(e) = payoff_policy::AgentRules::builtin(&config.rule) {
        return bad_input(format!("support: {e}"));
    }
    Ok(config)
}
