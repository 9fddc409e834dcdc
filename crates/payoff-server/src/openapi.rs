//! The OpenAPI document. Its operations are not listed here: each area's
//! router declares a route and its operation together
//! (`utoipa_axum::routes!` over the handler's `#[utoipa::path]`), so a
//! route cannot be served without its operation, nor the reverse. This
//! module adds what belongs to the document as a whole.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{customers, events, keys, ledger};

#[derive(OpenApi)]
#[openapi(
    info(title = "Payoff API", description = "Outcome ledger and control plane for AI services."),
    components(schemas(
        events::CloudEvent, events::IngestReply, events::EventResult, events::EventList, events::ListedEvent,
        customers::NewCustomer, customers::CustomerView, customers::CustomerList,
        keys::NewKeyRequest, keys::KeyView, keys::CreatedKey, keys::KeyList, ledger::HeadView
    )),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

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

/// The OpenAPI 3.1 document of this server, as JSON (made once: it is the
/// same for the life of the process).
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, doc) = crate::api().split_for_parts();
        doc.to_pretty_json().unwrap_or_default()
    })
}
