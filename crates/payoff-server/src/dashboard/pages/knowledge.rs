//! Knowledge: ask the customer's documents a question and get an answer
//! that cites its passages, read with the viewer's own groups (those of
//! their key), filtered inside the index query as for the API.

use axum::extract::{Path, State};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::Filters;
use crate::auth::Action;
use crate::dashboard::format::web_href;
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::ApiError;
use crate::routes::knowledge::{ask, QUESTION_CHARS_MAX};
use crate::{blocking_with, AppState};

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(search): Filters<Search>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::SearchKnowledge).await?;
    let key_id = ctx.viewer.principal().key_id.clone();
    let groups: Vec<String> = blocking_with(move |store| Ok(store.key_groups(&key_id)?), &state)
        .await?
        .and_then(|g| serde_json::from_str(&g).ok())
        .unwrap_or_default();
    let found = match &search.q {
        Some(q) => Some(ask(&state, &ctx.caller(), &ctx.customer.id, q, None).await?),
        None => None,
    };
    let body = html! {
        form.filters method="get" action=(ctx.path("knowledge")) role="search" {
            label { "Question"
                input type="search" name="q" value=[search.q.as_deref()] maxlength=(QUESTION_CHARS_MAX) size="60" required autofocus;
            }
            button type="submit" { "Ask" }
        }
        p.muted {
            "You read what everyone at " (ctx.customer.name) " may read"
            @if groups.is_empty() { ", and no restricted group." }
            @else { ", and what the members of " @for (i, g) in groups.iter().enumerate() { @if i > 0 { ", " } strong { (g) } } " may read." }
            " Documents restricted to other groups are never searched for you."
        }
        @if let Some((hits, answer)) = &found {
            section.card #answer {
                h2 { "Answer" }
                @if answer.no_answer {
                    p { "The documents you may read do not answer this." }
                } @else {
                    p.answer { (answer.text) }
                    ol.citations {
                        @for c in &answer.citations {
                            li value=(c.n) {
                                @match c.url.as_deref().and_then(web_href) {
                                    Some(url) => { a href=(url) rel="noreferrer noopener" target="_blank" { (c.title) } }
                                    None => { (c.title) }
                                }
                            }
                        }
                    }
                }
            }
            section.card #passages {
                h2 { "Passages found" }
                @if hits.is_empty() { p.muted { "None." } }
                @for h in hits {
                    div.hit {
                        strong.title { (h.title) }
                        @if !h.heading.is_empty() { " " span.muted { "› " (h.heading) } }
                        // The index escapes the passage and only adds <b> around the query's terms.
                        p.snippet { (PreEscaped(&h.snippet_html)) }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, Tab::Knowledge, "Knowledge", body))
}
