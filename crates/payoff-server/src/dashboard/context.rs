//! The context of a customer's page: who looks, at which customer, and
//! whether their role may see the page at all.

use payoff_accounting::customers::check_customer_id;
use payoff_store::Customer;

use crate::auth::{allows, Action, Caller};
use crate::dashboard::Viewer;
use crate::problem::{ApiError, ErrorCode};
use crate::{blocking, AppState};

pub struct Ctx {
    pub viewer: Viewer,
    pub customer: Customer,
    /// Every customer, for the provider roles' picker; empty for the
    /// customer roles, who see their own customer only.
    pub customers: Vec<Customer>,
}

impl Ctx {
    /// Opens `customer`'s page for `viewer`. Another tenant's customer, or
    /// one that does not exist, answers 404 (before the role is checked,
    /// so a refusal says nothing about another tenant); a role that may
    /// not do `action` gets 403.
    pub async fn open(
        state: &AppState,
        viewer: Viewer,
        customer: &str,
        action: Action,
    ) -> Result<Ctx, ApiError> {
        let not_found = || {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no customer \"{customer}\" is visible to you"),
            )
        };
        check_customer_id(customer).map_err(|_| not_found())?;
        let id = viewer.caller.customer_scope(Some(customer))?;
        viewer.caller.require(action)?;
        let store = state.store.clone();
        let all = blocking(move || store.customers()).await?;
        let customer = all
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(not_found)?;
        let customers = if viewer.principal().customer.is_none() {
            all
        } else {
            Vec::new()
        };
        Ok(Ctx {
            viewer,
            customer,
            customers,
        })
    }

    pub fn allows(&self, action: Action) -> bool {
        allows(self.viewer.principal().role, action)
    }

    pub fn caller(&self) -> Caller {
        self.viewer.caller.clone()
    }

    pub fn id(&self) -> String {
        self.customer.id.clone()
    }

    /// The path of this customer's page `page` (e.g. `outcomes`).
    pub fn path(&self, page: &str) -> String {
        format!("/ui/customers/{}/{page}", self.customer.id)
    }
}
