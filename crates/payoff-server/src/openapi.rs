//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    actions, agents, assignments, audit, billing, customers, economics, events, keys, knowledge,
    ledger, policies, traces, webhooks,
};
use crate::{gateway, mcp};

#[derive(OpenApi)]
#[openapi(
    info(title = "Payoff API", description = "Outcome ledger and control plane for AI services."),
    paths(events::ingest, events::list, traces::export, customers::create, customers::list, customers::show, keys::create, keys::list, keys::revoke, ledger::head,
        billing::upload_contract, billing::list_contracts, billing::list_outcomes, billing::show_outcome,
        billing::raise_dispute, billing::accept_dispute, billing::reject_dispute, billing::preview, billing::close,
        billing::list_statements, billing::show_statement, billing::evidence, billing::public_keys,
        economics::upload_prices, economics::list_prices, economics::show_economics, economics::set_budgets,
        economics::list_budgets, economics::check_budget, economics::show_roi,
        assignments::one, assignments::batch, assignments::release,
        knowledge::upload, knowledge::remove, knowledge::reindex, knowledge::search, knowledge::answer,
        audit::list, audit::verify, agents::submit, agents::show_agent, agents::watched, agents::pause, agents::resume,
        agents::list_approvals, agents::approve, agents::reject,
        policies::upload_policies, policies::list_policies,
        mcp::endpoint, mcp::register, mcp::list_servers, mcp::unregister,
        actions::ask, actions::list, actions::show, actions::record_result, actions::upload_rules, actions::list_rules,
        webhooks::create, webhooks::list, webhooks::remove, webhooks::deliveries,
        gateway::models, gateway::chat_completions, gateway::embeddings, gateway::responses),
    components(schemas(
        events::CloudEvent, events::IngestReply, events::EventResult, events::EventList, events::ListedEvent,
        customers::NewCustomer, customers::CustomerView, customers::CustomerList,
        keys::NewKeyRequest, keys::KeyView, keys::CreatedKey, keys::KeyList, ledger::HeadView
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3.1 document of this server, as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
