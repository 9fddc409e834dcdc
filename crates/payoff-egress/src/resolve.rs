//! Name resolution for tenant URLs: every address a name resolves to is
//! checked against the policy before any connection, and the connection
//! may only go to the addresses that pass.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use crate::policy::{EgressPolicy, Refusal};

/// A future of the addresses a host name has.
pub type Lookups = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a host name into addresses. The system's resolver in production;
/// a test's own table in tests, so a name can "resolve" to an address the
/// test must never send a packet to.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> Lookups;
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Lookups {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Why a name gave no address a connection may use.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("refused by the egress policy: {0}")]
    Refused(Refusal),
    #[error("the name does not resolve: {0}")]
    Lookup(std::io::Error),
}

/// Resolves through a [`Lookup`] and keeps only what the policy allows.
#[derive(Clone)]
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        PolicyResolver { policy, lookup }
    }

    /// The addresses a connection to `host` may use; an error when none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let found = self
            .lookup
            .lookup(host)
            .await
            .map_err(ResolveError::Lookup)?;
        let mut first_refusal = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|ip| match self.policy.check_ip(Some(host), *ip) {
                Ok(()) => true,
                Err(r) => {
                    first_refusal.get_or_insert(r);
                    false
                }
            })
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(r)) => Err(ResolveError::Refused(r)),
            (true, None) => Err(ResolveError::Lookup(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            ))),
        }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (this, host) = (self.clone(), name.as_str().to_owned());
        Box::pin(async move {
            let addrs = this.addresses(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
