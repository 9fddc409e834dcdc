//! Who is looking: an API key exchanged once for a session cookie, and
//! the CSRF token every state-changing form carries.
//!
//! The cookie is `HttpOnly` (scripts never see it) and `SameSite=Strict`
//! (other sites' pages never send it); the store keeps only its hash.
//! Every POST also has to come from this origin and carry the session's
//! synchronizer token, compared in constant time: [`Posted`] does both
//! before a handler sees the form, so no handler can forget it.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use maud::{html, Markup};
use payoff_store::{Principal, Role};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::audit::{CallerSlot, ProblemNote};
use crate::auth::Caller;
use crate::dashboard::{layout, see_other, FORM_BYTES_MAX};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::Params;
use crate::{blocking, AppState};

const COOKIE: &str = "payoff_session";
/// A session ends this long after login, whatever happens in between.
const SESSION_TTL: Duration = Duration::hours(12);
/// An API key is 89 characters; anything much longer is not one.
const KEY_CHARS_MAX: usize = 200;

/// A logged-in person: their key's principal (as the API's [`Caller`]),
/// and their session's CSRF token, which pages put into every form.
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
    token: String,
}

impl Viewer {
    pub fn principal(&self) -> &Principal {
        &self.caller.0
    }

    /// Where this person starts: their customer, or the customer list.
    fn home(&self) -> String {
        match &self.principal().customer {
            Some(c) => format!("/ui/customers/{c}/overview"),
            None => "/ui/customers".to_owned(),
        }
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The session of a request, if it has a live one.
async fn viewer_of(state: &AppState, parts: &Parts) -> Result<Option<Viewer>, ApiError> {
    let Some(token) = session_token(&parts.headers) else {
        return Ok(None);
    };
    let store = state.store.clone();
    let presented = token.clone();
    let Some((principal, csrf)) =
        blocking(move || store.session(&presented, payoff_clock::wall())).await?
    else {
        return Ok(None);
    };
    if let Some(slot) = parts.extensions.get::<CallerSlot>() {
        *slot.0.lock().expect("caller slot") = Some(principal.clone());
    }
    Ok(Some(Viewer {
        caller: Caller(principal),
        csrf,
        token,
    }))
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        viewer_of(state, parts).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotLoggedIn,
                "log in to the dashboard with your API key",
            )
        })
    }
}

/// Refuses a POST that another site's page sent: browsers name the origin
/// of every form submission, and it must be this server's.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let refused = || {
        ApiError::new(
            ErrorCode::CsrfRejected,
            "the form was sent from another site; open the dashboard and try again",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(refused());
        }
    }
    if let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) {
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if bare != Some(host) {
            return Err(refused());
        }
    }
    Ok(())
}

/// The fields of a form body up to [`FORM_BYTES_MAX`], empty ones left
/// out (an empty optional field means "not given").
async fn form_fields(request: Request) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), FORM_BYTES_MAX)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a form is at most {} KiB", FORM_BYTES_MAX / 1024),
            )
        })?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("form: {e}")))?;
    Ok(fields
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect())
}

pub(super) fn decode<T: DeserializeOwned>(fields: &[(String, String)]) -> Result<T, ApiError> {
    let encoded = serde_urlencoded::to_string(fields)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("form: {e}")))?;
    serde_urlencoded::from_str(&encoded)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("form: {e}")))
}

/// A state-changing form from a logged-in person: same origin, within the
/// size limit, and carrying the session's CSRF token (field `csrf`).
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        same_origin(&parts.headers)?;
        let mut fields = form_fields(Request::from_parts(parts, body)).await?;
        let presented = fields
            .iter()
            .position(|(k, _)| k == "csrf")
            .map(|i| fields.remove(i).1)
            .unwrap_or_default();
        let valid: bool = presented.as_bytes().ct_eq(viewer.csrf.as_bytes()).into();
        if !valid {
            return Err(ApiError::new(
                ErrorCode::CsrfRejected,
                "the form's security token is missing or belongs to another session; reload the page and try again",
            ));
        }
        Ok(Posted {
            viewer,
            form: decode(&fields)?,
        })
    }
}

