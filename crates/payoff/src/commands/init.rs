//! `payoff init`: a data directory, the provider's signing key, a first admin key.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use payoff_store::Role;
use serde::Serialize;
use std::process::ExitCode;

use crate::bad_input;
use crate::commands::create_store;
use crate::settings::Settings;

#[derive(Args)]
pub struct InitArgs {
    /// Print what was made as JSON (the admin key in `admin_key`).
    #[arg(long)]
    json: bool,
}

/// What `payoff init` made.
#[derive(Serialize)]
struct Initialised {
    data_dir: String,
    database: String,
    backend: &'static str,
    signing_key: String,
    public_key: String,
    admin_key: String,
}

pub fn run(settings: &Settings, args: InitArgs) -> anyhow::Result<ExitCode> {
    let key_path = settings.signing_key_path();
    if key_path.exists() {
        return bad_input(format!(
            "{} is already initialised (it holds a signing key); create more keys with `payoff keys create`",
            settings.data_dir.display()
        ));
    }
    let store = create_store(settings)?;
    let signing = ensure_signing_key(&key_path)?;
    ensure_secrets_key(&settings.secrets_key_path())?;
    crate::commands::signing::record_first(settings, &signing, settings.clock.now())?;
    let (admin, _) = store.create_key(Role::Admin, None, settings.clock.now())?;
    let made = Initialised {
        data_dir: settings.data_dir.display().to_string(),
        database: settings.database.clone(),
        backend: store.backend_name(),
        signing_key: key_path.display().to_string(),
        public_key: hex::encode(signing.verifying_key().as_bytes()),
        admin_key: admin.key,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&made)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("data directory: {}", made.data_dir);
    println!("database: {} ({})", made.database, made.backend);
    println!(
        "provider signing key: {} (public {})",
        made.signing_key, made.public_key
    );
    println!("admin API key (shown once; send as `Authorization: Bearer KEY`):");
    println!("{}", made.admin_key);
    Ok(ExitCode::SUCCESS)
}

/// Loads the key that seals tenants' secrets (32 bytes), creating it on
/// first use (a data directory from before sealing gets one at its next
/// start; secrets stored before are read as they are).
pub fn ensure_secrets_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()));
    }
    let key = payoff_server::secrets::SecretBox::generate();
    write_private(path, &key)?;
    Ok(key)
}

/// Loads the provider's Ed25519 signing key, creating it on first use.
pub fn ensure_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()));
    }
    if let Some(dir) = path.parent() {
        crate::commands::private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
    write_private(path, pem.as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
