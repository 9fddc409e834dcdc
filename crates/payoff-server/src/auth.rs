//! Who is calling, and what their role lets them do.
//!
//! The permissions are the shipped Cedar role rules (`payoff-policy`),
//! consulted here in one place, so that the table-driven test of every
//! route against every role has one source to check.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use payoff_store::{Principal, Role};

use crate::problem::{ApiError, ErrorCode};
use crate::AppState;

macro_rules! actions {
    ($($variant:ident => ($name:literal, $describe:literal)),* $(,)?) => {
        /// What a request wants to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($variant),*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// The action's name in the Cedar schema and the role rules.
            pub fn name(self) -> &'static str {
                match self {
                    $(Action::$variant => $name),*
                }
            }

            fn describe(self) -> &'static str {
                match self {
                    $(Action::$variant => $describe),*
                }
            }
        }

        /// Each action as a type, for [`Allowed`]: a handler names the
        /// permission it needs in its signature (`Allowed<may::ReadBilling>`).
        pub mod may {
            $(
                #[doc = concat!("Permission to ", $describe, ".")]
                pub struct $variant;
                impl super::Permission for $variant {
                    const ACTION: super::Action = super::Action::$variant;
                }
            )*
        }
    };
}

/// An [`Action`] as a type (one per action, in [`may`]).
pub trait Permission {
    const ACTION: Action;
}

actions! {
    IngestEvents => ("ingest_events", "send events"),
    ReadEvents => ("read_events", "read events"),
    ReadLedgerHead => ("read_ledger_head", "read the ledger head"),
    ListCustomers => ("list_customers", "list customers"),
    ReadCustomer => ("read_customer", "read customers"),
    CreateCustomer => ("create_customer", "create customers"),
    ManageKeys => ("manage_keys", "manage API keys"),
    ManageContracts => ("manage_contracts", "upload contracts"),
    ReadBilling => ("read_billing", "read contracts, outcomes and statements"),
    CloseStatements => ("close_statements", "close periods"),
    RaiseDispute => ("raise_dispute", "dispute outcomes"),
    DecideDispute => ("decide_dispute", "decide disputes"),
    ManagePrices => ("manage_prices", "change model prices"),
    ReadEconomics => ("read_economics", "read costs and margins"),
    ManageBudgets => ("manage_budgets", "set budgets"),
    CheckBudget => ("check_budget", "check budgets"),
    Assign => ("assign", "ask for holdout assignments"),
    ManageKnowledge => ("manage_knowledge", "change knowledge documents"),
    SearchKnowledge => ("search_knowledge", "search knowledge"),
    ReadAudit => ("read_audit", "read the audit log"),
    SubmitTickets => ("submit_tickets", "hand tickets to an agent"),
    ReadApprovals => ("read_approvals", "read approvals"),
    DecideApprovals => ("decide_approvals", "approve or reject agent replies"),
    ControlAgents => ("control_agents", "pause or resume agents"),
    ReadPolicies => ("read_policies", "read agent policies"),
    ManagePolicies => ("manage_policies", "upload agent policies"),
    ReadWebhooks => ("read_webhooks", "read webhook subscriptions and deliveries"),
    ManageWebhooks => ("manage_webhooks", "manage webhook subscriptions"),
    CallModels => ("call_models", "call models through the gateway"),
    AuthorizeActions => ("authorize_actions", "ask whether an agent may act and record what it did"),
    ReadActions => ("read_actions", "read agents' actions"),
}

/// Every role's decision on every action, from the shipped Cedar role
/// rules. Their inputs are only the role and the action, so each is
/// evaluated once, not on every request.
static ROLE_TABLE: LazyLock<HashMap<(Role, Action), bool>> = LazyLock::new(|| {
    let rules = payoff_policy::RoleRules::shipped();
    Role::ALL
        .iter()
        .flat_map(|&role| Action::ALL.iter().map(move |&action| (role, action)))
        .map(|(role, action)| {
            let allowed = rules.decide(role.as_str(), action.name()).allowed;
            ((role, action), allowed)
        })
        .collect()
});

/// The built-in role rules (`payoff-policy`'s `roles.cedar`).
pub fn allows(role: Role, action: Action) -> bool {
    ROLE_TABLE.get(&(role, action)).copied().unwrap_or(false)
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
                format!("the role {} may not {}", self.0.role, action.describe()),
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

/// An API key as presented, not yet checked: for a hot path that checks
/// it in the same blocking step as its own first reads (the model
/// gateway), saving a hop to the blocking pool per request. The key is
/// checked exactly as [`Allowed`] checks it.
pub struct PresentedKey {
    key: String,
    slot: Option<crate::audit::CallerSlot>,
}

impl PresentedKey {
    /// The caller this key authenticates, or 401; blocking (store reads).
    pub fn admit(&self, store: &payoff_store::Store) -> Result<Caller, ApiError> {
        let principal = store.authenticate(&self.key)?;
        if let (Some(p), Some(slot)) = (&principal, &self.slot) {
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

impl<S: Send + Sync> FromRequestParts<S> for PresentedKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                "send the API key as `Authorization: Bearer KEY`",
            ));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            // Authentication schemes are case-insensitive (RFC 9110, 11.1).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MissingApiKey,
                    "the Authorization header must be `Bearer KEY`",
                )
            })?
            .to_owned();
        Ok(PresentedKey {
            key,
            slot: parts.extensions.get::<crate::audit::CallerSlot>().cloned(),
        })
    }
}

/// The caller of a request, authenticated (401 without a valid key) and
/// allowed the action `P` (403 otherwise) before the handler runs or its
/// body is read. The only extractor that yields a [`Caller`]: a handler
/// cannot reach the caller without naming its permission, so a route
/// that forgets one does not build (Meilisearch's `GuardedData` is the
/// model). The hot paths that check a key in their own blocking step take
/// [`PresentedKey`] and call [`Caller::require`] there.
pub struct Allowed<P>(pub Caller, pub PhantomData<P>);

impl<P: Permission> FromRequestParts<AppState> for Allowed<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = PresentedKey::from_request_parts(parts, state).await?;
        let caller = crate::blocking_with(move |store| presented.admit(store), state).await?;
        caller.require(P::ACTION)?;
        Ok(Allowed(caller, PhantomData))
    }
}