/// `/`: the dashboard's start for whoever is logged in, else the login.
pub async fn home(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    Ok(match viewer_of(&state, &parts).await? {
        Some(viewer) => see_other(&viewer.home()),
        None => see_other("/ui/login"),
    })
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a dashboard path of this server may be gone back to after login.
fn safe_next(next: Option<&str>) -> Option<String> {
    next.filter(|n| {
        n.starts_with("/ui/")
            && !n.starts_with("/ui/login")
            && !n.contains("//")
            && !n.contains('\\')
            && n.len() <= 2000
    })
    .map(str::to_owned)
}

fn login_form(next: Option<&str>, problem: Option<&str>) -> Markup {
    html! {
        form.login method="post" action="/ui/login" {
            h1 { "Log in to Payoff" }
            p.muted { "Paste your API key (it starts with " code { "pyk_" } "). It is exchanged for a session cookie; the key itself is not kept in the browser." }
            @if let Some(p) = problem { p.flash.bad role="alert" { (p) } }
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="off" required maxlength=(KEY_CHARS_MAX) autofocus;
            @if let Some(n) = next { input type="hidden" name="next" value=(n); }
            button type="submit" { "Log in" }
        }
    }
}

/// The login form.
pub async fn login_page(Params(q): Params<Next>) -> Markup {
    let next = safe_next(q.next.as_deref());
    layout::bare("Log in", login_form(next.as_deref(), None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    key: Option<String>,
    next: Option<String>,
}

/// The login form again with what was wrong; recorded by the audit layer
/// as a refused request.
fn refused(status: StatusCode, code: ErrorCode, detail: &str, next: Option<&str>) -> Response {
    let mut response = (
        status,
        layout::bare("Log in", login_form(next, Some(detail))),
    )
        .into_response();
    response.extensions_mut().insert(ProblemNote {
        code: code.code(),
        detail: detail.to_owned(),
    });
    response
}

fn cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age_s: i64) -> HeaderValue {
    // `Secure` when the operator says the dashboard is only reached over
    // https, or behind a TLS-terminating proxy that says so.
    let secure = state.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let text = format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("session tokens are ASCII")
}

/// Exchanges an API key for a session.
pub async fn login(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let slot = request.extensions().get::<CallerSlot>().cloned();
    same_origin(&headers)?;
    let form: LoginForm = decode(&form_fields(request).await?)?;
    let next = safe_next(form.next.as_deref());
    let key = form.key.unwrap_or_default().trim().to_owned();
    if key.chars().count() > KEY_CHARS_MAX {
        return Ok(refused(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            "that is not an API key",
            next.as_deref(),
        ));
    }
    let store = state.store.clone();
    let Some(principal) = blocking(move || store.authenticate(&key)).await? else {
        return Ok(refused(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            "this API key is unknown or has been revoked",
            next.as_deref(),
        ));
    };
    if let Some(slot) = slot {
        *slot.0.lock().expect("caller slot") = Some(principal.clone());
    }
    if principal.role == Role::Agent {
        return Ok(refused(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "agent keys are for machines; log in with a person's key",
            next.as_deref(),
        ));
    }
    let store = state.store.clone();
    let key_id = principal.key_id.clone();
    let session =
        blocking(move || store.open_session(&key_id, payoff_clock::wall(), SESSION_TTL)).await?;
    let viewer = Viewer {
        caller: Caller(principal),
        csrf: session.csrf_token,
        token: session.token,
    };
    let mut response = see_other(&next.unwrap_or_else(|| viewer.home()));
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &headers, &viewer.token, SESSION_TTL.num_seconds()),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct NoFields {}

/// Ends the session on the server and in the browser.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<NoFields>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let token = posted.viewer.token.clone();
    blocking(move || store.close_session(&token)).await?;
    let mut response = see_other("/ui/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, &headers, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_gone_back_to() {
        for good in ["/ui/customers/acme/outcomes?state=billed", "/ui/customers"] {
            assert_eq!(safe_next(Some(good)).as_deref(), Some(good));
        }
        for bad in [
            "https://evil.test/",
            "//evil.test/ui/",
            "/ui//evil.test",
            "/ui/login?next=/ui/x",
            "/v1/customers",
            "/ui/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]))
        .is_ok());
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.test")
        ]))
        .is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
    }
}
