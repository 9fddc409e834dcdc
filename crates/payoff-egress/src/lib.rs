//! Every outbound HTTP client Payoff uses is built here, so TLS trust and
//! the egress policy are decided in one place.
//!
//! Two kinds of destination: **upstreams** the operator configured (model
//! providers, the Payoff server the CLI calls) are trusted and may use
//! plain http and loopback ([`upstream_client`]); **tenant URLs**
//! (webhooks, connector targets) go through [`Egress::tenant_client`]:
//! the [`EgressPolicy`] on every resolved address, no redirects, no
//! proxy. Both verify TLS against the same [`Trust`].

mod policy;
mod resolve;
mod trust;

use std::sync::Arc;

pub use policy::{refused_kind, BadAllowEntry, EgressPolicy, Refusal};
pub use resolve::{Lookup, Lookups, PolicyResolver, ResolveError, SystemLookup};
pub use trust::{Trust, TrustError};

/// Reads at most `max` bytes of a response body: a peer, trusted or not,
/// cannot make Payoff hold more than that in memory. Returns the bytes read
/// and whether the body went on beyond them (the rest is left unread).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A client builder for operator-configured upstreams, verifying TLS
/// against `trust`; the caller adds its timeouts.
pub fn upstream_client(trust: &Trust) -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_preconfigured_tls(trust.client_config())
}

/// How tenant URLs are reached: the roots TLS trusts, the policy, and
/// how names are resolved.
#[derive(Clone)]
pub struct Egress {
    pub trust: Trust,
    pub policy: EgressPolicy,
    pub lookup: Arc<dyn Lookup>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("trust", &self.trust)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for Egress {
    /// The process's default trust ([`Trust::process_default`]), nothing
    /// allowed beyond public addresses over https, the system resolver.
    fn default() -> Self {
        Egress {
            trust: Trust::process_default(),
            policy: EgressPolicy::default(),
            lookup: Arc::new(SystemLookup),
        }
    }
}

impl Egress {
    /// The client for tenant URLs: every name resolved through the policy
    /// (refused addresses never reach a connect), no redirects (a 3xx is
    /// the answer), no proxy (it would resolve names beyond the policy).
    /// URLs naming an address skip resolution: check them with
    /// [`EgressPolicy::check_url`] before each request.
    pub fn tenant_client(&self, policy: Arc<EgressPolicy>) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.trust.client_config())
            .dns_resolver(Arc::new(PolicyResolver::new(policy, self.lookup.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("a rustls client with a custom resolver always builds")
    }
}

/// The egress refusal behind a failed request, if that is why it failed.
pub fn refusal(error: &reqwest::Error) -> Option<&Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(ResolveError::Refused(r)) = e.downcast_ref::<ResolveError>() {
            return Some(r);
        }
        source = e.source();
    }
    None
}
