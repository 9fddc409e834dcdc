//! `payoff serve`: the HTTP API until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use payoff_server::AppState;
use payoff_store::LedgerConfig;

use crate::commands::init::ensure_signing_key;
use crate::commands::open_store;
use crate::settings::Settings;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; env PAYOFF_LISTEN]
    #[arg(long)]
    pub listen: Option<String>,
}

pub fn run(settings: &Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let addr = settings.listen_addr(args.listen.as_deref())?;
    let store = open_store(settings)?;
    let signing_key = ensure_signing_key(&settings.signing_key_path())?;
    if store.keys(None)?.iter().all(|k| k.revoked_at.is_some()) {
        eprintln!("note: no API key exists yet; create one with `payoff keys create --role admin`");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let ledger = store.ledger(LedgerConfig::default())?;
        // The search index lives beside the database and follows the
        // documents' change log in it, so it never disagrees with them.
        let index_dir = settings.data_dir.join("knowledge");
        std::fs::create_dir_all(&index_dir)
            .with_context(|| format!("cannot create {}", index_dir.display()))?;
        let index = match payoff_knowledge::KnowledgeIndex::open(&index_dir) {
            // An index of an older layout: it holds nothing the stored
            // documents do not, and they are indexed again below.
            Err(payoff_knowledge::IndexError::SchemaMismatch { .. }) => {
                eprintln!(
                    "note: the knowledge index in {} has an older layout; rebuilding it",
                    index_dir.display()
                );
                std::fs::remove_dir_all(&index_dir)
                    .with_context(|| format!("cannot remove {}", index_dir.display()))?;
                payoff_knowledge::KnowledgeIndex::open(&index_dir)
            }
            opened => opened,
        }
        .with_context(|| {
            format!("cannot open the knowledge index in {}", index_dir.display())
        })?;
        let key_history = crate::commands::signing::published(settings, &signing_key)?;
        let secrets_key = crate::commands::init::ensure_secrets_key(&settings.secrets_key_path())?;
        let mut state = AppState::new(store.clone(), ledger, settings.server.clone(), signing_key)
            .with_key_history(key_history)
            .with_secret_key(&secrets_key)
            .with_knowledge(index)
            .with_support(settings.support.clone())
            .map_err(|e| crate::BadInput(format!("support: {e}")))?;
        if let Some(model) = &settings.model {
            let provider = payoff_knowledge::OpenAiProvider::with_trust(
                model.clone(),
                &settings.server.egress.trust,
            )
                .map_err(|e| crate::BadInput(format!("model: {e}")))?;
            state = state.with_answerer(payoff_server::answers::Answerer::OpenAi(provider));
        }
        // The port answers at once (`/readyz`: catching up); the index on
        // disk resumes from the last change it applied, and is not rebuilt
        // at each start. The banner waits for it.
        let address = listener.local_addr()?;
        let (startup, knowledge, answerer) =
            (state.startup.clone(), state.knowledge.clone(), state.answerer.name());
        let served = tokio::spawn(payoff_server::serve(listener, state, shutdown_signal()));
        let changes = match startup.knowledge_settled().await {
            payoff_server::startup::Phase::Done(n) => format!("{n} knowledge changes applied at start"),
            other => format!("knowledge index not caught up ({other:?}; see /readyz)"),
        };
        println!(
            "payoff listening on http://{address} ({} database, {} knowledge passages, {changes}, {answerer} answers)",
            store.backend_name(),
            knowledge.passage_count(),
        );
        served.await??;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
