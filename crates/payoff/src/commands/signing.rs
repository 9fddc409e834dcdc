//! `payoff signing rotate` and `payoff signing list`: the provider's
//! statement-signing keys over time.
//!
//! `signing-key.pem` is the key in use. `signing-keys.json`, beside it,
//! is the history every server publishes at `/.well-known/payoff/keys`:
//! each public key with the window it signed in, so a statement closed
//! years ago still verifies against the key of its day. A rotation makes a
//! new key, closes the old one's window and forgets its private half (no
//! statement will ever need it again); servers sign with the new key from
//! their next start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use payoff_accounting::billing::KeyWindow;
use serde::{Deserialize, Serialize};

use crate::commands::init::ensure_signing_key;
use crate::commands::{audit_local, open_store};
use crate::settings::Settings;

const HISTORY: &str = "signing-keys.json";

#[derive(Subcommand)]
pub enum SigningCommand {
    /// Make a new signing key; the old one stays published, its window closed.
    Rotate {
        /// Print the retired key and the new one, as published, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The signing keys, with the windows they signed in.
    List {
        /// Print the keys as published (`/.well-known/payoff/keys`) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct History {
    keys: Vec<KeyWindow>,
}

fn history_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join(HISTORY)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn read_history(path: &Path) -> anyhow::Result<History> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a signing-key history", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(History::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces `path` whole (a temporary file renamed over it), owner-only.
fn replace_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The windows of every key, the one in use last: what servers publish.
/// A data directory from before windows were kept has its one key, with
/// no start.
pub fn published(settings: &Settings, active: &SigningKey) -> anyhow::Result<Vec<KeyWindow>> {
    let mut history = read_history(&history_path(settings))?;
    let active_hex = hex::encode(active.verifying_key().as_bytes());
    if !history.keys.iter().any(|k| k.public_key == active_hex) {
        history.keys.push(KeyWindow {
            public_key: active_hex,
            valid_from: None,
            valid_until: None,
        });
    }
    Ok(history.keys)
}

/// Records the first key's window (`payoff init`).
pub fn record_first(
    settings: &Settings,
    key: &SigningKey,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let history = History {
        keys: vec![KeyWindow {
            public_key: hex::encode(key.verifying_key().as_bytes()),
            valid_from: Some(stamp(at)),
            valid_until: None,
        }],
    };
    replace_private(
        &history_path(settings),
        serde_json::to_string_pretty(&history)?.as_bytes(),
    )
}

pub fn run(settings: &Settings, command: SigningCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    let key_path = settings.signing_key_path();
    let active = ensure_signing_key(&key_path)?;
    match command {
        SigningCommand::List { json } => {
            let keys = published(settings, &active)?;
            if json {
                let listed: Vec<_> = keys.iter().map(KeyWindow::published).collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                for k in keys {
                    println!(
                        "{}  {}  from {}  until {}",
                        k.published()["key_id"].as_str().unwrap_or("?"),
                        k.public_key,
                        k.valid_from.as_deref().unwrap_or("(not recorded)"),
                        k.valid_until.as_deref().unwrap_or("(in use)")
                    );
                }
            }
        }
        SigningCommand::Rotate { json } => {
            let now = settings.clock.now();
            let mut keys = published(settings, &active)?;
            let old_hex = hex::encode(active.verifying_key().as_bytes());
            for k in keys.iter_mut().filter(|k| k.public_key == old_hex) {
                k.valid_until = Some(stamp(now));
            }
            let new = SigningKey::generate(&mut rand::rngs::OsRng);
            let new_hex = hex::encode(new.verifying_key().as_bytes());
            let new_window = KeyWindow {
                public_key: new_hex.clone(),
                valid_from: Some(stamp(now)),
                valid_until: None,
            };
            let retired = keys
                .iter()
                .find(|k| k.public_key == old_hex)
                .map(KeyWindow::published);
            let in_use = new_window.published();
            keys.push(new_window);
            // The history first: if the key's replacement fails, the old
            // key still signs and its window is merely closed early.
            replace_private(
                &history_path(settings),
                serde_json::to_string_pretty(&History { keys })?.as_bytes(),
            )?;
            let pem = new
                .to_pkcs8_pem(Default::default())
                .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
            replace_private(&key_path, pem.as_bytes())?;
            audit_local(
                &store,
                settings.clock.now(),
                None,
                "signing rotate",
                "/.well-known/payoff/keys",
                &format!("{old_hex} retired, {new_hex} in use"),
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "retired": retired, "in_use": in_use })
                    )?
                );
            } else {
                println!("retired {old_hex}; statements are signed by {new_hex} from each server's next start");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
