//! Who is calling, and what their role lets them do.
//!
//! The permission table lives here, in one place, so that the table-driven
//! test of every route against every role has one source to check.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use payoff_store::{Principal, Role};

use crate::problem::{ApiError, ErrorCode};
use crate::AppState;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    IngestEvents,
    ReadEvents,
    ReadLedgerHead,
    ListCustomers,
    ReadCustomer,
    CreateCustomer,
    ManageKeys,
    ManageContracts,
    ReadBilling,
    CloseStatements,
    RaiseDispute,
    DecideDispute,
    ManagePrices,
    ReadEconomics,
    ManageBudgets,
    CheckBudget,
    Assign,
    ManageKnowledge,
    SearchKnowledge,
    ReadAudit,
    SubmitTickets,
    ReadApprovals,
    DecideApprovals,
    ControlAgents,
}

/// The built-in role rules.
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    use Role::*;
    match action {
        IngestEvents => matches!(role, Admin | Operator | CustomerAdmin | Agent),
        ReadEvents => matches!(
            role,
            Admin | Operator | CustomerAdmin | CustomerViewer | Auditor
        ),
        ReadLedgerHead | ReadCustomer => true,
        ListCustomers | CreateCustomer => role.is_provider(),
        ManageKeys => matches!(role, Admin | Operator | CustomerAdmin),
        ManageContracts | CloseStatements | DecideDispute => matches!(role, Admin | Operator),
        ReadBilling => !matches!(role, Agent),
        RaiseDispute => matches!(role, CustomerAdmin),
        ManagePrices | ManageBudgets => matches!(role, Admin | Operator),
        ReadEconomics => matches!(role, Admin | Operator),
        CheckBudget | Assign => matches!(role, Admin | Operator | Agent),
        ManageKnowledge => matches!(role, Admin | Operator | CustomerAdmin),
        SearchKnowledge => true,
        ReadAudit => matches!(role, Admin | Operator | Auditor | CustomerAdmin),
        SubmitTickets => matches!(role, Admin | Operator | Agent),
        ReadApprovals => !matches!(role, Agent),
        DecideApprovals | ControlAgents => matches!(role, Admin | Operator | CustomerAdmin),
    }
}

/// The authenticated caller of a request.
#[derive(Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses with 403 unless the role may do `action`.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if allows(self.0.role, action) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the role {} may not {}", self.0.role, describe(action)),
            ))
        }
    }

    /// The customer a request acts on: a customer key's own customer, or the
    /// one a provider key names. A customer key naming another customer gets
    /// 404, as if that customer did not exist.
    pub fn customer_scope(&self, named: Option<&str>) -> Result<String, ApiError> {
        match (&self.0.customer, named) {
            (Some(own), None) => Ok(own.clone()),
            (Some(own), Some(named)) if own == named => Ok(own.clone()),
            (Some(_), Some(named)) => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no customer \"{named}\" is visible to this key"),
            )),
            (None, Some(named)) => Ok(named.to_owned()),
            (None, None) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "customer: a provider key must name the customer (?customer=ID)",
            )),
        }
    }

    /// Whether this caller may see data of `customer`.
    pub fn sees(&self, customer: Option<&str>) -> bool {
        match &self.0.customer {
            None => true,
            Some(own) => customer == Some(own.as_str()),
        }
    }
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::IngestEvents => "send events",
        Action::ReadEvents => "read events",
        Action::ReadLedgerHead => "read the ledger head",
        Action::ListCustomers => "list customers",
        Action::ReadCustomer => "read customers",
        Action::CreateCustomer => "create customers",
        Action::ManageKeys => "manage API keys",
        Action::ManageContracts => "upload contracts",
        Action::ReadBilling => "read contracts, outcomes and statements",
        Action::CloseStatements => "close periods",
        Action::RaiseDispute => "dispute outcomes",
        Action::DecideDispute => "decide disputes",
        Action::ManagePrices => "change model prices",
        Action::ReadEconomics => "read costs and margins",
        Action::ManageBudgets => "set budgets",
        Action::CheckBudget => "check budgets",
        Action::Assign => "ask for holdout assignments",
        Action::ManageKnowledge => "change knowledge documents",
        Action::SearchKnowledge => "search knowledge",
        Action::ReadAudit => "read the audit log",
        Action::SubmitTickets => "hand tickets to an agent",
        Action::ReadApprovals => "read approvals",
        Action::DecideApprovals => "approve or reject agent replies",
        Action::ControlAgents => "pause or resume agents",
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                "send the API key as `Authorization: Bearer KEY`",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MissingApiKey,
                    "the Authorization header must be `Bearer KEY`",
                )
            })?
            .to_owned();
        let store = state.store.clone();
        let principal = crate::blocking(move || store.authenticate(&presented)).await?;
        if let (Some(p), Some(slot)) = (
            &principal,
            parts.extensions.get::<crate::audit::CallerSlot>(),
        ) {
            *slot.0.lock().expect("caller slot") = Some(p.clone());
        }
        principal.map(Caller).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidApiKey,
                "this API key is unknown or has been revoked",
            )
        })
    }
}
