//! The frame of every page: the header with the customer (and the
//! provider roles' customer picker), the tabs the role may open, and the
//! logout form.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use crate::auth::Action;
use crate::dashboard::Ctx;

/// The pages of a customer, in the order of the tabs, with the action a
/// role needs to open each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Outcomes,
    Statements,
    Disputes,
    Approvals,
    Agents,
    Knowledge,
    Audit,
    Contract,
    Economics,
}

impl Tab {
    const ALL: [Tab; 10] = [
        Tab::Overview,
        Tab::Outcomes,
        Tab::Statements,
        Tab::Disputes,
        Tab::Approvals,
        Tab::Agents,
        Tab::Knowledge,
        Tab::Audit,
        Tab::Contract,
        Tab::Economics,
    ];

    fn label(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Outcomes => "Outcomes",
            Tab::Statements => "Statements",
            Tab::Disputes => "Disputes",
            Tab::Approvals => "Approvals",
            Tab::Agents => "Agents",
            Tab::Knowledge => "Knowledge",
            Tab::Audit => "Audit",
            Tab::Contract => "Contract",
            Tab::Economics => "Economics",
        }
    }

    fn page(self) -> &'static str {
        match self {
            Tab::Overview => "overview",
            Tab::Outcomes => "outcomes",
            Tab::Statements => "statements",
            Tab::Disputes => "disputes",
            Tab::Approvals => "approvals",
            Tab::Agents => "agents",
            Tab::Knowledge => "knowledge",
            Tab::Audit => "audit",
            Tab::Contract => "contract",
            Tab::Economics => "economics",
        }
    }

    /// What a role needs to open the tab (the handler checks it again).
    pub fn action(self) -> Action {
        match self {
            Tab::Approvals | Tab::Agents => Action::ReadApprovals,
            Tab::Knowledge => Action::SearchKnowledge,
            Tab::Audit => Action::ReadAudit,
            Tab::Economics => Action::ReadEconomics,
            _ => Action::ReadBilling,
        }
    }
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Payoff" }
                link rel="stylesheet" href="/ui/assets/style.css";
                script src="/ui/assets/app.js" defer {}
            }
            body { (body) }
        }
    }
}

/// A page without a customer: login, errors.
pub fn bare(title: &str, content: Markup) -> Markup {
    document(
        title,
        html! {
            header.top { a.brand href="/" { "Payoff" } }
            main.narrow { (content) }
        },
    )
}

/// A readable error page; the detail is the API's sentence.
pub fn error_page(status: StatusCode, detail: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    bare(
        title,
        html! {
            section.error {
                h1 { (status.as_u16()) " · " (title) }
                p { (detail) }
                p { a href="/" { "Back to the dashboard" } }
            }
        },
    )
}

/// The hidden field that carries the session's CSRF token in a form.
pub fn csrf(ctx_csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx_csrf); }
}

/// The header of a logged-in page: brand, customer (picker), role, logout.
fn header(ctx: Option<&Ctx>, viewer: &crate::dashboard::Viewer) -> Markup {
    let principal = viewer.principal();
    html! {
        header.top {
            a.brand href="/" { "Payoff" }
            @if let Some(ctx) = ctx {
                @if ctx.customers.is_empty() {
                    span.customer { (ctx.customer.name) " " span.muted { "(" (ctx.customer.id) ")" } }
                } @else {
                    form.picker method="get" action="/ui/go" {
                        label for="pick" { "Customer" }
                        select #pick name="customer" data-autosubmit {
                            @for c in &ctx.customers {
                                option value=(c.id) selected[c.id == ctx.customer.id] { (c.name) " (" (c.id) ")" }
                            }
                        }
                        noscript { button type="submit" { "Open" } }
                    }
                }
            }
            span.spacer {}
            span.who title=(format!("key {}", principal.key_id)) { (principal.role.as_str()) }
            form.logout method="post" action="/ui/logout" {
                (csrf(&viewer.csrf))
                button type="submit" { "Log out" }
            }
        }
    }
}

/// A customer's page under its tabs.
pub fn page(ctx: &Ctx, current: Tab, title: &str, content: Markup) -> Markup {
    document(
        &format!("{title} · {}", ctx.customer.name),
        html! {
            (header(Some(ctx), &ctx.viewer))
            nav.tabs aria-label="Pages" {
                @for tab in Tab::ALL {
                    @if ctx.allows(tab.action()) {
                        a href=(ctx.path(tab.page())) aria-current=[(tab == current).then_some("page")] { (tab.label()) }
                    }
                }
            }
            main { h1 { (title) } (content) }
        },
    )
}

/// A page of a logged-in person outside any customer (the customer list).
pub fn plain(viewer: &crate::dashboard::Viewer, title: &str, content: Markup) -> Markup {
    document(
        title,
        html! {
            (header(None, viewer))
            main { h1 { (title) } (content) }
        },
    )
}
